"""GE2E: mel front end, causal LSTM over padded batches, cuDNN guard, real weights.

The architecture tests run on random weights (``build_random_backbone``), so they never skip;
the tests of the real weights skip when the PyPI package resemblyzer is not installed.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from trustser.backbones import (
    BackboneError,
    WeightsNotFoundError,
    build_random_backbone,
    count_parameters,
    describe_backbone,
    ge2e,
    load_backbone,
    resolve_spec,
    rnn,
)
from trustser.backbones.ge2e import (
    GE2EMel,
    equal_error_rate,
    partial_windows,
    raise_volume,
    verification_eer,
)
from trustser.heads.estimator import HeadClassifier

NAME = "ge2e_lstm_offline"
HAS_RESEMBLYZER = importlib.util.find_spec("resemblyzer") is not None
needs_weights = pytest.mark.skipif(
    not HAS_RESEMBLYZER,
    reason="the GE2E weights come from the PyPI package resemblyzer "
    "(pip install --no-deps resemblyzer; `make venv` installs it)",
)
# 3 s, 1.3 s + 7 samples, 0.8 s + 99 samples, and a clip shorter than one hop
LENGTHS = (48_000, 20_807, 12_899, 150)


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    waveforms = 0.05 * torch.randn(len(LENGTHS), max(LENGTHS), generator=generator)
    return waveforms, torch.tensor(LENGTHS)


@pytest.fixture(scope="module")
def random_ge2e():
    return build_random_backbone(NAME, device="cpu")


@pytest.fixture(scope="module")
def real_ge2e():
    if not HAS_RESEMBLYZER:
        pytest.skip("the GE2E weights come from the PyPI package resemblyzer")
    return load_backbone(NAME, device="cpu")


# ----------------------------------------------------------------------------- mel front end


def _slaney_hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(
        hz >= min_log_hz,
        min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep,
        hz / f_sp,
    )


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(
        mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel
    )


def _numpy_power_mel(x: np.ndarray, sr: int = 16_000, n_fft: int = 400, hop: int = 160):
    """librosa.feature.melspectrogram(y, sr, n_fft=400, hop_length=160, n_mels=40) written out:
    zero-padded centred frames, periodic Hann, |rfft|², Slaney mel filters with area norm."""
    padded = np.pad(x.astype(np.float64), n_fft // 2)
    frames = 1 + (len(padded) - n_fft) // hop
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    power = np.abs(np.fft.rfft(padded[index] * window, axis=1)) ** 2  # [T, 201]
    fft_hz = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_hz = _slaney_mel_to_hz(
        np.linspace(_slaney_hz_to_mel(0.0), _slaney_hz_to_mel(sr / 2), 40 + 2)
    )
    ramps = mel_hz[:, None] - fft_hz[None, :]
    widths = np.diff(mel_hz)
    filters = np.maximum(
        0, np.minimum(-ramps[:-2] / widths[:-1, None], ramps[2:] / widths[1:, None])
    )
    filters *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    return power @ filters.T  # [T, 40]


def test_mel_matches_librosas_power_mel_formula():
    rng = np.random.default_rng(0)
    t = np.arange(23_457) / 16_000
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    x = x + 0.02 * rng.standard_normal(t.size)
    expected = _numpy_power_mel(x)
    got = GE2EMel()(torch.from_numpy(x).float()[None])[0].double().numpy()
    assert got.shape == expected.shape == (ge2e.mel_frame_count(x.size), 40)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6 * expected.max())


def test_frame_counts_are_exact_without_running(random_ge2e):
    waveforms, lengths = _batch()
    with torch.no_grad():
        hidden, frame_lengths = random_ge2e(waveforms, lengths)
    expected = [1 + n // 160 for n in LENGTHS]
    assert frame_lengths.tolist() == expected == [random_ge2e.frame_count(n) for n in LENGTHS]
    assert hidden.shape == (len(LENGTHS), 3, max(expected), 256)
    for b, frames in enumerate(expected):
        assert hidden[b, :, frames:].abs().sum() == 0
        assert hidden[b, :, :frames].abs().sum() > 0
    assert random_ge2e.frame_count(6 * 16_000) == 601


def test_registry_entry_and_computed_parameters():
    spec = resolve_spec(NAME)
    assert (spec.family, spec.num_layers, spec.dim, spec.frame_rate) == ("ge2e", 3, 256, 100.0)
    # LSTM 40→256, 256→256, 256→256 (4 gates, two biases) + the 256→256 projection
    lstm = sum(4 * 256 * (size + 256) + 2 * 4 * 256 for size in (40, 256, 256))
    assert count_parameters(NAME) == lstm + 256 * 256 + 256 == 1_423_616
    info = describe_backbone(NAME)
    assert info["parameters"] == 1_423_616 and info["source"] == "resemblyzer"


# ----------------------------------------------------------------------------- padding, gradients


@pytest.mark.parametrize("weights", ["random", "real"])
def test_clip_alone_equals_clip_in_padded_batch(weights, random_ge2e, request):
    backbone = random_ge2e if weights == "random" else request.getfixturevalue("real_ge2e")
    assert backbone.masks_padding is True
    waveforms, lengths = _batch(seed=1)
    waveforms[1, LENGTHS[1] :] = 0.5  # garbage in the padding must not matter
    with torch.no_grad():
        hidden, frame_lengths = backbone(waveforms, lengths)
        for b, length in enumerate(LENGTHS):
            alone, alone_frames = backbone(waveforms[b : b + 1, :length], lengths[b : b + 1])
            frames = int(frame_lengths[b])
            assert int(alone_frames[0]) == frames
            torch.testing.assert_close(hidden[b, :, :frames], alone[0], atol=2e-5, rtol=1e-4)


def test_padding_follows_a_clips_frames_and_is_zeroed(random_ge2e):
    """Why running the LSTM over the padded batch is exact: it is causal, so the padding comes
    after a clip's frames and changes none of them; the states it does produce are zeroed."""
    waveforms, lengths = _batch(seed=2)
    mel = random_ge2e.mel(raise_volume(waveforms, lengths))
    short = random_ge2e.frame_count(LENGTHS[1])
    with torch.no_grad():
        padded = random_ge2e.encoder.layer_outputs(mel[1:2])[-1][0]
        alone = random_ge2e.encoder.layer_outputs(mel[1:2, :short])[-1][0]
        hidden, _ = random_ge2e(waveforms, lengths)
    torch.testing.assert_close(padded[:short], alone)
    assert padded[short:].abs().sum() > 0  # the LSTM runs on over the padding ...
    assert hidden[1, :, short:].abs().sum() == 0  # ... and those states are not returned


