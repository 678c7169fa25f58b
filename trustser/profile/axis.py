"""What a profile axis is: the record an axis module fills in, and the small records its parts use.

An axis lives in one module, ``trustser/profile/axes/<name>.py``, which builds one :class:`Axis`:
its name and labels, direction and unit, where it lies on each scale, how its raw figure is
collected from a model's results, its bootstrap, the command that produces it, and how its
figures are shown. The registry (:mod:`trustser.profile.axes`) lists the records; the rest of
the profile loops over the registry and asks each record, never the axis's name (the way
scikit-learn's scorers carry their own direction). docs/architecture.md has the recipe for a
new axis.
"""

from __future__ import annotations

import shlex
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trustser.formatting import percent
from trustser.profile.estimator import ClipFiles, RowBootstrap
from trustser.profile.model import BackboneProfile, Profile
from trustser.profile.results import Results
from trustser.runs import DEFAULT_RUNS

__all__ = [
    "FRACTION",
    "SCALE_MODES",
    "AbsoluteEnds",
    "Axis",
    "AxisOption",
    "Chance",
    "Column",
    "Commands",
    "CsvColumns",
    "Figure",
    "Reading",
    "Section",
]

FRACTION = "fraction"  # the unit of a rate in [0, 1]: shown as a percentage, compared in points
SCALE_MODES: tuple[str, ...] = ("paper", "absolute", "relative")


@dataclass(frozen=True)
class Chance:
    """A scale end that depends on the data: a chance level the row's results recorded
    (``BackboneProfile.context[key]``), ``default`` where they did not."""

    key: str
    default: float
    text: str  # how the scales table names the end, e.g. "chance (1/C)"

    def of(self, entry: BackboneProfile) -> float:
        return entry.context.get(self.key, self.default)


@dataclass(frozen=True)
class AbsoluteEnds:
    """An axis on the ``absolute`` scale: the raw values that score 0 and 1."""

    worst: float | Chance
    best: float | Chance
    description: str  # e.g. "ASR 100 % → 0 %"


@dataclass
class Reading:
    """What an axis's collector found in one model's results.

    ``details`` become the row's details of the axis, ``raw`` its raw figure (None: not
    measured), ``context`` joins the row's context (chance levels), ``notes`` its notes.
    ``not_measurable`` says why the axis cannot be measured on these results at all (rerunning
    a stage would not help): the row then lists the reason instead of a command to run.
    """

    details: dict[str, Any] | None = None
    raw: float | None = None
    context: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    not_measurable: str | None = None


@dataclass(frozen=True)
class Commands:
    """The pieces of the command that fills a missing axis of model ``model``."""

    model: str
    runs: str | None
    store: str | None
    attack: tuple[str, float]

    @property
    def quoted_model(self) -> str:
        return shlex.quote(self.model)

    @property
    def store_arg(self) -> str:
        return shlex.quote(self.store) if self.store else "<cache.zarr>"

    @property
    def runs_arg(self) -> str:
        """`` --runs DIR`` unless the results are in the default directory."""
        if self.runs and self.runs != DEFAULT_RUNS:
            return f" --runs {shlex.quote(self.runs)}"
        return ""

    def heads(self, task: str) -> str:
        """``trustser heads fit`` for ``task`` (emotion, gender, speaker)."""
        return (
            f"trustser heads fit --store {self.store_arg} --backbone {self.quoted_model} "
            f"--task {task}{self.runs_arg}"
        )


@dataclass(frozen=True)
class Column:
    """One column of a rendered table: its header and the text of a row's cell."""

    header: str
    cell: Callable[[BackboneProfile], str]


