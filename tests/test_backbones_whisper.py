"""Whisper: torch log-mel vs WhisperFeatureExtractor, the hand-run encoder vs transformers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trustser.backbones import load_backbone
from trustser.backbones.logmel import WhisperLogMel, mel_frame_count
from trustser.backbones.whisper import encoder_frame_count


@pytest.fixture(scope="module")
def speechlike() -> torch.Tensor:
    """2.5 s of a gliding harmonic tone with noise: a broad, speech-like spectrum."""
    rng = np.random.default_rng(0)
    t = np.arange(40_000) / 16_000
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16_000
    wave = sum(np.sin(k * phase) / k for k in range(1, 12)) * 0.1 + 0.005 * rng.standard_normal(
        t.size
    )
    return torch.tensor(wave, dtype=torch.float32)[None]


def _extractor_features(wave: torch.Tensor) -> torch.Tensor:
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(feature_size=80)
    features = extractor(wave[0].numpy(), sampling_rate=16_000, return_tensors="np").input_features
    return torch.from_numpy(features)


def test_log_mel_matches_whisper_feature_extractor(speechlike):
    reference = _extractor_features(speechlike)  # [1, 80, 3000], numpy (or its torch path)
    log_mel = WhisperLogMel(80)
    full = log_mel(speechlike, torch.tensor([speechlike.shape[1]]), num_frames=3000)
    assert (full - reference).abs().max() <= 1e-4
    trimmed = log_mel(speechlike, torch.tensor([speechlike.shape[1]]))
    frames = mel_frame_count(speechlike.shape[1])
    assert trimmed.shape == (1, 80, frames) == (1, 80, 250)
    assert (trimmed - reference[..., :frames]).abs().max() <= 1e-4


def test_log_mel_passes_gradients(speechlike):
    wave = speechlike.clone().requires_grad_(True)
    WhisperLogMel(80)(wave, torch.tensor([wave.shape[1]])).sum().backward()
    assert torch.isfinite(wave.grad).all() and wave.grad.abs().sum() > 0


def test_30s_window_equals_transformers_encoder(speechlike):
    backbone = load_backbone("tiny:whisper", device="cpu", window="30s")
    reference = _extractor_features(speechlike)
    lengths = torch.tensor([speechlike.shape[1]])
    with torch.no_grad():
        expected = backbone.encoder(reference, output_hidden_states=True).hidden_states
        hidden, frames = backbone(speechlike, lengths)
    assert len(expected) == backbone.num_layers == hidden.shape[1]
    t = int(frames[0])
    assert t == 125
    for layer, state in enumerate(expected):
        torch.testing.assert_close(hidden[0, layer], state[0, :t], atol=1e-4, rtol=1e-4)


def test_trimmed_window_differs_from_30s_through_attention(speechlike):
    trimmed = load_backbone("tiny:whisper", device="cpu")
    padded = load_backbone("tiny:whisper", device="cpu", window="30s")
    lengths = torch.tensor([speechlike.shape[1]])
    with torch.no_grad():
        a, fa = trimmed(speechlike, lengths)
        b, fb = padded(speechlike, lengths)
    assert torch.equal(fa, fb) and a.shape == b.shape
    # conv front end + positions agree except the last frame, whose conv window reaches past the
    # clip: zeros in the trimmed encoder, the silent window's log-mel floor in the 30 s window
    torch.testing.assert_close(a[:, 0, :-1], b[:, 0, :-1])
    assert (a[:, -1] - b[:, -1]).abs().max() > 1e-3  # attention over the padding changes layers


@pytest.mark.parametrize(
    ("samples", "frames"), [(96_000, 300), (160, 1), (319, 1), (320, 1), (480, 2), (96_160, 301)]
)
def test_frame_count_formula(samples, frames):
    assert encoder_frame_count(mel_frame_count(samples)) == frames
    assert load_backbone("tiny:whisper", device="cpu").frame_count(samples) == frames


def test_hf_directory_round_trip(tmp_path, speechlike):
    """hf:<dir> loads a saved WhisperModel's encoder; features equal the in-memory encoder's."""
    from transformers import WhisperConfig, WhisperModel

    from trustser.backbones.tiny import tiny_config

    torch.manual_seed(0)
    model = WhisperModel(WhisperConfig(**tiny_config("whisper"))).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = load_backbone(f"hf:{tmp_path}", device="cpu")
    assert loaded.spec.family == "whisper" and loaded.num_layers == 3
    reference = load_backbone("tiny:whisper", device="cpu")
    reference.encoder.load_state_dict(model.encoder.state_dict())
    lengths = torch.tensor([speechlike.shape[1]])
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(speechlike, lengths)[0], reference(speechlike, lengths)[0]
        )
    assert loaded.provenance()["weights_sha256"] == reference.provenance()["weights_sha256"]
