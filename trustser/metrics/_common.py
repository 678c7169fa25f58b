"""Input normalisation and the undefined-value policy shared by every metric module.

Metrics here are pure functions of label arrays. When a quantity is undefined (a class with no
true samples, a group with no members), the caller chooses what happens through ``undefined``:
``"warn"`` (default) leaves the quantity out of any aggregate, marks it ``None`` in per-item
outputs and emits a :class:`MetricWarning` naming it; ``"raise"`` raises :class:`MetricError`.
Nothing is ever silently replaced by 0 or NaN.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from trustser._validation import TrustSERError

__all__ = [
    "UNDEFINED_POLICIES",
    "MetricError",
    "MetricWarning",
    "UndefinedPolicy",
    "as_label_arrays",
    "mean_std",
    "report_undefined",
    "resolve_labels",
]

UndefinedPolicy = Literal["warn", "raise"]
UNDEFINED_POLICIES: tuple[str, ...] = ("warn", "raise")


class MetricError(TrustSERError, ValueError):
    """Metric inputs that cannot give a defined number (empty, mismatched, one group only)."""


class MetricWarning(UserWarning):
    """A per-class or per-group quantity was undefined and left out of an aggregate."""


def as_label_arrays(*arrays: Any, names: Sequence[str] | None = None) -> tuple[np.ndarray, ...]:
    """1-D arrays of equal, non-zero length; labels are compared as given (str or int)."""
    names = list(names) if names is not None else [f"array {i}" for i in range(len(arrays))]
    out = []
    for name, array in zip(names, arrays, strict=True):
        values = np.asarray(array)
        if values.ndim != 1:
            raise MetricError(
                f"{name} must be 1-D (one label per utterance), got shape {values.shape}."
            )
        out.append(values)
    lengths = {len(a) for a in out}
    if len(lengths) > 1:
        detail = ", ".join(f"{n}={len(a)}" for n, a in zip(names, out, strict=True))
        raise MetricError(
            f"inputs must have one entry per utterance, but lengths differ: {detail}."
        )
    if out and len(out[0]) == 0:
        raise MetricError(f"no utterances: {', '.join(names)} are empty.")
    return tuple(out)


def resolve_labels(labels: Sequence[Any] | None, *arrays: np.ndarray) -> list[Any]:
    """The class list: ``labels`` as given, else the sorted union of values in ``arrays``."""
    if labels is not None:
        labels = list(labels)
        if not labels:
            raise MetricError("labels is empty; pass the class names or leave it out.")
        if len(set(labels)) != len(labels):
            raise MetricError(f"labels contains duplicates: {labels}.")
        known = set(labels)
        for array in arrays:
            unknown = sorted({str(v) for v in np.unique(array) if v not in known})
            if unknown:
                raise MetricError(
                    f"values {unknown} are not among labels {labels}; pass the full label list."
                )
        return labels
    values = np.unique(np.concatenate([np.asarray(a) for a in arrays]))
    return values.tolist()


def report_undefined(policy: str, message: str) -> None:
    """Apply the ``undefined`` policy to one undefined quantity."""
    if policy == "raise":
        raise MetricError(message)
    if policy != "warn":
        raise MetricError(f"undefined={policy!r} is not supported; choose one of 'warn', 'raise'.")
    warnings.warn(message, MetricWarning, stacklevel=3)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0): the one fold summary of the toolkit.

    Heads, probes, attacks and the profile all summarise per-fold figures with it, so a
    "mean ± sd over folds" means the same thing everywhere.
    """
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        raise MetricError("cannot average an empty list of values.")
    return float(array.mean()), float(array.std())
