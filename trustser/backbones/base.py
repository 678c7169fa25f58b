"""The one interface every frozen encoder implements.

``forward(waveforms [B, S], lengths [B]) -> (hidden [B, L, T, D], frame_lengths [B])``: the same
module serves extraction (under ``torch.no_grad``) and attacks (gradients w.r.t. the waveform).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["BackboneSpec", "Backbone", "weights_checksum"]


@dataclass(frozen=True)
class BackboneSpec:
    """Registry facts about a backbone; enough to rebuild it (``load_backbone(spec.name)``)."""

    name: str  # registry name or spec string ("whisper_tiny", "hf:/path", "tiny:whisper")
    family: str  # "wav2vec2" | "wavlm" | "hubert" | "data2vec" | "whisper" | "apc" | "tera"
    source: str  # HF model id, s3prl upstream, local path, or "random"
    revision: str | None = None
    sample_rate: int = 16_000
    num_layers: int | None = None  # L, hidden states returned (layer 0 included); None = from config
    dim: int | None = None  # D
    frame_rate: float | None = None  # frames per second
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def weights_checksum(module: nn.Module) -> str:
    """SHA-256 over parameter and buffer bytes in name order: identifies the exact weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()


class Backbone(nn.Module, ABC):
    """A frozen speech encoder returning every hidden state.

    Subclasses set ``spec``, ``num_layers`` (L), ``dim`` (D), ``frame_rate`` and
    ``masks_padding`` (True when a clip inside a zero-padded batch yields the same features as
    alone; False means batches must hold clips of identical length). They are always in eval
    mode and their parameters never require gradients.
    """

    spec: BackboneSpec
    num_layers: int
    dim: int
    frame_rate: float
    masks_padding: bool = True
    sample_rate: int = 16_000

    def train(self, mode: bool = True) -> Backbone:  # noqa: ARG002 - frozen: always eval
        return super().train(False)

    def freeze(self) -> Backbone:
        """Eval mode and no parameter gradients (gradients may still flow to the input)."""
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        return self.train(False)

    @abstractmethod
    def frame_count(self, num_samples: int) -> int:
        """Frames produced for a clip of ``num_samples`` samples (exact, no model run)."""

    def frame_counts(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.tensor([self.frame_count(int(n)) for n in lengths.tolist()], dtype=torch.long)

    @abstractmethod
    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden [B, L, T_max, D], frame_lengths [B]) for 16 kHz waveforms [B, S_max]."""

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        return torch.device("cpu")

    def provenance(self) -> dict[str, Any]:
        """What an embedding store records so features are never mixed across configurations."""
        return {
            "backbone": self.spec.name,
            "family": self.spec.family,
            "source": self.spec.source,
            "revision": self.spec.revision,
            "num_layers": self.num_layers,
            "dim": self.dim,
            "frame_rate": self.frame_rate,
            "sample_rate": self.sample_rate,
            "masks_padding": self.masks_padding,
            "weights_sha256": weights_checksum(self),
            **self.extra_provenance(),
        }

    def extra_provenance(self) -> dict[str, Any]:
        """Family-specific settings that change the features (e.g. Whisper's window)."""
        return {}
