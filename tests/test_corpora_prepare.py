"""The registry and what every ``prepare`` shares: reuse, overwrite, unreadable files, EmoDB."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import pytest

from trustser._validation import TrustSERError
from trustser.corpora import (
    CORPORA,
    UnknownCorpusError,
    corpus_info,
    corpus_module,
    list_corpora,
    prepare_corpus,
)
from trustser.corpora._common import UnreadableAudioWarning
from trustser.manifest import ManifestError, read_manifest, summarize

SPEAKERS = ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")


def make_emodb(tone, base: Path, *, codes=("a01Fa", "a02Nb", "b01Tc", "b02Wa")) -> Path:
    for speaker in SPEAKERS:
        for code in codes:
            tone(f"emodb/wav/{speaker}{code}.wav", seconds=0.06)
    return base / "emodb"


def test_registry_lists_and_resolves_names():
    names = list_corpora()
    assert names[: len(CORPORA)] == list(CORPORA)
    assert {"iemocap", "crema_d", "msp_improv", "msp_podcast", "ravdess", "emodb"} <= set(names)
    for alias, name in (
        ("CREMA-D", "crema_d"),
        ("msp-improv", "msp_improv"),
        ("MSPPodcast", "msp_podcast"),
    ):
        assert name == corpus_module(alias).NAME
    with pytest.raises(
        UnknownCorpusError, match="unknown corpus 'timit'; choose one of iemocap"
    ) as caught:
        corpus_module("timit")
    assert isinstance(caught.value, TrustSERError)
    assert not str(caught.value).startswith('"')  # shown as a sentence, not a quoted key


def test_synth_is_listed_only_when_its_module_exists(monkeypatch):
    import importlib.util

    import trustser.corpora as registry

    real = importlib.util.find_spec
    monkeypatch.setattr(
        registry.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "trustser.corpora.synth" else real(name, *a),
    )
    assert "synth" not in registry.list_corpora()
    with pytest.raises(UnknownCorpusError):
        registry.corpus_module("synth")


def test_corpus_info_reads_module_constants():
    info = corpus_info("iemocap")
    assert info.name == "iemocap" and info.num_folds == 5
    assert info.labels == ("neutral", "happy", "sad", "angry")  # exc and hap map to one class
    assert "session" in info.fold_scheme and info.source.startswith("https://")
    assert corpus_info("msp_podcast").num_folds == 1
    assert corpus_info("msp_improv").num_folds == 6


def test_prepare_writes_then_reuses(tone, tmp_path):
    root = make_emodb(tone, tmp_path)
    out = tmp_path / "m.jsonl"
    first = prepare_corpus("emodb", root, out)
    assert out.is_file() and first.root == str(root.resolve())
    # The corpus changes, but an existing manifest of the same corpus and root is reused...
    for speaker in SPEAKERS:
        tone(f"emodb/wav/{speaker}c01Nd.wav", seconds=0.06)
    assert prepare_corpus("emodb", root, out) == first
    # ...until overwrite rebuilds it.
    rebuilt = prepare_corpus("emodb", root, out, overwrite=True)
    assert len(rebuilt) == len(first) + 10
    assert read_manifest(out) == rebuilt


def test_prepare_never_silently_replaces_something_else(tone, tmp_path):
    root = make_emodb(tone, tmp_path)
    out = tmp_path / "m.jsonl"
    prepare_corpus("emodb", root, out)
    with pytest.raises(
        ManifestError, match=r"holds a manifest of corpus 'emodb', not 'ravdess'.*overwrite"
    ):
        prepare_corpus("ravdess", root, out)
    other_root = tmp_path / "copy"
    root.rename(other_root)
    with pytest.raises(
        ManifestError, match=r"(?s)cannot be reused; pass overwrite=True.*missing file"
    ):
        prepare_corpus("emodb", other_root, out)  # the old files are gone
    other_root.rename(root)
    (root / "wav").rename(root / "wav_saved")
    make_emodb(tone, tmp_path / "second")
    with pytest.raises(ManifestError, match=r"was prepared from .*emodb', not .*second/emodb'"):
        prepare_corpus("emodb", tmp_path / "second" / "emodb", out)
    junk = tmp_path / "junk.jsonl"
    junk.write_text("hello\n")
    with pytest.raises(ManifestError, match=r"(?s)cannot be reused.*not valid JSON"):
        prepare_corpus("emodb", root, junk)


def test_unreadable_files_fail_with_a_list(tone, tmp_path):
    root = make_emodb(tone, tmp_path)
    (root / "wav" / "03a01Fa.wav").write_bytes(b"")
    (root / "wav" / "08a01Fa.wav").write_text("not audio")
    with pytest.raises(ManifestError) as caught:
        prepare_corpus("emodb", root, tmp_path / "m.jsonl")
    message = str(caught.value)
    assert "emodb: 2 audio file(s) cannot be read:" in message
    assert "emodb_03a01Fa: the file is empty (0 bytes)" in message
    assert "emodb_08a01Fa: not a readable audio file" in message
    assert "--skip-unreadable" in message
    assert not (tmp_path / "m.jsonl").exists()


def test_skip_unreadable_leaves_them_out_and_reports(tone, tmp_path):
    root = make_emodb(tone, tmp_path)
    (root / "wav" / "03a01Fa.wav").write_bytes(b"")
    out = tmp_path / "m.jsonl.gz"
    with pytest.warns(UnreadableAudioWarning, match=r"left out 1 unreadable audio file\(s\)"):
        manifest = prepare_corpus("emodb", root, out, skip_unreadable=True)
    assert len(manifest) == 39 and "emodb_03a01Fa" not in manifest.by_id
    assert manifest.skipped == (
        ("emodb_03a01Fa", f"the file is empty (0 bytes) ({root.resolve()}/wav/03a01Fa.wav)"),
    )
    assert read_manifest(out).skipped == manifest.skipped  # recorded in the header
    assert summarize(manifest).skipped == manifest.skipped


def test_truncated_files_are_kept_with_a_warning(tone, tmp_path):
    root = make_emodb(tone, tmp_path)
    path = tone("emodb/wav/03a01Fa.wav", seconds=0.5)
    path.write_bytes(path.read_bytes()[: 44 + 2 * 4_000])
    with pytest.warns(UserWarning, match=r"1 file\(s\) are truncated"):
        manifest = prepare_corpus("emodb", root)
    assert manifest["emodb_03a01Fa"].num_frames == 4_000


def test_fold_scheme_failures_are_explained(tone, tmp_path):
    for speaker in ("03", "08"):
        tone(f"emodb/wav/{speaker}a01Fa.wav", seconds=0.06)
    with pytest.raises(
        ManifestError, match=r"emodb: cannot build the folds .*cannot form 5 speaker groups"
    ):
        prepare_corpus("emodb", tmp_path / "emodb")


def test_unsupported_options_are_refused(tmp_path, monkeypatch):
    import types

    import trustser.corpora as registry

    calls = []

    def prepare(root, out=None):
        calls.append((root, out))
        return "manifest"

    fake = types.SimpleNamespace(prepare=prepare)
    monkeypatch.setattr(registry, "corpus_module", lambda name: fake)
    assert registry.prepare_corpus("x", tmp_path, progress=print) == "manifest"  # cosmetic: dropped
    with pytest.raises(TrustSERError, match="does not support overwrite, skip_unreadable"):
        registry.prepare_corpus("x", tmp_path, overwrite=True, skip_unreadable=True)
    assert calls == [(tmp_path, None)]


def test_no_usable_utterances(tmp_path):
    (tmp_path / "wav").mkdir()
    (tmp_path / "wav" / "readme.txt").write_text("empty")
    with pytest.raises(TrustSERError, match="emodb: no usable utterances were found"):
        prepare_corpus("emodb", tmp_path)


@pytest.mark.emodb
def test_real_emodb(emodb_root, tmp_path):
    out = tmp_path / "emodb.jsonl"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        manifest = prepare_corpus("emodb", emodb_root, out)
    assert len(manifest) == 339
    assert Counter(u.emotion for u in manifest) == {
        "neutral": 79,
        "happy": 71,
        "sad": 62,
        "angry": 127,
    }
    summary = summarize(manifest)
    assert summary.num_speakers == 10 and summary.speakers_per_gender == {"female": 5, "male": 5}
    assert all(u.sample_rate == 16_000 and u.duration > 1.0 for u in manifest)
    assert len(manifest.folds) == 5
    tested = []
    for fold in manifest.folds:
        parts = manifest.split(fold)
        speakers = {role: {u.speaker for u in parts[role]} for role in parts}
        assert not speakers["train"] & speakers["test"] and not speakers["dev"] & speakers["test"]
        assert not speakers["train"] & speakers["dev"]
        assert {u.gender for u in parts["test"]} == {"female", "male"} and len(
            speakers["test"]
        ) == 2
        tested += speakers["test"]
    assert sorted(tested) == sorted({u.speaker for u in manifest})  # each speaker tested once
    header = json.loads(out.read_text().splitlines()[0])
    assert header["corpus"] == "emodb" and header["num_utterances"] == 339
