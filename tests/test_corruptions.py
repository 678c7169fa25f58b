"""The corruption suite: each transform measured on its own output, the registry, the seeds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import signal

from trustser.corruptions import (
    CORRUPTIONS,
    DEFAULT_SUITE,
    CorruptionError,
    Talker,
    choose_talkers,
    clip_seed,
    codec_roundtrip,
    get_case,
    get_corruption,
    measured_snr_db,
    room_impulse_response,
    schroeder_rt60,
    suite,
)
from trustser.corruptions import functional as F
from trustser.corruptions.babble import babble, babble_signal
from trustser.corruptions.codec import codec_delay, compression_level
from trustser.corruptions.rooms import diffuse_drr_db, reverberate

FS = 16_000


def speech_like(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A voiced-speech stand-in: a 120-180 Hz harmonic series, syllable-rate envelope, breath."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * FS)) / FS
    f0 = 150 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / FS
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2
    x = 0.1 * voiced * envelope + 0.003 * rng.standard_normal(t.size)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def tone(frequency: float, seconds: float = 1.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * FS)) / FS
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def talker_pool(n: int = 6, seconds: float = 1.3) -> list[Talker]:
    """Talkers ``t0``… of speakers ``s0``…, each a tone of its own frequency (300 + 200·i Hz)."""
    return [Talker(f"t{i}", f"s{i}", tone(300 + 200 * i, seconds)) for i in range(n)]


def transfer_db(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and the power gain 10·log10(P_y / P_x) from Welch estimates."""
    freqs, pxx = signal.welch(x, FS, nperseg=2048)
    _, pyy = signal.welch(y, FS, nperseg=2048)
    return freqs, 10 * np.log10(pyy / pxx)


def apply_case(case, x, seed=7):
    return case.apply(x, seed, speaker="own", talkers=talker_pool())


# --- the registry: every case ---------------------------------------------------------------

ALL_CASES = suite()


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("num_samples", [FS * 2 + 1, 1_601])
def test_every_case_gives_finite_float32_of_the_same_length(case, num_samples):
    x = speech_like(num_samples / FS)[:num_samples]
    before = x.copy()
    y = apply_case(case, x)
    assert y.dtype == np.float32 and y.shape == x.shape and y.flags.c_contiguous
    assert np.isfinite(y).all()
    assert not np.array_equal(y, x), "the corruption changed nothing"
    np.testing.assert_array_equal(x, before)  # the input is left alone


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.name)
def test_every_case_is_deterministic_per_seed(case):
    x = speech_like(1.0)
    first, again = apply_case(case, x, seed=11), apply_case(case, x, seed=11)
    np.testing.assert_array_equal(first, again)
    other = apply_case(case, x, seed=12)
    if case.corruption.seeded:
        assert not np.array_equal(first, other)
    else:
        np.testing.assert_array_equal(first, other)


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.name)
def test_every_record_is_json_and_names_its_parameters(case):
    record = json.loads(json.dumps(case.record()))
    assert record["name"] == case.name and get_case(record["name"]) == case
    assert record["corruption"] == case.corruption.name
    assert record["severity"] == case.severity.level
    assert record["params"] == dict(case.severity.params)
    assert record["sample_rate"] == FS and record["suite_version"] >= 1
    assert {"numpy", "scipy", "libsndfile", "trustser"} <= set(record["versions"])


