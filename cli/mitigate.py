"""`trustser mitigate privacy|erasure|fairness|smoothing`: mitigations as variants of each
backbone."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from trustser.attacks.runner import run_attack
from trustser.cli._common import BACKBONE, RUNS, StoreOption, console, user_errors, workspace
from trustser.cli._progress import AttackBar
from trustser.cli.heads import (
    CompileOption,
    PrecisionOption,
    _FitProgress,
    fit_request,
)
from trustser.cost import run_cost
from trustser.formatting import percent
from trustser.heads.probe import PROBE_ATTACKERS
from trustser.heads.training import default_estimator
from trustser.runs import RunLayout
from trustser.variants import DevChoice, FitRequest, Variant, VariantFit
from trustser.variants import parse as parse_variant
from trustser.variants.attackers import GENDER_HEAD, ROLES, privacy_figures, trade_off
from trustser.variants.erasure import CONCEPTS
from trustser.variants.erasure import KIND as ERASURE
from trustser.variants.fairness import DEFAULT_UAR_FLOOR
from trustser.variants.fairness import KIND as FAIRNESS
from trustser.variants.privacy import DEFAULT_LAMBDAS, DEV_UAR_FLOOR, choose_lambda, with_control
from trustser.variants.privacy import KIND as PRIVACY
from trustser.variants.smoothing import DEFAULT_NOISE_SNR, DEFAULT_SAMPLES
from trustser.variants.smoothing import KIND as SMOOTHING
from trustser.workspace import stage_backbones

app = typer.Typer(
    help="Mitigations trained from the cache, each a variant <backbone>@<tag> of its backbone.",
    no_args_is_help=True,
)
_ATTACK_SNRS = [45.0]  # typer needs list defaults; never mutated
_LAMBDAS = list(DEFAULT_LAMBDAS)
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": False}

BackboneOption = Annotated[
    list[str] | None,
    typer.Option(*BACKBONE, help="Store group(s), repeatable (default: every group)."),
]
RunsOption = Annotated[
    Path | None,
    typer.Option(*RUNS, help="Results root (DIR/<backbone>@<tag>/).", show_default="runs"),
]
FoldsOption = Annotated[
    str | None,
    typer.Option("--folds", help="Folds to run, by name or 1-based index (e.g. 1,3); default all."),
]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed.")]
EpochsOption = Annotated[
    int | None, typer.Option(help="Epochs (default per task, with the heads' step floor).")
]


def _numbers(first: list[float], extra: list[str], flag: str) -> list[float]:
    """``--lambda 0.1 0.3 1``: click binds the first value and leaves the rest as arguments."""
    values = list(first)
    for token in extra:
        try:
            values.append(float(token))
        except ValueError:
            raise typer.BadParameter(
                f"unexpected argument {token!r}; only numbers may follow {flag}."
            ) from None
    return values


@dataclass(frozen=True)
class _Targets:
    """What every mitigation command works on: the store, runs, backbones (flag > workspace)
    and folds, and how the heads train (epochs, device, seed, precision, compile)."""

    store: Path | None
    runs: Path | None
    backbones: list[str] | None
    folds: str | None
    device: str = "auto"
    seed: int = 0
    epochs: int | None = None
    precision: str = "auto"
    compile: bool = True


def _target_options(
    store: StoreOption = None,
    backbone: BackboneOption = None,
    runs: RunsOption = None,
    folds: FoldsOption = None,
    epochs: EpochsOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    precision: PrecisionOption = "auto",
    compile_: CompileOption = True,
) -> _Targets:
    """The options of every mitigation command that trains heads, as one :class:`_Targets`."""
    return _Targets(store, runs, backbone, folds, device, seed, epochs, precision, compile_)


def _trains_heads(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` the options of :func:`_target_options` (``--store`` and ``--backbone``
    first, the rest after its own) and call it with them as ``targets``: one place declares
    them for every command."""
    shared = list(inspect.signature(_target_options, eval_str=True).parameters.values())
    own = [
        p
        for p in inspect.signature(command, eval_str=True).parameters.values()
        if p.name != "targets"
    ]
    context = [p for p in own if p.annotation is typer.Context]
    own = [p for p in own if p.annotation is not typer.Context]
    parameters = context + shared[:2] + own + shared[2:]

    @functools.wraps(command)
    def run(**options: Any) -> None:
        targets = _target_options(**{p.name: options.pop(p.name) for p in shared})
        command(targets=targets, **options)

    run.__signature__ = inspect.Signature(parameters, return_annotation=None)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    return run


