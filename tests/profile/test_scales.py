"""Normalisation: axis scores, the paper / absolute / relative scales, re-scoring."""

from __future__ import annotations

import pytest

from trustser.profile import (
    ProfileError,
    axis_names,
    axis_score,
    collect_profile,
    score_profile,
)


def test_axis_score_and_scales(tmp_path, write_fake_runs):
    assert axis_score(0.625, 0.5, 0.75) == (pytest.approx(0.5), False)
    assert axis_score(0.9, 0.5, 0.75) == (1.0, True)
    assert axis_score(10.0, 100.0, 1.0, log=True) == (pytest.approx(0.5), False)
    with pytest.raises(ProfileError, match="distinct"):
        axis_score(1.0, 2.0, 2.0)
    with pytest.raises(ProfileError, match="positive"):
        axis_score(0.0, 100.0, 1.0, log=True)

    write_fake_runs(tmp_path, "good", accuracy=0.9, gmacs=1.0, asr=0.5, seed=1)
    write_fake_runs(tmp_path, "bad", accuracy=0.5, gmacs=40.0, asr=0.9, seed=2)
    relative = collect_profile(tmp_path, scale="relative")
    good, bad = relative.get("good"), relative.get("bad")
    for axis in ("performance", "safety", "sustainability"):
        assert (good.scores[axis], bad.scores[axis]) == (1.0, 0.0)
    absolute = collect_profile(tmp_path, scale="absolute")
    uar = absolute.get("good").raw["performance"]
    assert absolute.get("good").scores["performance"] == pytest.approx((uar - 0.25) / 0.75)
    assert absolute.get("bad").scores["safety"] == pytest.approx(0.1)
    # re-scoring a profile keeps the raw values
    rescored = score_profile(absolute, "paper")
    assert rescored.scale == "paper" and rescored.get("good").raw == absolute.get("good").raw
    with pytest.raises(ValueError, match="scale='linear'"):
        collect_profile(tmp_path, scale="linear")


def test_relative_scale_with_one_backbone_says_so(tmp_path, write_fake_runs):
    write_fake_runs(tmp_path)
    profile = collect_profile(tmp_path, scale="relative")
    assert all(profile.backbones[0].scores[a] == 1.0 for a in axis_names())
    assert any("same performance value" in n for n in profile.notes)


def test_the_paper_scale_is_derived_from_table_4_by_its_rule():
    from trustser.profile import PAPER_TABLE4
    from trustser.profile.scales import PAPER_MARGIN, paper_scale_ends

    assert PAPER_MARGIN == 0.5
    uar = [row["uar"] for row in PAPER_TABLE4.values()]
    spread = max(uar) - min(uar)
    assert paper_scale_ends("performance") == pytest.approx(
        (min(uar) - spread / 2, max(uar) + spread / 2)
    )
    assert paper_scale_ends("performance") == pytest.approx((0.5345, 0.7165))
    assert paper_scale_ends("fairness") == pytest.approx((0.2315, 0.1415))
    assert paper_scale_ends("privacy") == pytest.approx((1.0, 0.8915))  # capped at 100 %
    assert paper_scale_ends("safety") == pytest.approx((1.0, 0.368))
    worst, best = paper_scale_ends("sustainability")  # in log10
    assert (worst, best) == pytest.approx((173.19, 0.5765), rel=1e-3)
    # the paper's rows fill the middle half of every axis whose ends are not capped
    keys = {"performance": "uar", "fairness": "eo", "sustainability": "gmacs"}
    for axis, key in keys.items():
        worst, best = paper_scale_ends(axis)
        log = axis == "sustainability"
        scores = [axis_score(r[key], worst, best, log=log)[0] for r in PAPER_TABLE4.values()]
        assert min(scores) == pytest.approx(0.25) and max(scores) == pytest.approx(0.75)


def test_a_value_past_an_end_is_clipped_and_said_so(tmp_path, write_fake_runs):
    write_fake_runs(tmp_path, accuracy=0.99)  # far above the paper's UARs, like EmoDB's 88.8 %
    (entry,) = collect_profile(tmp_path).backbones
    assert entry.scores["performance"] == 1.0 and entry.clipped["performance"]
    (note,) = [n for n in entry.notes if n.startswith("beyond the scale: performance")]
    assert "best end (71.65 %)" in note and "rim" in note
    # re-scoring does not pile the note up, and a scale with room for it has no such note
    again = score_profile(score_profile(collect_profile(tmp_path), "paper"), "paper")
    assert sum(n.startswith("beyond the scale: performance") for n in again.backbones[0].notes) == 1
    absolute = score_profile(again, "absolute")
    assert not any(
        n.startswith("beyond the scale: performance") for n in absolute.backbones[0].notes
    )
    assert "71.65 %" in str(again.scales["performance"]["description"])
    assert "Table 4 rows 58.0–67.1 %" in again.scales["performance"]["basis"]
