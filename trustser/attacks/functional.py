"""Stateless waveform attacks on ``(batch, time)`` tensors with padding masks.

Every function here takes a padded batch ``waveforms [B, S]`` (float, full scale = 1.0) and a
boolean ``mask [B, S]`` that is True on the real samples of each clip (a prefix: clip ``b`` owns
samples ``0 .. lengths[b]-1``). Padding samples never receive a perturbation.

Units. ``epsilon`` is an amplitude in the waveform's own units (full scale = 1.0), one value per
clip (``[B]``) or one for the batch. The attacks bound the perturbation in the **L∞ norm**:
``|δ[b, t]| <= epsilon[b]`` on every real sample. Signal-to-noise ratios are in dB:

.. math::

    \\mathrm{SNR}_b = 10 \\log_{10} \\frac{\\sum_t x_{b,t}^2}{\\sum_t \\delta_{b,t}^2}
    \\quad\\text{(sums over real samples only)}

Since every real sample of an FGSM perturbation is ``±epsilon``, its RMS is ``epsilon`` and
:func:`snr_epsilon` (``epsilon = RMS(x) · 10^(−SNR/20)``) gives exactly the requested SNR. PGD
stays inside the same L∞ ball, so its SNR is never below the target (usually slightly above).
FGSM is deterministic (no random draw at all) and PGD's first iterate is FGSM's point, so PGD is
never weaker than FGSM on any clip.
Nothing is clipped to ``[-1, 1]``: clipping would change the SNR (see ``docs/attacks.md``).

``model(waveforms, lengths) -> logits [B, C]`` is any differentiable callable that ignores
padding. The loss is the cross-entropy against the true labels; each clip's gradient is taken
on its own loss (as for a sum over clips), so it does not depend on the rest of its batch, and is
rescaled by a positive per-clip factor so that confident predictions do not underflow to zero
(only signs of the gradient are used).

A randomized model (a defence that draws fresh noise at every call) is attacked with the
gradient averaged over draws (:func:`eot`) and judged by one deterministic ``verdict`` (its
prediction with each clip's draws fixed by a seed) at every PGD iterate and at the end.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from trustser.batching import length_mask

__all__ = [
    "Gradient",
    "Model",
    "check_batch",
    "cross_entropy_direction",
    "eot",
    "eot_gradient",
    "fgsm",
    "loss_gradient",
    "measured_snr",
    "pgd",
    "snr_epsilon",
    "tie_signs",
    "white_noise",
]

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# ``gradient(model, x, labels=, mask=) -> (direction [B, S], logits [B, C])``: see pgd.
Gradient = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def check_batch(waveforms: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Validate a padded batch and return its ``lengths [B]`` (int64, on the mask's device).

    The mask must be boolean, the waveforms' shape, and a prefix of each row (real samples
    first, then padding), with at least one real sample per clip.
    """
    if waveforms.dim() != 2:
        raise ValueError(f"waveforms must be (batch, time), got shape {tuple(waveforms.shape)}")
    if not waveforms.is_floating_point():
        raise ValueError(f"waveforms must be floating point, got {waveforms.dtype}")
    if mask.shape != waveforms.shape:
        raise ValueError(
            f"mask shape {tuple(mask.shape)} does not match waveforms {tuple(waveforms.shape)}"
        )
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be torch.bool (True = real sample), got {mask.dtype}")
    lengths = mask.sum(dim=1)
    if bool((lengths == 0).any()):
        empty = (lengths == 0).nonzero().flatten().tolist()
        raise ValueError(f"clips {empty} of the batch have no real samples")
    if not bool(torch.equal(mask, length_mask(lengths, mask.shape[1]))):
        raise ValueError("mask must mark a prefix of each row (real samples first, then padding)")
    return lengths.to(torch.long)


