r"""Safety: how often an imperceptible waveform perturbation changes the emotion decision.

Attack success rate (ASR), lower is better for the model: only clips the clean model classifies
correctly are attacked, and

.. math:: \mathrm{ASR} = \frac{|\{i : \hat y^{clean}_i = y_i,\ \hat y^{adv}_i \ne \hat y^{clean}_i\}|}
                              {|\{i : \hat y^{clean}_i = y_i\}|}.

Per fold, then mean and population sd over folds (what ``summary.json`` reports). The white-noise
control at the same SNR gives the ASR a non-adversarial perturbation reaches; the
``adversarial_excess`` is how much of the attack's success is due to the gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trustser.metrics._common import MetricError, as_label_arrays, mean_std

__all__ = ["adversarial_excess", "asr_by_fold", "attack_success_rate"]


def attack_success_rate(
    y_true: Sequence[Any], clean_pred: Sequence[Any], adv_pred: Sequence[Any]
) -> float:
    """ASR over the clips the clean model gets right (``[N]`` label arrays; lower is better).

    Rows the clean model already gets wrong are not attacks and are ignored, so a ``clips.csv``
    holding only attacked clips and one holding every test clip give the same number.
    """
    y_true, clean_pred, adv_pred = as_label_arrays(
        y_true, clean_pred, adv_pred, names=("y_true", "clean_pred", "adv_pred")
    )
    attacked = clean_pred == y_true
    if not attacked.any():
        raise MetricError(
            "attack success rate is undefined: the clean model classifies none of these clips "
            "correctly, so none was attacked."
        )
    return float(np.mean(adv_pred[attacked] != clean_pred[attacked]))


def asr_by_fold(
    y_true: Sequence[Any],
    clean_pred: Sequence[Any],
    adv_pred: Sequence[Any],
    folds: Sequence[Any],
) -> dict[str, Any]:
    """ASR per fold plus ``asr_mean`` / ``asr_std`` over the folds with at least one attacked clip.

    A fold without a correctly classified clip has no ASR; it is listed under ``undefined_folds``
    and left out of the mean rather than counted as 0.
    """
    y_true, clean_pred, adv_pred, folds = as_label_arrays(
        y_true, clean_pred, adv_pred, folds, names=("y_true", "clean_pred", "adv_pred", "folds")
    )
    per_fold: dict[str, float] = {}
    undefined: list[str] = []
    for fold in np.unique(folds).tolist():
        rows = folds == fold
        if not (clean_pred[rows] == y_true[rows]).any():
            undefined.append(str(fold))
            continue
        per_fold[str(fold)] = attack_success_rate(y_true[rows], clean_pred[rows], adv_pred[rows])
    if not per_fold:
        raise MetricError("attack success rate is undefined in every fold: nothing was attacked.")
    mean, std = mean_std(list(per_fold.values()))
    return {"per_fold": per_fold, "asr_mean": mean, "asr_std": std, "undefined_folds": undefined}


def adversarial_excess(attack_asr: float, noise_asr: float) -> float:
    """ASR of an attack minus that of white noise at the same SNR: what the gradient adds."""
    for name, value in (("attack_asr", attack_asr), ("noise_asr", noise_asr)):
        if not 0.0 <= value <= 1.0:
            raise MetricError(f"{name} must be a rate in [0, 1], got {value!r}.")
    return float(attack_asr - noise_asr)
