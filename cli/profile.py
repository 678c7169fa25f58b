"""Top-level `trustser cost`, `trustser profile` and `trustser recommend` commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from trustser.cli._common import (
    BACKBONE,
    OUT,
    PRIVACY_SCORE,
    PRIVACY_SCORE_HELP,
    RUNS,
    STORE,
    PrivacyScoreOption,
    console,
    err_console,
    user_errors,
    workspace,
)
from trustser.cli._tables import print_table
from trustser.cost import CostReport, run_cost
from trustser.metrics.bootstrap import DEFAULT_REPLICATES
from trustser.profile import SCALE_MODES, Profile, ProfileError, run_profile
from trustser.profile.axes import registered_axes, scored_axes
from trustser.profile.cells import NOT_MEASURABLE, interval_text
from trustser.profile.recommend import (
    SCENARIOS,
    Recommendation,
    run_recommend,
    saturated_text,
    unweighed_text,
)
from trustser.workspace import stage_backbones, store_window

__all__ = ["app"]

app = typer.Typer()

_MANY = {"allow_extra_args": True}


def _names(first: list[str] | None, extra: list[str], option: str) -> list[str] | None:
    """``--backbone a b c`` (click binds a, leaves b c as extra arguments) or ``a,b`` or repeats."""
    if extra and not first:
        raise ProfileError(
            f"unexpected argument(s) {' '.join(extra)!r}; backbone names follow {option} "
            f"(e.g. {option} whisper_tiny wavlm_base_plus)."
        )
    values = [v.strip() for item in [*(first or []), *extra] for v in item.split(",")]
    values = [v for v in values if v]
    return values or None


def _runs_and_store(runs: Path | None, store: Path | None) -> tuple[Path, str | None]:
    """``--runs`` and ``--store`` (flag > trustser.toml > default); a store that was not named
    on the command line is used only when it exists."""
    ws = workspace()
    chosen = ws.resolve("store", store)
    if store is None and not chosen.exists():
        return ws.resolve("runs", runs), None
    return ws.resolve("runs", runs), str(chosen)


def _fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    return "–" if value is None else pattern.format(value)


def _render_cost(report: CostReport, path: Path | None) -> None:
    table = Table(title=f"{report.backbone}: cost of one {report.seconds:g} s clip")
    table.add_column("quantity", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("what it is")
    rows = [
        (
            "backbone parameters",
            f"{report.backbone_params / 1e6:.3f} M",
            "every parameter of the loaded encoder",
        ),
        ("head parameters", f"{report.head_params / 1e3:.1f} k", report.head_source),
        ("frames", str(report.num_frames), f"{report.num_samples} samples at 16 kHz"),
        (
            "backbone GMACs",
            f"{report.backbone_macs / 1e9:.3f}",
            "fvcore, eager attention (1 MAC = 1 multiply–add)",
        ),
        ("  of which attention", f"{report.attention_macs / 1e9:.3f}", "QKᵀ and AV products"),
        ("head GMACs", f"{report.head_macs / 1e9:.4f}", "1×1 convs and classifier"),
        ("total GMACs", f"{report.gmacs:.3f}", "the profile's sustainability axis"),
        (
            "GFLOPs (torch)",
            f"{report.torch_flops / 1e9:.3f}",
            "FlopCounterMode cross-check ≈ 2 × MACs",
        ),
        (
            "latency (batch 1)",
            _fmt(report.latency_ms, "{:.1f} ms"),
            f"median of {report.repeats} runs, p90 {_fmt(report.latency_ms_p90, '{:.1f}')} ms",
        ),
        (
            "real-time factor",
            _fmt(report.real_time_factor, "{:.4f}"),
            "processing time / audio time",
        ),
        (
            "throughput",
            _fmt(report.throughput_clips_per_s, "{:.1f} clips/s"),
            f"batch {report.throughput_batch_size}",
        ),
        ("device", report.device, f"{report.torch_threads} torch threads"),
    ]
    for row in rows:
        table.add_row(*(escape(str(cell)) for cell in row))
    print_table(table, console=console)
    console.print(f"not counted: {'; '.join(report.not_counted)}", style="dim")
    if path is not None:
        console.print(f"wrote {path}")


@app.command("cost", help="Parameters, MACs/FLOPs and latency of a backbone + head for a 6 s clip.")
def cost(
    backbone: Annotated[
        list[str] | None,
        typer.Option(
            *BACKBONE,
            help="Registry name or spec, repeatable (default: every group of --store).",
        ),
    ] = None,
    runs: Annotated[
        Path | None,
        typer.Option(
            *RUNS,
            help="Results directory: cost.json goes to <runs>/<backbone>/.",
            show_default="runs, or trustser.toml's",
        ),
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option(
            *STORE,
            help="Embedding store whose groups are measured when no --backbone is given "
            "(their Whisper window is used).",
            show_default="cache.zarr, or trustser.toml's",
        ),
    ] = None,
    write: Annotated[
        bool, typer.Option("--write/--no-write", help="Write cost.json under --runs.")
    ] = True,
    device: Annotated[
        str, typer.Option("--device", help="Where to time: auto, cpu, or cuda.")
    ] = "auto",
    seconds: Annotated[float, typer.Option("--seconds", help="Clip length in seconds.")] = 6.0,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="Whisper only: trimmed or 30s (default: the store group's, else trimmed).",
        ),
    ] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed runs at batch 1.")] = 20,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Batch for the throughput figure.")
    ] = 8,
    timing: Annotated[
        bool, typer.Option("--timing/--no-timing", help="Measure latency and throughput.")
    ] = True,
    threads: Annotated[
        int | None,
        typer.Option("--threads", help="CPU threads for the timings (default: torch's)."),
    ] = None,
    num_classes: Annotated[
        int, typer.Option("--num-classes", help="Head classes when no trained head is found.")
    ] = 4,
) -> None:
    ws = workspace()
    runs, store = ws.resolve("runs", runs), ws.resolve("store", store)
    with user_errors():
        names = stage_backbones(store, backbone)
    for name in names:
        with user_errors(), console.status(f"measuring {name}") as status:
            report, path = run_cost(
                name,
                runs=runs,
                write=write,
                progress=lambda message: status.update(message),
                device=device,
                seconds=seconds,
                window=window or store_window(store, name) or "trimmed",
                repeats=repeats,
                batch_size=batch_size,
                timing=timing,
                threads=threads,
                num_classes=num_classes,
            )
        _render_cost(report, path)


def _render_profile(profile: Profile) -> None:
    table = Table(title=f"Trust profile (scale: {profile.scale}; higher is more trustworthy)")
    table.add_column("backbone", no_wrap=True)
    axes = scored_axes(profile.scale)
    for axis in axes:
        table.add_column(axis.title, justify="right", no_wrap=True)
    for entry in profile.backbones:
        cells = []
        for axis in axes:
            score = entry.scores.get(axis.name)
            if score is not None:
                cells.append(f"{score:.2f}" + ("*" if entry.clipped.get(axis.name) else ""))
            elif axis.name in entry.not_measurable:
                cells.append(f"[yellow]{NOT_MEASURABLE}[/yellow]")
            else:
                cells.append("[red]missing[/red]")
        table.add_row(escape(entry.name), *cells)
    print_table(table, console=console)
    _render_figures(profile)
    if profile.bootstrap:
        console.print(
            f"95 % intervals ({profile.bootstrap['replicates']} speaker-bootstrap replicates) "
            "in profile.md and report.html",
            style="dim",
        )
    if any(any(b.clipped.values()) for b in profile.backbones):
        console.print("* past the end of the scale: scored at that end (notes below)", style="dim")
    for entry in profile.backbones:
        for note in entry.notes:
            if note.startswith("beyond the scale: "):
                console.print(f"{escape(entry.name)}: {escape(note)}", style="dim")
    for entry in profile.backbones:
        for axis, reason in entry.not_measurable.items():
            console.print(
                f"[yellow]{NOT_MEASURABLE}[/yellow] {escape(entry.name)} {axis}: {escape(reason)}"
            )
    for entry in profile.backbones:
        for axis, command in entry.missing.items():
            err_console.print(
                f"[yellow]missing[/yellow] {escape(entry.name)} {axis}: run `{escape(command)}`"
            )


def _render_figures(profile: Profile) -> None:
    """The figures the axes carry beside them (``Axis.figures``: e.g. the speaker-verification
    EER beside privacy), for the rows that have any; shown, not scored."""
    figures = [(a, f) for a in registered_axes() for f in a.figures]
    shown = [(a, f) for a, f in figures if any(f.value(b) is not None for b in profile.backbones)]
    if not shown:
        return
    table = Table(title="Beside the axes (not scored; higher is more trustworthy)")
    table.add_column("backbone", no_wrap=True)
    for axis, figure in shown:
        unit = "%" if figure.percent else figure.unit
        table.add_column(f"{axis.title}: {figure.title} {unit}", justify="right", no_wrap=True)
    for entry in profile.backbones:
        cells = [
            interval_text(entry, f.key, f.value(entry), as_percent=f.percent) for _, f in shown
        ]
        table.add_row(escape(entry.name), *cells)
    print_table(table, console=console)


@app.command(
    "profile",
    context_settings=_MANY,
    help="Collect every result under --runs into profile.json/.csv/.md, radar charts and report.html.",
)
def profile(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(*OUT, help="Output directory.")] = Path("report"),
    store: Annotated[
        Path | None,
        typer.Option(
            *STORE,
            help="Embedding store: its groups are profiled too (used when it exists).",
            show_default="cache.zarr, or trustser.toml's",
        ),
    ] = None,
    backbone: Annotated[
        list[str] | None,
        typer.Option(
            *BACKBONE, help="Backbones to profile: --backbone a b c (default: all found)."
        ),
    ] = None,
    runs: Annotated[
        list[Path] | None,
        typer.Option(
            *RUNS,
            help="Results directory; repeat it (-r a -r b), or name the output of a multi-corpus "
            "`trustser run`, for a profile across corpora (per-corpus rows and their mean).",
            show_default="runs, or trustser.toml's",
        ),
    ] = None,
    scale: Annotated[
        str, typer.Option("--scale", help=f"Normalisation: {', '.join(SCALE_MODES)}.")
    ] = "paper",
    attack: Annotated[
        str, typer.Option("--attack", help="Attack behind the safety axis: fgsm, pgd or noise.")
    ] = "fgsm",
    snr: Annotated[float, typer.Option("--snr", help="SNR (dB) of the safety-axis attack.")] = 45.0,
    paper: Annotated[
        list[str] | None,
        typer.Option(
            "--paper", help="Add the paper's Table 4 row(s), e.g. --paper 'Whisper tiny'."
        ),
    ] = None,
    charts: Annotated[bool, typer.Option("--charts/--no-charts", help="Draw radar charts.")] = True,
    bootstrap: Annotated[
        int,
        typer.Option(
            "--bootstrap",
            min=0,
            help="Speaker-bootstrap replicates behind every 95 % interval and paired "
            "comparison (0 = off).",
        ),
    ] = DEFAULT_REPLICATES,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap draws.")] = 0,
    privacy_score: PrivacyScoreOption = PRIVACY_SCORE,
) -> None:
    first, store = _runs_and_store(runs[0] if runs else None, store)
    chosen = [first, *(runs or [])[1:]]
    with user_errors(), console.status("collecting results") as status:
        result, files = run_profile(
            chosen if len(chosen) > 1 else first,
            out,
            store=store,
            backbones=_names(backbone, list(ctx.args), "--backbone"),
            scale=scale,
            attack=(attack, snr),
            paper=paper,
            charts=charts,
            progress=lambda message: status.update(message),
            bootstrap=bootstrap,
            seed=seed,
            options={"privacy_score": privacy_score},
        )
    _render_profile(result)
    console.print(
        f"wrote {len(files)} files to {out} (open {files.get('report', out / 'profile.md')})"
    )


def _render_recommendation(result: Recommendation) -> None:
    weights = ", ".join(f"{a.title} {result.weights[a.name]:.2f}" for a in registered_axes())
    table = Table(
        title=f"{result.scenario}: {result.description}",
        caption=f"weights: {weights}; {result.scale} scale",
    )
    table.add_column("rank", justify="right", no_wrap=True)
    table.add_column("backbone", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("reasons")
    for ranked in result.ranking:
        table.add_row(
            str(ranked.rank),
            escape(ranked.backbone),
            f"{ranked.score:.3f}",
            escape("\n".join(ranked.reasons)),
        )
    print_table(table, keys=2, console=console)
    console.print(f"choice: {escape(result.verdict)}")
    if result.paper_choice:
        console.print(f"the paper's Table 5 recommends {result.paper_choice}", style="dim")
    for choice in result.dev_choices:
        console.print(
            f"chosen on dev: {escape(choice['chosen'])} ({escape(choice['rule'])})", style="dim"
        )
    for name, why in result.excluded.items():
        err_console.print(f"[yellow]not ranked[/yellow] {escape(name)}: {escape(why)}")
    for text in (unweighed_text(result), saturated_text(result)):
        if text:
            console.print(f"[yellow]note[/yellow]: {escape(text)}")


@app.command(
    "recommend",
    context_settings=_MANY,
    help="Rank profiled backbones for a deployment scenario (the paper's Table 5) or custom weights.",
)
def recommend(
    ctx: typer.Context,
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            "--scenario",
            help="edge, cloud or critical; several: --scenario edge cloud (default: all).",
        ),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights", help="Custom weights, e.g. perf=3,safety=2,privacy=1 or perf=high."
        ),
    ] = None,
    profile: Annotated[
        Path | None,
        typer.Option("--profile", "-p", help="A profile.json (or its directory) to rank."),
    ] = None,
    runs: Annotated[
        Path | None,
        typer.Option(
            *RUNS,
            help="Results directory (without --profile).",
            show_default="runs, or trustser.toml's",
        ),
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option(
            *STORE,
            help="Embedding store (without --profile; used when it exists).",
            show_default="cache.zarr, or trustser.toml's",
        ),
    ] = None,
    backbone: Annotated[
        list[str] | None,
        typer.Option(*BACKBONE, help="Backbones to rank: --backbone a b c."),
    ] = None,
    scale: Annotated[str, typer.Option("--scale", help=f"{', '.join(SCALE_MODES)}.")] = "paper",
    paper: Annotated[
        list[str] | None, typer.Option("--paper", help="Rank the paper's Table 4 row(s) too.")
    ] = None,
    bootstrap: Annotated[
        int,
        typer.Option(
            "--bootstrap",
            min=0,
            help="Speaker-bootstrap replicates for how often each ranks first (without "
            "--profile; 0 = a point ranking).",
        ),
    ] = DEFAULT_REPLICATES,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap draws.")] = 0,
    privacy_score: Annotated[
        str | None,
        typer.Option(
            "--privacy-score",
            help=f"{PRIVACY_SCORE_HELP} Without --profile only (a saved profile keeps its own).",
            show_default=PRIVACY_SCORE,
        ),
    ] = None,
) -> None:
    extra = list(ctx.args)
    if scenario:  # --scenario edge cloud: click leaves "cloud" as an extra argument
        scenario = [*scenario, *(a for a in extra if a in SCENARIOS)]
        extra = [a for a in extra if a not in SCENARIOS]
    runs, store = _runs_and_store(runs, store)
    with user_errors():
        results = run_recommend(
            profile=profile,
            runs=runs,
            store=store,
            backbones=_names(backbone, extra, "--backbone"),
            scale=scale,
            scenarios=scenario,
            weights=weights,
            paper=paper,
            bootstrap=bootstrap,
            seed=seed,
            options=None if privacy_score is None else {"privacy_score": privacy_score},
        )
    for result in results:
        _render_recommendation(result)
