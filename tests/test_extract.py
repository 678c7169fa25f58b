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
from trustser.extract import EXIT_SKIPPED, extract
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
    summary = extract(
        manifest,
        store,
        FrameBackbone(sleep=float(sleep)),
        shard_mb=SHARD_MB,
        rank=int(rank),
        world_size=int(world_size),
        num_workers=1,
        progress=False,
    )
    print(f"units_written {summary.units_written}", file=sys.stderr, flush=True)


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
    assert "belong to other ranks" in partial.output and "store verify" in partial.output
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
    bad = runner.invoke(app, [*base, "--dtype", "int4"])
    assert bad.exit_code == 2 and "dtype='int4' is not supported" in bad.output
    mismatch = runner.invoke(app, [*base, "--max-seconds", "2"])
    assert mismatch.exit_code == 2 and "max_seconds" in mismatch.output
    missing = runner.invoke(app, ["store", "verify", str(tmp_path / "nope.zarr")])
    assert missing.exit_code == 2 and "no embedding store" in missing.output


# -- ownership, damage, durability, flags, planning, provenance (the store under faults) -------
def _records(path: Path) -> dict:
    """Unit records by (part, unit), without what names the writer or the time."""
    out = {}
    for node in sorted(path.glob(f"{GROUP}/part-*/done/*/zarr.json")):
        record = json.loads(node.read_text())["attributes"]["trustser_unit"]
        for key in ("host", "pid", "finished", "rank", "world_size"):
            record.pop(key, None)
        out[(node.parent.parent.parent.name, int(node.parent.name))] = record
    return out


def test_two_writers_of_one_command_one_killed_then_a_third_run_equal_a_single_run(
    corpus: Path, reference, tmp_path: Path, spawn
):
    """The same command twice at once (an overlapping requeue): claims keep them off each
    other's units; one is killed -9 at a random moment; a third run finishes the store."""
    ref_path, _ = reference
    total_units = sum(p.num_units for p in open_store(ref_path).group(GROUP).parts)
    path = tmp_path / "twins.zarr"
    rng = random.Random(20261201)
    twins = [spawn(path, corpus, sleep=0.02) for _ in range(2)]  # both rank 0 of 1
    for process in twins:
        _go(process)
    victim = twins[rng.randrange(2)]
    survivor = twins[1 - twins.index(victim)]
    target = rng.randint(2, total_units - 4)

    def victim_wrote() -> bool:  # so that the kill lands in a run that holds units
        return any(r.get("pid") == victim.pid for r in _records_with_pids(path))

    if _wait_for(lambda: _done_units(path) >= target and victim_wrote(), victim):
        time.sleep(rng.uniform(0.0, 0.05))
        victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    assert survivor.wait(timeout=120) == 0, _output(survivor)
    writers = [r["pid"] for r in _records_with_pids(path)]
    assert set(writers) <= {victim.pid, survivor.pid} and len(set(writers)) == 2  # both wrote
    survivor_units = int(_output(survivor).split("units_written ")[-1].split()[0])
    torch.set_num_threads(1)
    third = extract(corpus, path, FrameBackbone(), shard_mb=SHARD_MB, num_workers=1)
    assert third.complete and not third.claimed_elsewhere
    # Every unit was computed exactly once: by the victim before it died, the survivor or the
    # third run (without claims both twins compute every unit, and can delete each other's).
    assert writers.count(victim.pid) + survivor_units + third.units_written == total_units
    assert_same_store(ref_path, path)
    assert _records(path) == _records(ref_path)
    assert verify_store(path, deep=True).complete
    assert not list(path.glob(f"{GROUP}/part-*/claims/*.json"))  # every claim released


def _records_with_pids(path: Path) -> list[dict]:
    return [
        json.loads(node.read_text())["attributes"]["trustser_unit"]
        for node in path.glob(f"{GROUP}/part-*/done/*/zarr.json")
    ]


def _finished_store(corpus: Path, path: Path, **options):
    summary = extract(corpus, path, FrameBackbone(), shard_mb=SHARD_MB, **options)
    assert summary.complete
    return open_store(path).group(GROUP)


