"""The robustness axis: read from `trustser robustness`'s files, bootstrapped with the profile's
draws, shown in every output, compared, and weighed only where asked."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from trustser.profile import collect_profile, run_compare, run_profile
from trustser.profile.axes import get_axis, scored_axes
from trustser.profile.axes.robustness import DROP
from trustser.profile.radar import draw_radar_charts
from trustser.profile.recommend import parse_weights, recommend


@pytest.fixture
def runs(tmp_path, write_fake_runs):
    write_fake_runs(tmp_path, "sturdy", accuracy=0.8, clips=True, robustness=0.95)
    write_fake_runs(tmp_path, "fragile", seed=2, accuracy=0.8, clips=True, robustness=0.4)
    write_fake_runs(tmp_path, "untested", seed=5, clips=True, robustness=None)
    return tmp_path


def test_the_axis_reads_the_suite_mean_and_bootstraps_it(runs, tmp_path):
    profile, files = run_profile(runs, tmp_path / "out", scale="absolute", bootstrap=200)
    sturdy, fragile = profile.get("sturdy"), profile.get("fragile")
    summary = json.loads((runs / "sturdy" / "robustness" / "summary.json").read_text())
    assert sturdy.raw["robustness"] == pytest.approx(summary["suite_mean"]["unchanged"])
    assert sturdy.raw["robustness"] > 0.9 > 0.5 > fragile.raw["robustness"]
    interval = sturdy.intervals["robustness"]
    assert interval["low"] <= sturdy.raw["robustness"] <= interval["high"]
    assert interval["value"] == pytest.approx(sturdy.raw["robustness"])  # the same formula
    assert sturdy.intervals[DROP]["value"] == pytest.approx(summary["suite_mean"]["uar_drop"])
    assert len(sturdy.replicates["robustness"]) == 200 and len(sturdy.replicates[DROP]) == 200
    details = get_axis("robustness").details(sturdy)
    assert len(details["cases"]) == 31 and details["inference"]["path"] == "cache"
    assert sturdy.scores["robustness"] > fragile.scores["robustness"]
    # never measured: the row names the command
    untested = profile.get("untested")
    assert untested.raw["robustness"] is None
    assert untested.missing["robustness"].startswith("trustser robustness --store ")
    assert "--backbone untested" in untested.missing["robustness"]
    # every output shows it
    data = json.loads(files["json"].read_text())
    assert data["axes"][-1] == "robustness"
    row = next(b for b in data["backbones"] if b["name"] == "sturdy")
    assert row["axis_details"]["robustness"]["unchanged"] == pytest.approx(row["raw"]["robustness"])
    with open(files["csv"], newline="") as handle:
        header = next(csv.reader(handle))
    for column in ("robustness_unchanged", "robustness_unchanged_low", DROP, "score_robustness"):
        assert column in header
    markdown = files["markdown"].read_text()
    assert "| unchanged % |" in markdown and "least robust case" in markdown
    page = files["report"].read_text()
    assert "<h2>Robustness</h2>" in page and "unchanged % s1" in page


def test_the_paper_scale_and_its_scenarios_leave_the_axis_out(runs):
    paper = collect_profile(runs, scale="paper", bootstrap=0)
    assert "robustness" not in {a.name for a in scored_axes("paper")}
    assert paper.get("sturdy").scores["robustness"] is None
    assert paper.get("sturdy").raw["robustness"] is not None
    assert len(draw_radar_charts(paper).overlay.figure.axes[0].get_xticks()) == 5
    absolute = collect_profile(runs, scale="absolute", bootstrap=0)
    for scenario in ("edge", "cloud", "critical"):
        assert recommend(absolute, scenario=scenario).weights["robustness"] == 0.0
    ranked = recommend(absolute, weights="robust=1")
    assert ranked.ranking[0].backbone == "sturdy" and ranked.ranking[1].backbone == "fragile"
    assert "untested" in ranked.excluded  # weighed but not measured
    assert parse_weights("robustness=2")["robustness"] == 2.0
    assert get_axis("robustness").name == "robustness"  # no longer an alias of safety


def test_compare_covers_the_axis_and_its_uar_drop(runs):
    result = run_compare("sturdy", "fragile", runs, bootstrap=200)
    by_metric = {c.metric: c for c in result.comparisons}
    assert by_metric["robustness"].verdict == "A better"
    assert by_metric[DROP].verdict == "A better"  # a smaller drop is better
    from trustser.cli.main import app

    out = CliRunner().invoke(
        app,
        ["compare", "sturdy", "fragile", "-r", str(runs), "--bootstrap", "50"],
        env={"COLUMNS": "120"},
    )
    assert out.exit_code == 0, out.output
    assert "Robustness" in out.output and "UAR drop" in out.output
