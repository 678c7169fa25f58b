"""Manifests: round trips, path resolution, header refusal and every validation problem kind."""

from __future__ import annotations

import functools
import gzip
import json
import operator
import re
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from trustser.manifest import (
    MANIFEST_FORMAT,
    UNKNOWN_SPEAKER,
    Fold,
    Manifest,
    ManifestError,
    Utterance,
    check_audio_files,
    check_manifest,
    merge_manifests,
    read_manifest,
    speakers_by_gender,
    summarize,
    validate,
    write_manifest,
)

REPO = Path(__file__).resolve().parents[1]
SPEAKERS = {
    "f1": "female",
    "m1": "male",
    "f2": "female",
    "m2": "male",
    "f3": "female",
    "m3": "male",
}
EMOTIONS = ("neutral", "happy", "sad", "angry")


def _folds() -> tuple[Fold, ...]:
    return (
        Fold("fold1", "speaker", train=("f3", "m3"), dev=("f2", "m2"), test=("f1", "m1")),
        Fold("fold2", "speaker", train=("f1", "m1"), dev=("f3", "m3"), test=("f2", "m2")),
    )


@pytest.fixture
def corpus(tone, tmp_path) -> Manifest:
    """Twelve short clips (6 speakers x 2) on disk, with two speaker folds."""
    utterances = []
    for i, (speaker, gender) in enumerate(SPEAKERS.items()):
        for j in range(2):
            path = tone(f"wav/{speaker}_{j}.wav", seconds=0.1)
            utterances.append(
                Utterance(
                    id=f"c_{speaker}_{j}",
                    path=str(path),
                    speaker=speaker,
                    gender=gender,
                    emotion=EMOTIONS[(i + j) % 4],
                    duration=0.1,
                    session=f"s{i % 3}",
                    sample_rate=16_000,
                    num_frames=1_600,
                    text="hello" if j else None,
                    custom={"take": j} if j else {},
                )
            )
    return Manifest(
        corpus="toy",
        utterances=tuple(utterances),
        folds=_folds(),
        fold_scheme="two speaker folds",
        version="v0",
        root=str(tmp_path),
    )


@pytest.mark.parametrize("name", ["m.jsonl", "m.jsonl.gz"])
def test_round_trip(corpus, tmp_path, name):
    path = write_manifest(corpus, tmp_path / "out" / name)
    loaded = read_manifest(path)
    assert loaded == corpus
    assert [u.custom for u in loaded] == [u.custom for u in corpus]
    assert loaded.checksum() == corpus.checksum()
    assert not list(path.parent.glob("*.tmp"))  # the temp file was renamed away
    with open(path, "rb") as raw:
        assert (raw.read(2) == b"\x1f\x8b") == name.endswith(".gz")


def test_gzip_output_is_byte_reproducible(corpus, tmp_path):
    first = write_manifest(corpus, tmp_path / "a.jsonl.gz").read_bytes()
    second = write_manifest(corpus, tmp_path / "b.jsonl.gz").read_bytes()
    assert first == second


def test_header_records_corpus_version_and_folds(corpus, tmp_path):
    path = write_manifest(corpus, tmp_path / "m.jsonl")
    header = json.loads(path.read_text().splitlines()[0])
    assert header["format"] == MANIFEST_FORMAT and header["format_version"] == 1
    assert header["corpus"] == "toy" and header["version"] == "v0"
    assert header["fold_scheme"] == "two speaker folds"
    assert [f["name"] for f in header["folds"]] == ["fold1", "fold2"]
    assert header["num_utterances"] == 12


def test_checksum_ignores_provenance_but_not_records(corpus):
    moved = replace(corpus, root="/elsewhere", skipped=(("x", "unreadable"),))
    assert moved.checksum() == corpus.checksum()
    relabelled = replace(
        corpus, utterances=(replace(corpus.utterances[0], emotion="sad"), *corpus.utterances[1:])
    )
    assert relabelled.checksum() != corpus.checksum()


def _write_lines(path: Path, records: list[dict], *, compress: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in records)
    if compress:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


HEADER = {"format": MANIFEST_FORMAT, "format_version": 1, "corpus": "hand"}


