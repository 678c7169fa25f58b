"""The robustness figures: unchanged share, UAR drop, suite mean, per gender, with intervals."""

from __future__ import annotations

import numpy as np
import pytest

from trustser.corruptions import suite
from trustser.metrics._common import MetricError
from trustser.metrics.performance import uar_score
from trustser.metrics.robustness import suite_mean, unchanged_share
from trustser.robustness.scores import ClipRow, score_suite

LABELS = ["neutral", "happy", "sad", "angry"]


def test_unchanged_share_and_its_undefined_case():
    assert unchanged_share(["a", "b", "c", "d"], ["a", "b", "x", "d"]) == 0.75
    with pytest.raises(MetricError, match="are empty"):
        unchanged_share([], [])


def test_the_suite_mean_weighs_every_corruption_alike():
    corruption_of = {"noise-1": "noise", "noise-2": "noise", "noise-3": "noise", "phone-1": "phone"}
    values = {"noise-1": 0.9, "noise-2": 0.6, "noise-3": 0.3, "phone-1": 0.2}
    # noise averages its severities (0.6), then the two corruptions count alike: (0.6 + 0.2) / 2
    assert suite_mean(values, corruption_of) == pytest.approx(0.4)
    # replicate by replicate, an undefined value left out of its corruption's mean
    replicates = {k: np.array([v, v + 0.1]) for k, v in values.items()}
    replicates["noise-3"] = np.array([np.nan, 0.4])
    assert suite_mean(replicates, corruption_of) == pytest.approx([0.475, 0.5])
    with pytest.raises(MetricError, match="no corruption is given"):
        suite_mean({"hum-1": 0.5}, corruption_of)


def _rows(seed: int = 0) -> list[ClipRow]:
    """Two folds of one woman and one man, 8 clips each; the corrupted copies of the men's
    clips change their prediction more often."""
    rng = np.random.default_rng(seed)
    rows = []
    for case in suite(["white_noise", "telephone"]):
        for fold, speakers in (("fold1", ("f1", "m1")), ("fold2", ("f2", "m2"))):
            for speaker in speakers:
                for k in range(8):
                    true = LABELS[k % 4]
                    clean = true if rng.random() < 0.8 else LABELS[(k + 1) % 4]
                    flip = rng.random() < (0.5 if speaker.startswith("m") else 0.1)
                    pred = LABELS[(LABELS.index(clean) + 1) % 4] if flip else clean
                    gender = "male" if speaker.startswith("m") else "female"
                    rows.append(
                        ClipRow(
                            f"{speaker}-{k}", fold, speaker, gender, true, case.name, clean, pred
                        )
                    )
    return rows


def test_each_figure_is_per_fold_then_the_fold_mean_and_per_gender():
    rows = _rows()
    cases = suite(["white_noise", "telephone"])
    result = score_suite(rows, LABELS, cases, replicates=200, seed=1)
    assert [c["name"] for c in result["cases"]] == [c.name for c in cases]
    for block in result["cases"]:
        mine = [r for r in rows if r.case == block["name"]]
        for gender in (None, "female", "male"):
            chosen = [r for r in mine if gender is None or r.gender == gender]
            per_fold = [[r for r in chosen if r.fold == f] for f in ("fold1", "fold2")]
            uar = np.mean([uar_score([r.true for r in p], [r.pred for r in p]) for p in per_fold])
            clean = np.mean(
                [uar_score([r.true for r in p], [r.clean_pred for r in p]) for p in per_fold]
            )
            kept = np.mean(
                [unchanged_share([r.clean_pred for r in p], [r.pred for r in p]) for p in per_fold]
            )
            figures = block if gender is None else block["per_gender"][gender]
            assert figures["uar"] == pytest.approx(uar)
            assert figures["uar_drop"] == pytest.approx(clean - uar)
            assert figures["unchanged"] == pytest.approx(kept)
        for key in ("unchanged", "uar_drop", "female_unchanged", "male_uar"):
            interval = block["intervals"][key]
            value = block[key] if "_" not in key or key == "uar_drop" else None
            assert interval["low"] <= interval["value"] <= interval["high"]
            assert value is None or interval["value"] == pytest.approx(value)
    # the men's copies change more: the gap shows per gender
    mean = result["suite_mean"]
    assert mean["per_gender"]["female"]["unchanged"] > mean["per_gender"]["male"]["unchanged"]
    corruption_of = {c.name: c.corruption.name for c in cases}
    values = {b["name"]: b["unchanged"] for b in result["cases"]}
    assert mean["unchanged"] == pytest.approx(suite_mean(values, corruption_of))
    assert result["bootstrap"]["strata"] == "gender" and result["bootstrap"]["num_speakers"] == 4
    assert result["clean"]["num_clips"] == 32


def test_the_same_seed_gives_the_same_intervals_and_zero_replicates_none():
    cases = suite(["white_noise", "telephone"])
    one = score_suite(_rows(), LABELS, cases, replicates=100, seed=3)
    two = score_suite(_rows(), LABELS, cases, replicates=100, seed=3)
    assert one == two
    other = score_suite(_rows(), LABELS, cases, replicates=100, seed=4)
    assert other["suite_mean"]["unchanged"] == one["suite_mean"]["unchanged"]
    bare = score_suite(_rows(), LABELS, cases, replicates=0)
    assert bare["bootstrap"] is None and bare["suite_mean"]["intervals"] == {}
    assert bare["suite_mean"]["unchanged"] == one["suite_mean"]["unchanged"]
