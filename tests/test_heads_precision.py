"""The heads' training precision: float32 is today's eager path bit for bit, bfloat16 agrees.

A small fixed case (synthetic float16 features, three classes) is trained by
:class:`~trustser.heads.estimator.HeadClassifier`. ``tests/data/heads_fp32_reference.json``
holds what the eager float32 path trained on it *before* the bfloat16 path existed (weights,
test probabilities and losses as exact float hex); ``precision="fp32"`` (and ``auto``, which
resolves to it) must reproduce it bit for bit where the recorded torch version and CPU
capability match (elsewhere: to 1e-4). Regenerate it only from a commit whose float32 path is
known to be unchanged: ``python tests/test_heads_precision.py --write-reference``.

Only one test compiles (``torch.compile`` costs seconds on first use); the others run the
bfloat16 path eagerly or check the compiled kernels' maths uncompiled.
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from trustser.heads import mixing
from trustser.heads.crossval import cross_validate
from trustser.heads.data import FeatureSet, PackedFeatures
from trustser.heads.estimator import HeadClassifier
from trustser.heads.mitigated import MitigatedHeadClassifier
from trustser.heads.mixing import FrameMixer
from trustser.heads.model import LayerWeightedHead
from trustser.heads.precision import AUTO_BF16, keyed_settings, precision_label, resolve_precision
from trustser.heads.tasks import Split, Task
from trustser.manifest import Manifest, Utterance
from trustser.metrics.performance import uar_score
from trustser.runs import RunLayout

REFERENCE = Path(__file__).parent / "data" / "heads_fp32_reference.json"
CLASSES = ("a", "b", "c")
REFERENCE_PARAMS = dict(hidden=16, epochs=5, batch_size=8, lr=5e-3, device="cpu", seed=3)


def fixed_case(
    num_clips: int = 96,
    layers: int = 3,
    dim: int = 16,
    seed: int = 11,
    *,
    parts: tuple[float, float] = (0.625, 0.8125),
) -> tuple[FeatureSet, FeatureSet, FeatureSet]:
    """Train, dev and test parts (by default 60, 18, 18 clips; ``parts``: where dev and test
    start, as fractions) of float16 features with a class signal in every layer, offset and
    scaled so standardisation matters."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(CLASSES), layers, dim))
    ids, labels, clips = [], [], []
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
        clips.append((3.0 * x + 1.5).astype(np.float16))
    offsets = np.concatenate([[0], np.cumsum([c.shape[0] for c in clips])])
    packed = PackedFeatures.from_rows(ids, torch.from_numpy(np.concatenate(clips)), offsets)

    def part(lo: int, hi: int) -> FeatureSet:
        return FeatureSet(packed, ids[lo:hi], labels[lo:hi])

    dev, test = (round(f * num_clips) for f in parts)
    return part(0, dev), part(dev, test), part(test, num_clips)


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


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_fp32_is_todays_eager_path_bit_for_bit(one_thread, precision):
    expected = json.loads(REFERENCE.read_text())
    got = reference_record(precision=precision)
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
            np.testing.assert_allclose(_floats(mine), _floats(theirs), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- resolution
def test_auto_is_float32_everywhere_until_a_stage_is_listed(monkeypatch):
    cpu = torch.device("cpu")
    assert AUTO_BF16 == {}  # the evidence is not in: flipping an entry is the integrator's call
    plan = resolve_precision("auto", cpu, "heads")
    assert (plan.precision, plan.compiled) == ("fp32", False)
    assert "not yet shown" in plan.reason and plan.key is None
    monkeypatch.setitem(AUTO_BF16, "heads", "EmoDB: UAR unchanged")
    monkeypatch.setattr("trustser.heads.precision.fast_bf16", lambda device: True)
    plan = resolve_precision("auto", cpu, "heads")
    assert (plan.precision, plan.compiled, plan.reason) == (
        "bf16",
        True,
        "auto: EmoDB: UAR unchanged",
    )
    assert plan.key == "bf16+compile@cpu"
    assert resolve_precision("auto", cpu, "mitigated").precision == "fp32"  # not listed
    monkeypatch.setattr("trustser.heads.precision.fast_bf16", lambda device: False)
    assert resolve_precision("auto", cpu, "heads").precision == "fp32"  # no bf16 units


def test_explicit_requests_and_the_stages_without_a_bf16_path():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu, "heads", compile=True).compiled is False
    plan = resolve_precision("bf16", cpu, "heads", compile=False)
    assert (plan.precision, plan.compiled, plan.key) == ("bf16", False, "bf16@cpu")
    assert resolve_precision("bf16", cpu, "finetune").precision == "fp32"
    streamed = resolve_precision("bf16", cpu, "heads", in_memory=False)
    assert streamed.precision == "fp32" and "streamed" in streamed.reason
    computed = resolve_precision("bf16", cpu, "heads", stored_rows=False)
    assert (computed.precision, computed.compiled) == ("bf16", False)
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", cpu, "heads")
    with pytest.raises(ValueError, match="precision"):
        HeadClassifier(precision="half", device="cpu").fit(*fixed_case()[:2])
    # resume keys: float32 adds nothing (runs from before these settings resume), bf16 its path
    params = {"lr": 1e-3, "precision": "auto", "compile": True}
    assert keyed_settings(params, None) == {"lr": 1e-3}
    assert keyed_settings(params, "bf16@cpu") == {"lr": 1e-3, "training_path": "bf16@cpu"}
    assert precision_label(plan.record()) == "bf16 (eager)"
    assert precision_label({"precision": "fp32"}) == "fp32" and precision_label(None) is None


