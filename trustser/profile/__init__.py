"""The trust profile: one axis per trust dimension, per model, collected from the results layout
and normalised.

The parts depend one way, each only on those above it:

- :mod:`~trustser.profile.model` — :class:`Profile` / :class:`BackboneProfile` and
  ``profile.json``; it names no axis;
- :mod:`~trustser.profile.axis` — what an axis is (:class:`Axis`), with the pieces its parts use:
  :mod:`~trustser.profile.results` (reading a results directory),
  :mod:`~trustser.profile.estimator` (the speaker bootstrap), :mod:`~trustser.profile.cells`
  (cell text);
- :mod:`~trustser.profile.axes` — the registry: one module per axis (performance, privacy,
  safety, fairness, sustainability), one line each;
- :mod:`~trustser.profile.paper` — the paper's Table 4 rows;
- :mod:`~trustser.profile.scales` — each axis's scale and the [0, 1] scores;
- :mod:`~trustser.profile.collect` — reading what the stages wrote under ``runs/``, with
  :mod:`~trustser.profile.intervals` (95 % intervals, paired comparisons);
- renderers, which read a profile and never the reverse: :mod:`~trustser.profile.tables`
  (CSV, Markdown), :mod:`~trustser.profile.radar` (charts), :mod:`~trustser.profile.report`
  (the HTML report, with the rankings of :mod:`~trustser.profile.recommend`, which itself
  imports no renderer);
- :mod:`~trustser.profile.run` — ``trustser profile`` end to end.

Everything else loops over the registry; docs/architecture.md says how to add an axis and
docs/metrics.md gives every definition.
"""

from __future__ import annotations

from trustser.profile.axes import axis_names, get_axis, registered_axes, scored_axes
from trustser.profile.axis import Axis
from trustser.profile.collect import collect_backbone, collect_profile
from trustser.profile.model import (
    PROFILE_FORMAT_VERSION,
    BackboneProfile,
    Profile,
    ProfileError,
    read_profile,
)
from trustser.profile.paper import PAPER_TABLE4, paper_reference
from trustser.profile.run import ModelComparison, run_compare, run_profile, write_profile
from trustser.profile.scales import (
    SCALE_MODES,
    AxisScale,
    axis_score,
    scale_bounds,
    score_profile,
)
from trustser.profile.tables import profile_to_csv, profile_to_markdown

__all__ = [
    "PAPER_TABLE4",
    "PROFILE_FORMAT_VERSION",
    "SCALE_MODES",
    "Axis",
    "AxisScale",
    "BackboneProfile",
    "ModelComparison",
    "Profile",
    "ProfileError",
    "axis_names",
    "axis_score",
    "collect_backbone",
    "collect_profile",
    "get_axis",
    "paper_reference",
    "profile_to_csv",
    "profile_to_markdown",
    "read_profile",
    "registered_axes",
    "run_compare",
    "run_profile",
    "scale_bounds",
    "score_profile",
    "scored_axes",
    "write_profile",
]
