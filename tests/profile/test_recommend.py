"""Deployment rankings: the paper's Table 5 scenarios and custom weights."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from trustser.profile import (
    PAPER_TABLE4,
    BackboneProfile,
    Profile,
    axis_names,
    collect_profile,
    read_profile,
    run_profile,
    write_profile,
)
from trustser.profile.recommend import (
    RecommendError,
    parse_weights,
    recommend,
    recommendation_to_markdown,
    run_recommend,
    saturated_text,
    scenario_weights,
)


@pytest.fixture(scope="module")
def paper_profiles(tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    return {
        scale: collect_profile(empty, paper=list(PAPER_TABLE4), scale=scale)
        for scale in ("paper", "relative")
    }


@pytest.mark.parametrize("scale", ["paper", "relative"])
def test_table4_numbers_reproduce_table5_where_they_can(paper_profiles, scale):
    profile = paper_profiles[scale]
    assert recommend(profile, scenario="edge").best == "paper: Whisper tiny"
    assert recommend(profile, scenario="critical").best == "paper: WavLM Base+"
    # cloud: privacy has high priority and Whisper tiny leaks gender least (92.2 % vs 97.4 %), so
    # a linear score over Table 4 puts it first; the paper's pick, Whisper small, comes second.
    cloud = recommend(profile, scenario="cloud")
    assert [r.backbone for r in cloud.ranking[:2]] == [
        "paper: Whisper tiny",
        "paper: Whisper small",
    ]
    assert cloud.paper_choice == "Whisper small"


def test_scores_are_the_weighted_sum_and_reasons_explain_the_order(paper_profiles):
    profile = paper_profiles["paper"]
    result = recommend(profile, scenario="edge")
    assert sum(result.weights.values()) == pytest.approx(1.0)
    assert result.weights["sustainability"] == pytest.approx(3 / 9)
    top = result.ranking[0]
    entry = profile.get(top.backbone)
    assert top.score == pytest.approx(
        sum(result.weights[a] * entry.scores[a] for a in axis_names() if result.weights[a])
    )
    assert result.weights["robustness"] == 0.0  # the paper's scenarios do not name it
    assert [r.rank for r in result.ranking] == list(range(1, len(PAPER_TABLE4) + 1))
    assert all(a.score >= b.score for a, b in zip(result.ranking, result.ranking[1:], strict=False))
    assert any("sustainability" in reason and "high priority" in reason for reason in top.reasons)
    assert any(reason.startswith("ahead of paper: Whisper base") for reason in top.reasons)
    markdown = recommendation_to_markdown(result)
    assert "| 1 | paper: Whisper tiny |" in markdown and "recommends Whisper tiny" in markdown


def test_custom_weights():
    assert parse_weights("perf=3, safety=high,sust=0.5") == {
        "performance": 3.0,
        "privacy": 0.0,
        "safety": 3.0,
        "fairness": 0.0,
        "sustainability": 0.5,
        "robustness": 0.0,
    }
    assert scenario_weights("critical")["safety"] == 3.0
    for text, message in (
        ("perf", "AXIS=VALUE"),
        ("speed=1", "unknown axis 'speed'"),
        ("perf=-1", ">= 0"),
        ("perf=lots", "number or high/med/low"),
        ("perf=0", "every weight is 0"),
    ):
        with pytest.raises(RecommendError, match=message):
            parse_weights(text)
    with pytest.raises(RecommendError, match="scenario 'home'"):
        scenario_weights("home")


def _entry(name: str, scores: dict[str, float | None]) -> BackboneProfile:
    entry = BackboneProfile(name=name)
    entry.scores.update(scores)
    entry.raw.update({a: 0.5 for a, v in scores.items() if v is not None})
    entry.missing.update(
        {a: f"trustser cost --backbone {name}" for a, v in scores.items() if v is None}
    )
    return entry


def test_backbones_missing_a_weighted_axis_are_listed_not_ranked():
    full = dict.fromkeys(axis_names(), 0.5)
    profile = Profile(
        backbones=[_entry("a", full), _entry("b", {**full, "sustainability": None, "safety": 0.9})],
        scale="paper",
        scales={},
        attack={"method": "fgsm", "snr_db": 45.0},
    )
    result = recommend(profile, scenario="edge")
    assert [r.backbone for r in result.ranking] == ["a"]
    assert "missing sustainability" in result.excluded["b"]
    assert "run `trustser cost --backbone b`" in result.excluded["b"]
    # with zero weight on the missing axis, b is ranked (and wins on safety)
    custom = recommend(profile, weights="safety=1,perf=1")
    assert [r.backbone for r in custom.ranking] == ["b", "a"]
    assert custom.priorities["sustainability"] == "ignored"
    only_b = Profile(backbones=[profile.backbones[1]], scale="paper", scales={}, attack={})
    with pytest.raises(RecommendError, match="no backbone has every weighted axis"):
        recommend(only_b, scenario="edge")
    with pytest.raises(RecommendError, match="exactly one"):
        recommend(profile)


def test_an_axis_every_candidate_passes_the_end_of_is_named_as_unable_to_separate():
    full = dict.fromkeys(axis_names(), 0.5)
    a, b = _entry("a", {**full, "performance": 1.0}), _entry("b", {**full, "performance": 1.0})
    a.raw["performance"], b.raw["performance"] = 0.89, 0.92  # both past the scale's best end
    profile = Profile(backbones=[a, b], scale="paper", scales={}, attack={})
    result = recommend(profile, scenario="critical")
    assert result.saturated == {"performance": "best"}
    text = saturated_text(result)
    assert "performance (all at its best end)" in text and "paper scale" in text
    assert saturated_text(result) in recommendation_to_markdown(result)
    # equal raw figures are a genuine tie on the axis, not a clipped one; nor is one candidate
    b.raw["performance"] = 0.89
    assert recommend(profile, scenario="critical").saturated == {}
    alone = Profile(backbones=[a], scale="paper", scales={}, attack={})
    assert recommend(alone, scenario="critical").saturated == {}


def test_run_recommend_from_saved_profile_and_cli(tmp_path):
    from trustser.cli.profile import app

    profile = collect_profile(tmp_path / "empty", paper=list(PAPER_TABLE4))
    write_profile(profile, tmp_path / "out", charts=False, report=False)
    results = run_recommend(profile=tmp_path / "out")
    assert [r.scenario for r in results] == ["edge", "cloud", "critical"]
    relative = run_recommend(profile=tmp_path / "out", scale="relative", scenarios=["edge"])
    assert relative[0].scale == "relative"
    with pytest.raises(RecommendError, match="not both"):
        run_recommend(profile=tmp_path / "out", scenarios=["edge"], weights="perf=1")

    runner = CliRunner()
    result = runner.invoke(
        app, ["recommend", "--profile", str(tmp_path / "out"), "--scenario", "critical"]
    )
    assert result.exit_code == 0, result.output
    assert "paper: WavLM Base+" in result.output and "critical" in result.output
    custom = runner.invoke(
        app, ["recommend", "--profile", str(tmp_path / "out"), "--weights", "sust=1"]
    )
    assert custom.exit_code == 0 and "paper: Whisper tiny" in custom.output
    bad = runner.invoke(app, ["recommend", "--profile", str(tmp_path / "out"), "--weights", "x=1"])
    assert bad.exit_code == 2 and "unknown axis 'x'" in bad.output


def test_a_clear_winner_ranks_first_in_nearly_every_replicate(tmp_path, write_fake_runs):
    write_fake_runs(tmp_path, "good", accuracy=0.95, asr=0.3, gmacs=1.0, seed=1, clips=True)
    write_fake_runs(tmp_path, "bad", accuracy=0.4, asr=0.9, gmacs=9.0, seed=2, clips=True)
    result = recommend(collect_profile(tmp_path, bootstrap=300), scenario="critical")
    assert result.replicates == 300 and result.tied == ["good"] and not result.is_tie
    assert result.ranking[0].first_share >= 0.95
    assert result.verdict.startswith("good (first in")


def test_near_equal_candidates_are_a_tie_not_a_winner(tmp_path, write_fake_runs):
    write_fake_runs(tmp_path / "runs", "one", accuracy=0.7, seed=1, clips=True)
    write_fake_runs(tmp_path / "runs", "two", accuracy=0.7, seed=2, clips=True)
    profile = collect_profile(tmp_path / "runs", bootstrap=300)
    result = recommend(profile, scenario="critical")
    assert result.is_tie and set(result.tied) == {"one", "two"}
    assert result.verdict.startswith("tie: ")
    assert sum(r.first_share for r in result.ranking) == pytest.approx(1.0)
    # the replicates travel in profile.json: a saved profile ranks the same way
    run_profile(tmp_path / "runs", tmp_path / "out", bootstrap=300, charts=False)
    again = recommend(read_profile(tmp_path / "out"), scenario="critical")
    assert again.tied == result.tied and again.replicates == 300
    assert "Choice: **tie: " in recommendation_to_markdown(result)


def test_a_row_that_cannot_measure_an_axis_others_measured_is_not_ranked_without_it():
    full = dict.fromkeys(axis_names(), 0.5)
    # a variant that cannot be attacked, otherwise the best: ranking it without safety would
    # favour it, so it is left out with the reason, and safety keeps its weight for the rest
    post = _entry("a@fair-post", {**full, "safety": None, "performance": 0.9})
    post.missing.clear()
    post.not_measurable["safety"] = "needs each clip's gender at inference"
    profile = Profile(
        backbones=[_entry("a", full), post, _entry("b", {**full, "safety": 0.2})],
        scale="paper",
        scales={},
        attack={"method": "fgsm", "snr_db": 45.0},
    )
    result = recommend(profile, scenario="critical")
    assert [r.backbone for r in result.ranking] == ["a", "b"]
    assert result.excluded["a@fair-post"] == (
        "safety not measurable: needs each clip's gender at inference"
    )
    assert result.weights["safety"] > 0 and not result.unweighed
