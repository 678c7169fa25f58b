"""Verification trials on unseen speakers (trustser.verification.trials)."""

from __future__ import annotations

from collections import Counter
from math import comb

import numpy as np
import pytest

import trustser.verification.trials as trials_module
from trustser.folds import rotating_folds
from trustser.manifest import EMOTIONS, Manifest, Utterance
from trustser.verification.trials import (
    ANY_GENDER,
    SAME_GENDER,
    TrialDesignError,
    TrialSet,
    build_trials,
)


def speaker_manifest(groups: int = 5, per_gender: int = 1, clips: int = 8) -> Manifest:
    """``groups`` speaker groups of ``per_gender`` women and men each, ``clips`` clips per
    speaker cycling through the four emotions; fold k tests group k (rotating folds)."""
    utterances, grouped = [], []
    for g in range(groups):
        members = []
        for gender in ("female", "male"):
            for k in range(per_gender):
                speaker = f"g{g}{gender[0]}{k}"
                members.append(speaker)
                for c in range(clips):
                    utterances.append(
                        Utterance(
                            id=f"{speaker}_{c:02d}",
                            path=f"/nonexistent/{speaker}_{c}.wav",
                            speaker=speaker,
                            gender=gender,
                            emotion=EMOTIONS[c % 4],
                            duration=1.0,
                        )
                    )
        grouped.append(members)
    return Manifest(
        corpus="toy", utterances=tuple(utterances), folds=rotating_folds(grouped, by="speaker")
    )


def speakers_of(trials) -> set[str]:
    return set(trials.enrol_speaker.tolist()) | set(trials.test_speaker.tolist())


def test_one_set_per_fold_when_every_fold_has_two_speakers_of_each_gender():
    manifest = speaker_manifest(groups=4, per_gender=2, clips=6)
    design = build_trials(manifest)
    assert not design.pooled and design.pooled_reason is None
    assert [s.name for s in design.sets] == [f.name for f in manifest.folds]
    for trial_set, fold in zip(design.sets, manifest.folds, strict=True):
        assert trial_set.attacker_fold == fold.name
        assert set(trial_set.test_speakers) == set(fold.test)
        assert set(trial_set.dev_speakers) == set(fold.dev)
        assert set(trial_set.train_speakers) == set(fold.train)
        trials = trial_set.trials
        # every same-speaker pair: 4 speakers × C(6, 2)
        assert trials.target.sum() == 4 * comb(6, 2)
        assert (trials.enrol_speaker[trials.target] == trials.test_speaker[trials.target]).all()
        # non-targets: different speakers of one gender only; all 36 pairs per gender here
        others = ~trials.target
        assert (trials.enrol_speaker[others] != trials.test_speaker[others]).all()
        assert (trials.enrol_gender == trials.test_gender).all()
        assert Counter(trials.enrol_gender[others].tolist()) == {"female": 36, "male": 36}
        # no clip is paired with itself, and no pair appears twice
        pairs = list(zip(trials.enrol.tolist(), trials.test.tolist(), strict=True))
        assert len(set(pairs)) == len(pairs) and all(a != b for a, b in pairs)
        assert trial_set.dev_nontargets == SAME_GENDER


def test_non_targets_are_balanced_by_gender_and_capped():
    # 3 women and 2 men per fold: 3·36 = 108 female pairs available, 36 male ones
    utterances, grouped = [], []
    for g in range(3):
        members = [f"g{g}f{k}" for k in range(3)] + [f"g{g}m{k}" for k in range(2)]
        grouped.append(members)
        for speaker in members:
            gender = "female" if "f" in speaker[2:] else "male"
            for c in range(6):
                utterances.append(
                    Utterance(f"{speaker}_{c}", "/x", speaker, gender, "neutral", 1.0)
                )
    manifest = Manifest("toy", tuple(utterances), rotating_folds(grouped, by="speaker"))
    for cap, expected in ((1000, 36), (20, 20)):
        design = build_trials(manifest, max_nontargets=cap)
        for trial_set in design.sets:
            others = ~trial_set.trials.target
            counts = Counter(trial_set.trials.enrol_gender[others].tolist())
            assert counts == {"female": expected, "male": expected}


def test_too_few_speakers_per_fold_pool_trials_across_folds_and_say_why():
    manifest = speaker_manifest(groups=5, per_gender=1)  # EmoDB's design: one woman, one man
    design = build_trials(manifest)
    assert design.pooled
    assert "1 female and 1 male speaker(s)" in design.pooled_reason
    assert "fold1" in design.pooled_reason and "combination of 2 folds" in design.pooled_reason
    assert len(design.sets) == comb(5, 2)
    for trial_set in design.sets:
        assert len(trial_set.folds) == 2 and trial_set.name == "+".join(trial_set.folds)
        assert len(trial_set.test_speakers) == 4
        counts = trial_set.trials.counts()
        assert counts["female"]["nontarget"] == counts["male"]["nontarget"] == 8 * 8
        assert counts.get("mixed") is None
        # one fold's dev speakers (one woman, one man) give no same-gender pair: the next
        # fold's dev speakers that are training speakers join them, two training speakers stay
        assert len(trial_set.dev_folds) == 2 and trial_set.dev_folds[0] == trial_set.attacker_fold
        assert len(trial_set.dev_speakers) == 4 and len(trial_set.train_speakers) == 2
        assert trial_set.dev_nontargets == SAME_GENDER
        dev = trial_set.dev_trials.counts()
        assert dev.get("mixed") is None and dev["female"]["nontarget"] == 8 * 8
    assert design.to_dict()["pooled_across_folds"] is True


