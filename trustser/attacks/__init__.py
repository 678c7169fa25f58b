"""Safety: FGSM, PGD and a white-noise control on the raw waveform, end to end, at a fixed SNR.

``functional`` holds the stateless math on ``(batch, time)`` tensors with masks; ``methods``
the configured attacks; ``end_to_end`` the attacked model (backbone + head); ``runner`` the
``trustser attack`` pipeline; ``sweep`` the ASR-vs-SNR table and plot. See docs/attacks.md.
"""

from trustser.attacks.functional import fgsm, measured_snr, pgd, snr_epsilon, white_noise
from trustser.attacks.methods import FGSM, METHODS, PGD, AttackError, WhiteNoise, make_attack
from trustser.attacks.runner import AttackResult, AttackRun, run_attack

__all__ = [
    "FGSM",
    "METHODS",
    "PGD",
    "AttackError",
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
