"""Speaker-verification attackers, named by what they know (after VoicePrivacy's attack models).

Both score a trial by the cosine of two clips' embeddings of one layer (the time-mean of its
hidden states); they differ in what they learned first:

* **ignorant** — no training: the cosine of the raw time-means. What anyone holding the
  embeddings can do.
* **informed** — learns from the attacker's known speakers of the *same* representation:
  centring on their mean, **within-class covariance normalisation** (WCCN, Hatch et al. 2006;
  the within-speaker whitening of a PLDA back end): the embeddings are whitened by
  :math:`W^{-1/2}`, with :math:`W` the covariance of each clip's deviation from its speaker's
  mean, estimated with Ledoit–Wolf shrinkage (:func:`sklearn.covariance.ledoit_wolf`), so the
  directions clips of one speaker vary along (emotion, wording, channel) are discounted; then
  length normalisation. It keeps every dimension: LDA would keep only ``speakers − 1``, and the
  small corpora here train on a handful of speakers (on EmoDB, LDA with six training speakers
  linked speakers far worse than cosine on the raw means).

Either picks its layer on the trial set's dev speakers by EER (:func:`choose_layer`: the
informed attacker fitted on the training speakers); the informed attacker is then refitted at
that layer on training and dev speakers together, all the speakers it may know. The layer is
never chosen on, nor anything fitted to, the test speakers.
:data:`ATTACKERS` lists them for the runner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.covariance import ledoit_wolf

from trustser._validation import TrustSERError
from trustser.metrics.verification import equal_error_rate
from trustser.verification.trials import Trials

__all__ = [
    "ATTACKERS",
    "AttackerSpec",
    "IgnorantAttacker",
    "InformedAttacker",
    "LayerChoice",
    "VerificationAttackError",
    "choose_layer",
    "score_trials",
]


class VerificationAttackError(TrustSERError, ValueError):
    """An attacker that cannot be trained or cannot choose a layer on the data given."""


def _length_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


class IgnorantAttacker:
    """Cosine of the raw embeddings; ``fit`` learns nothing."""

    def fit(self, features: np.ndarray, speakers: Sequence[str]) -> IgnorantAttacker:
        return self

    def embed(self, features: np.ndarray) -> np.ndarray:
        return _length_normalise(np.asarray(features, dtype=np.float64))


class InformedAttacker:
    """Centring, within-class covariance normalisation (Ledoit–Wolf), length normalisation."""

    def fit(self, features: np.ndarray, speakers: Sequence[str]) -> InformedAttacker:
        features = np.asarray(features, dtype=np.float64)
        labels = np.asarray(speakers)
        distinct, codes = np.unique(labels, return_inverse=True)
        if distinct.size < 2 or features.shape[0] <= distinct.size:
            raise VerificationAttackError(
                f"the informed attacker needs clips of at least 2 training speakers and more "
                f"clips than speakers; got {features.shape[0]} clip(s) of {distinct.size} "
                "speaker(s). Use a manifest whose folds leave more training speakers."
            )
        self.mean_ = features.mean(axis=0)
        sums = np.zeros((distinct.size, features.shape[1]))
        np.add.at(sums, codes, features)
        speaker_means = sums / np.bincount(codes)[:, None]
        within, _ = ledoit_wolf(features - speaker_means[codes], assume_centered=True)
        values, vectors = np.linalg.eigh(within)
        floor = values.max() * 1e-10  # shrinkage keeps W positive definite; guard rounding
        self.whiten_ = vectors / np.sqrt(np.maximum(values, floor))
        return self

    def embed(self, features: np.ndarray) -> np.ndarray:
        if not hasattr(self, "whiten_"):
            raise VerificationAttackError("the informed attacker must be fitted before use.")
        centred = np.asarray(features, dtype=np.float64) - self.mean_
        return _length_normalise(centred @ self.whiten_)


@dataclass(frozen=True)
class AttackerSpec:
    """One attacker kind: its name, what it knows, and how to make it."""

    name: str
    description: str
    trained: bool
    make: Callable[[], Any]


ATTACKERS: dict[str, AttackerSpec] = {
    "ignorant": AttackerSpec(
        "ignorant",
        "cosine of the time-mean of one layer; no training; layer chosen on dev by EER",
        False,
        IgnorantAttacker,
    ),
    "informed": AttackerSpec(
        "informed",
        "centring + within-class covariance normalisation (Ledoit-Wolf shrinkage) + length "
        "normalisation; cosine; fitted on the training speakers to choose the layer on dev by "
        "EER, then refitted on training and dev speakers",
        True,
        InformedAttacker,
    ),
}


def score_trials(
    attacker: Any, features: np.ndarray, row: dict[str, int], trials: Trials
) -> np.ndarray:
    """Cosine scores of ``trials`` from one layer's ``features`` (``row``: id → row)."""
    embedded = attacker.embed(features)
    enrol = embedded[[row[i] for i in trials.enrol]]
    test = embedded[[row[i] for i in trials.test]]
    return np.einsum("nd,nd->n", enrol, test)


@dataclass(frozen=True)
class LayerChoice:
    """The layer an attacker uses and the dev EER of every layer it tried."""

    layer: int
    dev_eer: list[float]
    attacker: Any  # fitted at ``layer`` (refitted with the dev speakers when trained)


def choose_layer(
    spec: AttackerSpec,
    means: np.ndarray,
    row: dict[str, int],
    *,
    train_ids: Sequence[str],
    train_labels: Sequence[str],
    dev_trials: Trials,
    where: str,
    refit_ids: Sequence[str] = (),
    refit_labels: Sequence[str] = (),
) -> LayerChoice:
    """Fit ``spec`` per layer on the training clips (``train_labels``: each one's speaker) and
    keep the layer with the lowest dev EER (ties go to the lower layer); a trained attacker is
    then refitted at that layer on the training clips plus ``refit_ids`` (``refit_labels``:
    their speakers; the dev speakers' clips). ``means`` is ``[N, L, D]`` with rows given by
    ``row``."""
    if dev_trials.target.all() or not dev_trials.target.any():
        counts = dev_trials.counts()
        raise VerificationAttackError(
            f"{where}: the dev speakers give {counts['target']} target and {counts['nontarget']} "
            "non-target trial(s); choosing a layer needs both (at least two dev clips of a "
            "speaker, and two dev speakers)."
        )
    train_rows = [row[i] for i in train_ids]
    results = []
    for layer in range(means.shape[1]):
        attacker = spec.make()
        if spec.trained:
            attacker.fit(means[train_rows, layer], train_labels)
        scores = score_trials(attacker, means[:, layer], row, dev_trials)
        results.append((equal_error_rate(scores, dev_trials.target), attacker))
    dev_eer = [eer for eer, _ in results]
    best = int(np.argmin(dev_eer))
    attacker = results[best][1]
    if spec.trained and refit_ids:
        rows = [row[i] for i in (*train_ids, *refit_ids)]
        attacker = spec.make().fit(means[rows, best], [*train_labels, *refit_labels])
    return LayerChoice(layer=best, dev_eer=dev_eer, attacker=attacker)
