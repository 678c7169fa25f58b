"""The backbone contract on every tiny family: shapes, exact frame counts, padding, gradients."""

from __future__ import annotations

import pytest
import torch

from trustser.backbones import (
    REGISTRY,
    TINY_FAMILIES,
    BackboneInputError,
    UnknownBackboneError,
    WeightsNotFoundError,
    describe_backbone,
    list_backbones,
    load_backbone,
    resolve_spec,
)
from trustser.heads.estimator import HeadClassifier

# Lengths chosen to hit odd mel/conv boundaries: 2 s, 1.3 s + 7 samples, 0.8 s + 99 samples.
LENGTHS = (32_000, 20_807, 12_899)


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    waveforms = 0.1 * torch.randn(len(LENGTHS), max(LENGTHS), generator=generator)
    return waveforms, torch.tensor(LENGTHS)


@pytest.fixture(scope="module")
def tiny() -> dict[str, object]:
    return {family: load_backbone(f"tiny:{family}", device="cpu") for family in TINY_FAMILIES}


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_shapes_frame_counts_and_frozen(tiny, family):
    backbone = tiny[family]
    spec = resolve_spec(f"tiny:{family}")
    waveforms, lengths = _batch()
    with torch.no_grad():
        hidden, frame_lengths = backbone(waveforms, lengths)
    expected = [backbone.frame_count(n) for n in LENGTHS]
    assert frame_lengths.tolist() == expected
    assert hidden.shape == (3, backbone.num_layers, max(expected), backbone.dim)
    assert (backbone.num_layers, backbone.dim, backbone.frame_rate) == (
        spec.num_layers,
        spec.dim,
        spec.frame_rate,
    )
    assert torch.isfinite(hidden).all()
    for b, frames in enumerate(expected):  # padding frames are zero, real ones are not
        assert hidden[b, :, frames:].abs().sum() == 0
        assert hidden[b, :, :frames].abs().sum() > 0
    assert not backbone.training
    assert not any(p.requires_grad for p in backbone.parameters())
    backbone.train()
    assert not backbone.training and not any(m.training for m in backbone.modules())


MASKING = ("wav2vec2_layer", "whisper", "apc", "tera")  # masks_padding True
NON_MASKING = ("wav2vec2", "wavlm", "hubert", "data2vec")  # GroupNorm front ends, data2vec


def test_every_tiny_family_is_in_one_of_the_two_lists(tiny):
    assert set(MASKING) | set(NON_MASKING) == set(TINY_FAMILIES)
    assert all(tiny[f].masks_padding for f in MASKING)
    assert not any(tiny[f].masks_padding for f in NON_MASKING)


@pytest.mark.parametrize("family", MASKING)
def test_masking_families_do_not_leak_padding(tiny, family):
    """A clip inside a padded batch, with garbage in the padding, equals the clip alone."""
    backbone = tiny[family]
    waveforms, lengths = _batch(seed=1)
    waveforms[1, LENGTHS[1] :] = 0.5  # garbage in the padding must not matter
    waveforms[2, LENGTHS[2] :] = -0.7
    with torch.no_grad():
        hidden, frame_lengths = backbone(waveforms, lengths)
        for b, length in enumerate(LENGTHS):
            alone, alone_frames = backbone(waveforms[b : b + 1, :length], lengths[b : b + 1])
            frames = int(frame_lengths[b])
            assert int(alone_frames[0]) == frames
            torch.testing.assert_close(hidden[b, :, :frames], alone[0], atol=2e-5, rtol=1e-4)


def _equal_length_corpus(root, toy_manifest_factory):
    """24 clips of three lengths (several clips share each), so a batcher could mix them."""
    import numpy as np

    sizes = (4_800, 6_400, 8_000)

    def clip(rng, index, emotion):
        n = sizes[int(rng.integers(len(sizes)))]
        t = np.arange(n) / 16_000
        return 0.2 * np.sin(2 * np.pi * 150 * (index + 1) * t) + 0.01 * rng.standard_normal(n)

    return toy_manifest_factory(root, takes=1, clip=clip)  # 6 speakers × 4 emotions


