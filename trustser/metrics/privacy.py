r"""Privacy: how much the embeddings give away about who is speaking.

The paper's privacy attack trains the emotion head's architecture to predict gender from the same
frozen embeddings; TrustSER adds closed-set speaker identification. An *inference* accuracy is
reported beside the two chance levels an attacker could reach without the embeddings:

* majority: :math:`\max_k P(y = k)` in the evaluated set (always guess the commonest class),
* uniform: :math:`1/K` for :math:`K` classes (guess at random).

``*_score`` here scores the attacker (higher = more leakage = *less* private). The profile turns
leakage into a "higher is more private" axis; see ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trustser.metrics._common import (
    MetricError,
    UndefinedPolicy,
    as_label_arrays,
    resolve_labels,
)
from trustser.metrics.performance import uar_score, weighted_accuracy_score

__all__ = ["ChanceLevels", "InferenceReport", "chance_levels", "inference_report", "leakage_score"]


@dataclass(frozen=True)
class ChanceLevels:
    """Accuracy an attacker gets without the embeddings."""

    majority: float  # accuracy of always predicting the commonest true class
    majority_label: str
    uniform: float  # 1 / K
    num_classes: int


@dataclass(frozen=True)
class InferenceReport:
    """An attribute-inference attack's success beside its chance levels."""

    accuracy: float
    uar: float
    chance: ChanceLevels
    leakage: float  # (accuracy - majority) / (1 - majority), see leakage_score
    num_utterances: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def chance_levels(y_true: Sequence[Any], *, labels: Sequence[Any] | None = None) -> ChanceLevels:
    """Majority-class accuracy and :math:`1/K` (``K`` = ``len(labels)``, default classes in ``y_true``)."""
    (y_true,) = as_label_arrays(y_true, names=("y_true",))
    labels = resolve_labels(labels, y_true)
    values, counts = np.unique(y_true, return_counts=True)
    top = int(np.argmax(counts))
    return ChanceLevels(
        majority=float(counts[top] / counts.sum()),
        majority_label=str(values[top]),
        uniform=1.0 / len(labels),
        num_classes=len(labels),
    )


def leakage_score(accuracy: float, majority: float) -> float:
    r"""Attribute leakage above chance, :math:`(a - a_0)/(1 - a_0)` for accuracy :math:`a` and
    majority chance :math:`a_0`: 0 at chance, 1 at perfect inference, negative below chance.
    Undefined when :math:`a_0 = 1` (a single class: there is nothing to infer)."""
    if majority >= 1.0:
        raise MetricError(
            "leakage is undefined: every utterance has the same attribute value, so chance is "
            "already 100 %; evaluate on a set with more than one class."
        )
    return float((accuracy - majority) / (1.0 - majority))


def inference_report(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    *,
    labels: Sequence[Any] | None = None,
    undefined: UndefinedPolicy = "warn",
) -> InferenceReport:
    """Accuracy and UAR of an attribute-inference attack (gender, speaker) with chance levels."""
    y_true, y_pred = as_label_arrays(y_true, y_pred, names=("y_true", "y_pred"))
    chance = chance_levels(y_true, labels=labels)
    accuracy = weighted_accuracy_score(y_true, y_pred)
    return InferenceReport(
        accuracy=accuracy,
        uar=uar_score(y_true, y_pred, labels=labels, undefined=undefined),
        chance=chance,
        leakage=leakage_score(accuracy, chance.majority),
        num_utterances=len(y_true),
    )
