"""`trustser run` with a [robustness] section: run once, skipped when done, rerun on a change."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from trustser.manifest import write_manifest
from trustser.pipeline import (
    AttackSettings,
    CorpusSource,
    HeadSettings,
    PipelineConfig,
    PipelineConfigError,
    config_from_options,
    load_config,
    run_pipeline,
)
from trustser.pipeline.config import RobustnessSettings
from trustser.runs import RunLayout

SMALL = RobustnessSettings(corruptions=("white_noise",), severities=(3,), bootstrap=20)


def _config(manifest: Path, out: Path, robustness: RobustnessSettings | None) -> PipelineConfig:
    """The toy corpus through tiny:whisper: emotion heads only, no attack."""
    config = config_from_options(manifest=manifest, backbones=["tiny:whisper"], out=out)
    return replace(
        config,
        device="cpu",
        heads=HeadSettings(tasks=("emotion",), epochs=2),
        attack=AttackSettings(methods=()),
        robustness=robustness,
    )


def _status(result, stage: str) -> str:
    return next(e.status for e in result.events if e.stage == stage)


def test_the_section_runs_once_then_is_skipped_and_reruns_when_it_changes(tmp_path, toy_manifest):
    manifest = write_manifest(toy_manifest, tmp_path / "toy.jsonl")
    out = tmp_path / "runs"
    first = run_pipeline(_config(manifest, out, SMALL), progress=False)
    assert first.exit_code == 0, [e.detail for e in first.failures]
    assert _status(first, "robustness") == "done"
    summary = RunLayout(out / "toy").robustness_dir("tiny:whisper") / "summary.json"
    assert json.loads(summary.read_text())["suite"]["cases"] == ["white_noise-3"]
    profile = json.loads((out / "toy" / "report" / "profile.json").read_text())
    assert profile["backbones"][0]["raw"]["robustness"] is not None

    again = run_pipeline(_config(manifest, out, SMALL), progress=False)
    assert _status(again, "robustness") == "skipped"

    more = RobustnessSettings(corruptions=("white_noise", "telephone"), severities=(3, 1))
    changed = run_pipeline(_config(manifest, out, more), progress=False)
    assert _status(changed, "robustness") == "done"
    assert json.loads(summary.read_text())["suite"]["cases"] == [
        "white_noise-1",
        "white_noise-3",
        "telephone-1",
    ]

    summary.unlink()  # a lost output is made again
    assert (
        _status(run_pipeline(_config(manifest, out, more), progress=False), "robustness") == "done"
    )

    without = run_pipeline(_config(manifest, out, None), progress=False)
    assert all(e.stage != "robustness" for e in without.events)


def test_the_section_in_a_config_file_and_the_flag(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(
        'backbones = ["tiny:whisper"]\n[[corpora]]\nname = "toy"\nmanifest = "toy.jsonl"\n'
        '[robustness]\ncorruptions = ["babble", "reverb"]\nseverities = [1]\nbootstrap = 0\n'
    )
    config = load_config(path)
    assert config.robustness == RobustnessSettings(
        corruptions=("babble", "reverb"), severities=(1,), bootstrap=0
    )
    path.write_text(
        'backbones = ["tiny:whisper"]\n[[corpora]]\nname = "toy"\nmanifest = "toy.jsonl"\n'
    )
    assert load_config(path).robustness is None  # no section: no stage
    assert config_from_options(config=path, robustness=True).robustness == RobustnessSettings()
    for text, message in (
        ('corruptions = ["hum"]', "unknown corruption 'hum'"),
        ("severities = [4]", r"severity level\(s\) \[4\]"),
        ("bootstrap = -1", "robustness.bootstrap"),
        ("repeats = 3", "unknown key"),
    ):
        path.write_text(
            'backbones = ["tiny:whisper"]\n[[corpora]]\nname = "toy"\nroot = "x"\n'
            f"[robustness]\n{text}\n"
        )
        with pytest.raises(PipelineConfigError, match=message):
            load_config(path)
    with pytest.raises(PipelineConfigError, match="evaluates the emotion heads"):
        PipelineConfig(
            corpora=(CorpusSource("toy", root="x"),),
            backbones=("tiny:whisper",),
            heads=HeadSettings(tasks=("gender",)),
            attack=AttackSettings(methods=()),
            robustness=RobustnessSettings(),
        )