def _fitted(
    targets: _Targets,
    variants_of: Callable[[str], list[Variant]],
    **settings: Any,
) -> Iterator[tuple[Variant, VariantFit, FitRequest]]:
    """Every mitigation command's loop: resolve the targets, then fit each variant
    ``variants_of(backbone)`` names, with a progress bar per fold; yields what was fitted.
    ``settings`` are the command's own request fields. Bad input ends the command as one line."""
    ws = workspace()
    store, runs = ws.resolve("store", targets.store), ws.resolve("runs", targets.runs)
    with user_errors():
        names = stage_backbones(store, targets.backbones)
        estimator = default_estimator(
            epochs=targets.epochs,
            device=targets.device,
            seed=targets.seed,
            precision=targets.precision,
            compile=targets.compile,
        )
    for name in names:
        with user_errors():
            planned = variants_of(name)
        for variant in planned:
            with user_errors(), _FitProgress() as progress:
                request = fit_request(
                    store, runs, estimator, targets.folds, callback=progress.update, **settings
                )
                fitted = variant.fit(request)
            _fit_notes(fitted.notes)
            yield variant, fitted, request


def _fit_notes(notes: list[str]) -> None:
    """What a variant's fit says the user should know (a mitigation with nothing to change)."""
    for note in notes:
        console.print(Text.assemble(("note: ", "yellow"), note))


def _pct(value: float | None) -> str:
    return "—" if value is None else percent(value)


@app.command("privacy", context_settings=EXTRA)
@_trains_heads
def privacy(
    ctx: typer.Context,
    lambdas: Annotated[
        list[float],
        typer.Option(
            "--lambda",
            help="Adversary weight λ; several values sweep: --lambda 0.1 0.3 1 (the λ = 0 "
            "control is always fitted too).",
        ),
    ] = _LAMBDAS,
    uar_floor: Annotated[
        float,
        typer.Option(
            "--uar-floor",
            help="Choosing λ on dev: largest dev UAR drop below the λ = 0 control (0.02 = 2 points).",
        ),
    ] = DEV_UAR_FLOOR,
    *,
    targets: _Targets,
) -> None:
    """Emotion heads trained against a gender adversary (gradient reversal, weight λ), with the
    λ = 0 control, judged by fresh gender, speaker-ID and probe attackers on the encoder's output
    (<backbone>@privacy-l<λ>); λ is chosen on dev, test figures are reported beside it."""
    values = with_control(_numbers(lambdas, ctx.args, "--lambda"))
    fits = _fitted(targets, lambda name: [PRIVACY.variant(name, lam=lam) for lam in values])
    by_base: dict[str, list[tuple[Variant, FitRequest]]] = {}
    for variant, _, request in fits:
        by_base.setdefault(variant.base, []).append((variant, request))
    for base, fitted in by_base.items():
        layout = fitted[0][1].layout
        offs = [trade_off(layout, variant) for variant, _ in fitted]
        choice = choose_lambda(
            [(v, o["dev"]) for (v, _), o in zip(fitted, offs, strict=True)], uar_floor=uar_floor
        )
        _privacy_tables(base, layout, offs, choice)


def _lam(name: str) -> str:
    variant = parse_variant(name)
    return f"{variant.params['lam']:g}" if variant is not None else "base"


def _delta(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:+.1f}"


