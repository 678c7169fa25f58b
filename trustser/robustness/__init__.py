"""Robustness to real-world channels: every head and variant on corrupted test clips.

``copies`` makes the corrupted copies of the test clips (a derived manifest, docs/store-format.md
§4.1) and extracts the frozen backbone over them once; ``scores`` computes UAR, its drop and
the share of unchanged predictions per case and gender with speaker-bootstrap intervals;
``results`` reads and writes ``runs/<model>/robustness/``; ``run`` evaluates every model of a
backbone from the cache (end to end only where the inference path needs it). The corruptions
themselves are :mod:`trustser.corruptions`. See docs/robustness.md.
"""

from trustser.robustness.copies import (
    CorruptedSet,
    Corrupter,
    RobustnessError,
    corrupted_id,
    corrupted_set,
    extract_copies,
)
from trustser.robustness.results import read_clips, read_summary
from trustser.robustness.run import (
    ModelResult,
    RobustnessProgress,
    RobustnessRun,
    predict_from_cache,
    robustness_models,
    run_robustness,
)
from trustser.robustness.scores import ClipRow, score_suite

__all__ = [
    "ClipRow",
    "CorruptedSet",
    "Corrupter",
    "ModelResult",
    "RobustnessError",
    "RobustnessProgress",
    "RobustnessRun",
    "corrupted_id",
    "corrupted_set",
    "extract_copies",
    "predict_from_cache",
    "read_clips",
    "read_summary",
    "robustness_models",
    "run_robustness",
    "score_suite",
]
