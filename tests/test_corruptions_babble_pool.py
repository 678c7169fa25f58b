"""Babble pools from a manifest: other speakers only, outside the test fold first, seeded."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from trustser.corruptions import CorruptionError, choose_talkers, get_case, measured_snr_db
from trustser.corruptions.babble_pool import BabblePools, babble_pool, load_talkers
from trustser.manifest import UNKNOWN_SPEAKER, Manifest


def test_no_pool_ever_holds_the_clips_own_speaker(toy_manifest):
    for fold in toy_manifest.folds:
        pools = BabblePools(toy_manifest, fold=fold, seed=0)
        for clip in toy_manifest:
            pool = pools.pool(clip.id)
            assert len(pool) == 8
            assert clip.speaker not in {u.speaker for u in pool}
            assert clip.id not in {u.id for u in pool}


def test_speakers_outside_the_test_fold_come_first(toy_manifest):
    fold = toy_manifest.folds[0]
    test_speakers = set(fold.test)  # toy folds are by speaker: one woman and one man
    clip = toy_manifest.split(fold)["test"][0]
    pool = babble_pool(toy_manifest, clip.id, fold=fold, seed=1)
    assert not test_speakers & {u.speaker for u in pool}  # 4 outside speakers × 8 clips suffice
    assert len({u.speaker for u in pool[:4]}) == 4  # one clip per speaker before a second
    # Few clips outside the test set: they all come first, then the other test speaker's.
    other_test_speaker = (test_speakers - {clip.speaker}).pop()
    keep = {clip.speaker, other_test_speaker, "s3"}
    small = toy_manifest.filter(lambda u: u.speaker in keep and (u.speaker != "s3" or "_0" in u.id))
    pool = babble_pool(small, clip.id, fold=fold, seed=1)
    speakers = [u.speaker for u in pool]
    outside = speakers.count("s3")
    assert outside == 4 and set(speakers[:outside]) == {"s3"}
    assert set(speakers[outside:]) == {other_test_speaker}


def test_pools_are_seeded_per_clip(toy_manifest):
    fold = toy_manifest.folds[1]
    clips = [c.id for c in toy_manifest.split(fold)["test"][:4]]
    ids = lambda pool: [u.id for u in pool]  # noqa: E731
    again = BabblePools(toy_manifest, fold=fold.name, seed=3)
    for clip in clips:
        assert ids(babble_pool(toy_manifest, clip, fold=fold, seed=3)) == ids(again.pool(clip))
    assert len({tuple(ids(again.pool(c))) for c in clips}) > 1  # clips get different pools
    other_seed = BabblePools(toy_manifest, fold=fold, seed=4)
    assert any(ids(other_seed.pool(c)) != ids(again.pool(c)) for c in clips)


def test_a_clip_of_unknown_speaker_needs_its_test_fold(toy_manifest):
    fold = toy_manifest.folds[0]
    clip = toy_manifest.split(fold)["test"][0]
    # An unknown-speaker clip in the test set (folds by session, as MSP-Podcast's by split).
    utterances = tuple(
        replace(u, speaker=UNKNOWN_SPEAKER, session="test")
        if u.id == clip.id
        else replace(u, session="test" if u.speaker in fold.test else "train")
        for u in toy_manifest
    )
    by_session = replace(fold, by="session", train=("train",), dev=(), test=("test",))
    manifest = Manifest("toy", utterances, folds=(by_session,))
    pool = babble_pool(manifest, clip.id, fold=by_session, seed=0)
    assert {u.speaker for u in pool} <= {"s3", "s4", "s5", "s6"}
    with pytest.raises(CorruptionError, match="unknown speaker"):
        babble_pool(manifest, clip.id, seed=0)


def test_pool_errors_name_the_problem(toy_manifest):
    clip = toy_manifest.utterances[0]
    with pytest.raises(CorruptionError, match="not in the toy manifest"):
        babble_pool(toy_manifest, "nope")
    with pytest.raises(CorruptionError, match="no fold 'fold9'"):
        babble_pool(toy_manifest, clip.id, fold="fold9")
    with pytest.raises(CorruptionError, match="at least 3"):
        babble_pool(toy_manifest, clip.id, size=2)
    two_speakers = toy_manifest.filter(lambda u: u.speaker in {"s1", "s2"})
    two_clips = two_speakers.filter(lambda u: u.speaker == "s1" or u.id.endswith("happy_0"))
    with pytest.raises(CorruptionError, match="only 1 clip"):
        babble_pool(two_clips, clip.id)


def test_loaded_pools_feed_babble(toy_manifest):
    fold = toy_manifest.folds[2]
    clip = toy_manifest.split(fold)["test"][0]
    talkers = load_talkers(babble_pool(toy_manifest, clip.id, fold=fold, seed=0))
    assert all(t.waveform.dtype == np.float32 and t.waveform.ndim == 1 for t in talkers)
    x = np.asarray(load_talkers([clip])[0].waveform)
    case = get_case("babble-2")
    seed = case.clip_seed(0, clip.id)
    y = case.apply(x, seed, speaker=clip.speaker, talkers=talkers)
    assert measured_snr_db(x, y) == pytest.approx(10.0, abs=0.02)
    chosen = choose_talkers(talkers, speaker=clip.speaker, seed=seed)
    assert 3 <= len(chosen) <= 5 and clip.speaker not in {t.speaker for t in chosen}
