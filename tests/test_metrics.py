"""Performance, privacy and safety metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from trustser.metrics._common import MetricError, MetricWarning, mean_std
from trustser.metrics.performance import (
    confusion,
    macro_f1_score,
    per_class_recall,
    performance_summary,
    uar_score,
    weighted_accuracy_score,
)
from trustser.metrics.privacy import chance_levels, inference_report, leakage_score
from trustser.metrics.safety import adversarial_excess, asr_by_fold, attack_success_rate

Y_TRUE = np.array(list("aabbcc") + list("aabccc"))
Y_PRED = np.array(list("abbbca") + list("aaaccb"))


def test_performance_by_hand():
    assert confusion(Y_TRUE, Y_PRED).tolist() == [[3, 1, 0], [1, 2, 0], [1, 1, 3]]
    assert per_class_recall(Y_TRUE, Y_PRED) == pytest.approx({"a": 3 / 4, "b": 2 / 3, "c": 3 / 5})
    assert uar_score(Y_TRUE, Y_PRED) == pytest.approx((3 / 4 + 2 / 3 + 3 / 5) / 3)
    assert weighted_accuracy_score(Y_TRUE, Y_PRED) == pytest.approx(8 / 12)
    # F1 = 2TP / (2TP + FP + FN): a 6/9, b 4/7, c 6/8.
    assert macro_f1_score(Y_TRUE, Y_PRED) == pytest.approx((2 / 3 + 4 / 7 + 3 / 4) / 3)
    # and the same as scikit-learn where both are defined
    assert uar_score(Y_TRUE, Y_PRED) == pytest.approx(balanced_accuracy_score(Y_TRUE, Y_PRED))
    assert macro_f1_score(Y_TRUE, Y_PRED) == pytest.approx(
        f1_score(Y_TRUE, Y_PRED, average="macro")
    )


def test_confusion_normalisation_and_summary():
    rows = confusion(Y_TRUE, Y_PRED, normalize="true")
    assert rows.sum(axis=1) == pytest.approx([1, 1, 1])
    assert confusion(Y_TRUE, Y_PRED, normalize="all").sum() == pytest.approx(1.0)
    summary = performance_summary(Y_TRUE, Y_PRED)
    assert summary["labels"] == ["a", "b", "c"] and summary["num_utterances"] == 12
    assert summary["uar"] == pytest.approx(uar_score(Y_TRUE, Y_PRED))
    with pytest.raises(MetricError, match="normalize='rows'"):
        confusion(Y_TRUE, Y_PRED, normalize="rows")


def test_absent_class_is_left_out_with_a_warning():
    with pytest.warns(MetricWarning, match="recall of class 'd' is undefined"):
        recalls = per_class_recall(Y_TRUE, Y_PRED, labels=list("abcd"))
    assert recalls["d"] is None
    with pytest.warns(MetricWarning):
        assert uar_score(Y_TRUE, Y_PRED, labels=list("abcd")) == pytest.approx(
            uar_score(Y_TRUE, Y_PRED)
        )
    with pytest.raises(MetricError, match="undefined"):
        uar_score(Y_TRUE, Y_PRED, labels=list("abcd"), undefined="raise")
    with pytest.raises(MetricError, match="'keep'"):
        uar_score(Y_TRUE, Y_PRED, labels=list("abcd"), undefined="keep")
    # a class predicted but never true is just an error, not an undefined recall
    assert uar_score(["a", "a"], ["a", "z"]) == pytest.approx(0.5)
    with pytest.raises(MetricError, match="not among labels"):
        uar_score(["a", "z"], ["a", "a"], labels=["a"])


def test_privacy_chance_levels_and_leakage():
    genders = ["f", "f", "f", "m"]
    chance = chance_levels(genders)
    assert (chance.majority, chance.majority_label, chance.uniform) == (0.75, "f", 0.5)
    report = inference_report(genders, ["f", "f", "m", "m"])
    assert report.accuracy == pytest.approx(0.75)
    assert report.uar == pytest.approx((2 / 3 + 1) / 2)
    assert report.leakage == pytest.approx(0.0)  # no better than always saying "f"
    assert leakage_score(1.0, 0.5) == 1.0 and leakage_score(0.5, 0.5) == 0.0
    with pytest.raises(MetricError, match="same attribute value"):
        leakage_score(1.0, 1.0)
    speakers = chance_levels(["s1", "s2", "s3", "s3"], labels=["s1", "s2", "s3", "s4"])
    assert speakers.uniform == 0.25 and speakers.num_classes == 4


def test_attack_success_rate_counts_only_correct_clean_clips():
    true = ["a", "a", "b", "b", "c"]
    clean = ["a", "a", "b", "c", "c"]  # clip 4 is wrong already: not attacked
    adv = ["b", "a", "a", "a", "c"]
    assert attack_success_rate(true, clean, adv) == pytest.approx(2 / 4)
    folds = ["f1", "f1", "f2", "f2", "f3"]
    result = asr_by_fold(true, clean, adv, folds)
    assert result["per_fold"] == pytest.approx({"f1": 0.5, "f2": 1.0, "f3": 0.0})
    assert result["asr_mean"] == pytest.approx(0.5)
    assert result["asr_std"] == pytest.approx(np.std([0.5, 1.0, 0.0]))
    with pytest.raises(MetricError, match="none was attacked"):
        attack_success_rate(["a"], ["b"], ["b"])
    partial = asr_by_fold(["a", "a"], ["a", "b"], ["b", "b"], ["f1", "f2"])
    assert partial["undefined_folds"] == ["f2"] and partial["asr_mean"] == 1.0
    assert adversarial_excess(0.8, 0.1) == pytest.approx(0.7)
    with pytest.raises(MetricError, match="noise_asr"):
        adversarial_excess(0.8, 1.5)


def test_input_checks():
    with pytest.raises(MetricError, match="1-D"):
        uar_score(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(MetricError, match="duplicates"):
        uar_score(["a"], ["a"], labels=["a", "a"])
    with pytest.raises(MetricError, match="empty list"):
        mean_std([])
