"""Radar charts of trust profiles (matplotlib; PNG for viewing, SVG for papers and the report).

One chart per backbone (each spoke labelled with its raw metric and score) and one overlay of all
backbones; a chart of one backbone is titled with its name. A spoke per axis on the profile's
scale (:func:`trustser.profile.axes.scored_axes`), labelled by the axis's record. Every chart
states its scale: the centre is score 0 (worst end of the scale), the rim score 1 (best end), and
the footer lists each axis's worst → best bounds. A value past an end is drawn at that end with a star and labelled
"clipped". An axis without a score — not measured yet, or not measurable on the corpus (one
gender: fairness) — is a *gap*, never a score of 0: the outline breaks there, the fill stops at
the neighbouring spokes, and the spoke is drawn dashed and labelled "not measured" or "not
measurable" with the reason (:func:`radar_shape` is the data a polygon is drawn from).

A profile's charts are drawn once (:func:`draw_radar_charts`) and then both written as files
(:func:`write_radar_charts`) and embedded in the HTML report, each use giving the chart its title.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustser.profile.axes import get_axis, scored_axes
from trustser.profile.axis import Axis
from trustser.profile.model import BackboneProfile, Profile
from trustser.runs import safe_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "OVERLAY_STEM",
    "RadarChart",
    "RadarCharts",
    "RadarShape",
    "RadarSpoke",
    "chart_stem",
    "draw_radar_charts",
    "figure_svg",
    "radar_figure",
    "radar_shape",
    "raw_label",
    "save_figure",
    "variants_stem",
    "write_radar_charts",
]

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_RC = {"svg.hashsalt": "trustser", "svg.fonttype": "none", "font.size": 10}
OVERLAY_STEM = "radar_overlay"


def chart_stem(name: str) -> str:
    """File stem of a backbone's chart: ``radar_<safe name>``."""
    return "radar_" + safe_name(name.replace("paper: ", "paper-"))


def raw_label(axis: str | Axis, entry: BackboneProfile, attack: dict[str, Any]) -> str:
    """A short human label of the raw metric behind one axis (a spoke label of a chart)."""
    return (axis if isinstance(axis, Axis) else get_axis(axis)).spoke_label(entry, attack)


def _angles(count: int) -> list[float]:
    # First spoke at the top, clockwise (matplotlib polar: theta offset π/2, direction −1).
    return [2 * math.pi * i / count for i in range(count)]


def _polar_axes(figure: Figure, count: int, *, single: bool) -> Any:
    bottom = 0.22 if single else 0.27
    ax = figure.add_axes(
        (0.22, bottom, 0.56, 0.56 * 7.6 / figure.get_figheight()), projection="polar"
    )
    ax.set_theta_offset(math.pi / 2)
    ax.set_theta_direction(-1)
    ax.set_xticks(_angles(count))
    ax.set_xticklabels([])
    ax.set_ylim(0, 1)
    ax.set_yticks([0.25, 0.5, 0.75, 1.0])
    ax.set_yticklabels(["0.25", "0.5", "0.75", "1"], fontsize=7, color="#666666")
    ax.set_rlabel_position(180 / count)
    ax.grid(color="#cccccc", linewidth=0.6)
    ax.spines["polar"].set_color("#999999")
    return ax


NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class RadarSpoke:
    """One spoke of a row's polygon: its score, or None for a gap and the reason (``gap``:
    ``"not measured"`` or ``"not measurable: <reason>"``)."""

    axis: str
    angle: float
    score: float | None
    clipped: bool = False
    gap: str | None = None


@dataclass(frozen=True)
class RadarShape:
    """What a row's polygon is drawn from: its spokes and the runs of consecutive scored spokes
    (indices, read clockwise; one run of every spoke when nothing is missing). The outline is
    the runs, broken at every gap (a closed ring when there is none); the filled area's vertices
    put the centre where a gap is, so the fill stops along the neighbouring spokes and never
    reaches out along a gap's spoke."""

    spokes: tuple[RadarSpoke, ...]
    runs: tuple[tuple[int, ...], ...]

    @property
    def gaps(self) -> dict[str, str]:
        return {s.axis: s.gap for s in self.spokes if s.gap is not None}

    @property
    def closed(self) -> bool:
        return not self.gaps and bool(self.spokes)

    def points(self, run: Sequence[int]) -> list[tuple[float, float]]:
        """A run's ``(angle, score)`` points, angles increasing through 2π (a run may wrap past
        the top); the ring closes on its first point when there is no gap."""
        indices = [*run, run[0]] if self.closed else list(run)
        points: list[tuple[float, float]] = []
        for index in indices:
            angle = self.spokes[index].angle
            while points and angle <= points[-1][0]:
                angle += 2 * math.pi
            points.append((angle, float(self.spokes[index].score)))  # type: ignore[arg-type]
        return points

    @property
    def outline(self) -> list[list[tuple[float, float]]]:
        return [self.points(run) for run in self.runs]

    @property
    def fill(self) -> list[tuple[float, float]]:
        """The filled area's vertices (empty when fewer than two spokes are scored)."""
        if self.closed:
            return self.points(self.runs[0])
        vertices: list[tuple[float, float]] = []
        for run in self.runs:  # each run, then the centre before the next gap
            vertices += self.points(run)
            vertices.append((vertices[-1][0], 0.0))
        return vertices if sum(len(r) for r in self.runs) > 1 else []