def test_the_default_suite_has_the_issues_levels():
    params = {c.name: [dict(s.params) for s in c.severities] for c in CORRUPTIONS.values()}
    assert tuple(CORRUPTIONS) == DEFAULT_SUITE
    for name in ("white_noise", "pink_noise", "babble"):
        assert [p["snr_db"] for p in params[name]] == [20.0, 10.0, 0.0]
    assert [p["rt60_s"] for p in params["reverb"]] == [0.3, 0.6, 1.0]
    assert params["telephone"] == [
        {
            "low_hz": 300.0,
            "high_hz": 3400.0,
            "channel_rate": 8000,
            "mu": 255,
            "bits": 8,
            "filter_order": 8,
        }
    ]
    assert [p["bitrate_kbps"] for p in params["mp3"]] == [32, 16, 8]
    assert [p["bitrate_kbps"] for p in params["opus"]] == [24, 12, 6]
    assert -20.0 in [p["gain_db"] for p in params["attenuation"]]
    assert 12.0 in [p["gain_db"] for p in params["clipping"]]
    assert [p["db_per_octave"] for p in params["tilt_up"]][-1] == 6.0
    assert [p["db_per_octave"] for p in params["tilt_down"]][-1] == -6.0
    for corruption in CORRUPTIONS.values():
        assert [s.level for s in corruption.severities] == list(
            range(1, len(corruption.severities) + 1)
        )


def test_suite_selects_by_name_and_level():
    assert [c.name for c in suite(["reverb", "mp3"], levels=[1, 3])] == [
        "reverb-1",
        "reverb-3",
        "mp3-1",
        "mp3-3",
    ]
    assert [c.name for c in suite(["telephone", "babble"], levels=[2])] == ["babble-2"]
    assert len(suite()) == sum(len(c.severities) for c in CORRUPTIONS.values())
    with pytest.raises(CorruptionError, match="severity level"):
        suite(["telephone"], levels=[2])
    with pytest.raises(CorruptionError, match="white_noise"):
        get_corruption("whitenoise")
    with pytest.raises(CorruptionError, match="<corruption>-<level>"):
        get_case("reverb")
    with pytest.raises(CorruptionError, match="levels are 1"):
        get_case("telephone-2")


def test_clip_seeds_are_stable_and_distinct():
    # Pinned: a change here silently changes every cached corrupted copy.
    assert clip_seed(0, "emodb_03a01Fa", "babble", 2) == 7478825350063676858
    seeds = {
        clip_seed(suite_seed, clip, corruption, level)
        for suite_seed in (0, 1)
        for clip in ("a", "b")
        for corruption in ("babble", "reverb")
        for level in (1, 2)
    }
    assert len(seeds) == 16 and all(0 <= s < 2**63 for s in seeds)
    case = get_case("reverb-2")
    assert case.clip_seed(3, "x") == clip_seed(3, "x", "reverb", 2)


def test_bad_inputs_are_refused_with_the_reason():
    case = get_case("white_noise-1")
    with pytest.raises(CorruptionError, match="shape"):
        case.apply(np.zeros((2, 100), np.float32), 0)
    with pytest.raises(CorruptionError, match="dtype int16"):
        case.apply(np.zeros(100, np.int16), 0)
    with pytest.raises(CorruptionError, match="1 NaN"):
        case.apply(np.array([0.0, np.nan, 0.1], np.float32), 0)
    with pytest.raises(CorruptionError, match="empty"):
        case.apply(np.zeros(0, np.float32), 0)
    with pytest.raises(CorruptionError, match="non-negative integer"):
        case.apply(speech_like(0.1), -1)
    with pytest.raises(CorruptionError, match="talkers="):
        get_case("babble-1").apply(speech_like(0.1), 0)


# --- additive noise -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["white_noise", "pink_noise", "babble"])
@pytest.mark.parametrize("level", [1, 2, 3])
def test_additive_corruptions_hit_their_snr(name, level):
    case = get_corruption(name).case(level)
    x = speech_like(1.5)
    y = apply_case(case, x, seed=level)
    assert measured_snr_db(x, y) == pytest.approx(case.severity.params["snr_db"], abs=0.02)


