"""`trustser attack`: FGSM / PGD / white noise through the full backbone at a fixed SNR."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from trustser.attacks.methods import AttackError
from trustser.attacks.results import AttackRun
from trustser.attacks.runner import merge_attack, run_attack
from trustser.cli._common import BACKBONE, RUNS, STORE, console, err_console, user_errors, workspace
from trustser.cli._progress import AttackBar
from trustser.cli._tables import print_table
from trustser.formatting import percent
from trustser.workspace import attack_backbones

__all__ = ["app"]

app = typer.Typer()


def _snr_values(first: list[float], extra: list[str]) -> list[float]:
    """``--snr 45 35 25``: click binds 45 to --snr and leaves 35 25 as extra arguments."""
    values = list(first)
    for token in extra:
        try:
            values.append(float(token))
        except ValueError:
            raise AttackError(
                f"unexpected argument {token!r}; only SNR values may follow --snr "
                "(e.g. --snr 45 35 25)."
            ) from None
    return values


def _render(run: AttackRun) -> None:
    table = Table(
        title=f"{run.backbone}: attack success rate",
        caption="ASR: mean ± sd over folds; measured SNR: min–max; clean: accuracy before the attack",
    )
    for column, justify in (
        ("method", "left"),
        ("SNR dB", "right"),
        ("ASR %", "right"),
        ("flipped", "right"),
        ("measured SNR dB", "right"),
        ("clean %", "right"),
    ):
        table.add_column(column, justify=justify, no_wrap=True)
    for result in run.results:
        summary = result.summary()
        measured = summary["measured_snr_db"]
        span = (
            f"{measured['min']:.2f}–{measured['max']:.2f}" if measured["min"] is not None else "–"
        )
        table.add_row(
            result.method,
            f"{result.snr_db:g}",
            percent(result.asr_mean, result.asr_std),
            f"{result.num_flipped}/{result.num_attacked}",
            span,
            percent(summary["clean_accuracy"]),
        )
    print_table(table, console=console)
    for result in run.results:
        if result.out_dir is None:
            continue
        rate = result.summary()["clips_per_second"]
        speed = f" ({rate:.1f} clips/s)" if rate else ""
        console.print(f"wrote {result.out_dir}{speed}", soft_wrap=True)
    if run.sweep is not None:
        console.print(f"ASR vs SNR: {run.sweep.markdown} and {run.sweep.plot.name}", soft_wrap=True)
    for note in run.warnings:
        err_console.print(f"[yellow]note:[/yellow] {note}")


@app.command(
    "attack",
    context_settings={"allow_extra_args": True},
    help="Attack the test waveforms end to end (backbone + trained emotion head) at a fixed SNR.",
)
def attack(
    ctx: typer.Context,
    store: Annotated[
        Path | None,
        typer.Option(
            *STORE,
            help="Embedding store written by `trustser extract`.",
            show_default="cache.zarr, or trustser.toml's",
        ),
    ] = None,
    backbone: Annotated[
        list[str] | None,
        typer.Option(
            *BACKBONE,
            help="Backbone group(s) in the store, repeatable (default: every one with emotion "
            "heads under --runs).",
        ),
    ] = None,
    method: Annotated[
        str, typer.Option("--method", help="fgsm, pgd, or noise (white-noise control).")
    ] = "fgsm",
    snr: Annotated[
        list[float],
        typer.Option("--snr", help="Target SNR in dB; several values sweep: --snr 45 35 25."),
    ] = [45.0],  # noqa: B006 - typer needs a literal default
    runs: Annotated[
        Path | None,
        typer.Option(
            *RUNS,
            help="Results directory holding <backbone>/emotion heads.",
            show_default="runs, or trustser.toml's",
        ),
    ] = None,
    folds: Annotated[
        str | None,
        typer.Option(
            "--folds", help="Folds by name or 1-based index, comma-separated (default all)."
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, or cuda.")] = "auto",
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Clips per padded, length-sorted batch.")
    ] = 8,
    save_audio: Annotated[
        int, typer.Option("--save-audio", help="Write this many clean/adversarial WAV pairs.")
    ] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed for random starts and noise.")] = 0,
    steps: Annotated[int, typer.Option("--steps", help="PGD iterations.")] = 10,
    step_size: Annotated[
        float | None,
        typer.Option("--step-size", help="PGD step as a fraction of ε (default 2.5/steps)."),
    ] = None,
    random_start: Annotated[
        bool, typer.Option("--random-start/--no-random-start", help="PGD: start from U(−ε, ε).")
    ] = False,
    eot: Annotated[
        int | None,
        typer.Option(
            "--eot",
            min=1,
            help="Randomized defences (@smooth-…): noise draws each adaptive (EOT) gradient "
            "averages; the plain attack is written beside it under plain/.",
            show_default="8",
        ),
    ] = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")
    ] = True,
    rank: Annotated[
        int | None,
        typer.Option("--rank", help="This process's rank (default: torchrun's or SLURM's)."),
    ] = None,
    world_size: Annotated[
        int | None, typer.Option("--world-size", help="Number of ranks (with --rank).")
    ] = None,
    merge: Annotated[
        bool,
        typer.Option(
            "--merge", help="Only merge the ranks' files of this method and SNR(s); no attack."
        ),
    ] = False,
) -> None:
    ws = workspace()
    store, runs = ws.resolve("store", store), ws.resolve("runs", runs)
    with user_errors():
        snrs = _snr_values(snr, list(ctx.args))
        names = attack_backbones(store, runs, backbone)
    for name in names:
        if merge:
            with user_errors():
                run = merge_attack(store, name, runs=runs, method=method, snr_db=snrs)
            _render(run)
            continue
        with user_errors(), AttackBar(progress, console=err_console) as bar:
            run = run_attack(
                store,
                name,
                runs=runs,
                method=method,
                snr_db=snrs,
                folds=folds,
                device=device,
                batch_size=batch_size,
                save_audio=save_audio,
                seed=seed,
                steps=steps,
                step_size=step_size,
                random_start=random_start,
                eot_samples=eot,
                callback=bar.update,
                rank=rank,
                world_size=world_size,
            )
        _render(run)