def test_a_second_writer_skips_claimed_units_and_says_so(corpus: Path, tmp_path: Path):
    from trustser.store._fs import hostname, process_start_ticks
    from trustser.store.claims import Owner, claim_unit

    path = tmp_path / "claimed.zarr"
    group = _finished_store(corpus, path)
    part = group.parts[0]
    units = [u for u in sorted(part.records) if not part.records[u]["skipped"]][:3]
    for unit in units:  # make three units pending again
        (part.path / "done" / str(unit) / "zarr.json").unlink()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live, gone = os.getppid(), dead.pid
    owners = {
        units[0]: Owner(hostname(), None, live, process_start_ticks(live), "t0"),  # running
        units[1]: Owner(hostname(), None, gone, None, "t0"),  # dead on this host: stale
        units[2]: Owner("another-node.cluster", None, 4242, None, "t0"),  # cannot be judged
    }
    for unit, owner in owners.items():
        assert claim_unit(part.path, unit, owner)[0] is not None
    first = extract(corpus, path, FrameBackbone(), shard_mb=SHARD_MB)
    held = {key.split("unit ")[1]: who for key, who in first.claimed_elsewhere.items()}
    assert set(held) == {str(units[0]), str(units[2])} and first.units_written == 1
    assert held[str(units[2])] == "another-node.cluster pid 4242" and first.claimed_by_other_hosts
    assert not first.complete and any("--break-claims" in n for n in first.notes())
    second = extract(corpus, path, FrameBackbone(), shard_mb=SHARD_MB, break_claims=True)
    assert list(second.claimed_elsewhere) == [f"{part.key}/unit {units[0]}"]  # a live process
    for claim in (part.path / "claims").glob(f"{units[0]}-*.json"):
        claim.unlink()
    assert extract(corpus, path, FrameBackbone(), shard_mb=SHARD_MB).complete


def test_a_done_unit_without_its_shard_is_an_error_for_readers_and_verify(
    corpus: Path, tmp_path: Path
):
    from trustser.store import MissingUnitDataError

    path = tmp_path / "damaged.zarr"
    group = _finished_store(corpus, path)
    part = group.parts[0]
    unit = next(u for u in sorted(part.records) if part.records[u]["frames"] > 0)
    victim = next(part.ids[i] for i in part.unit_clips(unit) if part.ids[i] in group)
    part.unit_file(unit, "emb").unlink()
    group = open_store(path).group(GROUP)
    with pytest.raises(MissingUnitDataError, match=rf"unit {unit} of {part.key}.*trustser extract"):
        group.frames(victim)
    with pytest.raises(MissingUnitDataError):
        group.load([victim])
    for deep in (False, True):
        report = verify_store(path, deep=deep)
        assert report.exit_code == 1 and report.groups[0].status == "damaged"
        assert report.groups[0].damaged_units == [f"{part.key}/unit {unit}"]
        assert any(f"unit {unit} of {part.key}" in p for p in report.groups[0].problems)
    part.unit_file(unit, "means").unlink()
    with pytest.raises(MissingUnitDataError, match="means"):
        open_store(path).group(GROUP).means([victim])
    # What the message says to do works: delete the record, rerun the same command.
    import shutil

    shutil.rmtree(part.path / "done" / str(unit))
    extract(corpus, path, FrameBackbone(), shard_mb=SHARD_MB)
    assert verify_store(path, deep=True).complete


def test_every_directory_the_writer_creates_is_synced_in_its_parent(
    corpus: Path, tmp_path: Path, monkeypatch
):
    import stat

    synced = set()
    real_fsync = os.fsync

    def fsync(fd):
        status = os.fstat(fd)
        if stat.S_ISDIR(status.st_mode):
            synced.add((status.st_dev, status.st_ino))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "deep" / "durable.zarr"
    _finished_store(corpus, path)
    unsynced = []
    for dirpath, dirnames, _ in os.walk(tmp_path / "deep"):
        parent = os.stat(dirpath)
        if dirnames and (parent.st_dev, parent.st_ino) not in synced:
            unsynced.append(f"{dirpath} (holds {dirnames[:3]})")
    assert unsynced == []


