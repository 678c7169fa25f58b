"""How raw metrics become scores: each axis's scale and the [0, 1] normalisation of a profile.

Each axis has one *raw* metric and a *score* in [0, 1] where **higher is more trustworthy**:

==============  ===================================  ======================  =====================
axis            raw metric                           ``paper`` scale         ``absolute`` scale
                                                     (worst → best)          (worst → best)
==============  ===================================  ======================  =====================
performance     emotion UAR (fold mean)              53.45 % → 71.65 %       chance 1/C → 1
privacy         gender accuracy, strongest attacker  100 % → 89.15 %         1 → majority chance
safety          ASR of FGSM at 45 dB                 100 % → 36.8 %          1 → 0
fairness        multiclass EO (fold mean)            23.15 % → 14.15 %       1 → 0
sustainability  GMACs per 6 s clip (log10)           173 → 0.58              1000 → 0.1
==============  ===================================  ======================  =====================

``score = (f(v) − f(worst)) / (f(best) − f(worst))`` with ``f = log10`` for sustainability and
the identity otherwise. The ``paper`` ends are derived from the paper's Table 4 rows
(:data:`~trustser.profile.model.PAPER_TABLE4`) by one rule, :func:`paper_scale_ends`: the worst
and the best of the seven rows, each moved outwards by half their spread (:data:`PAPER_MARGIN`;
in log10 for GMACs), and capped at 100 % for rates; so the paper's backbones fill the middle
half of each axis. A value beyond an end (EmoDB's 88.8 % UAR, say) scores 0 or 1, is flagged
``clipped`` and named in the notes with its value and the end it passed. ``relative`` is
min–max over the compared backbones. docs/metrics.md gives the full definitions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from trustser._validation import check_choice
from trustser.formatting import percent
from trustser.profile.model import AXES, PAPER_TABLE4, BackboneProfile, Profile, ProfileError

__all__ = [
    "PAPER_MARGIN",
    "PAPER_RULE",
    "SCALE_MODES",
    "AxisScale",
    "axis_score",
    "paper_scale_ends",
    "scale_bounds",
    "score_profile",
]

SCALE_MODES: tuple[str, ...] = ("paper", "absolute", "relative")
PAPER_MARGIN = 0.5  # each end of the paper scale lies this fraction of the rows' spread outside
_TABLE4_KEY = {
    "performance": "uar",
    "privacy": "gender_accuracy",
    "safety": "asr",
    "fairness": "eo",
    "sustainability": "gmacs",
}
_HIGHER_IS_BETTER = {
    "performance": True,
    "privacy": False,
    "safety": False,
    "fairness": False,
    "sustainability": False,
}
_LOG = {"sustainability"}


def paper_scale_ends(axis: str, margin: float = PAPER_MARGIN) -> tuple[float, float]:
    """``(worst, best)`` of the ``paper`` scale on ``axis``, derived from the paper's Table 4.

    The worst and best of the seven rows, each moved outwards by ``margin`` × their spread
    (in log10 for GMACs); rates are capped to [0, 1]. With the default margin of one half the
    paper's rows lie in the middle half of the axis, scores 0.25 to 0.75 (where no cap binds).
    """
    check_choice("axis", axis, AXES)
    values = [row[_TABLE4_KEY[axis]] for row in PAPER_TABLE4.values()]
    log = axis in _LOG
    points = [math.log10(v) for v in values] if log else values
    low, high = min(points), max(points)
    spread = high - low
    low, high = low - margin * spread, high + margin * spread
    if log:
        low, high = 10.0**low, 10.0**high
    else:
        low, high = max(0.0, low), min(1.0, high)
    return (low, high) if _HIGHER_IS_BETTER[axis] else (high, low)


def _exact_percent(value: float) -> str:
    return f"{100 * value:.2f}".rstrip("0").rstrip(".") + " %"


def _paper_description(axis: str) -> str:
    """The ends, e.g. ``UAR 53.45 % → 71.65 %``."""
    worst, best = paper_scale_ends(axis)
    if axis == "sustainability":
        return f"log10 GMAC {worst:.0f} → {best:.2f}"
    name = {"performance": "UAR", "privacy": "gender acc.", "safety": "ASR"}.get(axis, "EO")
    return f"{name} {_exact_percent(worst)} → {_exact_percent(best)}"


def _paper_basis(axis: str) -> str:
    """Where the ends come from, e.g. ``Table 4 rows 58.0–67.1 %, ± half their spread``."""
    values = [row[_TABLE4_KEY[axis]] for row in PAPER_TABLE4.values()]
    if axis == "sustainability":
        rows = f"{min(values):g}–{max(values):g} GMAC (log10)"
    else:
        rows = f"{percent(min(values))}–{percent(max(values), unit=True)}"
    capped = ", capped at 100 %" if axis in ("privacy", "safety") else ""
    return f"Table 4 rows {rows}, ± half their spread{capped}"


PAPER_RULE = "the paper's Table 4 rows (worst, best) widened by half their spread on each side"


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


_METRICS = {
    "performance": ("emotion UAR", "fraction"),
    "privacy": ("gender accuracy (strongest attacker)", "fraction"),
    "safety": ("attack success rate", "fraction"),
    "fairness": ("multiclass equalized odds", "fraction"),
    "sustainability": ("GMACs per clip", "GMAC"),
}
_SCALES: dict[str, dict[str, AxisScale]] = {
    "paper": {
        axis: AxisScale(
            axis,
            _METRICS[axis][0],
            _METRICS[axis][1],
            *paper_scale_ends(axis),
            axis in _LOG,
            _paper_description(axis),
        )
        for axis in AXES
    },
    "absolute": {
        "performance": AxisScale(
            "performance", "emotion UAR", "fraction", None, 1.0, False, "UAR chance (1/C) → 100 %"
        ),
        "privacy": AxisScale(
            "privacy",
            "gender accuracy (strongest attacker)",
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
            **({"basis": _paper_basis(axis)} if mode == "paper" else {}),
        }
        for axis, s in _SCALES[mode].items()
    }


_CLIPPED_NOTE = "beyond the scale: "


def _shown(axis: str, value: float, *, exact: bool = False) -> str:
    if axis == "sustainability":
        return f"{value:.3g} GMAC"
    return _exact_percent(value) if exact else percent(value, unit=True)


def _clipped_note(
    axis: str, value: float, worst: float, best: float, score: float, scale: str
) -> str:
    end, which = (best, "best") if score >= 1 else (worst, "worst")
    return (
        f"{_CLIPPED_NOTE}{axis} {_shown(axis, value)} lies past the {scale} scale's {which} end "
        f"({_shown(axis, end, exact=True)}); it scores {score:.0f} and is drawn at the "
        f"{'rim' if score >= 1 else 'centre'}, marked clipped"
        + ("; --scale absolute has room for it." if scale == "paper" else ".")
    )


def _score_interval(
    entry: BackboneProfile, axis: str, worst: float, best: float, log: bool
) -> list[float] | None:
    """The score of each end of the raw figure's interval (the scale is monotone), low first."""
    found = (entry.intervals or {}).get(axis) or {}
    low, high = found.get("low"), found.get("high")
    if low is None or high is None:
        return None
    ends = sorted(axis_score(v, worst, best, log=log)[0] for v in (low, high))
    return [float(x) for x in ends]


