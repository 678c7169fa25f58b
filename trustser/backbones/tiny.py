"""``tiny:<family>``: small randomly initialised encoders for tests — no download, deterministic.

Each tiny model keeps the structure that matters for its family (the seven-layer 20 ms conv front
end, GroupNorm vs LayerNorm, the padding mask, Whisper's 80-band log-mel and 1500 positions, the
s3prl APC/TERA modules) and shrinks only the widths and depths, so a 2 s clip runs in
milliseconds on a CPU. Weights come from a fixed seed in a forked RNG: the same name always gives
the same ``weights_sha256`` and the caller's random state is untouched.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trustser.backbones.architecture import build_architecture
from trustser.backbones.base import BackboneSpec

__all__ = [
    "TINY_FAMILIES",
    "TINY_NORMALIZE",
    "TINY_SEED",
    "build_tiny_model",
    "tiny_config",
    "tiny_spec",
]

TINY_SEED = 0

# Shared by every wav2vec2-style tiny model: the real 7-layer conv stack (hop 320 = 20 ms).
_CONV = {
    "conv_dim": (16,) * 7,
    "conv_kernel": (10, 3, 3, 3, 3, 2, 2),
    "conv_stride": (5, 2, 2, 2, 2, 2, 2),
}
_TRANSFORMER = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    "mask_time_prob": 0.0,
}

_CONFIGS: dict[str, dict[str, Any]] = {
    # like wav2vec2-base: GroupNorm in the first conv, post-LN transformer, no padding mask
    "wav2vec2": {**_CONV, **_TRANSFORMER, "feat_extract_norm": "group", "conv_bias": False},
    # like wav2vec2-large-lv60: LayerNorm convs, pre-LN ("stable") transformer, attention mask
    "wav2vec2_layer": {
        **_CONV,
        **_TRANSFORMER,
        "feat_extract_norm": "layer",
        "do_stable_layer_norm": True,
        "conv_bias": True,
    },
    # like wavlm-base-plus: GroupNorm front end, gated relative position bias
    "wavlm": {
        **_CONV,
        **_TRANSFORMER,
        "feat_extract_norm": "group",
        "conv_bias": False,
        "num_buckets": 32,
        "max_bucket_distance": 64,
    },
    # like hubert-base-ls960: GroupNorm front end
    "hubert": {**_CONV, **_TRANSFORMER, "feat_extract_norm": "group", "conv_bias": False},
    # like data2vec-audio-base: LayerNorm convs (always), stacked conv positions, attention mask
    "data2vec": {
        **_CONV,
        **{k: v for k, v in _TRANSFORMER.items() if not k.startswith("num_conv_pos")},
        "num_conv_pos_embeddings": 3,
        "conv_pos_kernel_size": 5,
        "num_conv_pos_embedding_groups": 2,
        "conv_bias": False,
    },
    # Whisper: the real 80-band log-mel and 1500 positions (so the 30 s window works)
    "whisper": {
        "d_model": 32,
        "encoder_layers": 2,
        "encoder_attention_heads": 2,
        "encoder_ffn_dim": 64,
        "decoder_layers": 1,
        "decoder_attention_heads": 2,
        "decoder_ffn_dim": 64,
        "num_mel_bins": 80,
        "max_source_positions": 1500,
    },
    # s3prl APC: unidirectional GRU stack over 80-band log-mel, residual connections
    "apc": {"input_size": 80, "hidden_size": 32, "num_layers": 3, "residual": True},
    # s3prl TERA: transformer over 80-band log-mel (3 layers as in the base model)
    "tera": {
        "hidden_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "input_dim": 80,
    },
}

# Per family: does the real model normalise the waveform (Wav2Vec2FeatureExtractor do_normalize)?
# The tiny models take the code path of the family's registry default.
TINY_NORMALIZE = {
    "wav2vec2": True,
    "wav2vec2_layer": True,
    "wavlm": False,
    "hubert": False,
    "data2vec": True,
}

TINY_FAMILIES = tuple(_CONFIGS)


def tiny_config(family: str) -> dict[str, Any]:
    """The architecture settings of ``tiny:<family>`` (a copy)."""
    return dict(_CONFIGS[family])


_TINY_FAMILY = {"wav2vec2_layer": "wav2vec2"}  # tiny name → model family
_TINY_SHAPE = {  # L, D, frame rate of each tiny model (checked against the built model in tests)
    "wav2vec2": (3, 32, 50.0),
    "wav2vec2_layer": (3, 32, 50.0),
    "wavlm": (3, 32, 50.0),
    "hubert": (3, 32, 50.0),
    "data2vec": (3, 32, 50.0),
    "whisper": (3, 32, 50.0),
    "apc": (3, 32, 100.0),
    "tera": (4, 32, 100.0),
}


def tiny_spec(family: str) -> BackboneSpec:
    """The spec of ``tiny:<family>`` (what ``resolve_spec("tiny:<family>")`` returns)."""
    layers, dim, rate = _TINY_SHAPE[family]
    return BackboneSpec(
        name=f"tiny:{family}",
        family=_TINY_FAMILY.get(family, family),
        source="random",
        num_layers=layers,
        dim=dim,
        frame_rate=rate,
        description=f"Tiny random {family} model for tests (fixed seed, no download).",
        extra={"loader": "tiny", "tiny": family, "config": tiny_config(family)},
    )


def build_tiny_model(family: str, *, seed: int = TINY_SEED) -> nn.Module:
    """The random model of ``tiny:<family>``, built from ``seed`` without touching global RNG."""
    spec = tiny_spec(family)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_architecture(spec)
    return model.float().eval()