def _recording(backbone):
    """``backbone`` with a hook that records the clip lengths of every forward call."""
    calls: list[list[int]] = []
    backbone.register_forward_pre_hook(lambda module, args: calls.append(args[1].tolist()))
    return calls


@pytest.mark.parametrize("family", NON_MASKING)
def test_extraction_never_mixes_lengths_for_families_that_cannot_mask(
    tmp_path, toy_manifest_factory, family
):
    from trustser.extract import extract

    manifest = _equal_length_corpus(tmp_path / "corpus", toy_manifest_factory)
    lengths = [u.num_frames for u in manifest]
    assert len(set(lengths)) < len(lengths) and len(set(lengths)) > 1
    backbone = load_backbone(f"tiny:{family}", device="cpu")
    calls = _recording(backbone)
    extract(manifest, tmp_path / "cache.zarr", backbone, device="cpu", progress=False)
    assert sum(len(c) for c in calls) == len(manifest)
    assert all(len(set(c)) == 1 for c in calls), calls  # one length per forward batch
    assert any(len(c) > 1 for c in calls)  # equal lengths still share a batch


def test_attacks_never_mix_lengths_for_families_that_cannot_mask(
    tmp_path, toy_manifest_factory, monkeypatch
):
    import trustser.backbones as backbones
    from trustser.attacks.runner import run_attack
    from trustser.extract import extract
    from trustser.heads.training import fit_heads

    manifest = _equal_length_corpus(tmp_path / "corpus", toy_manifest_factory)
    store, runs = tmp_path / "cache.zarr", tmp_path / "runs"
    extract(manifest, store, "tiny:wav2vec2", device="cpu", progress=False)
    fit_heads(store, None, HeadClassifier(epochs=1, device="cpu"), runs=runs)
    calls: list[list[int]] = []
    real = backbones.load_backbone

    def load(*args, **kwargs):
        backbone = real(*args, **kwargs)
        backbone.register_forward_pre_hook(lambda m, a: calls.append(a[1].tolist()))
        return backbone

    monkeypatch.setattr(backbones, "load_backbone", load)
    for method in ("fgsm", "pgd"):
        run_attack(store, runs=runs, method=method, snr_db=20, steps=2, batch_size=8, device="cpu")
    assert calls and all(len(set(c)) == 1 for c in calls), calls
    assert any(len(c) > 1 for c in calls)