def test_white_noise_is_flat_and_pink_noise_falls_3_db_per_octave():
    x = tone(200, seconds=4.0)
    for fn, slope in ((F.white_noise, 0.0), (F.pink_noise, -1.0)):
        noise = fn(x, snr_db=0.0, seed=3).astype(np.float64) - x
        freqs, psd = signal.welch(noise, FS, nperseg=4096)
        band = (freqs >= 100) & (freqs <= 6000)
        fitted = np.polyfit(np.log10(freqs[band]), np.log10(psd[band]), 1)[0]
        assert fitted == pytest.approx(slope, abs=0.05), fn.__name__  # -1 decade/decade = -3 dB/oct
    pink = F.pink_noise_signal(4 * FS, seed=0, low_hz=20.0)
    spectrum = np.abs(np.fft.rfft(pink)) ** 2
    freqs = np.fft.rfftfreq(pink.size, 1 / FS)
    assert spectrum[freqs < 20].sum() < 1e-20 * spectrum.sum()  # rounding only


def test_a_silent_clip_stays_silent_under_additive_noise():
    silent = np.zeros(FS, np.float32)
    for name in ("white_noise-3", "pink_noise-3", "babble-3"):
        y = get_case(name).apply(silent, 0, speaker="own", talkers=talker_pool())
        np.testing.assert_array_equal(y, silent)


# --- babble ---------------------------------------------------------------------------------


def test_babble_never_mixes_the_clips_own_speaker():
    pool = [*talker_pool(6), Talker("mine", "own", tone(5000))]
    with pytest.raises(CorruptionError, match=r"own speaker 'own'.*mine"):
        choose_talkers(pool, speaker="own", seed=0)
    with pytest.raises(CorruptionError, match="own speaker"):
        get_case("babble-2").apply(speech_like(0.5), 0, speaker="own", talkers=pool)
    with pytest.raises(CorruptionError, match="speaker id"):
        choose_talkers(talker_pool(), speaker=None, seed=0)


def test_babble_chooses_three_to_five_distinct_speakers_from_the_seed():
    pool = talker_pool(8)
    counts = set()
    for seed in range(40):
        chosen = choose_talkers(pool, speaker="own", seed=seed)
        counts.add(len(chosen))
        assert len({t.speaker for t in chosen}) == len(chosen)
        assert [t.clip_id for t in chosen] == [
            t.clip_id for t in choose_talkers(pool, speaker="own", seed=seed)
        ]
    assert counts == {3, 4, 5}
    # A pool of 4 clips from 2 speakers: both speakers come before any repeat.
    short = [Talker(f"c{i}", f"s{i % 2}", tone(400 + 100 * i)) for i in range(4)]
    for seed in range(10):
        chosen = choose_talkers(short, speaker="own", seed=seed)
        assert {t.speaker for t in chosen[:2]} == {"s0", "s1"}
    with pytest.raises(CorruptionError, match="at least 3"):
        choose_talkers(talker_pool(2), speaker="own", seed=0)


def test_babble_is_the_chosen_talkers_at_equal_power():
    pool = talker_pool(8)
    x = tone(100, seconds=2.0)
    y = babble(x, snr_db=0.0, seed=5, speaker="own", talkers=pool)
    added = y.astype(np.float64) - x
    spectrum = np.abs(np.fft.rfft(added)) ** 2
    freqs = np.fft.rfftfreq(added.size, 1 / FS)

    def power_at(frequency):
        return spectrum[np.abs(freqs - frequency) <= 5].sum()

    chosen = {t.clip_id for t in choose_talkers(pool, speaker="own", seed=5)}
    powers = {t.clip_id: power_at(300 + 200 * int(t.clip_id[1:])) for t in pool}
    chosen_powers = [powers[c] for c in chosen]
    assert max(chosen_powers) / min(chosen_powers) < 1.2  # every voice at the same level
    for clip_id, power in powers.items():
        if clip_id not in chosen:
            assert power < 1e-3 * min(chosen_powers), clip_id
    mixed = babble_signal(choose_talkers(pool, speaker="own", seed=5), x.size, seed=5)
    assert np.mean(mixed**2) == pytest.approx(len(chosen), rel=0.05)  # unit RMS each


# --- reverberation --------------------------------------------------------------------------


