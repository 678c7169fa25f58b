"""`trustser profile` end to end: every output file, deterministic bytes, the CLI wiring."""

from __future__ import annotations

import csv

import pytest
from typer.testing import CliRunner

from trustser.profile import read_profile, run_profile


def test_run_profile_writes_every_output(tmp_path, write_fake_runs):
    runs, out = tmp_path / "runs", tmp_path / "report"
    write_fake_runs(runs, "tiny:whisper", seed=1)
    write_fake_runs(runs, "tiny:wav2vec2", seed=2, tasks=("emotion",), attacks=False, cost=False)
    profile, files = run_profile(runs, out, paper=["Whisper tiny"])
    names = {p.name for p in files.values()}
    assert {"profile.json", "profile.csv", "profile.md", "report.html"} <= names
    for stem in (
        "radar_tiny-whisper",
        "radar_tiny-wav2vec2",
        "radar_paper-Whisper-tiny",
        "radar_overlay",
    ):
        for suffix in (".png", ".svg"):
            assert (out / f"{stem}{suffix}").stat().st_size > 1000
    assert (out / "radar_overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = read_profile(out)
    assert [b.scores for b in again.backbones] == [b.scores for b in profile.backbones]
    assert again.get("tiny:wav2vec2").missing.keys() == {"privacy", "safety", "sustainability"}
    with open(out / "profile.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["backbone"] for r in rows] == ["tiny:wav2vec2", "tiny:whisper", "paper: Whisper tiny"]
    assert float(rows[1]["gmacs"]) == pytest.approx(2.4)
    markdown = (out / "profile.md").read_text()
    assert "| backbone | Performance | Privacy | Safety | Fairness | Sustainability |" in markdown
    assert "run `trustser cost --backbone tiny:wav2vec2" in markdown
    assert "| 99.0 |" in markdown  # the linear-probe gender accuracy beside the head's
    page = (out / "report.html").read_text()
    assert page.count("data:image/svg+xml;base64,") == 4  # overlay + one per backbone
    assert "http://" not in page.replace("http://www.w3.org", "") and "<script" not in page
    # deterministic outputs: a second run gives identical bytes (the report embeds the SVG charts)
    run_profile(runs, tmp_path / "again", paper=["Whisper tiny"], charts=False)
    for name in ("profile.json", "profile.csv", "profile.md", "report.html"):
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


def test_cli_profile_wiring(tmp_path, write_fake_runs):
    from trustser.cli.profile import app

    runs = tmp_path / "runs"
    write_fake_runs(runs, "a", seed=1)
    write_fake_runs(runs, "b", seed=2)
    write_fake_runs(runs, "c", seed=3)
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "profile",
            "--runs",
            str(runs),
            "-o",
            str(tmp_path / "out"),
            "--backbone",
            "a",
            "b",
            "--no-charts",
            "--scale",
            "relative",
        ],
    )
    assert result.exit_code == 0, result.output
    names = [b.name for b in read_profile(tmp_path / "out").backbones]
    assert names == ["a", "b"]
    bad = runner.invoke(
        app, ["profile", "--runs", str(tmp_path / "empty"), "-o", str(tmp_path / "x")]
    )
    assert bad.exit_code == 2 and "nothing to profile" in bad.output
    stray = runner.invoke(app, ["profile", "--runs", str(runs), "oops"])
    assert stray.exit_code == 2 and "unexpected argument" in stray.output
