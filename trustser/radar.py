"""Radar charts of trust profiles (matplotlib; PNG for viewing, SVG for papers and the report).

One chart per backbone (each spoke labelled with its raw metric and score) and one overlay of all
backbones. Every chart states its scale: the centre is score 0 (worst end of the scale), the rim
score 1 (best end), and the footer lists each axis's worst → best bounds. Axes that were not
measured are drawn at 0 with a hollow marker and labelled "not measured".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustser.runs import safe_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from trustser.profile import BackboneProfile, Profile

__all__ = ["chart_stem", "figure_svg", "radar_figure", "save_figure", "write_radar_charts"]

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_RC = {"svg.hashsalt": "trustser", "svg.fonttype": "none", "font.size": 10}


def chart_stem(name: str) -> str:
    """File stem of a backbone's chart: ``radar_<safe name>``."""
    return "radar_" + safe_name(name.replace("paper: ", "paper-"))


def _angles(count: int) -> list[float]:
    # First spoke at the top, clockwise (matplotlib polar: theta offset π/2, direction −1).
    return [2 * math.pi * i / count for i in range(count)]


def radar_figure(
    entries: Sequence[BackboneProfile],
    *,
    scale: str,
    scales: dict[str, dict[str, Any]],
    attack: dict[str, Any],
    title: str,
) -> Figure:
    """A radar chart of ``entries`` (one polygon each); spoke labels carry raw values when single."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from trustser.profile import AXES, AXIS_TITLES, raw_label

    single = len(entries) == 1
    with matplotlib.rc_context(_RC):
        figure = Figure(figsize=(7.6, 7.6 if single else 8.2), dpi=150)
        bottom = 0.22 if single else 0.27
        ax = figure.add_axes(
            (0.22, bottom, 0.56, 0.56 * 7.6 / figure.get_figheight()), projection="polar"
        )
        ax.set_theta_offset(math.pi / 2)
        ax.set_theta_direction(-1)
        angles = _angles(len(AXES))
        ax.set_xticks(angles)
        ax.set_xticklabels([])
        ax.set_ylim(0, 1)
        ax.set_yticks([0.25, 0.5, 0.75, 1.0])
        ax.set_yticklabels(["0.25", "0.5", "0.75", "1"], fontsize=7, color="#666666")
        ax.set_rlabel_position(180 / len(AXES))
        ax.grid(color="#cccccc", linewidth=0.6)
        ax.spines["polar"].set_color("#999999")

        for index, entry in enumerate(entries):
            colour = _COLOURS[index % len(_COLOURS)]
            values = [entry.scores.get(a) for a in AXES]
            drawn = [0.0 if v is None else v for v in values]
            style = "--" if entry.reference else "-"
            closed_a, closed_v = [*angles, angles[0]], [*drawn, drawn[0]]
            ax.plot(closed_a, closed_v, style, color=colour, linewidth=1.8, label=entry.name)
            ax.fill(closed_a, closed_v, color=colour, alpha=0.12 if not single else 0.2)
            for angle, value in zip(angles, values, strict=True):
                hollow = value is None
                ax.plot(
                    [angle],
                    [0.0 if hollow else value],
                    "o",
                    color=colour,
                    markersize=5,
                    markerfacecolor="white" if hollow else colour,
                )

        for angle, axis in zip(angles, AXES, strict=True):
            lines = [AXIS_TITLES[axis]]
            if single:
                entry = entries[0]
                lines.append(raw_label(axis, entry, attack))
                score = entry.scores.get(axis)
                if score is not None:
                    clipped = " (clipped)" if entry.clipped.get(axis) else ""
                    lines.append(f"score {score:.2f}{clipped}")
            sine = math.sin(angle)
            align = "center" if abs(sine) < 0.3 else ("left" if sine > 0 else "right")
            vertical = (
                "bottom"
                if math.cos(angle) > 0.3
                else ("top" if math.cos(angle) < -0.3 else "center")
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

        figure.suptitle(title, fontsize=13, fontweight="bold", y=0.99 if single else 0.92)
        bounds = [f"{AXIS_TITLES[a]}: {scales[a]['description']}" for a in AXES if a in scales]
        footer = [
            f"Scale: {scale} — centre = 0 (worst end), rim = 1 (best end); "
            "higher is more trustworthy on every axis.",
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
        if not single:
            ax.legend(
                loc="upper center",
                bbox_to_anchor=(0.5, -0.13),
                ncol=min(3, len(entries)),
                fontsize=9,
                frameon=False,
            )
    return figure


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


def write_radar_charts(profile: Profile, out: str | Path) -> dict[str, Path]:
    """One chart per backbone plus ``radar_overlay``; returns ``{key: path}`` for every file
    (keys ``radar_<backbone>.png`` / ``.svg`` and ``overlay_png`` / ``overlay_svg``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    common = {"scale": profile.scale, "scales": profile.scales, "attack": profile.attack}
    for entry in profile.backbones:
        stem = chart_stem(entry.name)
        figure = radar_figure([entry], title=f"Trust profile: {entry.name}", **common)
        for kind, path in save_figure(figure, out / stem).items():
            files[f"{stem}.{kind}"] = path
    if profile.backbones:
        figure = radar_figure(profile.backbones, title="Trust profiles compared", **common)
        for kind, path in save_figure(figure, out / "radar_overlay").items():
            files[f"overlay_{kind}"] = path
    return files
