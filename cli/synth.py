"""`trustser data synth`: the synthetic espeak-ng demo corpus."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from trustser.cli._common import console, user_errors
from trustser.cli._progress import CountBar

__all__ = ["app"]

app = typer.Typer()


@app.command("synth")
def synth(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            file_okay=False,
            help="Directory for manifest.jsonl, synth.json and wav/ (created if missing).",
        ),
    ],
    size: Annotated[
        str,
        typer.Option(
            help="Preset: tiny (6 speakers × 2 sentences), small (6 × 6), default (10 × 10, "
            "400 clips), large (20 × 24)."
        ),
    ] = "default",
    speakers: Annotated[
        int | None,
        typer.Option(help="Number of voices (even, >= 6; half female); overrides --size."),
    ] = None,
    sentences: Annotated[
        int | None,
        typer.Option(
            help="Sentences per speaker, each said in all four emotions; overrides --size."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Random seed: same seed, same bytes.")] = 0,
    bias: Annotated[
        list[str] | None,
        typer.Option(
            help="EMOTION:GENDER[:STRENGTH[:TOWARD]], e.g. angry:female (female anger rendered "
            "with neutral prosody) or angry:female:0.5 (halfway). Repeatable."
        ),
    ] = None,
    voice: Annotated[
        list[str] | None,
        typer.Option(
            help="espeak-ng voice as NAME:GENDER (e.g. en+f3:female); repeat for each speaker, "
            "as many female as male. Default: the built-in voice list."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Parallel espeak-ng processes (default: CPU count).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a corpus made with other settings.")
    ] = False,
) -> None:
    """Render a small labelled emotional corpus locally with espeak-ng (a smoke test, not a benchmark)."""
    from trustser.corpora.synth import synthesize

    with user_errors(), CountBar("synthesising", unit="clips") as bar:
        manifest = synthesize(
            out,
            size=size,
            num_speakers=speakers,
            num_sentences=sentences,
            seed=seed,
            bias=bias or (),
            voices=voice or None,
            workers=workers,
            overwrite=overwrite,
            progress=bar,
        )
    emotions = Counter(u.emotion for u in manifest)
    genders = Counter(u.gender for u in {u.speaker: u for u in manifest}.values())
    minutes = sum(u.duration for u in manifest) / 60
    table = Table(title="synthetic corpus", show_header=False)
    table.add_row("clips", f"{len(manifest)} ({minutes:.1f} min)")
    table.add_row("speakers", ", ".join(f"{n} {g}" for g, n in sorted(genders.items())))
    table.add_row("emotions", ", ".join(f"{e} {emotions[e]}" for e in manifest.labels))
    table.add_row("folds", f"{len(manifest.folds)} ({manifest.fold_scheme})")
    table.add_row("version", manifest.version)
    table.add_row("manifest", str(Path(out) / "manifest.jsonl"))
    console.print(table)
