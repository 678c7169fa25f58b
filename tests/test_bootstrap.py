"""The speaker-level bootstrap: agreement with the metrics, a hand computation, coverage, and the
paired test's false-positive rate and power (docs/metrics.md, "Uncertainty")."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from trustser.metrics import bootstrap as bs
from trustser.metrics._common import MetricError
from trustser.metrics.fairness import fairness_report
from trustser.metrics.performance import performance_summary

LABELS = ["a", "b", "c", "d"]


def _observed(counts: np.ndarray) -> np.ndarray:
    return bs.resample(counts, np.ones(counts.shape[0]))


def test_count_metrics_equal_the_metric_functions_on_random_data():
    rng = np.random.default_rng(3)
    for _ in range(25):
        n = int(rng.integers(20, 80))
        y_true = rng.choice(LABELS[: rng.integers(2, 5)], n)
        y_pred = rng.choice(LABELS, n)
        groups = rng.choice(["f", "m"], n)
        speakers = np.array([f"{g}{i}" for g, i in zip(groups, rng.integers(0, 3, n), strict=True)])
        counts = bs.confusion_counts(
            speakers, ["1"] * n, y_true, y_pred, labels=LABELS, groups=groups
        )
        table = _observed(counts)[0]
        expected = performance_summary(y_true, y_pred, labels=LABELS)
        assert bs.uar_from_counts(table) == pytest.approx(expected["uar"])
        assert bs.accuracy_from_counts(table) == pytest.approx(expected["weighted_accuracy"])
        assert bs.macro_f1_from_counts(table) == pytest.approx(expected["macro_f1"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                report = fairness_report(y_true, y_pred, groups, labels=LABELS)
            except MetricError:
                continue
        assert bs.multiclass_eo_from_counts(table) == pytest.approx(
            report.multiclass_equalized_odds
        )
        assert bs.multiclass_sp_from_counts(table) == pytest.approx(
            report.multiclass_statistical_parity
        )
        gaps = bs.class_gaps_from_counts(table)
        assert gaps["equalized_odds_max"] == pytest.approx(report.equalized_odds_max)
        assert gaps["statistical_parity_mean"] == pytest.approx(report.statistical_parity_mean)


def test_worked_example_of_metrics_md():
    """The twelve-utterance example of docs/metrics.md: multiclass EO 2/3, SP 1/3."""
    y_true = list("aabbcc") + list("aabccc")
    y_pred = list("abbbca") + list("aaaccb")
    groups = ["m"] * 6 + ["f"] * 6
    counts = bs.confusion_counts(
        groups, ["1"] * 12, y_true, y_pred, labels=["a", "b", "c"], groups=groups
    )
    table = _observed(counts)[0]
    assert bs.multiclass_eo_from_counts(table) == pytest.approx(2 / 3)
    assert bs.multiclass_sp_from_counts(table) == pytest.approx(1 / 3)
    assert bs.class_gaps_from_counts(table)["equalized_odds_mean"] == pytest.approx(5 / 9)


def test_small_case_by_hand():
    """Two folds, three speakers; every replicate's fold-mean UAR and ASR worked out by hand.

    Fold 1: speaker p (class a: 2 clips, 1 right; class b: 1 clip, right) and q (a: 1 clip,
    right). Fold 2: speaker r (a: 1 right of 2; b: 0 of 2). Attacks: p 2 attacked / 1 flipped,
    q 1 / 1, r 1 / 0.
    """
    clips = [  # speaker, fold, true, pred
        ("p", "1", "a", "a"), ("p", "1", "a", "b"), ("p", "1", "b", "b"),
        ("q", "1", "a", "a"),
        ("r", "2", "a", "a"), ("r", "2", "a", "b"), ("r", "2", "b", "a"), ("r", "2", "b", "a"),
    ]  # fmt: skip
    speakers, folds, y_true, y_pred = (list(c) for c in zip(*clips, strict=True))
    counts = bs.confusion_counts(speakers, folds, y_true, y_pred, labels=["a", "b"])
    weights = np.array([[1, 1, 1], [2, 0, 1], [0, 2, 1], [1, 1, 0], [0, 0, 3]], dtype=float)
    tables = bs.resample(counts, weights)  # [5, F=2, G=1, 2, 2]
    uar = bs.fold_values(bs.uar_from_counts, tables)
    # observed: fold 1 recalls a 2/3, b 1 -> 5/6; fold 2: a 1/2, b 0 -> 1/4; mean 13/24
    # p twice: fold 1 a 2/4, b 2/2 -> 3/4; mean with 1/4 -> 1/2
    # q twice: fold 1 a 2/2 (no b) -> 1; mean with 1/4 -> 5/8
    # no r: fold 2 not drawn, left out -> 5/6
    # r thrice: fold 1 not drawn -> 1/4
    assert uar == pytest.approx([13 / 24, 1 / 2, 5 / 8, 5 / 6, 1 / 4])
    pooled = bs.fold_values(bs.uar_from_counts, tables, pooled=True)
    # pooled observed: a 4/6... a: p 1/2, q 1/1, r 1/2 -> 3/5; b: p 1/1, r 0/2 -> 1/3
    assert pooled[0] == pytest.approx((3 / 5 + 1 / 3) / 2)

    attacks = bs.attack_counts(
        ["p", "p", "p", "q", "r", "r"],
        ["1", "1", "1", "1", "2", "2"],
        attacked=[1, 1, 0, 1, 1, 0],
        success=[1, 0, 1, 1, 0, 1],  # unattacked clips never count as successes
    )
    asr = bs.fold_values(bs.asr_from_counts, bs.resample(attacks, weights), cell_dims=1)
    # observed: fold 1 2/3, fold 2 0/1 -> 1/3; p twice: 2/4, 0 -> 1/4; q twice 2/2, 0 -> 1/2;
    # no r: 2/3; r thrice: 0
    assert asr == pytest.approx([1 / 3, 1 / 4, 1 / 2, 2 / 3, 0.0])

    result = bs.interval(float(uar[0]), uar, level=0.5)
    # the 25th and 75th percentiles of {1/4, 1/2, 13/24, 5/8, 5/6} (linear interpolation)
    assert (result.low, result.high) == pytest.approx((1 / 2, 5 / 8))


def test_speaker_weights_are_seeded_draws_of_every_speaker():
    weights = bs.speaker_weights(7, 50, seed=4)
    assert weights.shape == (50, 7) and np.all(weights.sum(axis=1) == 7)
    assert np.array_equal(weights, bs.speaker_weights(7, 50, seed=4))
    assert not np.array_equal(weights, bs.speaker_weights(7, 50, seed=5))


def test_a_replicate_without_two_genders_has_no_fairness_and_is_counted():
    counts = bs.confusion_counts(
        ["m1", "f1"], ["1", "1"], ["a", "a"], ["a", "b"], labels=["a", "b"], groups=["m", "f"]
    )
    weights = np.array([[1, 1], [2, 0], [0, 2]], dtype=float)
    eo = bs.fold_values(bs.multiclass_eo_from_counts, bs.resample(counts, weights))
    assert eo[0] == pytest.approx(1.0) and np.isnan(eo[1:]).all()
    result = bs.interval(1.0, eo)
    assert result.undefined_replicates == 2 and result.low is None  # most replicates undefined


# ---------------------------------------------------------------- simulation with a known truth

FOLDS, SPEAKERS_PER_GENDER, CLIPS_PER_CLASS, CONCENTRATION = 5, 8, 30, 50.0
ACCURACY = {"m": 0.8, "f": 0.6}  # each speaker's accuracy ~ Beta around their gender's mean
TRUE_UAR = (ACCURACY["m"] + ACCURACY["f"]) / 2  # equal speakers and clips per gender and class
TRUE_EO = abs(ACCURACY["m"] - ACCURACY["f"])  # wrong answers all go to class y+1: TV = |Δ|
GENDERS = np.tile(np.repeat(["m", "f"], SPEAKERS_PER_GENDER), FOLDS)  # the design's strata
FOLD_OF = np.repeat(np.arange(FOLDS), 2 * SPEAKERS_PER_GENDER)


def _draws(seed: int) -> bs.SpeakerDraws:
    """The profile's design for 5 folds × (8 + 8) speakers: speakers within fold × gender."""
    speakers = list(range(FOLDS * 2 * SPEAKERS_PER_GENDER))
    draws = bs.draw_speakers(speakers, list(FOLD_OF), list(GENDERS), 1000, seed)
    assert draws.design == bs.DESIGN_FOLD_GENDER
    return draws