def test_waveform_gradients_are_finite_non_zero_and_zero_on_padding(random_ge2e):
    waveforms, lengths = _batch(seed=3)
    waveforms.requires_grad_(True)
    hidden, _ = random_ge2e(waveforms, lengths)
    hidden[:, -1].sum().backward()
    grad = waveforms.grad
    assert torch.isfinite(grad).all()
    for b, length in enumerate(LENGTHS):
        assert grad[b, :length].abs().sum() > 0
        assert grad[b, length:].abs().sum() == 0


def test_volume_is_raised_to_minus_30_dbfs_and_never_lowered():
    t = torch.arange(16_000) / 16_000
    quiet = 0.001 * torch.sin(2 * math.pi * 200 * t)
    loud = 0.5 * torch.sin(2 * math.pi * 200 * t)
    waveforms = torch.zeros(3, 16_000)
    waveforms[0], waveforms[1], waveforms[2, :8000] = quiet, loud, quiet[:8000]
    out = raise_volume(waveforms, torch.tensor([16_000, 16_000, 8000]))
    rms = lambda x: float(x.double().pow(2).mean().sqrt())  # noqa: E731
    assert 20 * math.log10(rms(out[0])) == pytest.approx(-30.0, abs=1e-4)
    torch.testing.assert_close(out[1], loud)  # −9 dBFS: left alone
    assert 20 * math.log10(rms(out[2, :8000])) == pytest.approx(-30.0, abs=1e-4)  # own samples
    assert torch.isfinite(raise_volume(torch.zeros(1, 400), torch.tensor([400]))).all()


