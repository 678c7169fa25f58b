"""`trustser results`: a Markdown document's result tables and figures, rendered from artefacts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from trustser.cli._common import OUT, RUNS, console, err_console, user_errors
from trustser.results_doc import (
    VIEWS,
    drift,
    import_results,
    render_document,
    write_rendering,
)

__all__ = ["app"]

app = typer.Typer(
    no_args_is_help=True,
    help="Render a document's result tables and figures from the files the stages wrote "
    "(docs/results.md: `make results`).",
)

DocumentArgument = Annotated[
    Path,
    typer.Argument(
        help="Markdown document with <!-- results:begin NAME --> … <!-- results:end NAME --> "
        "blocks.",
        exists=True,
        dir_okay=False,
    ),
]
DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Directory with results.toml and the results it names.",
        file_okay=False,
        show_default="the document's path without .md",
    ),
]
FiguresOption = Annotated[
    Path | None,
    typer.Option(
        "--figures",
        help="Directory of the rendered figures.",
        file_okay=False,
        show_default="img/<document name>/ beside the document",
    ),
]


@app.command("render")
def render(
    document: DocumentArgument, data: DataOption = None, figures: FiguresOption = None
) -> None:
    """Re-render every block of DOCUMENT (and its figures) with the current code."""
    with user_errors():
        rendering = render_document(document, data=data, figures=figures)
        changed = write_rendering(rendering)
    for path in changed:
        console.print(f"  updated {escape(str(path))}")
    console.print(
        f"{len(rendering.blocks)} block(s) rendered; "
        + (f"{len(changed)} file(s) changed." if changed else "already up to date.")
    )


@app.command("check")
def check(
    document: DocumentArgument, data: DataOption = None, figures: FiguresOption = None
) -> None:
    """Exit with status 1 when DOCUMENT or its figures differ from what the current code
    renders (nothing is written)."""
    with user_errors():
        problems = drift(render_document(document, data=data, figures=figures))
    if problems:
        for problem in problems:
            err_console.print(escape(problem))
        err_console.print(
            "run `make results` (or `trustser results render`) and commit the result."
        )
        raise typer.Exit(code=1)
    console.print(f"{escape(str(document))} is up to date.")


@app.command("import")
def import_(
    runs: Annotated[
        Path,
        typer.Option(
            *RUNS,
            help="Results directory the stages wrote (trustser run's <out>/<corpus>).",
            file_okay=False,
            exists=True,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            *OUT, help="Where to copy them (a directory beside the document).", file_okay=False
        ),
    ],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="A backbone or variant to copy (repeat; default: all)."),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace a model's directory already in OUT.")
    ] = False,
    trials: Annotated[
        bool,
        typer.Option(
            "--trials/--no-trials",
            help="Copy the speaker-verification runs' per-trial scores (trials.csv). Without "
            "them the verification view still shows each run's figures and intervals, but a "
            "profile has no interval of the EER on its own draws and no paired comparison of it.",
        ),
    ] = True,
) -> None:
    """Copy the small files a profile is computed from (predictions, metrics, attack results,
    robustness and speaker-verification figures, cost; no weights, no store) into a document's
    data directory."""
    with user_errors():
        imported = import_results(runs, out, models=model, replace=replace, trials=trials)
    console.print(
        f"copied {len(imported.files)} files ({imported.total_bytes / 1e6:.2f} MB) to "
        f"{escape(str(imported.out))}"
    )


@app.command("views")
def views() -> None:
    """List the views a block can name (<profile>/<view>)."""
    for view in VIEWS.values():
        console.print(f"{view.name:<12} {escape(view.summary)}")
