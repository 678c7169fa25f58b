"""`trustser privacy verify`: speaker verification on unseen speakers, from the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from trustser.cli._common import (
    BACKBONE,
    MANIFEST,
    RUNS,
    StoreOption,
    console,
    user_errors,
    workspace,
)
from trustser.cli._progress import CountBar
from trustser.cli._tables import print_table
from trustser.metrics.bootstrap import DEFAULT_REPLICATES
from trustser.profile.det import write_det_chart
from trustser.variants import verify_model
from trustser.verification.run import VerificationResult
from trustser.verification.table import summary_table
from trustser.verification.trials import DEFAULT_MAX_NONTARGETS
from trustser.workspace import stage_backbones

__all__ = ["app"]

app = typer.Typer(
    help="Privacy attacks on the cache: speaker verification on unseen speakers.",
    no_args_is_help=True,
)


@app.command("verify")
def verify(
    store: StoreOption = None,
    backbone: Annotated[
        list[str] | None,
        typer.Option(
            *BACKBONE,
            help="Store group(s) or variant(s) (<backbone>@privacy-l0.3, @top1) to attack, "
            "repeatable (default: every group).",
        ),
    ] = None,
    runs: Annotated[
        Path | None,
        typer.Option(
            *RUNS,
            help="Results root: DIR/<backbone>/verification/.",
            show_default="runs, or trustser.toml's",
        ),
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(
            *MANIFEST,
            help="Manifest giving speakers, genders and folds (default: the store group's own).",
            dir_okay=False,
        ),
    ] = None,
    emotion: Annotated[
        str | None,
        typer.Option(
            "--emotion",
            help="Only trials between clips of this emotion label (e.g. neutral); results go "
            "to verification/<emotion>/.",
        ),
    ] = None,
    max_nontargets: Annotated[
        int,
        typer.Option(
            "--max-nontargets", min=1, help="Non-target trials per gender and trial set, at most."
        ),
    ] = DEFAULT_MAX_NONTARGETS,
    bootstrap: Annotated[
        int,
        typer.Option("--bootstrap", min=1, help="Speaker-bootstrap replicates of the intervals."),
    ] = DEFAULT_REPLICATES,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the non-target sample and the bootstrap.")
    ] = 0,
    plot: Annotated[
        bool, typer.Option("--plot/--no-plot", help="Draw det.png / det.svg beside the results.")
    ] = True,
) -> None:
    """EER and minDCF of two attackers linking clips of speakers they never saw.

    The ignorant attacker compares raw time-means by cosine; the informed one first learns a
    within-speaker whitening from the training speakers. Each picks its layer on dev speakers.
    A variant is attacked on what its deployed model exposes, by attackers trained afresh on
    it. Figures per gender with 95 % speaker-bootstrap intervals (docs/verification.md).
    """
    ws = workspace()
    store, runs = ws.resolve("store", store), ws.resolve("runs", runs)
    with user_errors():
        names = stage_backbones(store, backbone)
    for name in names:
        with user_errors(), CountBar(f"verification · {name}", "attacker runs") as bar:
            result = verify_model(
                store,
                name,
                runs=runs,
                manifest=manifest,
                emotion=emotion,
                seed=seed,
                max_nontargets=max_nontargets,
                replicates=bootstrap,
                progress=bar,
            )
        _render(result)
        if plot:
            with user_errors():
                write_det_chart(result.directory)
        console.print(f"wrote {result.directory} ({result.seconds:.1f} s)")


def _render(result: VerificationResult) -> None:
    summary = summary_table(result.metrics, where=str(result.metrics_path))
    table = Table(title=escape(summary.title), caption=escape(summary.caption))
    for column in summary.header:
        table.add_column(column, justify="left" if column in ("attacker", "trials") else "right")
        table.columns[-1].no_wrap = True
    for rows in summary.groups.values():
        for index, row in enumerate(rows):
            table.add_row(*row, end_section=index == len(rows) - 1)
    print_table(table, console=console)
    for name, layers in summary.layers.items():
        console.print(f"{name}: layer chosen on dev {layers}")
    if summary.pooled_reason:
        console.print(f"trials pooled across folds: {escape(summary.pooled_reason)}", style="dim")
