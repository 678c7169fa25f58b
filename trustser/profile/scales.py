"""How raw metrics become scores: each axis's scale and the [0, 1] normalisation of a profile.

Each axis has one *raw* metric and a *score* in [0, 1] where **higher is more trustworthy**:

==============  ==============================  =====================  =====================
axis            raw metric                      ``paper`` scale        ``absolute`` scale
                                                (worst → best)         (worst → best)
==============  ==============================  =====================  =====================
performance     emotion UAR (fold mean)         0.50 → 0.75            chance 1/C → 1
privacy         gender accuracy (fold mean)     1.00 → 0.85            1 → majority chance
safety          ASR of FGSM at 45 dB            1.00 → 0.40            1 → 0
fairness        multiclass EO (fold mean)       0.25 → 0.10            1 → 0
sustainability  GMACs per 6 s clip (log10)      100 → 1                1000 → 0.1
==============  ==============================  =====================  =====================

``score = (f(v) − f(worst)) / (f(best) − f(worst))`` with ``f = log10`` for sustainability and
the identity otherwise, clipped to [0, 1] (clipping is flagged). The ``paper`` bounds bracket the
ranges of the paper's Table 4 (UAR 58–67 %, EO 16–21 %, ASR 54–88 %, gender accuracy 92–98 %,
2.4–42 GMAC) with margin; ``relative`` is min–max over the compared backbones. docs/metrics.md
gives the full definitions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from trustser._validation import check_choice
from trustser.profile.model import AXES, BackboneProfile, Profile, ProfileError

__all__ = ["SCALE_MODES", "AxisScale", "axis_score", "scale_bounds", "score_profile"]

SCALE_MODES: tuple[str, ...] = ("paper", "absolute", "relative")


@dataclass(frozen=True)
class AxisScale:
    """How one axis's raw metric maps to a [0, 1] score (1 = most trustworthy)."""

    axis: str
    metric: str
    unit: str  # "fraction" or "GMAC"
    worst: float | None  # None: depends on the data (chance) or the compared set (relative)
    best: float | None
    log: bool
    description: str


_SCALES: dict[str, dict[str, AxisScale]] = {
    "paper": {
        "performance": AxisScale(
            "performance", "emotion UAR", "fraction", 0.50, 0.75, False, "UAR 50 % → 75 %"
        ),
        "privacy": AxisScale(
            "privacy",
            "gender accuracy",
            "fraction",
            1.00,
            0.85,
            False,
            "gender-inference accuracy 100 % → 85 %",
        ),
        "safety": AxisScale(
            "safety", "attack success rate", "fraction", 1.00, 0.40, False, "ASR 100 % → 40 %"
        ),
        "fairness": AxisScale(
            "fairness",
            "multiclass equalized odds",
            "fraction",
            0.25,
            0.10,
            False,
            "EO 25 % → 10 %",
        ),
        "sustainability": AxisScale(
            "sustainability",
            "GMACs per clip",
            "GMAC",
            100.0,
            1.0,
            True,
            "log10 GMAC 100 → 1",
        ),
    },
    "absolute": {
        "performance": AxisScale(
            "performance", "emotion UAR", "fraction", None, 1.0, False, "UAR chance (1/C) → 100 %"
        ),
        "privacy": AxisScale(
            "privacy",
            "gender accuracy",
            "fraction",
            1.0,
            None,
            False,
            "gender-inference accuracy 100 % → majority-class chance",
        ),
        "safety": AxisScale(
            "safety", "attack success rate", "fraction", 1.0, 0.0, False, "ASR 100 % → 0 %"
        ),
        "fairness": AxisScale(
            "fairness", "multiclass equalized odds", "fraction", 1.0, 0.0, False, "EO 100 % → 0 %"
        ),
        "sustainability": AxisScale(
            "sustainability",
            "GMACs per clip",
            "GMAC",
            1000.0,
            0.1,
            True,
            "log10 GMAC 1000 → 0.1",
        ),
    },
}
_HIGHER_IS_BETTER = {
    "performance": True,
    "privacy": False,
    "safety": False,
    "fairness": False,
    "sustainability": False,
}