def _flag_corpus(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    utts = [_utterance(_write(root / f"f{i}.wav", 0.6 + 0.1 * i, seed=i), i) for i in range(4)]
    silent = root / "silent.wav"
    sf.write(str(silent), np.zeros(12_000, np.float32), 16_000)
    cut = _write(root / "cut.wav", 1.0, seed=9)
    cut.write_bytes(cut.read_bytes()[:-8_000])  # the data chunk declares more than is there
    utts += [_utterance(silent, 10), _utterance(cut, 11)]
    return write_manifest(Manifest("toy", tuple(utts)), root / "flags.jsonl")


def test_silent_and_truncated_clips_are_flagged_per_clip_not_warned(tmp_path: Path, monkeypatch):
    import warnings

    from typer.testing import CliRunner

    import trustser.backbones
    from trustser.cli.main import app

    manifest = _flag_corpus(tmp_path / "audio")
    path = tmp_path / "flags.zarr"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = extract(manifest, path, FrameBackbone(), shard_mb=SHARD_MB)
    assert not [w for w in caught if "Audio" in w.category.__name__]
    assert summary.flagged == {"c010": ["silent"], "c011": ["truncated"]} == summary.flagged_now
    group = open_store(path).group(GROUP)
    assert group.flags == summary.flagged and "c010" in group.ids  # allowed, and kept
    assert group.summary()["clips_flagged"] == 2
    assert verify_store(path, deep=True).groups[0].flagged == summary.flagged
    monkeypatch.setattr(trustser.backbones, "load_backbone", lambda *a, **k: FrameBackbone())
    runner = CliRunner()
    other = tmp_path / "cli.zarr"
    result = runner.invoke(
        app,
        ["extract", "-b", "fake:frames", "-m", str(manifest), "-s", str(other), "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    assert "flagged c010: silent: every sample is zero" in result.output
    assert "flagged c011: truncated:" in result.output and "Warning" not in result.output
    listed = runner.invoke(app, ["store", "skipped", str(other)])
    assert "c010: silent" in listed.output and "c011: truncated" in listed.output
    info = runner.invoke(app, ["store", "info", str(other)])
    assert "2 flagged" in info.output and "c011: truncated" in info.output


class _LimitedBackbone(FrameBackbone):
    """Clips over 2 s are too long; clips under 2,000 samples give no frame."""

    max_samples = 32_000

    def frame_count(self, num_samples: int) -> int:
        return 0 if num_samples < 2_000 else num_samples // 320


def test_rerunning_a_manifest_adds_no_part(tmp_path: Path):
    root = tmp_path / "audio"
    root.mkdir()
    utts = [_utterance(_write(root / f"p{i}.wav", s, seed=i), i) for i, s in enumerate((0.5, 1.0))]
    utts.append(_utterance(_write(root / "long.wav", 2.5, seed=5), 5))  # over the limit
    utts.append(_utterance(_write(root / "tiny.wav", 0.1, seed=6), 6))  # no frame
    manifest = Manifest("toy", tuple(utts))
    path = tmp_path / "replan.zarr"
    first = extract(manifest, path, _LimitedBackbone())
    assert set(first.skipped) == {"c005", "c006"}
    second = extract(manifest, path, _LimitedBackbone())
    assert second.parts == first.parts and second.units_written == 0
    assert len(open_store(path).group(GROUP).parts) == 1


def test_ids_shared_by_two_manifests_with_different_records_are_refused(corpus: Path, tmp_path):
    from trustser.manifest import ManifestError, read_manifest

    original = read_manifest(corpus, check_files=False)
    # Same id, another clip: without the check its audio would fill c000's slot.
    clash = original.utterances[0].with_path(original.utterances[5].path)
    other = write_manifest(Manifest("other", (clash,)), tmp_path / "other.jsonl")
    with pytest.raises(ManifestError) as error:
        extract([corpus, other], tmp_path / "ids.zarr", FrameBackbone())
    message = str(error.value)
    assert str(corpus) in message and str(other) in message and "'c000'" in message


def test_unit_records_name_device_and_versions_and_mixed_origins_are_reported(
    corpus: Path, tmp_path: Path
):
    from typer.testing import CliRunner

    from trustser.cli.main import app

    path = tmp_path / "origins.zarr"
    group = _finished_store(corpus, path)
    record = next(iter(group.parts[0].records.values()))
    assert record["device"] == "cpu" and record["device_kind"] == "cpu"
    assert (
        torch.__version__.startswith(record["versions"]["torch"]) and "soxr" in record["versions"]
    )
    assert group.mixed_origins() == [] and verify_store(path).groups[0].mixed_origins == []
    node = next(path.glob(f"{GROUP}/part-*/done/1/zarr.json"))
    document = json.loads(node.read_text())
    document["attributes"]["trustser_unit"]["versions"]["torch"] = "0.0.1"
    document["attributes"]["trustser_unit"]["device_kind"] = "cuda (NVIDIA H200)"
    node.write_text(json.dumps(document))
    mixed = open_store(path).group(GROUP).mixed_origins()
    assert any(
        line.startswith("torch version differs") and "0.0.1 (1 units)" in line for line in mixed
    )
    assert any(line.startswith("device differs") for line in mixed)
    report = verify_store(path)
    assert report.complete and report.groups[0].mixed_origins == mixed  # a note, not damage
    runner = CliRunner()
    for command in (["store", "info", str(path)], ["store", "verify", str(path)]):
        result = runner.invoke(app, command)
        assert "torch version differs between units" in result.output, result.output


def test_a_version_1_store_is_read_and_upgraded_by_the_next_writer(corpus: Path, tmp_path: Path):
    path = tmp_path / "old.zarr"
    _finished_store(corpus, path)
    root = path / "zarr.json"
    document = json.loads(root.read_text())
    document["attributes"]["trustser_store"]["format_version"] = 1
    root.write_text(json.dumps(document))
    for node in path.glob(f"{GROUP}/part-*/done/*/zarr.json"):  # records as version 1 wrote them
        record = json.loads(node.read_text())
        for key in ("files", "flags", "device", "device_kind", "versions"):
            record["attributes"]["trustser_unit"].pop(key, None)
        node.write_text(json.dumps(record))
    old = open_store(path).group(GROUP)
    assert len(old.ids) == 24 and old.flags == {} and verify_store(path, deep=True).complete
    extract(corpus, path, FrameBackbone(), shard_mb=SHARD_MB)
    assert json.loads(root.read_text())["attributes"]["trustser_store"]["format_version"] == 4


def test_store_commands_never_cut_identifiers_at_80_columns(corpus: Path, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from trustser.cli.main import app

    name = "whisper_tiny_en_offline-trimmed-float16-a-long-group-name"
    monkeypatch.chdir(tmp_path)  # a short store path, so every line can fit in 80 columns
    path = Path("narrow.zarr")
    extract(corpus, path, FrameBackbone(), group=name, shard_mb=SHARD_MB)
    runner = CliRunner(env={"COLUMNS": "80"})  # the console reads it at each print
    info = runner.invoke(app, ["store", "info", str(path)])
    assert name in info.output and "float16" in info.output and "…" not in info.output
    verify = runner.invoke(app, ["store", "verify", str(path)])
    assert name in verify.output and "complete" in verify.output and "…" not in verify.output
    listed = runner.invoke(app, ["store", "skipped", str(path)])
    assert name in listed.output and "c025" in listed.output and "…" not in listed.output
    for result in (info, verify, listed):
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert any(line.startswith(name) for line in lines), result.output  # whole, unfolded
        # Only a line carrying a file path may pass 80 columns: it is printed whole (the
        # terminal soft-wraps it) rather than cut; every other line fits.
        too_wide = [line for line in lines if len(line) > 80 and "/" not in line]
        assert not too_wide, too_wide
    for clip in ("empty.wav", "gone.wav", "short.wav"):
        assert f"'{corpus.parent / clip}'" in listed.output
