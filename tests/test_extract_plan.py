"""Extraction's skip policy: which clips the store plans features for, decided before any compute."""

from __future__ import annotations

from pathlib import Path

from trustser.extract import plan_clips
from trustser.manifest import Utterance
from trustser.store import plan_part


def frame_count(samples: int) -> int:
    return samples // 320


def utterances(prefix: str, seconds: list[float]) -> list[Utterance]:
    return [
        Utterance(
            id=f"{prefix}{i:03d}",
            path=f"/nonexistent/{prefix}{i}.wav",
            speaker=f"{prefix}spk{i}",
            gender=("female", "male")[i % 2],
            emotion="sad",
            duration=s,
            sample_rate=16_000,
            num_frames=int(s * 16_000),
        )
        for i, s in enumerate(seconds)
    ]


def test_plan_skips_clips_longer_than_the_backbone_accepts():
    utts = utterances("w", [2.0, 40.0])
    plan = plan_part(
        plan_clips(utts, frame_count=frame_count, max_seconds=None, max_samples=30 * 16_000),
        bytes_per_frame=24,
    )
    assert plan.num_frames.tolist() == [0, 100] and list(plan.plan_skipped) == ["w001"]
    assert "longer than the backbone accepts (30.0 s)" in plan.plan_skipped["w001"]
    assert "--max-seconds 30" in plan.plan_skipped["w001"]


def test_each_skip_reason_names_the_file_and_plans_no_rows(tmp_path: Path):
    short, empty = utterances("s", [0.04, 1.0])
    empty = Utterance(**{**empty.to_dict(), "num_frames": 0})
    missing = Utterance(
        id="gone",
        path=str(tmp_path / "gone.wav"),
        speaker="x",
        gender="male",
        emotion="sad",
        duration=1.0,
    )
    ok, frameless = utterances("k", [1.0, 0.5])
    facts = plan_clips(
        [short, empty, missing, ok, frameless],
        frame_count=lambda samples: 0 if samples < 10_000 else samples // 320,
        max_seconds=6.0,
    )
    assert "too short: 40.0 ms < 50 ms" in facts["s000"].skip_reason
    assert "the header reports no samples" in facts["s001"].skip_reason
    assert "no such file" in facts["gone"].skip_reason
    assert "too short for this backbone: 8000 samples give no frame" in facts["k001"].skip_reason
    assert facts["k000"].skip_reason is None and facts["k000"].frames == 50
    for utt_id, fact in facts.items():
        if fact.skip_reason is not None:
            assert fact.planned_samples == 0 and fact.planned_frames == 0, utt_id
    # A clip skipped by the backbone keeps its audio's sample count: if the backbone's limits
    # change, the writer plans it again rather than calling the audio changed.
    assert facts["k001"].samples == 8_000 and facts["s000"].samples == 0
    plan = plan_part(facts, bytes_per_frame=24)
    assert plan.ids[-1] == "k000" and sorted(plan.plan_skipped) == ["gone", "k001", "s000", "s001"]