def _record(uid: str, path: str, **fields) -> dict:
    record = {
        "id": uid,
        "path": path,
        "speaker": "s1",
        "gender": "male",
        "emotion": "happy",
        "duration": 1.5,
    }
    record.update(fields)
    return record


def test_relative_paths_resolve_against_the_manifest_directory(tone, tmp_path, monkeypatch):
    clip = tone("corpus/wav/a.wav")
    _write_lines(
        tmp_path / "corpus" / "m.jsonl",
        [HEADER, _record("a", "wav/a.wav"), _record("b", str(clip))],
    )
    monkeypatch.chdir(tmp_path)  # not the manifest's directory
    manifest = read_manifest(Path("corpus/m.jsonl"))
    assert [u.path for u in manifest] == [str(clip.resolve()), str(clip)]


def test_gzip_is_detected_from_content_not_name(tone, tmp_path):
    clip = tone("a.wav")
    path = _write_lines(
        tmp_path / "oddly_named.jsonl", [HEADER, _record("a", str(clip))], compress=True
    )
    assert read_manifest(path).ids == ["a"]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ({**HEADER, "format_version": 2}, "format_version 2 is not supported"),
        ({**HEADER, "format_version": "1"}, "format_version '1' is not supported"),
        ({"format": "something-else", "format_version": 1}, "first line must be a header"),
    ],
)
def test_header_is_checked(tmp_path, header, message):
    path = _write_lines(tmp_path / "m.jsonl", [header])
    with pytest.raises(ManifestError, match=message):
        read_manifest(path)


def test_first_line_must_be_the_header(tmp_path):
    path = _write_lines(tmp_path / "m.jsonl", [_record("a", "a.wav")])
    with pytest.raises(ManifestError, match="header"):
        read_manifest(path)


def test_unreadable_manifest_files(tmp_path):
    with pytest.raises(ManifestError, match=r"does not exist.*trustser data prepare"):
        read_manifest(tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ManifestError, match="the file is empty"):
        read_manifest(tmp_path / "empty.jsonl")
    (tmp_path / "broken.jsonl").write_text(json.dumps(HEADER) + "\n{not json\n")
    with pytest.raises(ManifestError, match="line 2 is not valid JSON"):
        read_manifest(tmp_path / "broken.jsonl")
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ManifestError, match="not a UTF-8 JSONL manifest"):
        read_manifest(tmp_path / "binary.jsonl")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (_record("a", "a.wav", mood="glum"), r"line 2.*unknown field\(s\) \['mood'\].*custom"),
        (
            {"id": "a", "path": "a.wav", "gender": "male", "emotion": "sad"},
            r"lacks required field\(s\) \['speaker', 'duration'\]",
        ),
        (_record("a", "a.wav", speaker=1001), "field 'speaker' must be a string, got int 1001"),
        (_record("a", "a.wav", duration="2.0"), "field 'duration' must be an integer or a number"),
        (_record("a", "a.wav", duration=True), "field 'duration'"),
        (_record("a", "a.wav", custom=[1]), "field 'custom' must be an object"),
    ],
)
def test_utterance_fields_are_checked(tmp_path, record, message):
    path = _write_lines(tmp_path / "m.jsonl", [HEADER, record])
    with pytest.raises(ManifestError, match=message):
        read_manifest(path, check=False)


def test_malformed_folds_in_the_header(tmp_path):
    bad_by = {
        **HEADER,
        "folds": [{"name": "f", "by": "gender", "train": [], "dev": [], "test": []}],
    }
    with pytest.raises(ManifestError, match="by='gender' is not supported"):
        read_manifest(_write_lines(tmp_path / "a.jsonl", [bad_by]), check=False)
    not_list = {
        **HEADER,
        "folds": [{"name": "f", "by": "speaker", "train": "s1", "dev": [], "test": []}],
    }
    with pytest.raises(ManifestError, match="'train' must be a list"):
        read_manifest(_write_lines(tmp_path / "b.jsonl", [not_list]), check=False)
    missing = {**HEADER, "folds": [{"name": "f", "by": "speaker"}]}
    with pytest.raises(ManifestError, match=r"lacks field\(s\) \['train', 'dev', 'test'\]"):
        read_manifest(_write_lines(tmp_path / "c.jsonl", [missing]), check=False)


