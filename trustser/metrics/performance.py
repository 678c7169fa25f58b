"""Performance: how well the emotion head recognises emotions, as pure functions of labels.

Naming follows scikit-learn: ``*_score`` is higher-is-better. Inputs are 1-D arrays of labels
(strings or integers) of equal length, one entry per utterance; ``labels`` fixes the class list
and its order (default: the sorted union of ``y_true`` and ``y_pred``).

Undefined classes (no true utterances, so no recall) follow the ``undefined`` policy of
:mod:`trustser.metrics._common`: left out of the macro average with a :class:`MetricWarning`
(``"warn"``) or an error (``"raise"``) — never counted as 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trustser.metrics._common import (
    MetricError,
    UndefinedPolicy,
    as_label_arrays,
    report_undefined,
    resolve_labels,
)

__all__ = [
    "confusion",
    "macro_f1_score",
    "per_class_recall",
    "performance_summary",
    "uar_score",
    "weighted_accuracy_score",
]

NORMALIZE = (None, "true", "pred", "all")


def confusion(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    *,
    labels: Sequence[Any] | None = None,
    normalize: str | None = None,
) -> np.ndarray:
    r"""Confusion matrix ``M[i, j]`` = number of utterances of true class ``labels[i]``
    predicted as ``labels[j]``; shape ``[C, C]``.

    ``normalize="true"`` divides each row by its total (rows of a class with no utterances stay
    all zero — there is nothing to divide), ``"pred"`` each column, ``"all"`` by :math:`N`.
    """
    if normalize not in NORMALIZE:
        raise MetricError(f"normalize={normalize!r} is not supported; choose one of {NORMALIZE}.")
    y_true, y_pred = as_label_arrays(y_true, y_pred, names=("y_true", "y_pred"))
    labels = resolve_labels(labels, y_true, y_pred)
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(matrix, ([index[v] for v in y_true.tolist()], [index[v] for v in y_pred.tolist()]), 1)
    if normalize is None:
        return matrix
    counts = matrix.astype(float)
    if normalize == "all":
        return counts / counts.sum()
    axis = 1 if normalize == "true" else 0
    totals = counts.sum(axis=axis, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def per_class_recall(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    *,
    labels: Sequence[Any] | None = None,
    undefined: UndefinedPolicy = "warn",
) -> dict[Any, float | None]:
    r"""Recall of each class, :math:`R_c = TP_c / (TP_c + FN_c)` (higher is better).

    ``labels=None`` means the classes present in ``y_true`` (recall exists only for those);
    predictions of other values are simply wrong. A listed class with no true utterances has no
    recall: its entry is ``None`` (policy ``undefined``).
    """
    y_true, y_pred = as_label_arrays(y_true, y_pred, names=("y_true", "y_pred"))
    labels = resolve_labels(labels, y_true)
    result: dict[Any, float | None] = {}
    for label in labels:
        rows = y_true == label
        if not rows.any():
            report_undefined(
                undefined,
                f"recall of class {label!r} is undefined: no utterance has that true label; "
                "it is left out of the macro average.",
            )
            result[label] = None
        else:
            result[label] = float(np.mean(y_pred[rows] == label))
    return result


def uar_score(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    *,
    labels: Sequence[Any] | None = None,
    undefined: UndefinedPolicy = "warn",
) -> float:
    r"""Unweighted average recall (macro recall), :math:`\mathrm{UAR} = \frac{1}{|C'|}
    \sum_{c \in C'} R_c`, over the classes :math:`C'` that have true utterances
    (``labels=None``: the classes of ``y_true``; see :func:`per_class_recall`).

    Chance level is :math:`1/|C'|` whatever the class balance — the reason SER reports it.
    """
    recalls = per_class_recall(y_true, y_pred, labels=labels, undefined=undefined)
    defined = [r for r in recalls.values() if r is not None]
    if not defined:
        raise MetricError("UAR is undefined: no class has a true utterance.")
    return float(np.mean(defined))


def weighted_accuracy_score(y_true: Sequence[Any], y_pred: Sequence[Any]) -> float:
    r"""Weighted accuracy (WA) as used in SER papers: plain accuracy,
    :math:`\frac{1}{N}\sum_i [\hat y_i = y_i]` — per-class recall weighted by class frequency.
    """
    y_true, y_pred = as_label_arrays(y_true, y_pred, names=("y_true", "y_pred"))
    return float(np.mean(y_true == y_pred))


def macro_f1_score(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    *,
    labels: Sequence[Any] | None = None,
    undefined: UndefinedPolicy = "warn",
) -> float:
    r"""Macro-F1, the mean over classes of :math:`F_1 = 2TP / (2TP + FP + FN)`.

    A class that is neither true nor predicted anywhere (:math:`2TP+FP+FN = 0`) is undefined and
    left out (policy ``undefined``); a class predicted never but present is a defined 0.
    """
    y_true, y_pred = as_label_arrays(y_true, y_pred, names=("y_true", "y_pred"))
    labels = resolve_labels(labels, y_true, y_pred)
    matrix = confusion(y_true, y_pred, labels=labels)
    scores = []
    for i, label in enumerate(labels):
        tp = matrix[i, i]
        fp = matrix[:, i].sum() - tp
        fn = matrix[i].sum() - tp
        denominator = 2 * tp + fp + fn
        if denominator == 0:
            report_undefined(
                undefined,
                f"F1 of class {label!r} is undefined: it is neither a true nor a predicted "
                "label; it is left out of the macro average.",
            )
            continue
        scores.append(2 * tp / denominator)
    if not scores:
        raise MetricError("macro-F1 is undefined: no class occurs in y_true or y_pred.")
    return float(np.mean(scores))


def performance_summary(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    *,
    labels: Sequence[Any] | None = None,
    undefined: UndefinedPolicy = "warn",
) -> dict[str, Any]:
    """UAR, weighted accuracy, macro-F1, per-class recall and the confusion matrix in one dict."""
    y_true, y_pred = as_label_arrays(y_true, y_pred, names=("y_true", "y_pred"))
    recalls = per_class_recall(y_true, y_pred, labels=labels, undefined=undefined)
    defined = [r for r in recalls.values() if r is not None]
    if not defined:
        raise MetricError("UAR is undefined: no class has a true utterance.")
    matrix_labels = resolve_labels(labels, y_true, y_pred)
    return {
        "labels": [str(label) for label in matrix_labels],
        "uar": float(np.mean(defined)),
        "weighted_accuracy": weighted_accuracy_score(y_true, y_pred),
        "macro_f1": macro_f1_score(y_true, y_pred, labels=matrix_labels, undefined=undefined),
        "per_class_recall": {str(k): v for k, v in recalls.items()},
        "confusion": confusion(y_true, y_pred, labels=matrix_labels).tolist(),
        "num_utterances": len(y_true),
    }
