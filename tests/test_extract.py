"""`trustser extract`: features, skipped audio, resuming, ranks, kill -9, concurrent writers, CLI.

A small deterministic backbone defined here keeps these tests fast; tests/test_extract_backbones.py
runs the real tiny model families. Subprocess tests load this file to get the same backbone.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import zarr
from torch import nn

from trustser.audio import audio_info, load_audio
from trustser.backbones.base import Backbone, BackboneSpec
from trustser.extract import EXIT_SKIPPED, ExtractionError, extract, resolve_rank
from trustser.manifest import Fold, Manifest, Utterance, write_manifest
from trustser.store import ProvenanceMismatchError, open_store, verify_store

SHARD_MB = 0.004  # about two clips per unit: many units, many kill points
GROUP = "fake-frames"  # safe_name("fake:frames")


class FrameBackbone(Backbone):
    """Each 20 ms frame → ``L`` fixed random projections; padding never reaches a real frame."""

    def __init__(self, *, sleep: float = 0.0, num_layers: int = 3, dim: int = 8) -> None:
        super().__init__()
        self.spec = BackboneSpec(
            name="fake:frames", family="fake", source="random", num_layers=num_layers, dim=dim
        )
        self.num_layers, self.dim, self.frame_rate = num_layers, dim, 50.0
        generator = torch.Generator().manual_seed(0)
        self.proj = nn.Parameter(torch.randn(num_layers, 320, dim, generator=generator) * 0.1)
        self.sleep = sleep
        self.freeze()

    def frame_count(self, num_samples: int) -> int:
        return num_samples // 320

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor):
        if self.sleep:
            time.sleep(self.sleep)
        frames = lengths // 320
        t_max = int(frames.max())
        windows = waveforms[:, : t_max * 320].reshape(len(waveforms), t_max, 320)
        hidden = torch.tanh(torch.einsum("btk,lkd->bltd", windows, self.proj))
        mask = torch.arange(t_max, device=frames.device)[None, :] < frames[:, None]
        return hidden * mask[:, None, :, None], frames


def run_extraction(store: str, manifest: str, rank: str, world_size: str, sleep: str) -> None:
    """Entry point of the subprocess tests (see ``_spawn``)."""
    torch.set_num_threads(1)
    extract(
        manifest,
        store,
        FrameBackbone(sleep=float(sleep)),
        shard_mb=SHARD_MB,
        rank=int(rank),
        world_size=int(world_size),
        num_workers=1,
        progress=False,
    )


def _write(
    path: Path, seconds: float, rate: int = 16_000, channels: int = 1, seed: int = 0
) -> Path:
    rng = np.random.default_rng(seed)
    data = (0.2 * rng.standard_normal((int(seconds * rate), channels))).astype(np.float32)
    sf.write(str(path), data, rate)
    return path


def _utterance(path: Path, index: int, *, header: tuple[int, int] | None = None) -> Utterance:
    if header is None:
        info = audio_info(path)
        header = (info.num_frames, info.sample_rate)
    return Utterance(
        id=f"c{index:03d}",
        path=str(path),
        speaker=f"spk{index % 6}",
        gender=("female", "male")[index % 2],
        emotion=("neutral", "happy", "sad", "angry")[index % 4],
        duration=header[0] / header[1],
        num_frames=header[0],
        sample_rate=header[1],
    )


def make_corpus(root: Path, count: int = 24) -> Path:
    """Clips of 0.3–2.5 s (two resampled, one stereo) plus an empty, a missing and a too-short file."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    utts = []
    for i in range(count):
        rate = 8_000 if i == 3 else 22_050 if i == 5 else 16_000
        path = _write(
            root / f"c{i:03d}.wav", float(rng.uniform(0.3, 2.5)), rate, 2 if i == 4 else 1, seed=i
        )
        utts.append(_utterance(path, i))
    (root / "empty.wav").write_bytes(b"")
    utts.append(_utterance(root / "empty.wav", count, header=(16_000, 16_000)))
    utts.append(_utterance(root / "gone.wav", count + 1, header=(20_000, 16_000)))
    utts.append(_utterance(_write(root / "short.wav", 0.01), count + 2))
    speakers = [f"spk{i}" for i in range(6)]
    folds = (Fold("fold1", "speaker", tuple(speakers[2:]), (speakers[1],), (speakers[0],)),)
    return write_manifest(Manifest("toy", tuple(utts), folds=folds), root / "manifest.jsonl")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def reference(corpus: Path, tmp_path_factory):
    """One uninterrupted single-process run (one thread, like the subprocesses)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = tmp_path_factory.mktemp("ref") / "ref.zarr"
        summary = extract(
            corpus, path, FrameBackbone(), shard_mb=SHARD_MB, num_workers=1, progress=False
        )
    finally:
        torch.set_num_threads(threads)
    return path, summary


def store_arrays(path: Path) -> dict:
    """Everything a run writes, for bit-exact comparison of two stores."""
    group = open_store(path).group(GROUP)
    out = {"ids": sorted(group.ids), "skipped": group.skipped, "pending": group.pending}
    for part in group.parts:
        for name in ("emb", "means", "offsets", "num_frames", "num_samples"):
            out[(part.key, name)] = zarr.open_array(part.path / name, mode="r")[:]
    return out


def assert_same_store(a: Path, b: Path) -> None:
    left, right = store_arrays(a), store_arrays(b)
    assert left.keys() == right.keys()
    for key in left:
        if isinstance(left[key], np.ndarray):
            assert np.array_equal(left[key], right[key]), key
        else:
            assert left[key] == right[key], key


def test_rank_comes_from_arguments_torchrun_or_slurm(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert resolve_rank() == (0, 1)
    monkeypatch.setenv("SLURM_PROCID", "2")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert resolve_rank() == (2, 4)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert resolve_rank() == (1, 2)
    assert resolve_rank(0, 3) == (0, 3)
    with pytest.raises(ExtractionError, match="rank 3 is outside"):
        resolve_rank(3, 3)


def test_one_gpu_per_local_rank_under_torchrun(monkeypatch):
    from trustser.extract import _extraction_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("LOCAL_RANK", "5")
    assert _extraction_device("auto", 8) == torch.device("cuda:1")
    assert _extraction_device("cpu", 8) == torch.device("cpu")


def test_extract_stores_what_the_backbone_computes_and_lists_bad_audio(corpus: Path, reference):
    path, summary = reference
    assert summary.exit_code == EXIT_SKIPPED and summary.complete
    assert set(summary.skipped) == {"c024", "c025", "c026"}
    assert "empty" in summary.skipped["c024"] and "no such file" in summary.skipped["c025"]
    assert "too short" in summary.skipped["c026"]
    assert summary.done == 24 and summary.clips_written == 24 and summary.padded_fraction <= 0.1
    group = open_store(path).group(GROUP)
    assert group.skipped == summary.skipped and len(group.ids) == 24
    assert group.provenance["max_seconds"] == 6.0 and group.provenance["dtype"] == "float16"
    assert group.provenance["versions"]["zarr"] == zarr.__version__
    model = FrameBackbone()
    manifest = group.manifest()
    for utt in ["c003", "c004", "c005", "c010"]:  # resampled, stereo, resampled, plain
        wave = load_audio(manifest[utt].path).waveform
        with torch.no_grad():
            hidden, _ = model(wave[None], torch.tensor([wave.numel()]))
        alone = hidden[0].numpy()
        np.testing.assert_allclose(group.frames(utt), alone, atol=2e-3)
        np.testing.assert_allclose(group.means([utt])[0], alone.mean(axis=1), atol=1e-6)
    assert manifest.folds[0].name == "fold1" and len(manifest) == 24


def test_ranks_and_resume_equal_a_single_run(corpus: Path, reference, tmp_path: Path):
    torch.set_num_threads(1)
    path = tmp_path / "ranks.zarr"
    first = extract(
        corpus, path, FrameBackbone(), shard_mb=SHARD_MB, rank=0, world_size=2, progress=False
    )
    assert first.pending > 0 and not first.complete
    assert not verify_store(path).complete
    second = extract(
        corpus, path, FrameBackbone(), shard_mb=SHARD_MB, rank=1, world_size=2, progress=False
    )
    assert second.complete and second.units_written > 0
    again = extract(corpus, path, FrameBackbone(), shard_mb=SHARD_MB, progress=False)
    assert again.units_written == 0 and again.complete  # nothing left to do
    assert_same_store(reference[0], path)


def test_retry_skipped_after_fixing_a_file(corpus: Path, tmp_path: Path):
    manifest = Manifest(
        "toy",
        tuple(_utterance(_write(tmp_path / f"r{i}.wav", 0.5 + i / 4, seed=i), i) for i in range(4)),
    )
    bad = Path(manifest.utterances[1].path)
    data = bad.read_bytes()
    bad.write_bytes(data[:30])  # truncated: the manifest's header facts still say 0.75 s
    path = tmp_path / "retry.zarr"
    first = extract(manifest, path, FrameBackbone(), shard_mb=SHARD_MB, progress=False)
    assert list(first.skipped) == ["c001"] and first.exit_code == EXIT_SKIPPED
    bad.write_bytes(data)
    assert extract(
        manifest, path, FrameBackbone(), progress=False
    ).skipped  # plain rerun keeps the skip
    fixed = extract(manifest, path, FrameBackbone(), retry_skipped=True, progress=False)
    assert fixed.skipped == {} and fixed.exit_code == 0 and "c001" in open_store(path).group(GROUP)


def test_a_different_configuration_is_refused(corpus: Path, reference):
    with pytest.raises(
        ProvenanceMismatchError, match=r"max_seconds: 6\.0 in the store, 3\.0 requested"
    ):
        extract(corpus, reference[0], FrameBackbone(), max_seconds=3.0, progress=False)
    with pytest.raises(ProvenanceMismatchError, match="weights_sha256"):
        extract(corpus, reference[0], _other_weights(), progress=False)


def _other_weights() -> FrameBackbone:
    model = FrameBackbone()
    with torch.no_grad():
        model.proj.mul_(2)
    return model


# -- processes: kill -9 and concurrent ranks ---------------------------------------------------
# The child imports everything, then waits for a line on stdin: the runs' imports overlap each
# other and the runs before them, which keeps these tests fast. The program goes on the command
# line (``-c``), not in a shared script file: rewriting such a file for the next child while an
# earlier one was still reading it made that child run a truncated script, exit at once and
# break the pipe to its stdin (seen under heavy load). Output goes to files, so a chatty child
# can never block on a full pipe that nobody reads.
# The child restores Python's Ctrl-C handler: a shell that starts the test suite in the
# background without job control (CI scripts, `cmd &`) hands its children SIGINT ignored.
SCRIPT = """
import importlib.util, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
spec = importlib.util.spec_from_file_location("extract_helpers", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
sys.stdin.readline()
module.run_extraction(*sys.argv[1:])
"""


def _spawn(
    tmp_path: Path,
    store: Path,
    manifest: Path,
    *,
    rank: int = 0,
    world: int = 1,
    sleep: float = 0.0,
):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    args = [
        sys.executable,
        "-c",
        SCRIPT.format(path=str(Path(__file__).resolve())),
        str(store),
        str(manifest),
        str(rank),
        str(world),
        str(sleep),
    ]
    fd, log = tempfile.mkstemp(dir=tmp_path, prefix="child-", suffix=".log")
    try:
        process = subprocess.Popen(
            args, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=fd, bufsize=0
        )
    finally:
        os.close(fd)  # the child has its own copy
    process.log = Path(log)
    return process


@pytest.fixture
def spawn(tmp_path: Path):
    """``spawn(store, manifest, ...)`` starts a child (see ``_spawn``); teardown kills leftovers.

    A failing test would otherwise leave children waiting on stdin, which run once pytest exits.
    """
    children = []

    def start(store: Path, manifest: Path, **options):
        children.append(_spawn(tmp_path, store, manifest, **options))
        return children[-1]

    yield start
    for process in children:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=60)


def _output(process) -> str:
    """The end of what a child wrote to stderr, for failure messages."""
    return process.log.read_text(errors="replace")[-2000:]


def _go(process) -> None:
    """Release a child waiting on stdin; one that died before that fails with its stderr."""
    try:
        process.stdin.write(b"go\n")
        process.stdin.close()
    except BrokenPipeError:
        code = process.wait(timeout=60)
        pytest.fail(f"extraction child exited ({code}) before it was released:\n{_output(process)}")


def _done_units(store: Path) -> int:
    return len(list(store.glob(f"{GROUP}/part-*/done/*/zarr.json")))


def _wait_for(condition, process, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.002)
    raise TimeoutError("extraction subprocess made no progress")


def test_kill_9_at_random_points_then_resume_is_identical(
    corpus: Path, reference, tmp_path: Path, spawn
):
    ref_path, _ = reference
    ref = open_store(ref_path).group(GROUP)
    total_units = sum(p.num_units for p in ref.parts)
    path = tmp_path / "killed.zarr"
    rng = random.Random(20261126)
    outcomes = []
    # kill -9 while planning, then at random units (plus a random delay, so the signal lands
    # in decoding, compute, writing or recording), and one Ctrl-C (SIGINT) in between.
    plans = [
        ("planning", 0, signal.SIGKILL),
        ("units", rng.randint(1, total_units // 4), signal.SIGKILL),
        ("units", rng.randint(total_units // 4 + 1, total_units // 2), signal.SIGINT),
        ("units", rng.randint(total_units // 2 + 1, total_units - 2), signal.SIGKILL),
    ]
    ready = [spawn(path, corpus, sleep=0.02) for _ in plans]  # import in parallel
    for process, (phase, target, sig) in zip(ready, plans, strict=True):
        _go(process)
        if phase == "planning":
            running = _wait_for(lambda: (path / GROUP / "zarr.json").exists(), process)
        else:
            running = _wait_for(lambda t=target: _done_units(path) >= t, process)
        if not running:
            assert process.wait(timeout=60) == 0, _output(process)
            continue
        time.sleep(rng.uniform(0.0, 0.05))
        process.send_signal(sig)
        code = process.wait(timeout=60)  # a Ctrl-C must not hang on the background threads
        outcomes.append((sig, code))
        group = open_store(path).group(GROUP)  # whatever is visible after a kill is complete
        for utt in group.ids:
            np.testing.assert_array_equal(group.frames(utt), ref.frames(utt))
    assert sum(code == -signal.SIGKILL for _, code in outcomes) >= 2
    assert any(sig == signal.SIGINT and code != 0 for sig, code in outcomes), outcomes
    torch.set_num_threads(1)
    summary = extract(
        corpus, path, FrameBackbone(), shard_mb=SHARD_MB, num_workers=1, progress=False
    )
    assert summary.complete and summary.units_written > 0
    assert_same_store(ref_path, path)
    assert verify_store(path, deep=True).complete


def test_two_processes_write_one_store_concurrently(corpus: Path, reference, tmp_path: Path, spawn):
    path = tmp_path / "two.zarr"
    processes = [spawn(path, corpus, rank=r, world=2) for r in (0, 1)]
    for process in processes:
        _go(process)
    for process in processes:
        assert process.wait(timeout=120) == 0, _output(process)
    report = verify_store(path, deep=True)
    assert report.complete, report
    assert_same_store(reference[0], path)
    units = [
        json.loads(p.read_text())["attributes"]["trustser_unit"]
        for p in path.glob(f"{GROUP}/part-*/done/*/zarr.json")
    ]
    assert {u["rank"] for u in units} == {0, 1} and all(u["unit"] % 2 == u["rank"] for u in units)


# -- CLI wiring ----------------------------------------------------------------------------------
def test_cli_extract_verify_info_skipped(corpus: Path, tmp_path: Path, monkeypatch):
    from typer.testing import CliRunner

    import trustser.backbones
    from trustser.cli.main import app

    def load_backbone(spec: str, *, device="auto", **options):
        assert spec == "fake:frames" and str(device) == "cpu" and options == {}
        return FrameBackbone()

    monkeypatch.setattr(trustser.backbones, "load_backbone", load_backbone)
    runner = CliRunner()
    store = tmp_path / "cli.zarr"
    base = [
        "extract",
        "-b",
        "fake:frames",
        "-m",
        str(corpus),
        "-s",
        str(store),
        "--device",
        "cpu",
        "--no-progress",
    ]
    partial = runner.invoke(app, [*base, "--rank", "0", "--world-size", "2", "--shard-mb", "0.01"])
    assert partial.exit_code == EXIT_SKIPPED, partial.output
    assert "not extracted yet" in partial.output
    incomplete = runner.invoke(app, ["store", "verify", str(store)])
    assert incomplete.exit_code == 1 and "unfinished units" in incomplete.output
    result = runner.invoke(
        app, [*base, "--summary-json", str(tmp_path / "s.json"), "--shard-mb", "0.01"]
    )
    assert result.exit_code == EXIT_SKIPPED and "3 clip(s) skipped" in result.output
    assert json.loads((tmp_path / "s.json").read_text())["complete"] is True
    verified = runner.invoke(app, ["store", "verify", str(store), "--deep", "-m", str(corpus)])
    assert verified.exit_code == 0 and "complete" in verified.output
    info = runner.invoke(app, ["store", "info", str(store), "--json"])
    assert info.exit_code == 0 and json.loads(info.output)[0]["summary"]["clips_done"] == 24
    detail = runner.invoke(app, ["store", "info", str(store), "-b", "fake:frames"])
    assert detail.exit_code == 0 and "weights_sha256" in detail.output
    listed = runner.invoke(app, ["store", "skipped", str(store)])
    assert listed.exit_code == 0 and "c025" in listed.output
    bad = runner.invoke(app, [*base, "--dtype", "int8"])
    assert bad.exit_code == 2 and "dtype='int8' is not supported" in bad.output
    mismatch = runner.invoke(app, [*base, "--max-seconds", "2"])
    assert mismatch.exit_code == 2 and "max_seconds" in mismatch.output
    missing = runner.invoke(app, ["store", "verify", str(tmp_path / "nope.zarr")])
    assert missing.exit_code == 2 and "no embedding store" in missing.output
