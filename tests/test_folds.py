"""Fold schemes: rotating train/dev/test, gender-balanced groups, consecutive speaker blocks."""

from __future__ import annotations

import pytest

from trustser.folds import (
    block_speaker_folds,
    block_speaker_groups,
    gender_balanced_speaker_folds,
    gender_balanced_speaker_groups,
    rotating_folds,
    session_folds,
)
from trustser.manifest import UNKNOWN_SPEAKER, Utterance


def test_rotating_folds_test_each_group_once_with_the_next_as_dev():
    groups = [["a"], ["b", "c"], ["d"], ["e"], ["f"]]
    folds = rotating_folds(groups, by="speaker")
    assert [f.name for f in folds] == ["fold1", "fold2", "fold3", "fold4", "fold5"]
    assert [f.test for f in folds] == [tuple(g) for g in groups]
    assert [f.dev for f in folds] == [("b", "c"), ("d",), ("e",), ("f",), ("a",)]  # k+1, wrapping
    for fold in folds:
        roles = [set(fold.train), set(fold.dev), set(fold.test)]
        assert set.union(*roles) == set("abcdef")
        assert sum(map(len, roles)) == 6  # disjoint
        assert fold.by == "speaker"
    assert rotating_folds(groups, by="session", prefix="cv")[0].name == "cv1"


def test_rotating_folds_need_three_groups():
    with pytest.raises(ValueError, match="at least 3 groups"):
        rotating_folds([["a"], ["b"]], by="speaker")


def test_gender_balanced_groups_mix_genders_evenly():
    speakers = {
        "female": [f"f{i:02d}" for i in range(12)],
        "male": [f"m{i:02d}" for i in range(12)],
    }
    groups = gender_balanced_speaker_groups(speakers, 6)
    assert len(groups) == 6
    for group in groups:
        assert sum(s.startswith("f") for s in group) == 2
        assert sum(s.startswith("m") for s in group) == 2
    assert sorted(s for g in groups for s in g) == sorted(speakers["female"] + speakers["male"])
    # Deterministic and independent of the input order.
    shuffled = {g: list(reversed(s)) for g, s in speakers.items()}
    assert gender_balanced_speaker_groups(shuffled, 6) == groups


def test_gender_balanced_groups_emodb_shape():
    speakers = {"male": ["03", "10", "11", "12", "15"], "female": ["08", "09", "13", "14", "16"]}
    groups = gender_balanced_speaker_groups(speakers, 5)
    assert groups == [["03", "08"], ["09", "10"], ["11", "13"], ["12", "14"], ["15", "16"]]


def test_gender_balanced_groups_need_enough_speakers():
    with pytest.raises(ValueError, match="cannot form 5 speaker groups from 3 speakers"):
        gender_balanced_speaker_groups({"female": ["a", "b"], "male": ["c"]}, 5)
    with pytest.raises(ValueError, match="num_groups must be a positive integer, got 0"):
        gender_balanced_speaker_groups({"female": ["a"]}, 0)


def test_block_groups_are_consecutive_and_about_equal():
    actors = [str(a) for a in range(1001, 1092)]  # CREMA-D's 91 actors
    blocks = block_speaker_groups(list(reversed(actors)), 5)
    assert [len(b) for b in blocks] == [19, 18, 18, 18, 18]
    assert [s for b in blocks for s in b] == actors
    assert blocks[0][0] == "1001" and blocks[-1][-1] == "1091"
    with pytest.raises(ValueError, match="cannot form 5 blocks from 4 speakers"):
        block_speaker_groups(["a", "b", "c", "d"], 5)


def _utterance(speaker: str, gender: str) -> Utterance:
    return Utterance(
        id=f"{speaker}_1", path="x.wav", speaker=speaker, gender=gender, emotion="sad", duration=1
    )


def test_corpus_fold_schemes_from_utterances():
    women = [_utterance(f"f{i}", "female") for i in range(3)]
    men = [_utterance(f"m{i}", "male") for i in range(3)]
    unknown = _utterance(UNKNOWN_SPEAKER, "female")  # never placed in a speaker group
    utterances = [*women, *men, unknown]
    balanced = gender_balanced_speaker_folds(utterances, 3)
    assert balanced == rotating_folds([["f0", "m0"], ["f1", "m1"], ["f2", "m2"]], by="speaker")
    blocks = block_speaker_folds(reversed(women + men), 3)
    assert [f.test for f in blocks] == [("f0", "f1"), ("f2", "m0"), ("m1", "m2")]
    sessions = session_folds(["s1", "s2", "s3"])
    assert [(f.by, f.test, f.dev) for f in sessions] == [
        ("session", ("s1",), ("s2",)),
        ("session", ("s2",), ("s3",)),
        ("session", ("s3",), ("s1",)),
    ]
