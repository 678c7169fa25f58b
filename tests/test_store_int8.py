"""The 8-bit store (format version 3): quantisation bounds, layout, versions, verify, extract."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from trustser.cli.main import app
from trustser.extract import extract, plan_clips
from trustser.manifest import Fold, Manifest, Utterance
from trustser.store import (
    FORMAT_VERSION,
    MissingUnitDataError,
    StoreError,
    StoreFormatError,
    StoreWriter,
    open_store,
    verify_store,
)
from trustser.store.format import frame_row_bytes
from trustser.store.info import store_info
from trustser.store.quantize import INT8_LEVELS, dequantize, quantize, quantize_torch

V2_STORE = Path(__file__).parent / "data" / "store-v2"
L, D = 3, 4
# The toy configuration of tests/test_store_format.py, which also wrote tests/data/store-v2.
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
INT8 = {**PROVENANCE, "dtype": "int8"}


def clips(manifest: Manifest) -> dict:
    return plan_clips(manifest.utterances, frame_count=lambda n: n // 320, max_seconds=6.0)


def features(utt_id: str, frames: int) -> np.ndarray:
    """Deterministic ``[L, T, D]`` values exactly representable in float16."""
    seed = int.from_bytes(utt_id.encode()[:8].ljust(8, b"\0"), "little")
    return np.random.default_rng(seed).integers(-64, 64, size=(L, frames, D)).astype(np.float32) / 8


def utterances(prefix: str, seconds: list[float], *, speakers: int = 4) -> list[Utterance]:
    return [
        Utterance(
            id=f"{prefix}{i:03d}",
            path=f"/nonexistent/{prefix}{i}.wav",
            speaker=f"{prefix}spk{i % speakers}",
            gender=("female", "male")[i % 2],
            emotion=("neutral", "happy", "sad", "angry")[i % 4],
            duration=s,
            sample_rate=16_000,
            num_frames=int(s * 16_000),
        )
        for i, s in enumerate(seconds)
    ]


def make_manifest(corpus: str, utts: list[Utterance]) -> Manifest:
    speakers = sorted({u.speaker for u in utts})
    folds = (Fold("fold1", "speaker", tuple(speakers[2:]), (speakers[1],), (speakers[0],)),)
    return Manifest(corpus=corpus, utterances=tuple(utts), folds=folds)


def fill(writer: StoreWriter, parts, *, skip: set[str] = frozenset()) -> None:
    for part, unit in writer.pending_units(parts):
        buffer = writer.buffer(part, unit)
        for utt in buffer.ids:
            _, frames, reason = buffer.planned(utt)
            if utt in skip or reason:
                buffer.skip(utt, reason or "test skip")
            else:
                buffer.put(utt, features(utt, frames))
        writer.commit(buffer)


def _within_half_a_scale(x: np.ndarray, codes: np.ndarray, scales: np.ndarray) -> None:
    error = np.abs(x - dequantize(codes, scales))
    bound = 0.5 * scales.astype(np.float32)[..., None] * (1 + 1e-6) + 1e-30
    assert np.all(error <= bound), float((error - bound).max())


# -- quantisation ----------------------------------------------------------------------------


def test_every_value_comes_back_within_half_its_rows_scale():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((200, 5, 64)) * rng.lognormal(0, 3, size=(200, 5, 1))).astype(
        np.float32
    )
    codes, scales = quantize(x)
    assert codes.dtype == np.int8 and scales.dtype == np.float16 and scales.shape == (200, 5)
    _within_half_a_scale(x, codes, scales)
    assert codes.min() >= -INT8_LEVELS  # symmetric: -128 is never written
    # the scale never falls below max|x| / 127 (no clipping) and is at most one float16 step above
    peak = np.abs(x).max(-1)
    assert np.all(scales.astype(np.float32) * INT8_LEVELS >= peak)
    assert np.all(scales.astype(np.float32) <= peak / INT8_LEVELS * (1 + 2**-10) + 1e-7)
    normal = scales >= 2**-14  # a float16 subnormal scale is coarser than one step
    assert normal.mean() > 0.9
    assert np.all(np.abs(codes).max(-1)[normal] == INT8_LEVELS)  # the peak uses the whole range


def test_zero_tiny_and_huge_rows():
    x = np.zeros((4, 2, 8), dtype=np.float32)
    x[1, 0] = 1e-9  # below float16's smallest scale: a subnormal scale, still within bound
    x[2, 1, 3] = -3e6  # a huge value whose scale still fits float16
    x[3, 0] = np.linspace(-1, 1, 8)
    codes, scales = quantize(x)
    assert scales[0].tolist() == [0, 0] and not codes[0].any()
    assert np.array_equal(dequantize(codes, scales)[0], x[0])
    _within_half_a_scale(x, codes, scales)
    assert scales[1, 0] > 0 and np.isfinite(scales).all()


def test_an_outlier_dimension_only_coarsens_its_own_row():
    # A transformer's outlier dimension: huge in one frame of one layer. With one scale per
    # tensor every other value would lose ~all its bits; per row only that row's scale grows.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 3, 384)).astype(np.float32)
    x[7, 1, 42] = 2000.0
    codes, scales = quantize(x)
    error = np.abs(x - dequantize(codes, scales))
    others = np.ones((50, 3), dtype=bool)
    others[7, 1] = False
    assert error[others].max() <= np.abs(x).max(-1)[others].max() / 254 * (1 + 1e-3)
    assert error[others].max() < 0.02
    per_tensor = np.abs(x).max() / INT8_LEVELS  # the scale one tensor-wide scheme would use
    assert per_tensor / 2 > 100 * error[others].max()


def test_numpy_and_torch_give_the_same_bytes():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((30, 4, 33)) * rng.lognormal(0, 4, size=(30, 4, 1))).astype(np.float32)
    x[3] = 0
    codes, scales = quantize(x)
    t_codes, t_scales = quantize_torch(torch.from_numpy(x))
    assert np.array_equal(codes, t_codes.numpy())
    assert np.array_equal(scales.view(np.uint16), t_scales.numpy().view(np.uint16))


# -- store layout ----------------------------------------------------------------------------


@pytest.fixture
def int8_store(tmp_path: Path):
    rng = np.random.default_rng(0)
    manifest = make_manifest("toy", utterances("a", list(rng.uniform(0.3, 2.0, 13).round(3))))
    path = tmp_path / "q.zarr"
    writer = StoreWriter(path, "fake", provenance=INT8, durable=False)
    fill(
        writer, writer.add_manifest(manifest, clips=clips(manifest), shard_mb=0.001), skip={"a004"}
    )
    return path, manifest


def test_int8_round_trip_layout_and_in_memory_form(int8_store):
    path, _ = int8_store
    root = json.loads((path / "zarr.json").read_text())["attributes"]["trustser_store"]
    assert root["format_version"] == FORMAT_VERSION == 4
    group = open_store(path).group("fake")
    assert group.dtype == "int8" and "a004" in group.skipped
    part = group.parts[0]
    assert part.quantized and part.unit_arrays == ("emb", "scales", "means")
    assert str(part.emb.dtype) == "int8" and part.scales_array.shape == (part.emb.shape[0], 3)
    assert part.records[0]["files"] == ["emb", "scales", "means"]
    for utt in group.ids:
        x = features(utt, int(group.num_frames([utt])[0]))  # [L, T, D]
        codes, scales = quantize(x.transpose(1, 0, 2))
        np.testing.assert_array_equal(
            group.frames(utt), dequantize(codes, scales).transpose(1, 0, 2)
        )
        np.testing.assert_allclose(group.means([utt])[0], x.mean(1), rtol=1e-6)  # before the cast
    memory = group.load()
    assert memory.rows.dtype == np.int8 and memory.scales.dtype == np.float16
    frames = int(group.num_frames().sum())
    assert (
        memory.nbytes
        == group.nbytes()
        == frames * frame_row_bytes("int8", 3, 4) + len(group) * 3 * 4 * 4
    )
    wide = group.load(dtype="float32")
    for utt in group.ids:
        np.testing.assert_array_equal(memory.frames(utt), group.frames(utt))
        np.testing.assert_array_equal(wide.frames(utt), group.frames(utt))
    streamed = list(group.batches(batch_size=4, shuffle=True, seed=3))
    in_ram = list(memory.batches(batch_size=4, shuffle=True, seed=3))
    for a, b in zip(streamed, in_ram, strict=True):
        assert (
            a.ids == b.ids and torch.equal(a.hidden, b.hidden) and a.hidden.dtype == torch.float32
        )
    with pytest.raises(StoreError, match="cannot load group 'fake' as 'int4'"):
        group.load(dtype="int4")


def test_compressed_int8_reads_equal_uncompressed(tmp_path: Path, int8_store):
    path, manifest = int8_store
    other = tmp_path / "z.zarr"
    writer = StoreWriter(other, "fake", provenance={**INT8, "codec": "zstd"}, durable=False)
    fill(
        writer, writer.add_manifest(manifest, clips=clips(manifest), shard_mb=0.001), skip={"a004"}
    )
    raw, packed = open_store(path).group("fake"), open_store(other).group("fake")
    assert raw.parts[0]._raw_scales is not None and packed.parts[0]._raw_scales is None
    for utt in raw.ids:
        np.testing.assert_array_equal(raw.frames(utt), packed.frames(utt))
    assert np.array_equal(raw.load().scales, packed.load().scales)


def test_half_the_bytes_of_float16(tmp_path: Path):
    manifest = make_manifest("toy", utterances("b", [4.0] * 40))
    sizes = {}
    for dtype in ("float16", "int8"):
        prov = {**PROVENANCE, "dtype": dtype, "num_layers": 5, "dim": 384}
        writer = StoreWriter(tmp_path / f"{dtype}.zarr", "fake", provenance=prov, durable=False)
        parts = writer.add_manifest(manifest, clips=clips(manifest))
        for part, unit in writer.pending_units(parts):
            buffer = writer.buffer(part, unit)
            for utt in buffer.ids:
                _, frames, _ = buffer.planned(utt)
                rng = np.random.default_rng(len(utt))
                buffer.put(utt, rng.standard_normal((5, frames, 384)).astype(np.float32))
            writer.commit(buffer)
        part = open_store(tmp_path / f"{dtype}.zarr").group("fake").parts[0]
        sizes[dtype] = sum(f.stat().st_size for f in part.path.rglob("*") if f.is_file())
    # int8 rows are D + 2 bytes per layer instead of 2·D; the float32 means are the same
    assert sizes["int8"] <= 0.52 * sizes["float16"]


# -- versions and refusals -------------------------------------------------------------------


def test_a_version_2_store_still_opens_and_a_writer_upgrades_it(tmp_path: Path):
    """tests/data/store-v2 was written by the format-version-2 writer (float16, 6 clips of the
    ``features`` values of test_store_format, ``v002`` skipped)."""
    root = json.loads((V2_STORE / "zarr.json").read_text())["attributes"]["trustser_store"]
    assert root["format_version"] == 2
    group = open_store(V2_STORE).group("fake")
    assert group.dtype == "float16" and sorted(group.skipped) == ["v002"] and len(group) == 5
    for utt in group.ids:
        x = features(utt, int(group.num_frames([utt])[0]))
        np.testing.assert_array_equal(group.frames(utt), x)  # exact in float16
    assert all(not p.quantized and p.unit_arrays == ("emb", "means") for p in group.parts)
    assert verify_store(V2_STORE, deep=True).groups[0].status == "complete"
    copy = tmp_path / "v2.zarr"
    shutil.copytree(V2_STORE, copy)
    more = make_manifest("toy", utterances("w", [0.5, 0.8]))
    writer = StoreWriter(copy, "fake", provenance={**PROVENANCE, "store_format_version": 3})
    fill(writer, writer.add_manifest(more, clips=clips(more)))
    upgraded = json.loads((copy / "zarr.json").read_text())["attributes"]["trustser_store"]
    assert upgraded["format_version"] == FORMAT_VERSION and "upgraded" in upgraded
    group = open_store(copy).group("fake")
    assert {"v000", "w000", "w001"} <= set(group.ids)
    np.testing.assert_array_equal(group.frames("v000"), features("v000", group._length("v000")))


def _edit(path: Path, change) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def test_unknown_versions_object_dtypes_and_bad_scales_are_refused(int8_store, tmp_path: Path):
    path, _ = int8_store
    for name, change, message in [
        ("v99", lambda d: None, "format_version 99"),
        ("object", lambda d: None, "data type 'object' is refused"),
        ("scales", lambda d: None, "needs float16 scales"),
    ]:
        copy = tmp_path / name
        shutil.copytree(path, copy)
        part = next(p for p in (copy / "fake").iterdir() if p.name.startswith("part-"))
        if name == "v99":
            _edit(
                copy / "zarr.json",
                lambda d: d["attributes"]["trustser_store"].update(format_version=99),
            )
        elif name == "object":
            _edit(part / "emb" / "zarr.json", lambda d: d.update(data_type="object"))
        else:
            _edit(part / "scales" / "zarr.json", lambda d: d.update(data_type="float32"))
        with pytest.raises(StoreFormatError, match=message):
            open_store(copy).group("fake")
        del change


# -- verify, info, damage --------------------------------------------------------------------


def test_verify_deep_and_info_on_an_int8_store(int8_store, tmp_path: Path):
    path, _ = int8_store
    report = verify_store(path, deep=True)
    assert report.groups[0].status == "complete" and report.groups[0].deep_checked == 12
    (info,) = store_info(path)
    assert info.summary["dtype"] == "int8" and info.summary["clips_done"] == 12
    runner = CliRunner()
    checked = runner.invoke(app, ["store", "verify", str(path), "--deep"])
    assert checked.exit_code == 0, checked.output
    shown = runner.invoke(app, ["store", "info", str(path)])
    assert shown.exit_code == 0 and "int8" in shown.output

    # scales that no longer match the frames' time-means are found by the deep check
    corrupt = tmp_path / "corrupt.zarr"
    shutil.copytree(path, corrupt)
    part = open_store(corrupt).group("fake").parts[0]
    victim = next(u for u in range(part.num_units) if part.records[u]["frames"])
    chunk = part.unit_file(victim, "scales")
    values = np.frombuffer(chunk.read_bytes(), dtype="<f2").copy()
    chunk.write_bytes((values * np.float16(4)).astype("<f2").tobytes())
    deep = verify_store(corrupt, deep=True).groups[0]
    assert deep.status == "damaged" and any("time-mean" in p for p in deep.problems)

    # a done unit whose scales chunk is gone is damage, quick or deep, and never read as zeros
    chunk.unlink()
    quick = verify_store(corrupt).groups[0]
    assert quick.status == "damaged" and quick.damaged_units == [f"{part.key}/unit {victim}"]
    group = open_store(corrupt).group("fake")
    utt = part.ids[part.unit_clips(victim)[0]]
    with pytest.raises(MissingUnitDataError, match="scales"):
        group.frames(utt)


# -- extraction --------------------------------------------------------------------------------


def test_extract_int8_matches_float32_within_the_bound(tmp_path: Path, toy_manifest):
    stores = {}
    for dtype in ("float32", "int8"):
        stores[dtype] = tmp_path / f"{dtype}.zarr"
        extract(
            toy_manifest, stores[dtype], "tiny:whisper", device="cpu", dtype=dtype, progress=False
        )
    exact = open_store(stores["float32"]).group("tiny:whisper")
    coded = open_store(stores["int8"]).group("tiny:whisper")
    assert coded.dtype == "int8" and coded.ids == exact.ids
    for utt in exact.ids[:6]:
        x = exact.frames(utt)  # [L, T, D]
        codes, scales = quantize(x.transpose(1, 0, 2))
        np.testing.assert_array_equal(
            coded.frames(utt), dequantize(codes, scales).transpose(1, 0, 2)
        )
        np.testing.assert_array_equal(coded.means([utt]), exact.means([utt]))
    assert verify_store(stores["int8"], deep=True).complete


def test_cli_refuses_an_unknown_dtype(tmp_path: Path, toy_manifest):
    from trustser.manifest import write_manifest

    manifest = write_manifest(toy_manifest, tmp_path / "m.jsonl")
    result = CliRunner().invoke(
        app,
        [
            "extract",
            "-m",
            str(manifest),
            "-s",
            str(tmp_path / "c.zarr"),
            "-b",
            "tiny:whisper",
            "--dtype",
            "int4",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 2
    assert "dtype='int4' is not supported" in result.output and "'int8'" in result.output
    assert not (tmp_path / "c.zarr").exists()
