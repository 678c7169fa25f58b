"""``trustser profile`` end to end: collect and score, then write every output to one directory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from trustser.metrics.bootstrap import DEFAULT_REPLICATES
from trustser.profile.collect import collect_profile
from trustser.profile.intervals import DEFAULT_SEED
from trustser.profile.model import DEFAULT_ATTACK, Profile
from trustser.profile.radar import draw_radar_charts, write_radar_charts
from trustser.profile.report import write_report
from trustser.profile.tables import profile_to_csv, profile_to_markdown
from trustser.runs import DEFAULT_RUNS, write_json

__all__ = ["run_profile", "write_profile"]


def write_profile(
    profile: Profile,
    out: str | Path,
    *,
    charts: bool = True,
    report: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Write profile.json, profile.csv, profile.md, radar charts (PNG + SVG) and report.html.

    The radar charts are drawn once and serve both the image files and the report.
    """
    say = progress or (lambda _message: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {"json": write_json(out / "profile.json", profile.to_dict())}
    files["csv"] = out / "profile.csv"
    files["csv"].write_text(profile_to_csv(profile), encoding="utf-8")
    files["markdown"] = out / "profile.md"
    files["markdown"].write_text(profile_to_markdown(profile), encoding="utf-8")
    drawn = None
    if charts:
        say("drawing radar charts")
        drawn = draw_radar_charts(profile)
        files.update(write_radar_charts(profile, out, charts=drawn))
    if report:
        say("writing report.html")
        files["report"] = write_report(profile, out / "report.html", charts=drawn)
    return files


def run_profile(
    runs: str | Path = DEFAULT_RUNS,
    out: str | Path = "report",
    *,
    store: str | None = None,
    backbones: Sequence[str] | None = None,
    scale: str = "paper",
    attack: tuple[str, float] = DEFAULT_ATTACK,
    paper: Sequence[str] | None = None,
    charts: bool = True,
    progress: Callable[[str], None] | None = None,
    bootstrap: int = DEFAULT_REPLICATES,
    seed: int = DEFAULT_SEED,
) -> tuple[Profile, dict[str, Path]]:
    """``trustser profile``: collect, score (with ``bootstrap`` speaker-level replicates for
    the intervals, 0 = none) and write everything to ``out``."""
    if bootstrap:
        (progress or (lambda _m: None))(f"bootstrapping {bootstrap} replicates over test speakers")
    profile = collect_profile(
        runs,
        store=store,
        backbones=backbones,
        scale=scale,
        attack=attack,
        paper=paper,
        bootstrap=bootstrap,
        seed=seed,
    )
    return profile, write_profile(profile, out, charts=charts, progress=progress)
