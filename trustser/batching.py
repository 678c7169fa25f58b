"""Length-sorted batches of positions, and the padding mask: the one batcher of the toolkit.

Clips of similar length share a batch so little compute goes to padding. Every stage that pads
cuts its batches here — extraction (under a budget of samples and a padding fraction), the
store's minibatches (shuffled in pools, per epoch) and the attacks (longest first, identical
lengths only for backbones that cannot mask padding) — so "sorted by length, ties in input
order" means one thing everywhere. Pure index logic: lengths in, lists of positions out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["POOL_BATCHES", "length_batches", "length_mask"]

POOL_BATCHES = 32  # with shuffling, positions are length-sorted within pools of this many batches


def length_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """``[B, width]`` bool, True on the first ``lengths[b]`` positions of each row.

    On ``lengths``' device: the mask of real samples (or frames) of a zero-padded batch.
    """
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


def _check_batch_size(batch_size: int | None) -> None:
    if batch_size is None:
        return
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")


def _sorted(lengths: np.ndarray, positions: np.ndarray, descending: bool) -> np.ndarray:
    """``positions`` by length (longest first if ``descending``); ties keep their order."""
    keys = -lengths[positions] if descending else lengths[positions]
    return positions[np.argsort(keys, kind="stable")]


def _cut(
    order: np.ndarray,
    lengths: np.ndarray,
    *,
    batch_size: int | None,
    identical_only: bool,
    budget: int | None,
    padding_lengths: np.ndarray,
    max_padding: float | None,
) -> list[list[int]]:
    """Greedy batches along ``order``: a position joins the current batch while every bound holds."""
    if not identical_only and budget is None and max_padding is None:
        size = batch_size or max(len(order), 1)
        return [order[i : i + size].tolist() for i in range(0, len(order), size)]
    batches: list[list[int]] = []
    current: list[int] = []
    longest = widest = real_sum = 0
    for position in order.tolist():
        length, frames = int(lengths[position]), int(padding_lengths[position])
        if current:
            count = len(current) + 1
            top, wide = max(longest, length), max(widest, frames)
            computed = wide * count
            fits = (
                (batch_size is None or count <= batch_size)
                and (not identical_only or length == int(lengths[current[0]]))
                and (budget is None or count * top <= budget)
                and (
                    max_padding is None or computed - (real_sum + frames) <= max_padding * computed
                )
            )
            if fits:
                current.append(position)
                longest, widest, real_sum = top, wide, real_sum + frames
                continue
            batches.append(current)
        current = [position]
        longest, widest, real_sum = length, frames, frames
    if current:
        batches.append(current)
    return batches


def length_batches(
    lengths: Sequence[int] | np.ndarray,
    *,
    batch_size: int | None = None,
    descending: bool = False,
    identical_only: bool = False,
    budget: int | None = None,
    max_padding: float | None = None,
    padding_lengths: Sequence[int] | np.ndarray | None = None,
    shuffle: bool = False,
    seed: int = 0,
    pool_batches: int = POOL_BATCHES,
    drop_last: bool = False,
) -> list[list[int]]:
    """Batches of positions ``0..N-1`` over clips of ``lengths``, sorted by length (stable).

    Positions are sorted by length — shortest first, or longest first with ``descending`` — ties
    keeping their input order, then cut greedily: a clip joins the current batch while it holds
    at most ``batch_size`` clips, only clips of one length with ``identical_only`` (for backbones
    whose features change under padding), at most ``budget`` padded entries (clips × longest
    ``lengths``, e.g. samples per forward pass) and at most ``max_padding`` padding as a fraction
    of the batch's computed entries, measured on ``padding_lengths`` (default ``lengths``; frame
    counts for extraction). A clip that alone exceeds the budget is a batch of one.

    With ``shuffle`` (needs ``batch_size``): positions are permuted by ``seed``, sorted and cut
    within pools of ``pool_batches × batch_size`` clips, and the batch order permuted — every
    epoch's seed gives different batches, each still of similar lengths. ``drop_last`` keeps
    only full batches of ``batch_size``. Deterministic given the arguments.
    """
    _check_batch_size(batch_size)
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    frames = lengths if padding_lengths is None else np.asarray(padding_lengths, dtype=np.int64)
    if frames.shape != lengths.shape:
        raise ValueError(
            f"padding_lengths has {frames.size} entries but lengths has {lengths.size}"
        )
    bounds = dict(
        batch_size=batch_size,
        identical_only=identical_only,
        budget=budget,
        padding_lengths=frames,
        max_padding=max_padding,
    )
    count = lengths.size
    if count == 0:
        return []
    if not shuffle:
        batches = _cut(_sorted(lengths, np.arange(count), descending), lengths, **bounds)
    else:
        if batch_size is None:
            raise ValueError("shuffled batches need a batch_size (pools are counted in batches)")
        rng = np.random.default_rng(seed)
        permuted = rng.permutation(count)
        pool = batch_size * pool_batches
        batches = []
        for start in range(0, count, pool):
            chunk = _sorted(lengths, permuted[start : start + pool], descending)
            batches.extend(_cut(chunk, lengths, **bounds))
        batches = [batches[i] for i in rng.permutation(len(batches))]
    if drop_last and batch_size is not None:
        batches = [b for b in batches if len(b) == batch_size]
    return batches
