r"""Robustness: how far a real-world corruption of the input moves a model's decisions.

For a test clip :math:`x_i` and a corruption case :math:`c` (a corruption at one severity),
:math:`\hat y_i` is the prediction on the clean clip and :math:`\hat y_i^c` on its corrupted
copy. Per fold, then the mean over folds (as every figure of the heads):

.. math::

    \mathrm{unchanged}_c = \frac{1}{N}\sum_i [\hat y_i^c = \hat y_i], \qquad
    \Delta\mathrm{UAR}_c = \mathrm{UAR}(y, \hat y) - \mathrm{UAR}(y, \hat y^c)

(higher is better for ``unchanged``, lower for the drop). The *suite mean* of a figure is the
mean over corruptions of its mean over the corruption's severities (:func:`suite_mean`), so a
corruption with one severity (the telephone line) weighs as much as one with three. Formulas
and their intervals: docs/metrics.md, "Robustness".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trustser.metrics._common import MetricError, as_label_arrays
from trustser.metrics.bootstrap import fold_mean

__all__ = ["suite_mean", "unchanged_share"]


def unchanged_share(clean_pred: Sequence[Any], corrupted_pred: Sequence[Any]) -> float:
    """Share of clips whose prediction on the corrupted copy equals the clean one (``[N]``
    label arrays; higher is better). Undefined without clips: :class:`MetricError`."""
    clean, corrupted = as_label_arrays(
        clean_pred, corrupted_pred, names=("clean_pred", "corrupted_pred")
    )
    return float(np.mean(clean == corrupted))


def suite_mean(
    values: Mapping[str, float | np.ndarray | None], corruption_of: Mapping[str, str]
) -> float | np.ndarray:
    """The mean over corruptions of each corruption's mean over its severities.

    ``values`` maps a case name (``babble-2``) to its figure, a number or an array of bootstrap
    replicates ``[B]``; ``corruption_of`` maps the case to its corruption (``babble``). An
    undefined value (None or NaN) is left out of its corruption's mean, and a corruption with
    no defined severity out of the suite's; NaN when nothing is defined.
    """
    if not values:
        raise MetricError("a suite mean needs at least one case.")
    missing = sorted(set(values) - set(corruption_of))
    if missing:
        raise MetricError(f"no corruption is given for case(s) {missing}.")
    grouped: dict[str, list[np.ndarray]] = {}
    for case, value in values.items():
        array = np.asarray(np.nan if value is None else value, dtype=np.float64)
        grouped.setdefault(corruption_of[case], []).append(array)
    per_corruption = [
        fold_mean(np.stack(np.broadcast_arrays(*v), axis=-1)) for v in grouped.values()
    ]
    result = fold_mean(np.stack(np.broadcast_arrays(*per_corruption), axis=-1))
    return float(result) if np.ndim(result) == 0 else result
