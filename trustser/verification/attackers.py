"""Speaker-verification attackers, named by what they know (after VoicePrivacy's attack models).

Both score a trial by the cosine of two clips' embeddings of one layer (the time-mean of its
hidden states); they differ in what they learned first:

* **ignorant** — no training: the cosine of the raw time-means. What anyone holding the
  embeddings can do.
* **informed** — learns from the attacker's training speakers of the *same* representation:
  centring on their mean, linear discriminant analysis with speaker labels
  (:class:`sklearn.discriminant_analysis.LinearDiscriminantAnalysis`, eigen solver with
  Ledoit–Wolf shrinkage, ``min(speakers − 1, D)`` components) and length normalisation — the
  usual PLDA front end, scored by cosine.

Either picks its layer on the trial set's dev speakers by EER (:func:`choose_layer`); the
layer is never chosen on the test speakers. :data:`ATTACKERS` lists them for the runner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

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
    """Centring, LDA on speaker labels (Ledoit–Wolf shrinkage), length normalisation."""

    def fit(self, features: np.ndarray, speakers: Sequence[str]) -> InformedAttacker:
        features = np.asarray(features, dtype=np.float64)
        labels = np.asarray(speakers)
        distinct = np.unique(labels)
        if distinct.size < 2 or features.shape[0] <= distinct.size:
            raise VerificationAttackError(
                f"the informed attacker needs clips of at least 2 training speakers and more "
                f"clips than speakers; got {features.shape[0]} clip(s) of {distinct.size} "
                "speaker(s). Use a manifest whose folds leave more training speakers."
            )
        self.mean_ = features.mean(axis=0)
        components = min(distinct.size - 1, features.shape[1])
        self.lda_ = LinearDiscriminantAnalysis(
            solver="eigen", shrinkage="auto", n_components=components
        ).fit(features - self.mean_, labels)
        return self

    def embed(self, features: np.ndarray) -> np.ndarray:
        if not hasattr(self, "lda_"):
            raise VerificationAttackError("the informed attacker must be fitted before use.")
        centred = np.asarray(features, dtype=np.float64) - self.mean_
        return _length_normalise(self.lda_.transform(centred))


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
        "centring + LDA (eigen, Ledoit-Wolf shrinkage, speakers - 1 components) + length "
        "normalisation, trained on the attacker's training speakers; cosine; layer chosen on dev "
        "by EER",
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
    attacker: Any  # fitted at ``layer``


def choose_layer(
    spec: AttackerSpec,
    means: np.ndarray,
    row: dict[str, int],
    *,
    train_ids: Sequence[str],
    train_labels: Sequence[str],
    dev_trials: Trials,
    where: str,
) -> LayerChoice:
    """Fit ``spec`` per layer on the training clips (``train_labels``: each one's speaker) and
    keep the layer with the lowest dev EER (ties go to the lower layer). ``means`` is
    ``[N, L, D]`` with rows given by ``row``."""
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
    return LayerChoice(layer=best, dev_eer=dev_eer, attacker=results[best][1])
