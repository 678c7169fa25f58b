"""Speaker-level (cluster) bootstrap intervals and paired comparisons, as array code.

Utterances of one speaker are not independent: a speaker the model handles badly drags every
one of their clips down together, so resampling clips understates the uncertainty of a metric
measured on a few test speakers. Here the unit resampled is the **speaker**: each replicate draws
the test speakers with replacement (a speaker drawn twice counts twice) and recomputes the metric.

Everything is computed from count tables, never by re-running a metric per replicate:

1. :func:`confusion_counts` (or :func:`attack_counts`) tallies each speaker's clips once into
   ``counts[S, F, ...]`` — per speaker ``s`` and fold ``f``, a confusion matrix per group
   ``[G, C, C]`` (or attacked / flipped clips ``[2]``);
2. :func:`speaker_weights` draws ``W[B, S]``, how often each speaker is drawn in each of ``B``
   replicates (multinomial, seeded);
3. :func:`resample` gives every replicate's tables at once, ``W @ counts`` → ``[B, F, ...]``;
4. the ``*_from_counts`` functions turn tables into metrics, vectorised over the leading axes.

A metric is **per fold, then the mean over folds** (the point estimates of the heads and the
profile) or **pooled** over every test clip (``tables.sum(axis=-4)`` before the metric; see
:func:`fold_values`).

:func:`draw_speakers` chooses the design so that every replicate scores every fold it holds:
speakers are drawn within their fold and gender when each fold has at least as many test
speakers of each gender as there are folds (CREMA-D); with fewer — one speaker of a gender in a
fold for EmoDB, IEMOCAP, MSP-Improv, where drawing within fold × gender could only redraw that
speaker — whole folds are drawn instead and a fold drawn twice counts twice in the fold mean
(:attr:`SpeakerDraws.fold_counts`). A fold
a replicate still cannot score (one gender only in the data itself, for fairness) is left out of
its fold mean, as the point estimate leaves it out; a replicate with no scorable fold at all is
undefined and counted in :attr:`Interval.undefined_replicates`, not dropped silently. Formulas:
docs/metrics.md, "Uncertainty".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trustser.metrics._common import MetricError

__all__ = [
    "DEFAULT_LEVEL",
    "DEFAULT_REPLICATES",
    "DESIGN_FOLD",
    "DESIGN_FOLDS",
    "DESIGN_FOLD_GENDER",
    "DESIGN_GENDER",
    "DESIGN_NONE",
    "Comparison",
    "Interval",
    "SpeakerDraws",
    "accuracy_from_counts",
    "asr_from_counts",
    "attack_counts",
    "class_gaps_from_counts",
    "class_tpr_from_counts",
    "compare_replicates",
    "confusion_counts",
    "draw_speakers",
    "fold_mean",
    "fold_values",
    "interval",
    "macro_f1_from_counts",
    "multiclass_eo_from_counts",
    "multiclass_sp_from_counts",
    "resample",
    "speaker_weights",
    "uar_from_counts",
]

DEFAULT_REPLICATES = 1000
DEFAULT_LEVEL = 0.95


def _codes(values: Sequence[Any], levels: Sequence[Any], name: str) -> np.ndarray:
    index = {level: i for i, level in enumerate(levels)}
    try:
        return np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values))
    except KeyError as error:
        raise MetricError(f"{name} value {error.args[0]!r} is not among {list(levels)}.") from None


def _levels(values: np.ndarray, given: Sequence[Any] | None) -> list[Any]:
    return list(given) if given is not None else sorted(set(values.tolist()))


def confusion_counts(
    speakers: Sequence[Any],
    folds: Sequence[Any],
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    *,
    labels: Sequence[Any],
    groups: Sequence[Any] | None = None,
    speaker_list: Sequence[Any] | None = None,
    fold_list: Sequence[Any] | None = None,
    group_list: Sequence[Any] | None = None,
) -> np.ndarray:
    """Per speaker and fold, the confusion matrix of each group: ``[S, F, G, C, C]`` int64.

    ``counts[s, f, g, i, j]`` = clips of speaker ``s`` in fold ``f`` and group ``g`` whose true
    class is ``labels[i]``, predicted ``labels[j]``. Without ``groups`` there is one group
    (``G = 1``). ``speaker_list`` / ``fold_list`` / ``group_list`` fix the order of each axis
    (default: sorted values), so tables of several models line up speaker by speaker.
    """
    n = len(y_true)
    arrays = [np.asarray(a) for a in (speakers, folds, y_true, y_pred)]
    if any(len(a) != n for a in arrays) or (groups is not None and len(groups) != n):
        raise MetricError("speakers, folds, y_true, y_pred (and groups) need one entry per clip.")
    if n == 0:
        raise MetricError("no clips to bootstrap.")
    groups_array = np.zeros(n, dtype=np.int64) if groups is None else np.asarray(groups)
    speaker_levels = _levels(arrays[0], speaker_list)
    fold_levels = _levels(arrays[1], fold_list)
    group_levels = [0] if groups is None else _levels(groups_array, group_list)
    shape = (len(speaker_levels), len(fold_levels), len(group_levels), len(labels), len(labels))
    flat = np.ravel_multi_index(
        (
            _codes(arrays[0].tolist(), speaker_levels, "speaker"),
            _codes(arrays[1].tolist(), fold_levels, "fold"),
            _codes(groups_array.tolist(), group_levels, "group"),
            _codes(arrays[2].tolist(), labels, "true label"),
            _codes(arrays[3].tolist(), labels, "predicted label"),
        ),
        shape,
    )
    return np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape)


def attack_counts(
    speakers: Sequence[Any],
    folds: Sequence[Any],
    attacked: Sequence[bool],
    success: Sequence[bool],
    *,
    speaker_list: Sequence[Any] | None = None,
    fold_list: Sequence[Any] | None = None,
) -> np.ndarray:
    """Per speaker and fold: ``[S, F, 2]`` = (attacked clips, clips whose prediction flipped).

    ``attacked`` marks the clips the clean model classified correctly (the only ones an attack
    can succeed on, docs/metrics.md "Safety"); ``success`` counts only among those.
    """
    speakers, folds = np.asarray(speakers), np.asarray(folds)
    attacked = np.asarray(attacked, dtype=bool)
    success = np.asarray(success, dtype=bool) & attacked
    speaker_levels = _levels(speakers, speaker_list)
    fold_levels = _levels(folds, fold_list)
    shape = (len(speaker_levels), len(fold_levels))
    flat = np.ravel_multi_index(
        (
            _codes(speakers.tolist(), speaker_levels, "speaker"),
            _codes(folds.tolist(), fold_levels, "fold"),
        ),
        shape,
    )
    size = int(np.prod(shape))
    tried = np.bincount(flat, weights=attacked, minlength=size)
    flipped = np.bincount(flat, weights=success, minlength=size)
    return np.stack([tried, flipped], axis=-1).reshape(*shape, 2).astype(np.int64)


def speaker_weights(
    num_speakers: int,
    replicates: int,
    seed: int = 0,
    *,
    strata: Sequence[Any] | None = None,
) -> np.ndarray:
    """``W[B, S]``: how many times each speaker is drawn in each replicate.

    With ``strata`` (one value per speaker, e.g. its gender) speakers are drawn with replacement
    *within* each stratum, so every replicate keeps the design's number of speakers per stratum
    (a test set of 5 women and 5 men stays so); without, from all speakers. Depends only on the
    arguments, so models scored on the same speakers get the same draws — what makes
    :func:`compare_replicates` a *paired* comparison.
    """
    if num_speakers < 1 or replicates < 1:
        raise MetricError("a bootstrap needs at least one speaker and one replicate.")
    if strata is not None and len(strata) != num_speakers:
        raise MetricError(
            f"strata needs one value per speaker ({num_speakers}), got {len(strata)}."
        )
    values = [0] * num_speakers if strata is None else list(strata)  # any hashable (a tuple)
    order = sorted(set(values), key=str)
    code = {value: k for k, value in enumerate(order)}
    labels = np.array([code[v] for v in values], dtype=np.int64)
    rng = np.random.default_rng(seed)
    weights = np.zeros((replicates, num_speakers), dtype=np.float64)
    rows = np.arange(replicates)[:, None]
    for stratum in range(len(order)):
        members = np.flatnonzero(labels == stratum)
        draws = members[rng.integers(0, members.size, size=(replicates, members.size))]
        np.add.at(weights, (np.broadcast_to(rows, draws.shape), draws), 1.0)
    return weights


DESIGN_FOLD_GENDER = "speakers within fold × gender"
DESIGN_FOLD = "speakers within fold"
DESIGN_FOLDS = "whole folds"
DESIGN_GENDER = "speakers within gender"
DESIGN_NONE = "speakers, unstratified"


@dataclass(frozen=True)
class SpeakerDraws:
    """The replicates of one bootstrap design.

    ``weights[B, S]``: how often each of ``speakers`` is drawn in each replicate. When whole
    folds are the unit (``design`` :data:`DESIGN_FOLDS`), ``fold_counts`` gives how often each
    fold is drawn (fold → ``[B]``): a fold drawn twice counts twice in that replicate's fold
    mean; otherwise it is None and every fold counts once.
    """

    speakers: list[Any]
    weights: np.ndarray
    design: str
    fold_counts: dict[Any, np.ndarray] | None = None
    smallest_unit_count: int = 0  # folds, or speakers in the smallest stratum

    @property
    def replicates(self) -> int:
        return int(self.weights.shape[0])

    def fold_weights(self, folds: Sequence[Any]) -> np.ndarray | None:
        """``[B, F]``: each of ``folds``'s weight in every replicate's fold mean (None: 1)."""
        if self.fold_counts is None:
            return None
        missing = [f for f in folds if f not in self.fold_counts]
        if missing:
            raise MetricError(
                f"fold(s) {missing} were not part of the bootstrap design "
                f"({sorted(self.fold_counts, key=str)}); draw the speakers from every per-clip "
                "file that will be scored."
            )
        return np.stack([self.fold_counts[f] for f in folds], axis=-1)


def _stratum_sizes(keys: Sequence[Any]) -> dict[Any, int]:
    sizes: dict[Any, int] = {}
    for key in keys:
        sizes[key] = sizes.get(key, 0) + 1
    return sizes


def draw_speakers(
    speakers: Sequence[Any],
    folds: Sequence[Any | None],
    genders: Sequence[Any | None],
    replicates: int,
    seed: int = 0,
) -> SpeakerDraws:
    """Seeded replicates of the test ``speakers`` (``folds[i]``: the one fold that tested
    speaker ``i``, None if several or unknown; ``genders[i]``: None or ``""`` if unknown), in a
    design that scores every fold in every replicate:

    1. each fold × gender (fold alone when some gender is unknown) has at least as many speakers
       as there are folds, and at least two: speakers drawn within it (:data:`DESIGN_FOLD_GENDER`,
       :data:`DESIGN_FOLD`);
    2. otherwise, with at least two folds, whole folds are drawn with replacement, each with all
       its test speakers (:data:`DESIGN_FOLDS`): within a stratum of one speaker a draw could only
       repeat that speaker, and drawing across folds (the earlier design) left a fold without one
       gender, its fairness undefined, in more than half of the replicates of EmoDB's design;
    3. otherwise (one fold, or speakers tested in several folds): speakers within gender when each
       gender has at least two, else unstratified; a replicate may then lack a fold's gender, and
       that fold is left out of its mean.

    Drawing ``n`` units with replacement within a stratum gives a spread √((n − 1) / n) of the
    standard error, so rule 1 draws speakers only where their strata shrink it no more than
    drawing the folds would.
    """
    if not (len(speakers) == len(folds) == len(genders)):
        raise MetricError("draw_speakers needs one fold and one gender per speaker.")
    if not speakers or replicates < 1:
        raise MetricError("a bootstrap needs at least one speaker and one replicate.")
    known_gender = all(g not in (None, "") for g in genders)
    if all(f is not None for f in folds):
        keys = list(zip(folds, genders, strict=True)) if known_gender else list(folds)
        sizes = _stratum_sizes(keys)
        if min(sizes.values()) >= max(2, len(set(folds))):
            design = DESIGN_FOLD_GENDER if known_gender else DESIGN_FOLD
            weights = speaker_weights(len(speakers), replicates, seed, strata=keys)
            return SpeakerDraws(list(speakers), weights, design, None, min(sizes.values()))
        fold_levels = sorted(set(folds), key=str)
        if len(fold_levels) >= 2:
            rng = np.random.default_rng(seed)
            drawn = rng.integers(0, len(fold_levels), size=(replicates, len(fold_levels)))
            counts = np.zeros((replicates, len(fold_levels)))
            np.add.at(counts, (np.arange(replicates)[:, None], drawn), 1.0)
            column = {f: k for k, f in enumerate(fold_levels)}
            weights = counts[:, [column[f] for f in folds]]
            fold_counts = {f: counts[:, k] for f, k in column.items()}
            return SpeakerDraws(
                list(speakers), weights, DESIGN_FOLDS, fold_counts, len(fold_levels)
            )
    sizes = _stratum_sizes(genders) if known_gender else {}
    if sizes and len(sizes) >= 2 and min(sizes.values()) >= 2:
        weights = speaker_weights(len(speakers), replicates, seed, strata=list(genders))
        return SpeakerDraws(list(speakers), weights, DESIGN_GENDER, None, min(sizes.values()))
    weights = speaker_weights(len(speakers), replicates, seed)
    return SpeakerDraws(list(speakers), weights, DESIGN_NONE, None, len(speakers))


def resample(counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Every replicate's tables at once: ``W[B, S] @ counts[S, ...]`` → ``[B, ...]`` float64.

    ``weights`` may also be a single row ``[S]`` (all ones: the observed data)."""
    counts = np.asarray(counts)
    flat = counts.reshape(counts.shape[0], -1).astype(np.float64)
    out = np.asarray(weights, dtype=np.float64) @ flat
    return out.reshape(*np.shape(weights)[:-1], *counts.shape[1:])


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` with NaN where the denominator is 0 (undefined)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan
        )


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean over the defined (non-NaN) entries; NaN where none is defined."""
    defined = ~np.isnan(values)
    total = np.where(defined, values, 0.0).sum(axis=axis)
    return _divide(total, defined.sum(axis=axis).astype(np.float64))


def _merge_groups(confusion: np.ndarray) -> np.ndarray:
    """``[..., G, C, C]`` → ``[..., C, C]`` (all groups together)."""
    return confusion.sum(axis=-3)


def uar_from_counts(confusion: np.ndarray) -> np.ndarray:
    """UAR of confusion tables ``[..., G, C, C]``: mean recall over the classes with true clips
    (:func:`~trustser.metrics.performance.uar_score`); NaN where no clip at all."""
    matrix = _merge_groups(confusion)
    recall = _divide(np.diagonal(matrix, axis1=-2, axis2=-1), matrix.sum(axis=-1))
    return _nanmean(recall, axis=-1)


def accuracy_from_counts(confusion: np.ndarray) -> np.ndarray:
    """Accuracy (the papers' weighted accuracy) of tables ``[..., G, C, C]``."""
    matrix = _merge_groups(confusion)
    return _divide(np.trace(matrix, axis1=-2, axis2=-1), matrix.sum(axis=(-2, -1)))


def macro_f1_from_counts(confusion: np.ndarray) -> np.ndarray:
    """Macro-F1 of tables ``[..., G, C, C]``: mean of ``2TP / (2TP + FP + FN)`` over the classes
    true or predicted at least once (:func:`~trustser.metrics.performance.macro_f1_score`)."""
    matrix = _merge_groups(confusion)
    tp = np.diagonal(matrix, axis1=-2, axis2=-1)
    denominator = matrix.sum(axis=-1) + matrix.sum(axis=-2)  # 2TP + FP + FN
    return _nanmean(_divide(2 * tp, denominator), axis=-1)


def _groups_present(confusion: np.ndarray) -> np.ndarray:
    """``[..., G]`` bool: groups with at least one clip."""
    return confusion.sum(axis=(-2, -1)) > 0


def multiclass_eo_from_counts(confusion: np.ndarray) -> np.ndarray:
    r"""The reference code's multiclass equalized odds of tables ``[..., G, C, C]``:
    :math:`\frac{1}{C'}\sum_y \max_{a,b} \frac12 \sum_{\hat y} |P_a(\hat y|y) - P_b(\hat y|y)|`
    over the groups present; a class missing from a present group is left out
    (:func:`~trustser.metrics.fairness.multiclass_equalized_odds_difference`). NaN with fewer
    than two groups present or no class left."""
    conditional = _divide(confusion, confusion.sum(axis=-1, keepdims=True))  # [..., G, C, C]
    present = _groups_present(confusion)
    num_groups = confusion.shape[-3]
    worst = np.full((*confusion.shape[:-3], confusion.shape[-2]), -np.inf)
    for a in range(num_groups):
        for b in range(a + 1, num_groups):
            tv = 0.5 * np.abs(conditional[..., a, :, :] - conditional[..., b, :, :]).sum(axis=-1)
            both = (present[..., a] & present[..., b])[..., None]
            worst = np.where(both, np.fmax(worst, tv), worst)  # NaN tv: class missing, stays NaN
    # A class is undefined when a *present* group lacks it.
    lacks = (confusion.sum(axis=-1) == 0) & present[..., None]  # [..., G, C]
    worst = np.where(lacks.any(axis=-2) | np.isinf(worst), np.nan, worst)
    return np.where(present.sum(axis=-1) >= 2, _nanmean(worst, axis=-1), np.nan)


def multiclass_sp_from_counts(confusion: np.ndarray) -> np.ndarray:
    r"""The reference code's multiclass statistical parity of tables ``[..., G, C, C]``:
    :math:`\max_{a,b}\frac12\sum_c |P_a(\hat y = c) - P_b(\hat y = c)|` over the groups present."""
    predicted = confusion.sum(axis=-2)  # [..., G, C]
    share = _divide(predicted, predicted.sum(axis=-1, keepdims=True))
    present = _groups_present(confusion)
    num_groups = confusion.shape[-3]
    worst = np.full(confusion.shape[:-3], np.nan)
    for a in range(num_groups):
        for b in range(a + 1, num_groups):
            tv = 0.5 * np.abs(share[..., a, :] - share[..., b, :]).sum(axis=-1)
            worst = np.where(present[..., a] & present[..., b], np.fmax(worst, tv), worst)
    return worst


def class_tpr_from_counts(confusion: np.ndarray) -> np.ndarray:
    r"""Per group and class the true-positive rate :math:`P(\hat y = c \mid y = c, g)` of tables
    ``[..., G, C, C]`` → ``[..., G, C]``; NaN where the group has no clip of the class."""
    return _divide(np.diagonal(confusion, axis1=-2, axis2=-1), confusion.sum(axis=-1))


def class_gaps_from_counts(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """The per-class one-vs-rest gaps of :func:`~trustser.metrics.fairness.class_fairness`
    aggregated over classes: ``equalized_odds_max`` / ``_mean`` and ``statistical_parity_max`` /
    ``_mean`` (max − min over the groups present; a class undefined in a group is left out)."""
    present = _groups_present(confusion)  # [..., G]
    positives = confusion.sum(axis=-1)  # [..., G, C]: true class c
    total = confusion.sum(axis=(-2, -1))[..., None]  # [..., G, 1]
    predicted = confusion.sum(axis=-2)  # [..., G, C]: predicted c
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    tpr = class_tpr_from_counts(confusion)
    fpr = _divide(predicted - tp, total - positives)
    selection = _divide(predicted, total)
    mask = present[..., None]

    def gap(rate: np.ndarray) -> np.ndarray:
        undefined = (np.isnan(rate) & mask).any(axis=-2)
        high = np.where(mask, rate, -np.inf).max(axis=-2)
        low = np.where(mask, rate, np.inf).min(axis=-2)
        return np.where(undefined | (present.sum(axis=-1) < 2)[..., None], np.nan, high - low)

    eo = np.fmax(gap(tpr), gap(fpr))
    eo = np.where(np.isnan(gap(tpr)) | np.isnan(gap(fpr)), np.nan, eo)
    sp = gap(selection)

    def maximum(values: np.ndarray) -> np.ndarray:
        defined = ~np.isnan(values)
        best = np.where(defined, values, -np.inf).max(axis=-1)
        return np.where(defined.any(axis=-1), best, np.nan)

    return {
        "equalized_odds_max": maximum(eo),
        "equalized_odds_mean": _nanmean(eo, axis=-1),
        "statistical_parity_max": maximum(sp),
        "statistical_parity_mean": _nanmean(sp, axis=-1),
    }


def asr_from_counts(attacks: np.ndarray) -> np.ndarray:
    """Attack success rate of tables ``[..., 2]`` (attacked, flipped); NaN without attacked clips."""
    return _divide(attacks[..., 1], attacks[..., 0])


def fold_mean(per_fold: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean over the last (fold) axis of the folds that are defined; NaN if none is.
    ``weights`` (broadcast against ``per_fold``): how often each fold counts (a fold drawn twice
    by :data:`DESIGN_FOLDS` counts twice)."""
    if weights is None:
        return _nanmean(per_fold, axis=-1)
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), per_fold.shape)
    used = np.where(np.isnan(per_fold), 0.0, weights)
    total = np.where(used > 0, per_fold, 0.0) * used
    return _divide(total.sum(axis=-1), used.sum(axis=-1))


