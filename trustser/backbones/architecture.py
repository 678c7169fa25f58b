"""The encoder network of a spec, built from its architecture config alone (random weights).

The registry counts parameters with it (on the ``meta`` device), the tiny models build their
random networks with it, and ``build_random_backbone`` times real architectures without their
weights. Loading real weights is :mod:`trustser.backbones.loading`'s business.
"""

from __future__ import annotations

from torch import nn

from trustser.backbones.base import BackboneSpec
from trustser.backbones.errors import UnknownBackboneError

__all__ = ["build_architecture"]


def build_architecture(spec: BackboneSpec) -> nn.Module:
    """The encoder network of a registry/tiny spec from its architecture config (random weights).

    Built on the current default device: under ``torch.device("meta")`` it costs nothing.
    """
    config = spec.extra.get("config")
    if config is None:
        raise UnknownBackboneError(
            f"{spec.name}: its architecture is only known from its files; load it instead."
        )
    if spec.family in ("apc", "tera"):
        from trustser.backbones import s3prl_models

        return s3prl_models.build_model(spec.family, config)
    if spec.family == "ge2e":
        from trustser.backbones.ge2e import build_network

        return build_network(config)
    import transformers

    if spec.family == "whisper":
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        return WhisperEncoder(transformers.WhisperConfig(**config))
    config_name, model_name = {
        "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model"),
        "wavlm": ("WavLMConfig", "WavLMModel"),
        "hubert": ("HubertConfig", "HubertModel"),
        "data2vec": ("Data2VecAudioConfig", "Data2VecAudioModel"),
    }[spec.family]
    return getattr(transformers, model_name)(getattr(transformers, config_name)(**config))
