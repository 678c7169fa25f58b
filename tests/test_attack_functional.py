"""Functional attacks, configured wrappers and padded batches on a toy differentiable model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trustser.attacks import functional as AF
from trustser.attacks.methods import FGSM, PGD, AttackError, WhiteNoise, check_snr, make_attack
from trustser.deployed.batches import iter_batches, pad_batch

FRAME = 80


class ToyModel(nn.Module):
    """Frame-wise nonlinear features, mean over the real frames, linear classifier.

    Samples past the last complete frame get no gradient (like a strided encoder), and padding
    never reaches the output.
    """

    def __init__(self, num_classes: int = 4, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.frames = nn.Conv1d(1, 24, kernel_size=FRAME, stride=FRAME)
        self.mix = nn.Linear(24, 24)
        self.out = nn.Linear(24, num_classes)
        self.dropout = nn.Dropout(0.5)
        self.calls = 0
        self.eval()

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        x = torch.tanh(self.frames(waveforms[:, None, :] * 20)).transpose(1, 2)  # [B, T, 24]
        x = torch.tanh(self.mix(self.dropout(x)))
        real = (lengths // FRAME).clamp_min(1)
        keep = torch.arange(x.shape[1])[None, :] < real[:, None]
        pooled = (x * keep[..., None]).sum(1) / real[:, None]
        return self.out(pooled) * 4


def make_clips(lengths, seed=0):
    generator = torch.Generator().manual_seed(seed)
    clips = []
    for n in lengths:
        t = torch.arange(n) / 16_000
        f0 = 100 + 200 * torch.rand(1, generator=generator)
        amp = 0.05 + 0.3 * torch.rand(1, generator=generator)
        noise = 0.02 * torch.randn(n, generator=generator)
        clips.append((amp * torch.sin(2 * math.pi * f0 * t) + noise).float())
    return clips


@pytest.fixture(scope="module")
def toy():
    for parameter in (model := ToyModel()).parameters():
        parameter.requires_grad_(False)
    return model


@pytest.fixture(scope="module")
def batch():
    return pad_batch(make_clips([1600, 1200, 800 + 37, 400]), [0, 1, 2, 3])


def predictions(model, waveforms, mask):
    with torch.no_grad():
        return model(waveforms, mask.sum(1)).argmax(1)


def test_snr_epsilon_and_measured_snr_follow_the_definition(batch):
    x, mask = batch.waveforms, batch.mask
    eps = AF.snr_epsilon(x, mask, 30.0)
    for b, n in enumerate(batch.lengths.tolist()):
        rms = x[b, :n].double().pow(2).mean().sqrt()
        assert eps[b].item() == pytest.approx(rms.item() * 10 ** (-30 / 20), rel=1e-6)
    delta = torch.ones_like(x) * eps[:, None] * mask
    snr = AF.measured_snr(x, x + delta, mask)
    assert torch.allclose(snr, torch.full_like(snr, 30.0), atol=1e-4)
    assert math.isinf(AF.measured_snr(x, x.clone(), mask)[0].item())


def test_fgsm_hits_the_target_snr_and_leaves_padding_alone(toy, batch):
    x, mask = batch.waveforms, batch.mask
    labels = predictions(toy, x, mask)
    for snr in (45.0, 25.0, 10.0):
        adv = AF.fgsm(
            toy,
            x,
            labels=labels,
            mask=mask,
            epsilon=AF.snr_epsilon(x, mask, snr),
        )
        measured = AF.measured_snr(x, adv, mask)
        assert (measured - snr).abs().max().item() < 0.01  # every real sample moved by ±ε
        assert torch.equal(adv[~mask], x[~mask])
        eps = AF.snr_epsilon(x, mask, snr)
        assert torch.allclose((adv - x).abs()[mask], eps[:, None].expand_as(x)[mask], rtol=1e-3)


def test_fgsm_zero_gradient_samples_get_fixed_tie_signs(toy, batch):
    # clip 2 has 37 samples past its last complete frame: their gradient is exactly zero.
    x, mask = batch.waveforms, batch.mask
    labels = predictions(toy, x, mask)
    gradient, _ = AF.loss_gradient(toy, x, labels=labels, mask=mask)
    tail = slice(800, 837)
    assert torch.count_nonzero(gradient[2, tail]) == 0
    eps = AF.snr_epsilon(x, mask, 20.0)
    first = AF.fgsm(toy, x, labels=labels, mask=mask, epsilon=eps)
    again = AF.fgsm(toy, x, labels=labels, mask=mask, epsilon=eps)
    assert torch.equal(first, again)  # deterministic: nothing is drawn
    signs = torch.sign(first[2, tail] - x[2, tail])
    assert set(signs.tolist()) == {-1.0, 1.0}
    assert torch.equal(signs, AF.tie_signs(837)[tail])  # the fixed sequence, position by position
    # the sequence does not depend on how far it is drawn (blocks), nor on the batch
    assert torch.equal(AF.tie_signs(200_000)[:837], AF.tie_signs(837))
    assert abs(AF.tie_signs(200_000).mean().item()) < 0.01  # white: no DC offset
    alone = pad_batch([x[2, :837]], [0])
    single = AF.fgsm(toy, alone.waveforms, labels=labels[2:3], mask=alone.mask, epsilon=eps[2:3])
    assert torch.equal(torch.sign(single[0, tail] - x[2, tail]), signs)


def test_fgsm_step_follows_the_gradient_sign_and_raises_the_loss(toy, batch):
    x, mask = batch.waveforms, batch.mask
    labels = predictions(toy, x, mask)
    gradient, _ = AF.loss_gradient(toy, x, labels=labels, mask=mask)
    eps = AF.snr_epsilon(x, mask, 40.0)
    adv = AF.fgsm(toy, x, labels=labels, mask=mask, epsilon=eps)
    moved = torch.sign(adv - x)
    nonzero = gradient != 0
    assert torch.equal(moved[nonzero], torch.sign(gradient)[nonzero])
    with torch.no_grad():
        before = F.cross_entropy(toy(x, batch.lengths), labels, reduction="none")
        after = F.cross_entropy(toy(adv, batch.lengths), labels, reduction="none")
    assert bool((after > before).all())


def test_gradient_is_only_wrt_the_waveform_and_model_stays_in_eval(toy, batch):
    x, mask = batch.waveforms, batch.mask
    labels = predictions(toy, x, mask)
    model = ToyModel()  # parameters still require grad here
    gradient, _ = AF.loss_gradient(model, x, labels=labels, mask=mask)
    assert all(p.grad is None for p in model.parameters())
    assert not model.training
    assert torch.count_nonzero(gradient[~mask]) == 0


def test_padding_content_and_batch_company_do_not_change_a_clip(toy):
    clips = make_clips([1600, 960, 480], seed=3)  # whole frames: no random tie-breaking
    full = pad_batch(clips, [0, 1, 2])
    labels = predictions(toy, full.waveforms, full.mask)
    eps = AF.snr_epsilon(full.waveforms, full.mask, 30.0)
    together = AF.fgsm(toy, full.waveforms, labels=labels, mask=full.mask, epsilon=eps)
    garbage = full.waveforms + (~full.mask) * torch.randn(full.waveforms.shape)
    noisy_pad = AF.fgsm(toy, garbage, labels=labels, mask=full.mask, epsilon=eps)
    assert torch.allclose(noisy_pad[full.mask], together[full.mask])
    for b, clip in enumerate(clips):
        alone = pad_batch(clips, [b])
        single = AF.fgsm(
            toy, alone.waveforms, labels=labels[b : b + 1], mask=alone.mask, epsilon=eps[b : b + 1]
        )
        assert torch.allclose(single[0], together[b, : clip.numel()], atol=1e-7)


def test_pgd_stays_in_the_linf_ball_and_one_full_step_is_fgsm(toy, batch):
    x, mask = batch.waveforms, batch.mask
    labels = predictions(toy, x, mask)
    eps = AF.snr_epsilon(x, mask, 30.0)
    adv = AF.pgd(
        toy,
        x,
        labels=labels,
        mask=mask,
        epsilon=eps,
        steps=7,
        random_start=True,
        generator=torch.Generator().manual_seed(0),
    )
    assert bool(((adv - x).abs() <= eps[:, None] * (1 + 1e-5)).all())
    assert torch.equal(adv[~mask], x[~mask])
    assert bool((AF.measured_snr(x, adv, mask) >= 30.0 - 1e-3).all())
    fgsm_adv = AF.fgsm(toy, x, labels=labels, mask=mask, epsilon=eps)
    one = AF.pgd(toy, x, labels=labels, mask=mask, epsilon=eps, steps=1)
    assert torch.equal(one, fgsm_adv)  # one step is FGSM exactly, zero-gradient samples included


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_is_at_least_as_strong_as_fgsm_on_every_clip(toy, random_start):
    clips = make_clips([800 + 80 * (i % 7) + 13 * (i % 3) for i in range(48)], seed=11)
    padded = pad_batch(clips, list(range(len(clips))))
    x, mask = padded.waveforms, padded.mask
    labels = predictions(toy, x, mask)  # every clip "correctly classified"
    strictly_better = fgsm_wins = 0
    for snr in (30.0, 24.0, 18.0):
        eps = AF.snr_epsilon(x, mask, snr)
        fgsm_adv = AF.fgsm(toy, x, labels=labels, mask=mask, epsilon=eps)
        pgd_adv = AF.pgd(
            toy,
            x,
            labels=labels,
            mask=mask,
            epsilon=eps,
            steps=6,
            random_start=random_start,
            generator=torch.Generator().manual_seed(7),
        )
        fgsm_flipped = predictions(toy, fgsm_adv, mask) != labels
        pgd_flipped = predictions(toy, pgd_adv, mask) != labels
        for b in range(len(clips)):  # clip by clip
            if fgsm_flipped[b]:
                assert pgd_flipped[b], (snr, b)
                assert torch.equal(pgd_adv[b], fgsm_adv[b])  # FGSM's own point, kept
        fgsm_wins += int(fgsm_flipped.sum())
        strictly_better += int((pgd_flipped & ~fgsm_flipped).sum())
    assert fgsm_wins > 0 and strictly_better > 0


def test_pgd_keeps_the_highest_loss_iterate_of_clips_it_cannot_flip(toy, batch):
    x, mask = batch.waveforms, batch.mask
    labels = predictions(toy, x, mask)
    eps = AF.snr_epsilon(x, mask, 60.0)  # too quiet to flip anything
    fgsm_adv = AF.fgsm(toy, x, labels=labels, mask=mask, epsilon=eps)
    pgd_adv = AF.pgd(toy, x, labels=labels, mask=mask, epsilon=eps, steps=5)
    with torch.no_grad():
        loss = lambda w: F.cross_entropy(toy(w, batch.lengths), labels, reduction="none")  # noqa: E731
        assert bool((predictions(toy, pgd_adv, mask) == labels).all())
        assert bool((loss(pgd_adv) >= loss(fgsm_adv) - 1e-6).all())


def test_pgd_stops_once_every_clip_is_flipped(toy, batch):
    x, mask = batch.waveforms, batch.mask
    labels = predictions(toy, x, mask)
    eps = AF.snr_epsilon(x, mask, 6.0)  # loud enough to flip everything quickly
    toy.calls = 0
    adv = AF.pgd(toy, x, labels=labels, mask=mask, epsilon=eps, steps=50)
    assert toy.calls < 50  # stopped once every clip was flipped
    assert bool((predictions(toy, adv, mask) != labels).all())


def test_fgsm_and_pgd_are_deterministic_per_seed(toy, batch):
    x, mask = batch.waveforms, batch.mask
    labels = predictions(toy, x, mask)
    eps = AF.snr_epsilon(x, mask, 40.0)  # quiet: PGD's path (not only FGSM's point) matters
    assert torch.equal(
        AF.fgsm(toy, x, labels=labels, mask=mask, epsilon=eps),
        AF.fgsm(toy, x, labels=labels, mask=mask, epsilon=eps),
    )
    assert torch.equal(
        AF.pgd(toy, x, labels=labels, mask=mask, epsilon=eps, steps=4),
        AF.pgd(toy, x, labels=labels, mask=mask, epsilon=eps, steps=4),
    )

    def seeded(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return AF.pgd(
            toy,
            x,
            labels=labels,
            mask=mask,
            epsilon=eps,
            steps=4,
            random_start=True,
            generator=generator,
        )

    assert torch.equal(seeded(4), seeded(4)) and not torch.equal(seeded(4), seeded(5))
    for attack in (FGSM(40.0), PGD(40.0, steps=4, random_start=True)):  # the configured ones
        runs = [
            attack(toy, x, labels=labels, mask=mask, generator=torch.Generator().manual_seed(3))
            for _ in range(2)
        ]
        assert torch.equal(*runs)


def test_white_noise_has_the_exact_snr_and_is_seeded(batch):
    x, mask = batch.waveforms, batch.mask
    eps = AF.snr_epsilon(x, mask, 35.0)
    noisy = AF.white_noise(x, mask=mask, epsilon=eps, generator=torch.Generator().manual_seed(0))
    again = AF.white_noise(x, mask=mask, epsilon=eps, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)
    assert (AF.measured_snr(x, noisy, mask) - 35.0).abs().max().item() < 1e-3
    assert torch.equal(noisy[~mask], x[~mask])
    delta = (noisy - x)[0, :1600]
    assert abs(delta.mean().item()) < 3 * eps[0].item() / math.sqrt(1600) + 1e-9


def test_check_batch_rejects_bad_masks():
    x = torch.zeros(2, 5)
    with pytest.raises(ValueError, match="prefix"):
        AF.check_batch(x, torch.tensor([[1, 0, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool))
    with pytest.raises(ValueError, match="no real samples"):
        AF.check_batch(x, torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"torch\.bool"):
        AF.check_batch(x, torch.ones(2, 5))
    with pytest.raises(ValueError, match=r"\(batch, time\)"):
        AF.check_batch(torch.zeros(5), torch.ones(5, dtype=torch.bool))


def test_wrappers_delegate_and_validate(toy, batch):
    x, mask = batch.waveforms, batch.mask
    labels = predictions(toy, x, mask)
    eps = AF.snr_epsilon(x, mask, 40.0)
    wrapped = FGSM(40.0)(
        toy, x, labels=labels, mask=mask, generator=torch.Generator().manual_seed(2)
    )
    direct = AF.fgsm(toy, x, labels=labels, mask=mask, epsilon=eps)
    assert torch.equal(wrapped, direct)
    pgd = make_attack("pgd", 40.0, steps=4)
    assert isinstance(pgd, PGD) and pgd.relative_step == pytest.approx(2.5 / 4)
    assert torch.equal(
        pgd(toy, x, labels=labels, mask=mask),
        AF.pgd(toy, x, labels=labels, mask=mask, epsilon=eps, steps=4, step_size=eps * 2.5 / 4),
    )
    assert isinstance(make_attack("noise", 40.0), WhiteNoise)
    assert PGD(45, steps=5, step_size=0.1).settings()["step_size"] == 0.1
    for bad in (0, -5, float("nan"), float("inf")):
        with pytest.raises(AttackError, match="SNR must be"):
            check_snr(bad)
    with pytest.raises(AttackError, match="unknown attack method 'cw'"):
        make_attack("cw", 45)
    with pytest.raises(AttackError, match="steps"):
        PGD(45, steps=0)
    with pytest.raises(AttackError, match="step size"):
        PGD(45, step_size=-1.0)


def test_iter_batches_pad_longest_first():
    lengths = [5, 9, 9, 3, 9, 5]
    clips = [torch.ones(n) for n in lengths]
    batches = list(iter_batches(clips, batch_size=4))
    assert sorted(i for b in batches for i in b.indices) == list(range(6))
    first = batches[0]
    assert first.waveforms.shape == (4, 9)
    assert torch.equal(first.mask.sum(1), first.lengths)
    assert torch.equal(first.waveforms.sum(1), first.lengths.float())


def test_cross_entropy_direction_is_a_positive_multiple_that_never_underflows():
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.1], [0.3, 0.2, 3.0, -2.0]], requires_grad=True)
    labels = torch.tensor([0, 1])
    F.cross_entropy(logits, labels, reduction="sum").backward()
    direction = AF.cross_entropy_direction(logits, labels)
    ratio = logits.grad / direction
    assert bool((ratio > 0).all())
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-5)
    confident = torch.tensor([[200.0, 0.0, 0.0, 1.0]], requires_grad=True)
    F.cross_entropy(confident, torch.tensor([0])).backward()
    assert torch.count_nonzero(confident.grad) == 0  # float32 softmax saturates
    direction = AF.cross_entropy_direction(confident, torch.tensor([0]))
    assert direction[0, 0] == -1.0 and bool((direction[0, 1:] > 0).all())
    assert direction[0, 3] > direction[0, 1]  # the runner-up class is pushed hardest
