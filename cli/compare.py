"""Top-level `trustser compare A B`: paired differences of two models, axis by axis."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from trustser.cli._common import (
    OUT,
    PRIVACY_SCORE,
    RUNS,
    STORE,
    PrivacyScoreOption,
    console,
    user_errors,
    workspace,
)
from trustser.cli._tables import print_table
from trustser.formatting import MISSING
from trustser.metrics.bootstrap import DEFAULT_REPLICATES
from trustser.profile import ModelComparison, run_compare
from trustser.profile.axes import compared
from trustser.profile.cells import NOT_MEASURABLE
from trustser.profile.intervals import resampled_text
from trustser.profile.tables import comparison_verdict, interval_text
from trustser.runs import write_json

app = typer.Typer()


def _render(result: ModelComparison) -> None:
    design = result.bootstrap or {}
    table = Table(
        title=f"A = {escape(result.a.name)}  vs  B = {escape(result.b.name)}",
        caption=f"paired speaker bootstrap: {design.get('replicates')} replicates resampling "
        f"{escape(resampled_text(design))}; A − B in points (GMAC for sustainability)",
    )
    table.add_column("axis", no_wrap=True)
    table.add_column("A", justify="right")
    table.add_column("B", justify="right")
    table.add_column("A − B [95 %], p: verdict")
    measures = {m.key: m for m in compared()}  # each axis, and the figures beside it
    for comparison in result.comparisons:
        measure = measures[comparison.metric]
        table.add_row(
            measure.title,
            *(
                escape(
                    interval_text(
                        row,
                        measure.key,
                        value,
                        as_percent=measure.percent,
                        missing=NOT_MEASURABLE if measure.key in row.not_measurable else MISSING,
                    )
                )
                for row, value in ((result.a, comparison.a), (result.b, comparison.b))
            ),
            escape(comparison_verdict(comparison.to_dict())),
        )
    print_table(table, keys=1, console=console)


@app.command(
    "compare",
    help="Compare two backbones or variants on the same test clips: per axis the paired "
    "difference, its interval and p-value, 'A better', 'B better' or 'no significant difference'.",
)
def compare(
    a: Annotated[str, typer.Argument(help="Model A: a backbone or variant (<backbone>@top1).")],
    b: Annotated[str, typer.Argument(help="Model B.")],
    runs: Annotated[
        Path | None,
        typer.Option(*RUNS, help="Results directory.", show_default="runs, or trustser.toml's"),
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option(*STORE, help="Embedding store (only named in the missing-axis commands)."),
    ] = None,
    attack: Annotated[
        str, typer.Option("--attack", help="Attack behind the safety axis: fgsm, pgd or noise.")
    ] = "fgsm",
    snr: Annotated[float, typer.Option("--snr", help="SNR (dB) of the safety-axis attack.")] = 45.0,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", min=1, help="Paired speaker-bootstrap replicates.")
    ] = DEFAULT_REPLICATES,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap draws.")] = 0,
    out: Annotated[
        Path | None, typer.Option(*OUT, help="Also write the comparison as JSON to this file.")
    ] = None,
    privacy_score: PrivacyScoreOption = PRIVACY_SCORE,
) -> None:
    ws = workspace()
    with user_errors():
        result = run_compare(
            a,
            b,
            ws.resolve("runs", runs),
            store=str(store) if store else None,
            attack=(attack, snr),
            bootstrap=bootstrap,
            seed=seed,
            options={"privacy_score": privacy_score},
        )
    _render(result)
    if out is not None:
        write_json(out, result.to_dict())
        console.print(f"wrote {out}")
