r"""Fairness across a protected attribute (gender in TrustSER) from test predictions.

Every number here is a gap between groups, so **lower is better** (``*_difference``,
``*_gap``); 0 means the groups are treated identically. The per-class quantities treat class
:math:`c` one-vs-rest: a positive is an utterance whose true label is :math:`c`, a positive
prediction one whose predicted label is :math:`c`. For each group :math:`g`:

* :math:`\mathrm{TPR}_g(c) = P(\hat y = c \mid y = c, g)`,
* :math:`\mathrm{FPR}_g(c) = P(\hat y = c \mid y \ne c, g)`,
* :math:`\mathrm{SR}_g(c) = P(\hat y = c \mid g)` (selection rate),

computed with fairlearn's :class:`~fairlearn.metrics.MetricFrame` (its
``equalized_odds_difference`` refuses more than two classes, and ``demographic_parity_difference``
silently scores one class only, so both are built here per class). Gaps are ``max − min`` over
groups. Per class: equalized-odds difference :math:`\max(\Delta\mathrm{TPR}, \Delta\mathrm{FPR})`
and statistical-parity difference :math:`\Delta\mathrm{SR}`; both are aggregated over classes by
``max`` (the worst class) and ``mean``.

For comparison with the paper, the reference code's multiclass forms (holisticai) are also given:
:math:`\mathrm{EO}_{mc} = \frac{1}{2C}\sum_y\sum_{\hat y}|P_m(\hat y|y) - P_f(\hat y|y)|` and
:math:`\mathrm{SP}_{mc} = \frac12\sum_c |P_m(\hat y=c) - P_f(\hat y=c)|` (total-variation
distances between the groups' prediction distributions; with more than two groups the largest
pairwise distance).

Undefined quantities (a group with no utterance of class :math:`c` has no TPR; one with only
class :math:`c` has no FPR) follow the ``undefined`` policy of :mod:`trustser.metrics._common`:
``None`` per class, left out of aggregates, with a :class:`~trustser.metrics._common.MetricWarning`
naming the class and group — never a silent 0 (which is what fairlearn's rates return).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np

from trustser.metrics._common import (
    MetricError,
    MetricWarning,
    UndefinedPolicy,
    as_label_arrays,
    report_undefined,
    resolve_labels,
)

__all__ = [
    "AGGREGATES",
    "ClassFairness",
    "FairnessReport",
    "SpeakerSpread",
    "class_fairness",
    "equalized_odds_difference",
    "fairness_report",
    "multiclass_equalized_odds_difference",
    "multiclass_statistical_parity_difference",
    "per_speaker_uar",
    "speaker_uar_spread",
    "statistical_parity_difference",
]

AGGREGATES = ("max", "mean")


@dataclass(frozen=True)
class ClassFairness:
    """One class, one-vs-rest: rates per group and the gaps between groups (``None`` = undefined)."""

    label: str
    positives: dict[str, int]
    negatives: dict[str, int]
    tpr: dict[str, float | None]
    fpr: dict[str, float | None]
    selection_rate: dict[str, float]
    tpr_gap: float | None
    fpr_gap: float | None
    equalized_odds_difference: float | None
    statistical_parity_difference: float


@dataclass(frozen=True)
class SpeakerSpread:
    """Per-speaker UAR and its spread: a fair model works for every speaker, not just on average."""

    per_speaker: dict[str, float]
    min: float
    max: float
    sd: float
    gap: float  # max - min, lower is better
    worst_speaker: str
    best_speaker: str


@dataclass(frozen=True)
class FairnessReport:
    """Everything :func:`fairness_report` measures, JSON-ready through :meth:`to_dict`."""

    labels: list[str]
    groups: list[str]
    group_sizes: dict[str, int]
    per_class: dict[str, ClassFairness]
    equalized_odds_max: float
    equalized_odds_mean: float
    statistical_parity_max: float
    statistical_parity_mean: float
    multiclass_equalized_odds: float
    multiclass_statistical_parity: float
    speakers: SpeakerSpread | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _inputs(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    groups: Sequence[Any],
    labels: Sequence[Any] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Any]]:
    """The three ``[N]`` label arrays, checked, and the classes to score."""
    y_true, y_pred, groups = as_label_arrays(
        y_true, y_pred, groups, names=("y_true", "y_pred", "groups")
    )
    return y_true, y_pred, groups, resolve_labels(labels, y_true, y_pred)


def _check_groups(groups: np.ndarray) -> list[Any]:
    values = np.unique(groups).tolist()
    if len(values) < 2:
        raise MetricError(
            f"fairness needs at least two groups of the protected attribute, but every utterance "
            f"has {values[0]!r}; evaluate on a test set with more than one group."
        )
    return values


def _one_vs_rest(y_true: np.ndarray, y_pred: np.ndarray, *, rate: Any, label: Any) -> float:
    """A binary fairlearn rate of class ``label`` against the rest (positive = the class)."""
    return rate(np.asarray(y_true) == label, np.asarray(y_pred) == label, pos_label=True)


def class_fairness(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    groups: Sequence[Any],
    *,
    labels: Sequence[Any] | None = None,
    undefined: UndefinedPolicy = "warn",
) -> dict[Any, ClassFairness]:
    """Per class (one-vs-rest): TPR, FPR and selection rate per group and their gaps.

    Shapes: ``y_true``, ``y_pred``, ``groups`` are ``[N]``; the result maps each label to a
    :class:`ClassFairness`. Rates come from fairlearn's ``MetricFrame``; undefined ones (no
    positives / negatives in a group) become ``None`` under the ``undefined`` policy.
    """
    from fairlearn.metrics import (
        MetricFrame,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    y_true, y_pred, groups, labels = _inputs(y_true, y_pred, groups, labels)
    _check_groups(groups)
    # One MetricFrame for every class: metric "<rate>|<i>" is fairlearn's rate on the
    # one-vs-rest labels of class i; .difference() gives the between-group gaps.
    metrics: dict[str, Any] = {}
    for index, label in enumerate(labels):
        for name, rate in (
            ("tpr", true_positive_rate),
            ("fpr", false_positive_rate),
            ("selection_rate", selection_rate),
        ):
            metrics[f"{name}|{index}"] = partial(_one_vs_rest, rate=rate, label=label)
    frame = MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred, sensitive_features=groups)
    by_group, gaps = frame.by_group, frame.difference(method="between_groups")
    group_names = [str(g) for g in by_group.index]
    result: dict[Any, ClassFairness] = {}
    for index, label in enumerate(labels):
        positives = {str(g): int(np.sum((groups == g) & (y_true == label))) for g in by_group.index}
        negatives = {str(g): int(np.sum((groups == g) & (y_true != label))) for g in by_group.index}
        tpr: dict[str, float | None] = {}
        fpr: dict[str, float | None] = {}
        rates: dict[str, float] = {}
        for g, name in zip(by_group.index, group_names, strict=True):
            for rates_of, metric, count, why in (
                (tpr, "tpr", positives, "no utterance of the class in that group"),
                (fpr, "fpr", negatives, "every utterance of that group has this class"),
            ):
                if count[name] == 0:
                    report_undefined(
                        undefined,
                        f"class {label!r}: {metric.upper()} of group {name!r} is undefined "
                        f"({why}); the class is left out of equalized-odds aggregates.",
                    )
                    rates_of[name] = None
                else:
                    rates_of[name] = float(by_group.loc[g, f"{metric}|{index}"])
            rates[name] = float(by_group.loc[g, f"selection_rate|{index}"])
        tpr_gap = None if None in tpr.values() else float(gaps[f"tpr|{index}"])
        fpr_gap = None if None in fpr.values() else float(gaps[f"fpr|{index}"])
        eo = None if tpr_gap is None or fpr_gap is None else max(tpr_gap, fpr_gap)
        result[label] = ClassFairness(
            label=str(label),
            positives=positives,
            negatives=negatives,
            tpr=tpr,
            fpr=fpr,
            selection_rate=rates,
            tpr_gap=tpr_gap,
            fpr_gap=fpr_gap,
            equalized_odds_difference=eo,
            statistical_parity_difference=float(gaps[f"selection_rate|{index}"]),
        )
    return result


# The per-class gaps aggregated over classes: ClassFairness field → what messages call it.
_EO = "equalized_odds_difference"
_SP = "statistical_parity_difference"
_GAP_NAMES = {_EO: "the equalized-odds difference", _SP: "the statistical-parity difference"}


def _aggregate(per_class: dict[Any, ClassFairness], gap: str, aggregate: str) -> float:
    """``max`` or ``mean`` of one gap over the classes where it is defined."""
    if aggregate not in AGGREGATES:
        raise MetricError(f"aggregate={aggregate!r} is not supported; choose one of {AGGREGATES}.")
    defined = [v for c in per_class.values() if (v := getattr(c, gap)) is not None]
    if not defined:
        raise MetricError(
            f"{_GAP_NAMES[gap]} is undefined for every class; no aggregate can be formed."
        )
    return float(max(defined) if aggregate == "max" else np.mean(defined))


def _class_gap_metric(gap: str, doc: str) -> Callable[..., float]:
    """The metric that aggregates one per-class gap of :func:`class_fairness` over classes.

    The equalized-odds and statistical-parity differences differ only in the gap they read, so
    both are made here, with the same signature and behaviour.
    """

    def metric(
        y_true: Sequence[Any],
        y_pred: Sequence[Any],
        groups: Sequence[Any],
        *,
        labels: Sequence[Any] | None = None,
        aggregate: str = "max",
        undefined: UndefinedPolicy = "warn",
    ) -> float:
        per_class = class_fairness(y_true, y_pred, groups, labels=labels, undefined=undefined)
        return _aggregate(per_class, gap, aggregate)

    metric.__name__ = metric.__qualname__ = gap
    metric.__doc__ = doc
    return metric


equalized_odds_difference = _class_gap_metric(
    _EO,
    r"""Equalized-odds difference, lower is better: per class
    :math:`\max(\max_g \mathrm{TPR}_g - \min_g \mathrm{TPR}_g,\ \max_g \mathrm{FPR}_g - \min_g
    \mathrm{FPR}_g)`, then the ``max`` or ``mean`` over classes with a defined value.""",
)
statistical_parity_difference = _class_gap_metric(
    _SP,
    r"""Statistical-parity (selection-rate) difference, lower is better: per class
    :math:`\max_g P(\hat y = c|g) - \min_g P(\hat y = c|g)`, then ``max`` or ``mean`` over classes.""",
)


def _distribution(y_pred: np.ndarray, labels: list[Any]) -> np.ndarray:
    return np.array([np.mean(y_pred == label) for label in labels], dtype=float)


def _largest_tv(distributions: dict[Any, np.ndarray]) -> float:
    pairs = itertools.combinations(distributions.values(), 2)
    return float(max(0.5 * np.abs(a - b).sum() for a, b in pairs))


def multiclass_equalized_odds_difference(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    groups: Sequence[Any],
    *,
    labels: Sequence[Any] | None = None,
    undefined: UndefinedPolicy = "warn",
) -> float:
    r"""The reference code's multiclass equality of odds, lower is better:
    :math:`\frac{1}{2C}\sum_{y}\sum_{\hat y}|P_a(\hat y|y) - P_b(\hat y|y)|` for two groups
    :math:`a, b` (the largest pair when there are more). A true class missing from a group is
    undefined and left out, the mean then runs over the :math:`C'` classes that remain."""
    y_true, y_pred, groups, labels = _inputs(y_true, y_pred, groups, labels)
    group_values = _check_groups(groups)
    distances = []
    for label in labels:
        per_group = {}
        for g in group_values:
            rows = (groups == g) & (y_true == label)
            if not rows.any():
                report_undefined(
                    undefined,
                    f"class {label!r}: P(prediction | true class) is undefined for group {g!r} "
                    "(no utterance of the class in that group); the class is left out of the "
                    "multiclass equalized odds.",
                )
                break
            per_group[g] = _distribution(y_pred[rows], labels)
        else:
            distances.append(_largest_tv(per_group))
    if not distances:
        raise MetricError("the multiclass equalized odds is undefined for every class.")
    return float(np.mean(distances))


def multiclass_statistical_parity_difference(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    groups: Sequence[Any],
    *,
    labels: Sequence[Any] | None = None,
) -> float:
    r"""The reference code's multiclass statistical parity, lower is better:
    :math:`\frac12\sum_c |P_a(\hat y = c) - P_b(\hat y = c)|` (largest pair of groups)."""
    y_true, y_pred, groups, labels = _inputs(y_true, y_pred, groups, labels)
    group_values = _check_groups(groups)
    return _largest_tv({g: _distribution(y_pred[groups == g], labels) for g in group_values})


def per_speaker_uar(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    speakers: Sequence[Any],
) -> dict[str, float]:
    r"""UAR of each speaker over the classes that speaker has true utterances of (higher is
    better): :math:`\frac{1}{|C_s|}\sum_{c\in C_s} R_{c,s}`. Classes a speaker never produced are
    not part of that speaker's recall, by definition, so nothing is undefined here."""
    y_true, y_pred, speakers = as_label_arrays(
        y_true, y_pred, speakers, names=("y_true", "y_pred", "speakers")
    )
    result: dict[str, float] = {}
    for speaker in np.unique(speakers).tolist():
        rows = speakers == speaker
        truth, guess = y_true[rows], y_pred[rows]
        recalls = [np.mean(guess[truth == c] == c) for c in np.unique(truth)]
        result[str(speaker)] = float(np.mean(recalls))
    return result


