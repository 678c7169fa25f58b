"""`trustser data ...`: turn a corpus into a manifest, check it, and show what it holds."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from trustser.cli._common import OUT, console, err_console, user_errors, workspace
from trustser.cli._progress import CountBar
from trustser.corpora import corpus_info, list_corpora, prepare_corpus
from trustser.manifest import ROLES, ManifestSummary, check_manifest, summarize

__all__ = ["app"]

app = typer.Typer(
    help="Prepare corpus manifests and the synthetic demo corpus.", no_args_is_help=True
)

ManifestArgument = Annotated[
    Path | None,
    typer.Argument(
        help="Manifest (.jsonl or .jsonl.gz).",
        exists=True,
        dir_okay=False,
        show_default="manifest.jsonl, or trustser.toml's",
    ),
]


def _manifest(path: Path | None) -> Path:
    """The MANIFEST argument, or the workspace's manifest (which must then exist)."""
    if path is not None:
        return path
    ws = workspace()
    if not ws.manifest.is_file():
        with user_errors():
            raise FileNotFoundError(
                f"no manifest given and {ws.describe('manifest')} does not exist; pass MANIFEST "
                "or create it with `trustser data prepare CORPUS ROOT`."
            )
    return ws.manifest


@app.command("prepare")
def prepare(
    corpus: Annotated[str, typer.Argument(help="Corpus name; see `trustser data corpora`.")],
    root: Annotated[
        Path,
        typer.Argument(help="The corpus folder, as distributed.", exists=True, file_okay=False),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            *OUT,
            help="Manifest to write (.jsonl, or .jsonl.gz).",
            dir_okay=False,
            show_default="manifest.jsonl, or trustser.toml's",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Rebuild even if OUT already holds this corpus.")
    ] = False,
    skip_unreadable: Annotated[
        bool,
        typer.Option(
            "--skip-unreadable",
            help="Leave out unreadable audio files (listed) instead of failing.",
        ),
    ] = False,
) -> None:
    """Read CORPUS from its official layout under ROOT and write a validated manifest."""
    out = workspace().resolve("manifest", out)
    reusing = out.exists() and not overwrite
    with (
        user_errors(),
        warnings.catch_warnings(record=True) as caught,
        CountBar(f"{corpus}: reading headers", unit="files") as bar,
    ):
        warnings.simplefilter("always")
        manifest = prepare_corpus(
            corpus, root, out, overwrite=overwrite, skip_unreadable=skip_unreadable, progress=bar
        )
    for warning in caught:
        err_console.print(f"[yellow]warning:[/] {warning.message}", highlight=False)
    verb = "reused existing" if reusing else "wrote"
    console.print(
        f"{verb} [bold]{out}[/]: {len(manifest)} utterances of {manifest.corpus}"
        + (" (use --overwrite to rebuild)" if reusing else ""),
        highlight=False,
        soft_wrap=True,  # a path is never folded or cut
    )
    _render_summary(summarize(manifest))


@app.command("validate")
def validate(
    manifest: ManifestArgument = None,
    files: Annotated[
        bool, typer.Option("--files/--no-files", help="Check that every audio file exists.")
    ] = True,
    audio: Annotated[
        str,
        typer.Option(
            help="none | headers (open every file, compare rate and length) | decode (load every clip)."
        ),
    ] = "none",
) -> None:
    """Check MANIFEST against the schema (and optionally its audio); exit 2 on any problem."""
    manifest = _manifest(manifest)
    with user_errors(), CountBar(f"checking audio ({audio})", unit="files") as bar:
        result = check_manifest(manifest, check_files=files, audio=audio, progress=bar)
    checked = result.audio
    if checked is not None:
        if checked.truncated:
            err_console.print(
                f"[yellow]warning:[/] {len(checked.truncated)} truncated file(s) (only the audio "
                f"present is used): {', '.join(checked.truncated[:5])}",
                highlight=False,
            )
        if checked.silent:
            err_console.print(
                f"[yellow]warning:[/] {len(checked.silent)} all-zero clip(s): "
                f"{', '.join(checked.silent[:5])}",
                highlight=False,
            )
    what = f"; audio checked ({audio})" if checked is not None else ""
    console.print(
        f"[green]ok[/]: {manifest} — {result.summary.num_utterances} utterances, "
        f"{len(result.manifest.folds)} fold(s){what}",
        highlight=False,
    )