@dataclass
class CsvColumns:
    """An axis's part of one ``profile.csv`` row (fractions, not percent).

    A row reads: identity, scores, every axis's ``values``, the row's own columns (training,
    missing), every axis's ``later`` values (per-attack figures, whose number varies), the
    bounds of the intervals named in every axis's ``bounds`` (interval key → the column
    ``<column>_low`` / ``_high`` bound), those of ``later_bounds``, then the scores' bounds.
    """

    values: dict[str, Any]
    later: dict[str, Any] = field(default_factory=dict)
    bounds: dict[str, str] = field(default_factory=dict)
    later_bounds: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Section:
    """An axis's section of the HTML report: its heading and body (HTML)."""

    title: str
    render: Callable[[Profile], str]


@dataclass(frozen=True)
class Figure:
    """A secondary figure shown beside an axis and compared like it, but never scored (e.g. a
    speaker-verification EER beside privacy). Its value and bootstrap replicates are stored
    under ``key`` in the row's ``intervals`` and ``replicates`` by the axis's bootstrap."""

    key: str
    title: str
    higher_is_better: bool  # the more trustworthy direction, for the comparisons' verdicts
    unit: str = FRACTION
    # Its value read from the row's details, for a profile without a bootstrap (None: only
    # from the intervals).
    collected: Callable[[BackboneProfile], float | None] | None = None
    # What two rows must share for their figures to be compared (e.g. the trial list the
    # figure was measured on); None: the test speakers suffice.
    pairing: Callable[[BackboneProfile], Any] | None = None

    @property
    def percent(self) -> bool:
        return self.unit == FRACTION

    def value(self, entry: BackboneProfile) -> float | None:
        found = ((entry.intervals or {}).get(self.key) or {}).get("value")
        if found is None and self.collected is not None:
            return self.collected(entry)
        return found


@dataclass(frozen=True, eq=False)  # compared and hashed as itself (its mappings are not)
class AxisOption:
    """A choice of how an axis is measured, made per profile (``trustser profile
    --privacy-score strongest``): its name (the key of a profile's options), the allowed
    ``choices`` and the ``default``, what each choice means, and the scales a choice may be used
    on (a choice absent from ``scales`` is allowed on every scale)."""

    name: str
    choices: tuple[str, ...]
    default: str
    meaning: Mapping[str, str]
    scales: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _no_clips(_clips: ClipFiles) -> list[list[dict[str, str]]]:
    return []


