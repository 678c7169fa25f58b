"""Speaker verification on unseen speakers: the privacy axis's linkability attack (docs/verification.md).

* :mod:`.trials`: target and non-target trials on each fold's test speakers, pooled across
  folds when a fold has too few speakers per gender;
* :mod:`.attackers`: the *ignorant* (cosine, no training) and *informed* (LDA on the training
  speakers) attackers, each choosing its layer on dev speakers;
* :mod:`.sources`: the embeddings an attacker sees (a store group, an array, a variant's
  per-fold model);
* :mod:`.scores`: the per-trial scores file and its EER / minDCF summary with intervals;
* :mod:`.run`: :func:`verify` and :func:`run_verification` (``trustser privacy verify``).
"""

from trustser.verification.attackers import ATTACKERS
from trustser.verification.run import (
    VerificationReport,
    VerificationResult,
    run_verification,
    verify,
)
from trustser.verification.scores import read_trial_scores, summarise_scores
from trustser.verification.sources import array_source, store_source
from trustser.verification.trials import TrialDesign, build_trials

__all__ = [
    "ATTACKERS",
    "TrialDesign",
    "VerificationReport",
    "VerificationResult",
    "array_source",
    "build_trials",
    "read_trial_scores",
    "run_verification",
    "store_source",
    "summarise_scores",
    "verify",
]