# ----------------------------------------------------------------------------- cuDNN


@pytest.fixture
def cudnn_seen(monkeypatch, random_ge2e):
    """Pretend the layers run on CUDA and record cuDNN's switch at every LSTM call."""
    monkeypatch.setattr(rnn, "_on_cuda", lambda value: True)
    seen: list[bool] = []
    handles = [
        layer.register_forward_pre_hook(lambda *_: seen.append(torch.backends.cudnn.enabled))
        for layer in random_ge2e.encoder.layers
    ]
    yield seen
    for handle in handles:
        handle.remove()


def test_cudnn_is_off_for_lstm_calls_that_need_a_backward_pass(random_ge2e, cudnn_seen):
    assert torch.backends.cudnn.enabled
    waveforms, lengths = _batch(seed=4)
    with torch.no_grad():  # extraction keeps cuDNN
        random_ge2e(waveforms, lengths)
    assert cudnn_seen == [True, True, True]
    cudnn_seen.clear()
    waveforms.requires_grad_(True)  # an attack: the waveform needs a gradient
    hidden, _ = random_ge2e(waveforms, lengths)
    assert cudnn_seen == [False, False, False]
    assert torch.backends.cudnn.enabled  # restored after each call
    hidden.sum().backward()
    assert torch.isfinite(waveforms.grad).all()


def test_cudnn_guard_decision_for_any_recurrent_module(monkeypatch):
    """The helper the GRUs of APC can use too: off only for eval-mode layers needing gradients."""
    gru = nn.GRU(4, 8, batch_first=True).eval()
    for p in gru.parameters():
        p.requires_grad_(False)
    x = torch.zeros(2, 5, 4)
    assert not rnn.needs_cudnn_off(gru, x.requires_grad_(True))  # on the CPU
    monkeypatch.setattr(rnn, "_on_cuda", lambda value: True)
    assert rnn.needs_cudnn_off(gru, x)
    packed = nn.utils.rnn.pack_padded_sequence(x, torch.tensor([5, 3]), batch_first=True)
    assert rnn.needs_cudnn_off(gru, packed)
    assert not rnn.needs_cudnn_off(gru, x.detach())  # nothing needs a gradient
    with torch.no_grad():
        assert not rnn.needs_cudnn_off(gru, x)
    assert not rnn.needs_cudnn_off(gru.train(), x)  # cuDNN's backward works in train mode
    output, _ = rnn.run_rnn(gru.eval(), x)
    assert output.shape == (2, 5, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_waveform_gradients_match_cpu(random_ge2e):
    gpu = build_random_backbone(NAME, device="cuda")
    waveforms, lengths = _batch(seed=5)
    grads = []
    for model, device in ((random_ge2e, "cpu"), (gpu, "cuda")):
        x = waveforms.to(device).requires_grad_(True)
        hidden, _ = model(x, lengths)
        hidden[:, -1].sum().backward()
        grads.append(x.grad.cpu())
    assert torch.isfinite(grads[1]).all() and grads[1].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], atol=1e-4, rtol=1e-3)


# ----------------------------------------------------------------------------- utterance embedding


@pytest.mark.parametrize(
    ("num_samples", "starts"),
    [
        (16_000, [0]),  # 1 s: one window, kept although it covers only 62.5 %
        (48_000, [0, 77, 154]),  # the last window covers 91 %
        (40_000, [0, 77]),  # a third window would cover 60 % < 75 %: dropped
        (100, [0]),
    ],
)
def test_partial_windows_follow_embed_utterance(num_samples, starts):
    assert partial_windows(num_samples) == starts


