"""The one length batcher and the padding mask (trustser.batching), for every caller's use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trustser.batching import POOL_BATCHES, length_batches, length_mask


def _positions(batches: list[list[int]]) -> list[int]:
    return sorted(i for b in batches for i in b)


# --------------------------------------------------------------------- the store's minibatches


def test_bucketing_keeps_padding_small():
    lengths = np.random.default_rng(1).integers(50, 300, size=2000)
    for shuffle in (False, True):
        batches = length_batches(lengths, batch_size=64, shuffle=shuffle, seed=0)
        computed = sum(len(b) * lengths[b].max() for b in batches)
        assert 1 - lengths.sum() / computed < 0.05
        assert sorted(np.concatenate(batches)) == list(range(2000))
    assert all(len(b) == 64 for b in length_batches(lengths, batch_size=64, drop_last=True))


def test_sorted_shortest_first_ties_in_input_order():
    lengths = [5, 3, 8, 3, 1, 9, 2, 7, 7, 4]
    assert length_batches(lengths, batch_size=3) == [[4, 6, 1], [3, 9, 0], [7, 8, 2], [5]]


def test_shuffled_batches_are_the_seeded_pools():
    # the very batches the store drew before the batchers were merged (seeded, pooled)
    lengths = [5, 3, 8, 3, 1, 9, 2, 7, 7, 4]
    shuffled = length_batches(lengths, batch_size=3, shuffle=True, seed=0)
    assert shuffled == [[4, 6, 3], [7, 8, 2], [1, 9, 0], [5]]
    full = length_batches(lengths, batch_size=3, shuffle=True, seed=1, drop_last=True)
    assert full == [[3, 9, 0], [8, 7, 2], [4, 6, 1]]
    many = np.random.default_rng(5).integers(1, 50, size=200)  # 4 pools of 64 clips
    pooled = length_batches(many, batch_size=2, shuffle=True, seed=7)
    assert (len(pooled), pooled[0], pooled[-1]) == (100, [4, 123], [187, 136])
    assert _positions(pooled) == list(range(200))
    assert length_batches(many, batch_size=2, shuffle=True, seed=8) != pooled


def test_pools_bound_the_length_spread_of_shuffled_batches():
    lengths = np.arange(1000)
    for pool_batches in (1, POOL_BATCHES):
        batches = length_batches(
            lengths, batch_size=10, shuffle=True, seed=3, pool_batches=pool_batches
        )
        assert _positions(batches) == list(range(1000))
        assert all(np.all(np.diff(lengths[b]) >= 0) for b in batches)  # sorted inside a batch
    with pytest.raises(ValueError, match="batch_size"):
        length_batches(lengths, shuffle=True)


# --------------------------------------------------------------------------- the attacks' batches


def test_longest_first_and_identical_lengths():
    lengths = [5, 9, 9, 3, 9, 5]
    batches = length_batches(lengths, batch_size=2, descending=True)
    assert batches == [[1, 2], [4, 0], [5, 3]]
    identical = length_batches(lengths, batch_size=2, descending=True, identical_only=True)
    assert identical == [[1, 2], [4], [0, 5], [3]]
    wide = length_batches(lengths, batch_size=10, descending=True, identical_only=True)
    assert wide == [[1, 2, 4], [0, 5], [3]]
    with pytest.raises(ValueError, match="batch_size"):
        length_batches(lengths, batch_size=0)
    for bad in (True, 2.5, -1):
        with pytest.raises(ValueError, match="batch_size"):
            length_batches(lengths, batch_size=bad)


# ------------------------------------------------------------------------- extraction's batches


def test_length_batches_bound_padding_and_respect_equal_lengths():
    rng = np.random.default_rng(0)
    samples = sorted(rng.integers(4_000, 96_000, size=300).tolist())
    frames = [s // 320 for s in samples]
    batches = length_batches(samples, budget=16_000 * 30, max_padding=0.05, padding_lengths=frames)
    assert sorted(i for b in batches for i in b) == list(range(300))
    for batch in batches:
        t_max = max(frames[i] for i in batch)
        assert t_max * len(batch) - sum(frames[i] for i in batch) <= 0.05 * t_max * len(batch)
        assert len(batch) * max(samples[i] for i in batch) <= 16_000 * 30 or len(batch) == 1
    equal = length_batches(
        [5, 5, 5, 7, 7, 9],
        budget=100,
        max_padding=0.05,
        padding_lengths=[1, 1, 1, 1, 1, 1],
        identical_only=True,
    )
    assert equal == [[0, 1, 2], [3, 4], [5]]


def test_a_clip_over_the_budget_is_a_batch_of_its_own():
    batches = length_batches([10, 500, 20, 30], budget=60)
    assert batches == [[0, 2], [3], [1]]  # 3 × 30 > 60 closes the first batch; 2 × 500 > 60
    assert length_batches([4, 4, 4, 4], budget=12, batch_size=2) == [[0, 1], [2, 3]]


def test_padding_is_measured_on_padding_lengths():
    samples = [100, 101, 102, 200]
    frames = [10, 10, 10, 20]  # what the encoder computes: the 200-sample clip doubles the frames
    assert length_batches(samples, max_padding=0.0, padding_lengths=frames) == [[0, 1, 2], [3]]
    assert length_batches(samples, max_padding=0.0) == [[0], [1], [2], [3]]
    with pytest.raises(ValueError, match="padding_lengths"):
        length_batches(samples, padding_lengths=[1, 2])


def test_empty_and_unbounded():
    assert length_batches([], batch_size=4) == []
    assert length_batches([], batch_size=4, shuffle=True) == []
    assert length_batches([3, 1, 2]) == [[1, 2, 0]]  # no bound: one batch, sorted


# ------------------------------------------------------------------------------------ the mask


def test_length_mask_marks_a_prefix_per_row():
    lengths = torch.tensor([3, 0, 5, 1])
    mask = length_mask(lengths, 5)
    assert mask.dtype == torch.bool and mask.shape == (4, 5)
    assert mask.sum(1).tolist() == [3, 0, 5, 1]
    assert mask[0].tolist() == [True, True, True, False, False]
    assert length_mask(torch.tensor([7]), 4).all()  # lengths past the width cover the row
    assert length_mask(lengths.to(torch.int32), 5).equal(mask)
    assert length_mask(lengths, 5).device == lengths.device
