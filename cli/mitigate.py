"""`trustser mitigate privacy|fairness|smoothing`: mitigations as variants of each backbone."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from trustser.attacks.runner import run_attack
from trustser.cli._common import BACKBONE, RUNS, StoreOption, console, user_errors, workspace
from trustser.cli._progress import AttackBar
from trustser.cli.heads import _FitProgress, fit_request
from trustser.cost import run_cost
from trustser.formatting import percent
from trustser.heads.training import default_estimator
from trustser.variants import FitRequest, Variant, VariantFit
from trustser.variants.fairness import DEFAULT_UAR_FLOOR
from trustser.variants.fairness import KIND as FAIRNESS
from trustser.variants.privacy import DEFAULT_LAMBDAS
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
    and folds, and how the heads train (epochs, device, seed)."""

    store: Path | None
    runs: Path | None
    backbones: list[str] | None
    folds: str | None
    device: str = "auto"
    seed: int = 0
    epochs: int | None = None


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
            epochs=targets.epochs, device=targets.device, seed=targets.seed
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
            yield variant, fitted, request


def _pct(value: float | None) -> str:
    return "—" if value is None else percent(value)


@app.command("privacy", context_settings=EXTRA)
def privacy(
    ctx: typer.Context,
    store: StoreOption = None,
    backbone: BackboneOption = None,
    lambdas: Annotated[
        list[float],
        typer.Option(
            "--lambda",
            help="Adversary weight λ; several values sweep: --lambda 0.1 0.3 1.",
        ),
    ] = _LAMBDAS,
    runs: RunsOption = None,
    folds: FoldsOption = None,
    epochs: EpochsOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
) -> None:
    """Emotion heads trained against a gender adversary (gradient reversal, weight λ), judged by
    fresh gender, speaker-ID and probe attackers on the encoder's output (<backbone>@privacy-l<λ>).
    """
    values = _numbers(lambdas, ctx.args, "--lambda")
    table = Table(title="privacy mitigation: UAR against fresh attackers (test, fold mean)")
    for column in (
        "variant",
        "λ",
        "emotion UAR",
        "gender head acc.",
        "gender probe acc.",
        "speaker-ID acc.",
    ):
        table.add_column(column)
    targets = _Targets(store, runs, backbone, folds, device, seed, epochs)
    fits = _fitted(targets, lambda name: [PRIVACY.variant(name, lam=lam) for lam in values])
    for variant, result, _ in fits:
        emotion, gender, speaker = result.tasks
        table.add_row(
            variant.name,
            f"{variant.params['lam']:g}",
            _pct(emotion.metrics["test_uar_mean"]),
            _pct(gender.metrics["test_accuracy_mean"]),
            _pct((result.probe or {}).get("gender_test_accuracy_mean")),
            _pct(speaker.metrics["test_accuracy_mean"]),
        )
    console.print(table)
    console.print(
        "Fresh attackers trained on the encoder's output (never the training adversary; its dev "
        "accuracy is in each head.json). Gender at inference: not needed."
    )


@app.command("fairness")
def fairness(
    store: StoreOption = None,
    backbone: BackboneOption = None,
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
    runs: RunsOption = None,
    folds: FoldsOption = None,
    epochs: EpochsOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
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
    targets = _Targets(store, runs, backbone, folds, device, seed, epochs)
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
