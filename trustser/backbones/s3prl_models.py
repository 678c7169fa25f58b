"""s3prl's APC and TERA upstreams, built from their model classes (``s3prl.hub`` is not imported).

``import s3prl.hub`` fails with torchaudio ≥ 2.9 (it calls removed audio-backend APIs), so this
module imports the model classes (``s3prl.upstream.apc.apc.APC``,
``s3prl.upstream.mockingjay.model.TransformerModel``) and reproduces the two experts' feature
pipelines in torch, differentiably:

* APC: Kaldi fbank (80 bands, Hamming window, 25/10 ms, ``snip_edges``) → per-utterance CMVN →
  GRU stack with residual connections. Hidden states (L = GRU layers): the output of each GRU
  layer, as s3prl's expert exposes them (there is no layer 0 of width D). The GRUs read packed
  sequences, so padding never reaches a clip's frames.
* TERA: clip scaled to −25 dB → STFT (Hann 400, hop 160, centred) → power → 80-band HTK mel →
  log → per-utterance CMVN → linear projection + sinusoidal positions → transformer.
  Hidden states (L = layers + 1): layer 0 is the input representation, layer i the output of
  transformer layer i. The sinusoid table is computed vectorised for the frames needed (s3prl
  builds a 24000-row table in a Python loop: 20–25 s at the first forward; values are identical).

Checkpoints load with ``torch.load(weights_only=True)``: tensors, dicts and plain values only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from trustser.backbones.base import Backbone, BackboneSpec, pad_frames
from trustser.backbones.errors import BackboneError, WeightsNotFoundError
from trustser.backbones.rnn import run_rnn
from trustser.backbones.top_blocks import (
    TopBlocks,
    TopBlocksError,
    check_top_blocks_k,
    copy_modules,
)
from trustser.batching import length_mask

__all__ = [
    "APC_AUDIO",
    "TERA_AUDIO",
    "APCBackbone",
    "APCTopBlocks",
    "TERABackbone",
    "TERATopBlocks",
    "build_model",
    "kaldi_fbank_cmvn",
    "load_s3prl",
    "sinusoid_table",
    "tera_log_mel",
    "tiny_s3prl_backbone",
]

# The feature settings of apc_360hr and TERA logMelBase (s3prl's pre-training configs).
APC_AUDIO: dict[str, Any] = {"feat_type": "fbank", "feat_dim": 80, "cmvn": True}
TERA_AUDIO: dict[str, Any] = {
    "target_level": -25,
    "win_ms": 25,
    "hop_ms": 10,
    "n_freq": 201,
    "n_mels": 80,
    "input": {"feat_type": "mel", "log": True, "delta": 0, "cmvn": True},
}
_TERA_TRANSFORMER = {  # defaults completing a TERA transformer config (logMelBase values)
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "share_layer": False,
    "pre_layer_norm": False,
}
_SAMPLE_RATE = 16_000
_EPS = 1e-10


def build_model(family: str, config: dict[str, Any]) -> nn.Module:
    """An s3prl APC or TERA network with random weights, from its architecture config."""
    if family == "apc":
        from s3prl.upstream.apc.apc import APC

        return APC(
            config["input_size"],
            config["hidden_size"],
            config["num_layers"],
            config.get("dropout", 0.0),
            config.get("residual", True),
        )
    from s3prl.upstream.mockingjay.model import TransformerConfig, TransformerModel

    full = {**_TERA_TRANSFORMER, **config}
    return TransformerModel(TransformerConfig(full), int(full["input_dim"]))


# ----------------------------------------------------------------------------- features


def kaldi_fbank_cmvn(waveform: torch.Tensor, audio: dict[str, Any]) -> torch.Tensor:
    """APC's features for one clip ``[S]`` → ``[T, bands]``: Kaldi fbank then CMVN over time.

    CMVN is ``(x − mean) / (1e-10 + std)`` with the unbiased std, as s3prl's ``CMVN``.
    """
    # Outside inference mode even when called inside it: kaldi's module-level EPSILON is created
    # at first import, and an inference tensor there breaks every later waveform gradient.
    with torch.inference_mode(False):
        from torchaudio.compliance import kaldi

    options = {
        k: v for k, v in audio.items() if k not in ("feat_type", "feat_dim", "cmvn", "decode_wav")
    }
    features = kaldi.fbank(
        waveform[None, :],
        num_mel_bins=int(audio["feat_dim"]),
        sample_frequency=_SAMPLE_RATE,
        window_type="hamming",
        **options,
    )
    if audio.get("cmvn", True):
        features = (features - features.mean(0, keepdim=True)) / (
            _EPS + features.std(0, keepdim=True)
        )
    return features


class TeraLogMel(nn.Module):
    """TERA's on-the-fly input features for one clip ``[S]`` → ``[T, n_mels]``.

    Matches s3prl's ``OnlinePreprocessor`` for a batch of one clip (mel, log, CMVN, no deltas).
    """

    def __init__(self, audio: dict[str, Any]) -> None:
        super().__init__()
        from torchaudio.functional import melscale_fbanks

        spec = audio.get("input", {})
        if spec.get("feat_type", "mel") != "mel" or int(spec.get("delta", 0)) != 0:
            raise BackboneError(
                f"TERA input features {spec!r} are not supported; trustser reproduces the "
                "logMel configs (feat_type mel, delta 0)."
            )
        self.target_level = float(audio.get("target_level", -25))
        self.win = round(audio.get("win_ms", 25) * _SAMPLE_RATE / 1000)
        self.hop = round(audio.get("hop_ms", 10) * _SAMPLE_RATE / 1000)
        self.n_fft = (int(audio.get("n_freq", 201)) - 1) * 2
        self.log = bool(spec.get("log", True))
        self.cmvn = bool(spec.get("cmvn", True))
        n_mels = int(audio.get("n_mels", 80))
        fbanks = melscale_fbanks(self.n_fft // 2 + 1, 0.0, _SAMPLE_RATE / 2, n_mels, _SAMPLE_RATE)
        self.register_buffer("fbanks", fbanks, persistent=False)  # [freq, mels]
        self.register_buffer("window", torch.hann_window(self.win), persistent=False)

    def frame_count(self, num_samples: int) -> int:
        return 1 + num_samples // self.hop  # centred STFT

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        rms = waveform.pow(2).mean().sqrt()
        waveform = waveform * (10 ** (self.target_level / 20)) / (rms + _EPS)
        stft = torch.stft(
            waveform,
            self.n_fft,
            self.hop,
            win_length=self.win,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        power = stft.abs().pow(2)  # [freq, T]
        mel = torch.matmul(power.transpose(0, 1), self.fbanks)  # [T, mels]
        if self.log:
            mel = (mel + _EPS).log()
        if self.cmvn:
            mel = (mel - mel.mean(0, keepdim=True)) / (mel.std(0, keepdim=True) + _EPS)
        return mel


def tera_log_mel(waveform: torch.Tensor, audio: dict[str, Any] | None = None) -> torch.Tensor:
    """Functional form of :class:`TeraLogMel` (one clip ``[S]`` → ``[T, n_mels]``)."""
    return TeraLogMel(audio or TERA_AUDIO).to(waveform.device)(waveform)


def sinusoid_table(num_positions: int, hidden_size: int) -> torch.Tensor:
    """TERA's positions: ``pos / 10000^(2⌊j/2⌋/H)``, sin on even j, cos on odd j (float32).

    Computed in float64 like s3prl's loop, so the values are identical, in one vectorised step.
    """
    positions = torch.arange(num_positions, dtype=torch.float64)[:, None]
    exponents = 2 * (torch.arange(hidden_size, dtype=torch.float64) // 2) / hidden_size
    angles = positions / torch.pow(torch.tensor(10000.0, dtype=torch.float64), exponents)
    table = torch.empty_like(angles)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.float()


def _kaldi_frame_count(num_samples: int, audio: dict[str, Any]) -> int:
    window = int(_SAMPLE_RATE * float(audio.get("frame_length", 25.0)) / 1000)
    shift = int(_SAMPLE_RATE * float(audio.get("frame_shift", 10.0)) / 1000)
    if audio.get("snip_edges", True):
        return 0 if num_samples < window else 1 + (num_samples - window) // shift
    return (num_samples + shift // 2) // shift


def _stack_padded(features: list[torch.Tensor]) -> torch.Tensor:
    return nn.utils.rnn.pad_sequence(features, batch_first=True)


# ----------------------------------------------------------------------------- backbones


class APCBackbone(Backbone):
    """s3prl APC: all GRU layer outputs from the waveform."""

    def __init__(self, model: nn.Module, spec: BackboneSpec, *, audio: dict[str, Any]) -> None:
        super().__init__()
        self.spec = spec
        self.model = model
        self.audio = dict(audio)
        self.num_layers = model.num_layers
        self.dim = model.hidden_size
        self.frame_rate = 1000.0 / float(self.audio.get("frame_shift", 10.0))
        self.masks_padding = True
        self.min_samples = int(_SAMPLE_RATE * float(self.audio.get("frame_length", 25.0)) / 1000)
        self.freeze()

    def frame_count(self, num_samples: int) -> int:
        return _kaldi_frame_count(num_samples, self.audio)

    def extra_provenance(self) -> dict[str, Any]:
        return {"audio": self.audio}

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        waveforms, lengths = self.check_batch(waveforms, lengths)
        frame_lengths = self.frame_counts(lengths)
        features = _stack_padded(
            [kaldi_fbank_cmvn(waveforms[b, : int(n)], self.audio) for b, n in enumerate(lengths)]
        )
        total = features.shape[1]
        inputs = pack_padded_sequence(
            features, frame_lengths, batch_first=True, enforce_sorted=False
        )
        states = []
        for index, gru in enumerate(self.model.rnn_layers):
            packed, _ = run_rnn(gru, inputs)  # differentiable on CUDA in eval mode
            outputs, _ = pad_packed_sequence(packed, batch_first=True, total_length=total)
            if self.model.rnn_residual and index > 0:
                previous, _ = pad_packed_sequence(inputs, batch_first=True, total_length=total)
                outputs = outputs + previous
            states.append(outputs)
            inputs = pack_padded_sequence(
                outputs, frame_lengths, batch_first=True, enforce_sorted=False
            )
        hidden = torch.stack(states, dim=1)
        return pad_frames(hidden, frame_lengths), frame_lengths

    # ------------------------------------------------------------------ top blocks (fine-tuning)

    def top_block_sources(self, k: int) -> dict[str, str]:
        check_top_blocks_k(self.spec.name, k, self.num_layers)
        first = self.num_layers - k
        return {f"blocks.{i}": f"model.rnn_layers.{first + i}" for i in range(k)}

    def top_blocks(self, k: int) -> APCTopBlocks:
        """The top ``k`` GRU layers; ``k ≤ L − 1``, as the first GRU reads the fbank, not a
        cached layer."""
        sources = self.top_block_sources(k)
        first = self.num_layers - k
        return APCTopBlocks(
            list(self.model.rnn_layers[first:]),
            self.model.rnn_dropout,
            residual=bool(self.model.rnn_residual),
            k=k,
            num_layers=self.num_layers,
            dim=self.dim,
            backbone=self.spec.name,
            sources=sources,
        )


class APCTopBlocks(TopBlocks):
    """APC's top GRU layers over packed sequences, each with its residual connection.

    Trained: the ``k`` copied ``nn.GRU`` s (``weight_ih_l0``, ``weight_hh_l0`` and biases). APC
    has no final norm. In train mode s3prl's ``rnn_dropout`` acts on each GRU's output before
    the residual, as in APC's own forward.
    """

    family = "apc"

    def __init__(
        self, grus: list[nn.Module], dropout: nn.Module, *, residual: bool, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        *blocks, dropout = copy_modules(*grus, dropout)
        self.blocks = nn.ModuleList(blocks)
        self.dropout = dropout
        self.residual = residual
        self.eval()

    def run_blocks(
        self, hidden: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor
    ) -> list[torch.Tensor]:
        total = hidden.shape[1]
        states = []
        for gru in self.blocks:
            packed = pack_padded_sequence(hidden, lengths, batch_first=True, enforce_sorted=False)
            outputs, _ = pad_packed_sequence(
                run_rnn(gru, packed)[0], batch_first=True, total_length=total
            )
            outputs = self.dropout(outputs)
            if self.residual:  # every GRU above the first has the residual connection
                outputs = outputs + hidden
            states.append(outputs)
            hidden = outputs
        return states


class TERABackbone(Backbone):
    """s3prl TERA: input representation and every transformer layer from the waveform."""

    def __init__(
        self, model: nn.Module, spec: BackboneSpec, *, audio: dict[str, Any], max_frames: int
    ) -> None:
        super().__init__()
        self.spec = spec
        self.model = model
        self.audio = dict(audio)
        self.features = TeraLogMel(self.audio)
        self.max_frames = max_frames  # s3prl forwards longer inputs in chunks of this many frames
        hidden = model.config.hidden_size
        self.num_layers = model.config.num_hidden_layers + 1
        self.dim = hidden
        self.frame_rate = _SAMPLE_RATE / self.features.hop
        self.masks_padding = True
        self.min_samples = self.features.n_fft // 2 + 1  # reflect padding needs n_fft/2 + 1 samples
        self.freeze()

    def frame_count(self, num_samples: int) -> int:
        return self.features.frame_count(num_samples)

    def extra_provenance(self) -> dict[str, Any]:
        return {"audio": self.audio, "max_frames": self.max_frames}

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        waveforms, lengths = self.check_batch(waveforms, lengths)
        frame_lengths = self.frame_counts(lengths)
        features = [self.features(waveforms[b, : int(n)]) for b, n in enumerate(lengths)]
        if self.max_frames > 0 and int(frame_lengths.max()) > self.max_frames:
            # long clips: each one alone, in s3prl's equal chunks (positions restart per chunk)
            width = int(frame_lengths.max())
            clips = [self._chunked(f) for f in features]
            hidden = torch.stack(
                [nn.functional.pad(h, (0, 0, 0, width - h.shape[1])) for h in clips]
            )
        else:
            hidden = self._encode(_stack_padded(features), frame_lengths)
        return pad_frames(hidden, frame_lengths), frame_lengths

    def _chunked(self, features: torch.Tensor) -> torch.Tensor:
        pieces = torch.chunk(features, math.ceil(features.shape[0] / self.max_frames), dim=0)
        outputs = [
            self._encode(p[None], torch.tensor([p.shape[0]]))[0] for p in pieces
        ]  # each [L, t, D]
        return torch.cat(outputs, dim=1)

    def _encode(self, features: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        steps = features.shape[1]
        positions = sinusoid_table(steps, self.dim).to(features.device)
        positions = positions.expand(features.shape[0], -1, -1)
        mask = length_mask(frame_lengths.to(features.device), steps).to(features.dtype)
        layers = self.model(features, positions, mask, output_all_encoded_layers=True)
        return torch.stack(layers, dim=1)

    # ------------------------------------------------------------------ top blocks (fine-tuning)

    def top_block_sources(self, k: int) -> dict[str, str]:
        check_top_blocks_k(self.spec.name, k, self.num_layers)
        config = self.model.config
        if getattr(config, "pre_layer_norm", False) or getattr(config, "share_layer", False):
            setting = "pre_layer_norm" if config.pre_layer_norm else "share_layer"
            raise TopBlocksError(
                f"{self.spec.name}: top blocks of a TERA transformer with {setting}=True cannot "
                "be fed from the cache ("
                + (
                    "its stored layers are LayerNorm(h), not the blocks' input h"
                    if setting == "pre_layer_norm"
                    else "its layers share one set of weights, so training the top one changes "
                    "every cached layer"
                )
                + "); fine-tune it end to end instead."
            )
        first = self.num_layers - 1 - k
        return {f"blocks.{i}": f"model.encoder.layer.{first + i}" for i in range(k)}

    def top_blocks(self, k: int) -> TERATopBlocks:
        """The top ``k`` post-LN transformer layers (with s3prl's chunking of long inputs)."""
        sources = self.top_block_sources(k)
        first = self.num_layers - 1 - k
        return TERATopBlocks(
            list(self.model.encoder.layer[first:]),
            max_frames=self.max_frames,
            k=k,
            num_layers=self.num_layers,
            dim=self.dim,
            backbone=self.spec.name,
            sources=sources,
        )


class TERATopBlocks(TopBlocks):
    """TERA's top transformer layers (post-LN: each layer ends with its own LayerNorm, so there
    is no final norm).

    Trained: every tensor of the ``k`` copied ``TransformerLayer`` s. The attention mask is
    s3prl's additive ``−10000`` on padded keys; a clip longer than ``max_frames`` attends only
    within the chunks the backbone splits it into (``torch.chunk`` into ``⌈T / max_frames⌉``
    pieces), so chunked clips stay the same model too.
    """

    family = "tera"

    def __init__(self, layers: list[nn.Module], *, max_frames: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.blocks = nn.ModuleList(copy_modules(*layers))
        self.max_frames = int(max_frames)
        self.eval()

    def _chunk_ids(self, lengths: torch.Tensor, steps: int) -> torch.Tensor | None:
        """``[B, T]`` chunk index of each frame, or None when no clip is chunked."""
        if self.max_frames <= 0 or int(lengths.max()) <= self.max_frames:
            return None
        positions = torch.arange(steps)
        ids = []
        for length in lengths.tolist():
            pieces = math.ceil(length / self.max_frames)
            size = math.ceil(length / pieces)  # torch.chunk's piece length
            ids.append(positions // size)
        return torch.stack(ids)

    def run_blocks(
        self, hidden: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor
    ) -> list[torch.Tensor]:
        keys = mask[:, None, None, :]  # [B, 1, 1, T]
        chunks = self._chunk_ids(lengths, hidden.shape[1])
        if chunks is not None:
            chunks = chunks.to(hidden.device)
            keys = keys & (chunks[:, :, None] == chunks[:, None, :])[:, None]  # [B, 1, T, T]
        attention = (1.0 - keys.to(hidden.dtype)) * -10000.0
        states = []
        for block in self.blocks:
            hidden = block(hidden, attention, None)
            states.append(hidden)
        return states


# ----------------------------------------------------------------------------- loading


def tiny_s3prl_backbone(family: str, model: nn.Module, spec: BackboneSpec) -> Backbone:
    """Wrap a tiny random APC/TERA network with the real models' feature settings."""
    if family == "apc":
        return APCBackbone(model, spec, audio=APC_AUDIO)
    return TERABackbone(model, spec, audio=TERA_AUDIO, max_frames=1500)


def _locate_checkpoint(spec: BackboneSpec) -> Path:
    """Find a registry checkpoint: s3prl's download cache, then the Hugging Face cache/Hub."""
    info = spec.extra["checkpoint"]
    tried = []
    digest = hashlib.sha256(info["url"].encode()).hexdigest()
    cached = Path.home() / ".cache" / "s3prl" / "download" / f"{digest}.{Path(info['url']).name}"
    tried.append(f"s3prl's download cache ({cached})")
    if cached.is_file():
        return cached
    tried.append(f"the Hugging Face cache/Hub ({info['repo_id']}/{info['filename']})")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(hf_hub_download(info["repo_id"], info["filename"]))
    except (OSError, EntryNotFoundError) as error:  # offline, unreachable, missing repo/file
        reason = str(error).strip().splitlines()
        tried[-1] += f": {reason[0] if reason else type(error).__name__}"
        raise WeightsNotFoundError(
            f"backbone {spec.name!r}: checkpoint not found; tried {'; '.join(tried)}. "
            f"To supply a local copy, download {info['url']} on a connected machine and use "
            f"`s3prl:{spec.family}:/path/to/{Path(info['filename']).name}`, or copy the Hugging "
            "Face cache (~/.cache/huggingface/hub) here."
        ) from None


def _read_checkpoint(path: Path, name: str) -> dict[str, Any]:
    if not path.is_file():
        raise WeightsNotFoundError(
            f"backbone {name!r}: checkpoint file {str(path)!r} does not exist."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise BackboneError(
            f"backbone {name!r}: {str(path)!r} holds Python objects beyond tensors and plain "
            f"values, which trustser does not unpickle ({str(error).splitlines()[0]}). Re-save "
            "only the model weights and config (in an environment you trust) and point at that."
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise BackboneError(
            f"backbone {name!r}: cannot read {str(path)!r} as a torch checkpoint ({error})."
        ) from None
    if not isinstance(state, dict):
        raise BackboneError(
            f"backbone {name!r}: {str(path)!r} is not an s3prl checkpoint (no dict)."
        )
    return state


def _apc_from_state(state: dict[str, Any], spec: BackboneSpec) -> Backbone:
    try:
        config = state["config"]
        audio = dict(config["data"]["audio"])
        paras = dict(config["model"]["paras"])
        weights = state["model"]
    except (KeyError, TypeError):
        raise BackboneError(
            f"backbone {spec.name!r}: {spec.source!r} is not an s3prl APC checkpoint "
            "(expected keys config.data.audio, config.model.paras, model)."
        ) from None
    if paras.get("vq"):
        raise BackboneError(f"backbone {spec.name!r}: VQ-APC checkpoints are not supported.")
    model_config = {"input_size": int(audio["feat_dim"]), **paras}
    model = build_model("apc", model_config)
    model.load_state_dict(weights)
    return APCBackbone(model.float(), spec, audio=audio)


def _tera_from_state(state: dict[str, Any], spec: BackboneSpec) -> Backbone:
    config = None
    for key in ("Upstream_Config", "Config"):
        candidate = state.get(key)
        if isinstance(candidate, dict) and "transformer" in candidate:
            config = candidate
            break
    if config is None or "Transformer" not in state:
        raise BackboneError(
            f"backbone {spec.name!r}: {spec.source!r} is not an s3prl TERA checkpoint "
            "(expected a config with 'transformer' and a 'Transformer' state dict)."
        )
    audio = config.get("audio")
    if not isinstance(audio, dict) or "kaldi" in audio:
        raise BackboneError(
            f"backbone {spec.name!r}: only TERA checkpoints with on-the-fly log-mel features are "
            "supported (config.audio with target_level, n_mels, input.feat_type=mel)."
        )
    features = TeraLogMel(audio)
    transformer = {**config["transformer"], "input_dim": features.fbanks.shape[1]}
    model = build_model("tera", transformer)
    weights = {
        k.replace("gamma", "weight").replace("beta", "bias"): v
        for k, v in state["Transformer"].items()
    }
    model.load_state_dict(weights)
    max_frames = int(config.get("task", {}).get("sequence_length", 0))
    return TERABackbone(model.float(), spec, audio=audio, max_frames=max_frames)


def load_s3prl(spec: BackboneSpec) -> Backbone:
    """Load a registry APC/TERA or an ``s3prl:<upstream>:<path>`` checkpoint without unpickling."""
    if "checkpoint" in spec.extra:
        path = _locate_checkpoint(spec)
    else:
        path = Path(spec.source).expanduser()
    state = _read_checkpoint(path, spec.name)
    spec = dataclasses.replace(
        spec,
        extra={**spec.extra, "checkpoint": {**spec.extra.get("checkpoint", {}), "path": str(path)}},
    )
    if spec.family == "apc":
        return _apc_from_state(state, spec)
    return _tera_from_state(state, spec)
