"""Trust metrics as pure functions of label arrays (formulas in docs/metrics.md).

One module per axis: :mod:`~trustser.metrics.performance` (UAR, weighted accuracy, macro-F1),
:mod:`~trustser.metrics.fairness` (equalized odds, statistical parity, per-speaker spread),
:mod:`~trustser.metrics.privacy` (attribute inference beside chance),
:mod:`~trustser.metrics.verification` (speaker verification: EER, minDCF, DET) and
:mod:`~trustser.metrics.safety` (attack success rate); :mod:`~trustser.metrics.bootstrap` gives
them speaker-level bootstrap intervals and paired comparisons, computed from count tables.
``*_score`` is higher-is-better, ``*_gap`` / ``*_difference`` lower-is-better; undefined cases
follow an explicit ``undefined`` policy (see :mod:`trustser.metrics._common`). Submodules are
imported on use, not here.
"""

__all__ = ["bootstrap", "fairness", "performance", "privacy", "safety", "verification"]
