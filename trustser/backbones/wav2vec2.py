"""wav2vec 2.0-style encoders from transformers: wav2vec2, WavLM, HuBERT, data2vec-audio.

All four share the front end (a stack of strided 1-D convolutions over the raw waveform, 20 ms
per frame) followed by a transformer. Hidden states (L = transformer layers + 1) are transformers'
``hidden_states``: layer 0 is the input to the first transformer layer (projected conv features
plus convolutional positions; after the encoder layer norm for ``feat_extract_norm="group"``
models), layer i the output of transformer layer i.

Padding: models whose first convolution uses GroupNorm (``feat_extract_norm="group"``: the *base*
checkpoints of wav2vec2, HuBERT and WavLM) normalise over the whole padded length, so a padded
clip's features change (max diff ≈ 1) even with an attention mask. data2vec-audio's stacked
positional convolutions leak padding into the last real frames the same way. For these
``masks_padding`` is False and ``forward`` runs each group of equal-length clips separately, which
is exact but slower: callers should batch clips of identical length. wav2vec2 models with
``feat_extract_norm="layer"`` take an attention mask and are batch-invariant to fp32 precision.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trustser.backbones.base import Backbone, BackboneSpec, pad_frames
from trustser.backbones.errors import BackboneError
from trustser.batching import length_mask

__all__ = ["Wav2Vec2StyleBackbone", "conv_frame_count", "normalize_waveforms"]


def conv_frame_count(num_samples: int, kernels: tuple[int, ...], strides: tuple[int, ...]) -> int:
    """Frames after a stack of unpadded 1-D convolutions: ``n ← ⌊(n − k) / s⌋ + 1`` per layer."""
    frames = num_samples
    for kernel, stride in zip(kernels, strides, strict=True):
        if frames < kernel:
            return 0
        frames = (frames - kernel) // stride + 1
    return frames


def normalize_waveforms(waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero-mean, unit-variance per clip over its real samples (``Wav2Vec2FeatureExtractor``).

    ``(x − μ) / sqrt(σ² + 1e-7)`` with the population variance; padding stays 0.
    """
    valid = length_mask(lengths.to(waveforms.device), waveforms.shape[1]).to(waveforms.dtype)
    count = valid.sum(dim=1, keepdim=True)
    mean = (waveforms * valid).sum(dim=1, keepdim=True) / count
    centred = (waveforms - mean) * valid
    variance = centred.pow(2).sum(dim=1, keepdim=True) / count
    return centred / torch.sqrt(variance + 1e-7)


class Wav2Vec2StyleBackbone(Backbone):
    """A frozen transformers wav2vec2-family model returning all hidden states."""

    def __init__(self, model: nn.Module, spec: BackboneSpec, *, normalize: bool) -> None:
        super().__init__()
        config = model.config
        if getattr(config, "add_adapter", False):
            raise BackboneError(
                f"backbone {spec.name!r}: checkpoints with an output adapter (add_adapter=True) "
                "change the frame rate and are not supported; use the encoder without it."
            )
        self.spec = spec
        self.model = model
        self.normalize = normalize
        self.kernels = tuple(config.conv_kernel)
        self.strides = tuple(config.conv_stride)
        self.num_layers = config.num_hidden_layers + 1
        self.dim = config.hidden_size
        hop = 1
        for stride in self.strides:
            hop *= stride
        self.frame_rate = spec.sample_rate / hop
        self.feat_extract_norm = getattr(config, "feat_extract_norm", "layer")  # data2vec: layer
        # data2vec-audio's stacked positional convolutions (conv → LayerNorm → GELU, several
        # times) turn zeroed padding into non-zero values that then leak into the last real
        # frames, so it cannot be batched across lengths either.
        self.masks_padding = (
            self.feat_extract_norm == "layer" and config.model_type != "data2vec-audio"
        )
        self.min_samples = self._min_samples()
        self.freeze()

    def _min_samples(self) -> int:
        samples = 1
        for kernel, stride in zip(reversed(self.kernels), reversed(self.strides), strict=True):
            samples = (samples - 1) * stride + kernel
        return samples

    def frame_count(self, num_samples: int) -> int:
        return conv_frame_count(num_samples, self.kernels, self.strides)

    def extra_provenance(self) -> dict[str, Any]:
        return {
            "normalize": self.normalize,
            "feat_extract_norm": self.feat_extract_norm,
        }

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        waveforms, lengths = self.check_batch(waveforms, lengths)
        frame_lengths = self.frame_counts(lengths)
        if self.normalize:
            waveforms = normalize_waveforms(waveforms, lengths)
        if self.masks_padding:
            mask = length_mask(lengths.to(waveforms.device), waveforms.shape[1]).long()
            hidden = self._run(waveforms, mask)
        else:
            hidden = self._run_by_length(waveforms, lengths, frame_lengths)
        return pad_frames(hidden, frame_lengths), frame_lengths

    def _run(self, waveforms: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        output = self.model(
            waveforms, attention_mask=attention_mask, output_hidden_states=True, return_dict=True
        )
        return torch.stack(tuple(output.hidden_states), dim=1)

    def _run_by_length(
        self, waveforms: torch.Tensor, lengths: torch.Tensor, frame_lengths: torch.Tensor
    ) -> torch.Tensor:
        """Run each set of equal-length clips unpadded; reassemble in the input order."""
        unique = torch.unique(lengths)
        if unique.numel() == 1:
            return self._run(waveforms[:, : int(unique[0])], None)
        width = int(frame_lengths.max())
        parts: dict[int, torch.Tensor] = {}
        for length in unique.tolist():
            rows = (lengths == length).nonzero().flatten()
            hidden = self._run(waveforms[rows.to(waveforms.device), :length], None)
            hidden = nn.functional.pad(hidden, (0, 0, 0, width - hidden.shape[2]))
            for i, row in enumerate(rows.tolist()):
                parts[row] = hidden[i]
        return torch.stack([parts[row] for row in range(waveforms.shape[0])])