# ------------------------------------------------------------------- the stored-rows mix
@pytest.mark.parametrize("dtype", ["float16", "float32", "int8"])
def test_mix_from_stored_rows_equals_the_float32_mix(dtype):
    """The fused kernels' maths (uncompiled here): logits and the layer weights' gradient equal
    the float32 path's on widened, standardised frames."""
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(40, 3, 8, generator=generator) * 2 + 1
    scales = None
    if dtype == "int8":
        scales = (values.abs().amax(-1) / 127).to(torch.float16)
        rows = torch.round(values / scales.float()[:, :, None]).to(torch.int8)
    else:
        rows = values.to(getattr(torch, dtype))
    ids = [f"c{i}" for i in range(5)]
    packed = PackedFeatures.from_rows(ids, rows, [0, 6, 15, 22, 31, 40], scales=scales)
    torch.manual_seed(0)
    head = LayerWeightedHead(3, 8, 4, hidden=16, normalize=True)
    head.set_normalization(*packed.statistics(ids))
    chosen = ["c3", "c0", "c4"]
    (frame_batch,) = packed.frame_batches(chosen, batch_size=3, shuffle=False)
    (packed_batch,) = packed.standardized(*packed.statistics(ids)).packed_batches(
        chosen, batch_size=3, shuffle=False
    )
    assert torch.equal(frame_batch.segments, packed_batch.segments)
    reference = head.forward_packed(
        packed_batch.frames, packed_batch.segments, 3, standardized=True
    )
    (expected,) = torch.autograd.grad(reference.square().sum(), head.layer_logits)
    for index, stored, stored_scales in (
        (frame_batch.index, rows, scales),  # read through the index (CPU)
        (None, rows[frame_batch.index], None if scales is None else scales[frame_batch.index]),
    ):
        logits = head.forward_stored(
            stored,
            index,
            frame_batch.segments,
            3,
            mixer=FrameMixer.eager(),
            scales=stored_scales,
            compute_dtype=None,
        )
        torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-5)
        (grad,) = torch.autograd.grad(logits.square().sum(), head.layer_logits)
        torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------- bf16 training
def _state(estimator: HeadClassifier) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in estimator.head_.state_dict().items()}


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_eager_bf16_is_deterministic_for_a_seed_and_recorded(one_thread):
    train, dev, _ = fixed_case()
    params = {**REFERENCE_PARAMS, "precision": "bf16", "compile": False}
    first, second = (HeadClassifier(**params).fit(train, dev) for _ in range(2))
    assert _same_weights(_state(first), _state(second))
    fp32 = HeadClassifier(**REFERENCE_PARAMS).fit(train, dev)
    assert not _same_weights(_state(first), _state(fp32))  # it did train in bfloat16
    assert first.precision_ == {
        **resolve_precision("bf16", torch.device("cpu"), "heads", compile=False).record()
    }
    assert fp32.precision_["precision"] == "fp32"
    # mitigated heads share the step: bfloat16 there too, deterministic
    genders = {i: ("female", "male")[int(i[-1]) % 2] for i in train.ids + dev.ids}
    mitigated = [
        MitigatedHeadClassifier(adversary_weight=0.5, **params).fit(train, dev, genders=genders)
        for _ in range(2)
    ]
    assert _same_weights(_state(mitigated[0]), _state(mitigated[1]))
    assert mitigated[0].precision_["stage"] == "mitigated"
    assert mitigated[0].precision_["precision"] == "bf16"


