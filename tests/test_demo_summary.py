"""The demo's closing summary: one score table and ``recommend``'s ranking per scenario."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from trustser.cli.main import app
from trustser.pipeline import CorpusSource, PipelineConfig, PipelineResult
from trustser.profile import collect_profile, registered_axes, write_profile
from trustser.profile.recommend import SCENARIOS

PAPER_ROWS = ("Whisper tiny", "WavLM Base+")


def _report(tmp_path: Path) -> Path:
    """A profile of two (paper) backbones, as the pipeline's profile stage leaves it."""
    report = tmp_path / "synth" / "report"
    profile = collect_profile(tmp_path / "runs", paper=list(PAPER_ROWS))
    write_profile(profile, report, charts=False, report=False)
    return report


def test_summary_holds_one_table_and_a_ranking_per_scenario(tmp_path):
    from trustser.demo import demo_summary

    report = _report(tmp_path)
    summary = demo_summary(report)
    assert summary.path == report / "summary.md" and summary.path.read_text() == summary.markdown
    assert [r.scenario for r in summary.recommendations] == list(SCENARIOS)
    text = summary.markdown
    headers = [line for line in text.splitlines() if line.startswith("| backbone |")]
    assert len(headers) == 1  # one score table, with all five axes
    assert all(a.title in text for a in registered_axes())
    for name in PAPER_ROWS:
        assert text.count(f"paper: {name}") >= 1 + len(SCENARIOS)  # the table and each ranking
    for scenario in SCENARIOS:
        assert f"### Scenario: {scenario}" in text
    for recommendation in summary.recommendations:
        assert len(recommendation.ranking) == len(PAPER_ROWS)


def test_cli_demo_prints_the_table_and_rankings(tmp_path, monkeypatch):
    import trustser.demo as demo

    report = _report(tmp_path)

    def fake_run_demo(out, **kwargs):
        config = PipelineConfig(
            corpora=(CorpusSource("synth", manifest="m.jsonl"),), backbones=demo.DEMO_BACKBONES
        )
        return PipelineResult(config=config, reports={"synth": report / "report.html"})

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    for scenario in SCENARIOS:
        assert SCENARIOS[scenario]["description"] in result.output
    assert "table and rankings" in result.output
    for name in PAPER_ROWS:
        assert f"paper: {name}" in result.output