def _gap(entry: BackboneProfile, axis: Axis) -> str:
    reason = (entry.not_measurable or {}).get(axis.name)
    return f"not measurable: {reason}" if reason else NOT_MEASURED


def radar_shape(entry: BackboneProfile, axes: Sequence[Axis]) -> RadarShape:
    """The spokes and runs of ``entry``'s polygon over ``axes`` (angles clockwise from the
    top): a spoke without a score is a gap, drawn as no point at all."""
    spokes = tuple(
        RadarSpoke(
            axis.name,
            angle,
            entry.scores.get(axis.name),
            bool(entry.clipped.get(axis.name)),
            None if entry.scores.get(axis.name) is not None else _gap(entry, axis),
        )
        for angle, axis in zip(_angles(len(axes)), axes, strict=True)
    )
    count = len(spokes)
    gaps = [i for i, spoke in enumerate(spokes) if spoke.score is None]
    if not gaps:
        return RadarShape(spokes, (tuple(range(count)),) if count else ())
    runs: list[list[int]] = [[]]
    for step in range(1, count + 1):  # around the circle from the first gap
        index = (gaps[0] + step) % count
        if spokes[index].score is None:
            runs.append([])
        else:
            runs[-1].append(index)
    return RadarShape(spokes, tuple(tuple(run) for run in runs if run))


def _draw_entry(
    ax: Any, entry: BackboneProfile, axes: Sequence[Axis], colour: str, *, single: bool
) -> bool:
    """One polygon with its markers (star: clipped) and its interval band, broken at the gaps
    (:func:`radar_shape`); whether it has a band."""
    shape = radar_shape(entry, axes)
    style = "--" if entry.reference else "-"
    label = entry.name
    if entry.is_variant:
        label += f" ({entry.variant_description})"
    for index, points in enumerate(shape.outline or [[]]):  # nothing scored: still in the legend
        angles, values = [p[0] for p in points], [p[1] for p in points]
        ax.plot(angles, values, style, color=colour, linewidth=1.8, label=None if index else label)
    if shape.fill:
        angles, values = [p[0] for p in shape.fill], [p[1] for p in shape.fill]
        ax.fill(angles, values, color=colour, alpha=0.12 if not single else 0.2, linewidth=0)
    band = _band(entry, axes)
    for run in shape.runs if band is not None else ():  # each axis's 95 % interval ends
        low, high = band
        if len(run) == 1:  # a scored spoke between two gaps: its interval as a radial bar
            (index,) = run
            angle = shape.spokes[index].angle
            ax.plot(
                [angle, angle],
                [low[index], high[index]],
                color=colour,
                alpha=0.35,
                linewidth=6,
                solid_capstyle="butt",
            )
            continue
        indices = [*run, run[0]] if shape.closed else list(run)
        ax.fill_between(
            [angle for angle, _ in shape.points(run)],
            [low[i] for i in indices],
            [high[i] for i in indices],
            color=colour,
            alpha=0.25,
            linewidth=0,
            hatch="////" if not single else None,
        )
    for spoke in shape.spokes:
        if spoke.score is None:
            continue  # a gap: no point (the spoke itself is marked, see _mark_gaps)
        ax.plot(
            [spoke.angle],
            [spoke.score],
            "*" if spoke.clipped else "o",  # a star: the value lies past the scale's end
            color=colour,
            markersize=11 if spoke.clipped else 5,
            clip_on=False,
        )
    return band is not None


def _mark_gaps(ax: Any, entries: Sequence[BackboneProfile], axes: Sequence[Axis]) -> bool:
    """Draw dashed every spoke where some row has a gap; whether there was one."""
    marked = False
    for angle, axis in zip(_angles(len(axes)), axes, strict=True):
        if any(e.scores.get(axis.name) is None for e in entries):
            ax.plot([angle, angle], [0, 1], linestyle=(0, (3, 3)), color="#888888", linewidth=1.1)
            marked = True
    return marked


