"""Normalisation: axis scores, the paper / absolute / relative scales, re-scoring."""

from __future__ import annotations

import pytest

from trustser.profile import AXES, ProfileError, axis_score, collect_profile, score_profile


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
    assert all(profile.backbones[0].scores[a] == 1.0 for a in AXES)
    assert any("same performance value" in n for n in profile.notes)
