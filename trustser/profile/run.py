"""``trustser profile`` end to end: collect and score, then write every output to one directory."""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustser.metrics.bootstrap import DEFAULT_REPLICATES, Comparison
from trustser.profile.collect import (
    collect_profile,
)
from trustser.profile.intervals import DEFAULT_SEED, compare_rows
from trustser.profile.model import DEFAULT_ATTACK, BackboneProfile, Profile, ProfileError
from trustser.profile.radar import draw_radar_charts, write_radar_charts
from trustser.profile.report import write_report
from trustser.profile.tables import profile_to_csv, profile_to_markdown
from trustser.runs import DEFAULT_RUNS, write_json

__all__ = ["ModelComparison", "run_compare", "run_profile", "write_profile"]


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
    runs: str | Path | Sequence[str | Path] = DEFAULT_RUNS,
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
    options: Mapping[str, str] | None = None,
) -> tuple[Profile, dict[str, Path]]:
    """``trustser profile``: collect, score (with ``bootstrap`` speaker-level replicates for
    the intervals, 0 = none) and write everything to ``out``; ``options`` are the axes'
    (``{"privacy_score": "strongest"}``).

    Several ``runs`` directories, or one holding corpus directories (a multi-corpus
    ``trustser run`` output), give a profile across corpora (:func:`~trustser.profile.collect.collect_profile`)."""
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
        options=options,
    )
    return profile, write_profile(profile, out, charts=charts, progress=progress)


@dataclass
class ModelComparison:
    """``trustser compare A B``: both rows (with their intervals) and the paired differences."""

    a: BackboneProfile
    b: BackboneProfile
    comparisons: list[Comparison]
    bootstrap: dict[str, Any] | None
    num_clips: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "trustser-comparison",
            "a": self.a.name,
            "b": self.b.name,
            "bootstrap": self.bootstrap,
            "num_test_clips": self.num_clips,
            "axes": {c.metric: c.to_dict() for c in self.comparisons},
            "intervals": {"a": self.a.intervals, "b": self.b.intervals},
        }


def _test_clips(runs: Path, entry: BackboneProfile) -> set[tuple[str, str]] | None:
    path = runs / (entry.directory or "") / "emotion" / "predictions.csv"
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as handle:
        return {(row["id"], row["fold"]) for row in csv.DictReader(handle)}


def run_compare(
    a: str,
    b: str,
    runs: str | Path = DEFAULT_RUNS,
    *,
    store: str | None = None,
    attack: tuple[str, float] = DEFAULT_ATTACK,
    bootstrap: int = DEFAULT_REPLICATES,
    seed: int = DEFAULT_SEED,
    options: Mapping[str, str] | None = None,
) -> ModelComparison:
    """Compare backbones or variants ``a`` and ``b`` axis by axis on the same test clips: the
    paired difference ``A − B``, its bootstrap interval, p-value and verdict.

    Refuses two models whose emotion test clips differ (the comparison would not be paired)."""
    if a == b:
        raise ProfileError(f"compare needs two different models, got {a!r} twice.")
    if bootstrap < 1:
        raise ProfileError("compare needs bootstrap replicates (--bootstrap 1 or more).")
    profile = collect_profile(
        runs,
        store=store,
        backbones=[a, b],
        # compare reads raw figures, not scores: a scale every axis option is allowed on
        scale="relative" if options else "paper",
        attack=attack,
        bootstrap=bootstrap,
        seed=seed,
        options=options,
    )
    if len(profile.backbones) != 2:
        raise ProfileError(f"{a!r} and {b!r} name the same results directory under {str(runs)!r}.")
    first, second = profile.backbones
    clips = [_test_clips(Path(runs), entry) for entry in (first, second)]
    if clips[0] is not None and clips[1] is not None and clips[0] != clips[1]:
        raise ProfileError(
            f"{first.name!r} and {second.name!r} were tested on different clips "
            f"({len(clips[0])} and {len(clips[1])} rows of emotion/predictions.csv, "
            f"{len(clips[0] & clips[1])} shared); a paired comparison needs the same test set "
            "(the same manifest and folds)."
        )
    return ModelComparison(
        a=first,
        b=second,
        comparisons=compare_rows(first, second),
        bootstrap=profile.bootstrap,
        num_clips=len(clips[0] or ()),
    )
