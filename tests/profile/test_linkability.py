"""Linkability beside the privacy axis: the speaker-verification EER in every table, the
``privacy_score = strongest`` option, and `trustser compare` on the EER (paired by trials).

Two models of one toy corpus: ``voice`` (a planted speaker signal: easily linked) and ``noise``
(none: EER near chance), each with fake heads, attacks and cost runs and a real
``trustser privacy verify`` run on its store group.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from trustser.cli.main import app
from trustser.profile import collect_profile, run_compare, run_profile
from trustser.profile.axes import axis_options, get_axis, linkability
from trustser.profile.det import write_det_chart
from trustser.profile.model import BackboneProfile, Profile, ProfileError
from trustser.profile.radar import draw_radar_charts
from trustser.runs import RunLayout, write_json
from trustser.verification import run_verification

from ..test_verification_run import voice_and_noise


@pytest.fixture(scope="module")
def linked_runs(tmp_path_factory):
    """``runs/{voice,noise}``: fake head, attack and cost results plus a verification run."""
    from .conftest import write_fake_runs

    root = tmp_path_factory.mktemp("linkability")
    store, _ = voice_and_noise(root / "cache.zarr")
    runs = root / "runs"
    metrics = {}
    for seed, name in enumerate(("voice", "noise")):
        write_fake_runs(runs, name, seed=seed, clips=True)
        # no gender probe: the gender head (about 90 %) is the gender attacker
        write_json(RunLayout(runs).probe_dir(name) / "metrics.json", {"emotion_test_uar_mean": 0.9})
        result = run_verification(store, name, runs=runs, replicates=50)
        write_det_chart(result.directory)
        metrics[name] = result.metrics
    return {"runs": runs, "store": store, "metrics": metrics}


def test_the_eer_stands_beside_privacy_in_every_table(linked_runs, tmp_path):
    runs, metrics = linked_runs["runs"], linked_runs["metrics"]
    profile, files = run_profile(runs, tmp_path / "out", bootstrap=100)
    data = json.loads(files["json"].read_text())
    voice = next(b for b in data["backbones"] if b["name"] == "voice")
    for attacker in ("ignorant", "informed"):
        key = linkability.eer_key(attacker)
        interval = voice["intervals"][key]
        assert interval["value"] == pytest.approx(metrics["voice"][f"{attacker}_eer"])
        assert interval["low"] <= interval["value"] <= interval["high"]
        assert len(voice["replicates"][key]) == 100  # kept: compared like an axis
        figures = voice["privacy"]["verification"]["attackers"][attacker]
        assert figures["eer"]["value"] == metrics["voice"][f"{attacker}_eer"]
        assert set(figures["by_gender"]) == {"female", "male"}
    assert voice["privacy"]["verification"]["trials_digest"]
    # the axis keeps the paper's definition: gender inference, as without verification
    assert voice["privacy"]["axis"]["attacker"] == "gender head"
    assert voice["raw"]["privacy"] == profile.get("voice").privacy["axis"]["accuracy"]
    rows = {r["backbone"]: r for r in csv.DictReader(io.StringIO(files["csv"].read_text()))}
    columns = {"eer_ignorant", "eer_informed", "eer_informed_low", "min_dcf_informed"}
    assert columns <= set(rows["voice"])
    assert float(rows["noise"]["eer_informed"]) == pytest.approx(metrics["noise"]["informed_eer"])
    markdown = files["markdown"].read_text()
    assert "speaker-verification EER % (ignorant / informed)" in markdown
    assert "| EER (ignorant) | EER (informed) |" in markdown  # the paired comparisons
    page = files["report"].read_text()
    assert "Linkability (speaker verification)" in page
    assert page.count('alt="DET curves: ') == 2
    point = metrics["voice"]["operating_point"]  # the note says what the runs recorded
    assert f"minDCF at P_target {point['p_target']:g}, C_miss = {point['c_miss']:g}" in page
    output = _cli(["profile", "-r", str(runs), "-o", str(tmp_path / "cli"), "--bootstrap", "20"])
    assert "Beside the axes" in output and "EER (informed)" in output


def test_without_a_bootstrap_the_figures_still_show(linked_runs):
    profile = collect_profile(linked_runs["runs"], bootstrap=0)
    figure = get_axis("privacy").figures[1]
    assert figure.value(profile.get("voice")) == linked_runs["metrics"]["voice"]["informed_eer"]


def test_strongest_scores_the_stronger_of_gender_and_linkability(linked_runs):
    runs = linked_runs["runs"]
    gender = collect_profile(runs, scale="absolute", bootstrap=50)
    strongest = collect_profile(
        runs, scale="absolute", bootstrap=50, options={"privacy_score": "strongest"}
    )
    voice, noise = strongest.get("voice"), strongest.get("noise")
    eer = min(linked_runs["metrics"]["voice"][f"{a}_eer"] for a in ("ignorant", "informed"))
    chance = voice.context["gender_chance"]
    # voice links its speakers: linkability leaks more than gender inference does
    assert voice.privacy["axis"]["attacker"].startswith("speaker verification")
    assert voice.raw["privacy"] == pytest.approx(chance + (1 - chance) * (1 - 2 * eer))
    assert voice.raw["privacy"] > gender.get("voice").raw["privacy"]
    assert voice.scores["privacy"] < gender.get("voice").scores["privacy"]
    low, high = voice.intervals["privacy"]["low"], voice.intervals["privacy"]["high"]
    assert low <= voice.raw["privacy"] <= high
    assert voice.privacy["axis"]["gender_accuracy"] == gender.get("voice").raw["privacy"]
    # noise links nothing: the axis keeps gender inference
    assert noise.privacy["axis"]["attacker"] == gender.get("noise").privacy["axis"]["attacker"]
    assert noise.raw["privacy"] == gender.get("noise").raw["privacy"]
    assert any("privacy_score = strongest" in n for n in strongest.notes)
    index = strongest.backbones.index(voice)
    chart = draw_radar_charts(strongest).backbones[index].figure.axes[0]
    assert any("EER" in t.get_text() for t in chart.texts)


def test_the_option_is_checked_and_the_paper_scale_keeps_the_papers_definition(linked_runs):
    assert axis_options(None, "paper") == {"privacy_score": "gender"}
    with pytest.raises(ProfileError, match="not on the paper scale"):
        collect_profile(linked_runs["runs"], options={"privacy_score": "strongest"})
    with pytest.raises(ProfileError, match="takes one of gender, strongest"):
        axis_options({"privacy_score": "max"}, "absolute")
    with pytest.raises(ProfileError, match="unknown axis option"):
        axis_options({"privacy": "strongest"}, "absolute")
    result = CliRunner().invoke(
        app, ["profile", "-r", str(linked_runs["runs"]), "--privacy-score", "strongest"]
    )
    assert result.exit_code == 2 and "--scale absolute or relative" in result.output


def test_strongest_without_verification_keeps_gender_and_says_so(tmp_path, write_fake_runs):
    write_fake_runs(tmp_path, "plain", clips=True)
    plain = collect_profile(
        tmp_path, scale="relative", bootstrap=0, options={"privacy_score": "strongest"}
    ).get("plain")
    assert plain.privacy["axis"]["attacker"] == "linear probe (all layers)"
    assert any("no speaker verification was found" in n for n in plain.notes)


def test_compare_covers_the_eer_paired_by_trials(linked_runs, tmp_path):
    runs = linked_runs["runs"]
    result = run_compare("voice", "noise", runs, bootstrap=200)
    by_metric = {c.metric: c for c in result.comparisons}
    for attacker in ("ignorant", "informed"):
        eer = by_metric[linkability.eer_key(attacker)]
        assert eer.a == pytest.approx(linked_runs["metrics"]["voice"][f"{attacker}_eer"])
        # the interval as computed (stored to 6 decimals): here every replicate agrees
        assert eer.difference < 0 and eer.high < 0
        assert eer.low - 1e-6 <= eer.difference <= eer.high + 1e-6
        assert eer.verdict == "B better"  # noise hides who is speaking: a higher EER
    output = _cli(["compare", "voice", "noise", "-r", str(runs), "--bootstrap", "50"])
    assert "EER (informed)" in output and "B better" in output
    # verification of another trial sample: no paired comparison of the EER
    run_verification(linked_runs["store"], "noise", runs=tmp_path, max_nontargets=10, replicates=20)
    moved = tmp_path / "noise" / "verification"
    target = runs / "noise" / "verification"
    saved = {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()}
    try:
        for name in ("metrics.json", "trials.csv"):
            (target / name).write_bytes((moved / name).read_bytes())
        unpaired = {
            c.metric: c for c in run_compare("voice", "noise", runs, bootstrap=50).comparisons
        }
        assert unpaired["eer_informed"].verdict == "not paired (measured on different trials)"
    finally:
        for name, content in saved.items():
            (target / name).write_bytes(content)


def _cli(arguments: list[str]) -> str:
    result = CliRunner().invoke(app, arguments, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_recommend_ranks_on_the_privacy_score_asked_for(linked_runs, tmp_path):
    from trustser.profile import write_profile
    from trustser.profile.recommend import RecommendError, run_recommend

    runs = linked_runs["runs"]

    def privacy_ranking(**options: str) -> dict[str, float]:
        (result,) = run_recommend(
            runs=runs,
            scale="absolute",
            weights="privacy=1",
            bootstrap=0,
            options=options or None,
        )
        return {r.backbone: r.score for r in result.ranking}

    gender, strongest = privacy_ranking(), privacy_ranking(privacy_score="strongest")
    expected = collect_profile(
        runs, scale="absolute", bootstrap=0, options={"privacy_score": "strongest"}
    )
    for name in ("voice", "noise"):
        assert strongest[name] == pytest.approx(expected.get(name).scores["privacy"])
    # voice links its speakers: scored on the stronger threat, its privacy falls below noise's
    assert strongest["voice"] < gender["voice"]
    assert strongest["voice"] < strongest["noise"]
    assert privacy_ranking(privacy_score="gender") == gender
    # the command passes the option on; a saved profile keeps what it was collected with
    args = ["recommend", "-r", str(runs), "--weights", "privacy=1", "--scale", "absolute"]
    output = _cli([*args, "--bootstrap", "0", "--privacy-score", "strongest"])
    assert f"{strongest['voice']:.3f}" in output and f"{gender['voice']:.3f}" not in output
    write_profile(expected, tmp_path / "saved", charts=False, report=False)
    with pytest.raises(RecommendError, match="--privacy-score applies when collecting"):
        run_recommend(profile=tmp_path / "saved", options={"privacy_score": "strongest"})
    refused = CliRunner().invoke(app, [*args, "--privacy-score", "strongest", "-p", "x"])
    assert refused.exit_code == 2 and "applies when collecting" in refused.output
    assert (
        "not on the paper scale"
        in CliRunner()
        .invoke(
            app, ["recommend", "-r", str(runs), "--privacy-score", "strongest", "--bootstrap", "0"]
        )
        .output
    )


def test_the_report_names_each_operating_point_the_runs_recorded():
    def row(name, p_target):
        point = {"p_target": p_target, "c_miss": 1.0, "c_fa": 1.0}
        return BackboneProfile(name=name, privacy={linkability.DETAILS: {"operating_point": point}})

    one = Profile(backbones=[row("a", 0.05), row("b", 0.05)], scale="paper", scales={}, attack={})
    shown = linkability.operating_points_text(one)
    assert shown == "minDCF at P_target 0.05, C_miss = 1, C_fa = 1, normalised."
    two = Profile(backbones=[row("a", 0.05), row("b", 0.01)], scale="paper", scales={}, attack={})
    shown = linkability.operating_points_text(two)
    assert "the runs differ in: P_target 0.01" in shown and "; P_target 0.05" in shown