class _Streamed:
    """A source that only streams padded batches (like a store group read from disk)."""

    def __init__(self, inner: PackedFeatures) -> None:
        self.inner = inner

    def batches(self, ids, batch_size=64, *, shuffle=True, seed=0):
        return self.inner.batches(ids, batch_size, shuffle=shuffle, seed=seed)


def test_streamed_features_train_in_float32_and_say_so(one_thread):
    train, dev, _ = fixed_case()
    streamed = [FeatureSet(_Streamed(part.source), part.ids, part.labels) for part in (train, dev)]
    estimator = HeadClassifier(**{**REFERENCE_PARAMS, "precision": "bf16", "epochs": 1})
    estimator.fit(*streamed)
    assert estimator.precision_["precision"] == "fp32"
    assert "streamed" in estimator.precision_["reason"]


def test_a_failed_compile_warns_once_and_trains_on_the_eager_bf16_path(monkeypatch, one_thread):
    def broken(*args):
        raise RuntimeError("no C++ compiler\nsecond line")

    monkeypatch.setattr(mixing, "_compiled_kernels", lambda: (broken, broken))
    train, dev, _ = fixed_case()
    params = {**REFERENCE_PARAMS, "precision": "bf16", "epochs": 2}
    with pytest.warns(RuntimeWarning, match="torch.compile failed") as caught:
        fallen = HeadClassifier(**params).fit(train, dev)
    assert len(caught) == 1 and "second line" not in str(caught[0].message)
    assert fallen.precision_["compile_requested"] and not fallen.precision_["compiled"]
    assert "no C++ compiler" in fallen.precision_["reason"]
    eager = HeadClassifier(**{**params, "compile": False}).fit(train, dev)
    assert _same_weights(_state(fallen), _state(eager))


def test_compiled_bf16_agrees_with_fp32_and_repeats_itself(one_thread):
    """The one compiling test: float32 eager vs bfloat16 with the compiled mix on a larger
    fixed case — predictions agree on at least 98 % of the test clips, UAR within 3 points —
    and two compiled fits with one seed give identical weights."""
    train, dev, test = fixed_case(400, layers=4, dim=24, seed=5, parts=(0.6, 0.75))
    params = dict(hidden=32, epochs=6, batch_size=16, lr=3e-3, device="cpu", seed=1)
    fp32 = HeadClassifier(**params, precision="fp32").fit(train, dev)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        compiled = [HeadClassifier(**params, precision="bf16").fit(train, dev) for _ in range(2)]
    if shutil.which("c++") or shutil.which("g++"):
        assert compiled[0].precision_["compiled"], [str(w.message) for w in caught]
    assert _same_weights(_state(compiled[0]), _state(compiled[1]))
    truth = np.array(test.labels, dtype=object)
    expected, got = fp32.predict(test), compiled[0].predict(test)
    assert np.mean(expected == got) >= 0.98
    assert abs(uar_score(truth, expected) - uar_score(truth, got)) <= 0.03
    assert uar_score(truth, got) > 0.6  # the case is learnable: agreement is not trivial


