r"""GE2E: the speaker-verification LSTM that the PyPI package ``resemblyzer`` ships, run in torch.

The encoder (Wan et al., 2018, "Generalized end-to-end loss for speaker verification"; weights
trained by resemblyzer's authors) is a 3-layer LSTM (256 units) over a 40-band mel spectrogram,
with a linear projection (256 → 256) and ReLU on the last layer's final state as the speaker
embedding. Only the weights file ``resemblyzer/pretrained.pt`` is used (read with
``torch.load(weights_only=True)``, without importing the package, whose audio code needs librosa
and webrtcvad); the features are recomputed here, differentiably:

1. **Volume.** Each clip is raised to −30 dBFS when its RMS is below that, never lowered
   (resemblyzer's ``normalize_volume(increase_only=True)``):
   :math:`x \leftarrow x \cdot \max(1,\ 10^{-30/20} / \mathrm{RMS}(x))`, RMS over the clip's own
   samples. resemblyzer's voice-activity trimming (webrtcvad) is not applied.
2. **Mel** (librosa's ``melspectrogram`` with resemblyzer's settings): power spectrogram
   :math:`|\mathrm{STFT}|^2` (n_fft 400 = 25 ms, hop 160 = 10 ms, periodic Hann, centred,
   zero padding) times 40 Slaney-scale mel filters over 0–8 kHz with Slaney (area) normalisation.
   No logarithm. ``1 + ⌊S / 160⌋`` frames for ``S`` samples.
3. **LSTM**, one layer at a time, over the padded batch. The LSTM is unidirectional, so frame t
   depends on frames ≤ t only: the padding after a clip never reaches its frames, and the states
   computed over the padding are set to zero. (Packed sequences give the same frames, but their
   backward pass — every attack step — is about 4× slower on the CPU.)

Hidden states (L = 3, D = 256): the output sequence of each LSTM layer. There is no layer 0 (the
input is the 40-wide mel), and the projection is *not* a layer: it was trained on the final state
of 1.6 s windows only, and its per-frame output, ``ReLU(W h_t + b)``, is a fixed function of the
last layer that any head can learn. The speaker embedding itself is :meth:`GE2EBackbone.embed`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trustser.backbones.base import Backbone, BackboneSpec, pad_frames
from trustser.backbones.errors import BackboneError, WeightsNotFoundError
from trustser.backbones.rnn import run_rnn
from trustser.metrics.verification import equal_error_rate

__all__ = [
    "GE2E_CONFIG",
    "GE2E_MEL",
    "GE2EBackbone",
    "GE2EEncoder",
    "GE2EMel",
    "build_network",
    "equal_error_rate",
    "load_ge2e",
    "mel_frame_count",
    "partial_windows",
    "raise_volume",
    "resemblyzer_weights",
    "verification_eer",
]

SAMPLE_RATE = 16_000
GE2E_CONFIG: dict[str, int] = {
    "input_size": 40,
    "hidden_size": 256,
    "num_layers": 3,
    "embedding_size": 256,
}
GE2E_MEL: dict[str, Any] = {  # resemblyzer's hparams, in librosa's terms
    "n_fft": 400,
    "hop_length": 160,
    "n_mels": 40,
    "window": "hann (periodic)",
    "center": True,
    "pad_mode": "constant",
    "power": 2.0,
    "mel_scale": "slaney",
    "norm": "slaney",
    "log": False,
}
TARGET_DBFS = -30.0
PARTIAL_FRAMES = 160  # 1.6 s windows for the utterance embedding
PARTIAL_RATE = 1.3  # windows per second
MIN_COVERAGE = 0.75  # a last window less covered than this is dropped (unless it is the only one)
_RMS_FLOOR = 1e-8  # digital silence: a finite gain (resemblyzer divides by zero)


def mel_frame_count(num_samples: int) -> int:
    """Frames of the centred STFT: ``1 + ⌊S / 160⌋``."""
    return 1 + num_samples // GE2E_MEL["hop_length"]


def raise_volume(
    waveforms: torch.Tensor, lengths: torch.Tensor, target_dbfs: float = TARGET_DBFS
) -> torch.Tensor:
    """Scale each clip up to ``target_dbfs`` (RMS over its own samples) when below; never down.

    ``waveforms [B, S]`` must be zero past each length (as ``Backbone.check_batch`` leaves them).
    """
    lengths = lengths.to(waveforms.device)
    energy = waveforms.pow(2).sum(dim=1) / lengths.clamp_min(1).to(waveforms.dtype)
    rms = energy.clamp_min(_RMS_FLOOR**2).sqrt()
    gain = torch.clamp(10 ** (target_dbfs / 20) / rms, min=1.0)
    return waveforms * gain[:, None]


class GE2EMel(nn.Module):
    """``[B, S]`` waveforms → ``[B, 1 + ⌊S/160⌋, 40]`` power mel (librosa's, see the module doc).

    A zero-padded clip's frames equal those of the clip alone: the STFT pads with zeros, so the
    frames near a clip's end see zeros either way.
    """

    def __init__(self) -> None:
        super().__init__()
        from torchaudio.functional import melscale_fbanks

        self.n_fft = int(GE2E_MEL["n_fft"])
        self.hop = int(GE2E_MEL["hop_length"])
        filters = melscale_fbanks(
            self.n_fft // 2 + 1,
            0.0,
            SAMPLE_RATE / 2,
            int(GE2E_MEL["n_mels"]),
            SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        )
        # derived data, not persistent: kept out of checkpoints and weight checksums
        self.register_buffer("filters", filters, persistent=False)  # [201, 40]
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        stft = torch.stft(
            waveforms,
            self.n_fft,
            self.hop,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )  # [B, 201, T]
        power = torch.view_as_real(stft).pow(2).sum(-1)  # |X|², with a gradient at X = 0
        return torch.matmul(power.transpose(1, 2), self.filters)


class GE2EEncoder(nn.Module):
    """The GE2E network: LSTM layers (one module each, so every layer's output is visible) and
    the embedding projection. ``load_resemblyzer_state`` reads resemblyzer's ``model_state``."""

    def __init__(self, config: dict[str, int]) -> None:
        super().__init__()
        self.config = dict(config)
        hidden = int(config["hidden_size"])
        sizes = [int(config["input_size"])] + [hidden] * (int(config["num_layers"]) - 1)
        self.layers = nn.ModuleList(nn.LSTM(size, hidden, batch_first=True) for size in sizes)
        self.linear = nn.Linear(hidden, int(config["embedding_size"]))

    def load_resemblyzer_state(self, state: dict[str, torch.Tensor], *, source: str) -> None:
        """Copy ``lstm.<param>_l{k}`` into layer k and ``linear.*`` into the projection.

        The file's GE2E-loss scalars (``similarity_weight``/``_bias``) are training-only and
        skipped; any other missing or mis-shaped tensor is an error naming ``source``.
        """
        names = {  # this module's name → the file's name
            f"layers.{index}.{param}_l0": f"lstm.{param}_l{index}"
            for index in range(len(self.layers))
            for param in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        }
        names.update({f"linear.{param}": f"linear.{param}" for param in ("weight", "bias")})
        expected = self.state_dict()
        mapped = {ours: state.get(theirs) for ours, theirs in names.items()}
        problems = [
            names[ours]
            for ours, tensor in mapped.items()
            if not isinstance(tensor, torch.Tensor) or tensor.shape != expected[ours].shape
        ]
        if problems:
            raise BackboneError(
                f"{source}: not a GE2E encoder of {self.config} — missing or mis-shaped "
                f"{', '.join(problems[:4])}{' …' if len(problems) > 4 else ''}."
            )
        self.load_state_dict({k: v.float() for k, v in mapped.items()})

    def layer_outputs(self, features: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's output ``[B, T, H]`` for ``features [B, T, F]``.

        Causal: the outputs at frame t depend on ``features[:, : t + 1]`` only, so a zero-padded
        clip's own frames equal those of the clip alone (the caller zeroes the rest).
        """
        outputs, x = [], features
        for layer in self.layers:
            x, _ = run_rnn(layer, x)
            outputs.append(x)
        return outputs

    def embed_windows(self, windows: torch.Tensor) -> torch.Tensor:
        """Speaker embeddings of equal-length mel windows ``[N, T, F]`` → ``[N, E]``, unit norm:
        the last layer's final state → linear → ReLU → L2 normalisation (resemblyzer's forward)."""
        last = self.layer_outputs(windows)[-1][:, -1]
        raw = torch.relu(self.linear(last))
        return raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-12)


def build_network(config: dict[str, int]) -> GE2EEncoder:
    """The GE2E network with random weights (for the registry's parameter count and tests)."""
    return GE2EEncoder(config)


def partial_windows(
    num_samples: int,
    *,
    rate: float = PARTIAL_RATE,
    window_frames: int = PARTIAL_FRAMES,
    min_coverage: float = MIN_COVERAGE,
) -> list[int]:
    """Start frames of the 1.6 s windows that resemblyzer's ``embed_utterance`` averages.

    Windows of ``window_frames`` mel frames start every ``round(16000 / rate / 160)`` frames
    (77 at 1.3 per second) until they cover the clip; the last one is dropped when it covers
    less than ``min_coverage`` of its samples, unless it is the only one.
    """
    hop = int(GE2E_MEL["hop_length"])
    frames = math.ceil((num_samples + 1) / hop)
    step = round(SAMPLE_RATE / rate / hop)
    if not 0 < step <= window_frames:
        raise ValueError(
            f"rate={rate} gives a window step of {step} frames; it must be in 1..{window_frames}."
        )
    starts = list(range(0, max(1, frames - window_frames + step + 1), step))
    coverage = (num_samples - starts[-1] * hop) / (window_frames * hop)
    if coverage < min_coverage and len(starts) > 1:
        starts.pop()
    return starts


class GE2EBackbone(Backbone):
    """GE2E from the waveform: every LSTM layer's output (hidden states) and the utterance
    speaker embedding (:meth:`embed`)."""

    def __init__(self, encoder: GE2EEncoder, spec: BackboneSpec) -> None:
        super().__init__()
        self.spec = spec
        self.encoder = encoder
        self.mel = GE2EMel()
        self.num_layers = len(encoder.layers)
        self.dim = int(encoder.config["hidden_size"])
        self.frame_rate = SAMPLE_RATE / self.mel.hop
        self.masks_padding = True
        self.min_samples = 1
        self.freeze()

    def frame_count(self, num_samples: int) -> int:
        return mel_frame_count(num_samples)

    def extra_provenance(self) -> dict[str, Any]:
        return {
            "mel": dict(GE2E_MEL),
            "volume_target_dbfs": TARGET_DBFS,
            "volume_rule": "raised to the target when below it, never lowered",
            "weights_file_sha256": self.spec.extra.get("weights_file_sha256"),
        }

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        waveforms, lengths = self.check_batch(waveforms, lengths)
        frame_lengths = self.frame_counts(lengths)
        mel = self.mel(raise_volume(waveforms, lengths))[:, : int(frame_lengths.max())]
        hidden = torch.stack(self.encoder.layer_outputs(mel), dim=1)
        return pad_frames(hidden, frame_lengths), frame_lengths

    def embed(
        self,
        waveforms: torch.Tensor,
        lengths: torch.Tensor,
        *,
        rate: float = PARTIAL_RATE,
        min_coverage: float = MIN_COVERAGE,
    ) -> torch.Tensor:
        """Utterance speaker embeddings ``[B, 256]`` (unit norm), as resemblyzer's
        ``embed_utterance`` computes them from an already preprocessed clip: volume raised to
        −30 dBFS, 1.6 s windows (:func:`partial_windows`; the clip zero-padded to the last
        window's end), one unit-norm embedding per window, their mean normalised again."""
        waveforms, lengths = self.check_batch(waveforms, lengths)
        waveforms = raise_volume(waveforms, lengths)
        hop = self.mel.hop
        windows, owners = [], []
        for b, n in enumerate(lengths.tolist()):
            starts = partial_windows(n, rate=rate, min_coverage=min_coverage)
            needed = max(n, (starts[-1] + PARTIAL_FRAMES) * hop)
            clip = nn.functional.pad(waveforms[b, :n], (0, needed - n))
            mel = self.mel(clip[None])[0]
            windows += [mel[s : s + PARTIAL_FRAMES] for s in starts]
            owners += [b] * len(starts)
        partial = self.encoder.embed_windows(torch.stack(windows))
        index = torch.tensor(owners, device=partial.device)
        summed = torch.zeros(len(lengths), partial.shape[1], device=partial.device)
        summed = summed.index_add(0, index, partial)
        return summed / summed.norm(dim=1, keepdim=True).clamp_min(1e-12)


# ----------------------------------------------------------------------------- loading


def resemblyzer_weights() -> tuple[Path, str]:
    """Path of ``resemblyzer/pretrained.pt`` and the package version, without importing it.

    (Importing ``resemblyzer`` needs librosa and webrtcvad; only the weights file is needed.)
    """
    found = importlib.util.find_spec("resemblyzer")
    locations = list(found.submodule_search_locations or []) if found is not None else []
    if not locations:
        raise WeightsNotFoundError(
            "backbone 'ge2e_lstm_offline' needs the PyPI package resemblyzer (it ships the GE2E "
            "weights); install it with `pip install --no-deps resemblyzer` (`make venv` does; its "
            "own dependencies are not needed)."
        )
    path = Path(locations[0]) / "pretrained.pt"
    if not path.is_file():
        raise WeightsNotFoundError(
            f"backbone 'ge2e_lstm_offline': the resemblyzer package at {locations[0]!r} has no "
            "pretrained.pt; reinstall it with `pip install --force-reinstall --no-deps resemblyzer`."
        )
    try:
        version = importlib.metadata.version("resemblyzer")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return path, version


def _read_state(path: Path, name: str) -> dict[str, torch.Tensor]:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise BackboneError(
            f"backbone {name!r}: {str(path)!r} holds Python objects beyond tensors and plain "
            f"values, which trustser does not unpickle ({str(error).splitlines()[0]})."
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise BackboneError(
            f"backbone {name!r}: cannot read {str(path)!r} as a torch checkpoint ({error})."
        ) from None
    state = checkpoint.get("model_state") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise BackboneError(
            f"backbone {name!r}: {str(path)!r} is not a resemblyzer checkpoint (no 'model_state')."
        )
    return state


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_ge2e(spec: BackboneSpec, path: str | Path | None = None) -> GE2EBackbone:
    """GE2E with resemblyzer's weights (``path``: another file in its format; default: the
    installed package's ``pretrained.pt``)."""
    if path is None:
        path, version = resemblyzer_weights()
        revision = f"resemblyzer {version}"
    else:
        path, revision = Path(path), None
        if not path.is_file():
            raise WeightsNotFoundError(f"backbone {spec.name!r}: {str(path)!r} does not exist.")
    encoder = build_network(spec.extra.get("config", GE2E_CONFIG))
    encoder.load_resemblyzer_state(_read_state(path, spec.name), source=str(path))
    extra = {**spec.extra, "resolved_revision": revision, "weights_file_sha256": _file_sha256(path)}
    return GE2EBackbone(encoder, dataclasses.replace(spec, extra=extra))


# ----------------------------------------------------------------------------- verification


def verification_eer(embeddings: np.ndarray | torch.Tensor, speakers: list[str]) -> float:
    """EER of cosine-similarity speaker verification over every pair of distinct clips."""
    vectors = torch.as_tensor(embeddings).double().cpu().numpy()
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.asarray(speakers)
    if len(labels) != len(vectors):
        raise ValueError(f"{len(vectors)} embeddings but {len(labels)} speaker labels.")
    upper = np.triu_indices(len(vectors), k=1)
    scores = (vectors @ vectors.T)[upper]
    same = (labels[:, None] == labels[None, :])[upper]
    return equal_error_rate(scores, same)