def axis_score(value: float, worst: float, best: float, *, log: bool = False) -> tuple[float, bool]:
    """``(score, clipped)``: ``value`` mapped linearly (or in log10) so ``worst`` → 0, ``best`` → 1."""
    if log:
        if value <= 0 or worst <= 0 or best <= 0:
            raise ProfileError(
                f"a log scale needs positive values, got {value!r} on [{worst}, {best}]."
            )
        value, worst, best = math.log10(value), math.log10(worst), math.log10(best)
    if best == worst:
        raise ProfileError(f"a scale needs distinct ends, got worst = best = {worst!r}.")
    score = (value - worst) / (best - worst)
    clipped = score < -1e-12 or score > 1 + 1e-12
    return float(min(1.0, max(0.0, score))), clipped


def scale_bounds(
    mode: str, axis: str, entry: BackboneProfile, compared: Sequence[BackboneProfile]
) -> tuple[float, float, bool]:
    """``(worst, best, log)`` of ``axis`` for ``entry`` under scale ``mode``."""
    check_choice("scale", mode, SCALE_MODES)
    if mode == "relative":
        values = [b.raw[axis] for b in compared if b.raw.get(axis) is not None]
        higher = _HIGHER_IS_BETTER[axis]
        best, worst = (max(values), min(values)) if higher else (min(values), max(values))
        return worst, best, axis == "sustainability"
    scale = _SCALES[mode][axis]
    worst, best = scale.worst, scale.best
    if worst is None:  # absolute performance: chance = 1 / number of emotion classes
        worst = entry.context.get("emotion_chance", 0.25)
    if best is None:  # absolute privacy: chance = majority gender share
        best = entry.context.get("gender_chance", 0.5)
    return worst, best, scale.log


def _scales_description(mode: str) -> dict[str, dict[str, Any]]:
    if mode == "relative":
        return {
            axis: {
                "metric": _SCALES["paper"][axis].metric,
                "worst": "worst of the compared backbones",
                "best": "best of the compared backbones",
                "log": axis == "sustainability",
                "description": "min–max over the compared backbones"
                + (" (log10 GMAC)" if axis == "sustainability" else ""),
            }
            for axis in AXES
        }
    return {
        axis: {
            "metric": s.metric,
            "worst": s.worst if s.worst is not None else "chance (1/C)",
            "best": s.best if s.best is not None else "majority-class chance",
            "log": s.log,
            "description": s.description,
        }
        for axis, s in _SCALES[mode].items()
    }


def score_profile(profile: Profile, scale: str) -> Profile:
    """Score every backbone of ``profile`` on ``scale`` (``paper``, ``absolute``, ``relative``)."""
    check_choice("scale", scale, SCALE_MODES)
    notes = [n for n in profile.notes if not n.startswith("relative scale:")]
    backbones = []
    for entry in profile.backbones:
        entry = replace(entry, scores=dict.fromkeys(AXES), clipped=dict.fromkeys(AXES, False))
        backbones.append(entry)
    for axis in AXES:
        measured = [b for b in backbones if b.raw.get(axis) is not None]
        if scale == "relative" and measured:
            values = {b.raw[axis] for b in measured}
            if len(values) == 1:
                notes.append(
                    f"relative scale: every compared backbone has the same {axis} value (or only one "
                    "was measured), so each scores 1 on it; compare more backbones or use --scale paper."
                )
                for b in measured:
                    b.scores[axis] = 1.0
                continue
        for b in measured:
            worst, best, log = scale_bounds(scale, axis, b, backbones)
            b.scores[axis], b.clipped[axis] = axis_score(b.raw[axis], worst, best, log=log)
    return Profile(
        backbones=backbones,
        scale=scale,
        scales=_scales_description(scale),
        attack=profile.attack,
        runs=profile.runs,
        store=profile.store,
        notes=notes,
    )
