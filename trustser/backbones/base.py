"""The one interface every frozen encoder implements.

``forward(waveforms [B, S], lengths [B]) -> (hidden [B, L, T, D], frame_lengths [B])``: the same
module serves extraction (under ``torch.no_grad``) and attacks (gradients w.r.t. the waveform).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from trustser.backbones.errors import BackboneInputError
from trustser.backbones.top_blocks import TopBlocks, TopBlocksError, top_blocks_state_keys
from trustser.batching import length_mask

__all__ = ["Backbone", "BackboneSpec", "pad_frames", "weights_checksum"]


@dataclass(frozen=True)
class BackboneSpec:
    """Registry facts about a backbone; enough to rebuild it (``load_backbone(spec.name)``)."""

    name: str  # registry name or spec string ("whisper_tiny", "hf:/path", "tiny:whisper")
    family: str  # "wav2vec2" | "wavlm" | "hubert" | "data2vec" | "whisper" | "apc" | "tera"
    source: str  # HF model id, s3prl upstream, local path, or "random"
    revision: str | None = None
    sample_rate: int = 16_000
    # L: hidden states returned (layer 0 included); None = known only from the loaded config
    num_layers: int | None = None
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
    min_samples: int = 1  # shortest clip that yields at least one frame
    max_samples: int | None = None  # longest clip the encoder accepts (None = unbounded)

    def train(self, mode: bool = True) -> Backbone:
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

    def check_batch(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate a batch; return float32 waveforms on the model's device, zero past each length.

        Zeroing the tail makes the result independent of whatever the caller left in the padding.
        """
        name = self.spec.name
        if not isinstance(waveforms, torch.Tensor) or waveforms.dim() != 2:
            shape = (
                tuple(waveforms.shape) if isinstance(waveforms, torch.Tensor) else type(waveforms)
            )
            raise BackboneInputError(
                f"{name}: waveforms must be a 2-D tensor [batch, samples], got {shape}; "
                "add a batch dimension with waveforms.unsqueeze(0)."
            )
        if not waveforms.is_floating_point():
            raise BackboneInputError(
                f"{name}: waveforms must be floating point in [-1, 1], got dtype {waveforms.dtype}."
            )
        lengths = torch.as_tensor(lengths)
        if lengths.dim() != 1 or lengths.numel() != waveforms.shape[0]:
            raise BackboneInputError(
                f"{name}: lengths must be 1-D with one entry per clip ({waveforms.shape[0]}), "
                f"got shape {tuple(lengths.shape)}."
            )
        if lengths.is_floating_point():
            raise BackboneInputError(
                f"{name}: lengths must be integers (samples), got {lengths.dtype}."
            )
        lengths = lengths.to(device="cpu", dtype=torch.long)
        if waveforms.shape[0] == 0:
            raise BackboneInputError(f"{name}: the batch is empty.")
        longest, shortest = int(lengths.max()), int(lengths.min())
        if longest > waveforms.shape[1]:
            raise BackboneInputError(
                f"{name}: a length ({longest}) exceeds the padded waveform size ({waveforms.shape[1]})."
            )
        if shortest < self.min_samples:
            raise BackboneInputError(
                f"{name}: a clip of {shortest} samples ({shortest / self.sample_rate:.4f} s) is too "
                f"short; this encoder needs at least {self.min_samples} samples for one frame."
            )
        if self.max_samples is not None and longest > self.max_samples:
            raise BackboneInputError(
                f"{name}: a clip of {longest} samples ({longest / self.sample_rate:.1f} s) is longer "
                f"than this encoder accepts ({self.max_samples / self.sample_rate:.0f} s); "
                "trim clips first (trustser.audio keeps the first 6 s)."
            )
        waveforms = waveforms.to(device=self.device, dtype=torch.float32)
        valid = length_mask(lengths.to(waveforms.device), waveforms.shape[1])
        return waveforms * valid, lengths

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
            "resolved_revision": self.spec.extra.get("resolved_revision"),
            "weights_sha256": weights_checksum(self),
            **self.extra_provenance(),
            **({"top_blocks": dict(self.top_blocks_info)} if self.top_blocks_info else {}),
        }

    def extra_provenance(self) -> dict[str, Any]:
        """Family-specific settings that change the features (e.g. Whisper's window)."""
        return {}

    # ------------------------------------------------------------------ top blocks (fine-tuning)

    # Set by load_top_blocks: K and the checksum of the weights before the swap.
    top_blocks_info: dict[str, Any] | None = None

    def top_blocks(self, k: int) -> TopBlocks:
        """The top ``k`` blocks as a trainable copy fed from store layer ``L − 1 − k``
        (:mod:`trustser.backbones.top_blocks`); families override this."""
        raise TopBlocksError(
            f"{self.spec.name}: fine-tuning top blocks is not implemented for family "
            f"{self.spec.family!r}."
        )

    def top_block_sources(self, k: int) -> dict[str, str]:
        """``{TopBlocks module prefix: this backbone's module name}`` for the top ``k`` blocks."""
        return dict(self.top_blocks(k).sources)

    def load_top_blocks(
        self, state: Mapping[str, torch.Tensor], *, k: int | None = None
    ) -> Backbone:
        """Write fine-tuned top-block tensors (a ``TopBlocks.state_dict()``) into this backbone,
        in place; it stays frozen. ``k`` defaults to the blocks found in ``state``."""
        k, mapped = top_blocks_state_keys(self, state, k=k)
        info = self.top_blocks_info or {}
        if info and info["k"] != k:
            raise TopBlocksError(
                f"{self.spec.name}: this backbone already holds fine-tuned top {info['k']} blocks; "
                f"load top-{k} tensors into a fresh copy of the base backbone instead."
            )
        base_checksum = info.get("base_weights_sha256") or weights_checksum(self)
        own = self.state_dict(keep_vars=True)
        with torch.no_grad():
            for key, tensor in mapped.items():
                own[key].copy_(tensor.to(own[key]))
        self.top_blocks_info = {"k": k, "base_weights_sha256": base_checksum}
        return self.freeze()


def pad_frames(hidden: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
    """Zero every frame past ``frame_lengths[b]`` in ``hidden [B, L, T, D]``.

    Padding frames carry no information; zeroing them keeps stores and checksums deterministic.
    """
    keep = length_mask(frame_lengths.to(hidden.device), hidden.shape[2])
    return hidden * keep[:, None, :, None].to(hidden.dtype)
