"""DET curves of the speaker-verification attackers (matplotlib; PNG and SVG, as the radar charts).

A detection error trade-off plot draws, for every threshold, the miss rate against the
false-acceptance rate on normal-deviate (probit) axes, where the curves of Gaussian scores are
straight lines; the dotted diagonal is where the two rates are equal, so a curve crosses it at
its EER. One curve per attacker over every trial of ``trials.csv`` (the sets' trials together),
its EER as ``metrics.json`` reports it (the mean over sets) in the legend; the caption says that
a curve joining sets scored on different scales may cross the diagonal elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustser.formatting import percent
from trustser.metrics.verification import DetCurve, det_curve
from trustser.profile.radar import _COLOURS, _RC, save_figure
from trustser.runs import read_json
from trustser.verification.scores import read_trial_scores

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DET_STEM", "DET_TICKS", "det_figure", "write_det_chart"]

DET_STEM = "det"
# Percent ticks of both axes; the plot spans 0.1 % to 99.9 % (±3.09 normal deviates).
DET_TICKS = (0.1, 1, 2, 5, 10, 20, 40, 60, 80, 95, 99, 99.9)


def det_figure(
    curves: Mapping[str, DetCurve],
    *,
    title: str,
    eers: Mapping[str, float | None] | None = None,
    caption: str | None = None,
) -> Figure:
    """A DET plot of ``curves`` (``{label: curve}``), each label followed by its EER if given."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from scipy.stats import norm

    ticks = [t / 100 for t in DET_TICKS]
    positions = norm.ppf(ticks)
    labels = [f"{t:g}" for t in DET_TICKS]
    with matplotlib.rc_context(_RC):
        figure = Figure(figsize=(6.4, 6.8), dpi=150)
        ax = figure.add_axes((0.14, 0.2, 0.78, 0.68))
        limit = (positions[0], positions[-1])
        ax.plot(limit, limit, ":", color="#999999", linewidth=1.0, label="P_fa = P_miss")
        for index, (label, curve) in enumerate(curves.items()):
            x, y = curve.probit()
            eer = (eers or {}).get(label)
            text = label if eer is None else f"{label} (EER {percent(eer, unit=True)})"
            ax.plot(x, y, "-", color=_COLOURS[index % len(_COLOURS)], linewidth=1.8, label=text)
        ax.set_xlim(*limit)
        ax.set_ylim(*limit)
        ax.set_xticks(positions, labels)
        ax.set_yticks(positions, labels)
        ax.set_xlabel("false-acceptance rate P_fa (%)")
        ax.set_ylabel("miss rate P_miss (%)")
        ax.grid(color="#dddddd", linewidth=0.6)
        ax.set_aspect("equal")
        ax.legend(loc="upper right", fontsize=9, frameon=False)
        figure.suptitle(title, fontsize=12, fontweight="bold", y=0.97)
        if caption:
            figure.text(0.5, 0.02, caption, ha="center", va="bottom", fontsize=8, color="#333333")
    return figure


def write_det_chart(directory: str | Path, *, title: str | None = None) -> dict[str, Path]:
    """``det.png`` and ``det.svg`` beside a verification run's ``trials.csv`` and
    ``metrics.json`` (one curve per attacker); returns ``{"png": path, "svg": path}``."""
    directory = Path(directory)
    table = read_trial_scores(directory / "trials.csv")
    metrics: dict[str, Any] = {}
    if (directory / "metrics.json").is_file():
        metrics = read_json(directory / "metrics.json")
    curves = {a: det_curve(s, table.trials.target) for a, s in table.scores.items()}
    eers = {a: metrics.get(f"{a}_eer") for a in table.scores}
    design = metrics.get("design", {})
    sets = len(set(table.sets.tolist()))
    caption = (
        f"{len(table)} trials of {sets} set(s)"
        + (" (pooled across folds)" if design.get("pooled_across_folds") else "")
        + (f"; emotion: {design['emotion']}" if design.get("emotion") else "")
    )
    if sets > 1:
        caption += (
            ".\nLegend: EER as reported (per set, then the mean over sets). Each curve joins "
            "every set's trials,\nscored by attackers of different scales, so it may cross the "
            "diagonal elsewhere."
        )
    name = title or f"Speaker verification: {metrics.get('backbone', directory.parent.name)}"
    figure = det_figure(curves, title=name, eers=eers, caption=caption)
    return save_figure(figure, directory / DET_STEM)
