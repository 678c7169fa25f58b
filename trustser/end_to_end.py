"""The end-to-end model: waveform → frozen backbone → trained head → logits, differentiable in x.

One module for everything that runs backbone and head together: the attacks differentiate it,
and the cost stage counts and times the very same forward, so the sustainability figures describe
the model that is attacked. The backbone is the module extraction ran (same preprocessing, same
Whisper window), so on a clean waveform the logits equal the head applied to the cached features
up to the store's fp16 rounding. Both parts stay in eval mode (no dropout) and their parameters
never require gradients: an attack differentiates with respect to the waveform only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from trustser.batching import length_mask

if TYPE_CHECKING:  # annotations only: importing the end-to-end model loads neither package
    from trustser.backbones.base import Backbone
    from trustser.heads.model import LayerWeightedHead

__all__ = ["EndToEndClassifier"]


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
        return self.head(hidden, length_mask(frame_lengths, hidden.shape[2]))
