"""Top encoder blocks as trainable modules: the same model as the backbone, padding, tensors, swap.

Every family's tiny random model: the top K blocks applied to hidden state L − 1 − K of the
backbone's own forward reproduce the K states above it; padding changes nothing; training the
copies never touches the backbone; fine-tuned tensors load back into a full backbone whose forward
from the waveform equals the cache path. Store round trips: tests/test_top_blocks_store.py.
"""

from __future__ import annotations

import pytest
import torch

from trustser.backbones import TINY_FAMILIES, load_backbone, weights_checksum
from trustser.backbones.s3prl_models import TERA_AUDIO, TERABackbone
from trustser.backbones.top_blocks import (
    TopBlocks,
    TopBlocksError,
    top_blocks_for_store,
    with_top_blocks,
)

ATOL = 1e-5  # float32: the cache path is the same computation (measured ≤ 1e-6)


@pytest.fixture(scope="module")
def tiny() -> dict[str, object]:
    return {family: load_backbone(f"tiny:{family}", device="cpu") for family in TINY_FAMILIES}


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three clips of different lengths (0.75 s, 0.47 s, 0.28 s) in one zero-padded batch."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([12_000, 7_517, 4_509])
    waves = 0.1 * torch.randn(3, 12_000, generator=generator)
    waves *= (torch.arange(12_000)[None, :] < lengths[:, None]).float()
    return waves, lengths


def _frame_mask(frame_lengths: torch.Tensor, steps: int) -> torch.Tensor:
    return torch.arange(steps)[None, :] < frame_lengths[:, None]


