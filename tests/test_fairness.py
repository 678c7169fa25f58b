"""Fairness metrics against a confusion-matrix example worked out by hand (docs/metrics.md)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from trustser.metrics._common import MetricError, MetricWarning
from trustser.metrics.fairness import (
    class_fairness,
    equalized_odds_difference,
    fairness_report,
    multiclass_equalized_odds_difference,
    multiclass_statistical_parity_difference,
    per_speaker_uar,
    speaker_uar_spread,
    statistical_parity_difference,
)

# Twelve utterances, classes a/b/c, groups m/f, four speakers. Per group:
#   m  true a a b b c c   pred a b b b c a
#   f  true a a b c c c   pred a a a c c b
Y_TRUE = np.array(list("aabbcc") + list("aabccc"))
Y_PRED = np.array(list("abbbca") + list("aaaccb"))
GROUPS = np.array(["m"] * 6 + ["f"] * 6)
SPEAKERS = np.array(["m1"] * 3 + ["m2"] * 3 + ["f1"] * 3 + ["f2"] * 3)

# One-vs-rest rates worked out by hand: class -> (TPR m, TPR f, FPR m, FPR f, SR m, SR f).
HAND = {
    "a": (1 / 2, 1.0, 1 / 4, 1 / 4, 1 / 3, 1 / 2),
    "b": (1.0, 0.0, 1 / 4, 1 / 5, 1 / 2, 1 / 6),
    "c": (1 / 2, 2 / 3, 0.0, 0.0, 1 / 6, 1 / 3),
}
EO = {"a": 1 / 2, "b": 1.0, "c": 1 / 6}  # max(|ΔTPR|, |ΔFPR|)
SP = {"a": 1 / 6, "b": 1 / 3, "c": 1 / 6}  # |ΔSR|


def test_per_class_rates_match_hand_computation():
    per_class = class_fairness(Y_TRUE, Y_PRED, GROUPS)
    assert list(per_class) == ["a", "b", "c"]
    for label, (tpr_m, tpr_f, fpr_m, fpr_f, sr_m, sr_f) in HAND.items():
        c = per_class[label]
        assert c.tpr == pytest.approx({"m": tpr_m, "f": tpr_f})
        assert c.fpr == pytest.approx({"m": fpr_m, "f": fpr_f})
        assert c.selection_rate == pytest.approx({"m": sr_m, "f": sr_f})
        assert c.tpr_gap == pytest.approx(abs(tpr_m - tpr_f))
        assert c.fpr_gap == pytest.approx(abs(fpr_m - fpr_f))
        assert c.equalized_odds_difference == pytest.approx(EO[label])
        assert c.statistical_parity_difference == pytest.approx(SP[label])
    assert per_class["b"].positives == {"f": 1, "m": 2}
    assert per_class["b"].negatives == {"f": 5, "m": 4}


def test_aggregates_over_classes():
    assert equalized_odds_difference(Y_TRUE, Y_PRED, GROUPS) == pytest.approx(1.0)
    assert equalized_odds_difference(Y_TRUE, Y_PRED, GROUPS, aggregate="mean") == pytest.approx(
        5 / 9
    )
    assert statistical_parity_difference(Y_TRUE, Y_PRED, GROUPS) == pytest.approx(1 / 3)
    assert statistical_parity_difference(Y_TRUE, Y_PRED, GROUPS, aggregate="mean") == pytest.approx(
        2 / 9
    )
    with pytest.raises(MetricError, match="aggregate='median'"):
        equalized_odds_difference(Y_TRUE, Y_PRED, GROUPS, aggregate="median")


def test_reference_multiclass_forms():
    # EO: sum over true y of sum over predicted |P_m - P_f| = 1 + 2 + 1 = 4, over 2C = 6.
    assert multiclass_equalized_odds_difference(Y_TRUE, Y_PRED, GROUPS) == pytest.approx(2 / 3)
    # SP: prediction distributions m (2,3,1)/6 and f (3,1,2)/6 differ by 4/6 in total, halved.
    assert multiclass_statistical_parity_difference(Y_TRUE, Y_PRED, GROUPS) == pytest.approx(1 / 3)


def test_per_speaker_uar_and_spread():
    assert per_speaker_uar(Y_TRUE, Y_PRED, SPEAKERS) == pytest.approx(
        {"f1": 1 / 2, "f2": 2 / 3, "m1": 3 / 4, "m2": 3 / 4}
    )
    spread = speaker_uar_spread(Y_TRUE, Y_PRED, SPEAKERS)
    assert (spread.min, spread.max, spread.gap) == pytest.approx((1 / 2, 3 / 4, 1 / 4))
    assert spread.sd == pytest.approx(np.sqrt(1 / 96))
    assert spread.worst_speaker == "f1"


def test_report_collects_everything_and_is_json_ready():
    report = fairness_report(Y_TRUE, Y_PRED, GROUPS, speakers=SPEAKERS)
    assert report.groups == ["f", "m"] and report.group_sizes == {"f": 6, "m": 6}
    assert report.equalized_odds_max == pytest.approx(1.0)
    assert report.equalized_odds_mean == pytest.approx(5 / 9)
    assert report.statistical_parity_max == pytest.approx(1 / 3)
    assert report.statistical_parity_mean == pytest.approx(2 / 9)
    assert report.multiclass_equalized_odds == pytest.approx(2 / 3)
    assert report.multiclass_statistical_parity == pytest.approx(1 / 3)
    assert report.speakers is not None and report.speakers.gap == pytest.approx(1 / 4)
    assert report.notes == []
    data = report.to_dict()
    assert data["per_class"]["b"]["equalized_odds_difference"] == pytest.approx(1.0)


def test_identical_groups_give_zero_gaps():
    y = np.array(list("abcabc"))
    groups = np.array(list("mmmfff"))
    report = fairness_report(y, y, groups)
    assert report.equalized_odds_max == 0.0
    assert report.multiclass_equalized_odds == 0.0
    assert report.multiclass_statistical_parity == 0.0


def test_missing_class_in_a_group_is_explicit_not_zero():
    # group f has no true "b": its TPR for b is undefined, fairlearn alone would say 0.
    y_true = np.array(list("abc") + list("acc"))
    y_pred = np.array(list("abc") + list("acc"))
    groups = np.array(list("mmm") + list("fff"))
    with pytest.warns(MetricWarning, match="class 'b': TPR of group 'f' is undefined"):
        per_class = class_fairness(y_true, y_pred, groups)
    assert per_class["b"].tpr == {"f": None, "m": 1.0}
    assert per_class["b"].equalized_odds_difference is None
    with pytest.warns(MetricWarning):
        report = fairness_report(y_true, y_pred, groups)
    assert report.equalized_odds_max == 0.0  # over a and c only
    assert any("'b'" in note for note in report.notes)
    with pytest.raises(MetricError, match="undefined"):
        class_fairness(y_true, y_pred, groups, undefined="raise")
    with pytest.raises(MetricError, match="undefined"):
        multiclass_equalized_odds_difference(y_true, y_pred, groups, undefined="raise")


def test_labels_fix_the_class_list_and_an_absent_class_warns():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert class_fairness(Y_TRUE, Y_PRED, GROUPS, labels=["c", "b", "a"]).keys() == {
            "a",
            "b",
            "c",
        }
    with pytest.warns(MetricWarning, match="class 'd'"):
        value = multiclass_equalized_odds_difference(Y_TRUE, Y_PRED, GROUPS, labels=list("abcd"))
    # d is left out and the mean runs over the three defined classes; its column adds nothing.
    assert value == pytest.approx(4 / 6)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "groups", "message"),
    [
        (list("ab"), list("ab"), ["m", "m"], "at least two groups"),
        (list("ab"), list("a"), ["m", "f"], "lengths differ"),
        ([], [], [], "no utterances"),
        (list("ab"), list("ax"), ["m", "f"], None),
    ],
)
def test_bad_inputs_raise_clear_errors(y_true, y_pred, groups, message):
    if message is None:  # a prediction outside the given labels
        with pytest.raises(MetricError, match=r"not among labels"):
            class_fairness(y_true, y_pred, groups, labels=["a", "b"])
        return
    with pytest.raises(MetricError, match=message):
        fairness_report(y_true, y_pred, groups)
