"""How heads see features: any source with the store's ``batches(...)`` API.

A head never touches a backbone: it reads ``[B, L, T, D]`` hidden states from a *feature
source* — a store group (streamed from disk every epoch), or :class:`PackedFeatures`, the
in-RAM form training prefers: every frame of every clip back to back in the store's own dtype
(float16, or int8 codes with their scales), widened to float32 one batch at a time, so batches
need no padding and RAM holds what the disk holds. :class:`FeatureSet` pairs a source with
the ids (and labels) a head trains or predicts on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
import torch

from trustser._validation import TrustSERError
from trustser.batching import length_mask
from trustser.store.batching import Batch

__all__ = [
    "DataError",
    "FeatureSet",
    "FeatureSource",
    "FrameBatch",
    "PackedBatch",
    "PackedFeatures",
    "ReplayBatches",
    "StoreGroupError",
    "available_memory",
    "feature_bytes",
    "feature_statistics",
]


class DataError(TrustSERError, ValueError):
    """Features or labels that do not fit together (missing ids, wrong shapes)."""


class StoreGroupError(TrustSERError, ValueError):
    """The store or the group asked for cannot be used (absent, ambiguous)."""


@dataclass(frozen=True)
class PackedBatch:
    """Frames of a few clips back to back, layer-major: ``frames [L, F, D]``, ``segments [F]``
    (the clip index of each frame)."""

    ids: list[str]
    frames: torch.Tensor
    segments: torch.Tensor
    lengths: torch.Tensor  # [B]


@dataclass(frozen=True)
class FrameBatch:
    """A few clips as indices into their source's stored rows (nothing widened or copied):
    ``index [F]`` (the row of each frame, clip by clip), ``segments [F]`` (the clip index of
    each frame); the bfloat16 training path reads the rows through ``index``."""

    ids: list[str]
    index: torch.Tensor
    segments: torch.Tensor
    lengths: torch.Tensor  # [B]


@runtime_checkable
class FeatureSource(Protocol):
    """Anything that yields :class:`Batch`-like objects for given ids (store groups do)."""

    def batches(
        self, ids: Sequence[str], batch_size: int = 64, *, shuffle: bool = True, seed: int = 0
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


class Standardizable:
    """What a feature source in RAM shares about standardising: :meth:`standardized` gives a
    copy that computes ``(x - mean) / max(std, eps)`` per layer and dimension — what a
    normalising head computes — as each batch is widened, so no second copy is held."""

    _affine: tuple[torch.Tensor, torch.Tensor] | None = None

    def standardized(
        self,
        mean: torch.Tensor,
        std: torch.Tensor,
        ids: Sequence[str] | None = None,
        *,
        eps: float = 1e-5,
    ) -> Self:
        """The same clips standardised; ``ids`` (default: all) are the clips the copy serves."""
        if self._affine is not None:
            raise DataError("these features are standardised already.")
        inverse = 1.0 / std.to(torch.float32).clamp_min(eps)
        return self._with_affine(ids, (mean.to(torch.float32), inverse))

    def _with_affine(
        self, ids: Sequence[str] | None, affine: tuple[torch.Tensor, torch.Tensor]
    ) -> Self:
        raise NotImplementedError


class PackedFeatures(Standardizable):
    """Clips held in RAM in the store's own dtype, frames back to back, plus offsets.

    Values stay as stored — float16, float32, or int8 codes with a float16 scale per frame and
    layer (``scales``) — and are widened to float32 one batch at a time (:meth:`packed_batches`,
    :meth:`batches`, :meth:`gather`), so a store fits in RAM at its own size. A standardised
    copy (:meth:`standardized`) shares the values and standardises each batch as it widens it.

    Build it from a store group (``PackedFeatures.from_source(group, ids)``: one read of the
    clips), from arrays (``PackedFeatures.from_arrays({id: [L, T, D]})``), or from layer-major
    ``frames [L, ΣT, D]`` (the constructor).
    """

    def __init__(
        self,
        ids: Sequence[str],
        frames: torch.Tensor,
        offsets: Sequence[int],
        *,
        scales: torch.Tensor | None = None,
    ) -> None:
        if frames.dim() != 3:
            raise DataError(f"packed features need frames [L, ΣT, D]; got {tuple(frames.shape)}.")
        self._setup(
            ids,
            frames.transpose(0, 1),
            offsets,
            None if scales is None else scales.transpose(0, 1),
        )

    @classmethod
    def from_rows(
        cls,
        ids: Sequence[str],
        rows: torch.Tensor,
        offsets: Sequence[int],
        *,
        scales: torch.Tensor | None = None,
    ) -> PackedFeatures:
        """From frame-major ``rows [ΣT, L, D]`` (the store's layout; int8 with ``scales [ΣT, L]``)."""
        packed = cls.__new__(cls)
        packed._setup(ids, rows, offsets, scales)
        return packed

    def _setup(
        self,
        ids: Sequence[str],
        rows: torch.Tensor,
        offsets: Sequence[int],
        scales: torch.Tensor | None,
        affine: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        self.ids = list(ids)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        if (
            rows.dim() != 3
            or self.offsets.shape != (len(self.ids) + 1,)
            or self.offsets[-1] != rows.shape[0]
        ):
            raise DataError(
                f"packed features need rows [ΣT, L, D] and N+1 offsets ending at ΣT; got rows "
                f"{tuple(rows.shape)}, {self.offsets.size} offsets for {len(self.ids)} ids."
            )
        if np.any(np.diff(self.offsets) < 1):
            raise DataError("every clip needs at least one frame (offsets must increase).")
        if (rows.dtype == torch.int8) != (scales is not None):
            raise DataError("int8 codes need their scales, and only int8 codes have scales.")
        if scales is not None and tuple(scales.shape) != tuple(rows.shape[:2]):
            raise DataError(
                f"scales must be [ΣT, L] = {tuple(rows.shape[:2])}, got {tuple(scales.shape)}."
            )
        if not (rows.dtype.is_floating_point or rows.dtype == torch.int8):
            raise DataError(f"packed features hold float or int8 values, not {rows.dtype}.")
        self.rows = rows  # [ΣT, L, D] as stored (possibly a view)
        self.scales = scales  # [ΣT, L] float16 for int8 codes
        self._affine = affine  # (mean [L, D], 1 / std [L, D]) applied while widening
        self.num_layers, self.dim = int(rows.shape[1]), int(rows.shape[2])
        self._index = {utterance_id: i for i, utterance_id in enumerate(self.ids)}
        if len(self._index) != len(self.ids):
            raise DataError("packed features got the same id twice.")

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> PackedFeatures:
        """From ``{id: array [L, T, D]}`` (e.g. features computed elsewhere)."""
        ids, parts, shape = [], [], None
        for utterance_id, array in arrays.items():
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
            ids.append(utterance_id)
            parts.append(array)
        if not parts:
            raise DataError("PackedFeatures needs at least one clip.")
        offsets = np.concatenate([[0], np.cumsum([p.shape[1] for p in parts])])
        return cls(ids, torch.from_numpy(np.concatenate(parts, axis=1)), offsets)

    @classmethod
    def from_source(
        cls, source: FeatureSource, ids: Sequence[str], *, batch_size: int = 64
    ) -> PackedFeatures:
        """Read ``ids`` once from ``source`` and keep them in its stored dtype.

        A store group is read straight into RAM (``group.load``: float16 stays float16, int8
        stays codes plus scales); any other source is read batch by batch as float32.
        """
        ids = list(ids)
        if not ids:
            raise DataError("PackedFeatures needs at least one clip.")
        if hasattr(source, "load"):
            memory = source.load(ids)
            scales = getattr(memory, "scales", None)
            return cls.from_rows(
                memory.ids,
                torch.from_numpy(memory.rows),
                memory.offsets,
                scales=None if scales is None else torch.from_numpy(scales),
            )
        clips: dict[str, torch.Tensor] = {}
        for batch in source.batches(ids, batch_size=batch_size, shuffle=False, seed=0):
            hidden = torch.as_tensor(batch.hidden, dtype=torch.float32)
            for row, (utterance_id, length) in enumerate(
                zip(batch.ids, _lengths(batch), strict=True)
            ):
                clips[utterance_id] = hidden[row, :, :length].transpose(0, 1).clone()  # [T, L, D]
        missing = [i for i in ids if i not in clips]
        if missing:
            raise DataError(
                f"the feature source returned no features for {len(missing)} id(s), e.g. {missing[:3]}."
            )
        lengths = [clips[i].shape[0] for i in ids]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        first = clips[ids[0]]
        rows = torch.empty((int(offsets[-1]), first.shape[1], first.shape[2]), dtype=torch.float32)
        for i, utterance_id in enumerate(ids):
            rows[offsets[i] : offsets[i + 1]] = clips.pop(utterance_id)
        return cls.from_rows(ids, rows, offsets)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the values are held in (``torch.int8``: codes with ``scales``)."""
        return self.rows.dtype

    @property
    def frames(self) -> torch.Tensor:
        """The values as held, layer-major ``[L, ΣT, D]`` (a view; int8 codes are not scaled
        and a standardised copy is not standardised here: use :meth:`gather` for values)."""
        return self.rows.transpose(0, 1)

    @property
    def nbytes(self) -> int:
        """Bytes the values take in RAM (codes and scales for int8)."""
        scales = 0 if self.scales is None else self.scales.numel() * self.scales.element_size()
        return self.rows.numel() * self.rows.element_size() + scales

    def _rows(self, ids: Sequence[str]) -> list[int]:
        try:
            return [self._index[i] for i in ids]
        except KeyError as error:
            raise DataError(f"no features for utterance {error.args[0]!r} in memory.") from None

    def num_frames(self, ids: Sequence[str]) -> np.ndarray:
        """Frame counts of ``ids`` (int64), like a store group's ``num_frames``."""
        rows = np.asarray(self._rows(list(ids)), dtype=np.int64)
        return (self.offsets[rows + 1] - self.offsets[rows]).astype(np.int64)

    def _widen_into(self, out: torch.Tensor, start: int, end: int) -> None:
        """Frames ``[start, end)`` as float32 values into ``out [L, end - start, D]``."""
        out.copy_(self.rows[start:end].transpose(0, 1))
        if self.scales is not None:
            out.mul_(self.scales[start:end].transpose(0, 1).to(torch.float32)[:, :, None])
        if self._affine is not None:
            mean, inverse = self._affine
            out.sub_(mean[:, None, :]).mul_(inverse[:, None, :])

    def gather(self, frames: torch.Tensor, layers: int | None = None) -> torch.Tensor:
        """float32 values ``[layers, len(frames), D]`` of the frames at the indices ``frames``
        (of the first ``layers`` layers, default all)."""
        layers = self.num_layers if layers is None else int(layers)
        out = self.rows[frames, :layers].transpose(0, 1).to(torch.float32)
        if self.scales is not None:
            out.mul_(self.scales[frames, :layers].transpose(0, 1).to(torch.float32)[:, :, None])
        if self._affine is not None:
            mean, inverse = self._affine
            out.sub_(mean[:layers, None, :]).mul_(inverse[:layers, None, :])
        return out

    def clip(self, utterance_id: str) -> torch.Tensor:
        """One clip's values ``[L, T, D]`` float32 (a copy, widened from the stored dtype)."""
        (row,) = self._rows([utterance_id])
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        out = torch.empty(self.num_layers, end - start, self.dim, dtype=torch.float32)
        self._widen_into(out, start, end)
        return out

    def means(self, ids: Sequence[str]) -> np.ndarray:
        """Time-means ``[N, L, D]`` float32."""
        return np.stack([self.clip(i).mean(1).numpy() for i in ids])

    def statistics(self, ids: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation ``[L, D]`` over every frame of ``ids``."""
        total = torch.zeros(self.num_layers, self.dim, dtype=torch.float64)
        squares = torch.zeros_like(total)
        count = 0
        for utterance_id in ids:
            clip = self.clip(utterance_id).double()
            total += clip.sum(1)
            squares += (clip * clip).sum(1)
            count += clip.shape[1]
        return _mean_std(total, squares, count)

    def _with_affine(
        self, ids: Sequence[str] | None, affine: tuple[torch.Tensor, torch.Tensor]
    ) -> PackedFeatures:
        """A copy that serves ``ids`` (default: all), applying ``affine`` as it widens."""
        self._rows(self.ids if ids is None else list(ids))
        copy = PackedFeatures.__new__(PackedFeatures)
        copy._setup(self.ids, self.rows, self.offsets, self.scales, affine)
        return copy

    def _order(self, ids: list[str], batch_size: int, shuffle: bool, seed: int) -> list[list[str]]:
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}.")
        self._rows(ids)
        if shuffle:
            ids = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
        return [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]

    def packed_batches(
        self,
        ids: Sequence[str],
        batch_size: int = 64,
        *,
        shuffle: bool = True,
        seed: int = 0,
        reuse: bool = False,
    ) -> Iterator[PackedBatch]:
        """Batches of ``batch_size`` clips without padding, as float32 ``frames [L, F, D]``;
        shuffled by ``seed``, else in order.

        ``reuse=True`` copies every batch into one buffer that the next batch overwrites — no
        fresh allocation (and page faults) per batch, for loops that finish with a batch before
        asking for the next one.
        """
        buffer: torch.Tensor | None = None
        for chunk in self._order(list(ids), batch_size, shuffle, seed):
            rows = self._rows(chunk)
            starts = self.offsets[rows].tolist()
            ends = self.offsets[np.asarray(rows) + 1].tolist()
            lengths = torch.tensor([e - s for s, e in zip(starts, ends, strict=True)])
            total = int(lengths.sum())
            if reuse:
                if buffer is None or buffer.shape[1] < total:
                    buffer = torch.empty(self.num_layers, total, self.dim, dtype=torch.float32)
                frames = buffer[:, :total]
            else:
                frames = torch.empty(self.num_layers, total, self.dim, dtype=torch.float32)
            position = 0
            for start, end in zip(starts, ends, strict=True):
                self._widen_into(frames[:, position : position + end - start], start, end)
                position += end - start
            segments = torch.repeat_interleave(torch.arange(len(rows)), lengths)
            yield PackedBatch(ids=chunk, frames=frames, segments=segments, lengths=lengths)

    def frame_batches(
        self, ids: Sequence[str], batch_size: int = 64, *, shuffle: bool = True, seed: int = 0
    ) -> Iterator[FrameBatch]:
        """The batches of :meth:`packed_batches` (the same clips for the same seed) as row
        indices into :attr:`rows` — the stored values, never standardised here: whoever reads
        them applies the statistics."""
        for chunk in self._order(list(ids), batch_size, shuffle, seed):
            rows = np.asarray(self._rows(chunk))
            starts, ends = self.offsets[rows], self.offsets[rows + 1]
            lengths = torch.from_numpy(ends - starts)
            index = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)])
            segments = torch.repeat_interleave(torch.arange(len(rows)), lengths)
            yield FrameBatch(
                ids=chunk, index=torch.from_numpy(index), segments=segments, lengths=lengths
            )

    def batches(
        self, ids: Sequence[str], batch_size: int = 64, *, shuffle: bool = True, seed: int = 0
    ) -> Iterator[Batch]:
        """Padded ``[B, L, T, D]`` batches (the store group's API)."""
        for packed in self.packed_batches(ids, batch_size, shuffle=shuffle, seed=seed):
            lengths = packed.lengths
            t_max = int(lengths.max())
            hidden = torch.zeros(len(packed.ids), self.num_layers, t_max, self.dim)
            start = 0
            for row, length in enumerate(lengths.tolist()):
                hidden[row, :, :length] = packed.frames[:, start : start + length]
                start += length
            yield Batch(
                ids=packed.ids, hidden=hidden, mask=length_mask(lengths, t_max), lengths=lengths
            )


class ReplayBatches:
    """Batches made again on every iteration (the same ones each time, as ``make`` is
    deterministic): dev batches evaluated every epoch without holding them widened in RAM."""

    def __init__(self, make: Callable[[], Iterable[Any]]) -> None:
        self._make = make

    def __iter__(self) -> Iterator[Any]:
        return iter(self._make())


def _lengths(batch: Any) -> list[int]:
    lengths = getattr(batch, "lengths", None)
    if lengths is None:
        lengths = torch.as_tensor(batch.mask).sum(1)
    return [int(n) for n in torch.as_tensor(lengths).tolist()]


def _mean_std(
    total: torch.Tensor, squares: torch.Tensor, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if count == 0:
        raise DataError("cannot compute feature statistics from zero frames.")
    mean = total / count
    var = (squares / count - mean * mean).clamp_min(0.0)
    return mean.float(), var.sqrt().float()


def feature_statistics(
    source: FeatureSource, ids: Sequence[str], *, batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer, per-dimension mean and std ``[L, D]`` over the real frames of ``ids``."""
    if hasattr(source, "statistics"):
        return source.statistics(ids)
    total = squares = None
    count = 0
    for batch in source.batches(list(ids), batch_size=batch_size, shuffle=False, seed=0):
        hidden = torch.as_tensor(batch.hidden).double()  # [B, L, T, D]
        mask = torch.as_tensor(batch.mask).to(hidden.dtype)[:, None, :, None]
        masked = hidden * mask
        part_sum = masked.sum((0, 2))
        part_squares = (masked * hidden).sum((0, 2))
        total = part_sum if total is None else total + part_sum
        squares = part_squares if squares is None else squares + part_squares
        count += int(torch.as_tensor(batch.mask).sum())
    if total is None:
        raise DataError("the feature source yielded no batches for the requested ids.")
    return _mean_std(total, squares, count)


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