@pytest.mark.parametrize("groups,per_gender", [(4, 2), (5, 1), (6, 1)])
def test_trials_never_mix_train_and_test_speakers_of_the_attacker(groups, per_gender):
    manifest = speaker_manifest(groups=groups, per_gender=per_gender, clips=4)
    speaker_of = {u.id: u.speaker for u in manifest}
    for trial_set in build_trials(manifest).sets:
        test, dev = speakers_of(trial_set.trials), speakers_of(trial_set.dev_trials)
        train = {speaker_of[i] for i in trial_set.train_ids}
        assert train == set(trial_set.train_speakers)
        refit = {speaker_of[i] for i in trial_set.dev_ids}  # the informed attacker's refit
        assert refit == set(trial_set.dev_speakers) and not refit & test
        assert not test & train and not test & dev and not dev & train
        assert test <= set(trial_set.test_speakers) and dev <= set(trial_set.dev_speakers)
        assert len(train) >= 2


def test_dev_trials_fall_back_to_cross_gender_pairs_when_no_gender_has_two_dev_speakers():
    # 4 folds of one woman and one man: pooling 2, the other two groups are dev and training
    # speakers, and moving the training group to dev would leave none to train on
    design = build_trials(speaker_manifest(groups=4, per_gender=1, clips=4))
    assert design.pooled
    for trial_set in design.sets:
        assert trial_set.dev_nontargets == ANY_GENDER and len(trial_set.train_speakers) == 2
        assert trial_set.dev_trials.counts()["mixed"]["nontarget"] == 4 * 4


def test_a_set_that_mixes_speakers_is_refused():
    trial_set = build_trials(speaker_manifest(groups=4, per_gender=2, clips=4)).sets[0]
    fields = {name: getattr(trial_set, name) for name in TrialSet.__dataclass_fields__}
    leaked = trial_set.test_speakers[0]
    with pytest.raises(TrialDesignError, match="test speakers among the training speakers"):
        TrialSet(**{**fields, "train_speakers": (*trial_set.train_speakers, leaked)})


def test_the_same_seed_gives_the_same_trials_and_another_seed_another_sample():
    manifest = speaker_manifest(groups=4, per_gender=2, clips=8)
    first = build_trials(manifest, seed=3, max_nontargets=10)
    again = build_trials(manifest, seed=3, max_nontargets=10)
    other = build_trials(manifest, seed=4, max_nontargets=10)
    for a, b, c in zip(first.sets, again.sets, other.sets, strict=True):
        for name in ("enrol", "test", "target"):
            np.testing.assert_array_equal(getattr(a.trials, name), getattr(b.trials, name))
        assert a.trials.target.sum() == c.trials.target.sum()  # targets are not sampled
        assert list(a.trials.test) != list(c.trials.test)


def test_rejection_sampling_draws_distinct_different_speaker_pairs(monkeypatch):
    monkeypatch.setattr(trials_module, "_ENUMERATE_LIMIT", 10)
    manifest = speaker_manifest(groups=4, per_gender=2, clips=8)
    design = build_trials(manifest, max_nontargets=30)
    for trial_set in design.sets:
        trials = trial_set.trials
        others = ~trials.target
        pairs = list(zip(trials.enrol[others].tolist(), trials.test[others].tolist(), strict=True))
        assert len(pairs) == 60 and len(set(pairs)) == 60
        assert (trials.enrol_speaker[others] != trials.test_speaker[others]).all()
        assert (trials.enrol_gender[others] == trials.test_gender[others]).all()


def test_one_emotion_keeps_only_its_clips_in_the_trials_not_in_training():
    manifest = speaker_manifest(groups=4, per_gender=2, clips=8)
    emotion_of = {u.id: u.emotion for u in manifest}
    design = build_trials(manifest, emotion="neutral")
    assert design.emotion == "neutral"
    for trial_set in design.sets:
        for trials in (trial_set.trials, trial_set.dev_trials):
            assert {emotion_of[i] for i in trials.ids} == {"neutral"}
        assert trial_set.trials.target.sum() == 4 * comb(2, 2)  # 2 neutral clips per speaker
        assert {emotion_of[i] for i in trial_set.train_ids} == set(EMOTIONS)
    with pytest.raises(TrialDesignError, match="not a label"):
        build_trials(manifest, emotion="boredom")


def test_a_corpus_too_small_for_unseen_speaker_trials_is_an_error():
    manifest = speaker_manifest(groups=3, per_gender=1)  # pooling 2 of 3 folds leaves no dev
    with pytest.raises(TrialDesignError, match="leaves dev and training speakers"):
        build_trials(manifest)
    no_folds = Manifest("toy", manifest.utterances)
    with pytest.raises(TrialDesignError, match="no folds"):
        build_trials(no_folds)
    with pytest.raises(TrialDesignError, match="at least 1"):
        build_trials(manifest, max_nontargets=0)
