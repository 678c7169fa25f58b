"""The store format: layout planning, reader API, refusals, manifests, verify."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from trustser.extract import plan_clips
from trustser.manifest import Fold, Manifest, Utterance
from trustser.store import (
    MissingFeaturesError,
    ProvenanceMismatchError,
    StoreError,
    StoreFormatError,
    StoreWriter,
    open_store,
    plan_part,
    verify_store,
)
from trustser.store.plan import layout

L, D = 3, 4
PROVENANCE = {
    "backbone": "fake",
    "family": "fake",
    "weights_sha256": "0" * 64,
    "num_layers": L,
    "dim": D,
    "sample_rate": 16_000,
    "max_seconds": 6.0,
    "dtype": "float16",
    "codec": "none",
    "window": "trimmed",
}


def frame_count(samples: int) -> int:
    return samples // 320


def clips(manifest: Manifest) -> dict:
    """Extraction's plan of every clip (the facts the writer is given)."""
    return plan_clips(
        manifest.utterances, frame_count=frame_count, max_seconds=PROVENANCE["max_seconds"]
    )


def features(utt_id: str, frames: int) -> np.ndarray:
    """Deterministic ``[L, T, D]`` values exactly representable in float16."""
    seed = int.from_bytes(utt_id.encode()[:8].ljust(8, b"\0"), "little")
    return np.random.default_rng(seed).integers(-64, 64, size=(L, frames, D)).astype(np.float32) / 8


def utterances(prefix: str, seconds: list[float], *, speakers: int = 4) -> list[Utterance]:
    out = []
    for i, s in enumerate(seconds):
        n = int(s * 16_000)
        out.append(
            Utterance(
                id=f"{prefix}{i:03d}",
                path=f"/nonexistent/{prefix}{i}.wav",
                speaker=f"{prefix}spk{i % speakers}",
                gender=("female", "male")[i % 2],
                emotion=("neutral", "happy", "sad", "angry")[i % 4],
                duration=s,
                sample_rate=16_000,
                num_frames=n,
            )
        )
    return out


def make_manifest(corpus: str, utts: list[Utterance]) -> Manifest:
    speakers = sorted({u.speaker for u in utts})
    folds = (Fold("fold1", "speaker", tuple(speakers[2:]), (speakers[1],), (speakers[0],)),)
    return Manifest(corpus=corpus, utterances=tuple(utts), folds=folds)


def fill(writer: StoreWriter, parts, *, skip: set[str] = frozenset(), units=None) -> None:
    for part, unit in writer.pending_units(parts):
        if units is not None and unit not in units:
            continue
        buffer = writer.buffer(part, unit)
        for utt in buffer.ids:
            _, frames, reason = buffer.planned(utt)
            if utt in skip or reason:
                buffer.skip(utt, reason or "test skip")
            else:
                buffer.put(utt, features(utt, frames))
        writer.commit(buffer)


@pytest.fixture
def toy(tmp_path: Path):
    rng = np.random.default_rng(0)
    utts = utterances("a", list(rng.uniform(0.3, 2.0, size=13).round(3)))
    manifest = make_manifest("toy", utts)
    writer = StoreWriter(tmp_path / "s.zarr", "fake", provenance=PROVENANCE, durable=False)
    parts = writer.add_manifest(manifest, clips=clips(manifest), shard_mb=0.001)
    fill(writer, parts, skip={"a004"})
    return tmp_path / "s.zarr", manifest


def test_worked_example_of_the_format_doc():
    # docs/store-format.md §10: 1,000 clips of 4 s, L=13, D=768, float16, 64 MiB shards.
    S, C, F, offsets = layout([200] * 1000, bytes_per_frame=13 * 768 * 2, shard_bytes=64 * 2**20)
    assert (S, C, F) == (16, 64, 3200)
    assert offsets[-1] == 63 * 3200 and offsets[16] == 3200 and offsets[1] == 200
    assert np.all(np.diff(offsets) >= 0)


def test_plan_orders_by_length_keeps_clips_inside_their_shard(tmp_path: Path):
    utts = utterances("c", [1.0, 0.5, 2.0, 0.5, 1.5, 0.7])
    missing = Utterance(
        id="nohead",
        path=str(tmp_path / "gone.wav"),
        speaker="x",
        gender="male",
        emotion="sad",
        duration=1.0,
    )
    plan = plan_part(
        plan_clips([*utts, missing], frame_count=frame_count, max_seconds=1.2),
        bytes_per_frame=24,
        shard_mb=0.0002,
    )
    samples = plan.num_samples
    assert list(samples) == sorted(samples) and plan.ids[0] == "nohead"
    assert "no such file" in plan.plan_skipped["nohead"]
    assert samples.max() == int(1.2 * 16_000)  # cropped at max_seconds
    for i in range(plan.num_clips):
        k = i // plan.clips_per_unit
        assert k * plan.unit_frames <= plan.offsets[i]
        assert plan.offsets[i] + plan.num_frames[i] <= (k + 1) * plan.unit_frames
    assert plan.unit_frames % plan.chunk_frames == 0


