"""In-RAM training keeps the stored dtype: float16 or int8 codes with scales, widened per batch.

A toy corpus through tiny:whisper into float16 and int8 stores: ``PackedFeatures.from_source``
holds the store's own bytes, every batch it widens equals the store's float32 values exactly,
training on it equals training on those values held as float32, and the fine-tuning variant
reads an int8 store through the same path.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trustser.extract import extract
from trustser.heads import training
from trustser.heads.data import FeatureSet, PackedFeatures
from trustser.heads.estimator import HeadClassifier
from trustser.heads.finetune import padded_batches
from trustser.heads.tasks import build_task, select_splits
from trustser.heads.training import choose_data_mode
from trustser.store import open_store
from trustser.store.format import frame_row_bytes
from trustser.variants import fit_variant

BACKBONE = "tiny:whisper"


@pytest.fixture(scope="module")
def stores(tmp_path_factory, toy_manifest_factory):
    root = tmp_path_factory.mktemp("memory")
    manifest = toy_manifest_factory(root / "toy")
    out = {}
    for dtype in ("float16", "int8"):
        out[dtype] = root / f"{dtype}.zarr"
        extract(manifest, out[dtype], BACKBONE, device="cpu", dtype=dtype, progress=False)
    return out


def _group(store):
    return open_store(store).group(BACKBONE)


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_packed_features_hold_the_stored_dtype_and_widen_exactly(stores, dtype):
    group = _group(stores[dtype])
    ids = group.ids
    packed = PackedFeatures.from_source(group, ids)
    assert packed.dtype == {"float16": torch.float16, "int8": torch.int8}[dtype]
    assert (packed.scales is not None) == (dtype == "int8")
    frames = int(group.num_frames(ids).sum())
    stored = frames * frame_row_bytes(dtype, group.num_layers, group.dim)
    assert packed.nbytes == stored
    assert choose_data_mode(group, ids, mode="memory") == ("memory", stored)
    for utt in ids[:5]:
        np.testing.assert_array_equal(packed.clip(utt).numpy(), group.frames(utt))
    streamed = {b.ids[0]: b for b in group.batches(ids[:6], batch_size=1)}
    for batch in packed.batches(ids[:6], batch_size=1, shuffle=False):
        assert batch.hidden.dtype == torch.float32
        assert torch.equal(batch.hidden, streamed[batch.ids[0]].hidden)
    # a standardised copy shares the values and standardises as it widens
    mean, std = packed.statistics(ids)
    copy = packed.standardized(mean, std, ids=ids)
    assert copy.rows is packed.rows and copy.nbytes == packed.nbytes
    raw = next(packed.packed_batches(ids[:4], shuffle=False)).frames
    done = next(copy.packed_batches(ids[:4], shuffle=False)).frames
    expected = (raw - mean[:, None]) * (1 / std.clamp_min(1e-5))[:, None]
    torch.testing.assert_close(done, expected, rtol=0, atol=1e-5)
    index = torch.tensor([0, 3, 7])  # frames of the first clip
    first = packed.clip(ids[0])[:2, index]  # [2, 3, D]
    expected = (first - mean[:2, None]) / std[:2, None].clamp_min(1e-5)
    torch.testing.assert_close(copy.gather(index, 2), expected, rtol=0, atol=1e-5)


def test_training_on_int8_codes_equals_training_on_their_float32_values(stores):
    group = _group(stores["int8"])
    task = build_task("emotion", group.manifest(), seed=0)
    split = select_splits(task, "1")[0]
    packed = PackedFeatures.from_source(group, group.ids)
    wide = PackedFeatures.from_arrays({utt: group.frames(utt) for utt in group.ids})
    assert wide.dtype == torch.float32 and packed.nbytes * 3 < wide.nbytes
    probabilities = []
    for source in (packed, wide):
        train = FeatureSet(source, split.train, tuple(task.label_of[i] for i in split.train))
        dev = FeatureSet(source, split.dev, tuple(task.label_of[i] for i in split.dev))
        head = HeadClassifier(epochs=3, batch_size=8, lr=1e-2, device="cpu", seed=0)
        head.fit(train, dev)
        probabilities.append(head.predict_proba(FeatureSet(source, split.test)))
    np.testing.assert_array_equal(probabilities[0], probabilities[1])


def test_fit_heads_in_memory_builds_int8_features_and_finetuning_reads_them(
    stores, tmp_path, monkeypatch
):
    built = []
    original = PackedFeatures.from_source.__func__

    def spy(cls, source, ids, **kwargs):
        packed = original(cls, source, ids, **kwargs)
        built.append(packed)
        return packed

    monkeypatch.setattr(training.PackedFeatures, "from_source", classmethod(spy))
    result = fit_variant(
        stores["int8"],
        "tiny:whisper@top1",
        HeadClassifier(epochs=2, device="cpu", lr=1e-2),
        tasks=tuple(["emotion"]),
        runs=tmp_path,
        folds="1",
        data="memory",
        options={"block_lr": 1e-2},
    )
    (emotion,) = result.tasks
    assert emotion.data_mode == "memory" and result.variant == f"{BACKBONE}@top1"
    assert built and built[0].dtype == torch.int8
    assert (tmp_path / "tiny-whisper@top1" / "emotion" / "metrics.json").is_file()
    # the fine-tuning batches from RAM equal those streamed from the int8 store
    group = _group(stores["int8"])
    ids = group.ids[:9]
    lower = group.num_layers - 1
    from_ram = list(padded_batches(built[0], ids, layers=lower, batch_size=4))
    from_disk = list(padded_batches(group, ids, layers=lower, batch_size=4))
    for a, b in zip(from_ram, from_disk, strict=True):
        assert a.ids == b.ids and torch.equal(a.hidden, b.hidden) and torch.equal(a.mask, b.mask)
