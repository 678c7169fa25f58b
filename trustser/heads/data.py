"""How heads see features: any source with the store's ``batches(...)`` API.

A head never touches a backbone: it reads ``[B, L, T, D]`` hidden states from a *feature
source* — a store group (streamed from disk), the in-memory copy ``group.load(ids)``, or
:class:`ArrayFeatures` built from NumPy arrays. :class:`FeatureSet` pairs a source with the ids
(and labels) a head trains or predicts on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from trustser._validation import TrustSERError

__all__ = [
    "Batch",
    "FeatureSource",
    "FeatureSet",
    "ArrayFeatures",
    "DataError",
    "available_memory",
    "feature_bytes",
]


class DataError(TrustSERError, ValueError):
    """Features or labels that do not fit together (missing ids, wrong shapes)."""


@dataclass(frozen=True)
class Batch:
    """Padded hidden states of a few utterances: the store's batch layout."""

    ids: list[str]
    hidden: np.ndarray  # [B, L, T, D] float32, zero past each length
    mask: np.ndarray  # [B, T] bool, True on real frames
    lengths: np.ndarray  # [B] int64


@runtime_checkable
class FeatureSource(Protocol):
    """Anything that yields :class:`Batch`-like objects for given ids (store groups do)."""

    def batches(
        self, ids: Sequence[str], batch_size: int = 64, shuffle: bool = True, seed: int = 0
    ) -> Iterator[Any]: ...


@dataclass(frozen=True)
class FeatureSet:
    """Ids of one source, with a label per id when used for training or scoring."""

    source: FeatureSource
    ids: tuple[str, ...]
    labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(self.ids))
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(self.labels))
            if len(self.labels) != len(self.ids):
                raise DataError(
                    f"FeatureSet has {len(self.ids)} ids but {len(self.labels)} labels; "
                    "give exactly one label per id."
                )
        if len(set(self.ids)) != len(self.ids):
            raise DataError("FeatureSet ids must be unique; the same utterance appears twice.")

    def __len__(self) -> int:
        return len(self.ids)


class ArrayFeatures:
    """In-memory features from ``{id: array [L, T, D]}``: the batches API without a store.

    Batches are length-bucketed when shuffled (ids are shuffled, sorted by length inside windows
    of 32 batches, cut, and the batches shuffled again) so padding stays small; unshuffled
    batches follow the order of ``ids``.
    """

    def __init__(self, frames: Mapping[str, np.ndarray]) -> None:
        self._frames: dict[str, np.ndarray] = {}
        shape: tuple[int, int] | None = None
        for utterance_id, array in frames.items():
            array = np.asarray(array, dtype=np.float32)
            if array.ndim != 3 or array.shape[1] < 1:
                raise DataError(
                    f"features of {utterance_id!r} have shape {array.shape}; expected [L, T, D] "
                    "with at least one frame."
                )
            if shape is None:
                shape = (array.shape[0], array.shape[2])
            elif (array.shape[0], array.shape[2]) != shape:
                raise DataError(
                    f"features of {utterance_id!r} have L={array.shape[0]}, D={array.shape[2]}; "
                    f"the others have L={shape[0]}, D={shape[1]}."
                )
            self._frames[utterance_id] = array
        if shape is None:
            raise DataError("ArrayFeatures needs at least one utterance.")
        self.num_layers, self.dim = shape

    @property
    def ids(self) -> list[str]:
        return list(self._frames)

    def frames(self, utterance_id: str) -> np.ndarray:
        try:
            return self._frames[utterance_id]
        except KeyError:
            raise DataError(f"no features for utterance {utterance_id!r}.") from None

    def means(self, ids: Sequence[str]) -> np.ndarray:
        return np.stack([self.frames(i).mean(axis=1) for i in ids])

    def batches(
        self, ids: Sequence[str], batch_size: int = 64, shuffle: bool = True, seed: int = 0
    ) -> Iterator[Batch]:
        ids = list(ids)
        for utterance_id in ids:
            self.frames(utterance_id)  # fail before yielding anything
        for chunk in _batch_order(ids, [self._frames[i].shape[1] for i in ids], batch_size, shuffle, seed):
            yield self._collate(chunk)

    def _collate(self, ids: list[str]) -> Batch:
        arrays = [self._frames[i] for i in ids]
        lengths = np.array([a.shape[1] for a in arrays], dtype=np.int64)
        hidden = np.zeros((len(ids), self.num_layers, int(lengths.max()), self.dim), np.float32)
        mask = np.zeros((len(ids), int(lengths.max())), dtype=bool)
        for row, array in enumerate(arrays):
            hidden[row, :, : array.shape[1]] = array
            mask[row, : array.shape[1]] = True
        return Batch(ids=ids, hidden=hidden, mask=mask, lengths=lengths)


def _batch_order(
    ids: list[str], lengths: list[int], batch_size: int, shuffle: bool, seed: int
) -> list[list[str]]:
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}.")
    if not shuffle:
        return [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    window = batch_size * 32
    batches: list[list[str]] = []
    for start in range(0, len(order), window):
        part = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend([ids[i] for i in part[j : j + batch_size]] for j in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def feature_bytes(num_frames: int, num_layers: int, dim: int) -> int:
    """Bytes of ``num_frames`` frames of float32 features across all layers."""
    return int(num_frames) * int(num_layers) * int(dim) * 4


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None
