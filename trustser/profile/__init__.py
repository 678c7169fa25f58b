"""The trust profile: five axes per backbone, collected from the results layout and normalised.

The parts depend one way, each only on those above it:

- :mod:`~trustser.profile.model` — the axes, :class:`Profile` / :class:`BackboneProfile`, the
  paper's Table 4 rows and ``profile.json``;
- :mod:`~trustser.profile.scales` — each axis's scale and the [0, 1] scores;
- :mod:`~trustser.profile.collect` — reading what the stages wrote under ``runs/``;
- renderers, which read a profile and never the reverse: :mod:`~trustser.profile.tables`
  (CSV, Markdown), :mod:`~trustser.profile.radar` (charts), :mod:`~trustser.profile.report`
  (the HTML report, with the rankings of :mod:`~trustser.profile.recommend`, which itself
  imports no renderer);
- :mod:`~trustser.profile.run` — ``trustser profile`` end to end.

docs/metrics.md gives every definition.
"""

from __future__ import annotations

from trustser.profile.collect import collect_backbone, collect_profile
from trustser.profile.model import (
    AXES,
    AXIS_TITLES,
    PAPER_TABLE4,
    PROFILE_FORMAT_VERSION,
    BackboneProfile,
    Profile,
    ProfileError,
    paper_reference,
    read_profile,
)
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
    "AXES",
    "AXIS_TITLES",
    "PAPER_TABLE4",
    "PROFILE_FORMAT_VERSION",
    "SCALE_MODES",
    "AxisScale",
    "BackboneProfile",
    "ModelComparison",
    "Profile",
    "ProfileError",
    "axis_score",
    "collect_backbone",
    "collect_profile",
    "paper_reference",
    "profile_to_csv",
    "profile_to_markdown",
    "read_profile",
    "run_compare",
    "run_profile",
    "scale_bounds",
    "score_profile",
    "write_profile",
]
