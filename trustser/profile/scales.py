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

``score = (f(v) − f(worst)) / (f(best) − f(worst))`` with ``f = log10`` for a log axis
(sustainability) and the identity otherwise. Each axis's record says where it lies
(:class:`~trustser.profile.axis.Axis`: direction, ``log``, ``paper_key``, ``absolute``); an
axis the paper's Table 4 has no column for is not on the ``paper`` scale and keeps no score
there. The ``paper`` ends are derived from the paper's Table 4 rows
(:data:`~trustser.profile.paper.PAPER_TABLE4`) by one rule, :func:`paper_scale_ends`: the worst
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
from trustser.profile.axes import axis_names, get_axis, scored_axes
from trustser.profile.axis import SCALE_MODES, AbsoluteEnds, Axis, Chance
from trustser.profile.model import BackboneProfile, Profile, ProfileError
from trustser.profile.paper import PAPER_TABLE4

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

PAPER_MARGIN = 0.5  # each end of the paper scale lies this fraction of the rows' spread outside


def _axis(axis: str | Axis) -> Axis:
    return axis if isinstance(axis, Axis) else get_axis(axis)


def _paper_values(axis: Axis) -> list[float]:
    if axis.paper_key is None:
        raise ProfileError(
            f"the {axis.name} axis is not on the paper scale (the paper's Table 4 has no column "
            "for it); use --scale absolute or relative."
        )
    return [row[axis.paper_key] for row in PAPER_TABLE4.values()]


def _paper_ends(axis: Axis, margin: float) -> tuple[float, float, bool]:
    """``(low, high, capped)``: the widened range of the paper's rows, before any orientation."""
    values = _paper_values(axis)
    points = [math.log10(v) for v in values] if axis.log else values
    low, high = min(points), max(points)
    spread = high - low
    low, high = low - margin * spread, high + margin * spread
    if axis.log:
        return 10.0**low, 10.0**high, False
    if axis.percent:  # a rate lies in [0, 1]
        return max(0.0, low), min(1.0, high), low < 0.0 or high > 1.0
    return low, high, False


def paper_scale_ends(axis: str | Axis, margin: float = PAPER_MARGIN) -> tuple[float, float]:
    """``(worst, best)`` of the ``paper`` scale on ``axis``, derived from the paper's Table 4.

    The worst and best of the seven rows, each moved outwards by ``margin`` × their spread
    (in log10 for a log axis, GMACs); rates are capped to [0, 1]. With the default margin of one
    half the paper's rows lie in the middle half of the axis, scores 0.25 to 0.75 (where no cap
    binds).
    """
    axis = _axis(axis)
    low, high, _ = _paper_ends(axis, margin)
    return (low, high) if axis.higher_is_better else (high, low)


def _paper_description(axis: Axis) -> str:
    """The ends, e.g. ``UAR 53.45 % → 71.65 %``."""
    worst, best = paper_scale_ends(axis)
    if not axis.percent:
        return f"{'log10 ' if axis.log else ''}{axis.unit} {worst:.0f} → {best:.2f}"
    return f"{axis.short} {axis.shown(worst, exact=True)} → {axis.shown(best, exact=True)}"


def _paper_basis(axis: Axis) -> str:
    """Where the ends come from, e.g. ``Table 4 rows 58.0–67.1 %, ± half their spread``."""
    values = _paper_values(axis)
    if axis.percent:
        rows = f"{percent(min(values))}–{percent(max(values), unit=True)}"
    else:
        rows = f"{min(values):g}–{max(values):g} {axis.unit}" + (" (log10)" if axis.log else "")
    capped = ", capped at 100 %" if _paper_ends(axis, PAPER_MARGIN)[2] else ""
    return f"Table 4 rows {rows}, ± half their spread{capped}"


PAPER_RULE = "the paper's Table 4 rows (worst, best) widened by half their spread on each side"


@dataclass(frozen=True)
class AxisScale:
    """How one axis's raw metric maps to a [0, 1] score (1 = most trustworthy)."""

    axis: str
    metric: str
    unit: str  # "fraction" or a unit such as "GMAC"
    worst: float | None  # None: depends on the data (chance) or the compared set (relative)
    best: float | None
    log: bool
    description: str


def _absolute(axis: Axis) -> AbsoluteEnds:
    if axis.absolute is None:
        raise ProfileError(
            f"the {axis.name} axis is not on the absolute scale; use --scale relative."
        )
    return axis.absolute


