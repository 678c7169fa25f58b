r"""Speaker verification: equal error rate, minimum detection cost, DET curves and their bootstrap.

A *trial* pairs an enrolment clip with a test clip; its *score* says how likely the two share a
speaker (higher = more likely), and it is a *target* trial when they do. Accepting every trial
scoring at least :math:`\theta` gives, over the trials,

* the false-acceptance rate :math:`P_{fa}(\theta)`: the share of non-target trials accepted,
* the miss (false-rejection) rate :math:`P_{miss}(\theta)`: the share of target trials rejected.

:func:`equal_error_rate` is where the two cross; :func:`min_dcf` the lowest normalised detection
cost at an :class:`OperatingPoint` (default NIST SRE / VoicePrivacy: :math:`P_{target} = 0.05`,
:math:`C_{miss} = C_{fa} = 1`); :func:`det_curve` the curve's points. For the *attacker* lower is
better; for the system a higher EER is more private. Formulas: docs/metrics.md, "Speaker
verification".

Every rate here may be *weighted* (one non-negative weight per trial, broadcast over leading
replicate axes): :func:`verification_replicates` uses that for the speaker bootstrap, where a
trial counts as often as its speakers were drawn (:func:`trial_weights`). The unweighted figures
are the same code with unit weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trustser.metrics._common import MetricError
from trustser.metrics.bootstrap import _divide, fold_mean

__all__ = [
    "DEFAULT_OPERATING_POINT",
    "DetCurve",
    "OperatingPoint",
    "det_curve",
    "equal_error_rate",
    "error_rates",
    "min_dcf",
    "trial_weights",
    "verification_replicates",
]

# Replicates × trials held at once by the bootstrap (float64: 8 bytes each): bounds its memory.
_CHUNK_ELEMENTS = 20_000_000


@dataclass(frozen=True)
class OperatingPoint:
    r"""The application a detection cost is measured for.

    :math:`\mathrm{DCF}(\theta) = C_{miss} P_{target} P_{miss}(\theta) + C_{fa} (1 - P_{target})
    P_{fa}(\theta)`, divided by :math:`\min(C_{miss} P_{target}, C_{fa}(1 - P_{target}))`, the cost
    of the better trivial system (accept all or reject all), so 1 means "no better than
    guessing". The default is NIST SRE's and VoicePrivacy's: :math:`P_{target} = 0.05`,
    :math:`C_{miss} = C_{fa} = 1`, hence :math:`\mathrm{DCF}_{norm} = P_{miss} + 19 P_{fa}`.
    """

    p_target: float = 0.05
    c_miss: float = 1.0
    c_fa: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.p_target < 1.0:
            raise MetricError(f"p_target must lie in (0, 1), got {self.p_target}.")
        if not (self.c_miss > 0 and self.c_fa > 0):
            raise MetricError(
                f"the costs must be positive, got c_miss={self.c_miss}, c_fa={self.c_fa}."
            )

    @property
    def normaliser(self) -> float:
        """The cost of the better trivial system, which the normalised DCF divides by."""
        return min(self.c_miss * self.p_target, self.c_fa * (1.0 - self.p_target))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "normalised": True, "normaliser": self.normaliser}


DEFAULT_OPERATING_POINT = OperatingPoint()


def _trials(scores: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets)
    if scores.ndim != 1 or targets.shape != scores.shape:
        raise MetricError(
            f"scores and targets must be 1-D arrays of the same length (one entry per trial), "
            f"got shapes {scores.shape} and {targets.shape}."
        )
    if not np.isfinite(scores).all():
        raise MetricError(f"{int((~np.isfinite(scores)).sum())} trial score(s) are not finite.")
    return scores, targets.astype(bool)


def error_rates(
    scores: Any, targets: Any, *, weights: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(false_accept, miss, thresholds)`` at every operating point of the trials.

    Point ``k`` accepts the trials scoring at least ``thresholds[k]``: ``thresholds[0] = +inf``
    (accept none), then each distinct score from the highest down (the last accepts all), so
    tied scores are accepted together. ``weights`` (``[..., n]``, non-negative) count each
    trial that many times; the rates then have its leading shape, ``[..., K]``, and are NaN
    where no target (miss) or no non-target (false acceptance) carries weight.
    """
    scores, targets = _trials(scores, targets)
    order = np.argsort(-scores, kind="stable")
    ordered = scores[order]
    ends = np.concatenate([[0], np.flatnonzero(np.diff(ordered)) + 1, [ordered.size]])
    thresholds = np.concatenate([[np.inf], ordered[ends[1:] - 1]])
    if weights is None:
        weights = np.ones(scores.size)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape[-1:] != scores.shape:
        raise MetricError(f"weights need one entry per trial ({scores.size}), got {weights.shape}.")
    if (weights < 0).any():
        raise MetricError("trial weights must be non-negative.")
    weights = weights[..., order]
    is_target = targets[order]
    zero = np.zeros((*weights.shape[:-1], 1))
    accepted_targets = np.concatenate([zero, np.cumsum(weights * is_target, axis=-1)], -1)
    accepted_others = np.concatenate([zero, np.cumsum(weights * ~is_target, axis=-1)], -1)
    accepted_targets, accepted_others = accepted_targets[..., ends], accepted_others[..., ends]
    false_accept = _divide(accepted_others, accepted_others[..., -1:])
    miss = 1.0 - _divide(accepted_targets, accepted_targets[..., -1:])
    return false_accept, miss, thresholds


