"""The heads' training precision: float32 is today's eager path bit for bit, bfloat16 agrees.

A small fixed case (synthetic float16 features, three classes) is trained by
:class:`~trustser.heads.estimator.HeadClassifier`. ``tests/data/heads_fp32_reference.json``
holds what the eager float32 path trained on it *before* the bfloat16 path existed (weights,
test probabilities and losses as exact float hex); ``precision="fp32"`` must reproduce it bit for
bit where the recorded torch version and CPU capability match (elsewhere: to 1e-5). Regenerate it
only from a commit whose float32 path is known to be unchanged:
``python tests/test_heads_precision.py --write-reference``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from trustser.heads.data import FeatureSet, PackedFeatures
from trustser.heads.estimator import HeadClassifier

REFERENCE = Path(__file__).parent / "data" / "heads_fp32_reference.json"
CLASSES = ("a", "b", "c")
REFERENCE_PARAMS = dict(hidden=16, epochs=5, batch_size=8, lr=5e-3, device="cpu", seed=3)


def fixed_case(
    num_clips: int = 96, layers: int = 3, dim: int = 16, seed: int = 11
) -> tuple[FeatureSet, FeatureSet, FeatureSet]:
    """Train, dev and test parts (60, 18, 18 clips) of float16 features with a class signal in
    every layer, offset and scaled so standardisation matters."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(CLASSES), layers, dim))
    ids, labels, parts = [], [], []
    for i in range(num_clips):
        label = i % len(CLASSES)
        frames = int(rng.integers(5, 25))
        x = (
            rng.normal(size=(frames, layers, dim))
            + 0.8 * centres[label][None]
            + rng.normal(size=(1, layers, dim))
        )
        ids.append(f"clip{i:03d}")
        labels.append(CLASSES[label])
        parts.append((3.0 * x + 1.5).astype(np.float16))
    offsets = np.concatenate([[0], np.cumsum([p.shape[0] for p in parts])])
    packed = PackedFeatures.from_rows(ids, torch.from_numpy(np.concatenate(parts)), offsets)

    def part(lo: int, hi: int) -> FeatureSet:
        return FeatureSet(packed, ids[lo:hi], labels[lo:hi])

    return part(0, 60), part(60, 78), part(78, 96)


@pytest.fixture
def one_thread():
    """One intra-op thread while a test trains (the reference was recorded with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _hex(values) -> list[str]:
    return [float(v).hex() for v in values]


def reference_record(**params) -> dict:
    """What a fit of the fixed case gives, as exact float hex."""
    train, dev, test = fixed_case()
    estimator = HeadClassifier(**{**REFERENCE_PARAMS, **params}).fit(train, dev)
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "best_epoch": estimator.best_epoch_,
        "train_loss": _hex(h["train_loss"] for h in estimator.history_),
        "state": {
            name: _hex(tensor.flatten().tolist())
            for name, tensor in estimator.head_.state_dict().items()
        },
        "test_proba": [_hex(row) for row in estimator.predict_proba(test).tolist()],
    }


def _floats(values: list[str]) -> np.ndarray:
    return np.array([float.fromhex(v) for v in values])


def test_fp32_is_todays_eager_path_bit_for_bit(one_thread):
    expected = json.loads(REFERENCE.read_text())
    got = reference_record()
    exact = (expected["torch"], expected["cpu_capability"]) == (got["torch"], got["cpu_capability"])
    assert got["best_epoch"] == expected["best_epoch"]
    pairs = [(got["train_loss"], expected["train_loss"])]
    pairs += [(got["state"][name], values) for name, values in expected["state"].items()]
    pairs += list(zip(got["test_proba"], expected["test_proba"], strict=True))
    assert sorted(got["state"]) == sorted(expected["state"])
    for mine, theirs in pairs:
        if exact:
            assert mine == theirs
        else:  # another torch or CPU: the same maths, rounded by other kernels
            np.testing.assert_allclose(_floats(mine), _floats(theirs), rtol=1e-5, atol=1e-6)


if __name__ == "__main__" and sys.argv[1:] == ["--write-reference"]:
    torch.set_num_threads(1)
    REFERENCE.write_text(json.dumps(reference_record(), indent=1) + "\n")
    print(f"wrote {REFERENCE}")
