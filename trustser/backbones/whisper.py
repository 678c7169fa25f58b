"""Whisper encoders, run by hand so clips need not be padded to 30 s.

transformers' ``WhisperEncoder`` only accepts a full 3000-frame (30 s) mel window. This module runs
the same modules step by step: log-mel (torch) → conv1 → GELU → conv2 (stride 2) → GELU →
``+ positions[:T]`` → encoder layers → final layer norm.

Hidden states (L = encoder layers + 1): layer 0 is the convolutional front end plus positions,
layer i the output of encoder layer i; the last one has the final layer norm applied (as in
transformers' ``hidden_states``).

Windows:

* ``"trimmed"`` (default) — the encoder sees only the clip's own frames (6 s → 300 frames,
  positions cut to the frame count, as the paper's reference code did). In a batch, each layer gets
  an additive attention mask over the padded frames and padded conv inputs are zeroed, so a clip
  gives the same features alone and in a padded batch.
* ``"30s"`` — every clip is zero-padded to Whisper's 30 s window and attention sees the padding
  (the standard transformers behaviour). The returned hidden states are cut to the clip's frames.
  Besides attention, the windows differ at the clip's last frame: its conv window reaches past the
  clip, where the trimmed encoder sees zeros and the 30 s window the log-mel of silence.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trustser._validation import check_choice
from trustser.backbones.base import Backbone, BackboneSpec, pad_frames
from trustser.backbones.logmel import HOP_LENGTH, WINDOW_SAMPLES, WhisperLogMel, mel_frame_count
from trustser.backbones.top_blocks import (
    TopBlocks,
    TopBlocksError,
    check_top_blocks_k,
    copy_modules,
)
from trustser.batching import length_mask

__all__ = ["WHISPER_WINDOWS", "WhisperBackbone", "WhisperTopBlocks", "encoder_frame_count"]

WHISPER_WINDOWS = ("trimmed", "30s")


def encoder_frame_count(num_mel_frames: int) -> int:
    """Frames after conv2 (kernel 3, stride 2, padding 1): ceil(T / 2)."""
    return (num_mel_frames - 1) // 2 + 1 if num_mel_frames > 0 else 0


class WhisperBackbone(Backbone):
    """A frozen transformers ``WhisperEncoder`` returning all hidden states from the waveform."""

    def __init__(self, encoder: nn.Module, spec: BackboneSpec, *, window: str = "trimmed") -> None:
        super().__init__()
        check_choice("window", window, WHISPER_WINDOWS)
        config = encoder.config
        self.spec = spec
        self.window = window
        self.encoder = encoder
        self.log_mel = WhisperLogMel(config.num_mel_bins)
        self.num_layers = config.encoder_layers + 1
        self.dim = config.d_model
        self.frame_rate = spec.sample_rate / HOP_LENGTH / 2
        self.masks_padding = True
        self.min_samples = HOP_LENGTH  # one mel frame
        positions = config.max_source_positions
        self.max_samples = min(positions * 2 * HOP_LENGTH, WINDOW_SAMPLES)
        self.freeze()

    def frame_count(self, num_samples: int) -> int:
        return encoder_frame_count(mel_frame_count(num_samples))

    def extra_provenance(self) -> dict[str, Any]:
        file_sha256 = self.spec.extra.get("weights_file_sha256")  # packaged weights: verified
        return {
            "window": self.window,
            "num_mel_bins": self.log_mel.num_mel_bins,
            **({"weights_file_sha256": file_sha256} if file_sha256 else {}),
        }

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        waveforms, lengths = self.check_batch(waveforms, lengths)
        frame_lengths = self.frame_counts(lengths)
        if self.window == "30s":
            mel_width = self.encoder.config.max_source_positions * 2
            mel = self.log_mel(waveforms, lengths, num_frames=mel_width)
            hidden = self._encode(mel, None)
            hidden = hidden[:, :, : int(frame_lengths.max())]
        else:
            mel = self.log_mel(waveforms, lengths)
            hidden = self._encode(mel, lengths // HOP_LENGTH)
        return pad_frames(hidden, frame_lengths), frame_lengths

    def _encode(self, mel: torch.Tensor, mel_lengths: torch.Tensor | None) -> torch.Tensor:
        """conv front end → positions → layers; ``mel_lengths`` None means no padding mask."""
        encoder = self.encoder
        x = nn.functional.gelu(encoder.conv1(mel))
        if mel_lengths is not None:  # conv2 must see zeros past each clip, as it would alone
            x = x * length_mask(mel_lengths.to(x.device), x.shape[2])[:, None, :].to(x.dtype)
        x = nn.functional.gelu(encoder.conv2(x)).transpose(1, 2)
        num_frames = x.shape[1]
        x = x + encoder.embed_positions.weight[:num_frames]
        mask = None
        if mel_lengths is not None:
            frames = torch.tensor(
                [encoder_frame_count(int(n)) for n in mel_lengths.tolist()], device=x.device
            )
            if int(frames.min()) < num_frames:  # some clip is padded: mask its padded keys
                keys = length_mask(frames, num_frames)
                blocked = torch.zeros(keys.shape, dtype=x.dtype, device=x.device)
                blocked = blocked.masked_fill(~keys, torch.finfo(x.dtype).min)
                mask = blocked[:, None, None, :].expand(-1, 1, num_frames, -1)
        states = [x]
        for layer in encoder.layers:
            x = layer(x, mask)
            states.append(x)
        states[-1] = encoder.layer_norm(x)
        return torch.stack(states, dim=1)

    # ------------------------------------------------------------------ top blocks (fine-tuning)

    def top_block_sources(self, k: int) -> dict[str, str]:
        check_top_blocks_k(self.spec.name, k, self.num_layers)
        first = len(self.encoder.layers) - k
        sources = {f"blocks.{i}": f"encoder.layers.{first + i}" for i in range(k)}
        return {**sources, "final_norm": "encoder.layer_norm"}

    def top_blocks(self, k: int) -> WhisperTopBlocks:
        """The top ``k`` encoder layers and the final LayerNorm (the store's last layer has it).

        Refused for the 30 s window: its cached states are the clip's frames only, but there
        the blocks also attend to the padded window.
        """
        if self.window != "trimmed":
            raise TopBlocksError(
                f"{self.spec.name}: top blocks need the trimmed window; with window="
                f"{self.window!r} the encoder's blocks attend to the padding up to 30 s, which "
                "the cache does not keep. Load the backbone (and extract the store) with "
                "window='trimmed'."
            )
        sources = self.top_block_sources(k)
        first = len(self.encoder.layers) - k
        return WhisperTopBlocks(
            list(self.encoder.layers[first:]),
            self.encoder.layer_norm,
            k=k,
            num_layers=self.num_layers,
            dim=self.dim,
            backbone=self.spec.name,
            sources=sources,
        )


def _additive_key_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """``[B, 1, T, T]`` additive mask blocking padded keys (``mask [B, T]`` True on real
    frames), as the hand loop passes each layer; None when nothing is padded."""
    if bool(mask.all()):
        return None
    blocked = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    blocked = blocked.masked_fill(~mask, torch.finfo(dtype).min)
    return blocked[:, None, None, :].expand(-1, 1, mask.shape[1], -1)


class WhisperTopBlocks(TopBlocks):
    """Whisper's top encoder layers (pre-LN) plus the encoder's final LayerNorm.

    Trained: every tensor of the ``k`` copied ``WhisperEncoderLayer`` s and ``layer_norm``.
    Padded keys are masked as in the trimmed hand loop.
    """

    family = "whisper"

    def __init__(self, layers: list[nn.Module], final_norm: nn.Module, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        *blocks, norm = copy_modules(*layers, final_norm)
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = norm
        self.eval()

    def run_blocks(
        self, hidden: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor
    ) -> list[torch.Tensor]:
        attention = _additive_key_mask(mask, hidden.dtype)
        states = []
        for block in self.blocks:
            hidden = block(hidden, attention)
            states.append(hidden)
        states[-1] = self.final_norm(hidden)
        return states
