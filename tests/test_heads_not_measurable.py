"""Axes a corpus cannot measure: a corpus of one gender (as TESS is) from the store to the profile.

A tiny random Whisper extracts a toy tone corpus of six women; then the commands a new user runs
(`heads fit`, `heads probe`, `cost`, `attack`, `profile`, `recommend`, `compare`) must give every
axis the corpus can measure and say "not measurable" for the others (fairness and the gender
attack), never failing and never scoring them 0. The task rules (no gender labels, unknown
speakers, too few speakers) are checked on manifests alone.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trustser.cli.main import app
from trustser.extract import extract
from trustser.heads.tasks import NotMeasurableError, TaskError, build_task, plan_tasks
from trustser.manifest import Manifest, validate
from trustser.profile import read_profile
from trustser.profile.axes import scored_axes
from trustser.profile.radar import draw_radar_charts, radar_shape
from trustser.profile.recommend import recommend

BACKBONE = "tiny:whisper"
WOMEN = tuple((f"f{i}", "female") for i in range(1, 7))
REASON = "one gender only (6 female speakers in the tess-like manifest)"
FAIRNESS_REASON = "one gender only among the test clips (female)"
FIT = ["--epochs", "1", "--min-steps", "0", "--device", "cpu"]


def _invoke(*args: str, columns: int = 200):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns)})


def _text(result) -> str:
    return " ".join(result.output.split())  # rich wraps at the terminal width


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, toy_manifest_factory) -> dict[str, Path]:
    """A one-gender tone corpus extracted by a tiny Whisper, fitted, probed, costed, attacked."""
    root = tmp_path_factory.mktemp("one_gender")
    manifest = toy_manifest_factory(
        root / "toy",
        corpus="tess-like",
        speakers=WOMEN,
        groups=[["f1", "f2"], ["f3", "f4"], ["f5", "f6"]],
    )
    store, runs = root / "cache.zarr", root / "runs"
    extract(manifest, store, BACKBONE, device="cpu", progress=False)
    paths = {"root": root, "store": store, "runs": runs}
    fit = _invoke("heads", "fit", "--store", str(store), "--runs", str(runs), *FIT)
    probe = _invoke("heads", "probe", "--store", str(store), "--runs", str(runs))
    cost = _invoke(
        "cost", "--store", str(store), "--runs", str(runs), "--no-timing", "--device", "cpu"
    )
    attack = _invoke(
        "attack",
        "--store",
        str(store),
        "--runs",
        str(runs),
        "--device",
        "cpu",
        "--batch-size",
        "16",
    )
    for result in (cost, attack):
        assert result.exit_code == 0, result.output
    return {**paths, "fit": fit, "probe": probe}  # type: ignore[dict-item]


@pytest.fixture(scope="module")
def profiled(corpus) -> dict:
    out = corpus["root"] / "report"
    result = _invoke("profile", "-r", str(corpus["runs"]), "-o", str(out), columns=80)
    return {"result": result, "out": out, "profile": read_profile(out)}


def test_a_bare_fit_fits_every_task_it_can_and_notes_the_one_it_cannot(corpus):
    fit = corpus["fit"]
    assert fit.exit_code == 0, fit.output
    assert f"note: gender skipped for {BACKBONE}, not measurable: {REASON}" in _text(fit)
    model = corpus["runs"] / "tiny-whisper"
    assert (model / "emotion" / "metrics.json").is_file()
    assert (model / "speaker" / "metrics.json").is_file()  # six speakers: identification works
    assert not (model / "gender" / "metrics.json").exists()
    record = json.loads((model / "gender" / "not_measurable.json").read_text())
    assert record == {"task": "gender", "model": BACKBONE, "reason": REASON}


def test_naming_the_gender_task_is_still_an_error(corpus):
    for command in ("fit", "probe"):
        result = _invoke(
            "heads",
            command,
            "--store",
            str(corpus["store"]),
            "--runs",
            str(corpus["root"] / "elsewhere"),
            "--task",
            "gender",
            *(FIT if command == "fit" else []),
        )
        assert result.exit_code != 0
        assert f"task 'gender' cannot be measured on this corpus: {REASON}" in _text(result)


def test_bare_probes_skip_gender_with_the_reason(corpus):
    probe = corpus["probe"]
    assert probe.exit_code == 0, probe.output
    assert f"gender skipped for {BACKBONE}, not measurable: {REASON}" in _text(probe)
    metrics = json.loads((corpus["runs"] / "tiny-whisper" / "probe" / "metrics.json").read_text())
    assert metrics["not_measurable"] == {"gender": REASON}
    assert set(metrics["tasks"]) == {"emotion", "speaker"}


def test_the_profile_says_not_measurable_in_json_table_markdown_and_report(profiled):
    result, out = profiled["result"], profiled["out"]
    assert result.exit_code == 0, result.output
    row = json.loads((out / "profile.json").read_text())["backbones"][0]
    assert row["not_measurable"] == {"fairness": FAIRNESS_REASON, "privacy": REASON}
    for axis in ("fairness", "privacy"):
        assert row["scores"][axis] is None and row["raw"][axis] is None
        assert axis not in row["missing"]  # no command would fill it
    for axis in ("performance", "safety", "sustainability"):
        assert row["scores"][axis] is not None, axis
    # The 80-column table: the cells say it, a line under it says why.
    lines = result.output.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert "not measurable" in result.output
    # an axis this toy never ran (robustness) is missing, with its command; the two it cannot
    # measure are not
    text_lines = " ".join(result.output.split())
    assert "missing tiny:whisper fairness" not in text_lines
    assert "missing tiny:whisper privacy" not in text_lines
    text = _text(result)
    assert f"not measurable {BACKBONE} fairness: {FAIRNESS_REASON}" in text
    assert f"not measurable {BACKBONE} privacy: {REASON}" in text
    markdown = (out / "profile.md").read_text()
    assert f"not measurable: {FAIRNESS_REASON}" in markdown  # the raw metrics' fairness cell
    assert f"not measurable: {REASON}" in markdown
    assert f"- **{BACKBONE}** — fairness: {FAIRNESS_REASON}" in markdown
    scores = markdown.split("## Scores")[1].split("##")[0]
    assert scores.count("not measurable") == 2
    with open(out / "profile.csv", newline="") as handle:
        (csv_row,) = list(csv.DictReader(handle))
    assert (
        csv_row["score_fairness"] == ""
        and f"fairness: {FAIRNESS_REASON}" in csv_row["not_measurable"]
    )
    report = (out / "report.html").read_text()
    assert report.count('<td class="unmeasurable"') == 2
    assert f"fairness: {FAIRNESS_REASON}" in report


def _angle(a: float) -> float:
    return round(a % (2 * math.pi), 9)


def test_the_radar_leaves_a_gap_where_an_axis_is_not_measurable(profiled):
    profile = profiled["profile"]
    entry = profile.backbones[0]
    axes = scored_axes(profile.scale)
    shape = radar_shape(entry, axes)
    assert shape.gaps == {
        "fairness": f"not measurable: {FAIRNESS_REASON}",
        "privacy": f"not measurable: {REASON}",
    }
    gap_angles = {_angle(s.angle) for s in shape.spokes if s.gap}
    scored = {_angle(s.angle): s.score for s in shape.spokes if s.score is not None}
    outline = [(_angle(a), r) for run in shape.outline for a, r in run]
    assert {a for a, _ in outline} == set(scored)  # every scored spoke, no gap spoke
    assert all(scored[a] == r for a, r in outline)
    # The fill's only points at the centre stand on scored spokes, beside the gaps.
    assert not gap_angles & {_angle(a) for a, _ in shape.fill}
    # The drawn chart: at a gap's angle only the dashed spoke mark, no point, no 0.
    chart = draw_radar_charts(profile).backbones[0]
    (ax,) = [a for a in chart.figure.axes if a.name == "polar"]
    for line in ax.lines:
        angles = {_angle(a) for a in line.get_xdata()}
        if angles & gap_angles:
            assert line.get_linestyle() == "--" and list(line.get_ydata()) == [0, 1]
    labels = " ".join(t.get_text().replace("\n", " ") for t in ax.texts)
    assert "not measurable: one gender only among the test clips (female)" in labels


def test_recommend_leaves_a_not_measurable_axis_out_instead_of_scoring_it_zero(profiled, corpus):
    result = recommend(profiled["profile"], scenario="cloud")
    assert set(result.unweighed) == {"fairness", "privacy"}
    assert result.weights["fairness"] == result.weights["privacy"] == 0
    assert math.isclose(sum(result.weights.values()), 1.0)
    (ranked,) = result.ranking
    assert set(ranked.contributions) == {"performance", "safety", "sustainability"}
    cli = _invoke("recommend", "-p", str(profiled["out"]), "--scenario", "cloud")
    assert cli.exit_code == 0, cli.output
    assert f"not weighed: privacy (not measurable on {BACKBONE}: {REASON})" in _text(cli)


def test_compare_says_not_measurable(corpus):
    runs = corpus["root"] / "compare-runs"
    shutil.copytree(corpus["runs"], runs)
    shutil.copytree(runs / "tiny-whisper", runs / "other")
    result = _invoke("compare", BACKBONE, "other", "-r", str(runs), "--bootstrap", "50")
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if "│" in line}
    for title in ("Fairness", "Privacy"):
        assert "not measurable" in rows[title], rows[title]
    assert f"not measurable ({BACKBONE}: {FAIRNESS_REASON}" in _text(result)


# ------------------------------------------------------------------ the task rules, manifests only


def _manifest(toy_manifest_factory, tmp_path, **kwargs) -> Manifest:
    return toy_manifest_factory(tmp_path / "toy", **kwargs)


def test_no_gender_labels_and_unknown_genders(toy_manifest_factory, tmp_path):
    manifest = _manifest(toy_manifest_factory, tmp_path)
    unknown = replace(
        manifest, utterances=tuple(replace(u, gender="unknown") for u in manifest.utterances)
    )
    validate(unknown, check_files=False)  # "unknown" is an accepted gender
    plan = plan_tasks(None, unknown)
    assert [t.name for t in plan.tasks] == ["emotion", "speaker"]
    assert plan.skipped == {
        "gender": "no gender labels (every clip of the toy manifest is 'unknown')"
    }
    # Some clips unknown: the gender task leaves them out, emotion keeps them.
    mixed = replace(
        manifest,
        utterances=tuple(
            replace(u, gender="unknown") if u.id.endswith("_0") else u for u in manifest.utterances
        ),
    )
    gender, emotion = build_task("gender", mixed), build_task("emotion", mixed)
    dropped = {u.id for u in mixed.utterances if u.gender == "unknown"}
    assert set(gender.excluded) == dropped and not dropped & set(gender.ids)
    assert dropped <= set(emotion.ids)


def test_a_fold_that_trains_on_one_gender_cannot_train_a_gender_head(
    toy_manifest_factory, tmp_path
):
    speakers = (("f1", "female"), ("f2", "female"), ("f3", "female"), ("m1", "male"))
    lopsided = _manifest(
        toy_manifest_factory, tmp_path, speakers=speakers, groups=[["f1"], ["f2"], ["f3", "m1"]]
    )
    with pytest.raises(NotMeasurableError, match="trains on female speakers only"):
        build_task("gender", lopsided)
    assert "gender" in plan_tasks("all", lopsided).skipped


def test_speaker_identification_with_too_few_clips_per_speaker(toy_manifest_factory, tmp_path):
    few = _manifest(toy_manifest_factory, tmp_path, takes=1)  # 4 clips a speaker, 5 folds
    with pytest.raises(NotMeasurableError, match="too few speakers"):
        build_task("speaker", few)
    plan = plan_tasks(None, few)
    assert [t.name for t in plan.tasks] == ["emotion", "gender"] and "speaker" in plan.skipped
    with pytest.raises(TaskError, match="no task of 'speaker' can be measured"):
        plan_tasks("speaker", few, skip_unmeasurable=True)
    # Clips of an unknown speaker are no class of the closed set.
    named = replace(
        few,
        utterances=tuple(
            replace(u, speaker="unknown") if u.speaker == "s1" else u for u in few.utterances
        ),
    )
    task = build_task("speaker", named, speaker_folds=3)  # 4 clips a speaker are enough for 3
    assert "unknown" not in task.labels and set(task.labels) == {"s2", "s3", "s4", "s5", "s6"}
    assert {i for i, why in task.excluded.items() if why == "speaker unknown"} == {
        u.id for u in few.utterances if u.speaker == "s1"
    }
