"""Hypothesis state machine: the store writer and reader against an in-memory model.

Rules plan manifests, commit units (with skipped clips), simulate writers killed mid-unit or
mid-plan (garbage shard files, zarr ``*.partial`` files, half-written records, temp parts),
retry skipped clips and reopen the writer. After every step a fresh reader must show exactly
the model: done clips with their exact features, skipped clips with their reasons, pending clips,
and nothing a killed writer left behind.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from trustser.extract import plan_clips
from trustser.manifest import Manifest, Utterance
from trustser.store import StoreWriter, open_store, verify_store
from trustser.store._fs import hostname

L, D = 2, 3
PROVENANCE = {
    "backbone": "model",
    "weights_sha256": "f" * 64,
    "num_layers": L,
    "dim": D,
    "sample_rate": 16_000,
    "max_seconds": 1.0,
    "dtype": "float16",
    "codec": "none",
}
DEAD_PID = 4_194_000  # above the default pid_max: never a live process


def frame_count(samples: int) -> int:
    return samples // 400


def value(utt_id: str, frames: int) -> np.ndarray:
    seed = sum(ord(c) * 131**i for i, c in enumerate(utt_id)) % 2**32
    return np.random.default_rng(seed).integers(-50, 50, size=(L, frames, D)).astype(np.float32) / 4


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="trustser-state-"))
        self.path = self.dir / "s.zarr"
        self.next_id = 0
        self.planned: dict[str, int] = {}  # id → frames (0: planned as unusable)
        self.done: dict[str, int] = {}
        self.skipped: dict[str, str] = {}
        self.known: list[Utterance] = []

    @initialize(codec=st.sampled_from(["none", "zstd"]))
    def open_writer(self, codec: str) -> None:
        self.provenance = {**PROVENANCE, "codec": codec}
        self.writer = StoreWriter(self.path, "model", provenance=self.provenance, durable=False)

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers -----------------------------------------------------------------------
    def _units(self, *, finished: bool) -> list[tuple]:
        out = []
        for part in self.writer.group().parts:
            for unit in range(part.num_units):
                if (unit in part.records) == finished:
                    out.append((part, unit))
        return out

    # -- rules -------------------------------------------------------------------------
    @rule(
        lengths=st.lists(st.integers(min_value=0, max_value=24_000), min_size=1, max_size=6),
        reuse=st.integers(min_value=0, max_value=3),
        shard_kb=st.sampled_from([0.2, 0.5, 4.0]),
    )
    def add_manifest(self, lengths: list[int], reuse: int, shard_kb: float) -> None:
        utts = list(self.known[:reuse])
        for samples in lengths:
            utt_id = f"u{self.next_id:03d}"
            self.next_id += 1
            utts.append(
                Utterance(
                    id=utt_id,
                    path=f"/nonexistent/{utt_id}.wav",
                    speaker="s",
                    gender="female",
                    emotion="sad",
                    duration=max(samples, 1) / 16_000,
                    sample_rate=16_000,
                    num_frames=samples if samples else 1,  # 1 sample: planned as too short
                )
            )
        manifest = Manifest("c", tuple(utts))
        clips = plan_clips(
            manifest.utterances, frame_count=frame_count, max_seconds=PROVENANCE["max_seconds"]
        )
        self.writer.add_manifest(manifest, clips=clips, shard_mb=shard_kb / 1024)
        for u in utts:
            if u.id not in self.planned:
                frames = frame_count(min(u.num_frames, 16_000)) if u.num_frames >= 800 else 0
                self.planned[u.id] = frames
                self.known.append(u)

    @precondition(lambda self: bool(self.planned))
    @rule(data=st.data())
    def commit_unit(self, data) -> None:
        todo = self._units(finished=False)
        if not todo:
            return
        part, unit = data.draw(st.sampled_from(todo))
        buffer = self.writer.buffer(part, unit)
        for utt in buffer.ids:
            _, frames, reason = buffer.planned(utt)
            if reason or data.draw(st.booleans(), label=f"skip {utt}"):
                buffer.skip(utt, reason or f"bad {utt}")
            else:
                buffer.put(utt, value(utt, frames))
        self.writer.commit(buffer)
        for utt, reason in buffer.state.items():
            if reason is None:
                self.done[utt] = int(part.num_frames[part.index[utt]])
                self.skipped.pop(utt, None)
            else:
                self.skipped[utt] = reason

    @precondition(lambda self: bool(self.planned))
    @rule(data=st.data())
    def killed_mid_unit(self, data) -> None:
        """What ``kill -9`` leaves: half a shard, zarr's temp files, a half-written record."""
        todo = self._units(finished=False)
        if not todo:
            return
        part, unit = data.draw(st.sampled_from(todo))
        for name in ("emb", "means"):
            chunk = part.path / name / "c" / str(unit) / "0" / "0"
            chunk.parent.mkdir(parents=True, exist_ok=True)
            chunk.write_bytes(b"\x01" * data.draw(st.integers(1, 300)))
            (chunk.parent / "0.deadbeef.partial").write_bytes(b"\x02" * 10)
        record_dir = part.path / "done" / str(unit)
        record_dir.mkdir(parents=True, exist_ok=True)
        (record_dir / ".zarr.json.0123.tmp").write_text('{"zarr_format": 3, "node_ty')

    @rule()
    def killed_mid_plan(self) -> None:
        group = self.path / "model"
        stale = group / f".tmp-part-0000000000000000-{hostname()}-{DEAD_PID}-abcd1234"
        (stale / "emb").mkdir(parents=True, exist_ok=True)
        (stale / "zarr.json").write_text("{ broken")

    @precondition(lambda self: bool(self.skipped))
    @rule(data=st.data())
    def retry_skipped_unit(self, data) -> None:
        retry = self.writer.pending_units(self.writer.group().parts, retry_skipped=True)
        retry = [(p, u) for p, u in retry if u in p.records]
        if not retry:
            return
        part, unit = data.draw(st.sampled_from(retry))
        self.writer.clear_unit(part, unit)
        for utt in (part.ids[i] for i in part.unit_clips(unit)):
            self.done.pop(utt, None)
            self.skipped.pop(utt, None)

    @rule()
    def reopen_writer(self) -> None:
        self.writer = StoreWriter(self.path, "model", provenance=self.provenance, durable=False)
        assert not list((self.path / "model").glob(f".tmp-*-{DEAD_PID}-*"))

    # -- the reader must show exactly the model ----------------------------------------
    @invariant()
    def reader_matches_model(self) -> None:
        if not hasattr(self, "writer"):
            return
        group = open_store(self.path).group("model")
        assert set(group.ids) == set(self.done)
        assert group.skipped == self.skipped
        assert set(group.pending) == set(self.planned) - set(self.done) - set(self.skipped)
        for utt, frames in self.done.items():
            np.testing.assert_array_equal(group.frames(utt), value(utt, frames))
        if self.done:
            ids = sorted(self.done)
            expected = np.stack([value(u, self.done[u]).mean(axis=1) for u in ids])
            np.testing.assert_allclose(group.means(ids), expected, rtol=1e-6, atol=1e-6)
            got = [
                i
                for batch in group.load().batches(batch_size=3, shuffle=True, seed=1)
                for i in batch.ids
            ]
            assert sorted(got) == ids
            if group.manifest().ids:
                assert set(group.manifest().ids) <= set(ids)
        report = verify_store(self.path)
        assert not report.groups[0].problems
        assert set(report.groups[0].missing) == set(group.pending)


StoreMachine.TestCase.settings = settings(
    max_examples=20,
    stateful_step_count=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreMachine = StoreMachine.TestCase
