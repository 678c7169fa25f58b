"""Mitigations trained from the cache, each a variant of its backbone (docs/mitigations.md).

* privacy (:mod:`.privacy`): the emotion head trained against a gender adversary behind gradient
  reversal (``<backbone>@privacy-l<λ>``), judged by fresh attackers on the encoder's output;
* fairness (:mod:`.fairness`): per-gender logit offsets fitted on dev (``@fair-post``) and
  gender × class reweighting of the training loss (``@fair-reweight``);
* safety (:mod:`.smoothing`): randomized smoothing at inference (``@smooth-s<s>-n<N>``),
  attacked adaptively by :func:`trustser.attacks.functional.eot_pgd`.
"""

from trustser.mitigate.estimator import MitigatedHeadClassifier, cell_weights
from trustser.mitigate.fairness import PostProcessing, fit_fair_post, fit_fair_reweight
from trustser.mitigate.privacy import encoder_frames, fit_privacy
from trustser.mitigate.smoothing import SmoothedClassifier, noise_sigma

__all__ = [
    "MitigatedHeadClassifier",
    "PostProcessing",
    "SmoothedClassifier",
    "cell_weights",
    "encoder_frames",
    "fit_fair_post",
    "fit_fair_reweight",
    "fit_privacy",
    "noise_sigma",
]
