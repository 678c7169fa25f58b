"""The axis registry: an axis is one module and one registry line.

A toy axis, declared here and registered for the test only, goes through everything that shows
axes — profile.json, profile.csv, profile.md, report.html, the radar, recommend and compare —
without any other file knowing it.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from trustser.metrics import bootstrap as bs
from trustser.profile import axes, collect_profile, run_compare, run_profile
from trustser.profile.axes import details_order, get_axis, registered_axes, scored_axes
from trustser.profile.axis import (
    AbsoluteEnds,
    Axis,
    Column,
    CsvColumns,
    Figure,
    Reading,
    Section,
)
from trustser.profile.cells import interval_text
from trustser.profile.estimator import METHOD_FOLD
from trustser.profile.model import ProfileError
from trustser.profile.radar import draw_radar_charts
from trustser.profile.recommend import SCENARIOS, RecommendError, recommend
from trustser.runs import write_json

TOY = "toy"


def _collect(results):
    """The toy figure: the emotion head's accuracy (fold mean); ``toy.json`` may say it cannot
    be measured."""
    said = results.json("toy.json") or {}
    if said.get("unmeasurable"):
        return Reading(not_measurable=said["unmeasurable"])
    metrics = results.metrics("emotion")
    if metrics is None:
        return None
    return Reading({"source": "emotion head"}, metrics["test_accuracy_mean"], notes=["toy: read"])


def _bootstrap(draws):
    tables = draws.head_tables("emotion", grouped=False)
    if tables is None:
        return
    estimate = draws.estimator.interval
    draws.store("toy_accuracy", estimate(bs.accuracy_from_counts, tables, METHOD_FOLD), axis=True)
    error = estimate(lambda t: 1.0 - bs.accuracy_from_counts(t), tables, METHOD_FOLD)
    draws.store("toy_error", error, replicates=True)


TOY_AXIS = Axis(
    name=TOY,
    title="Toy",
    metric="emotion accuracy (toy)",
    short="acc.",
    higher_is_better=True,
    collect=_collect,
    command=lambda c: f"trustser heads fit --backbone {c.quoted_model} --task emotion",
    absolute=AbsoluteEnds(0.25, 1.0, "accuracy 25 % → 100 %"),
    clips=lambda files: files.heads("emotion"),
    bootstrap=_bootstrap,
    csv=lambda b: CsvColumns(values={"toy_accuracy": b.raw.get(TOY)}, bounds={TOY: "toy_accuracy"}),
    markdown=lambda _p: [Column("toy acc. %", lambda b: interval_text(b, TOY, b.raw.get(TOY)))],
    section=Section("Toy", lambda p: f"<p>toy section of {len(p.backbones)} rows</p>"),
    figures=(Figure("toy_error", "Toy error", higher_is_better=False),),
    aliases=("tiny-axis",),
    details_after="privacy",
)


@pytest.fixture
def toy(monkeypatch):
    """The registry with the toy axis appended (restored after the test)."""
    monkeypatch.setattr("trustser.profile.axes.AXES", (*axes.AXES, TOY_AXIS))
    return TOY_AXIS


@pytest.fixture
def runs(tmp_path, write_fake_runs):
    write_fake_runs(tmp_path, "good", accuracy=0.85, clips=True)
    write_fake_runs(tmp_path, "bad", seed=3, accuracy=0.5, gmacs=20.0, clips=True)
    return tmp_path


def test_a_registered_axis_runs_through_every_output(toy, runs, tmp_path):
    profile, files = run_profile(runs, tmp_path / "out", scale="absolute", bootstrap=100)
    data = json.loads(files["json"].read_text())
    assert (
        data["axes"][-1] == TOY and data["scales"][TOY]["description"] == toy.absolute.description
    )
    good = next(b for b in data["backbones"] if b["name"] == "good")
    assert good["raw"][TOY] == pytest.approx(profile.get("good").performance["accuracy_mean"])
    assert 0.0 < good["scores"][TOY] <= 1.0 and good["axis_details"][TOY] == {
        "source": "emotion head"
    }
    assert good["intervals"][TOY]["low"] < good["raw"][TOY] < good["intervals"][TOY]["high"]
    assert "toy: read" in good["notes"]
    assert toy.details(profile.get("good")) == {"source": "emotion head"}
    assert get_axis("fairness").details(profile.get("good")) is profile.get("good").fairness
    header = files["csv"].read_text().splitlines()[0].split(",")
    assert {"score_toy", "toy_accuracy", "toy_accuracy_low"} <= set(header)
    markdown = files["markdown"].read_text()
    scores_header = next(line for line in markdown.splitlines() if line.startswith("| backbone |"))
    assert scores_header.endswith("| Toy |")  # the registry's order: the toy axis comes last
    assert "toy acc. %" in markdown and "| Toy | Toy error |" in markdown  # comparisons
    page = files["report"].read_text()
    assert "<h2>Toy</h2><p>toy section of 2 rows</p>" in page.replace("\n", "")
    # its details follow privacy's, as declared
    assert [a.name for a in details_order()][3] == TOY
    assert page.index("<h2>Privacy</h2>") < page.index("<h2>Toy</h2>") < page.index("<h2>Safety")
    chart = draw_radar_charts(profile).backbones[0].figure.axes[0]
    assert len(chart.get_xticks()) == len(scored_axes("absolute"))
    assert any(t.get_text().startswith("Toy\nacc. ") for t in chart.texts)


def test_recommend_weighs_the_axis_only_where_asked(toy, runs):
    profile = collect_profile(runs, scale="absolute", bootstrap=50)
    ranked = recommend(profile, weights="tiny-axis=1")
    assert [r.backbone for r in ranked.ranking] == ["good", "bad"]
    assert ranked.weights[TOY] == 1.0 and ranked.priorities["performance"] == "ignored"
    scenario = recommend(profile, scenario="edge")  # the paper's scenarios do not name it
    assert scenario.weights[TOY] == 0.0 and scenario.priorities[TOY] == "ignored"


def test_an_axis_off_the_paper_scale_has_no_score_there(toy, runs):
    profile = collect_profile(runs, scale="paper", bootstrap=0)
    assert [a.name for a in scored_axes("paper")] == [a.name for a in axes.AXES if a.paper_key]
    good = profile.get("good")
    assert good.raw[TOY] is not None and good.scores[TOY] is None and TOY not in profile.scales
    assert len(draw_radar_charts(profile).overlay.figure.axes[0].get_xticks()) == 5
    with pytest.raises(RecommendError, match="toy is weighed but not on the paper scale"):
        recommend(profile, weights="toy=1,perf=1")


def test_compare_compares_the_axis_and_its_figure(toy, runs, tmp_path):
    result = run_compare("good", "bad", runs, bootstrap=100)
    metrics = [c.metric for c in result.comparisons]
    assert metrics[-2:] == [TOY, "toy_error"]
    toy_result, error = result.comparisons[-2:]
    assert toy_result.verdict == "A better" and error.verdict == "A better"
    from trustser.cli.main import app

    out = CliRunner().invoke(
        app,
        ["compare", "good", "bad", "-r", str(runs), "--bootstrap", "50"],
        env={"COLUMNS": "200"},
    )
    assert out.exit_code == 0, out.output
    assert "Toy error" in out.output and "│ Toy " in out.output


def test_missing_and_not_measurable(toy, runs):
    write_json(runs / "bad" / "toy.json", {"unmeasurable": "one gender only"})
    (runs / "good" / "emotion" / "metrics.json").unlink()
    (runs / "good" / "emotion" / "predictions.csv").unlink()
    profile = collect_profile(runs, bootstrap=0)
    good, bad = profile.get("good"), profile.get("bad")
    assert good.missing[TOY] == "trustser heads fit --backbone good --task emotion"
    assert bad.not_measurable == {TOY: "one gender only"} and TOY not in bad.missing
    assert "not_measurable" in bad.to_dict() and "not_measurable" not in good.to_dict()


def test_the_paper_axes_write_no_new_keys(runs):
    profile = collect_profile(runs, bootstrap=0)
    row = profile.backbones[0].to_dict()
    paper = ["performance", "privacy", "safety", "fairness", "sustainability"]
    assert "not_measurable" not in row and list(row["raw"])[:5] == paper
    # the paper's five keep their own fields; only a new axis (robustness) has axis_details
    assert set(row.get("axis_details", {})) == {"robustness"}
    assert all(get_axis(a).own_field for a in paper)


def test_the_registry_refuses_inconsistent_axes(monkeypatch):
    assert get_axis("perf") is get_axis("performance") and len(registered_axes()) == 6
    paper = {a.name for a in registered_axes() if a.paper_key}
    for scenario in SCENARIOS.values():  # the paper's Table 5 names the paper's axes only
        assert set(scenario["priorities"]) == paper
    with pytest.raises(ProfileError, match="no axis 'loudness'"):
        get_axis("loudness")
    clash = Axis(**{**TOY_AXIS.__dict__, "aliases": ("cost",)})
    monkeypatch.setattr("trustser.profile.axes.AXES", (*axes.AXES, clash))
    with pytest.raises(ProfileError, match="'cost' names both the sustainability and the toy"):
        registered_axes()
    lost = Axis(**{**TOY_AXIS.__dict__, "details_after": "loudness"})
    monkeypatch.setattr("trustser.profile.axes.AXES", (*axes.AXES[:4], lost))
    with pytest.raises(ProfileError, match="after 'loudness', which is not a registered axis"):
        details_order()