def _per_clip(value: torch.Tensor | float, batch: int, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a ``[B, 1]`` column in ``like``'s dtype and device."""
    column = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if column.dim() == 0:
        column = column.expand(batch)
    if column.shape != (batch,):
        raise ValueError(f"expected one value per clip ({batch}), got shape {tuple(column.shape)}")
    return column.reshape(batch, 1)


def snr_epsilon(waveforms: torch.Tensor, mask: torch.Tensor, snr_db: float) -> torch.Tensor:
    """Per-clip L∞ radius ``epsilon [B]`` = RMS(x over real samples) · 10^(−snr_db/20).

    A perturbation of ``±epsilon`` on every real sample then has exactly ``snr_db`` dB SNR.
    Computed in float64 and returned in the waveforms' dtype.
    """
    lengths = check_batch(waveforms, mask)
    energy = (waveforms.double() * mask).pow(2).sum(dim=1)
    rms = (energy / lengths.double()).sqrt()
    return (rms * 10.0 ** (-float(snr_db) / 20.0)).to(waveforms.dtype)


def measured_snr(
    clean: torch.Tensor, adversarial: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """SNR in dB of ``adversarial − clean`` against ``clean`` over real samples, ``[B]`` float64.

    ``+inf`` for a clip left unchanged; ``-inf`` for an all-zero clip that was perturbed.
    """
    check_batch(clean, mask)
    if adversarial.shape != clean.shape:
        raise ValueError(
            f"adversarial shape {tuple(adversarial.shape)} does not match clean {tuple(clean.shape)}"
        )
    signal = (clean.double() * mask).pow(2).sum(dim=1)
    noise = ((adversarial.double() - clean.double()) * mask).pow(2).sum(dim=1)
    return 10.0 * (torch.log10(signal) - torch.log10(noise))


def cross_entropy_direction(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``∂CE/∂logits`` per clip, divided by the positive factor ``1 − p_y``: never underflows.

    ``∂CE(z, y)/∂z_c = p_c − [c = y]``. Dividing row ``b`` by ``Σ_{c≠y} p_c = 1 − p_y`` gives
    ``softmax(z_c, c ≠ y)`` off the true class and ``−1`` on it, computed in log space, so a
    confidently correct prediction (where ``p_y`` rounds to 1 and the plain gradient to 0)
    still yields a direction. A positive per-clip factor changes no sign of ``∇ₓ``.
    """
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"expected logits [B, C] with C >= 2, got shape {tuple(logits.shape)}")
    z = logits.detach().double()
    true = F.one_hot(labels.to(z.device), z.shape[1]).bool()
    direction = torch.softmax(z.masked_fill(true, float("-inf")), dim=1)
    return direction.masked_fill(true, -1.0).to(logits.dtype)


def loss_gradient(
    model: Model, waveforms: torch.Tensor, *, labels: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(g [B, S], logits [B, C])`` at ``x = waveforms``: the loss gradient's direction per clip.

    ``g[b]`` is ``∇ₓ CE(model(x)_b, y_b)`` times a positive per-clip factor (see
    :func:`cross_entropy_direction`), zero on padding: the same sign everywhere as the plain
    gradient, without underflow for confident predictions. Only the waveform receives a
    gradient (the model's parameters are untouched); the returned logits are detached.
    """
    lengths = check_batch(waveforms, mask)
    x = waveforms.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x, lengths.to(x.device))
        if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(f"model must return logits [B, C], got shape {tuple(logits.shape)}")
        direction = cross_entropy_direction(logits, labels)
        (gradient,) = torch.autograd.grad(logits, x, grad_outputs=direction)
    return gradient * mask, logits.detach()


_TIE_BLOCK = 1 << 16
_TIE_SEED = 0x7475  # fixed: the tie signs are part of the attack's definition, not a random draw


@functools.lru_cache(maxsize=32)
def _tie_block(index: int) -> torch.Tensor:
    rng = np.random.default_rng([_TIE_SEED, index])
    return torch.from_numpy(rng.integers(0, 2, _TIE_BLOCK).astype(np.float32) * 2 - 1)


def tie_signs(num_samples: int) -> torch.Tensor:
    """A fixed pseudo-random ±1 sequence ``[num_samples]`` (float32), the same for every clip.

    Sample ``t`` always gets the same sign whatever the clip's length or batch (the sequence is
    built in fixed blocks), so an attack that uses it is deterministic and batch-independent.
    """
    blocks = -(-int(num_samples) // _TIE_BLOCK)
    return torch.cat([_tie_block(i) for i in range(max(blocks, 1))])[: int(num_samples)]


def _sign_without_ties(gradient: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sign(gradient) on real samples, with exact zeros replaced by :func:`tie_signs`.

    A sample whose gradient is exactly zero (e.g. past the last complete analysis window, or
    in digital silence) has no first-order effect on the loss; giving it a ±1 sign keeps the
    perturbation's RMS equal to epsilon, hence its SNR equal to the target. The signs are a
    fixed white ±1 sequence (no DC, no tone), so FGSM needs no random generator.
    """
    direction = torch.sign(gradient)
    ties = (direction == 0) & mask
    if bool(ties.any()):
        fixed = tie_signs(direction.shape[1]).to(device=direction.device, dtype=direction.dtype)
        direction = torch.where(ties, fixed.expand_as(direction), direction)
    return direction * mask


def fgsm(
    model: Model,
    waveforms: torch.Tensor,
    *,
    labels: torch.Tensor,
    mask: torch.Tensor,
    epsilon: torch.Tensor | float,
) -> torch.Tensor:
    """Fast gradient sign method: ``x + epsilon · sign(∇ₓ CE(model(x), y))`` (L∞ radius epsilon).

    ``epsilon`` is in waveform amplitude units (full scale 1.0), per clip ``[B]`` or scalar.
    Every real sample moves by exactly ``±epsilon`` (zero-gradient samples take the fixed
    :func:`tie_signs`, so the result is deterministic); padding is returned unchanged.
    """
    gradient, _ = loss_gradient(model, waveforms, labels=labels, mask=mask)
    eps = _per_clip(epsilon, waveforms.shape[0], waveforms)
    return (waveforms + eps * _sign_without_ties(gradient, mask)).detach()


class _BestIterate:
    """Per clip, the strongest iterate seen: the first one the verdict misclassifies, else the
    one of highest cross-entropy under the verdict. Iterates are offered in order, FGSM's first."""

    def __init__(self, waveforms: torch.Tensor, labels: torch.Tensor) -> None:
        batch = waveforms.shape[0]
        self.labels = labels
        self.delta = torch.zeros_like(waveforms)
        self.loss = torch.full((batch,), -math.inf, dtype=torch.float64, device=waveforms.device)
        self.flipped = torch.zeros(batch, dtype=torch.bool, device=waveforms.device)

    @property
    def searching(self) -> torch.Tensor:
        return ~self.flipped

    def offer(self, delta: torch.Tensor, logits: torch.Tensor) -> None:
        logits = logits.detach()
        wrong = logits.argmax(dim=1) != self.labels
        loss = F.cross_entropy(logits.double(), self.labels, reduction="none")
        take = self.searching & (wrong | (loss > self.loss))
        self.delta = torch.where(take[:, None], delta, self.delta)
        self.loss = torch.where(take, loss, self.loss)
        self.flipped |= self.searching & wrong


def pgd(
    model: Model,
    waveforms: torch.Tensor,
    *,
    labels: torch.Tensor,
    mask: torch.Tensor,
    epsilon: torch.Tensor | float,
    steps: int = 10,
    step_size: torch.Tensor | float | None = None,
    random_start: bool = False,
    generator: torch.Generator | None = None,
    gradient: Gradient = loss_gradient,
    verdict: Model | None = None,
) -> torch.Tensor:
    """Projected gradient descent on the L∞ ball of radius ``epsilon`` (Madry et al., 2018),
    started from FGSM's point and keeping each clip's strongest iterate.

    Iterate 1 is the FGSM point ``δ₁ = ε · sign(g(x))`` (:func:`fgsm`, exactly, with the default
    ``gradient``); then ``δ ← clip(δ + α · sign(g(x + δ)), −ε, ε)`` on the real samples, for
    ``steps`` gradient evaluations in all. With ``random_start`` the projected steps start from
    ``δ₀ ~ U(−ε, ε)`` (drawn from the CPU ``generator``) and FGSM's point is judged beside them.
    ``epsilon`` and ``step_size`` (α) are amplitudes in waveform units, per clip ``[B]`` or
    scalar; α defaults to ``2.5 · epsilon / steps``.

    ``gradient(model, x, labels=, mask=) -> (g [B, S], logits [B, C])`` gives each step's
    direction: :func:`loss_gradient` (the default), or :func:`eot` ``(E)`` against a randomized
    defence (the gradient averaged over ``E`` draws of its noise: EOT-PGD, and EOT-FGSM with
    ``steps=1``).

    Each clip gets back its first iterate the **verdict** misclassifies — FGSM's point whenever
    FGSM succeeds — or, if none does, the iterate of highest loss under it. So PGD is never
    weaker than FGSM on any clip, more steps never undo a success, and a clip stops moving once
    it is flipped. For a deterministic model (``verdict`` None) the verdict is the model itself,
    read from the logits of each gradient pass (no extra forward pass). A randomized model
    needs ``verdict``: a deterministic prediction (for a smoothed classifier, its N draws fixed
    per clip by a seed) that judges every iterate and that the caller must use for the final
    prediction too — judging by one fresh noisy call would stop a clip on a lucky draw that the
    final prediction need not repeat. Without ``random_start`` the result is deterministic
    given the verdict. Padding is returned unchanged.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    lengths = check_batch(waveforms, mask)
    batch = waveforms.shape[0]
    eps = _per_clip(epsilon, batch, waveforms)
    alpha = 2.5 * eps / steps if step_size is None else _per_clip(step_size, batch, waveforms)
    labels = labels.to(waveforms.device)
    best = _BestIterate(waveforms, labels)
    real = lengths.to(waveforms.device)
    judge_with = model if verdict is None else verdict

    def judge(delta: torch.Tensor) -> None:
        """Offer ``delta`` to ``best``, judged by one separate call of the verdict."""
        with torch.no_grad():
            best.offer(delta, judge_with(waveforms + delta, real))

    first, _ = gradient(model, waveforms, labels=labels, mask=mask)
    fgsm_delta = eps * _sign_without_ties(first, mask)
    if steps == 1 and not random_start:
        return (waveforms + fgsm_delta).detach()  # the only iterate: nothing to choose among
    judge(fgsm_delta)  # judged exactly as an FGSM result is judged
    if random_start:
        uniform = torch.rand(waveforms.shape, generator=generator, device="cpu")
        delta = (uniform.to(waveforms.device, waveforms.dtype) * 2 - 1) * eps * mask
        remaining, pending = steps, True  # pending: an iterate not judged yet
    else:
        delta, remaining, pending = fgsm_delta, steps - 1, False
    if pending and verdict is not None:
        judge(delta)
        pending = False
    for _ in range(remaining):
        if not bool(best.searching.any()):
            break
        direction, logits = gradient(model, waveforms + delta, labels=labels, mask=mask)
        if pending:  # a deterministic model: the gradient pass's own logits judge the iterate
            best.offer(delta, logits)
        updated = torch.maximum(torch.minimum(delta + alpha * torch.sign(direction), eps), -eps)
        delta = torch.where(best.searching[:, None], updated * mask, delta)
        if verdict is None:
            pending = True
        else:
            judge(delta)
    if pending and bool(best.searching.any()):  # the last iterate
        judge(delta)
    return (waveforms + best.delta).detach()


def _log_rest(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``log(1 − p_y)`` per clip ``[B]`` (float64), in log space: finite when ``p_y`` rounds to 1."""
    z = logits.detach().double()
    true = F.one_hot(labels.to(z.device), z.shape[1]).bool()
    return torch.logsumexp(z.masked_fill(true, float("-inf")), dim=1) - torch.logsumexp(z, dim=1)


def eot_gradient(
    model: Model,
    waveforms: torch.Tensor,
    *,
    labels: torch.Tensor,
    mask: torch.Tensor,
    samples: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Expectation over transformation: ``(ḡ [B, S], logits [B, C])`` over ``samples`` calls of
    a randomized ``model`` (each call draws its own noise).

    ``ḡ`` is the mean of the **raw** loss gradients ``∇ₓ CE(model_e(x), y)`` over the draws
    ``e = 1..E`` — the gradient of the expected loss — rescaled once per clip by the positive
    factor ``1 / mean_e (1 − p_{y,e})``. Each draw's :func:`loss_gradient` ``g̃_e`` is its raw
    gradient over ``1 − p_{y,e}``, so

        ``ḡ = Σ_e (1 − p_{y,e}) · g̃_e / Σ_e (1 − p_{y,e})``

    with the weights computed in log space (nothing underflows when ``p_y`` rounds to 1). The
    draws where the model is least confident, whose raw gradients are largest, weigh the most,
    as in the expected loss; a plain mean of the ``g̃_e`` would weigh the most confident draws as
    much as the others. The logits are ``log`` of the mean softmax over the draws. For a
    deterministic model ``ḡ`` equals :func:`loss_gradient`, so the adaptive attack is plain PGD.
    """
    if samples < 1:
        raise ValueError(f"EOT needs samples >= 1, got {samples}")
    direction, logits = loss_gradient(model, waveforms, labels=labels, mask=mask)
    top = _log_rest(logits, labels)  # the largest log weight log(1 − p_y) so far
    total, weights = direction.double(), torch.ones_like(top)  # sums relative to exp(top)
    log_p_sum = torch.log_softmax(logits.double(), dim=1)
    for _ in range(int(samples) - 1):
        direction, logits = loss_gradient(model, waveforms, labels=labels, mask=mask)
        weight = _log_rest(logits, labels)
        new_top = torch.maximum(top, weight)
        old, new = torch.exp(top - new_top), torch.exp(weight - new_top)
        total = total * old[:, None] + direction.double() * new[:, None]
        weights = weights * old + new
        top = new_top
        log_p_sum = torch.logaddexp(log_p_sum, torch.log_softmax(logits.double(), dim=1))
    mean_log_p = log_p_sum - math.log(int(samples))
    return (total / weights[:, None]).to(direction.dtype), mean_log_p.to(logits.dtype)


def eot(samples: int) -> Gradient:
    """:func:`eot_gradient` over ``samples`` draws, as :func:`pgd`'s ``gradient``."""
    if isinstance(samples, bool) or int(samples) != samples or samples < 1:
        raise ValueError(f"EOT needs a whole number of samples >= 1, got {samples!r}")
    return functools.partial(eot_gradient, samples=int(samples))


def white_noise(
    waveforms: torch.Tensor,
    *,
    mask: torch.Tensor,
    epsilon: torch.Tensor | float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Add white Gaussian noise whose RMS over each clip's real samples is exactly ``epsilon``.

    The non-adversarial control: with ``epsilon`` from :func:`snr_epsilon` the noise has the
    same energy (hence the same SNR) as an FGSM perturbation, but ignores the model. The draw
    is rescaled to the exact RMS, so the measured SNR equals the target. ``epsilon`` is an
    amplitude in waveform units (an RMS here, not an L∞ bound); padding stays unchanged.
    """
    lengths = check_batch(waveforms, mask)
    eps = _per_clip(epsilon, waveforms.shape[0], waveforms)
    noise = torch.randn(waveforms.shape, generator=generator, device="cpu", dtype=torch.float64)
    noise = noise.to(waveforms.device) * mask
    rms = (noise.pow(2).sum(dim=1, keepdim=True) / lengths[:, None].double()).sqrt()
    scaled = noise / rms.clamp_min(torch.finfo(torch.float64).tiny) * eps.double()
    return (waveforms + scaled.to(waveforms.dtype)).detach()
