"""`trustser profile` and `recommend` at 80 columns: long backbone names appear whole."""

from __future__ import annotations

from typer.testing import CliRunner

from trustser.cli.main import app

LONG = "hf:facebook/wav2vec2-base-960h"


def test_profile_and_recommend_show_long_names_whole_at_80_columns(tmp_path, write_fake_runs):
    write_fake_runs(tmp_path / "runs", LONG)
    write_fake_runs(tmp_path / "runs", "whisper_tiny_en_offline", seed=1)
    runner = CliRunner()
    env = {"COLUMNS": "80"}
    out = tmp_path / "report"
    profile = runner.invoke(
        app, ["profile", "-r", str(tmp_path / "runs"), "-o", str(out), "--no-charts"], env=env
    )
    assert profile.exit_code == 0, profile.output
    recommend = runner.invoke(app, ["recommend", "-p", str(out), "--scenario", "edge"], env=env)
    assert recommend.exit_code == 0, recommend.output
    for result in (profile, recommend):
        assert LONG in result.output and "whisper_tiny_en_offline" in result.output
        assert "…" not in result.output
        assert all(len(line) <= 80 for line in result.output.splitlines())
    for axis in ("Performance", "Privacy", "Safety", "Fairness", "Sustainability"):
        assert axis in profile.output
