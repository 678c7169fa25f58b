"""The synthetic espeak-ng corpus: determinism, voices, manifest and folds, bias, CLI wiring."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from trustser.cli.main import app
from trustser.corpora import synth
from trustser.corpora._common import CorpusLayoutError
from trustser.manifest import GENDERS, ManifestError

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"
)

TINY = {"size": "tiny", "seed": 0}  # 6 speakers × 2 sentences × 4 emotions = 48 clips
BIAS = "angry:female"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    root = tmp_path_factory.mktemp("synth") / "a"
    synth.synthesize(root, **TINY)
    return root


@pytest.fixture(scope="module")
def biased(tmp_path_factory, corpus: Path) -> Path:
    root = tmp_path_factory.mktemp("synth") / "biased"
    synth.synthesize(root, **TINY, bias=BIAS)
    return root


def _wavs(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "wav").glob("*.wav"))}


def _load(path: str) -> np.ndarray:
    data, rate = sf.read(path, dtype="float64")
    assert rate == synth.SAMPLE_RATE
    return data


# --- pure functions (no espeak-ng needed) --------------------------------------------------------


def test_the_package_exports_its_public_api():
    missing = [name for name in synth.__all__ if not hasattr(synth, name)]
    assert not missing, missing
    assert {"synthesize", "prepare", "check_voice", "estimate_f0", "Bias"} <= set(synth.__all__)


def test_estimate_f0_finds_the_pitch_of_a_harmonic_tone():
    rate = 16_000
    t = np.arange(rate) / rate
    tone = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 6))
    stats = synth.pitch_stats(synth.estimate_f0(tone, rate))
    assert stats.median_hz == pytest.approx(150, abs=1.5)
    assert stats.voiced_fraction > 0.9
    noise = np.random.default_rng(0).standard_normal(rate)
    assert synth.pitch_stats(synth.estimate_f0(noise, rate)).voiced_fraction < 0.2


def test_parse_bias_and_voice_reject_bad_input():
    assert synth.parse_bias("angry:female") == synth.Bias("angry", "female", 1.0, "neutral")
    assert synth.parse_bias("Happy:Male:0.5:sad") == synth.Bias("happy", "male", 0.5, "sad")
    for bad, needle in [
        ("angry", "EMOTION:GENDER"),
        ("furious:female", "furious"),
        ("angry:robot", "robot"),
        ("angry:female:2", "(0, 1]"),
        ("angry:female:x", "not a number"),
        ("neutral:female", "toward itself"),
    ]:
        with pytest.raises(
            synth.SynthesisError, match=needle.replace("(", r"\(").replace("]", r"\]")
        ):
            synth.parse_bias(bad)
    assert synth.parse_voice("en+f3:female") == synth.Voice("en+f3", "female")
    with pytest.raises(synth.VoiceError, match="NAME:GENDER"):
        synth.parse_voice("en+f3")
    with pytest.raises(synth.VoiceError, match="robot"):
        synth.parse_voice("en+f3:robot")


def test_missing_espeak_explains_how_to_install(monkeypatch, tmp_path):
    monkeypatch.delenv("TRUSTSER_ESPEAK", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(synth.EspeakNotFoundError) as error:
        synth.synthesize(tmp_path / "c", size="tiny")
    message = str(error.value)
    for hint in ("apt-get install espeak-ng", "brew install espeak-ng", "Windows"):
        assert hint in message
    assert not (tmp_path / "c").exists()  # nothing written before the check

    result = CliRunner().invoke(app, ["data", "synth", "-o", str(tmp_path / "c"), "--size", "tiny"])
    assert result.exit_code == 2
    assert "espeak-ng was not found" in result.output


def test_bad_sizes_are_refused_before_any_work(tmp_path):
    with pytest.raises(synth.SynthesisError, match="even number"):
        synth.synthesize(tmp_path, num_speakers=5)
    with pytest.raises(synth.SynthesisError, match="at most 20"):
        synth.synthesize(tmp_path, num_speakers=22)
    with pytest.raises(synth.SynthesisError, match="1 to 40"):
        synth.synthesize(tmp_path, num_sentences=0)
    with pytest.raises(synth.SynthesisError, match="preset"):
        synth.synthesize(tmp_path, size="huge")
    with pytest.raises(synth.VoiceError, match="1 female and 0 male"):
        synth.synthesize(tmp_path, voices=["en+f3:female"])


# --- the corpus itself ---------------------------------------------------------------------------


@needs_espeak
def test_same_seed_gives_byte_identical_corpus(corpus, tmp_path):
    again = synth.synthesize(tmp_path / "again", **TINY)
    assert again.ids == synth.prepare(corpus).ids
    assert _wavs(tmp_path / "again") == _wavs(corpus)
    for name in ("manifest.jsonl", "synth.json"):
        assert (tmp_path / "again" / name).read_bytes() == (corpus / name).read_bytes()


@needs_espeak
def test_manifest_is_valid_balanced_and_speaker_independent(corpus, tmp_path):
    manifest = synth.prepare(corpus)
    assert manifest.corpus == "synth" and len(manifest) == 6 * 2 * 4
    assert "seed=0" in manifest.version and "bias=none" in manifest.version
    assert {u.emotion for u in manifest} == set(synth.LABELS)
    speakers = {u.speaker: u.gender for u in manifest}
    assert sorted(speakers.values()) == ["female"] * 3 + ["male"] * 3
    for u in manifest:
        info = sf.info(u.path)
        assert (info.samplerate, info.channels, info.subtype) == (16_000, 1, "PCM_16")
        assert info.frames == u.num_frames and 1.0 < u.duration < 6.0
    assert len(manifest.folds) == 3
    for fold in manifest.folds:
        roles = {role: set(getattr(fold, role)) for role in ("train", "dev", "test")}
        assert not (roles["train"] & roles["dev"] or roles["train"] & roles["test"])
        assert not roles["dev"] & roles["test"]
        assert set().union(*roles.values()) == set(speakers)
        for role in ("dev", "test"):  # one female/male pair each
            assert sorted(speakers[s] for s in roles[role]) == list(GENDERS)
    assert sorted(s for f in manifest.folds for s in f.test) == sorted(speakers)
    # prepare(root, out) writes a copy and reuses it afterwards
    copy = synth.prepare(corpus, tmp_path / "m.jsonl")
    assert copy.checksum() == manifest.checksum()
    stamp = (tmp_path / "m.jsonl").stat().st_mtime_ns
    assert synth.prepare(corpus, tmp_path / "m.jsonl").root == str(corpus.resolve())
    assert (tmp_path / "m.jsonl").stat().st_mtime_ns == stamp
    with pytest.raises(ManifestError, match="overwrite"):
        synth.prepare(tmp_path / "elsewhere", tmp_path / "m.jsonl")
    with pytest.raises(CorpusLayoutError, match="trustser data synth"):
        synth.prepare(tmp_path / "nowhere")


@needs_espeak
def test_existing_corpus_is_reused_repaired_and_never_silently_replaced(corpus, tmp_path):
    stamp = (corpus / "manifest.jsonl").stat().st_mtime_ns
    synth.synthesize(corpus, **TINY)  # same settings: reused, nothing rewritten
    assert (corpus / "manifest.jsonl").stat().st_mtime_ns == stamp
    with pytest.raises(synth.SynthesisError, match="--overwrite"):
        synth.synthesize(corpus, size="tiny", seed=1)
    # a damaged corpus of the same settings is rendered again, without --overwrite
    damaged = tmp_path / "damaged"
    shutil.copytree(corpus, damaged)
    lost = sorted((damaged / "wav").glob("*.wav"))[0]
    lost.unlink()
    synth.synthesize(damaged, **TINY)
    assert lost.read_bytes() == (corpus / "wav" / lost.name).read_bytes()
    with pytest.raises(synth.SynthesisError, match="is a file"):
        synth.synthesize(lost, **TINY)


@needs_espeak
def test_voices_match_their_gender_label(corpus):
    manifest = synth.prepare(corpus)
    medians: dict[str, list[float]] = {}
    for u in manifest.filter(lambda u: u.emotion == "neutral"):
        f0 = synth.estimate_f0(_load(u.path), synth.SAMPLE_RATE)
        medians.setdefault(u.speaker, []).append(synth.pitch_stats(f0).median_hz)
    for speaker, values in medians.items():
        gender = manifest.filter(lambda u, s=speaker: u.speaker == s).utterances[0].gender
        median = float(np.median(values))
        if gender == "female":
            assert median > synth.GENDER_F0_BOUNDARY_HZ + 10, (speaker, median)
        else:
            assert median < synth.GENDER_F0_BOUNDARY_HZ - 10, (speaker, median)


@needs_espeak
def test_voice_check_refuses_voices_that_contradict_their_label():
    # espeak-ng 1.51 ignores the variant of en-gb+f3 and speaks its default male voice.
    with pytest.raises(synth.VoiceError, match=r"en-gb\+f3.*labelled female.*median f0"):
        synth.check_voice(synth.Voice("en-gb+f3", "female"))
    with pytest.raises(synth.VoiceError, match="labelled male"):
        synth.check_voice(synth.Voice("en+f3", "male"))
    with pytest.raises(synth.VoiceError, match="no variant 'nosuch'"):
        synth.check_voice(synth.Voice("en+nosuch", "male"))
    stats, rms = synth.check_voice(synth.Voice("en+f3", "female"))
    assert stats.median_hz > synth.GENDER_F0_BOUNDARY_HZ and rms > 0


@needs_espeak
def test_bias_changes_only_the_targeted_clips(corpus, biased):
    plain, skewed = synth.prepare(corpus), synth.prepare(biased)
    assert "bias=angry:female:1" in skewed.version
    before, after = _wavs(corpus), _wavs(biased)
    assert before.keys() == after.keys()
    targeted = {f"{u.id}.wav" for u in plain if u.emotion == "angry" and u.gender == "female"}
    assert len(targeted) == 3 * 2
    changed = {name for name in before if before[name] != after[name]}
    assert changed == targeted
    assert {u.id for u in skewed if u.custom["biased"]} == {n[:-4] for n in targeted}

    # The recorded settings move to the speaker's neutral ones: lower, narrower, slower.
    for u in plain.filter(lambda u: f"{u.id}.wav" in targeted):
        old, new = u.custom["prosody"], skewed[u.id].custom["prosody"]
        assert new["pitch"] <= old["pitch"] and new["range"] <= old["range"]
        assert new["rate"] <= old["rate"] and new["volume"] <= old["volume"]

    # ... and it shows in the audio: the targeted clips' pitch drops and narrows.
    def measure(manifest, ids):
        stats = [synth.pitch_stats(synth.estimate_f0(_load(manifest[i].path), 16_000)) for i in ids]
        return np.mean([np.log(s.median_hz) for s in stats]), np.mean(
            [s.range_semitones for s in stats]
        )

    ids = sorted(n[:-4] for n in targeted)
    (pitch_before, range_before), (pitch_after, range_after) = (
        measure(plain, ids),
        measure(skewed, ids),
    )
    assert pitch_after < pitch_before - 0.02  # > 2 % lower f0 on average
    assert range_after < range_before


@needs_espeak
def test_cli_wiring(corpus, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["data", "synth", "-o", str(corpus), "--size", "tiny"])
    assert result.exit_code == 0, result.output
    assert "48" in result.output and "manifest.jsonl" in result.output
    result = runner.invoke(
        app, ["data", "synth", "-o", str(tmp_path / "x"), "--size", "tiny", "--bias", "angry:robot"]
    )
    assert result.exit_code == 2 and "robot" in result.output
    result = runner.invoke(
        app, ["data", "synth", "-o", str(corpus), "--size", "tiny", "--seed", "3"]
    )
    assert result.exit_code == 2 and "--overwrite" in result.output