def test_equal_error_rate_on_hand_made_trials():
    assert equal_error_rate(np.array([0.9, 0.8, 0.1, 0.2]), np.array([1, 1, 0, 0])) == 0.0
    assert equal_error_rate(np.array([0.1, 0.2, 0.9, 0.8]), np.array([1, 1, 0, 0])) == 1.0
    # sorted: .9 T, .7 N, .6 T, .1 N — accepting the top two gives FAR = FRR = 1/2
    assert equal_error_rate(np.array([0.9, 0.6, 0.7, 0.1]), np.array([1, 1, 0, 0])) == 0.5
    # FRR stays 1/3 while FAR goes 0 → 1/2: the curves cross at 1/3
    scores, targets = np.array([0.9, 0.8, 0.3, 0.5, 0.2]), np.array([1, 1, 1, 0, 0])
    assert equal_error_rate(scores, targets) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="both target and non-target"):
        equal_error_rate(np.array([0.1, 0.2]), np.array([1, 1]))


def test_embeddings_of_a_batch_equal_clip_by_clip_and_are_unit_norm(random_ge2e):
    waveforms, lengths = _batch(seed=6)
    with torch.no_grad():
        batch = random_ge2e.embed(waveforms, lengths)
        alone = torch.cat([random_ge2e.embed(waveforms[b : b + 1, :n], lengths[b : b + 1])
                           for b, n in enumerate(LENGTHS)])  # fmt: skip
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(batch.norm(dim=1), torch.ones(len(LENGTHS)))


# ----------------------------------------------------------------------------- real weights


