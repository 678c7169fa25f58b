"""`trustser store verify|info|skipped`: inspect and check embedding stores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from trustser.cli._common import BACKBONE, MANIFEST, console, user_errors, workspace

__all__ = ["app"]

app = typer.Typer(help="Inspect and verify embedding stores.", no_args_is_help=True)

StoreArg = Annotated[
    Path | None,
    typer.Argument(
        help="Embedding store directory.", show_default="cache.zarr, or trustser.toml's"
    ),
]
BackboneOpt = Annotated[
    list[str] | None,
    typer.Option(
        *BACKBONE,
        help="Group(s) to look at (repeatable); default: all.",
        show_default=False,
    ),
]
SHOWN = 10


@app.command("verify")
def verify(
    store: StoreArg = None,
    backbone: BackboneOpt = None,
    manifest: Annotated[
        Path | None,
        typer.Option(
            *MANIFEST,
            exists=True,
            dir_okay=False,
            help="Also report this manifest's clips that were never extracted.",
        ),
    ] = None,
    deep: Annotated[
        bool, typer.Option("--deep", help="Read every finished unit back and check its data.")
    ] = False,
) -> None:
    """Check that every planned clip is present; exit 0 when complete, 1 when clips are missing."""
    store = workspace().resolve("store", store)
    from trustser.store.verify import verify_store

    with user_errors():
        report = verify_store(store, backbones=backbone, manifest=manifest, deep=deep)
    table = Table(title=f"store {store}")
    for column in ("group", "planned", "done", "skipped", "missing", "not extracted", "status"):
        table.add_column(column, justify="left" if column in ("group", "status") else "right")
    for g in report.groups:
        status = f"[green]{g.status}" if g.complete else f"[red]{g.status}"
        table.add_row(
            g.name,
            str(g.planned),
            str(g.done),
            str(len(g.skipped)),
            str(len(g.missing)),
            str(len(g.not_extracted)),
            status,
        )
    console.print(table)
    for g in report.groups:
        for label, rows in (
            ("problems", g.problems),
            ("unfinished units", g.missing_units),
            ("missing clips", g.missing),
            ("never extracted", g.not_extracted),
        ):
            if rows:
                console.print(f"[bold]{g.name}[/] {label} ({len(rows)}):")
                for row in rows[:SHOWN]:
                    console.print(f"  - {row}", markup=False, highlight=False)
                if len(rows) > SHOWN:
                    console.print(f"  ... and {len(rows) - SHOWN} more")
        if g.deep_checked:
            console.print(f"{g.name}: read back and checked {g.deep_checked} clips.")
    if not report.complete:
        console.print("Rerun the same `trustser extract` command(s) to finish the missing units.")
    raise typer.Exit(report.exit_code)


@app.command("info")
def info(
    store: StoreArg = None,
    backbone: BackboneOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Groups in the store: clips, audio, size, configuration (with --backbone: full provenance)."""
    store = workspace().resolve("store", store)
    from trustser.store.info import store_info

    with user_errors():
        groups = store_info(store, backbones=backbone)
    if as_json:
        payload = [
            {"summary": g.summary, "provenance": g.provenance, "skipped": g.skipped} for g in groups
        ]
        console.print_json(json.dumps(payload, default=str))
        return
    table = Table(title=f"store {store}")
    for column in (
        "group",
        "L×D",
        "dtype",
        "codec",
        "done",
        "skipped",
        "pending",
        "audio h",
        "disk GB",
        "corpora",
    ):
        table.add_column(
            column, justify="left" if column in ("group", "dtype", "codec", "corpora") else "right"
        )
    for g in groups:
        s = g.summary
        table.add_row(
            s["name"],
            f"{s['num_layers']}×{s['dim']}",
            s["dtype"],
            s["codec"],
            str(s["clips_done"]),
            str(s["clips_skipped"]),
            str(s["clips_pending"]),
            f"{s['audio_seconds'] / 3600:.2f}",
            f"{s['disk_bytes'] / 1e9:.3f}",
            ", ".join(s["corpora"]),
        )
    console.print(table)
    if backbone:
        for g in groups:
            detail = Table(title=f"{g.summary['name']} provenance", show_header=False)
            detail.add_column("key")
            detail.add_column("value")
            for key, value in sorted(g.provenance.items()):
                detail.add_row(
                    key, json.dumps(value, default=str) if isinstance(value, dict) else str(value)
                )
            console.print(detail)


@app.command("skipped")
def skipped(store: StoreArg = None, backbone: BackboneOpt = None) -> None:
    """List the clips extraction skipped, with the reason for each."""
    store = workspace().resolve("store", store)
    from trustser.store.info import store_info

    with user_errors():
        groups = store_info(store, backbones=backbone)
    total = 0
    for g in groups:
        if not g.skipped:
            continue
        table = Table(title=f"{g.summary['name']}: {len(g.skipped)} skipped clip(s)")
        table.add_column("id")
        table.add_column("reason", overflow="fold")
        for utt_id, reason in sorted(g.skipped.items()):
            table.add_row(utt_id, reason)
        console.print(table)
        total += len(g.skipped)
    if not total:
        console.print("No clip was skipped.")
