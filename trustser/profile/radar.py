"""Radar charts of trust profiles (matplotlib; PNG for viewing, SVG for papers and the report).

One chart per backbone (each spoke labelled with its raw metric and score) and one overlay of all
backbones; a chart of one backbone is titled with its name. A spoke per axis on the profile's
scale (:func:`trustser.profile.axes.scored_axes`), labelled by the axis's record. Every chart
states its scale: the centre is score 0 (worst end of the scale), the rim score 1 (best end), and
the footer lists each axis's worst → best bounds. A value past an end is drawn at that end with a star and labelled
"clipped". Axes that were not measured are drawn at 0 with a hollow marker and labelled
"not measured".

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
    "chart_stem",
    "draw_radar_charts",
    "figure_svg",
    "radar_figure",
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


def _draw_entry(
    ax: Any, entry: BackboneProfile, axes: Sequence[Axis], colour: str, *, single: bool
) -> bool:
    """One polygon with its markers (hollow: not measured; star: clipped) and its interval
    band; whether it has a band."""
    angles = _angles(len(axes))
    values = [entry.scores.get(a.name) for a in axes]
    drawn = [0.0 if v is None else v for v in values]
    style = "--" if entry.reference else "-"
    closed_a, closed_v = [*angles, angles[0]], [*drawn, drawn[0]]
    label = entry.name
    if entry.is_variant:
        label += f" ({entry.variant_description})"
    ax.plot(closed_a, closed_v, style, color=colour, linewidth=1.8, label=label)
    ax.fill(closed_a, closed_v, color=colour, alpha=0.12 if not single else 0.2)
    band = _band(entry, axes, drawn)
    if band is not None:  # the scores of each axis's 95 % interval ends
        low, high = band
        ax.fill_between(
            closed_a,
            [*low, low[0]],
            [*high, high[0]],
            color=colour,
            alpha=0.25,
            linewidth=0,
            hatch="////" if not single else None,
        )
    for angle, axis, value in zip(angles, axes, values, strict=True):
        hollow = value is None
        clipped = bool(entry.clipped.get(axis.name)) and not hollow
        ax.plot(
            [angle],
            [0.0 if hollow else value],
            "*" if clipped else "o",  # a star: the value lies past the scale's end
            color=colour,
            markersize=11 if clipped else 5,
            markerfacecolor="white" if hollow else colour,
            clip_on=False,
        )
    return band is not None


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
) -> None:
    bounds = [f"{a.title}: {scales[a.name]['description']}" for a in axes if a.name in scales]
    rule = " (ends: the paper's Table 4 rows ± half their spread)" if scale == "paper" else ""
    footer = [
        f"Scale: {scale}{rule}: centre = 0 (worst end), rim = 1 (best end).",
        "Higher is more trustworthy on every axis; ★ = past the scale's end, drawn at it."
        + (" Shaded band: the 95 % interval of each score." if banded else ""),
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
        for index, entry in enumerate(entries):
            colour = _COLOURS[index % len(_COLOURS)]
            banded = _draw_entry(ax, entry, axes, colour, single=single) or banded
        _spoke_labels(ax, axes, entries[0] if single else None, attack)
        _set_title(figure, title, single=single)
        _footer(figure, axes, scale, scales, banded=banded, single=single)
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
    entry: BackboneProfile, axes: Sequence[Axis], drawn: Sequence[float]
) -> tuple[list[float], list[float]] | None:
    """Per axis, the scores of the interval's ends (the score itself where exact or unknown);
    None when no axis has an interval."""
    ends = [(entry.score_intervals or {}).get(a.name) for a in axes]
    if not any(ends):
        return None
    low = [e[0] if e else v for e, v in zip(ends, drawn, strict=True)]
    high = [e[1] if e else v for e, v in zip(ends, drawn, strict=True)]
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
