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

import warnings
from typing import Any

import torch
from torch import nn

from trustser.backbones.base import Backbone, BackboneSpec, pad_frames
from trustser.backbones.errors import BackboneError
from trustser.backbones.top_blocks import TopBlocks, check_top_blocks_k, copy_modules
from trustser.batching import length_mask

__all__ = [
    "Wav2Vec2StyleBackbone",
    "Wav2Vec2StyleTopBlocks",
    "conv_frame_count",
    "normalize_waveforms",
]


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

    # ------------------------------------------------------------------ top blocks (fine-tuning)

    def final_norm_in_layers(self) -> bool:
        """Does the store's last layer have the encoder's final LayerNorm applied?

        Only pre-LN ("stable layer norm") encoders end with one. transformers 4.x put it into
        ``hidden_states[-1]``; 5.x records the last layer's raw output. Checked once on a
        two-frame probe, so the top blocks follow the installed version.
        """
        if not getattr(self.model.config, "do_stable_layer_norm", False):
            return False
        cached = getattr(self, "_final_norm_in_layers", None)
        if cached is None:
            samples = self.min_samples + self.hop
            probe = torch.sin(torch.arange(samples, dtype=torch.float32) * 0.01)[None]
            with torch.no_grad():
                output = self.model(
                    probe.to(self.device), output_hidden_states=True, return_dict=True
                )
            cached = bool(torch.equal(output.hidden_states[-1], output.last_hidden_state))
            self._final_norm_in_layers = cached
        return cached

    @property
    def hop(self) -> int:
        """Waveform samples per frame (the product of the conv strides)."""
        hop = 1
        for stride in self.strides:
            hop *= stride
        return hop

    def top_block_sources(self, k: int) -> dict[str, str]:
        check_top_blocks_k(self.spec.name, k, self.num_layers)
        first = len(self.model.encoder.layers) - k
        sources = {f"blocks.{i}": f"model.encoder.layers.{first + i}" for i in range(k)}
        if self.final_norm_in_layers():
            sources["final_norm"] = "model.encoder.layer_norm"
        return sources

    def top_blocks(self, k: int) -> Wav2Vec2StyleTopBlocks:
        """The top ``k`` transformer layers (WavLM: with the relative position bias rebuilt)."""
        sources = self.top_block_sources(k)
        encoder = self.model.encoder
        first = len(encoder.layers) - k
        norm = encoder.layer_norm if "final_norm" in sources else None
        bias = None
        if self.model.config.model_type == "wavlm" and first > 0:
            bias = encoder.layers[0].attention.rel_attn_embed
        return Wav2Vec2StyleTopBlocks(
            list(encoder.layers[first:]),
            self.model.config,
            final_norm=norm,
            relative_bias=bias,
            family=self.spec.family,
            k=k,
            num_layers=self.num_layers,
            dim=self.dim,
            backbone=self.spec.name,
            sources=sources,
        )


class Wav2Vec2StyleTopBlocks(TopBlocks):
    """Top transformer layers of wav2vec2, HuBERT, data2vec-audio or WavLM.

    Trained: every tensor of the ``k`` copied encoder layers (and the final LayerNorm when the
    store's last layer has it; see :meth:`Wav2Vec2StyleBackbone.final_norm_in_layers`). The
    convolutional positions and the post-LN encoder LayerNorm act below layer 0 and stay frozen.

    WavLM: the first layer computes a relative position bias (from its ``rel_attn_embed``) and
    hands it up. When that layer is below the top blocks, a frozen copy of its embedding is put
    on the first top block's attention (as a non-persistent buffer, so it is neither trained nor
    saved) and the bias is rebuilt exactly as the first layer builds it; with ``k = L − 1`` the
    first layer is among the blocks and its embedding trains.
    """

    family = "wav2vec2"

    def __init__(
        self,
        layers: list[nn.Module],
        config: Any,
        *,
        final_norm: nn.Module | None,
        relative_bias: nn.Embedding | None,
        family: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        *blocks, norm, config = copy_modules(*layers, final_norm, config)
        self.family = family
        self.model_config = config  # not ``config``: that is TopBlocks.config(), the saved facts
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = norm
        self.is_wavlm = config.model_type == "wavlm"
        if relative_bias is not None:
            frozen = nn.Embedding(
                relative_bias.num_embeddings, relative_bias.embedding_dim, device="meta"
            )
            del frozen.weight
            frozen.register_buffer(
                "weight", relative_bias.weight.detach().clone(), persistent=False
            )
            self.blocks[0].attention.rel_attn_embed = frozen
        self.eval()

    def run_blocks(
        self, hidden: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor
    ) -> list[torch.Tensor]:
        padded = None if bool(mask.all()) else mask
        states = []
        if self.is_wavlm:  # WavLM layers take the 2-D mask and pass the position bias up
            position_bias = None
            keys = None if padded is None else padded.long()
            with warnings.catch_warnings():  # torch on WavLM's bool key mask + float bias
                warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")
                for block in self.blocks:
                    hidden, position_bias = block(
                        hidden, attention_mask=keys, position_bias=position_bias
                    )
                    states.append(hidden)
        else:
            from transformers.masking_utils import create_bidirectional_mask

            attention = create_bidirectional_mask(
                config=self.model_config, inputs_embeds=hidden, attention_mask=padded
            )
            for block in self.blocks:
                hidden = block(hidden, attention_mask=attention)
                states.append(hidden)
        if self.final_norm is not None:
            states[-1] = self.final_norm(hidden)
        return states
