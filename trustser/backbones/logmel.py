"""Whisper's log-mel spectrogram in torch, so gradients reach the waveform.

``WhisperFeatureExtractor`` computes the same features in numpy (not differentiable). Here:

.. math::

    S = |\\mathrm{STFT}_{400, 160, \\mathrm{hann}}(x)|^2 \\text{ (last frame dropped)},\\quad
    M = \\log_{10} \\max(F^\\top S, 10^{-10}),\\quad
    \\hat M = (\\max(M, \\max M - 8) + 4) / 4

with ``F`` the Slaney-normalised 80- (or 128-) band mel filter bank over 0–8 kHz. The maximum is
taken over the frames that belong to the clip (``frames``), so a clip gives the same features
alone and inside a zero-padded batch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trustser.batching import length_mask

__all__ = ["HOP_LENGTH", "N_FFT", "WINDOW_SAMPLES", "WhisperLogMel", "mel_frame_count"]

N_FFT = 400
HOP_LENGTH = 160
WINDOW_SAMPLES = 30 * 16_000  # Whisper's fixed 30 s window


def mel_frame_count(num_samples: int) -> int:
    """Mel frames for a clip: one per 10 ms hop (the STFT's extra last frame is dropped)."""
    return num_samples // HOP_LENGTH


def _mel_filters(num_mel_bins: int, sample_rate: int) -> np.ndarray:
    from transformers.audio_utils import mel_filter_bank

    return mel_filter_bank(
        num_frequency_bins=1 + N_FFT // 2,
        num_mel_filters=num_mel_bins,
        min_frequency=0.0,
        max_frequency=sample_rate / 2,
        sampling_rate=sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )


class WhisperLogMel(nn.Module):
    """Batched, differentiable log-mel features: ``[B, S]`` waveforms → ``[B, n_mels, T]``.

    Each clip is treated as if followed by silence (as in Whisper's zero-padded 30 s window), so
    its frames never depend on what else is in the batch. Frames past a clip's own count are 0.
    """

    def __init__(self, num_mel_bins: int = 80, *, sample_rate: int = 16_000) -> None:
        super().__init__()
        self.num_mel_bins = num_mel_bins
        self.sample_rate = sample_rate
        filters = torch.from_numpy(_mel_filters(num_mel_bins, sample_rate)).float()
        # [n_mels, 201]; not persistent: derived data, kept out of checkpoints and checksums
        self.register_buffer("mel_filters", filters.T.contiguous(), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor, *, num_frames: int | None = None
    ) -> torch.Tensor:
        """Log-mel of each clip; ``num_frames`` fixes the output width (default: longest clip).

        The clamp ``max(M, max M - 8)`` uses the maximum over each clip's own frames; with
        ``num_frames`` set to 3000 and clips zero-padded to 30 s this equals Whisper's extractor.
        """
        lengths = lengths.to(waveforms.device)
        frames = lengths // HOP_LENGTH
        width = int(frames.max()) if num_frames is None else num_frames
        needed = width * HOP_LENGTH + N_FFT  # every kept frame sees only clip samples or zeros
        if waveforms.shape[1] < needed:
            waveforms = nn.functional.pad(waveforms, (0, needed - waveforms.shape[1]))
        waveforms = waveforms * length_mask(lengths, waveforms.shape[1])
        if num_frames is not None:
            # frames up to `width` count as the clip's own (Whisper's 30 s window semantics)
            frames = torch.full_like(frames, width)
        stft = torch.stft(
            waveforms,
            N_FFT,
            HOP_LENGTH,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        power = stft[..., :width].abs().pow(2)
        mel = torch.matmul(self.mel_filters, power)
        log_spec = torch.clamp(mel, min=1e-10).log10()
        own = length_mask(frames, width)  # [B, T]
        floor = torch.where(own[:, None, :], log_spec, torch.full_like(log_spec, -torch.inf))
        peak = floor.amax(dim=(1, 2), keepdim=True)
        log_spec = torch.maximum(log_spec, peak - 8.0)
        log_spec = (log_spec + 4.0) / 4.0
        return log_spec * own[:, None, :].to(log_spec.dtype)