def _privacy_tables(
    base: str, layout: RunLayout, offs: list[dict[str, Any]], choice: DevChoice | None
) -> None:
    """The sweep of one backbone: dev figures (which choose λ), then test figures (reported)."""
    dev = Table(title=f"{base}: privacy over λ on DEV clips (these choose λ; fold means)")
    for column in (
        "λ",
        "emotion UAR",
        "strongest gender attacker",
        "acc.",
        "Δ UAR vs control",
        "Δ acc. vs control",
        "chosen",
    ):
        dev.add_column(
            column, justify="left" if column in ("λ", "strongest gender attacker") else "right"
        )
    for off in offs:
        d = off["dev"]
        control = d["vs_control"] or {}
        dev.add_row(
            _lam(off["variant"]),
            _pct(d["uar"]),
            d["attacker"] or "—",
            _pct(d["attacker_accuracy"]),
            _delta(control.get("uar")),
            _delta(control.get("attacker_accuracy")),
            "◀" if choice is not None and choice.chosen == off["variant"] else "",
        )
    console.print(dev)
    test = Table(
        title=f"{base}: TEST figures for every λ (reported, never used to choose; fold means)"
    )
    for column in (
        "λ",
        "emotion UAR",
        "gender head acc.",
        "gender probe acc.",
        "speaker-ID acc.",
        "Δ UAR vs base / control",
        "Δ strongest attacker vs base / control",
    ):
        test.add_column(column, justify="left" if column == "λ" else "right")
    base_test = privacy_figures(layout, base, "test")
    test.add_row(
        "base",
        _pct(base_test["uar"]),
        _pct(base_test["attackers"].get(GENDER_HEAD)),
        _pct(base_test["attackers"].get(PROBE_ATTACKERS[None])),
        _pct(base_test["speaker_head"]),
        "",
        "",
        end_section=True,
    )
    for off in offs:
        t = off["test"]
        vs_base, vs_control = t["vs_base"], t["vs_control"] or {}
        test.add_row(
            _lam(off["variant"]),
            _pct(t["uar"]),
            _pct(t["attackers"].get(GENDER_HEAD)),
            _pct(t["attackers"].get(PROBE_ATTACKERS[None])),
            _pct(t["speaker_head"]),
            f"{_delta(vs_base['uar'])} / {_delta(vs_control.get('uar'))}",
            f"{_delta(vs_base['attacker_accuracy'])} / {_delta(vs_control.get('attacker_accuracy'))}",
        )
    console.print(test)
    if choice is None:
        console.print("No λ chosen: the dev figures are incomplete (run every attacker).")
    else:
        console.print(f"Chosen on dev: [bold]{choice.chosen}[/bold] — {choice.rule}.")
    console.print(
        "Changes in points. Control: λ = 0, the same encoder trained for emotion alone (the "
        "change against it is the adversary's). Fresh attackers trained on the encoder's output, "
        "never the training adversary (its dev accuracy is in each head.json)."
    )
    _note_caps(offs)


def _note_caps(offs: list[dict[str, Any]]) -> None:
    for off in offs:
        for task, folds_at_cap in off["test"]["attackers_at_cap"].items():
            console.print(
                f"[yellow]{off['variant']}: the {task} attacker stopped at the epoch cap in "
                f"fold(s) {', '.join(folds_at_cap)} while still improving.[/yellow]"
            )


@app.command("erasure")
@_trains_heads
def erasure(
    concept: Annotated[
        str, typer.Option("--concept", help=f"What to erase: {', '.join(CONCEPTS)}.")
    ] = "gender",
    *,
    targets: _Targets,
) -> None:
    """LEACE concept erasure (<backbone>@erase-gender): gender erased from every hidden state in
    closed form, fitted per fold on the training clips; emotion heads retrained on the erased
    features; judged by fresh linear and non-linear attackers."""
    if concept not in CONCEPTS:
        raise typer.BadParameter(f"--concept {concept!r}: choose {', '.join(CONCEPTS)}.")
    fits = _fitted(targets, lambda name: [ERASURE.variant(name, concept=concept)])
    for variant, _, request in fits:
        off = trade_off(request.layout, variant)
        base = {role: privacy_figures(request.layout, variant.base, role) for role in ROLES}
        table = Table(title=f"{variant.name}: attackers against the erased representation")
        for column in ("attacker", "kind", "base dev", "erased dev", "base test", "erased test"):
            table.add_column(column, justify="left" if column in ("attacker", "kind") else "right")
        table.add_row(
            "emotion UAR (the cost)",
            "—",
            *(_pct(x) for x in (base["dev"]["uar"], off["dev"]["uar"])),
            *(_pct(x) for x in (base["test"]["uar"], off["test"]["uar"])),
            end_section=True,
        )
        for name, linear in _ATTACKER_KINDS.items():
            table.add_row(
                name,
                linear,
                *(
                    _pct(figures["attackers"].get(name))
                    for figures in (base["dev"], off["dev"], base["test"], off["test"])
                ),
            )
        table.add_row(
            "speaker-ID head",
            "non-linear",
            *(
                _pct(figures["speaker_head"])
                for figures in (base["dev"], off["dev"], base["test"], off["test"])
            ),
        )
        console.print(table)
        console.print(
            "LEACE leaves no *linear* classifier better than a constant on the clips it was "
            "fitted on; the probes measure that on unseen speakers, the heads what a non-linear "
            "attacker still reads. Fold means; dev and test labelled."
        )
        _note_caps([off])


_ATTACKER_KINDS = {
    GENDER_HEAD: "non-linear",
    PROBE_ATTACKERS[None]: "linear",
    PROBE_ATTACKERS["dev"]: "linear",
}


