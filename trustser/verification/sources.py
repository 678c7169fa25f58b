"""Where the verification attackers get their embeddings: time-means per layer, ``[N, L, D]``.

An attacker sees what the deployed model exposes. For a frozen backbone that is the store's
time-mean of every hidden state (:func:`store_source`); a model variant (fine-tuned blocks, a
privacy mitigation) exposes its own encoder's output and may have one deployed model per fold.
So the attackers take an *embedding source* in any of three forms, resolved by
:func:`fold_sources`:

* a function ``ids -> [N, L, D]`` (one deployed model for every fold);
* an array ``[N, L, D]`` whose rows follow ``ids`` (the same);
* a mapping ``{fold name: function or array}``: the deployed model of each fold. A trial set
  is scored on the model of its ``attacker_fold``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from trustser._validation import TrustSERError

__all__ = [
    "EmbeddingSource",
    "EmbeddingSourceError",
    "array_source",
    "fold_sources",
    "read_embeddings",
    "store_source",
]

EmbeddingSource = Callable[[Sequence[str]], np.ndarray]


class EmbeddingSourceError(TrustSERError, ValueError):
    """An embedding source that is missing clips or gives arrays of the wrong shape."""


def array_source(ids: Sequence[str], means: Any) -> EmbeddingSource:
    """A source over a fixed array ``[N, L, D]`` whose rows follow ``ids``."""
    means = np.asarray(means)
    ids = list(ids)
    if means.ndim != 3 or means.shape[0] != len(ids):
        raise EmbeddingSourceError(
            f"an embedding array must be [N, L, D] with one row per id ({len(ids)} ids), "
            f"got shape {means.shape}."
        )
    row = {utterance_id: i for i, utterance_id in enumerate(ids)}
    if len(row) != len(ids):
        raise EmbeddingSourceError("the ids of an embedding array must be distinct.")

    def source(wanted: Sequence[str]) -> np.ndarray:
        missing = [i for i in wanted if i not in row]
        if missing:
            raise EmbeddingSourceError(
                f"{len(missing)} clip(s) have no embedding in the array (e.g. {missing[:3]}); "
                "pass embeddings of every clip of the manifest."
            )
        return means[[row[i] for i in wanted]]

    return source


def store_source(group: Any) -> EmbeddingSource:
    """The time-means of a store group (``group.means(ids)``, docs/architecture.md)."""
    return group.means


def fold_sources(source: Any, ids: Sequence[str] | None = None) -> Callable[[str], EmbeddingSource]:
    """``fold name -> source`` for any accepted form of ``source`` (module docstring); an array
    needs ``ids``, the clip of each of its rows."""

    def one(value: Any, where: str) -> EmbeddingSource:
        if callable(value):
            return value
        if ids is None:
            raise EmbeddingSourceError(
                f"an embedding array{where} needs `ids`, the clip id of each of its rows."
            )
        return array_source(ids, value)

    if isinstance(source, Mapping):
        per_fold = {str(k): one(v, f" of fold {k!r}") for k, v in source.items()}

        def of_fold(fold: str) -> EmbeddingSource:
            if fold not in per_fold:
                raise EmbeddingSourceError(
                    f"the embedding source has no deployed model for fold {fold!r} "
                    f"(it has: {', '.join(per_fold) or 'none'})."
                )
            return per_fold[fold]

        return of_fold
    shared = one(source, "")
    return lambda _fold: shared


def read_embeddings(source: EmbeddingSource, ids: Sequence[str], *, fold: str) -> np.ndarray:
    """``source(ids)`` as float64 ``[N, L, D]``, its shape checked."""
    values = np.asarray(source(list(ids)), dtype=np.float64)
    if values.ndim != 3 or values.shape[0] != len(ids):
        raise EmbeddingSourceError(
            f"the embedding source of fold {fold!r} gave shape {values.shape} for {len(ids)} "
            "clips; it must give time-means [N, L, D], one row per requested id."
        )
    if not np.isfinite(values).all():
        raise EmbeddingSourceError(
            f"the embedding source of fold {fold!r} gave non-finite values; check the store "
            "with `trustser store verify`."
        )
    return values
