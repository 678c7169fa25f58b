"""The axis registry: every axis of the trust profile, one line each.

Each axis is one module of this package that builds one :class:`~trustser.profile.axis.Axis`
record; :data:`AXES` lists them in the order the profile shows them (the radar's spokes, the
score columns, profile.json's ``axes``): the paper's five, then robustness (not on the paper's
scale). Tables, radar, report, recommend, compare and the mitigations section loop over the
registry through the functions below — read it through them, never by copying :data:`AXES`, so
that a test can register an axis of its own::

    monkeypatch.setattr("trustser.profile.axes.AXES", (*axes.AXES, my_axis))
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from trustser.profile.axes import (
    fairness,
    performance,
    privacy,
    robustness,
    safety,
    sustainability,
)
from trustser.profile.axis import Axis, Figure
from trustser.profile.model import BackboneProfile, ProfileError

__all__ = [
    "AXES",
    "axis_names",
    "axis_options",
    "compared",
    "details_order",
    "get_axis",
    "new_row",
    "registered_axes",
    "scored_axes",
]

AXES: tuple[Axis, ...] = (
    performance.AXIS,
    privacy.AXIS,
    safety.AXIS,
    fairness.AXIS,
    sustainability.AXIS,
    robustness.AXIS,
)


@cache
def _checked(axes: tuple[Axis, ...]) -> tuple[Axis, ...]:
    """``axes`` once their names, aliases and ``details_after`` are known to be consistent."""
    names = [a.name for a in axes]
    spoken: dict[str, str] = {}
    for axis in axes:
        if names.count(axis.name) > 1:
            raise ProfileError(f"two axes are named {axis.name!r}; an axis name is unique.")
        for word in (axis.name, *axis.aliases):
            if spoken.setdefault(word, axis.name) != axis.name:
                raise ProfileError(
                    f"{word!r} names both the {spoken[word]} and the {axis.name} axis; give one "
                    "of them another alias."
                )
        if axis.details_after is not None and axis.details_after not in names:
            raise ProfileError(
                f"axis {axis.name!r} shows its details after {axis.details_after!r}, which is "
                f"not a registered axis ({', '.join(names)})."
            )
    return axes


def registered_axes() -> tuple[Axis, ...]:
    """Every registered axis, in the profile's order."""
    return _checked(AXES)


def axis_names() -> tuple[str, ...]:
    return tuple(a.name for a in registered_axes())


def get_axis(name: str) -> Axis:
    """The registered axis ``name`` (or one of its aliases)."""
    for axis in registered_axes():
        if name == axis.name or name in axis.aliases:
            return axis
    raise ProfileError(f"no axis {name!r}; the axes are {', '.join(axis_names())}.")


def scored_axes(scale: str) -> tuple[Axis, ...]:
    """The axes scored on ``scale``: the scores' columns and the radar's spokes."""
    return tuple(a for a in registered_axes() if a.on_scale(scale))


def details_order() -> tuple[Axis, ...]:
    """The axes in the order their details are collected and shown (the raw metrics tables,
    the report's sections): the registry's order, each axis with ``details_after`` placed right
    after that axis (after the axes placed there before it)."""
    axes = registered_axes()
    placed: list[Axis] = []

    def place(axis: Axis) -> None:
        placed.append(axis)
        for follower in axes:
            if follower.details_after == axis.name:
                place(follower)

    for axis in axes:
        if axis.details_after is None:
            place(axis)
    if len(placed) != len(axes):
        lost = ", ".join(a.name for a in axes if a not in placed)
        raise ProfileError(f"axes {lost} show their details after one another in a circle.")
    return tuple(placed)


def axis_options(options: Mapping[str, str] | None, scale: str) -> dict[str, str]:
    """Every registered axis option with its value: ``options``'s, checked (a known option, an
    allowed choice, a scale the choice may be used on), else its default."""
    declared = {o.name: (a, o) for a in registered_axes() for o in a.options}
    given = dict(options or {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ProfileError(
            f"unknown axis option(s) {unknown}; the options are {sorted(declared) or 'none'}."
        )
    chosen = {}
    for name, (axis, option) in declared.items():
        value = given.get(name, option.default)
        if value not in option.choices:
            raise ProfileError(
                f"{name} (the {axis.name} axis) takes one of {', '.join(option.choices)}, got "
                f"{value!r}."
            )
        allowed = option.scales.get(value)
        if allowed is not None and scale not in allowed:
            raise ProfileError(
                f"{name} = {value} is not on the {scale} scale ({option.meaning[value]}); use "
                f"--scale {' or '.join(allowed)}, or {name} = {option.default}."
            )
        chosen[name] = value
    return chosen


def compared() -> tuple[Axis | Figure, ...]:
    """What ``trustser compare`` and the paired comparisons compare: each axis, then the
    secondary figures it carries."""
    return tuple(m for a in registered_axes() for m in (a, *a.figures))


def new_row(name: str, **fields: object) -> BackboneProfile:
    """A profile row with a place for every registered axis (raw figure, score, clipped)."""
    names = axis_names()
    return BackboneProfile(
        name,
        raw=dict.fromkeys(names),
        scores=dict.fromkeys(names),
        clipped=dict.fromkeys(names, False),
        **fields,  # type: ignore[arg-type]
    )