@app.command("info")
def info(manifest: ManifestArgument = None) -> None:
    """Counts per emotion, gender and fold of MANIFEST (files are not opened)."""
    manifest = _manifest(manifest)
    with user_errors():
        summary = check_manifest(manifest, check_files=False).summary
    _render_summary(summary)


@app.command("corpora")
def corpora() -> None:
    """The corpora `trustser data prepare` reads, their folds and where to get them."""
    table = Table(title="corpora", show_lines=False)
    for column in ("name", "folds", "fold scheme", "source"):
        table.add_column(column, overflow="fold")
    with user_errors():
        infos = [corpus_info(name) for name in list_corpora()]
    for item in infos:
        folds = "" if item.num_folds is None else str(item.num_folds)
        table.add_row(item.name, folds, item.fold_scheme, item.source)
    console.print(table)


def _render_summary(summary: ManifestSummary) -> None:
    hours = summary.total_seconds / 3600
    speakers = ", ".join(f"{n} {g}" for g, n in summary.speakers_per_gender.items())
    lines = [
        f"[bold]{summary.corpus}[/] {summary.version}".rstrip(),
        f"{summary.num_utterances} utterances, {hours:.2f} h, {summary.num_speakers} speakers ({speakers})",
    ]
    if summary.unknown_speaker_utterances:
        lines.append(f"{summary.unknown_speaker_utterances} utterances of unknown speakers")
    if summary.fold_scheme:
        lines.append(f"folds: {summary.fold_scheme}")
    console.print("\n".join(lines), highlight=False)

    counts = Table(title="utterances per emotion and gender")
    counts.add_column("emotion")
    genders = list(summary.emotion_by_gender)
    for gender in genders:
        counts.add_column(gender, justify="right")
    counts.add_column("total", justify="right")
    for label in summary.labels:
        row = [str(summary.emotion_by_gender[g].get(label, 0)) for g in genders]
        counts.add_row(label, *row, str(summary.emotions.get(label, 0)))
    counts.add_row(
        "total", *(str(summary.genders.get(g, 0)) for g in genders), str(summary.num_utterances)
    )
    console.print(counts)

    if summary.folds:
        folds = Table(title="folds: utterances (speakers) per role")
        folds.add_column("fold")
        folds.add_column("by")
        for role in ROLES:
            folds.add_column(role, justify="right")
        folds.add_column("test " + "/".join(summary.labels), justify="right")
        unused = any(fold.unassigned for fold in summary.folds)
        if unused:
            folds.add_column("unused", justify="right")
        for fold in summary.folds:
            test_counts = "/".join(
                str(fold.emotions["test"].get(label, 0)) for label in summary.labels
            )
            row = [
                fold.name,
                fold.by,
                *(f"{fold.utterances[r]} ({fold.speakers[r]})" for r in ROLES),
            ]
            row.append(test_counts)
            if unused:
                row.append(str(fold.unassigned))
            folds.add_row(*row)
        console.print(folds)
    else:
        console.print(
            "[yellow]no folds defined[/]: heads need folds (see docs/manifest.md)", highlight=False
        )

    if summary.skipped:
        skipped = Table(title=f"{len(summary.skipped)} unreadable file(s) left out")
        skipped.add_column("id")
        skipped.add_column("reason", overflow="fold")
        for utterance_id, reason in summary.skipped[:20]:
            skipped.add_row(utterance_id, reason)
        if len(summary.skipped) > 20:
            skipped.add_row(
                "...", f"and {len(summary.skipped) - 20} more (see the manifest header)"
            )
        console.print(skipped)
