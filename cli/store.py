"""`trustser store verify|info|skipped`: inspect and check embedding stores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

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


def _line(text: str, style: str | None = None) -> None:
    """One line printed as is: identifiers (group names, ids, paths) are never cut or folded."""
    console.print(Text(text, style=style or ""), soft_wrap=True, highlight=False)


def _rows(label: str, rows: list[str], *, shown: int = SHOWN) -> None:
    _line(f"  {label} ({len(rows)}):")
    for row in rows[:shown]:
        _line(f"    - {row}")
    if len(rows) > shown:
        _line(f"    ... and {len(rows) - shown} more")


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
    _line(f"store {store}" + (" (deep check)" if deep else ""), "bold")
    for g in report.groups:
        _line(f"{g.name}: {g.status}", "green" if g.complete else "red")
        _line(
            f"  planned {g.planned} · done {g.done} · skipped {len(g.skipped)} · "
            f"flagged {len(g.flagged)} · missing {len(g.missing)} · "
            f"not extracted {len(g.not_extracted)}"
        )
        for label, rows in (
            ("problems", g.problems),
            ("unfinished units", g.missing_units),
            ("missing clips", g.missing),
            ("never extracted", g.not_extracted),
            ("note: mixed origins", g.mixed_origins),
        ):
            if rows:
                _rows(label, rows)
        if g.deep_checked:
            _line(f"  read back and checked {g.deep_checked} clips")
    if not report.complete:
        _line("Rerun the same `trustser extract` command(s) to finish the missing units.")
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
            {
                "summary": g.summary,
                "provenance": g.provenance,
                "skipped": g.skipped,
                "flagged": g.flagged,
            }
            for g in groups
        ]
        console.print_json(json.dumps(payload, default=str))
        return
    # One block per group, one fact per line: nothing is cut at any terminal width.
    _line(f"store {store}: {len(groups)} group(s)", "bold")
    for g in groups:
        s = g.summary
        _line(s["name"], "bold")
        facts = [
            ("backbone", str(s["backbone"])),
            ("layers × dim", f"{s['num_layers']} × {s['dim']}"),
            ("dtype, codec", f"{s['dtype']}, {s['codec']}"),
            (
                "clips",
                f"{s['clips_done']} done · {s['clips_skipped']} skipped · "
                f"{s['clips_flagged']} flagged · {s['clips_pending']} pending",
            ),
            ("audio", f"{s['audio_seconds'] / 3600:.2f} h"),
            (
                "disk",
                f"{s['disk_bytes'] / 1e9:.3f} GB in {s['parts']} part(s)"
                + (
                    f" · {s['disk_bytes'] / s['audio_seconds'] / 1e3:.1f} kB per audio-second"
                    if s["audio_seconds"]
                    else ""
                ),
            ),
            ("corpora", ", ".join(s["corpora"]) or "none"),
        ]
        if s.get("copies_done"):
            facts.append(("corrupted copies", f"{s['copies_done']} done (trustser robustness)"))
        width = max(len(k) for k, _ in facts)
        for key, value in facts:
            _line(f"  {key.ljust(width)}  {value}")
        if g.flagged:
            _rows("flagged clips", [f"{i}: {', '.join(f)}" for i, f in sorted(g.flagged.items())])
        if s.get("mixed_origins"):
            _rows("note: mixed origins", list(s["mixed_origins"]))
    if backbone:
        for g in groups:
            detail = Table(title=f"{g.summary['name']} provenance", show_header=False)
            detail.add_column("key", no_wrap=True)
            detail.add_column("value", overflow="fold")
            for key, value in sorted(g.provenance.items()):
                detail.add_row(
                    key, json.dumps(value, default=str) if isinstance(value, dict) else str(value)
                )
            console.print(detail)


@app.command("skipped")
def skipped(store: StoreArg = None, backbone: BackboneOpt = None) -> None:
    """List the clips extraction skipped, with the reason for each, and the flagged ones."""
    store = workspace().resolve("store", store)
    from trustser.store.info import store_info

    with user_errors():
        groups = store_info(store, backbones=backbone)
    total = 0
    for g in groups:
        if not (g.skipped or g.flagged):
            continue
        if g.skipped:
            _line(f"{g.summary['name']}: {len(g.skipped)} skipped clip(s)", "bold")
            for utt_id, reason in sorted(g.skipped.items()):
                _line(f"  - {utt_id}: {reason}")
        if g.flagged:
            _line(
                f"{g.summary['name']}: {len(g.flagged)} flagged clip(s) (extracted; check the audio)",
                "bold",
            )
            for utt_id, flags in sorted(g.flagged.items()):
                _line(f"  - {utt_id}: {', '.join(flags)}")
        total += len(g.skipped) + len(g.flagged)
    if not total:
        _line("No clip was skipped or flagged.")