@app.command("fairness")
@_trains_heads
def fairness(
    method: Annotated[
        str,
        typer.Option(
            help="post (per-gender offsets, needs gender at inference), reweight, or both."
        ),
    ] = "both",
    uar_floor: Annotated[
        float,
        typer.Option("--uar-floor", help="post: largest dev UAR drop allowed (0.02 = 2 points)."),
    ] = DEFAULT_UAR_FLOOR,
    *,
    targets: _Targets,
) -> None:
    """Close the gender gap in emotion errors: post-processing offsets fitted on dev over the
    trained emotion heads (<backbone>@fair-post) and/or gender × class reweighting
    (<backbone>@fair-reweight)."""
    if method not in ("post", "reweight", "both"):
        raise typer.BadParameter(f"--method {method!r}: choose post, reweight or both.")
    methods = ["post", "reweight"] if method == "both" else [method]
    table = Table(title="fairness mitigation (test, fold mean)")
    for column in (
        "variant",
        "emotion UAR",
        "multiclass EO: base → variant",
        "gender at inference",
    ):
        table.add_column(column)
    fits = _fitted(
        targets,
        lambda name: [FAIRNESS.variant(name, method=m) for m in methods],
        options={"uar_floor": uar_floor},
    )
    for variant, result, _ in fits:
        needed = "needed" if variant.needs_gender_at_inference else "not needed"
        metrics = result.emotion_metrics
        before = metrics.get("test_eo_multiclass_before_mean")
        after = metrics.get("test_eo_multiclass_after_mean")
        gap = f"{_pct(before)} → {_pct(after)}" if before is not None else "`trustser profile`"
        table.add_row(variant.name, _pct(metrics["test_uar_mean"]), gap, needed)
    console.print(table)
    console.print(
        "Fairness gaps with intervals: `trustser profile` (the fairness axis reads each "
        "variant's predictions); the offsets are fitted on dev, the figures are on test."
    )


@app.command("smoothing", context_settings=EXTRA)
def smoothing(
    ctx: typer.Context,
    store: StoreOption = None,
    backbone: BackboneOption = None,
    noise_snr: Annotated[
        float, typer.Option("--noise-snr", help="SNR (dB) of the smoothing noise.")
    ] = DEFAULT_NOISE_SNR,
    samples: Annotated[
        int, typer.Option("--samples", help="Noisy copies N averaged per clip (N× inference).")
    ] = DEFAULT_SAMPLES,
    snr: Annotated[
        list[float], typer.Option("--snr", help="Attack SNR(s) in dB: --snr 45 35.")
    ] = _ATTACK_SNRS,
    eot: Annotated[
        int | None,
        typer.Option("--eot", help="Noise draws each adaptive gradient averages (default 8)."),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="PGD steps.")] = 10,
    runs: RunsOption = None,
    folds: FoldsOption = None,
    device: DeviceOption = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Clips per batch.")] = 8,
    seed: SeedOption = 0,
) -> None:
    """Randomized smoothing at inference (<backbone>@smooth-s<s>-n<N>): clean evaluation, FGSM
    and PGD adaptive (EOT) and plain, and the N× cost. Uses the backbone's trained emotion heads.
    """
    attack_snrs = _numbers(snr, ctx.args, "--snr")
    table = Table(title="randomized smoothing: ASR (fold mean), adaptive vs plain")
    for column in ("variant", "emotion UAR", "attack", "adaptive ASR", "plain ASR", "GMACs/clip"):
        table.add_column(column)
    fits = _fitted(
        _Targets(store, runs, backbone, folds, device, seed),
        lambda name: [SMOOTHING.variant(name, snr_db=noise_snr, samples=samples)],
        batch_size=batch_size,
    )
    for variant, result, request in fits:
        with user_errors(), AttackBar() as bar:
            attacks = [
                run_attack(
                    request.store,
                    variant.name,
                    runs=request.runs,
                    method=method,
                    snr_db=attack_snrs,
                    folds=folds,
                    device=device,
                    batch_size=batch_size,
                    seed=seed,
                    steps=steps,
                    eot_samples=eot,
                    callback=bar.update,
                )
                for method in ("fgsm", "pgd")
            ]
            cost = run_cost(variant.name, runs=request.runs, device=device)[0]
        for run in attacks:
            for attack in run.results:
                plain = (attack.settings.get("plain_attack") or {}).get("asr_mean")
                table.add_row(
                    variant.name,
                    _pct(result.emotion_metrics["test_uar_mean"]),
                    f"{attack.method} @ {attack.snr_db:g} dB",
                    _pct(attack.asr_mean),
                    _pct(plain),
                    f"{cost.gmacs:.3g}",
                )
    console.print(table)