def speaker_uar_spread(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    speakers: Sequence[Any],
) -> SpeakerSpread:
    """Min, max, population sd (ddof=0) and gap (max − min, lower is better) of per-speaker UAR."""
    per_speaker = per_speaker_uar(y_true, y_pred, speakers)
    values = np.array(list(per_speaker.values()))
    worst = min(per_speaker, key=per_speaker.__getitem__)
    best = max(per_speaker, key=per_speaker.__getitem__)
    return SpeakerSpread(
        per_speaker=per_speaker,
        min=float(values.min()),
        max=float(values.max()),
        sd=float(values.std()),
        gap=float(values.max() - values.min()),
        worst_speaker=worst,
        best_speaker=best,
    )


def fairness_report(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    groups: Sequence[Any],
    *,
    speakers: Sequence[Any] | None = None,
    labels: Sequence[Any] | None = None,
    undefined: UndefinedPolicy = "warn",
) -> FairnessReport:
    """All fairness numbers for one set of predictions; undefined cases are kept in ``notes``."""
    y_true, y_pred, groups, labels = _inputs(y_true, y_pred, groups, labels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetricWarning)
        per_class = class_fairness(y_true, y_pred, groups, labels=labels, undefined=undefined)
        eo_mc = multiclass_equalized_odds_difference(
            y_true, y_pred, groups, labels=labels, undefined=undefined
        )
    notes = [str(w.message) for w in caught if issubclass(w.category, MetricWarning)]
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    spread = None
    if speakers is not None:
        spread = speaker_uar_spread(y_true, y_pred, speakers)
    group_values, sizes = np.unique(groups, return_counts=True)
    return FairnessReport(
        labels=[str(label) for label in labels],
        groups=[str(g) for g in group_values.tolist()],
        group_sizes={str(g): int(n) for g, n in zip(group_values.tolist(), sizes, strict=True)},
        per_class={str(k): v for k, v in per_class.items()},
        equalized_odds_max=_aggregate(per_class, _EO, "max"),
        equalized_odds_mean=_aggregate(per_class, _EO, "mean"),
        statistical_parity_max=_aggregate(per_class, _SP, "max"),
        statistical_parity_mean=_aggregate(per_class, _SP, "mean"),
        multiclass_equalized_odds=eo_mc,
        multiclass_statistical_parity=multiclass_statistical_parity_difference(
            y_true, y_pred, groups, labels=labels
        ),
        speakers=spread,
        notes=notes,
    )