# ------------------------------------------------------------------------ provenance
def test_runs_record_the_precision_and_float32_keeps_its_resume_key(tmp_path, one_thread):
    train, dev, test = fixed_case()
    labels = dict(
        zip(train.ids + dev.ids + test.ids, train.labels + dev.labels + test.labels, strict=True)
    )
    manifest = Manifest(
        corpus="fixed",
        utterances=tuple(
            Utterance(
                i, f"/nowhere/{i}.wav", f"s{k % 6}", ("female", "male")[k % 2], "neutral", 1.0
            )
            for k, i in enumerate(labels)
        ),
    )
    split = Split("fold1", train.ids, dev.ids, test.ids)
    task = Task("emotion", CLASSES, labels, (split,), "fixed")
    layout = RunLayout(tmp_path)

    def run(**params):
        estimator = HeadClassifier(**{**REFERENCE_PARAMS, "epochs": 1, **params})
        return cross_validate(
            estimator,
            task,
            [split],
            train.source,
            manifest=manifest,
            layout=layout,
            model="fake",
            store_info={"group": "fake"},
        )

    first = run(precision="bf16", compile=False)
    head = json.loads(layout.head_path("fake", "emotion", "fold1").with_suffix(".json").read_text())
    for record in (
        first.metrics["precision"],
        json.loads((first.directory / "config.json").read_text())["precision"],
        json.loads((first.directory / "metrics.json").read_text())["folds"][0]["precision"],
        head["precision"],
    ):
        assert record["precision"] == "bf16" and record["requested"] == "bf16"
    assert run(precision="bf16", compile=False).resumed == ("fold1",)
    assert run(precision="fp32").resumed == ()  # another training path: trained again
    again = run(precision="auto")  # auto resolves to float32 here: the same fold
    assert again.resumed == ("fold1",)
    assert again.metrics["precision"]["precision"] == "fp32"


# --------------------------------------------------------------------- options wiring
def test_the_commands_and_the_run_configuration_pass_precision_on(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from trustser.cli import heads as cli_heads
    from trustser.cli import mitigate as cli_mitigate
    from trustser.cli.main import app
    from trustser.heads.training import FitResult
    from trustser.pipeline.config import PipelineConfigError, load_config

    seen: dict[str, object] = {}

    def fake_fit(store, name, estimator, **options):
        seen["heads"] = estimator.get_params()
        return FitResult(store=store, backbone=name, data_mode="memory")

    def fake_fitted(targets, variants_of, **settings):
        seen["mitigate"] = targets
        return iter(())

    monkeypatch.setattr(cli_heads, "_targets", lambda *args: (tmp_path, tmp_path, ["fake"]))
    monkeypatch.setattr(cli_heads, "fit_heads", fake_fit)
    monkeypatch.setattr(cli_mitigate, "_fitted", fake_fitted)
    runner = CliRunner()
    result = runner.invoke(app, ["heads", "fit", "--precision", "bf16", "--no-compile"])
    assert result.exit_code == 0, result.output
    assert (seen["heads"]["precision"], seen["heads"]["compile"]) == ("bf16", False)
    result = runner.invoke(app, ["heads", "fit"])
    assert (seen["heads"]["precision"], seen["heads"]["compile"]) == ("auto", True)
    result = runner.invoke(app, ["mitigate", "privacy", "--lambda", "0.3", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    assert (seen["mitigate"].precision, seen["mitigate"].compile) == ("fp32", True)

    config = tmp_path / "run.toml"
    body = 'backbones = ["tiny:whisper"]\n[[corpora]]\nname = "emodb"\nroot = "x"\n[heads]\n'
    config.write_text(body + 'precision = "bf16"\ncompile = false\n')
    heads = load_config(config).heads
    assert (heads.precision, heads.compile) == ("bf16", False)
    config.write_text(body + 'precision = "half"\n')
    with pytest.raises(ValueError, match=r"heads\.precision"):
        load_config(config)
    config.write_text(body + 'compile = "yes"\n')
    with pytest.raises(PipelineConfigError, match=r"heads\.compile"):
        load_config(config)


def test_the_profile_names_the_precision_only_where_recorded():
    from trustser.profile.collect import _training
    from trustser.profile.tables import _trained

    record = resolve_precision("bf16", torch.device("cpu"), "heads").record()
    training = _training({"precision": record, "trainable_parameters": 10})
    assert training["precision"] == "bf16 (compiled)"
    assert _trained(training) == "head only (backbone frozen); bf16 (compiled)"
    assert "precision" not in _training({})  # runs made before it was recorded
    float32 = _training({"precision": {"precision": "fp32"}})
    assert _trained(float32) == "head only (backbone frozen)"
    assert _training({"precision": [record, {"precision": "fp32"}]})["precision"] == "mixed"


if __name__ == "__main__" and sys.argv[1:] == ["--write-reference"]:
    torch.set_num_threads(1)
    REFERENCE.write_text(json.dumps(reference_record(), indent=1) + "\n")
    print(f"wrote {REFERENCE}")
