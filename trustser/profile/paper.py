"""The paper's Table 4: its numbers, and its rows as unscored profile rows beside one's own.

Each axis on the ``paper`` scale names its column (``Axis.paper_key``); the scale's ends are
derived from these rows (:func:`trustser.profile.scales.paper_scale_ends`).
"""

from __future__ import annotations

from collections.abc import Sequence

from trustser.profile.axes import new_row, registered_axes
from trustser.profile.axis import Chance
from trustser.profile.model import BackboneProfile, ProfileError

__all__ = ["PAPER_TABLE4", "paper_reference"]

# The paper's Table 4 (NOTES §1; read off the reference repo's profile images, ±0.4). GMAC are
# thop MACs (the paper calls them GFLOPs); WavLM's is undercounted there (thop misses attention).
# An axis names its column (``Axis.paper_key``).
PAPER_TABLE4: dict[str, dict[str, float]] = {
    "APC": {"uar": 0.588, "eo": 0.209, "gmacs": 2.5, "asr": 0.881, "gender_accuracy": 0.957},
    "TERA": {"uar": 0.580, "eo": 0.205, "gmacs": 12.7, "asr": 0.706, "gender_accuracy": 0.960},
    "wav2vec2": {"uar": 0.646, "eo": 0.171, "gmacs": 41.6, "asr": 0.539, "gender_accuracy": 0.972},
    "WavLM Base+": {
        "uar": 0.671,
        "eo": 0.164,
        "gmacs": 33.1,
        "asr": 0.579,
        "gender_accuracy": 0.983,
    },
    "Whisper tiny": {
        "uar": 0.637,
        "eo": 0.164,
        "gmacs": 2.4,
        "asr": 0.788,
        "gender_accuracy": 0.922,
    },
    "Whisper base": {
        "uar": 0.662,
        "eo": 0.169,
        "gmacs": 5.9,
        "asr": 0.731,
        "gender_accuracy": 0.976,
    },
    "Whisper small": {
        "uar": 0.670,
        "eo": 0.166,
        "gmacs": 26.4,
        "asr": 0.627,
        "gender_accuracy": 0.974,
    },
}


def _chance_levels() -> dict[str, float]:
    """The chance levels of the paper's corpora: four emotions, two genders in balance — the
    defaults of the axes' chance ends."""
    levels = {}
    for axis in registered_axes():
        for end in (axis.absolute.worst, axis.absolute.best) if axis.absolute else ():
            if isinstance(end, Chance):
                levels[end.key] = end.default
    return levels


def paper_reference(names: Sequence[str] | None = None) -> list[BackboneProfile]:
    """The paper's Table 4 rows as unscored profiles (``reference=True``), for side-by-side views."""
    chosen = list(PAPER_TABLE4) if names is None else list(names)
    entries = []
    for name in chosen:
        if name not in PAPER_TABLE4:
            raise ProfileError(f"no paper row {name!r}; choose from {', '.join(PAPER_TABLE4)}.")
        row = PAPER_TABLE4[name]
        entry = new_row(
            f"paper: {name}",
            context=_chance_levels(),
            notes=["the paper's Table 4 (read off its figures, ±0.4 points)"],
            reference=True,
        )
        for axis in registered_axes():
            if axis.paper_key is not None:
                entry.raw[axis.name] = row[axis.paper_key]
        entries.append(entry)
    return entries
