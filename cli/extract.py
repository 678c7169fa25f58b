"""`trustser extract`: run a frozen backbone once and cache every hidden layer in the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from trustser.cli._common import (
    BACKBONE,
    MANIFEST,
    STORE,
    console,
    err_console,
    user_errors,
    workspace,
)
from trustser.cli._progress import ExtractBar
from trustser.formatting import percent

__all__ = ["EXIT_INTERRUPTED", "app"]

app = typer.Typer()

SHOWN = 20
EXIT_INTERRUPTED = 130


@app.command("extract")
def extract_command(
    backbone: Annotated[
        str,
        typer.Option(
            *BACKBONE,
            help="Backbone name or spec (see `trustser backbones list`).",
            show_default=False,
        ),
    ],
    manifest: Annotated[
        list[Path] | None,
        typer.Option(
            *MANIFEST,
            exists=True,
            dir_okay=False,
            help="Manifest JSONL(.gz); repeat for several corpora.",
            show_default="manifest.jsonl, or trustser.toml's",
        ),
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option(
            *STORE,
            help="Embedding store directory (created if absent).",
            show_default="cache.zarr, or trustser.toml's",
        ),
    ] = None,
    group: Annotated[
        str | None, typer.Option(help="Store group name (default: the backbone name).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    window: Annotated[
        str | None, typer.Option(help="Whisper window: trimmed (default) or 30s.")
    ] = None,
    batch_seconds: Annotated[float, typer.Option(help="Audio seconds per forward batch.")] = 60.0,
    dtype: Annotated[
        str,
        typer.Option(
            help="Frame dtype: float16, float32, or int8 (8-bit codes with a float16 scale per "
            "frame and layer: half the bytes of float16; docs/store-format.md §6.5)."
        ),
    ] = "float16",
    codec: Annotated[str, typer.Option(help="Chunk compression: none or zstd.")] = "none",
    max_seconds: Annotated[
        float, typer.Option(help="Keep the first N seconds of each clip; 0 keeps whole clips.")
    ] = 6.0,
    shard_mb: Annotated[
        float, typer.Option(help="Target shard size in MiB (the unit of work and resume).")
    ] = 64.0,
    rank: Annotated[
        int | None, typer.Option(help="This process's rank (default: $RANK, $SLURM_PROCID or 0).")
    ] = None,
    world_size: Annotated[
        int | None, typer.Option(help="Number of ranks (default: $WORLD_SIZE, $SLURM_NTASKS or 1).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Background audio-decoding threads.")] = 2,
    retry_skipped: Annotated[
        bool, typer.Option(help="Redo finished units that recorded skipped clips.")
    ] = False,
    break_claims: Annotated[
        bool,
        typer.Option(
            help="Also take over units claimed by writers on other hosts (only once they have "
            "stopped; dead writers on this host are taken over anyway)."
        ),
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
    summary_json: Annotated[
        Path | None, typer.Option(help="Also write the run summary as JSON here.")
    ] = None,
) -> None:
    """Extract every hidden layer of BACKBONE for the manifest(s) into the store (resumable).

    Exit status: 0 no clip skipped, 3 some clips skipped (listed), 2 bad input, 130 interrupted.
    """
    from trustser.extract import FLAG_MEANINGS, extract

    ws = workspace()
    store = ws.resolve("store", store)
    if not manifest:
        if not ws.manifest.is_file():
            with user_errors():
                raise FileNotFoundError(
                    f"no --manifest given and {ws.describe('manifest')} does not exist; create "
                    "it with `trustser data prepare CORPUS ROOT` or pass -m FILE."
                )
        manifest = [ws.manifest]
    try:
        with user_errors(), ExtractBar(progress) as bar:
            summary = extract(
                manifest,
                store,
                backbone,
                group=group,
                device=device,
                window=window,
                batch_seconds=batch_seconds,
                dtype=dtype,
                codec=codec,
                max_seconds=max_seconds if max_seconds > 0 else None,
                shard_mb=shard_mb,
                rank=rank,
                world_size=world_size,
                num_workers=workers,
                retry_skipped=retry_skipped,
                break_claims=break_claims,
                progress=bar,
            )
    except KeyboardInterrupt:
        err_console.print(
            "[yellow]interrupted[/]: finished units are kept; rerun the same command to resume."
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if summary_json is not None:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(
            json.dumps(summary.to_dict(), indent=2, sort_keys=True, default=str) + "\n"
        )

    table = Table(title=f"extract {summary.group} → {summary.store}", show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    rows = [
        ("device", summary.device),
        ("rank", f"{summary.rank} of {summary.world_size}"),
        ("clips in manifest(s)", str(summary.clips)),
        (
            "done / skipped / pending",
            f"{summary.done} / {len(summary.skipped)} / {summary.pending}",
        ),
        ("written by this run", f"{summary.clips_written} clips in {summary.units_written} units"),
        ("audio computed", f"{summary.audio_seconds:.1f} s"),
        (
            "wall time",
            f"{summary.wall_seconds:.1f} s (extraction {summary.run_seconds:.1f} s, forward {summary.forward_seconds:.1f} s)",
        ),
        (
            "throughput",
            f"{summary.clips_per_second:.1f} clips/s, {summary.audio_seconds_per_second:.1f} audio-s/s",
        ),
        ("padded frames", percent(summary.padded_fraction, unit=True)),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    if summary.skipped:
        console.print(
            f"[yellow]{len(summary.skipped)} clip(s) skipped[/] (`trustser store skipped {summary.store}` lists all):"
        )
        for utt_id, reason in list(sorted(summary.skipped.items()))[:SHOWN]:
            console.print(f"  - {utt_id}: {reason}", markup=False, highlight=False)
        if len(summary.skipped) > SHOWN:
            console.print(f"  ... and {len(summary.skipped) - SHOWN} more")
    if summary.flagged:
        console.print(
            f"[yellow]{len(summary.flagged)} clip(s) flagged[/] (extracted, but check the audio):"
        )
        for utt_id, flags in sorted(summary.flagged.items()):
            meaning = "; ".join(f"{f}: {FLAG_MEANINGS.get(f, f)}" for f in flags)
            console.print(f"flagged {utt_id}: {meaning}", markup=False, highlight=False)
    for note in summary.notes():
        console.print(note, markup=False, highlight=False, soft_wrap=True)
    if summary.pending and summary.world_size == 1:
        console.print(
            f"{summary.pending} clip(s) are not extracted yet (units held by another writer, or "
            f"an interrupted run); check with `trustser store verify {summary.store}`.",
            markup=False,
            highlight=False,
        )
    raise typer.Exit(summary.exit_code)