def _problem_block(message: str, kind: str) -> list[str]:
    """The rows listed under ``kind (N):`` in a validation message."""
    lines = message.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{kind} ("))
    rows = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        rows.append(line.strip())
    return rows


def _problems(manifest: Manifest, **kwargs) -> str:
    with pytest.raises(ManifestError) as caught:
        validate(manifest, **kwargs)
    return str(caught.value)


def _with(corpus: Manifest, index: int, **changes) -> Manifest:
    utterances = list(corpus.utterances)
    utterances[index] = replace(utterances[index], **changes)
    return replace(corpus, utterances=tuple(utterances))


def test_valid_manifest_passes(corpus):
    assert validate(corpus) is corpus


def test_missing_files_are_counted_and_listed(corpus):
    gone = corpus
    for i in range(7):
        gone = _with(gone, i, path=f"/nowhere/{i}.wav")
    message = _problems(gone)
    assert message.startswith("toy manifest has 7 problem(s):")
    assert "missing file (7):" in message
    rows = _problem_block(message, "missing file")
    assert rows[:2] == ["- c_f1_0: /nowhere/0.wav", "- c_f1_1: /nowhere/1.wav"]
    assert rows[-1] == "... and 2 more"  # the first five rows, then the rest counted
    validate(gone, check_files=False)  # the file check can be switched off


def test_unknown_labels(corpus):
    message = _problems(_with(corpus, 3, emotion="joy"))
    assert "unknown emotion label (1):" in message
    assert "c_m1_1: emotion='joy', expected one of ['angry', 'happy', 'neutral', 'sad']" in message


def test_missing_or_unknown_gender(corpus):
    message = _problems(_with(_with(corpus, 0, gender=""), 2, gender="f"))
    assert "missing gender (1):" in message and "c_f1_0: gender is empty" in message
    assert "unrecognised gender (1):" in message and "c_m1_0: gender='f'" in message
    validate(_with(corpus, 0, gender="unknown"))  # a gender the corpus does not record


def test_missing_speaker(corpus):
    message = _problems(_with(corpus, 5, speaker=""))
    assert "missing speaker (1):" in message and "c_f2_1: speaker is empty" in message


def test_duplicate_ids(corpus):
    message = _problems(_with(_with(corpus, 1, id="c_f1_0"), 2, id="c_f1_0"))
    assert "duplicate id (1):" in message and "'c_f1_0' appears 3 times" in message


def test_speaker_overlapping_folds(corpus):
    leaky = replace(
        corpus,
        folds=(Fold("leaky", "session", train=("s0", "s1"), dev=("s2",), test=("s1",)),),
    )
    message = _problems(leaky)
    assert (
        "overlapping fold roles (1):" in message
        and "leaky: session ['s1'] listed in both train and test" in message
    )
    assert "empty fold role (1):" in message  # a value goes to its first role, leaving test empty
    by_session = replace(
        corpus, folds=(Fold("bysess", "session", train=("s0",), dev=("s1",), test=("s2",)),)
    )
    # Sessions s0..s2 hold distinct speakers here, so this one is fine...
    validate(by_session)
    # ...until one speaker records in two sessions.
    message = _problems(_with(by_session, 0, session="s2"))
    assert "speaker-dependent fold (1):" in message
    assert "bysess: 1 speaker(s) ['f1'] are in both train and test" in message
    # The error names the way out: the fold schemes accepted, and what `unknown` speakers do.
    for words in ('by "speaker"', 'by "session"', 'by "split"', "'unknown'", "speaker-dependent"):
        assert words in message, words
    unknown = replace(
        _with(by_session, 0, session="s2"),
        utterances=tuple(
            replace(u, speaker="unknown") if u.speaker == "f1" else u
            for u in _with(by_session, 0, session="s2").utterances
        ),
    )
    validate(unknown)  # marked unknown, the speaker no longer makes the fold speaker-dependent


def test_empty_fold_role_and_duplicate_fold_names(corpus):
    message = _problems(
        replace(corpus, folds=(*_folds(), Fold("fold1", "speaker", ("f1",), ("m1",), ("nobody",))))
    )
    assert "duplicate fold name (1):" in message and "empty fold role (1):" in message


def test_speaker_with_two_genders_and_bad_duration(corpus):
    message = _problems(_with(_with(corpus, 1, gender="male"), 2, duration=0.0))
    assert "speaker with two genders (1):" in message
    assert "c_f1_1: speaker 'f1' is 'male' here but 'female' elsewhere" in message
    assert "bad duration (1):" in message and "c_m1_0: duration=0.0" in message


def test_empty_manifest_and_bad_labels(corpus):
    message = _problems(replace(corpus, utterances=(), folds=(), labels=("a", "a")))
    assert "no utterances (1):" in message and "bad labels (1):" in message


def test_unknown_speakers_are_exempt_from_speaker_checks(corpus):
    anonymous = corpus
    for index in (0, 2, 4):  # test of fold1 (f1, m1) and dev of fold1 (f2)
        anonymous = _with(anonymous, index, speaker=UNKNOWN_SPEAKER)
    anonymous = replace(
        anonymous, folds=(*_folds(), Fold("unk", "speaker", ("f3",), ("m3",), (UNKNOWN_SPEAKER,)))
    )
    validate(anonymous)
    assert not anonymous.utterances[0].speaker_known
    assert UNKNOWN_SPEAKER not in functools.reduce(
        operator.iadd, speakers_by_gender(anonymous).values(), []
    )


def test_errors_name_the_line_for_hand_written_files(tmp_path):
    path = _write_lines(
        tmp_path / "m.jsonl",
        [HEADER, _record("a", "/no/a.wav"), _record("b", "/no/b.wav", emotion="joy")],
    )
    with pytest.raises(ManifestError) as caught:
        read_manifest(path)
    message = str(caught.value)
    assert "hand manifest has 3 problem(s)" in message
    assert "missing file (2):" in message and "unknown emotion label (1):" in message


def test_split_filter_and_lookup(corpus):
    parts = corpus.split("fold1")
    assert {u.speaker for u in parts["test"]} == {"f1", "m1"}
    assert len(parts["train"]) == len(parts["dev"]) == len(parts["test"]) == 4
    assert corpus["c_m2_1"].speaker == "m2"
    with pytest.raises(KeyError, match="not in the toy manifest"):
        corpus["nope"]
    with pytest.raises(KeyError, match="folds: fold1, fold2"):
        corpus.fold("fold9")
    assert len(corpus.filter(lambda u: u.gender == "female")) == 6


def test_speakers_by_gender_and_merge(corpus):
    assert speakers_by_gender(corpus) == {"female": ["f1", "f2", "f3"], "male": ["m1", "m2", "m3"]}
    with pytest.raises(ManifestError, match="labelled both"):
        speakers_by_gender(_with(corpus, 1, gender="male"))
    assert len(merge_manifests([corpus, corpus])) == 12
    with pytest.raises(ManifestError, match="prefix ids"):
        merge_manifests([corpus, _with(corpus, 0, emotion="sad")])


def test_summary_counts(corpus):
    summary = summarize(corpus)
    assert summary.num_utterances == 12 and summary.num_speakers == 6
    assert summary.emotions == {"neutral": 3, "happy": 4, "sad": 3, "angry": 2}
    assert summary.genders == {"female": 6, "male": 6}
    assert sum(summary.emotion_by_gender["female"].values()) == 6
    assert summary.speakers_per_gender == {"female": 3, "male": 3}
    fold1 = summary.folds[0]
    assert fold1.utterances == {"train": 4, "dev": 4, "test": 4}
    assert fold1.speakers == {"train": 2, "dev": 2, "test": 2}
    assert sum(fold1.emotions["test"].values()) == 4 and fold1.unassigned == 0
    assert summary.total_seconds == pytest.approx(1.2)


def test_check_manifest_audio_modes(corpus, tmp_path):
    path = write_manifest(corpus, tmp_path / "m.jsonl")
    assert check_manifest(path, audio="headers").audio.ok
    changed = _with(corpus, 0, num_frames=999)
    with pytest.raises(ManifestError, match=r"file changed since the manifest was written \(1\)"):
        check_manifest(write_manifest(changed, tmp_path / "c.jsonl"), audio="headers")
    Path(corpus.utterances[1].path).write_text("not audio")
    with pytest.raises(ManifestError, match=r"unreadable audio \(1\):\n  - c_f1_1"):
        check_manifest(path, audio="decode")
    with pytest.raises(ValueError, match="audio='all'"):
        check_manifest(path, audio="all")  # type: ignore[arg-type]


def test_documented_example_is_valid(tone, tmp_path):
    """The example in docs/manifest.md parses and validates."""
    doc = (REPO / "docs" / "manifest.md").read_text()
    block = re.search(r"example-manifest:start -->\n```json\n(.*?)```", doc, re.S)
    assert block is not None
    text = block.group(1)
    for record in map(json.loads, text.splitlines()[1:]):
        tone(f"private/{record['path']}", seconds=0.2)
    path = tmp_path / "private" / "manifest.jsonl"
    path.write_text(text)
    manifest = read_manifest(path)
    assert manifest.corpus == "private" and len(manifest) == 6 and len(manifest.folds) == 3
    summary = summarize(manifest)
    assert summary.speakers_per_gender == {"female": 2, "male": 2}


def test_null_custom_reads_as_empty_and_skipped_is_checked(tone, tmp_path):
    clip = tone("a.wav")
    path = _write_lines(tmp_path / "m.jsonl", [HEADER, _record("a", str(clip), custom=None)])
    assert read_manifest(path)["a"].custom == {}
    bad = _write_lines(tmp_path / "bad.jsonl", [{**HEADER, "skipped": ["a.wav"]}])
    with pytest.raises(ManifestError, match="header 'skipped' must be a list"):
        read_manifest(bad)


def _cut(path: Path, keep_bytes: int) -> Path:
    """Keep the first ``keep_bytes`` of a file: a download or copy that stopped midway."""
    data = path.read_bytes()
    path.write_bytes(data[:keep_bytes])
    return path


def _utterance(uid: str, path: Path, **fields) -> Utterance:
    return Utterance(
        id=uid, path=str(path), speaker="s1", gender="female", emotion="sad", duration=1.0, **fields
    )


def test_check_audio_files_reports_instead_of_raising(tone, tmp_path):
    good = tone("good.wav", seconds=0.5)
    zeros = tmp_path / "zeros.wav"
    sf.write(zeros, np.zeros(4_000, dtype=np.float32), 16_000)
    cut = _cut(tone("cut.wav", seconds=0.5), 44 + 2 * 2_000)
    (tmp_path / "junk.wav").write_text("junk")
    utterances = [
        _utterance("good", good, sample_rate=16_000, num_frames=8_000),
        _utterance("moved", good, sample_rate=16_000, num_frames=9_999),
        _utterance("zeros", zeros),
        _utterance("cut", cut),
        _utterance("junk", tmp_path / "junk.wav"),
        _utterance("gone", tmp_path / "gone.wav"),
    ]
    headers = check_audio_files(utterances)
    assert headers.checked == 6 and not headers.ok
    assert sorted(headers.errors) == ["gone", "junk"]
    assert headers.changed == {"moved": "8000 frames, manifest says 9999"}
    assert headers.truncated == ["cut"] and headers.silent == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # decode mode collects, it does not warn
        decoded = check_audio_files(utterances, mode="decode")
    assert decoded.silent == ["zeros"]
    with pytest.raises(ValueError, match="mode"):
        check_audio_files(utterances, mode="full")  # type: ignore[arg-type]


def test_merge_names_both_manifests_and_the_id(corpus):
    other = _with(corpus, 0, emotion="sad")
    with pytest.raises(ManifestError) as error:
        merge_manifests([corpus, other], names=["a.jsonl", "b.jsonl"])
    message = str(error.value)
    assert "a.jsonl" in message and "b.jsonl" in message and repr(corpus.ids[0]) in message
    assert "emotion" in message


def test_two_writers_of_one_manifest_never_collide_and_writes_are_fsynced(
    corpus, tmp_path, monkeypatch
):
    import os
    import threading

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    path = tmp_path / "shared.jsonl"
    errors = []

    def write_many():
        try:
            for _ in range(40):
                write_manifest(corpus, path)
        except Exception as error:  # collected: a collision shows as FileNotFoundError
            errors.append(error)

    threads = [threading.Thread(target=write_many) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert read_manifest(path, check_files=False).ids == corpus.ids
    assert len(synced) >= 2 * 120  # the file and its directory, every time
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left