def _spoke_labels(
    ax: Any, axes: Sequence[Axis], single: BackboneProfile | None, attack: dict[str, Any]
) -> None:
    """Each spoke's title; on a chart of one row, its raw figure and score too."""
    for angle, axis in zip(_angles(len(axes)), axes, strict=True):
        lines = [axis.title]
        if single is not None:
            lines.append(axis.spoke_label(single, attack))
            score = single.scores.get(axis.name)
            if score is not None:
                clipped = " (clipped)" if single.clipped.get(axis.name) else ""
                lines.append(f"score {score:.2f}{clipped}")
        sine = math.sin(angle)
        align = "center" if abs(sine) < 0.3 else ("left" if sine > 0 else "right")
        vertical = (
            "bottom" if math.cos(angle) > 0.3 else ("top" if math.cos(angle) < -0.3 else "center")
        )
        ax.text(
            angle,
            1.13,
            "\n".join(lines),
            ha=align,
            va=vertical,
            fontsize=9.5,
            linespacing=1.25,
            fontweight="normal",
        )
        ax.texts[-1].set_clip_on(False)


def _footer(
    figure: Figure,
    axes: Sequence[Axis],
    scale: str,
    scales: dict[str, dict[str, Any]],
    *,
    banded: bool,
    single: bool,
    gapped: bool = False,
) -> None:
    bounds = [f"{a.title}: {scales[a.name]['description']}" for a in axes if a.name in scales]
    rule = " (ends: the paper's Table 4 rows ± half their spread)" if scale == "paper" else ""
    footer = [
        f"Scale: {scale}{rule}: centre = 0 (worst end), rim = 1 (best end).",
        "Higher is more trustworthy on every axis; ★ = past the scale's end, drawn at it."
        + (" Shaded band: the 95 % interval of each score." if banded else ""),
        *(
            ["Dashed spoke: no score there (not measured, or not measurable) — a gap, not a 0."]
            if gapped
            else []
        ),
        " · ".join(bounds[:3]),
        " · ".join(bounds[3:]),
    ]
    figure.text(
        0.5,
        0.02 if single else 0.07,
        "\n".join(footer),
        ha="center",
        va="bottom",
        fontsize=8,
        color="#333333",
        linespacing=1.35,
    )