def test_reader_round_trip(toy):
    path, manifest = toy
    group = open_store(path).group("fake")
    assert group.num_layers == L and group.dim == D and group.provenance["window"] == "trimmed"
    assert sorted(group.ids) == sorted(set(manifest.ids) - {"a004"})
    assert group.skipped == {"a004": "test skip"} and group.pending == []
    for utt in group.ids:
        frames = group.frames(utt)
        assert frames.dtype == np.float32
        np.testing.assert_array_equal(frames, features(utt, frames.shape[1]))
    means = group.means(group.ids[:5])
    assert means.shape == (5, L, D) and means.dtype == np.float32
    np.testing.assert_allclose(
        means[2], features(group.ids[2], group.frames(group.ids[2]).shape[1]).mean(1), rtol=1e-6
    )
    sub = group.manifest()
    assert sub.corpus == "toy" and sub.folds == manifest.folds and "a004" not in sub.ids
    assert sub.ids == [i for i in manifest.ids if i != "a004"]  # manifest order is kept


def test_batches_are_padded_masked_bucketed_and_deterministic(toy):
    path, _ = toy
    group = open_store(path).group("fake")
    batches = group.batches(batch_size=4)
    assert len(batches) == 3
    seen = []
    for batch in batches:
        assert batch.hidden.dtype == torch.float32 and batch.mask.dtype == torch.bool
        assert batch.hidden.shape[:3] == (len(batch), L, batch.lengths.max())
        assert torch.equal(batch.mask.sum(1), batch.lengths)
        for b, utt in enumerate(batch.ids):
            n = int(batch.lengths[b])
            np.testing.assert_array_equal(batch.hidden[b, :, :n].numpy(), group.frames(utt))
            assert not batch.hidden[b, :, n:].any()
        seen += batch.ids
    assert sorted(seen) == sorted(group.ids)
    lengths = [int(b.lengths.max()) for b in batches]
    assert lengths == sorted(lengths)  # unshuffled: shortest first
    first = [b.ids for b in group.batches(batch_size=4, shuffle=True, seed=3)]
    again = [b.ids for b in group.batches(batch_size=4, shuffle=True, seed=3)]
    other = [b.ids for b in group.batches(batch_size=4, shuffle=True, seed=4)]
    assert first == again and first != other
    memory = group.load()
    assert [b.ids for b in memory.batches(batch_size=4, shuffle=True, seed=3)] == first
    for a, b in zip(memory.batches(batch_size=5), group.batches(batch_size=5), strict=True):
        assert a.ids == b.ids and torch.equal(a.hidden, b.hidden)
    assert memory.rows.dtype == np.float16 and group.load(dtype="float32").rows.dtype == np.float32
    np.testing.assert_array_equal(memory.means(group.ids), group.means(group.ids))


def test_missing_features_name_the_reason(toy):
    group = open_store(toy[0]).group("fake")
    with pytest.raises(MissingFeaturesError, match="a004: skipped at extraction"):
        group.frames("a004")
    with pytest.raises(MissingFeaturesError, match="not in this group"):
        group.means(["zzz"])
    with pytest.raises(StoreError, match=r"no group 'other'.*groups: fake"):
        open_store(toy[0]).group("other")


