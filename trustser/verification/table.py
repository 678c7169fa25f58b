"""The summary table of a verification run, read from its ``metrics.json`` alone.

``trustser privacy verify`` prints it and a results document shows it (``<profile>/verification``
in :mod:`trustser.results_doc`): per attacker, EER and minDCF with the run's own
speaker-bootstrap intervals, in all and per gender, the layers chosen on dev and why trials
were pooled across folds. Nothing is recomputed: the figures are those the run wrote.
:func:`verification_runs` lists a model's runs (every clip, then each emotion's trials).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustser._validation import TrustSERError
from trustser.formatting import MISSING, number, percent

__all__ = [
    "SUMMARY_HEADER",
    "SummaryTable",
    "VerificationSummaryError",
    "chosen_layers",
    "summary_table",
    "verification_runs",
]

SUMMARY_HEADER = ("attacker", "trials", "EER %", "95 % CI", "minDCF", "95 % CI")
_REQUIRED = ("attackers", "design", "bootstrap", "operating_point")


class VerificationSummaryError(TrustSERError, ValueError):
    """A verification ``metrics.json`` without the figures its summary shows."""


@dataclass(frozen=True)
class SummaryTable:
    """What a verification run's summary shows: a title, a caption, per attacker its rows
    (``SUMMARY_HEADER``: all trials, then per gender), the layers each attacker chose on dev,
    and why trials were pooled across folds (None: one set per fold)."""

    title: str
    caption: str
    groups: dict[str, list[list[str]]]
    layers: dict[str, str]
    pooled_reason: str | None

    @property
    def header(self) -> tuple[str, ...]:
        return SUMMARY_HEADER


def _interval(entry: Mapping[str, Any], as_percent: bool) -> str:
    low, high = entry.get("low"), entry.get("high")
    if low is None or high is None:
        return MISSING
    if as_percent:
        return f"[{percent(low)}, {percent(high)}]"
    return f"[{number(low, 3)}, {number(high, 3)}]"


def chosen_layers(layers: Sequence[int] | None) -> str:
    """``[2, 2, 3]`` → ``2 (2 sets), 3 (1)``: the layers chosen on dev, most common first."""
    if not layers:
        return MISSING
    head, *rest = Counter(layers).most_common()
    text = f"{head[0]} ({head[1]} set{'s' if head[1] > 1 else ''})"
    return ", ".join([text, *(f"{layer} ({n})" for layer, n in rest)])


def _trial_counts(trials: Mapping[str, Any] | None) -> str:
    trials = trials or {}
    if not isinstance(trials.get("target"), int) or not isinstance(trials.get("nontarget"), int):
        return ""
    return f"; {trials['target']} target and {trials['nontarget']} non-target trials"


def summary_table(metrics: Mapping[str, Any], *, where: str = "metrics.json") -> SummaryTable:
    """The summary of one verification run from its ``metrics.json`` body (``where``: the file,
    for errors)."""
    missing = [key for key in _REQUIRED if not isinstance(metrics.get(key), dict)]
    if missing:
        raise VerificationSummaryError(
            f"{where} lacks {', '.join(missing)}: not a speaker-verification metrics.json of this "
            "version; rerun `trustser privacy verify`."
        )
    design, point = metrics["design"], metrics["operating_point"]
    emotion = f", {design['emotion']} clips" if design.get("emotion") else ", every clip"
    groups: dict[str, list[list[str]]] = {}
    layers: dict[str, str] = {}
    for name, figures in metrics["attackers"].items():
        rows = [("all", figures), *(figures.get("by_gender") or {}).items()]
        groups[name] = [
            [
                name if index == 0 else "",
                subset,
                percent(entry["eer"]["value"]),
                _interval(entry["eer"], as_percent=True),
                number(entry["min_dcf"]["value"], 3),
                _interval(entry["min_dcf"], as_percent=False),
            ]
            for index, (subset, entry) in enumerate(rows)
        ]
        layers[name] = chosen_layers(metrics.get(f"{name}_layers"))
    caption = (
        f"set mean of {len(design.get('sets') or ())} trial set(s)"
        f"{_trial_counts(metrics.get('trials'))}; 95 % speaker-bootstrap intervals "
        f"({metrics['bootstrap'].get('replicates')} replicates); minDCF at P_target "
        f"{point.get('p_target'):g}, C_miss = {point.get('c_miss', 1.0):g}, "
        f"C_fa = {point.get('c_fa', 1.0):g}, normalised"
    )
    pooled = design.get("pooled_reason") if design.get("pooled_across_folds") else None
    return SummaryTable(
        title=f"speaker verification · {metrics.get('backbone', MISSING)}{emotion}",
        caption=caption,
        groups=groups,
        layers=layers,
        pooled_reason=pooled,
    )


def verification_runs(directory: str | os.PathLike) -> dict[str | None, Path]:
    """The runs of one model's ``verification/`` directory, by emotion (None: every clip, first;
    then each ``<emotion>/`` in name order): each one's ``metrics.json``."""
    directory = Path(directory)
    runs: dict[str | None, Path] = {}
    if (directory / "metrics.json").is_file():
        runs[None] = directory / "metrics.json"
    if directory.is_dir():
        for sub in sorted(directory.iterdir()):
            if sub.is_dir() and (sub / "metrics.json").is_file():
                runs[sub.name] = sub / "metrics.json"
    return runs
