"""EER, minDCF, DET points and their speaker bootstrap (trustser.metrics.verification)."""

from __future__ import annotations

import numpy as np
import pytest

from trustser.backbones import ge2e
from trustser.metrics._common import MetricError
from trustser.metrics.verification import (
    OperatingPoint,
    det_curve,
    equal_error_rate,
    error_rates,
    min_dcf,
    trial_weights,
    verification_replicates,
)

# Sorted by score: .9 T, .8 N, .7 T, .4 T, .3 N, .2 N (3 targets, 3 non-targets).
# Accepting the top k: (P_fa, P_miss) = (0, 1), (0, 2/3), (1/3, 2/3), (1/3, 1/3), (1/3, 0),
# (2/3, 0), (1, 0).
SCORES = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.2])
TARGETS = np.array([1, 0, 1, 1, 0, 0], dtype=bool)


def test_eer_of_a_hand_made_set_is_exact():
    # the point k = 3 has P_fa = P_miss = 1/3: the curves meet there
    assert equal_error_rate(SCORES, TARGETS) == pytest.approx(1 / 3, abs=1e-15)
    assert equal_error_rate([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 0.0
    assert equal_error_rate([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0]) == 1.0
    # between points: P_miss stays 1/3 while P_fa goes 0 → 1/2, so they cross at 1/3
    assert equal_error_rate([0.9, 0.8, 0.3, 0.5, 0.2], [1, 1, 1, 0, 0]) == pytest.approx(1 / 3)


def test_tied_scores_are_accepted_together():
    # one target and one non-target tied: no threshold separates them, EER 1/2
    assert equal_error_rate([0.5, 0.5], [1, 0]) == 0.5
    false_accept, miss, thresholds = error_rates([0.5, 0.5, 0.1], [1, 0, 0])
    assert thresholds.tolist() == [np.inf, 0.5, 0.1]
    assert false_accept.tolist() == [0.0, 0.5, 1.0] and miss.tolist() == [1.0, 0.0, 0.0]


def test_min_dcf_of_a_hand_made_set():
    # default point: DCF_norm = P_miss + 19 P_fa; best is k = 1: 2/3 + 0
    assert min_dcf(SCORES, TARGETS) == pytest.approx(2 / 3)
    # P_target = 0.5: DCF_norm = P_miss + P_fa; best is k = 4: 0 + 1/3
    assert min_dcf(SCORES, TARGETS, operating_point=OperatingPoint(p_target=0.5)) == pytest.approx(
        1 / 3
    )
    # C_miss = 10 at P_target 0.05: normaliser min(0.5, 0.95) = 0.5;
    # k = 4: 0.95 · 1/3 / 0.5 = 0.6333 beats k = 1: 0.5 · 2/3 / 0.5 = 0.6667
    point = OperatingPoint(p_target=0.05, c_miss=10.0)
    assert min_dcf(SCORES, TARGETS, operating_point=point) == pytest.approx(0.95 / 3 / 0.5)
    # never above 1: a trivial system (accept none / all) is always available
    rng = np.random.default_rng(0)
    assert min_dcf(rng.normal(size=200), rng.random(200) < 0.5) <= 1.0


def test_operating_point_is_checked():
    with pytest.raises(MetricError, match="p_target"):
        OperatingPoint(p_target=1.0)
    with pytest.raises(MetricError, match="costs"):
        OperatingPoint(c_fa=0.0)
    assert OperatingPoint().normaliser == pytest.approx(0.05)


def test_a_set_with_one_kind_of_trial_is_an_error():
    with pytest.raises(MetricError, match="both target and non-target"):
        equal_error_rate([0.1, 0.2], [1, 1])
    with pytest.raises(MetricError, match="both target and non-target"):
        min_dcf([0.1, 0.2], [0, 0])
    with pytest.raises(MetricError, match="same length"):
        equal_error_rate([0.1, 0.2], [1])
    with pytest.raises(MetricError, match="not finite"):
        equal_error_rate([0.1, np.nan], [1, 0])


def test_ge2e_uses_the_same_eer():
    assert ge2e.equal_error_rate is equal_error_rate


def test_integer_weights_equal_repeated_trials():
    rng = np.random.default_rng(1)
    scores, targets = rng.normal(size=40), rng.random(40) < 0.4
    weights = rng.integers(0, 4, size=40)
    weights[np.flatnonzero(targets)[0]] = weights[np.flatnonzero(~targets)[0]] = 1
    repeated = np.repeat(np.arange(40), weights)
    fa, miss, _ = error_rates(scores, targets, weights=weights[None].astype(float))
    from trustser.metrics.verification import _eer_of_rates, _min_dcf_of_rates

    assert _eer_of_rates(fa, miss)[0] == pytest.approx(
        equal_error_rate(scores[repeated], targets[repeated])
    )
    assert _min_dcf_of_rates(fa, miss, OperatingPoint())[0] == pytest.approx(
        min_dcf(scores[repeated], targets[repeated])
    )


def test_det_curve_points_and_probit_axes():
    curve = det_curve(SCORES, TARGETS)
    assert curve.false_accept.tolist() == pytest.approx([0, 0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1])
    assert curve.miss.tolist() == pytest.approx([1, 2 / 3, 2 / 3, 1 / 3, 0, 0, 0])
    x, y = curve.probit()  # rates of 0 or 1 lie at ±∞ and are left out
    assert len(x) == len(y) == 2
    assert x[0] == pytest.approx(-0.4307, abs=1e-4) and y[0] == pytest.approx(0.4307, abs=1e-4)


def test_trial_weights_count_copies_of_speakers():
    draws = np.array([[2.0, 0.0, 3.0]])  # speaker 0 twice, 1 never, 2 three times
    enrol, test = np.array([0, 0, 1, 2]), np.array([0, 2, 2, 2])
    targets = np.array([True, False, False, True])
    assert trial_weights(draws, enrol, test, targets).tolist() == [[2.0, 6.0, 0.0, 3.0]]


def test_replicates_are_per_set_then_the_mean_over_sets():
    rng = np.random.default_rng(2)
    n = 60
    scores = rng.normal(size=n)
    targets = rng.random(n) < 0.5
    sets = np.where(np.arange(n) < 25, "a", "b")
    # set a holds speakers 0 and 1, set b speakers 2 and 3
    enrol = rng.integers(0, 2, size=n) + 2 * (sets == "b")
    test = rng.integers(0, 2, size=n) + 2 * (sets == "b")
    observed = verification_replicates(scores, targets, enrol, test, sets, np.ones((1, 4)))
    a, b = sets == "a", sets == "b"
    expected = (
        equal_error_rate(scores[a], targets[a]) + equal_error_rate(scores[b], targets[b])
    ) / 2
    assert observed["eer"][0] == pytest.approx(expected)
    # a replicate that draws none of set b's speakers scores set a alone (b is left out)
    only_a = np.array([[1.0, 1.0, 0.0, 0.0]])
    alone = verification_replicates(scores, targets, enrol, test, sets, only_a)
    assert alone["eer"][0] == pytest.approx(equal_error_rate(scores[a], targets[a]))
    # and one that draws no speaker at all is undefined
    nobody = verification_replicates(scores, targets, enrol, test, sets, np.zeros((1, 4)))
    assert np.isnan(nobody["eer"][0]) and np.isnan(nobody["min_dcf"][0])
    # chunking the replicates changes nothing
    draws = rng.integers(0, 3, size=(7, 4)).astype(float)
    import trustser.metrics.verification as module

    whole = verification_replicates(scores, targets, enrol, test, sets, draws)
    old, module._CHUNK_ELEMENTS = module._CHUNK_ELEMENTS, 50
    try:
        chunked = verification_replicates(scores, targets, enrol, test, sets, draws)
    finally:
        module._CHUNK_ELEMENTS = old
    np.testing.assert_array_equal(whole["eer"], chunked["eer"])
    np.testing.assert_array_equal(whole["min_dcf"], chunked["min_dcf"])