def test_schroeder_measures_an_exact_exponential_decay():
    t = np.arange(FS) / FS
    decay = np.exp(-3 * math.log(10) * t / 0.5)  # 60 dB of energy in 0.5 s
    assert schroeder_rt60(decay) == pytest.approx(0.5, rel=1e-3)
    with pytest.raises(CorruptionError, match=r"does not decay from -5\.0 to -25\.0 dB"):
        schroeder_rt60(np.r_[1.0, np.zeros(99)])  # a bare impulse: no decay to fit


@pytest.mark.parametrize("level", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reverb_impulse_responses_have_their_rt60_and_drr(level, seed):
    params = get_corruption("reverb").severity(level).params
    rir = room_impulse_response(params["rt60_s"], drr_db=params["drr_db"], seed=seed)
    assert rir.size == math.ceil(params["rt60_s"] * FS) and rir[0] == 1.0
    assert schroeder_rt60(rir) == pytest.approx(params["rt60_s"], rel=0.05)
    drr = 10 * math.log10(rir[0] ** 2 / np.sum(rir[1:] ** 2))
    assert drr == pytest.approx(params["drr_db"], abs=1e-9)


def test_reverb_severities_follow_the_diffuse_room():
    drrs = [s.params["drr_db"] for s in get_corruption("reverb").severities]
    assert drrs == sorted(drrs, reverse=True)  # a longer RT60 means more reverberant energy
    room = {"volume_m3": 60.0, "distance_m": 1.0, "directivity": 2.0}
    assert diffuse_drr_db(0.6, **room) - diffuse_drr_db(0.3, **room) == pytest.approx(
        -10 * math.log10(2)
    )
    far = {**room, "distance_m": 2.0}
    assert diffuse_drr_db(0.6, **far) - diffuse_drr_db(0.6, **room) == pytest.approx(
        -20 * math.log10(2)
    )


def test_reverberation_is_the_clip_convolved_and_stays_aligned():
    impulse = np.zeros(FS, np.float32)
    impulse[1000] = 0.5
    y = reverberate(impulse, rt60_s=0.3, drr_db=0.0, seed=4)
    rir = room_impulse_response(0.3, drr_db=0.0, seed=4)
    np.testing.assert_allclose(y[1000 : 1000 + rir.size], 0.5 * rir, atol=1e-6)
    assert np.abs(y[:1000]).max() < 1e-12 and np.argmax(np.abs(y)) == 1000  # FFT rounding only


# --- telephone ------------------------------------------------------------------------------


def test_the_telephone_line_is_band_limited_to_300_3400_hz():
    noise = (0.05 * np.random.default_rng(1).standard_normal(4 * FS)).astype(np.float32)
    freqs, gain_db = transfer_db(noise, F.telephone(noise))

    def band(lo, hi):
        return gain_db[(freqs >= lo) & (freqs <= hi)]

    assert np.abs(band(450, 3000)).max() < 0.5  # flat in the band
    assert band(3390, 3410).mean() == pytest.approx(-3.0, abs=0.7)  # -3 dB at the edges
    assert band(3700, 8000).max() < -30
    assert band(0, 150).max() < -20
    sos = F._line_filter(300.0, 3400.0, 8, 8000)
    _, response = signal.sosfreqz(sos, worN=[300.0, 3400.0], fs=8000)
    np.testing.assert_allclose(4 * 20 * np.log10(np.abs(response)), -3.0103, atol=1e-3)


def test_mu_law_is_8_bit_and_keeps_zero():
    ramp = np.linspace(-1.2, 1.2, 100_001)
    coded = F.mu_law(ramp)
    assert len(np.unique(coded)) == 255 and np.abs(coded).max() == pytest.approx(1.0)
    assert F.mu_law(np.zeros(4)).tolist() == [0.0] * 4
    loud = ramp[np.abs(ramp) <= 1]
    assert np.max(np.abs(coded[np.abs(ramp) <= 1] - loud)) < 0.025  # half the top step
    quiet = np.linspace(-0.001, 0.001, 1001)
    assert np.max(np.abs(F.mu_law(quiet) - quiet)) < 1.5e-4  # 150x finer steps near zero


# --- codecs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mp3-1", "mp3-2", "mp3-3", "opus-1", "opus-2", "opus-3"])
def test_codecs_run_at_their_bitrate_and_stay_aligned(name):
    params = get_case(name).severity.params
    x = speech_like(4.0)
    y, size = codec_roundtrip(x, codec=params["codec"], bitrate_kbps=params["bitrate_kbps"])
    kbps = size * 8 / (x.size / FS) / 1000
    low, high = (0.9, 1.05) if params["codec"] == "mp3" else (0.8, 1.35)  # Opus: VBR + Ogg
    assert low * params["bitrate_kbps"] <= kbps <= high * params["bitrate_kbps"]
    lags = np.arange(-300, 301)
    correlation = [np.dot(x[2000:-2000], y[2000 + lag : y.size - 2000 + lag]) for lag in lags]
    # Opus at 6 kbit/s (SILK, resampled inside the codec) may peak one sample off.
    assert abs(lags[int(np.argmax(correlation))]) <= (0 if params["codec"] == "mp3" else 1)


def test_a_higher_bitrate_is_a_milder_corruption():
    x = speech_like(3.0)
    for codec in ("mp3", "opus"):
        snrs = [measured_snr_db(x, get_case(f"{codec}-{level}").apply(x, 0)) for level in (1, 2, 3)]
        assert snrs == sorted(snrs, reverse=True) and snrs[-1] > 0, (codec, snrs)


def test_codec_delay_is_found_and_bitrates_are_checked():
    assert codec_delay("opus", 12) == 0
    assert codec_delay("mp3", 8) in range(1, 4096)  # no gapless header at MPEG-2 low rates
    assert compression_level("mp3", 160) == 0.0 and compression_level("opus", 6) == 1.0
    with pytest.raises(CorruptionError, match="offers"):
        compression_level("mp3", 20)
    with pytest.raises(CorruptionError, match=r"\[6, 256\]"):
        compression_level("opus", 4)
    with pytest.raises(CorruptionError, match="'mp3', 'opus'"):
        codec_roundtrip(speech_like(0.1), codec="aac", bitrate_kbps=32)


# --- level and spectrum ---------------------------------------------------------------------


def test_attenuation_scales_and_clipping_stays_in_range():
    x = speech_like(1.0)
    np.testing.assert_allclose(get_case("attenuation-2").apply(x, 0), x * 0.1, rtol=1e-6)
    for level in (1, 2, 3):
        case = get_case(f"clipping-{level}")
        y = case.apply(x, 0)
        assert np.abs(y).max() <= 1.0
        expected = np.clip(x * 10 ** (case.severity.params["gain_db"] / 20), -1, 1)
        np.testing.assert_allclose(y, expected, rtol=1e-6)
    assert np.mean(np.abs(get_case("clipping-3").apply(x, 0)) == 1.0) > 0.05


@pytest.mark.parametrize("slope", [-6.0, -2.0, 4.0, 6.0])
def test_spectral_tilt_has_its_slope_and_keeps_the_rms(slope):
    noise = (0.05 * np.random.default_rng(2).standard_normal(4 * FS)).astype(np.float32)
    y = F.spectral_tilt(noise, db_per_octave=slope)
    freqs, gain_db = transfer_db(noise, y)
    band = (freqs >= 250) & (freqs <= 4000)
    assert np.polyfit(np.log2(freqs[band]), gain_db[band], 1)[0] == pytest.approx(slope, abs=0.1)
    shelf = (freqs >= 20) & (freqs <= 110)  # flat below the 125 Hz corner
    assert np.ptp(gain_db[shelf]) < 0.5
    assert np.sqrt(np.mean(y.astype(np.float64) ** 2)) == pytest.approx(
        np.sqrt(np.mean(noise.astype(np.float64) ** 2)), rel=1e-5
    )
