"""The verification attackers, their layer choice and their embedding sources."""

from __future__ import annotations

import numpy as np
import pytest

from trustser.metrics.verification import equal_error_rate
from trustser.verification.attackers import (
    ATTACKERS,
    IgnorantAttacker,
    InformedAttacker,
    VerificationAttackError,
    choose_layer,
    score_trials,
)
from trustser.verification.sources import (
    EmbeddingSourceError,
    array_source,
    fold_sources,
    read_embeddings,
)
from trustser.verification.trials import build_trials

from .test_verification_trials import speaker_manifest


def nuisance_clips(rng, nuisance: np.ndarray, speakers: int, clips: int):
    """Clips = a speaker vector + a strong ``nuisance`` along its rows (an 'emotion' that
    varies inside every speaker, the same for all) + a little noise."""
    voice = rng.normal(size=(speakers, nuisance.shape[1]))
    labels = np.repeat(np.arange(speakers), clips).astype(str)
    x = voice[labels.astype(int)] + rng.normal(size=(labels.size, 2)) @ nuisance
    return x + 0.3 * rng.normal(size=x.shape), labels


def pair_eer(embedded: np.ndarray, labels: np.ndarray) -> float:
    i, j = np.triu_indices(labels.size, k=1)
    return equal_error_rate((embedded[i] * embedded[j]).sum(1), labels[i] == labels[j])


def test_the_informed_attacker_discounts_what_varies_within_speakers():
    rng = np.random.default_rng(0)
    nuisance = 6.0 * rng.normal(size=(2, 12))
    train, train_labels = nuisance_clips(rng, nuisance, speakers=8, clips=20)
    test, test_labels = nuisance_clips(rng, nuisance, speakers=6, clips=10)  # unseen speakers
    informed = InformedAttacker().fit(train, train_labels)
    ignorant = IgnorantAttacker().fit(train, train_labels)
    informed_eer = pair_eer(informed.embed(test), test_labels)
    ignorant_eer = pair_eer(ignorant.embed(test), test_labels)
    assert informed_eer < 0.1 < ignorant_eer
    assert np.allclose(np.linalg.norm(informed.embed(test), axis=1), 1.0)


def test_the_informed_attacker_needs_training_speakers():
    with pytest.raises(VerificationAttackError, match="at least 2 training speakers"):
        InformedAttacker().fit(np.ones((5, 3)), ["a"] * 5)
    with pytest.raises(VerificationAttackError, match="fitted"):
        InformedAttacker().embed(np.ones((2, 3)))


def test_the_layer_is_chosen_on_dev_and_the_informed_attacker_refitted():
    manifest = speaker_manifest(groups=4, per_gender=2, clips=6)
    trial_set = build_trials(manifest).sets[0]
    rng = np.random.default_rng(1)
    ids = [u.id for u in manifest]
    voice = {u.speaker: rng.normal(size=8) for u in manifest}
    means = rng.normal(size=(len(ids), 3, 8))
    for k, u in enumerate(manifest):
        means[k, 1] += 3.0 * voice[u.speaker]  # only layer 1 carries the speaker
    row = {i: k for k, i in enumerate(ids)}

    def choose(name: str):
        return choose_layer(
            ATTACKERS[name],
            means,
            row,
            train_ids=trial_set.train_ids,
            train_labels=trial_set.train_labels,
            dev_trials=trial_set.dev_trials,
            where=name,
            refit_ids=trial_set.dev_ids,
            refit_labels=trial_set.dev_labels,
        )

    for name in ATTACKERS:
        choice = choose(name)
        assert choice.layer == 1 and len(choice.dev_eer) == 3
        assert choice.dev_eer[1] < min(choice.dev_eer[0], choice.dev_eer[2])
        scores = score_trials(choice.attacker, means[:, 1], row, trial_set.trials)
        assert equal_error_rate(scores, trial_set.trials.target) < 0.1
    informed = choose("informed").attacker
    train_only = InformedAttacker().fit(
        means[[row[i] for i in trial_set.train_ids], 1], trial_set.train_labels
    )
    assert not np.allclose(informed.mean_, train_only.mean_)  # the dev speakers were added
    empty = trial_set.dev_trials.__class__(
        **{k: getattr(trial_set.dev_trials, k)[:0] for k in ("enrol", "test", "enrol_speaker",
           "test_speaker", "enrol_gender", "test_gender", "target")}
    )  # fmt: skip
    with pytest.raises(VerificationAttackError, match="choosing a layer needs both"):
        choose_layer(
            ATTACKERS["ignorant"],
            means,
            row,
            train_ids=(),
            train_labels=(),
            dev_trials=empty,
            where="x",
        )


def test_embedding_sources_are_checked():
    ids = ["a", "b", "c"]
    means = np.arange(3 * 2 * 4, dtype=float).reshape(3, 2, 4)
    source = array_source(ids, means)
    np.testing.assert_array_equal(source(["c", "a"]), means[[2, 0]])
    with pytest.raises(EmbeddingSourceError, match="no embedding"):
        source(["z"])
    with pytest.raises(EmbeddingSourceError, match=r"\[N, L, D\]"):
        array_source(ids, means[:2])
    per_fold = fold_sources({"fold1": means}, ids)
    np.testing.assert_array_equal(per_fold("fold1")(["b"]), means[[1]])
    with pytest.raises(EmbeddingSourceError, match="no deployed model for fold 'fold2'"):
        per_fold("fold2")
    with pytest.raises(EmbeddingSourceError, match="needs `ids`"):
        fold_sources(means)
    with pytest.raises(EmbeddingSourceError, match="gave shape"):
        read_embeddings(lambda wanted: means[0], ids, fold="fold1")
    broken = means.copy()
    broken[0, 0, 0] = np.nan
    with pytest.raises(EmbeddingSourceError, match="non-finite"):
        read_embeddings(array_source(ids, broken), ids, fold="fold1")