@needs_weights
def test_real_weights_are_read_from_the_package_with_provenance(real_ge2e):
    path, version = ge2e.resemblyzer_weights()
    assert path.name == "pretrained.pt"
    provenance = real_ge2e.provenance()
    assert provenance["resolved_revision"] == f"resemblyzer {version}"
    assert len(provenance["weights_sha256"]) == len(provenance["weights_file_sha256"]) == 64
    assert provenance["masks_padding"] is True and provenance["mel"]["n_mels"] == 40
    assert provenance["volume_target_dbfs"] == -30.0
    assert sum(p.numel() for p in real_ge2e.parameters()) == count_parameters(NAME)
    # the per-layer modules compute what resemblyzer's single 3-layer nn.LSTM computes
    state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
    reference = nn.LSTM(40, 256, 3, batch_first=True)
    reference.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
    features = torch.rand(2, 50, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        output, (final, _) = reference(features)
        layers = real_ge2e.encoder.layer_outputs(features)
    torch.testing.assert_close(layers[-1], output)
    for k in range(3):
        torch.testing.assert_close(layers[k][:, -1], final[k])


def test_missing_package_and_foreign_files_are_named(tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsNotFoundError, match=r"pip install --no-deps resemblyzer"):
        load_backbone(NAME, device="cpu")
    monkeypatch.undo()
    bad = tmp_path / "pretrained.pt"
    torch.save({"model_state": {"lstm.weight_ih_l0": torch.zeros(3, 3)}}, bad)
    with pytest.raises(BackboneError, match=r"lstm\.weight_ih_l0"):
        ge2e.load_ge2e(resolve_spec(NAME), bad)
    torch.save({"something": 1}, bad)
    with pytest.raises(BackboneError, match="model_state"):
        ge2e.load_ge2e(resolve_spec(NAME), bad)


def _emodb_clips(root: Path, emotions: str) -> tuple[list[torch.Tensor], list[str]]:
    import soundfile as sf

    clips, speakers = [], []
    for path in sorted((root / "wav").glob("*.wav")):
        if path.name[5] in emotions:  # 03a01Nc.wav: speaker 03, text a01, emotion N, version c
            audio, rate = sf.read(str(path), dtype="float32")
            assert rate == 16_000
            clips.append(torch.from_numpy(audio))
            speakers.append(path.name[:2])
    return clips, speakers


def _embed_all(backbone, clips: list[torch.Tensor], batch: int = 40) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for i in range(0, len(clips), batch):
            part = clips[i : i + batch]
            lengths = torch.tensor([len(c) for c in part])
            out.append(backbone.embed(nn.utils.rnn.pad_sequence(part, batch_first=True), lengths))
    return torch.cat(out)


@needs_weights
@pytest.mark.emodb
def test_real_weights_separate_emodb_speakers_on_neutral_speech(real_ge2e, emodb_root):
    """The proof that the weights are GE2E's: neutral EmoDB, 79 clips, 10 speakers, EER < 8 %.

    Measured 4.1 % (resemblyzer itself, with its voice-activity trimming: 3.7 %).
    """
    clips, speakers = _emodb_clips(emodb_root, "N")
    assert (len(clips), len(set(speakers))) == (79, 10)
    eer = verification_eer(_embed_all(real_ge2e, clips), speakers)
    assert eer < 0.08, f"EER {eer:.3f}"


# ----------------------------------------------------------------------------- attacks


@needs_weights
@pytest.mark.slow
def test_fgsm_and_pgd_run_end_to_end_through_the_real_encoder(tmp_path, toy_manifest_factory):
    """extract → heads → ``run_attack`` (FGSM, PGD) on the CPU with the real GE2E weights."""
    from trustser.attacks import functional as AF
    from trustser.attacks.runner import run_attack
    from trustser.deployed.batches import pad_batch
    from trustser.extract import extract
    from trustser.heads.training import fit_heads

    speakers = (("s1", "female"), ("s2", "male"), ("s3", "female"), ("s4", "male"))
    groups = [[s] for s, _ in speakers]
    manifest = toy_manifest_factory(tmp_path / "toy", speakers=speakers, groups=groups)
    store = tmp_path / "cache.zarr"
    extract(manifest, store, NAME, device="cpu", progress=False)
    runs = tmp_path / "runs"
    fit_heads(
        store,
        None,
        HeadClassifier(epochs=3, lr=1e-2, device="cpu"),
        runs=runs,
        task="emotion",
        folds="1",
    )
    for method in ("fgsm", "pgd"):
        run = run_attack(
            store, runs=runs, method=method, snr_db=45, device="cpu", batch_size=4, steps=2
        )
        (result,) = run.results
        assert result.backbone == NAME and result.num_attacked > 0
        assert result.asr_mean is not None and 0 <= result.asr_mean <= 1
        assert all(abs(c.snr_db - 45) < 0.1 or (method == "pgd" and c.snr_db > 45)
                   for c in result.clips)  # fmt: skip

    # the gradient itself, through backbone and a head, on two real-length clips
    from trustser.end_to_end import EndToEndClassifier
    from trustser.heads.model import LayerWeightedHead

    torch.manual_seed(0)
    model = EndToEndClassifier(load_backbone(NAME, device="cpu"), LayerWeightedHead(3, 256, 4))
    clips = [0.1 * torch.randn(24_000), 0.1 * torch.randn(17_321)]
    batch = pad_batch(clips, [0, 1])
    labels = torch.tensor([0, 1])
    epsilon = AF.snr_epsilon(batch.waveforms, batch.mask, 45.0)
    adversarial = AF.fgsm(model, batch.waveforms, labels=labels, mask=batch.mask, epsilon=epsilon)
    delta = adversarial - batch.waveforms
    assert torch.isfinite(delta).all() and (delta[0].abs() > 0).all()
    assert delta[1, 17_321:].abs().sum() == 0
    snr = AF.measured_snr(batch.waveforms, adversarial, batch.mask)
    torch.testing.assert_close(snr, torch.full((2,), 45.0, dtype=snr.dtype), atol=0.01, rtol=0)


def test_cost_counts_every_lstm_layer(random_ge2e):
    """fvcore has no LSTM handle; trustser's counts each weight matrix once per frame."""
    from trustser.cost import count_macs

    samples = 6 * 16_000
    waveform = 0.1 * torch.randn(1, samples, generator=torch.Generator().manual_seed(7))
    counted = count_macs(random_ge2e, (waveform, torch.tensor([samples])))
    frames = random_ge2e.frame_count(samples)
    lstm = frames * sum(4 * 256 * (size + 256) for size in (40, 256, 256))
    assert counted["by_category"] == {"matmul": frames * 201 * 40, "rnn": lstm}
