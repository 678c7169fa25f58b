"""APC and TERA: features and layers equal s3prl's own modules; safe checkpoint loading."""

from __future__ import annotations

import copy

import pytest
import torch

from trustser.backbones import BackboneError, load_backbone
from trustser.backbones.s3prl_models import (
    APC_AUDIO,
    TERA_AUDIO,
    TeraLogMel,
    kaldi_fbank_cmvn,
    sinusoid_table,
)
from trustser.backbones.tiny import build_tiny_model, tiny_config


@pytest.fixture(scope="module")
def wave() -> torch.Tensor:
    return 0.1 * torch.randn(20_000, generator=torch.Generator().manual_seed(0))


def test_apc_features_equal_s3prl(wave):
    from s3prl.upstream.apc.audio import create_transform

    transform, _ = create_transform(dict(APC_AUDIO))
    torch.testing.assert_close(kaldi_fbank_cmvn(wave, APC_AUDIO), transform(wave[None]))


@pytest.mark.filterwarnings("ignore:At least one mel filterbank:UserWarning")  # s3prl's MFCC
def test_tera_features_equal_s3prl_online_preprocessor(wave):
    from s3prl.upstream.baseline.preprocessor import get_preprocessor

    audio = copy.deepcopy(TERA_AUDIO)
    preprocessor, _, _ = get_preprocessor(audio, process_input_only=True)
    scaled = wave * (10 ** (-25 / 20)) / (wave.pow(2).mean().sqrt() + 1e-10)  # s3prl's dB scaling
    expected = preprocessor(scaled.view(1, 1, -1), wavs_len=[wave.numel()])[0][0]
    got = TeraLogMel(TERA_AUDIO)(wave)
    assert got.shape == expected.shape == (126, 80)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_vectorised_sinusoid_table_equals_s3prl_loop():
    from s3prl.upstream.mockingjay.builder import get_sinusoid_table

    expected = get_sinusoid_table(8)  # s3prl's Python loop over 24000 positions
    assert torch.equal(sinusoid_table(expected.shape[0], 8), expected)


def test_apc_layers_equal_s3prl_forward(wave):
    backbone = load_backbone("tiny:apc", device="cpu")
    features = kaldi_fbank_cmvn(wave, APC_AUDIO)[None]
    with torch.no_grad():
        _, last = backbone.model(features, torch.tensor([features.shape[1]]), testing=True)
        hidden, frames = backbone(wave[None], torch.tensor([wave.numel()]))
    assert int(frames[0]) == features.shape[1] == backbone.frame_count(wave.numel())
    torch.testing.assert_close(hidden[0, -1], last[0])


def test_tera_long_clips_run_in_s3prl_chunks(wave):
    backbone = load_backbone("tiny:tera", device="cpu")
    backbone.max_frames = 50  # force the chunked path (s3prl: sequence_length)
    waves = torch.stack([wave, torch.roll(wave, 100)])
    lengths = torch.tensor([20_000, 9_000])
    with torch.no_grad():
        hidden, frames = backbone(waves, lengths)
        alone, _ = backbone(waves[1:, :9_000], lengths[1:])
        features = backbone.features(wave)
        chunk = backbone._encode(features[None, :42], torch.tensor([42]))  # 126 frames → 3 × 42
    assert frames.tolist() == [126, 57]
    torch.testing.assert_close(hidden[1, :, :57], alone[0])
    torch.testing.assert_close(hidden[0, :, :42], chunk[0])


def _apc_checkpoint(model: torch.nn.Module) -> dict:
    config = tiny_config("apc")
    return {
        "config": {
            "data": {"audio": dict(APC_AUDIO)},
            "model": {
                "paras": {k: config[k] for k in ("hidden_size", "num_layers", "residual")}
                | {"dropout": 0.1}
            },
        },
        "model": model.state_dict(),
        "step": 1000,
    }


def _tera_checkpoint(model: torch.nn.Module) -> dict:
    transformer = tiny_config("tera") | {
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "share_layer": False,
        "pre_layer_norm": False,
        "input_dim": -1,
    }
    weights = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma"): v for k, v in model.state_dict().items()
    }
    return {
        "Upstream_Config": {
            "transformer": transformer,
            "audio": copy.deepcopy(TERA_AUDIO),
            "task": {"sequence_length": 1500},
        },
        "Transformer": weights,
        "Optimizer": {"state": {}, "param_groups": [{"lr": 2e-4}]},
    }


@pytest.mark.parametrize("family", ["apc", "tera"])
def test_local_checkpoint_loads_like_the_tiny_model(tmp_path, wave, family):
    model = build_tiny_model(family)
    state = _apc_checkpoint(model) if family == "apc" else _tera_checkpoint(model)
    path = tmp_path / f"{family}.ckpt"
    torch.save(state, path)
    loaded = load_backbone(f"s3prl:{family}:{path}", device="cpu")
    reference = load_backbone(f"tiny:{family}", device="cpu")
    assert loaded.provenance()["weights_sha256"] == reference.provenance()["weights_sha256"]
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(wave[None], torch.tensor([wave.numel()]))[0],
            reference(wave[None], torch.tensor([wave.numel()]))[0],
        )


class _Payload:
    """Stands for an arbitrary pickled object inside a checkpoint."""


def test_checkpoints_with_python_objects_are_not_unpickled(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"config": _Payload(), "model": {}}, path)
    with pytest.raises(BackboneError, match="does not unpickle"):
        load_backbone(f"s3prl:apc:{path}", device="cpu")


def test_wrong_checkpoint_kind_is_named(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(BackboneError, match="not an s3prl TERA checkpoint"):
        load_backbone(f"s3prl:tera:{path}", device="cpu")
    with pytest.raises(BackboneError, match="does not exist"):
        load_backbone(f"s3prl:apc:{tmp_path / 'missing.ckpt'}", device="cpu")