def _speaker_accuracy(rng: np.random.Generator) -> np.ndarray:
    """``[S]``: fold-major, males then females in each fold."""
    means = np.tile(np.repeat([ACCURACY["m"], ACCURACY["f"]], SPEAKERS_PER_GENDER), FOLDS)
    return rng.beta(means * CONCENTRATION, (1 - means) * CONCENTRATION)


def _simulated_counts(rng: np.random.Generator, accuracy: np.ndarray) -> np.ndarray:
    """``[S, F, G=2, C, C]`` for speakers of known accuracy; mistakes predict class y+1."""
    num_speakers, classes = accuracy.size, len(LABELS)
    counts = np.zeros((num_speakers, FOLDS, 2, classes, classes), dtype=np.int64)
    right = rng.binomial(CLIPS_PER_CLASS, np.repeat(accuracy[:, None], classes, axis=1))
    per_fold = 2 * SPEAKERS_PER_GENDER
    for s in range(num_speakers):
        fold, gender = s // per_fold, (s % per_fold) // SPEAKERS_PER_GENDER
        for y in range(classes):
            counts[s, fold, gender, y, y] = right[s, y]
            counts[s, fold, gender, y, (y + 1) % classes] = CLIPS_PER_CLASS - right[s, y]
    return counts


def _fold_mean_metrics(
    counts: np.ndarray, draws: bs.SpeakerDraws
) -> dict[str, tuple[float, np.ndarray]]:
    observed, tables = _observed(counts), bs.resample(counts, draws.weights)
    out = {}
    for name, metric in (("uar", bs.uar_from_counts), ("eo", bs.multiclass_eo_from_counts)):
        out[name] = (
            float(bs.fold_values(metric, observed)),
            bs.fold_values(metric, tables, fold_weights=draws.fold_weights(range(FOLDS))),
        )
    return out