@dataclass(frozen=True)
class Axis:
    """One axis of the trust profile: everything the profile needs to know about it.

    Identity and direction: ``name`` (the key of the row's dicts and of profile.json),
    ``title`` (table headings), ``metric`` (the scales' "raw metric"), ``short`` (the raw
    figure's short name, e.g. ``UAR``), ``unit`` (:data:`FRACTION`, shown as a percentage, or a
    unit such as ``GMAC``), ``higher_is_better``, ``log`` (scored in log10), ``counted`` (counted
    from the model, not estimated on test clips: exact, the same on every corpus).

    Scales: ``paper_key`` (its column of the paper's Table 4: the ``paper`` scale's ends and the
    paper's rows; None: not on the paper scale) and ``absolute`` (None: not on that scale).
    Every axis is on the ``relative`` scale.

    Measuring: ``collect`` reads a model's results into a :class:`Reading` (None: nothing
    found); ``command`` names the command that would fill it; ``clips`` gives the per-clip
    tables it is bootstrapped from (their speakers join the profile's draws) and ``bootstrap``
    stores its intervals and replicates (``None``: no intervals); ``combine`` gives a mean
    over corpora row its details and context from the corpora's rows.

    Showing: ``spoke`` (the raw-figure label of a radar spoke; default: ``short`` and value),
    ``csv``, ``markdown`` (its columns of profile.md's raw metrics table), ``section`` (its
    section of the report), ``change_label`` (the mitigations table's "Δ …"), ``figures``
    (secondary figures shown and compared beside it), ``aliases`` (names accepted in
    ``--weights``), and ``details_after`` (the axis whose details its own follow: fairness,
    read from the emotion head's predictions, sits after performance).

    Choices: ``options`` (:class:`AxisOption`: how the axis may be measured, chosen per profile;
    its collector reads the choice from ``Results.options``).
    """

    name: str
    title: str
    metric: str
    short: str
    higher_is_better: bool
    collect: Callable[[Results], Reading | None]
    command: Callable[[Commands], str]
    unit: str = FRACTION
    log: bool = False
    counted: bool = False
    paper_key: str | None = None
    absolute: AbsoluteEnds | None = None
    own_field: bool = False  # its details are BackboneProfile.<name> (profile.json format 1)
    clips: Callable[[ClipFiles], list[list[dict[str, str]]]] = _no_clips
    bootstrap: Callable[[RowBootstrap], None] | None = None
    combine: Callable[[Sequence[BackboneProfile]], Reading] | None = None
    spoke: Callable[[BackboneProfile, dict[str, Any]], str] | None = None
    csv: Callable[[BackboneProfile], CsvColumns] | None = None
    markdown: Callable[[Profile], list[Column]] | None = None
    section: Section | None = None
    change_label: str | None = None
    figures: tuple[Figure, ...] = ()
    aliases: tuple[str, ...] = ()
    details_after: str | None = None
    options: tuple[AxisOption, ...] = ()

    @property
    def key(self) -> str:
        """Where its figure is compared (``Comparison.metric``): its name."""
        return self.name

    @property
    def percent(self) -> bool:
        """Whether the raw figure is a rate shown as a percentage."""
        return self.unit == FRACTION

    def on_scale(self, mode: str) -> bool:
        """Whether the axis is scored on scale ``mode`` (paper, absolute, relative)."""
        if mode == "paper":
            return self.paper_key is not None
        if mode == "absolute":
            return self.absolute is not None
        return True

    def details(self, entry: BackboneProfile) -> dict[str, Any] | None:
        """The row's details of this axis (what its collector read)."""
        if self.own_field:
            return getattr(entry, self.name)
        return entry.axis_details.get(self.name)

    def set_details(self, entry: BackboneProfile, details: dict[str, Any] | None) -> None:
        if self.own_field:
            setattr(entry, self.name, details)
        elif details is not None:
            entry.axis_details[self.name] = details

    def shown(self, value: float, *, exact: bool = False) -> str:
        """A raw value with its unit: ``88.8 %`` (``88.75 %`` when ``exact``), ``2.4 GMAC``."""
        if not self.percent:
            return f"{value:.3g} {self.unit}"
        if exact:
            return f"{100 * value:.2f}".rstrip("0").rstrip(".") + " %"
        return percent(value, unit=True)

    def change(self, value: float | None) -> str:
        """A change of the raw figure: points (``+1.2``) for rates, else the unit's (``+0.5``)."""
        if value is None:
            return "—"
        return f"{100 * value:+.1f}" if self.percent else f"{value:+.3g}"

    def spoke_label(self, entry: BackboneProfile, attack: dict[str, Any]) -> str:
        """The raw figure of a radar spoke: the axis's own label, or ``short`` and the value;
        for rates, the interval's ends on a second line."""
        value = entry.raw.get(self.name)
        reason = (entry.not_measurable or {}).get(self.name)
        if value is None and reason:  # the reason, wrapped to fit beside the chart
            return "not measurable:\n" + "\n".join(textwrap.wrap(reason, 30))
        if value is None:
            text = "not measured"
        elif self.spoke is not None:
            text = self.spoke(entry, attack)
        elif self.percent:
            text = f"{self.short} {percent(value, unit=True)}"
        else:
            text = f"{value:.2f} {self.unit}"
        return text + (interval_line(entry, self.name) if self.percent else "")


def interval_line(entry: BackboneProfile, key: str) -> str:
    """``"\\n[85.4, 93.3] %"``: the second line of a spoke label (empty without an interval)."""
    found = (entry.intervals or {}).get(key) or {}
    low, high = found.get("low"), found.get("high")
    if low is not None and high is not None and low != high:
        return f"\n[{percent(low)}, {percent(high)}] %"
    return ""