@pytest.mark.parametrize("family", ["wav2vec2", "data2vec"])
def test_non_masking_families_really_leak_padding(tiny, family):
    """Why masks_padding is False: the HF model run on a padded batch changes a clip's frames."""
    backbone = tiny[family]
    assert backbone.masks_padding is False
    waveforms, lengths = _batch(seed=2)
    positions = torch.arange(waveforms.shape[1])
    mask = (positions[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        padded = backbone._run(waveforms * mask, mask if family == "data2vec" else None)
        alone = backbone._run(waveforms[2:, : LENGTHS[2]], None)
    frames = backbone.frame_count(LENGTHS[2])
    assert (padded[2, :, :frames] - alone[0]).abs().max() > 1e-3


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_gradient_reaches_waveform_and_not_padding(tiny, family):
    backbone = tiny[family]
    waveforms, lengths = _batch(seed=3)
    waveforms.requires_grad_(True)
    hidden, _ = backbone(waveforms, lengths)
    hidden[:, -1].sum().backward()
    grad = waveforms.grad
    assert torch.isfinite(grad).all()
    for b, length in enumerate(LENGTHS):
        assert grad[b, :length].abs().sum() > 0
        assert grad[b, length:].abs().sum() == 0  # the padding is not part of the input


@pytest.mark.parametrize("family", ["whisper", "apc"])
def test_tiny_models_are_deterministic_and_leave_global_rng_alone(family):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = load_backbone(f"tiny:{family}", device="cpu").provenance()
    after = torch.rand(3)
    second = load_backbone(f"tiny:{family}", device="cpu").provenance()
    assert first["weights_sha256"] == second["weights_sha256"]
    torch.testing.assert_close(after, expected)


def test_provenance_records_what_changes_features(tiny):
    whisper = tiny["whisper"].provenance()
    assert whisper["window"] == "trimmed" and whisper["family"] == "whisper"
    assert load_backbone("tiny:whisper", device="cpu", window="30s").provenance()["window"] == "30s"
    w2v = tiny["wav2vec2"].provenance()
    assert w2v["masks_padding"] is False and w2v["normalize"] is True
    assert w2v["feat_extract_norm"] == "group"
    assert tiny["wav2vec2_layer"].provenance()["masks_padding"] is True
    for key in ("backbone", "source", "num_layers", "dim", "frame_rate", "weights_sha256"):
        assert key in w2v


def test_eager_attention_matches_default(tiny):
    eager = load_backbone("tiny:wav2vec2_layer", device="cpu", attn_implementation="eager")
    waveforms, lengths = _batch(seed=4)
    with torch.no_grad():
        torch.testing.assert_close(
            eager(waveforms, lengths)[0], tiny["wav2vec2_layer"](waveforms, lengths)[0]
        )


def test_bad_inputs_raise_one_clear_error(tiny):
    backbone = tiny["wav2vec2"]
    with pytest.raises(BackboneInputError, match="2-D"):
        backbone(torch.zeros(16_000), torch.tensor([16_000]))
    with pytest.raises(BackboneInputError, match="exceeds"):
        backbone(torch.zeros(1, 16_000), torch.tensor([16_001]))
    with pytest.raises(BackboneInputError, match="too short"):
        backbone(torch.zeros(1, 16_000), torch.tensor([100]))
    with pytest.raises(BackboneInputError, match="one entry per clip"):
        backbone(torch.zeros(2, 16_000), torch.tensor([16_000]))
    with pytest.raises(BackboneInputError, match="floating point"):
        backbone(torch.zeros(1, 16_000, dtype=torch.int16), torch.tensor([16_000]))
    with pytest.raises(BackboneInputError, match="longer than"):
        tiny["whisper"](torch.zeros(1, 481_000), torch.tensor([481_000]))


def test_spec_parsing_and_unknown_names():
    assert resolve_spec("whisper_tiny") is REGISTRY["whisper_tiny"]
    hf = resolve_spec("hf:facebook/wav2vec2-base@abc123")
    assert (hf.source, hf.revision, hf.family) == ("facebook/wav2vec2-base", "abc123", "auto")
    assert resolve_spec("s3prl:tera:/x/states.ckpt").family == "tera"
    assert resolve_spec("ct2:/models/fw").family == "whisper"
    with pytest.raises(UnknownBackboneError, match="Did you mean 'whisper_small'"):
        resolve_spec("whisper_smal")
    with pytest.raises(UnknownBackboneError, match="tiny family"):
        resolve_spec("tiny:conformer")
    with pytest.raises(UnknownBackboneError, match="s3prl:apc:"):
        resolve_spec("s3prl:npc:/x.ckpt")
    with pytest.raises(UnknownBackboneError, match="Whisper backbones only"):
        load_backbone("tiny:hubert", device="cpu", window="30s")
    with pytest.raises(ValueError, match="window"):
        load_backbone("tiny:whisper", device="cpu", window="10s")


def test_registry_table_lists_every_name_with_computed_parameters():
    rows = {row["name"]: row for row in list_backbones()}
    assert set(rows) == set(REGISTRY)
    expected = {  # L, D and parameters (millions, 2 decimals) of the encoders that run
        "apc": (3, 512, 4.11),
        "tera": (4, 768, 21.33),
        "wav2vec2_base": (13, 768, 94.37),
        "whisper_tiny": (5, 384, 8.21),
        "whisper_small": (13, 768, 88.15),
    }
    for name, (layers, dim, millions) in expected.items():
        row = rows[name]
        assert (row["num_layers"], row["dim"]) == (layers, dim)
        assert round(row["parameters"] / 1e6, 2) == millions
    tiny_rows = {row["name"] for row in list_backbones(include_tiny=True)} - set(rows)
    assert tiny_rows == {f"tiny:{f}" for f in TINY_FAMILIES}


def test_describe_backbone_without_and_with_loading():
    info = describe_backbone("whisper_base")
    assert info["num_layers"] == 7 and info["parameters"] > 20e6
    loaded = describe_backbone("tiny:tera", load=True)
    assert loaded["frames_per_6s"] == 601 and len(loaded["weights_sha256"]) == 64
    assert loaded["parameters"] == describe_backbone("tiny:tera")["parameters"]


def test_missing_hf_weights_name_the_backbone_and_the_fix(tmp_path, monkeypatch):
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache("openai/whisper-small", "config.json"), str):
        pytest.skip("whisper-small is in this machine's Hugging Face cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as error:
        load_backbone("whisper_small", device="cpu")
    message = str(error.value)
    for part in ("whisper_small", "openai/whisper-small", "HF_HUB_OFFLINE", "hf:/path/to/dir"):
        assert part in message
    assert "\n" not in message and "Traceback" not in message
    with pytest.raises(WeightsNotFoundError, match=r"config\.json"):
        load_backbone(f"hf:{tmp_path / 'nothing-here'}", device="cpu")


def test_missing_s3prl_checkpoint_names_what_was_tried(tmp_path, monkeypatch):
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache("leo19941227/apc_series", "apc_360hr.ckpt"), str):
        pytest.skip("apc_360hr is in this machine's Hugging Face cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path))  # s3prl's download cache lives under ~/.cache
    with pytest.raises(WeightsNotFoundError) as error:
        load_backbone("apc", device="cpu")
    message = str(error.value)
    for part in ("'apc'", "s3prl's download cache", "apc_360hr.ckpt", "s3prl:apc:/path/to/"):
        assert part in message


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    waveforms, lengths = _batch(seed=5)
    for name in ("tiny:whisper", "tiny:wav2vec2_layer", "tiny:apc"):
        cpu = load_backbone(name, device="cpu")
        gpu = load_backbone(name, device="cuda")
        with torch.no_grad():
            expected = cpu(waveforms, lengths)[0]
            got = gpu(waveforms.cuda(), lengths)[0].cpu()
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-3)


def test_hf_directory_loads_wav2vec2_family_with_its_preprocessor_setting(tmp_path):
    from transformers import Wav2Vec2FeatureExtractor

    from trustser.backbones.tiny import build_tiny_model

    model = build_tiny_model("wav2vec2_layer")
    model.save_pretrained(tmp_path)
    Wav2Vec2FeatureExtractor(do_normalize=False).save_pretrained(tmp_path)
    loaded = load_backbone(f"hf:{tmp_path}", device="cpu")
    provenance = loaded.provenance()
    assert (loaded.spec.family, loaded.masks_padding, provenance["normalize"]) == (
        "wav2vec2",
        True,
        False,
    )
    reference = load_backbone("tiny:wav2vec2_layer", device="cpu")
    assert provenance["weights_sha256"] == reference.provenance()["weights_sha256"]
    waveforms, lengths = _batch(seed=6)
    reference.normalize = False
    with torch.no_grad():
        torch.testing.assert_close(loaded(waveforms, lengths)[0], reference(waveforms, lengths)[0])


def test_hf_directory_with_a_non_speech_model_is_refused(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(UnknownBackboneError, match="'bert' is not a supported speech encoder"):
        load_backbone(f"hf:{tmp_path}", device="cpu")


def test_adapter_checkpoints_are_refused():
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from trustser.backbones import BackboneError
    from trustser.backbones.tiny import tiny_config
    from trustser.backbones.wav2vec2 import Wav2Vec2StyleBackbone

    config = Wav2Vec2Config(**tiny_config("wav2vec2"), add_adapter=True, output_hidden_size=32)
    with pytest.raises(BackboneError, match="add_adapter"):
        Wav2Vec2StyleBackbone(Wav2Vec2Model(config), resolve_spec("tiny:wav2vec2"), normalize=False)