def _edit_json(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def test_open_refuses_unknown_version_foreign_stores_and_unsafe_codecs(toy, tmp_path: Path):
    path, _ = toy
    with pytest.raises(StoreError, match="no embedding store"):
        open_store(tmp_path / "absent.zarr")
    part = next(p for p in (path / "fake").iterdir() if p.name.startswith("part-"))
    emb_meta = part / "emb" / "zarr.json"
    original = emb_meta.read_text()
    _edit_json(
        emb_meta,
        lambda d: d["codecs"][0]["configuration"]["codecs"].append({"name": "numcodecs.pickle"}),
    )
    with pytest.raises(StoreFormatError, match=r"codec 'numcodecs\.pickle' is refused"):
        open_store(path).group("fake")
    emb_meta.write_text(original)
    _edit_json(part / "num_frames" / "zarr.json", lambda d: d.update(data_type="string"))
    with pytest.raises(StoreFormatError, match="data type 'string' is refused"):
        open_store(path).group("fake")
    _edit_json(part / "zarr.json", lambda d: d["attributes"]["trustser_part"].pop("unit_frames"))
    with pytest.raises(StoreFormatError, match="unit_frames"):
        open_store(path).group("fake")
    _edit_json(
        path / "zarr.json", lambda d: d["attributes"]["trustser_store"].update(format_version=99)
    )
    with pytest.raises(StoreFormatError, match="format_version 99"):
        open_store(path)
    _edit_json(path / "zarr.json", lambda d: d["attributes"].clear())
    with pytest.raises(StoreFormatError, match="not a trustser embedding store"):
        open_store(path)


def test_a_group_never_mixes_configurations(toy):
    path, _ = toy
    for key, value in (
        ("window", "30s"),
        ("max_seconds", 3.0),
        ("dtype", "float32"),
        ("weights_sha256", "1" * 64),
    ):
        with pytest.raises(ProvenanceMismatchError, match=f"{key}: .* in the store, .* requested"):
            StoreWriter(path, "fake", provenance={**PROVENANCE, key: value})
    StoreWriter(
        path, "fake", provenance={**PROVENANCE, "versions": {"torch": "other"}}
    )  # run facts are not compared
    StoreWriter(path, "fake-30s", provenance={**PROVENANCE, "window": "30s"})
    assert open_store(path).backbones == ["fake", "fake-30s"]


def test_corpora_merge_by_id_and_the_latest_manifest_wins(toy):
    path, manifest = toy
    writer = StoreWriter(path, "fake", provenance=PROVENANCE, durable=False)
    other = make_manifest("other", utterances("b", [0.5, 0.8, 1.1, 0.6]))
    fill(writer, writer.add_manifest(other, clips=clips(other), shard_mb=0.001))
    group = open_store(path).group("fake")
    assert group.corpora == ["other", "toy"] and len(group.parts) == 2
    with pytest.raises(StoreError, match="several corpora"):
        group.manifest()
    assert group.manifest("other").ids == other.ids
    # The same corpus again, one clip added and a label fixed: only the new clip is planned.
    fixed = [
        u if u.id != "a001" else Utterance(**{**u.to_dict(), "emotion": "angry"}) for u in manifest
    ]
    grown = make_manifest("toy", [*fixed, *utterances("z", [0.9])])
    parts = writer.add_manifest(grown, clips=clips(grown), shard_mb=0.001)
    assert len(parts) == 2  # the old toy part and the new one
    fill(writer, parts)
    group = open_store(path).group("fake")
    latest = group.manifest("toy")
    assert "z000" in latest.ids and latest["a001"].emotion == "angry"
    # Audio that changed length under an id already extracted is refused.
    changed = make_manifest(
        "toy",
        [
            Utterance(**{**u.to_dict(), "num_frames": 99_999}) if u.id == "a002" else u
            for u in manifest
        ],
    )
    with pytest.raises(StoreError, match=r"a002: planned .* samples, the audio now gives"):
        writer.add_manifest(changed, clips=clips(changed))


def test_verify_reports_missing_units_and_damage(tmp_path: Path):
    manifest = make_manifest("toy", utterances("a", [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2]))
    writer = StoreWriter(tmp_path / "s.zarr", "fake", provenance=PROVENANCE, durable=False)
    parts = writer.add_manifest(manifest, clips=clips(manifest), shard_mb=0.0003)
    assert parts[0].num_units >= 3
    fill(writer, parts, units={0, 2})
    extra = utterances("q", [0.5])
    report = verify_store(
        tmp_path / "s.zarr", manifest=Manifest("toy", (*manifest.utterances, *extra))
    )
    (group,) = report.groups
    assert not report.complete and report.exit_code == 1
    assert "part-" in group.missing_units[0] and group.missing and group.not_extracted == ["q000"]
    assert group.status == "incomplete"
    fill(writer, writer.group().parts)
    report = verify_store(tmp_path / "s.zarr", deep=True)
    assert report.complete and report.groups[0].deep_checked == len(manifest)
    assert report.groups[0].status == "complete"
    part = writer.group().parts[0]
    means = np.asarray(part.means_array[:])
    means[0] += 1.0
    import zarr

    zarr.open_array(part.path / "means", mode="r+")[:] = means
    report = verify_store(tmp_path / "s.zarr", deep=True)
    assert any("time-mean disagrees" in p for p in report.groups[0].problems)
    assert report.groups[0].status == "damaged"


def test_fast_shard_reads_equal_zarr_reads_and_check_the_index(toy, tmp_path: Path):
    path, _ = toy
    group = open_store(path).group("fake")
    for part in group.parts:
        assert part._raw is not None  # uncompressed: the direct shard reader is used
        for index in range(len(part.ids)):
            start, count = int(part.offsets[index]), int(part.num_frames[index])
            np.testing.assert_array_equal(part.rows(index), part.emb[start : start + count])
    zstd = StoreWriter(
        tmp_path / "z.zarr", "fake", provenance={**PROVENANCE, "codec": "zstd"}, durable=False
    )
    small = make_manifest("toy", utterances("a", [0.5, 1.5, 0.9, 1.2]))
    fill(
        zstd,
        zstd.add_manifest(small, clips=clips(small)),
    )
    zgroup = open_store(tmp_path / "z.zarr").group("fake")
    assert zgroup.parts[0]._raw is None
    for utt in zgroup.ids:
        np.testing.assert_array_equal(
            zgroup.frames(utt), features(utt, zgroup.num_frames([utt])[0])
        )
    shard = next((path / "fake").glob("part-*/emb/c/*/0/0"))
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF
    shard.write_bytes(bytes(data))
    unit = int(shard.parts[-3])
    part = open_store(path).group("fake").parts[0]
    victim = next(i for i in part.unit_clips(unit) if part.num_frames[i])
    with pytest.raises(StoreFormatError, match="CRC32C"):
        part.rows(victim)
