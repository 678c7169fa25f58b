"""Audio loading: every case the foundation issue lists, each in its own test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from trustser._validation import TrustSERError
from trustser.audio import (
    DEFAULT_MAX_SECONDS,
    TARGET_SAMPLE_RATE,
    AudioError,
    SilentAudioWarning,
    TruncatedAudioWarning,
    audio_info,
    expected_num_samples,
    load_audio,
)


def _cut(path: Path, keep_bytes: int) -> Path:
    """Keep the first ``keep_bytes`` of a file: a download or copy that stopped midway."""
    data = path.read_bytes()
    path.write_bytes(data[:keep_bytes])
    return path


def test_mono_16k_loads_unchanged(tone):
    path = tone("a.wav", seconds=1.0)
    audio = load_audio(path)
    reference, _ = sf.read(path, dtype="float32")
    assert audio.waveform.dtype == torch.float32
    assert audio.waveform.shape == (16_000,)
    assert audio.sample_rate == TARGET_SAMPLE_RATE
    assert not audio.cropped and not audio.silent and not audio.truncated
    np.testing.assert_allclose(audio.waveform.numpy(), reference, atol=1e-6)


def test_errors_are_one_user_error_type(tmp_path):
    with pytest.raises(AudioError) as caught:
        load_audio(tmp_path / "missing.wav")
    assert isinstance(caught.value, TrustSERError)
    assert "missing.wav" in str(caught.value) and "no such file" in str(caught.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty \(0 bytes\)") as caught:
        load_audio(path)
    assert caught.value.path == str(path)


def test_non_audio_file(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are not samples\n" * 20)
    with pytest.raises(AudioError, match="not a readable audio file") as caught:
        load_audio(path)
    assert "Format not recognised" in str(caught.value)
    assert "Error opening" not in caught.value.reason  # libsndfile's prefix is trimmed


def test_truncated_wav_data_chunk_loads_what_is_there(tone):
    """libsndfile decodes the frames present; we keep them but flag and warn."""
    path = tone("cut.wav", seconds=1.0)  # PCM-16: 44-byte header + 32000 bytes
    full, _ = sf.read(path, dtype="float32")
    _cut(path, 44 + 2 * 8_000 + 1)  # half the data plus one stray byte
    info = audio_info(path)
    assert info.truncated and info.num_frames == 8_000
    with pytest.warns(TruncatedAudioWarning, match="cut short"):
        audio = load_audio(path)
    assert audio.truncated
    assert audio.num_samples == 8_000 == expected_num_samples(info.num_frames, info.sample_rate)
    np.testing.assert_allclose(audio.waveform.numpy(), full[:8_000], atol=1e-6)


def test_truncated_wav_can_be_refused(tone):
    path = _cut(tone("cut.wav", seconds=1.0), 44 + 2 * 8_000)
    with pytest.raises(AudioError, match="truncated"):
        load_audio(path, allow_truncated=False)


def test_truncated_aiff_is_flagged_too(tone):
    path = tone("cut.aiff", seconds=1.0, format="AIFF")
    _cut(path, path.stat().st_size // 2)
    info = audio_info(path)
    assert info.truncated and 0 < info.num_frames < 16_000


def test_wav_cut_inside_the_header(tone):
    path = _cut(tone("stub.wav"), 20)
    with pytest.raises(AudioError, match="not a readable audio file or truncated"):
        load_audio(path)


def test_wav_with_header_but_no_data(tone):
    path = _cut(tone("hollow.wav"), 44)
    with pytest.raises(AudioError, match=r"holds no samples.*truncated"):
        load_audio(path)


def test_truncated_flac_fails_clearly(tone):
    path = tone("cut.flac", seconds=1.0, format="FLAC")
    _cut(path, path.stat().st_size // 2)
    with pytest.raises(AudioError, match="not a readable audio file or truncated"):
        load_audio(path)


def test_aiff_bytes_under_a_wav_name_load(tone, tmp_path):
    aiff = tone("real.aiff", seconds=0.5, format="AIFF")
    disguised = tmp_path / "disguised.wav"
    disguised.write_bytes(aiff.read_bytes())
    assert audio_info(disguised).format == "AIFF"  # detected from the bytes, not the name
    np.testing.assert_array_equal(
        load_audio(disguised).waveform.numpy(), load_audio(aiff).waveform.numpy()
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_samples(tmp_path, bad):
    data = np.full(1_600, 0.1, dtype=np.float32)
    data[[3, 700]] = bad
    path = tmp_path / "bad.wav"
    sf.write(path, data, 16_000, subtype="FLOAT")
    with pytest.raises(AudioError, match="2 samples are NaN or infinite"):
        load_audio(path)


def test_all_zero_audio_is_allowed_but_flagged(tmp_path):
    path = tmp_path / "zeros.wav"
    sf.write(path, np.zeros(8_000, dtype=np.float32), 16_000)
    with pytest.warns(SilentAudioWarning, match="every sample is zero"):
        audio = load_audio(path)
    assert audio.silent and audio.num_samples == 8_000


def test_stereo_is_downmixed_to_the_channel_mean(tone):
    path = tone("stereo.wav", seconds=0.5, channels=2)
    both, _ = sf.read(path, dtype="float32")
    audio = load_audio(path)
    assert audio.source_channels == 2 and audio.waveform.ndim == 1
    np.testing.assert_allclose(audio.waveform.numpy(), both.mean(axis=1), atol=1e-6)


@pytest.mark.parametrize("rate", [44_100, 48_000, 96_000])
def test_resampled_to_16k_with_the_planned_length(tone, rate):
    path = tone(f"r{rate}.wav", seconds=1.25, sample_rate=rate, frequency=440.0)
    audio = load_audio(path)
    assert audio.source_sample_rate == rate and audio.sample_rate == 16_000
    assert audio.num_samples == expected_num_samples(audio.source_num_frames, rate) == 20_000
    # The tone survives resampling: its spectrum still peaks at 440 Hz.
    spectrum = np.abs(np.fft.rfft(audio.waveform.numpy()))
    peak_hz = np.argmax(spectrum) * 16_000 / audio.num_samples
    assert abs(peak_hz - 440.0) < 2.0


def test_shorter_than_50_ms(tone):
    path = tone("blip.wav", seconds=0.04)
    with pytest.raises(AudioError, match=r"too short: 40\.0 ms < 50 ms"):
        load_audio(path)
    assert load_audio(path, min_seconds=0.01).num_samples == 640


def test_longer_than_the_limit_keeps_the_start(tone):
    path = tone("long.wav", seconds=7.5, sample_rate=48_000)
    cropped = load_audio(path)
    assert cropped.cropped
    assert cropped.num_samples == int(DEFAULT_MAX_SECONDS * 16_000)
    assert cropped.num_samples == expected_num_samples(cropped.source_num_frames, 48_000)
    whole = load_audio(path, max_seconds=None)
    assert not whole.cropped and whole.num_samples == 120_000
    # Decoding only the start (plus a margin) gives the same samples as resampling it all.
    np.testing.assert_allclose(
        cropped.waveform.numpy(), whole.waveform[:96_000].numpy(), atol=1e-5, rtol=0
    )
    assert load_audio(path, max_seconds=2.0).num_samples == 32_000


def test_max_seconds_must_be_positive(tone):
    with pytest.raises(ValueError, match="max_seconds"):
        load_audio(tone(), max_seconds=0)


# -- resampling at any rate (soxr), planned lengths exact ------------------------------------
@pytest.mark.parametrize("rate", [8_000, 11_025, 22_050, 24_414, 44_100, 48_000, 96_000])
def test_resampled_length_is_exact_at_any_rate(tmp_path, rate):
    """The planner's ``expected_num_samples`` equals what ``load_audio`` returns, cropped or not."""
    from trustser.audio import expected_num_samples, resample, resampled_length

    rng = np.random.default_rng(rate)
    for frames in [rate // 10 + 3, rate, int(rate * 2.345), int(rate * 6.5) + 1]:
        path = tmp_path / f"{rate}-{frames}.wav"
        sf.write(str(path), (0.1 * rng.standard_normal(frames)).astype(np.float32), rate)
        for max_seconds in (6.0, None):
            audio = load_audio(path, max_seconds=max_seconds)
            assert audio.num_samples == expected_num_samples(frames, rate, max_seconds=max_seconds)
    for n in range(1, 400):
        assert resample(np.zeros(n, np.float32), rate, 16_000).shape[0] == resampled_length(
            n, rate, 16_000
        )


def test_soxr_resampling_keeps_a_tone():
    """A 440 Hz tone at 24 414 Hz stays a 440 Hz tone at 16 kHz (quality, not just length)."""
    from trustser.audio import resample

    t = np.arange(24_414 * 2) / 24_414
    out = resample(np.sin(2 * np.pi * 440 * t).astype(np.float32), 24_414, 16_000)
    expected = np.sin(2 * np.pi * 440 * np.arange(out.shape[0]) / 16_000)
    assert np.abs(out[200:-200] - expected[200:-200]).max() < 1e-3


def test_load_audio_can_leave_warnings_to_the_caller(tmp_path):
    import warnings

    path = tmp_path / "zeros.wav"
    sf.write(str(path), np.zeros(16_000, np.float32), 16_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        audio = load_audio(path, warn=False)
    assert audio.silent
