"""`trustser run` (the whole pipeline) and `trustser demo` (the offline default)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from trustser.cli._common import BACKBONE, MANIFEST, OUT, console, err_console, user_errors
from trustser.cli._progress import AttackBar, CountBar
from trustser.cli._tables import print_table

__all__ = ["app"]

app = typer.Typer()

_STATUS_STYLE = {"done": "green", "skipped": "dim", "failed": "bold red"}


def _show(event) -> None:
    """Print one line per finished stage (the stages show their own progress bars)."""
    if event.status == "start":
        what = f"{event.stage} {event.backbone}" if event.backbone else event.stage
        console.print(f"[bold]{event.corpus}[/] · {what} …", highlight=False)
        return
    style = _STATUS_STYLE.get(event.status, "")
    what = f"{event.stage} {event.backbone}" if event.backbone else event.stage
    console.print(
        f"  [{style}]{event.status}[/] {what} ({event.seconds:.0f} s): {event.detail}",
        highlight=False,
    )


def _summary(result) -> None:
    table = Table(title="trustser run", show_lines=False)
    for column in ("corpus", "stage", "backbone", "status", "seconds"):
        table.add_column(column, no_wrap=True, justify="right" if column == "seconds" else "left")
    for event in result.events:
        style = _STATUS_STYLE.get(event.status, "")
        table.add_row(
            event.corpus,
            event.stage,
            event.backbone or "",
            f"[{style}]{event.status}[/]",
            f"{event.seconds:.0f}",
        )
    print_table(table, keys=3, console=console)
    for corpus, path in result.reports.items():
        console.print(f"[bold]{corpus}[/] trust profile: {path}", highlight=False)
    for corpus, path in result.radars.items():
        console.print(f"[bold]{corpus}[/] radar chart:   {path}", highlight=False)
    if result.failures:
        console.print(f"[bold red]{len(result.failures)} stage(s) failed[/]; see above.")


@app.command("run")
def run(
    corpus: Annotated[
        list[str] | None, typer.Option("--corpus", help="Corpus name (repeatable), e.g. emodb.")
    ] = None,
    root: Annotated[
        list[Path] | None, typer.Option("--root", help="Corpus root, one per --corpus.")
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(*MANIFEST, help="A prepared manifest instead of --corpus/--root."),
    ] = None,
    backbone: Annotated[
        list[str] | None,
        typer.Option(*BACKBONE, help="Backbone name or spec (repeatable)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(*OUT, help="Output directory (default: runs, or the --config's out)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML file listing corpora, backbones, settings."),
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for every random choice.")] = None,
    finetune_top: Annotated[
        list[int] | None,
        typer.Option(
            "--finetune-top",
            help="Also run each backbone's variant with its top K blocks fine-tuned "
            "(<backbone>@top<K>; repeatable).",
        ),
    ] = None,
    robustness: Annotated[
        bool,
        typer.Option(
            "--robustness",
            help="Also run the \\[robustness] stage with its defaults: every model on corrupted "
            "test clips (a --config's \\[robustness] section keeps its settings).",
        ),
    ] = False,
) -> None:
    """Prepare → extract → heads → probes → attack → cost → \\[robustness] → profile; finished
    stages are skipped."""
    from trustser.pipeline import config_from_options, run_pipeline

    with user_errors():
        cfg = config_from_options(
            config=config,
            corpora=corpus or (),
            roots=root or (),
            manifest=manifest,
            backbones=backbone or (),
            out=out,
            device=device,
            seed=seed,
            finetune_top=finetune_top or (),
            robustness=robustness,
        )
        with AttackBar(console=err_console) as bar:
            result = run_pipeline(cfg, notify=_show, attack_progress=bar.update)
    _summary(result)
    raise typer.Exit(code=result.exit_code)


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(*OUT, help="Output directory.")] = Path("runs/demo"),
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for the corpus and every stage.")] = 0,
    size: Annotated[
        str,
        typer.Option(
            help="Corpus preset (as `trustser data synth --size`): default (400 clips), "
            "small (144), tiny (48, a quick smoke test)."
        ),
    ] = "default",
) -> None:
    """Synthesise the demo corpus and profile and compare the two offline encoders on it."""
    from trustser.cli.profile import _render_profile, _render_recommendation
    from trustser.demo import DEMO_CORPUS, demo_summary, run_demo

    with (
        user_errors(),
        CountBar("synthesising", unit="clips") as bar,
        AttackBar(console=err_console) as attack_bar,
    ):
        result = run_demo(
            out,
            device=device,
            seed=seed,
            size=size,
            notify=_show,
            synth_progress=bar,
            attack_progress=attack_bar.update,
        )
    _summary(result)
    if DEMO_CORPUS in result.reports:
        with user_errors():
            summary = demo_summary(result.reports[DEMO_CORPUS].parent)
        _render_profile(summary.profile)
        for recommendation in summary.recommendations:
            _render_recommendation(recommendation)
        console.print(f"table and rankings: {summary.path}", highlight=False)
    raise typer.Exit(code=result.exit_code)
