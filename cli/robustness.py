"""`trustser robustness`: every head and variant on corrupted test clips, from the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from trustser.cli._common import BACKBONE, RUNS, StoreOption, console, err_console, user_errors
from trustser.cli._common import workspace as load_workspace
from trustser.cli._progress import PhaseBar
from trustser.cli._tables import print_table
from trustser.formatting import percent
from trustser.metrics.bootstrap import DEFAULT_REPLICATES
from trustser.robustness import ModelResult, RobustnessRun, run_robustness

__all__ = ["app"]

app = typer.Typer()


def _names(values: list[str] | None) -> list[str] | None:
    """``--corruption a --corruption b,c`` → ``[a, b, c]`` (None when not given)."""
    if not values:
        return None
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def _with_interval(block: dict[str, Any], key: str) -> str:
    """``87.5 [80.1, 93.0]``: a figure (percent) and its interval, or the figure alone."""
    value = block.get(key)
    found = (block.get("intervals") or {}).get(key) or {}
    low, high = found.get("low"), found.get("high")
    if value is None or low is None or high is None or low == high == value:
        return percent(value)
    return f"{percent(value)} [{percent(low)}, {percent(high)}]"


def _points(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.1f}"


def _gender(block: dict[str, Any], gender: str) -> str:
    return percent(((block.get("per_gender") or {}).get(gender) or {}).get("unchanged"))


def _render_model(result: ModelResult) -> None:
    summary = result.summary
    inference = summary["inference"]
    how = "from the cache" if inference["reason"] is None else "end to end"
    table = Table(
        title=f"{result.model}: robustness ({how})",
        caption="unchanged: share of clips whose prediction is unchanged, with its 95 % "
        "speaker-bootstrap interval; ΔUAR: corrupted − clean UAR in points; F / M: unchanged "
        f"per gender. Clean UAR {percent(summary['clean']['uar'], unit=True)}.",
    )
    for column, justify in (
        ("case", "left"),
        ("UAR %", "right"),
        ("ΔUAR", "right"),
        ("unchanged %", "right"),
        ("F %", "right"),
        ("M %", "right"),
    ):
        table.add_column(column, justify=justify, no_wrap=True)
    for case in summary["cases"]:
        drop = case.get("uar_drop")
        table.add_row(
            case["name"],
            percent(case.get("uar")),
            _points(None if drop is None else -drop),
            _with_interval(case, "unchanged"),
            _gender(case, "female"),
            _gender(case, "male"),
        )
    mean = summary["suite_mean"]
    drop = mean.get("uar_drop")
    table.add_section()
    table.add_row(
        "suite mean",
        percent(mean.get("uar")),
        _points(None if drop is None else -drop),
        _with_interval(mean, "unchanged"),
        _gender(mean, "female"),
        _gender(mean, "male"),
    )
    print_table(table, console=console)
    if inference["reason"] is not None:
        console.print(f"ran end to end: {inference['reason']}.", soft_wrap=True)
    console.print(f"wrote {result.directory}", soft_wrap=True)


def _render(run: RobustnessRun) -> None:
    extraction = run.extraction
    if extraction.clips_written:
        console.print(
            f"{run.backbone}: {extraction.clips_written} corrupted copies extracted in "
            f"{extraction.wall_seconds:.0f} s ({extraction.done} in the store).",
            soft_wrap=True,
        )
    else:
        console.print(
            f"{run.backbone}: all {extraction.done} corrupted copies were in the store already.",
            soft_wrap=True,
        )
    for result in run.models:
        _render_model(result)
    for note in run.notes:
        err_console.print(f"[yellow]note:[/yellow] {note}")


@app.command(
    "robustness",
    help="Corrupt the test clips (noise, babble, reverberation, telephone line, codecs, gain, "
    "spectral tilt), extract the frozen backbone once over the copies into the store, and "
    "evaluate every emotion head and variant from the cache: UAR, its drop and the share of "
    "unchanged predictions, per case and gender (docs/robustness.md).",
)
def robustness(
    store: StoreOption = None,
    backbone: Annotated[
        list[str] | None,
        typer.Option(
            *BACKBONE,
            help="Backbone group, repeatable (default: every one with emotion heads under "
            "--runs); each with its variants, or a variant name alone.",
        ),
    ] = None,
    runs: Annotated[
        Path | None,
        typer.Option(
            *RUNS,
            help="Results directory with the emotion heads; robustness/ is written per model.",
            show_default="runs, or trustser.toml's",
        ),
    ] = None,
    corruption: Annotated[
        list[str] | None,
        typer.Option(
            "--corruption",
            help="Corruption(s) of the suite, repeatable or comma-separated (default: all 11; "
            "`white_noise`, `babble`, `reverb`, `telephone`, `mp3`, ...).",
        ),
    ] = None,
    severity: Annotated[
        list[int] | None,
        typer.Option("--severity", help="Severity level(s) 1-3, repeatable (default: all)."),
    ] = None,
    folds: Annotated[
        str | None,
        typer.Option(
            "--folds",
            help="Folds by name or 1-based index, comma-separated (default: every fold with "
            "an emotion head).",
        ),
    ] = None,
    variants: Annotated[
        bool,
        typer.Option("--variants/--no-variants", help="Also evaluate the backbones' variants."),
    ] = True,
    seed: Annotated[
        int, typer.Option("--seed", help="Suite seed (noise, rooms, babble) and bootstrap seed.")
    ] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, or cuda.")] = "auto",
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Clips per batch (cached features or waveforms).")
    ] = 16,
    bootstrap: Annotated[
        int,
        typer.Option("--bootstrap", help="Speaker-bootstrap replicates (0: no intervals)."),
    ] = DEFAULT_REPLICATES,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show progress bars.")
    ] = True,
) -> None:
    ws = load_workspace()
    store_path, runs_path = ws.resolve("store", store), ws.resolve("runs", runs)
    with user_errors(), PhaseBar(progress, console=err_console) as bar:
        results = run_robustness(
            store_path,
            runs=runs_path,
            backbones=backbone,
            corruptions=_names(corruption),
            severities=severity or None,
            folds=folds,
            variants=variants,
            seed=seed,
            device=device,
            batch_size=batch_size,
            replicates=bootstrap,
            progress=bar,
        )
    for run in results:
        _render(run)