def _scale(mode: str, axis: Axis) -> AxisScale:
    """The ``paper`` or ``absolute`` scale of ``axis``."""
    if mode == "paper":
        worst, best = paper_scale_ends(axis)
        return AxisScale(
            axis.name, axis.metric, axis.unit, worst, best, axis.log, _paper_description(axis)
        )
    ends = _absolute(axis)
    return AxisScale(
        axis.name,
        axis.metric,
        axis.unit,
        None if isinstance(ends.worst, Chance) else ends.worst,
        None if isinstance(ends.best, Chance) else ends.best,
        axis.log,
        ends.description,
    )


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
    mode: str, axis: str | Axis, entry: BackboneProfile, compared: Sequence[BackboneProfile]
) -> tuple[float, float, bool]:
    """``(worst, best, log)`` of ``axis`` for ``entry`` under scale ``mode``."""
    check_choice("scale", mode, SCALE_MODES)
    axis = _axis(axis)
    if mode == "relative":
        values = [b.raw[axis.name] for b in compared if b.raw.get(axis.name) is not None]
        higher = axis.higher_is_better
        best, worst = (max(values), min(values)) if higher else (min(values), max(values))
        return worst, best, axis.log
    if mode == "paper":
        worst, best = paper_scale_ends(axis)
        return worst, best, axis.log
    ends = _absolute(axis)
    worst = ends.worst.of(entry) if isinstance(ends.worst, Chance) else ends.worst
    best = ends.best.of(entry) if isinstance(ends.best, Chance) else ends.best
    return worst, best, axis.log


def _end_text(end: float | Chance) -> float | str:
    return end.text if isinstance(end, Chance) else end


def _scales_description(mode: str) -> dict[str, dict[str, Any]]:
    if mode == "relative":
        return {
            axis.name: {
                "metric": axis.metric,
                "worst": "worst of the compared backbones",
                "best": "best of the compared backbones",
                "log": axis.log,
                "description": "min–max over the compared backbones"
                + (f" (log10 {axis.unit})" if axis.log else ""),
            }
            for axis in scored_axes(mode)
        }
    out = {}
    for axis in scored_axes(mode):
        s = _scale(mode, axis)
        ends = axis.absolute if mode == "absolute" else None
        out[axis.name] = {
            "metric": s.metric,
            "worst": _end_text(ends.worst) if ends else s.worst,
            "best": _end_text(ends.best) if ends else s.best,
            "log": s.log,
            "description": s.description,
            **({"basis": _paper_basis(axis)} if mode == "paper" else {}),
        }
    return out


_CLIPPED_NOTE = "beyond the scale: "


def _clipped_note(
    axis: Axis, value: float, worst: float, best: float, score: float, scale: str
) -> str:
    end, which = (best, "best") if score >= 1 else (worst, "worst")
    return (
        f"{_CLIPPED_NOTE}{axis.name} {axis.shown(value)} lies past the {scale} scale's {which} "
        f"end ({axis.shown(end, exact=True)}); it scores {score:.0f} and is drawn at the "
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


def _score_axis(backbones: list[BackboneProfile], axis: Axis, scale: str, notes: list[str]) -> None:
    """Score ``axis`` of every measured row on ``scale`` (in place)."""
    name = axis.name
    measured = [b for b in backbones if b.raw.get(name) is not None]
    if scale == "relative" and measured and len({b.raw[name] for b in measured}) == 1:
        notes.append(
            f"relative scale: every compared backbone has the same {name} value (or only one "
            "was measured), so each scores 1 on it; compare more backbones or use --scale paper."
        )
        for b in measured:
            b.scores[name] = 1.0
            b.score_intervals[name] = None
        return
    for b in measured:
        worst, best, log = scale_bounds(scale, axis, b, backbones)
        b.scores[name], b.clipped[name] = axis_score(b.raw[name], worst, best, log=log)
        b.score_intervals[name] = _score_interval(b, name, worst, best, log)
        if b.clipped[name]:
            b.notes.append(_clipped_note(axis, b.raw[name], worst, best, b.scores[name], scale))


def score_profile(profile: Profile, scale: str) -> Profile:
    """Score every backbone of ``profile`` on ``scale`` (``paper``, ``absolute``, ``relative``):
    every axis on that scale; an axis off it keeps no score."""
    check_choice("scale", scale, SCALE_MODES)
    notes = [n for n in profile.notes if not n.startswith("relative scale:")]
    names = axis_names()
    backbones = [
        replace(
            entry,
            scores=dict.fromkeys(names),
            clipped=dict.fromkeys(names, False),
            notes=[n for n in entry.notes if not n.startswith(_CLIPPED_NOTE)],
            score_intervals={},
        )
        for entry in profile.backbones
    ]
    for axis in scored_axes(scale):
        _score_axis(backbones, axis, scale, notes)
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
        axes=list(names),
    )