def test_interval_covers_the_known_uar_and_eo_in_95_percent_of_seeded_datasets():
    """400 simulated evaluations (5 folds × 16 speakers, speaker effects, speakers drawn within
    fold × gender); the 95 % interval must cover the true UAR and EO gap in 92–97 % of them.

    Tolerance: with 400 datasets the coverage estimate has a binomial sd of
    sqrt(.95 · .05 / 400) ≈ 1.1 points. Drawing 8 speakers with replacement within each of the
    10 strata gives a spread √(7/8) of the standard error, so a percentile interval is expected
    to cover P(|Z| < 1.96 · √(7/8)) ≈ 93.3 %: 92–97 % is that expectation −1.2 sd to 95 % + 1.8 sd.
    The seeds are fixed, so the test is exact (it gives 93.0 % and 95.0 %).
    """
    draws = _draws(seed=0)
    covered = {"uar": 0, "eo": 0}
    truth = {"uar": TRUE_UAR, "eo": TRUE_EO}
    datasets = 400
    for seed in range(datasets):
        rng = np.random.default_rng(1000 + seed)
        counts = _simulated_counts(rng, _speaker_accuracy(rng))
        for name, (value, samples) in _fold_mean_metrics(counts, draws).items():
            result = bs.interval(value, samples)
            covered[name] += result.low <= truth[name] <= result.high
    for name, hits in covered.items():
        assert 0.92 <= hits / datasets <= 0.97, (name, hits / datasets)


def _paired(seed: int, planted: float, draws: bs.SpeakerDraws) -> dict[str, bs.Comparison]:
    """A and B are the same speakers' evaluations with independent clip noise; B is worse by
    ``planted`` accuracy on every speaker."""
    rng = np.random.default_rng(seed)
    accuracy = _speaker_accuracy(rng)
    a = _fold_mean_metrics(_simulated_counts(rng, accuracy), draws)
    b = _fold_mean_metrics(_simulated_counts(rng, accuracy - planted), draws)
    return {
        "uar": bs.compare_replicates(
            "uar", a["uar"][0], b["uar"][0], a["uar"][1], b["uar"][1], higher_is_better=True
        )
    }


def test_paired_test_says_no_difference_about_95_percent_of_the_time_for_the_same_model():
    draws = _draws(seed=1)
    results = [_paired(5000 + seed, 0.0, draws)["uar"] for seed in range(400)]
    false_positive = np.mean([r.p_value < 0.05 for r in results])
    # ±2.7 binomial sd around 5 % for 400 seeded pairs
    assert 0.02 <= false_positive <= 0.08, false_positive
    assert all((r.verdict == "no significant difference") == (r.p_value >= 0.05) for r in results)


def test_paired_test_detects_a_planted_difference_and_brackets_its_size():
    draws = _draws(seed=2)
    planted = 0.03  # about 4.5 sd of the paired UAR difference in this design
    results = [_paired(9000 + seed, planted, draws)["uar"] for seed in range(100)]
    assert np.mean([r.verdict == "A better" for r in results]) >= 0.95
    assert np.mean([r.low <= planted <= r.high for r in results]) >= 0.88
    assert not any(r.verdict == "B better" for r in results)


def test_exact_metrics_compare_without_an_interval():
    result = bs.compare_replicates("gmacs", 2.0, 5.0, None, None, higher_is_better=False)
    assert result.exact and result.verdict == "A better" and result.p_value is None


def test_an_interval_is_reported_as_computed_even_when_the_estimate_lies_outside_it():
    """A biased gap (EO is an absolute difference) can have every replicate above its point
    estimate; the interval is the replicates' percentiles, not widened to hold the estimate."""
    samples = np.linspace(0.30, 0.50, 101)
    result = bs.interval(0.20, samples)
    assert result.value == pytest.approx(0.20)
    assert (result.low, result.high) == pytest.approx(np.percentile(samples, [2.5, 97.5]))
    assert result.low > result.value