def fold_values(
    metric: Any,
    tables: np.ndarray,
    *,
    pooled: bool = False,
    cell_dims: int = 3,
    fold_weights: np.ndarray | None = None,
) -> np.ndarray:
    """``metric`` of resampled tables ``[..., F, *cell]``: per fold then the fold mean (each fold
    weighted by ``fold_weights[..., F]`` when given, :meth:`SpeakerDraws.fold_weights`), or
    ``pooled`` over the folds first. ``cell_dims`` is the rank of one fold's table (3 for
    confusion tables ``[G, C, C]``, 1 for attack tables ``[2]``)."""
    fold_axis = tables.ndim - cell_dims - 1
    if pooled:
        return metric(tables.sum(axis=fold_axis))
    values = metric(tables)  # [..., F]
    return fold_mean(values, fold_weights)


@dataclass
class Interval:
    """A point estimate with its bootstrap percentile interval (``level``, default 95 %)."""

    value: float | None
    low: float | None
    high: float | None
    level: float = DEFAULT_LEVEL
    method: str = "speaker bootstrap"
    replicates: int = 0
    undefined_replicates: int = 0
    samples: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "level": self.level,
            "method": self.method,
            "replicates": self.replicates,
            "undefined_replicates": self.undefined_replicates,
        }


def _finite(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def interval(
    value: float | None,
    samples: np.ndarray,
    *,
    level: float = DEFAULT_LEVEL,
    method: str = "speaker bootstrap",
) -> Interval:
    """The percentile interval of the defined replicate values ``samples``, beside ``value``.

    Reported as computed: a statistic whose replicates are skewed or biased (a gap such as EO,
    an absolute difference, is biased upwards) can have its point estimate outside its own
    percentile interval, and widening the interval to hold it would hide that. Undefined
    replicates (NaN) are counted, not used; when more than half are undefined there is no
    interval (``low = high = None``): the design cannot support one.
    """
    if not 0.0 < level < 1.0:
        raise MetricError(f"level must lie in (0, 1), got {level}.")
    samples = np.asarray(samples, dtype=np.float64)
    defined = samples[~np.isnan(samples)]
    undefined = int(samples.size - defined.size)
    low = high = None
    if defined.size and undefined <= samples.size / 2:
        tail = 100.0 * (1.0 - level) / 2.0
        low, high = (float(x) for x in np.percentile(defined, [tail, 100.0 - tail]))
    return Interval(
        value=_finite(value) if value is not None else None,
        low=low,
        high=high,
        level=level,
        method=method,
        replicates=int(samples.size),
        undefined_replicates=undefined,
        samples=samples,
    )


VERDICTS = ("A better", "B better", "no significant difference")


@dataclass
class Comparison:
    """The paired difference ``A − B`` of one metric on the same test speakers."""

    metric: str
    a: float | None
    b: float | None
    difference: float | None
    low: float | None
    high: float | None
    p_value: float | None
    verdict: str
    higher_is_better: bool
    level: float = DEFAULT_LEVEL
    replicates: int = 0
    exact: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def compare_replicates(
    metric: str,
    a: float | None,
    b: float | None,
    a_samples: np.ndarray | None,
    b_samples: np.ndarray | None,
    *,
    higher_is_better: bool,
    level: float = DEFAULT_LEVEL,
) -> Comparison:
    """Paired bootstrap of ``A − B`` from replicates drawn with the *same* speaker weights.

    Interval: percentiles of ``d_b = A_b − B_b``. Two-sided p-value: the share of replicates of
    the difference centred on the null, ``|d_b − d| ≥ |d|``, with the ``(1 + k) / (1 + B)``
    correction so it is never 0. Significant when ``p < 1 − level``; the verdict then names the
    better model by the metric's direction. Without replicates (parameters, MACs: exact) any
    difference is the verdict.
    """
    if a is None or b is None:
        return Comparison(metric, a, b, None, None, None, None, "not comparable", higher_is_better)
    difference = float(a - b)
    better = "A better" if (difference > 0) == higher_is_better else "B better"
    if a_samples is None or b_samples is None:
        verdict = "no difference" if difference == 0 else better
        return Comparison(
            metric,
            a,
            b,
            difference,
            difference,
            difference,
            None,
            verdict,
            higher_is_better,
            level,
            0,
            exact=True,
        )
    d = np.asarray(a_samples, dtype=np.float64) - np.asarray(b_samples, dtype=np.float64)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return Comparison(
            metric, a, b, difference, None, None, None, "not comparable", higher_is_better, level
        )
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = (float(x) for x in np.percentile(d, [tail, 100.0 - tail]))
    extreme = int(np.sum(np.abs(d - difference) >= abs(difference) - 1e-12))
    p_value = min(1.0, (1 + extreme) / (1 + d.size))
    verdict = better if p_value < 1.0 - level and difference != 0 else VERDICTS[2]
    return Comparison(
        metric, a, b, difference, low, high, p_value, verdict, higher_is_better, level, int(d.size)
    )