def score_profile(profile: Profile, scale: str) -> Profile:
    """Score every backbone of ``profile`` on ``scale`` (``paper``, ``absolute``, ``relative``)."""
    check_choice("scale", scale, SCALE_MODES)
    notes = [n for n in profile.notes if not n.startswith("relative scale:")]
    backbones = []
    for entry in profile.backbones:
        entry = replace(
            entry,
            scores=dict.fromkeys(AXES),
            clipped=dict.fromkeys(AXES, False),
            notes=[n for n in entry.notes if not n.startswith(_CLIPPED_NOTE)],
            score_intervals={},
        )
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
                    b.score_intervals[axis] = None
                continue
        for b in measured:
            worst, best, log = scale_bounds(scale, axis, b, backbones)
            b.scores[axis], b.clipped[axis] = axis_score(b.raw[axis], worst, best, log=log)
            b.score_intervals[axis] = _score_interval(b, axis, worst, best, log)
            if b.clipped[axis]:
                b.notes.append(_clipped_note(axis, b.raw[axis], worst, best, b.scores[axis], scale))
    return Profile(
        backbones=backbones,
        scale=scale,
        scales=_scales_description(scale),
        attack=profile.attack,
        runs=profile.runs,
        store=profile.store,
        notes=notes,
        bootstrap=profile.bootstrap,
        comparisons=profile.comparisons,
        corpora=profile.corpora,
    )