def radar_figure(
    entries: Sequence[BackboneProfile],
    *,
    scale: str,
    scales: dict[str, dict[str, Any]],
    attack: dict[str, Any],
    title: str,
) -> Figure:
    """A radar chart of ``entries`` (one polygon each), a spoke per axis on ``scale``; spoke
    labels carry raw values when single."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    single = len(entries) == 1
    axes = scored_axes(scale)
    with matplotlib.rc_context(_RC):
        figure = Figure(figsize=(7.6, 7.6 if single else 8.2), dpi=150)
        ax = _polar_axes(figure, len(axes), single=single)
        banded = False
        gapped = _mark_gaps(ax, entries, axes)
        for index, entry in enumerate(entries):
            colour = _COLOURS[index % len(_COLOURS)]
            banded = _draw_entry(ax, entry, axes, colour, single=single) or banded
        _spoke_labels(ax, axes, entries[0] if single else None, attack)
        _set_title(figure, title, single=single)
        _footer(figure, axes, scale, scales, banded=banded, single=single, gapped=gapped)
        if not single:
            ax.legend(
                loc="upper center",
                bbox_to_anchor=(0.5, -0.13),
                ncol=min(3, len(entries)),
                fontsize=9,
                frameon=False,
            )
    return figure


def _band(
    entry: BackboneProfile, axes: Sequence[Axis]
) -> tuple[list[float | None], list[float | None]] | None:
    """Per axis, the scores of the interval's ends (the score itself where exact or unknown,
    None at a gap); None when no axis has an interval."""
    ends = [(entry.score_intervals or {}).get(a.name) for a in axes]
    if not any(ends):
        return None
    scores = [entry.scores.get(a.name) for a in axes]
    low = [e[0] if e else v for e, v in zip(ends, scores, strict=True)]
    high = [e[1] if e else v for e, v in zip(ends, scores, strict=True)]
    return low, high


def _set_title(figure: Figure, title: str, *, single: bool) -> None:
    # Calling suptitle again retitles the same text object, so a chart drawn once can be saved
    # under several titles and each copy equals a chart drawn afresh with that title.
    figure.suptitle(title, fontsize=13, fontweight="bold", y=0.99 if single else 0.92)


@dataclass(frozen=True)
class RadarChart:
    """One drawn chart: its file ``stem``, the ``title`` it is saved under, and the figure."""

    stem: str
    title: str
    figure: Figure
    single: bool  # one backbone (spokes carry raw values) rather than an overlay

    def titled(self, title: str | None = None) -> Figure:
        """The figure carrying ``title`` (default: the chart's own title) for the next save."""
        _set_title(self.figure, self.title if title is None else title, single=self.single)
        return self.figure


@dataclass(frozen=True)
class RadarCharts:
    """Every chart of one profile: one per backbone (in profile order), the overlay of all, and
    per base backbone with variants the overlay of the base and its variants (the paper's
    Fig. 4: frozen vs fine-tuned)."""

    backbones: list[RadarChart]
    overlay: RadarChart | None  # None when not drawn (no backbone, or not asked for)
    variants: list[RadarChart] = field(default_factory=list)


def variants_stem(base: str) -> str:
    """File stem of the overlay of a base backbone and its variants."""
    return chart_stem(base) + "_variants"


def draw_radar_charts(profile: Profile, *, overlay: bool = True) -> RadarCharts:
    """Draw each chart of ``profile`` once: ``radar_<backbone>`` per backbone, when ``overlay``
    and there is a backbone ``radar_overlay`` with all of them, and ``radar_<base>_variants``
    for each base backbone whose variants were profiled too."""
    common = {"scale": profile.scale, "scales": profile.scales, "attack": profile.attack}
    charts = []
    for entry in profile.backbones:
        title = f"Trust profile: {entry.name}"
        figure = radar_figure([entry], title=title, **common)
        charts.append(RadarChart(chart_stem(entry.name), title, figure, single=True))
    drawn = None
    if overlay and profile.backbones:
        several = len(profile.backbones) > 1
        title = (
            "Trust profiles compared" if several else f"Trust profile: {profile.backbones[0].name}"
        )
        figure = radar_figure(profile.backbones, title=title, **common)
        drawn = RadarChart(OVERLAY_STEM, title, figure, single=len(profile.backbones) == 1)
    variant_charts = []
    for entry in profile.backbones:
        variants = profile.variants_of(entry)
        if not variants:
            continue
        title = f"{entry.name}: frozen vs its variants"
        figure = radar_figure([entry, *variants], title=title, **common)
        variant_charts.append(RadarChart(variants_stem(entry.name), title, figure, single=False))
    return RadarCharts(backbones=charts, overlay=drawn, variants=variant_charts)


def save_figure(figure: Figure, stem: Path) -> dict[str, Path]:
    """``stem``.png (150 dpi) and ``stem``.svg, without timestamps so reruns give equal files."""
    import matplotlib

    paths = {"png": stem.with_suffix(".png"), "svg": stem.with_suffix(".svg")}
    with matplotlib.rc_context(_RC):
        options = {"facecolor": "white", "bbox_inches": "tight", "pad_inches": 0.3}
        figure.savefig(paths["png"], dpi=150, metadata={"Software": None}, **options)
        figure.savefig(paths["svg"], metadata={"Date": None}, **options)
    return paths


def figure_svg(figure: Figure) -> bytes:
    """The chart as SVG bytes (text kept as text, no timestamp), for embedding in a report."""
    import io

    import matplotlib

    buffer = io.BytesIO()
    with matplotlib.rc_context(_RC):
        figure.savefig(
            buffer,
            format="svg",
            metadata={"Date": None},
            facecolor="white",
            bbox_inches="tight",
            pad_inches=0.3,
        )
    return buffer.getvalue()


def write_radar_charts(
    profile: Profile, out: str | Path, *, charts: RadarCharts | None = None
) -> dict[str, Path]:
    """One chart per backbone plus ``radar_overlay`` and the variant overlays; returns
    ``{key: path}`` for every file (keys ``radar_<backbone>.png`` / ``.svg``, ``overlay_png`` /
    ``overlay_svg`` and ``radar_<base>_variants.png`` / ``.svg``).

    ``charts`` are the profile's charts when already drawn (:func:`draw_radar_charts`).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    charts = charts if charts is not None else draw_radar_charts(profile)
    files: dict[str, Path] = {}
    for chart in charts.backbones:
        for kind, path in save_figure(chart.titled(), out / chart.stem).items():
            files[f"{chart.stem}.{kind}"] = path
    if charts.overlay is not None:
        for kind, path in save_figure(charts.overlay.titled(), out / charts.overlay.stem).items():
            files[f"overlay_{kind}"] = path
    for chart in charts.variants:
        for kind, path in save_figure(chart.titled(), out / chart.stem).items():
            files[f"{chart.stem}.{kind}"] = path
    return files