def _eer_of_rates(false_accept: np.ndarray, miss: np.ndarray) -> np.ndarray:
    """EER of rate curves ``[..., K]``: linear interpolation between the two operating points
    that bracket the crossing of ``miss`` (falling from 1) and ``false_accept`` (rising to 1)."""
    gap = miss - false_accept  # non-increasing from 1 to -1 where defined
    defined = ~np.isnan(gap).any(axis=-1)
    gap = np.where(np.isnan(gap), -1.0, gap)
    crossing = np.argmax(gap <= 0, axis=-1)[..., None]
    before = np.maximum(crossing - 1, 0)
    gap_at = np.take_along_axis(gap, crossing, -1)[..., 0]
    gap_before = np.take_along_axis(gap, before, -1)[..., 0]
    fa_at = np.take_along_axis(np.nan_to_num(false_accept), crossing, -1)[..., 0]
    fa_before = np.take_along_axis(np.nan_to_num(false_accept), before, -1)[..., 0]
    exact = (gap_at == 0) | (crossing[..., 0] == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(exact, 0.0, gap_before / np.where(exact, 1.0, gap_before - gap_at))
    eer = np.where(exact, fa_at, fa_before + share * (fa_at - fa_before))
    return np.where(defined, eer, np.nan)


def _min_dcf_of_rates(
    false_accept: np.ndarray, miss: np.ndarray, operating_point: OperatingPoint
) -> np.ndarray:
    p = operating_point
    cost = p.c_miss * p.p_target * miss + p.c_fa * (1.0 - p.p_target) * false_accept
    defined = ~np.isnan(cost).any(axis=-1)
    best = np.where(np.isnan(cost), np.inf, cost).min(axis=-1) / p.normaliser
    return np.where(defined, best, np.nan)


def _both_kinds(targets: np.ndarray) -> None:
    if targets.all() or not targets.any():
        raise MetricError(
            f"verification needs both target and non-target trials; got {int(targets.sum())} "
            f"target and {int((~targets).sum())} non-target trial(s)."
        )


def equal_error_rate(scores: Any, targets: Any) -> float:
    r"""The rate at which false acceptances equal misses, :math:`P_{fa}(\theta) = P_{miss}(\theta)`.

    Both rates are evaluated at every distinct score (:func:`error_rates`); the EER is where
    :math:`P_{miss} - P_{fa}` changes sign, linearly interpolated between the two operating
    points that bracket the crossing (exact when one point has both rates equal). 0 = perfect
    separation, 0.5 = chance, 1 = every non-target outscores every target. Lower is better for
    the verifier. Raises :class:`MetricError` without both target and non-target trials.
    """
    scores, targets = _trials(scores, targets)
    _both_kinds(targets)
    return float(_eer_of_rates(*error_rates(scores, targets)[:2]))


def min_dcf(
    scores: Any, targets: Any, *, operating_point: OperatingPoint = DEFAULT_OPERATING_POINT
) -> float:
    r"""The minimum normalised detection cost over all thresholds (:class:`OperatingPoint`).

    :math:`\min_\theta [C_{miss} P_{target} P_{miss}(\theta) + C_{fa}(1 - P_{target})
    P_{fa}(\theta)] / \min(C_{miss} P_{target}, C_{fa}(1 - P_{target}))`, accept-none and
    accept-all included, so it lies in [0, 1]. Lower is better for the verifier.
    """
    scores, targets = _trials(scores, targets)
    _both_kinds(targets)
    false_accept, miss, _ = error_rates(scores, targets)
    return float(_min_dcf_of_rates(false_accept, miss, operating_point))


@dataclass(frozen=True)
class DetCurve:
    """The detection error trade-off: ``false_accept[k]`` and ``miss[k]`` when accepting the
    trials scoring at least ``thresholds[k]`` (from accept-none to accept-all)."""

    thresholds: np.ndarray
    false_accept: np.ndarray
    miss: np.ndarray

    def probit(self) -> tuple[np.ndarray, np.ndarray]:
        r"""The points on normal-deviate axes, :math:`(\Phi^{-1}(P_{fa}), \Phi^{-1}(P_{miss}))`,
        as a DET plot draws them; points where either rate is 0 or 1 (at ±∞) are left out."""
        from scipy.stats import norm

        keep = (self.false_accept > 0) & (self.false_accept < 1) & (self.miss > 0) & (self.miss < 1)
        return norm.ppf(self.false_accept[keep]), norm.ppf(self.miss[keep])


def det_curve(scores: Any, targets: Any) -> DetCurve:
    """Every operating point of the trials (:func:`error_rates`) as a :class:`DetCurve`."""
    scores, targets = _trials(scores, targets)
    _both_kinds(targets)
    false_accept, miss, thresholds = error_rates(scores, targets)
    return DetCurve(thresholds=thresholds, false_accept=false_accept, miss=miss)


def trial_weights(
    speaker_draws: np.ndarray, enrol_speaker: Any, test_speaker: Any, targets: Any
) -> np.ndarray:
    """How often each trial counts when speaker ``s`` is drawn ``speaker_draws[..., s]`` times.

    A speaker drawn ``k`` times is ``k`` distinct copies: each copy brings its own target
    trials (weight ``k``), and a non-target trial between speakers drawn ``k`` and ``m`` times
    counts ``k · m`` times (every copy of one against every copy of the other). Copies of one
    speaker are not paired with each other. ``enrol_speaker`` / ``test_speaker`` are speaker
    indices (columns of ``speaker_draws``); the result is ``[..., n]``.
    """
    draws = np.asarray(speaker_draws, dtype=np.float64)
    enrol = draws[..., np.asarray(enrol_speaker, dtype=np.int64)]
    test = draws[..., np.asarray(test_speaker, dtype=np.int64)]
    return np.where(np.asarray(targets, dtype=bool), enrol, enrol * test)


def verification_replicates(
    scores: Any,
    targets: Any,
    enrol_speaker: Any,
    test_speaker: Any,
    sets: Sequence[Any],
    speaker_draws: np.ndarray,
    *,
    operating_point: OperatingPoint = DEFAULT_OPERATING_POINT,
) -> dict[str, np.ndarray]:
    """EER and minDCF of each row of ``speaker_draws`` (``[B, S]``), per trial set then the mean
    over sets: ``{"eer": [B], "min_dcf": [B]}``.

    Trials are grouped by ``sets`` (one label per trial, e.g. the fold whose attacker scored
    it); each set's figures come from its own trials only (one attacker, one score scale). A set
    a replicate cannot score — no target or no non-target trial drawn — is left out of that
    replicate's mean, as the point estimate leaves out such sets; a replicate with no scorable
    set is NaN. A row of ones gives the observed figures.
    """
    scores, targets = _trials(scores, targets)
    draws = np.atleast_2d(np.asarray(speaker_draws, dtype=np.float64))
    enrol, test = np.asarray(enrol_speaker), np.asarray(test_speaker)
    labels = np.asarray(sets)
    if not (enrol.shape == test.shape == labels.shape == scores.shape):
        raise MetricError("enrol_speaker, test_speaker and sets need one entry per trial.")
    names = list(dict.fromkeys(labels.tolist()))
    eer = np.full((draws.shape[0], len(names)), np.nan)
    dcf = np.full_like(eer, np.nan)
    for column, name in enumerate(names):
        member = labels == name
        n = int(member.sum())
        step = max(1, _CHUNK_ELEMENTS // max(n, 1))
        for start in range(0, draws.shape[0], step):
            rows = slice(start, start + step)
            weights = trial_weights(draws[rows], enrol[member], test[member], targets[member])
            false_accept, miss, _ = error_rates(scores[member], targets[member], weights=weights)
            eer[rows, column] = _eer_of_rates(false_accept, miss)
            dcf[rows, column] = _min_dcf_of_rates(false_accept, miss, operating_point)
    return {"eer": fold_mean(eer), "min_dcf": fold_mean(dcf)}