@pytest.fixture(scope="module")
def forward(tiny) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per family: (hidden [3, L, T, D], frame lengths, frame mask) of ``_batch()``."""
    out = {}
    waves, lengths = _batch()
    for family, backbone in tiny.items():
        with torch.no_grad():
            hidden, frames = backbone(waves, lengths)
        out[family] = (hidden, frames, _frame_mask(frames, hidden.shape[2]))
    return out


def _all_k(backbone) -> list[int]:
    return list(range(1, backbone.num_layers))


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_top_blocks_reproduce_the_backbone_forward(tiny, forward, family):
    """K = 1 … L − 1 (K = L − 1 is every block): store layers L − K … L − 1 from layer L − 1 − K."""
    backbone = tiny[family]
    hidden, _, mask = forward[family]
    top_layer = backbone.num_layers - 1
    for k in _all_k(backbone):
        top = backbone.top_blocks(k)
        assert isinstance(top, TopBlocks) and top.k == k and not top.training
        assert top.input_layer == top_layer - k
        assert list(top.output_layers) == list(range(top_layer - k + 1, top_layer + 1))
        with torch.no_grad():
            out = top(hidden[:, top.input_layer], mask)
        assert out.shape == (3, k, hidden.shape[2], backbone.dim)
        torch.testing.assert_close(out, hidden[:, top.input_layer + 1 :], rtol=0, atol=ATOL)
        assert not out[~mask[:, None, :].expand(-1, k, -1)].any()  # zero past each length


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_padding_changes_nothing_for_real_frames(tiny, forward, family):
    """A clip alone equals the same clip in a padded batch whose padding holds NaN and garbage."""
    backbone = tiny[family]
    hidden, frames, mask = forward[family]
    top = backbone.top_blocks(1)
    polluted = hidden[:, top.input_layer].clone()
    generator = torch.Generator().manual_seed(1)
    polluted[~mask] = 100 * torch.randn(int((~mask).sum()), backbone.dim, generator=generator)
    polluted[2, -1] = float("nan")
    with torch.no_grad():
        batched = top(polluted, mask)
        for b in range(3):
            n = int(frames[b])
            alone = top(hidden[b : b + 1, top.input_layer, :n])  # no mask: no padding
            torch.testing.assert_close(batched[b : b + 1, :, :n], alone, rtol=0, atol=ATOL)
    assert torch.isfinite(batched).all()
    assert not batched[~mask[:, None, :]].any()


def test_state_dict_holds_exactly_the_trained_tensors(tiny):
    for family, backbone in tiny.items():
        for k in _all_k(backbone):
            top = backbone.top_blocks(k)
            trained = {n for n, p in top.named_parameters() if p.requires_grad}
            assert set(top.state_dict()) == trained, (family, k)
            assert top.num_trainable() == sum(p.numel() for p in top.parameters())
            blocks = {key.split(".")[1] for key in trained if key.startswith("blocks.")}
            assert blocks == {str(i) for i in range(k)}
            # the final norm is trained exactly where the store's last layer has it
            has_norm = any(key.startswith("final_norm.") for key in trained)
            assert has_norm == ("final_norm" in top.sources), (family, k)
    assert "final_norm" in tiny["whisper"].top_blocks(1).sources
    for family in ("apc", "tera", "wav2vec2", "hubert", "data2vec", "wavlm"):
        assert "final_norm" not in tiny[family].top_blocks(1).sources


def test_wavlm_position_bias_is_rebuilt_frozen_below_and_trained_with_the_first_block(tiny):
    backbone = tiny["wavlm"]
    below = backbone.top_blocks(1)  # the bias-computing first layer is below the top block
    embedding = below.blocks[0].attention.rel_attn_embed
    assert not isinstance(embedding.weight, torch.nn.Parameter)
    assert not any("rel_attn_embed" in key for key in below.state_dict())
    source = backbone.model.encoder.layers[0].attention.rel_attn_embed.weight
    torch.testing.assert_close(embedding.weight, source, rtol=0, atol=0)
    every = backbone.top_blocks(backbone.num_layers - 1)
    assert "blocks.0.attention.rel_attn_embed.weight" in every.state_dict()
    assert every.blocks[0].attention.rel_attn_embed.weight.requires_grad


def test_stable_layer_norm_final_norm_follows_the_stored_last_layer(tiny):
    """Which hidden state is last is transformers' choice (4.x: after the final LayerNorm, 5.x:
    before it); the probe reads it from the model, and the top blocks follow."""
    backbone = tiny["wav2vec2_layer"]
    waves, _ = _batch()
    with torch.no_grad():
        output = backbone.model(waves[:1], output_hidden_states=True, return_dict=True)
    stored_is_normed = torch.equal(output.hidden_states[-1], output.last_hidden_state)
    assert backbone.final_norm_in_layers() == stored_is_normed
    assert ("final_norm" in backbone.top_blocks(1).sources) == stored_is_normed
    # the other convention: the final LayerNorm becomes part of the (trained) top blocks
    backbone._final_norm_in_layers = not stored_is_normed
    try:
        other = backbone.top_blocks(1)
        hidden = torch.randn(1, 20, backbone.dim)
        with torch.no_grad():
            out = other(hidden)
            raw = other.blocks[0](hidden)
            normed = backbone.model.encoder.layer_norm(raw)
        assert ("final_norm.weight" in other.state_dict()) == (not stored_is_normed)
        torch.testing.assert_close(out[:, 0], raw if stored_is_normed else normed)
    finally:
        backbone._final_norm_in_layers = stored_is_normed


def test_training_the_copies_never_touches_the_backbone(tiny, forward):
    for family in ("whisper", "wavlm", "apc", "tera"):
        backbone = tiny[family]
        before = weights_checksum(backbone)
        hidden, _, mask = forward[family]
        top = backbone.top_blocks(1).train()
        optimizer = torch.optim.Adam(top.parameters(), lr=1e-2)
        for _ in range(3):
            optimizer.zero_grad()
            loss = top(hidden[:, top.input_layer], mask).pow(2).mean()
            loss.backward()
            assert all(p.grad is not None for p in top.parameters()), family
            optimizer.step()
        assert weights_checksum(backbone) == before, family
        assert not any(p.requires_grad for p in backbone.parameters())
        assert weights_checksum(top) != weights_checksum(backbone.top_blocks(1))


def test_train_mode_uses_the_checkpoint_dropout_and_set_dropout_overrides_it(tiny):
    backbone = tiny["tera"]  # s3prl's TERA config: dropout 0.1 everywhere
    hidden = torch.randn(2, 30, backbone.dim)
    top = backbone.top_blocks(2)
    with torch.no_grad():
        reference = top(hidden)
        torch.manual_seed(0)
        noisy = top.train()(hidden)
        top.set_dropout(0.0)
        quiet = top(hidden)
    assert (noisy - reference).abs().max() > 1e-3
    torch.testing.assert_close(quiet, reference, rtol=0, atol=ATOL)
    with pytest.raises(ValueError, match="dropout"):
        top.set_dropout(1.5)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_rebuilt_backbone_equals_the_cache_path(tiny, forward, family):
    """Fine-tuned blocks swapped into a copy: its forward from the waveform = cached lower layers
    + the trained top blocks; the base backbone is untouched; gradients reach the waveform."""
    backbone = tiny[family]
    k = 1 if family != "tera" else 2
    base_checksum = weights_checksum(backbone)
    top = backbone.top_blocks(k)
    with torch.no_grad():  # stand-in for fine-tuning: move every trained tensor
        generator = torch.Generator().manual_seed(3)
        for parameter in top.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    rebuilt = with_top_blocks(backbone, top)
    assert weights_checksum(backbone) == base_checksum
    waves, lengths = _batch()
    cached, frames, mask = forward[family]
    with torch.no_grad():
        cache_path = top(cached[:, top.input_layer], mask)
        full, full_frames = rebuilt(waves, lengths)
    assert torch.equal(full_frames, frames)
    torch.testing.assert_close(full[:, : top.input_layer + 1], cached[:, : top.input_layer + 1])
    torch.testing.assert_close(full[:, top.input_layer + 1 :], cache_path, rtol=0, atol=ATOL)
    assert (cache_path - cached[:, top.input_layer + 1 :]).abs().max() > 1e-3  # really changed
    provenance = rebuilt.provenance()
    assert provenance["top_blocks"] == {"k": k, "base_weights_sha256": base_checksum}
    assert provenance["weights_sha256"] != base_checksum
    assert "top_blocks" not in backbone.provenance()
    assert not any(p.requires_grad for p in rebuilt.parameters()) and not rebuilt.training
    attacked = waves.clone().requires_grad_(True)
    hidden, _ = rebuilt(attacked, lengths)
    hidden[:, -1].sum().backward()
    assert torch.isfinite(attacked.grad).all() and attacked.grad[0].abs().sum() > 0


def test_load_top_blocks_in_place_and_its_checks(tiny):
    backbone = load_backbone("tiny:whisper", device="cpu")
    top = backbone.top_blocks(2)
    with torch.no_grad():
        top.blocks[1].fc1.bias.add_(1.0)
    state = top.state_dict()
    assert backbone.load_top_blocks(state) is backbone
    torch.testing.assert_close(backbone.encoder.layers[1].fc1.bias, top.blocks[1].fc1.bias)
    assert backbone.top_blocks_info["k"] == 2
    assert not backbone.encoder.layers[1].fc1.bias.requires_grad
    backbone.load_top_blocks(state, k=2)  # same K again: fine, the base checksum is kept
    with pytest.raises(TopBlocksError, match="already holds fine-tuned top 2"):
        backbone.load_top_blocks(backbone.top_blocks(1).state_dict())
    fresh = tiny["whisper"]
    with pytest.raises(TopBlocksError, match="K = 1 was asked"):
        fresh.load_top_blocks(state, k=1)
    with pytest.raises(TopBlocksError, match="missing"):
        fresh.load_top_blocks({k: v for k, v in state.items() if "fc2" not in k})
    with pytest.raises(TopBlocksError, match="another backbone"):
        fresh.load_top_blocks(tiny["wav2vec2_layer"].top_blocks(2).state_dict())
    wrong = dict(state)
    wrong["final_norm.weight"] = torch.ones(7)
    with pytest.raises(TopBlocksError, match="shape"):
        fresh.load_top_blocks(wrong)
    with pytest.raises(TopBlocksError, match="non-empty"):
        fresh.load_top_blocks({})
    with pytest.raises(TopBlocksError, match="holds 2 blocks"):
        with_top_blocks(fresh, top, k=1)


def test_bad_k_and_bad_inputs_raise_one_clear_error(tiny):
    whisper = tiny["whisper"]
    for k in (0, whisper.num_layers, -1):
        with pytest.raises(TopBlocksError, match=r"K must lie in \[1, 2\]"):
            whisper.top_blocks(k)
    with pytest.raises(TopBlocksError, match="integer"):
        whisper.top_blocks(1.0)
    with pytest.raises(TopBlocksError, match=r"K must lie in \[1, 2\]"):
        tiny["apc"].top_blocks(3)  # APC's first GRU reads the fbank, not a cached layer
    top = whisper.top_blocks(1)
    with pytest.raises(TopBlocksError, match=r"\[B, T, D\]"):
        top(torch.zeros(1, 3, 10, 32))
    with pytest.raises(TopBlocksError, match="D = 16"):
        top(torch.zeros(1, 10, 16))
    with pytest.raises(TopBlocksError, match="frame mask must be"):
        top(torch.zeros(2, 10, 32), torch.ones(2, 9, dtype=torch.bool))
    holes = torch.ones(1, 10, dtype=torch.bool)
    holes[0, 3] = False
    with pytest.raises(TopBlocksError, match="prefix"):
        top(torch.zeros(1, 10, 32), holes)
    with pytest.raises(TopBlocksError, match="no frames"):
        top(torch.zeros(1, 10, 32), torch.zeros(1, 10, dtype=torch.bool))


def test_whisper_30s_window_is_refused():
    backbone = load_backbone("tiny:whisper", device="cpu", window="30s")
    with pytest.raises(TopBlocksError, match="trimmed window"):
        backbone.top_blocks(1)
    trimmed = load_backbone("tiny:whisper", device="cpu")
    provenance = {**backbone.provenance(), "window": "30s"}
    with pytest.raises(TopBlocksError, match=r"window='30s'.*--window trimmed"):
        top_blocks_for_store(provenance, trimmed, 1)
    other = {**trimmed.provenance(), "weights_sha256": "0" * 64}
    with pytest.raises(TopBlocksError, match="weights_sha256"):
        top_blocks_for_store(other, trimmed, 1)
    assert top_blocks_for_store(trimmed.provenance(), trimmed, 2).k == 2


def test_tera_long_clips_keep_the_backbones_chunks(tiny):
    """Past ``max_frames`` TERA runs a clip in equal chunks; the top blocks attend per chunk."""
    base = tiny["tera"]
    chunked = TERABackbone(base.model, base.spec, audio=TERA_AUDIO, max_frames=20).freeze()
    waves, lengths = _batch()  # 76, 47 and 29 frames: 4, 3 and 2 chunks
    with torch.no_grad():
        hidden, frames = chunked(waves, lengths)
        unchunked, _ = base(waves, lengths)
    assert (hidden[:, 1:] - unchunked[:, 1:]).abs().max() > 1e-3  # chunking matters
    mask = _frame_mask(frames, hidden.shape[2])
    for k in _all_k(chunked):
        top = chunked.top_blocks(k)
        with torch.no_grad():
            out = top(hidden[:, top.input_layer], mask)
        torch.testing.assert_close(out, hidden[:, top.input_layer + 1 :], rtol=0, atol=ATOL)


def test_tera_configurations_the_cache_cannot_feed_are_refused(tiny, monkeypatch):
    backbone = tiny["tera"]
    monkeypatch.setattr(backbone.model.config, "pre_layer_norm", True)
    with pytest.raises(TopBlocksError, match="pre_layer_norm=True"):
        backbone.top_blocks(1)
    monkeypatch.setattr(backbone.model.config, "pre_layer_norm", False)
    monkeypatch.setattr(backbone.model.config, "share_layer", True)
    with pytest.raises(TopBlocksError, match="share one set of weights"):
        backbone.top_blocks(1)


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")  # WavLM, in torch
@pytest.mark.parametrize(("family", "names"), [("wavlm", "WavLM"), ("hubert", "Hubert")])
def test_stable_layer_norm_wavlm_and_hubert(family, names):
    """The pre-LN variants of WavLM and HuBERT (large checkpoints) have no tiny name: built here."""
    import dataclasses

    import transformers

    from trustser.backbones import resolve_spec
    from trustser.backbones.tiny import tiny_config
    from trustser.backbones.wav2vec2 import Wav2Vec2StyleBackbone

    config = {
        **tiny_config(family),
        "feat_extract_norm": "layer",
        "do_stable_layer_norm": True,
        "conv_bias": True,
        "num_hidden_layers": 3,
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = getattr(transformers, f"{names}Model")(
            getattr(transformers, f"{names}Config")(**config)
        )
    spec = dataclasses.replace(resolve_spec(f"tiny:{family}"), num_layers=4)
    backbone = Wav2Vec2StyleBackbone(model.eval(), spec, normalize=False)
    waves, lengths = _batch()
    with torch.no_grad():
        hidden, frames = backbone(waves, lengths)
    mask = _frame_mask(frames, hidden.shape[2])
    for k in _all_k(backbone):
        top = backbone.top_blocks(k)
        with torch.no_grad():
            out = top(hidden[:, top.input_layer], mask)
        torch.testing.assert_close(out, hidden[:, top.input_layer + 1 :], rtol=0, atol=ATOL)