def test_weighted_fold_mean_counts_a_fold_as_often_as_it_was_drawn():
    per_fold = np.array([[0.2, 0.6, np.nan]] * 4)
    weights = np.array([[2, 1, 0], [0, 0, 3], [1, 1, 1], [0, 2, 0]], dtype=float)
    means = bs.fold_mean(per_fold, weights)
    # (2·0.2 + 0.6) / 3; only the undefined fold drawn: undefined; 0.2 and 0.6 once; 0.6
    assert means[0] == pytest.approx(1 / 3) and np.isnan(means[1])
    assert means[2:] == pytest.approx([0.4, 0.6])
    assert bs.fold_mean(per_fold[:1])[0] == pytest.approx(0.4)  # unweighted: each fold once


def _design(folds, genders, replicates=300, seed=0):
    speakers = [f"s{i}" for i in range(len(folds))]
    return bs.draw_speakers(speakers, folds, genders, replicates, seed)


def test_speakers_are_drawn_within_fold_and_gender_when_each_has_as_many_as_there_are_folds():
    folds = ["1"] * 4 + ["2"] * 4
    genders = ["f", "f", "m", "m"] * 2
    draws = _design(folds, genders)
    assert draws.design == bs.DESIGN_FOLD_GENDER and draws.fold_weights(["1", "2"]) is None
    for cell in range(4):  # each fold × gender keeps its two speakers' worth of draws
        assert np.all(draws.weights[:, 2 * cell : 2 * cell + 2].sum(axis=1) == 2)
    assert _design(folds, [""] * 8).design == bs.DESIGN_FOLD  # no gender: within fold
    # three folds of 2 + 2: strata of two would shrink the spread more (√½) than folds (√⅔)
    three = _design([str(f) for f in range(3) for _ in range(4)], ["f", "f", "m", "m"] * 3)
    assert three.design == bs.DESIGN_FOLDS


def test_folds_with_one_speaker_of_a_gender_are_drawn_whole():
    """5 folds × (1 woman + 1 man): every fold a replicate draws has both genders, so each
    drawn fold's EO is defined; drawing speakers within gender across folds (the earlier
    design) left more than half of the folds without one gender."""
    folds = [str(f) for f in range(5) for _ in range(2)]
    genders = ["f", "m"] * 5
    draws = _design(folds, genders, replicates=500)
    assert draws.design == bs.DESIGN_FOLDS and draws.smallest_unit_count == 5
    fold_weights = draws.fold_weights([str(f) for f in range(5)])
    assert np.all(fold_weights.sum(axis=1) == 5)
    assert np.array_equal(draws.weights[:, 0::2], fold_weights)  # both speakers of a fold
    assert np.array_equal(draws.weights[:, 1::2], fold_weights)  # count as often as the fold
    rng = np.random.default_rng(0)
    counts = bs.confusion_counts(
        np.repeat([f"s{i}" for i in range(10)], 40),
        np.repeat(folds, 40),
        rng.choice(LABELS, 400),
        rng.choice(LABELS, 400),
        labels=LABELS,
        groups=np.repeat(genders, 40),
        speaker_list=[f"s{i}" for i in range(10)],
    )
    eo = bs.multiclass_eo_from_counts(bs.resample(counts, draws.weights))  # [B, F]
    assert not np.isnan(eo[fold_weights > 0]).any()
    earlier = bs.speaker_weights(10, 500, seed=0, strata=genders)
    left_out = np.isnan(bs.multiclass_eo_from_counts(bs.resample(counts, earlier))).mean()
    assert 0.45 < left_out < 0.65  # 1 − (1 − (4/5)^5)^2 ≈ 0.55 of the folds
    with pytest.raises(MetricError, match="not part of the bootstrap design"):
        draws.fold_weights(["9"])


def test_other_designs_fall_back_to_speakers():
    several = [None, None, "1", "1"]  # two speakers tested in several folds
    assert _design(several, ["f", "f", "m", "m"]).design == bs.DESIGN_GENDER
    assert _design(["1", "1"], ["f", "m"]).design == bs.DESIGN_NONE  # one fold, 1 + 1
    with pytest.raises(MetricError, match="one fold and one gender per speaker"):
        bs.draw_speakers(["a", "b"], ["1"], ["f", "m"], 10)


def test_stratified_weights_keep_each_stratum_size():
    strata = ["f", "f", "m", "m", "m"]
    weights = bs.speaker_weights(5, 200, seed=0, strata=strata)
    assert np.all(weights[:, :2].sum(axis=1) == 2) and np.all(weights[:, 2:].sum(axis=1) == 3)
    with pytest.raises(MetricError, match="one value per speaker"):
        bs.speaker_weights(5, 10, strata=["f"])
