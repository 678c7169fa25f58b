"""Safety: FGSM, PGD and a white-noise control on the raw waveform, end to end, at a fixed SNR.

``functional`` holds the stateless math on ``(batch, time)`` tensors with masks; ``methods``
the configured attacks; ``batched`` runs a model or an attack over padded batches of waveforms;
``loading`` reloads and checks what an attack needs (store group, heads, backbone); ``results``
the outcomes and their files; ``runner`` the ``trustser attack`` pipeline; ``sweep`` the
ASR-vs-SNR table and plot. The attacked model is :class:`trustser.end_to_end.EndToEndClassifier`.
See docs/attacks.md.
"""

from trustser.attacks.functional import fgsm, measured_snr, pgd, snr_epsilon, white_noise
from trustser.attacks.methods import FGSM, METHODS, PGD, AttackError, WhiteNoise, make_attack
from trustser.attacks.results import AttackResult, AttackRun
from trustser.attacks.runner import AttackProgress, run_attack

__all__ = [
    "FGSM",
    "METHODS",
    "PGD",
    "AttackError",
    "AttackProgress",
    "AttackResult",
    "AttackRun",
    "WhiteNoise",
    "fgsm",
    "make_attack",
    "measured_snr",
    "pgd",
    "run_attack",
    "snr_epsilon",
    "white_noise",
]
