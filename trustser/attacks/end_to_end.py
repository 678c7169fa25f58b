"""The attacked model: waveform → frozen backbone → trained head → logits, differentiable in x.

The backbone is the very module extraction ran (same preprocessing, same Whisper window), so
on a clean waveform the logits equal the head applied to the cached features up to the store's
fp16 rounding. Both parts stay in eval mode (no dropout) and their parameters never require
gradients: an attack differentiates with respect to the waveform only.
"""

from __future__ import annotations

import torch
from torch import nn

from trustser.backbones.base import Backbone
from trustser.heads.model import LayerWeightedHead

__all__ = ["EndToEndClassifier", "frame_mask"]


def frame_mask(frame_lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``[B, T]`` bool, True on the first ``frame_lengths[b]`` frames of each clip."""
    positions = torch.arange(num_frames, device=frame_lengths.device)
    return positions[None, :] < frame_lengths[:, None]


class EndToEndClassifier(nn.Module):
    """``forward(waveforms [B, S], lengths [B]) -> logits [B, C]`` through backbone and head."""

    def __init__(self, backbone: Backbone, head: LayerWeightedHead) -> None:
        super().__init__()
        if head.num_layers != backbone.num_layers or head.dim != backbone.dim:
            raise ValueError(
                f"the head expects {head.num_layers} layers of width {head.dim}, but backbone "
                f"{backbone.spec.name!r} returns {backbone.num_layers} × {backbone.dim}; "
                "train the head on this backbone's features."
            )
        self.backbone = backbone
        self.head = head
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> EndToEndClassifier:
        return super().train(False)

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def masks_padding(self) -> bool:
        return bool(self.backbone.masks_padding)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        hidden, frame_lengths = self.backbone(waveforms, lengths)
        frame_lengths = frame_lengths.to(hidden.device)
        return self.head(hidden, frame_mask(frame_lengths, hidden.shape[2]))
