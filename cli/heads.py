"""`trustser heads fit` and `trustser heads probe`: heads and linear probes from the cache."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from trustser.cli._common import BACKBONE, RUNS, StoreOption, console, user_errors, workspace
from trustser.cli._tables import print_table
from trustser.heads.crossval import TaskResult, TrainingEvent
from trustser.heads.estimator import DEFAULT_MAX_EPOCHS, HeadClassifier, class_weight_policy
from trustser.heads.finetune import DEFAULT_BLOCK_LR
from trustser.heads.model import POOLINGS
from trustser.heads.precision import PRECISIONS
from trustser.heads.probe import ProbeEvent, ProbeResult
from trustser.heads.tasks import DEFAULT_MIN_STEPS
from trustser.heads.training import DATA_MODES, default_estimator, fit_heads
from trustser.variants import FitRequest, run_probes
from trustser.variants.finetune import finetuned
from trustser.workspace import stage_backbones

__all__ = ["app"]

app = typer.Typer(help="Train heads and probes from the embedding cache.", no_args_is_help=True)

BackboneOption = Annotated[
    list[str] | None,
    typer.Option(*BACKBONE, help="Store group(s) to read, repeatable (default: every group)."),
]
TaskOption = Annotated[
    str | None,
    typer.Option(
        "--task", "-t", help="emotion, gender, speaker, all, or a comma list (default: all)."
    ),
]
RunsOption = Annotated[
    Path | None,
    typer.Option(
        *RUNS, help="Results root: DIR/<backbone>/<task>/.", show_default="runs, or trustser.toml's"
    ),
]
FoldsOption = Annotated[
    str | None,
    typer.Option("--folds", help="Folds to run, by name or 1-based index (e.g. 1,3); default all."),
]
SeedOption = Annotated[
    int, typer.Option("--seed", help="Seed (weights init, shuffling, speaker split).")
]
PrecisionOption = Annotated[
    str,
    typer.Option(
        "--precision",
        help=f"Training precision, {' | '.join(PRECISIONS)}: fp32 = the reference eager float32 "
        "step; bf16 = bfloat16 frame network with the compiled layer mix; auto = bf16 only "
        "where the device has fast bfloat16 and the stage is shown not to move results "
        "(none yet: float32). Predictions are float32 either way.",
    ),
]
CompileOption = Annotated[
    bool,
    typer.Option(
        "--compile/--no-compile",
        help="Compile the bf16 path's layer mix with torch.compile (falls back to eager with a "
        "warning where it cannot); fp32 always runs eagerly.",
    ),
]


def _targets(
    store: Path | None, runs: Path | None, backbones: list[str] | None
) -> tuple[Path, Path, list[str]]:
    """The store, the runs directory and the backbones a command works on (flag > workspace)."""
    ws = workspace()
    store, runs = ws.resolve("store", store), ws.resolve("runs", runs)
    with user_errors():
        return store, runs, stage_backbones(store, backbones)


def fit_request(
    store: Path, runs: Path, estimator: HeadClassifier, folds: str | None, **settings: Any
) -> FitRequest:
    """How a command fits variants: its store, runs and folds, the heads' configured estimator
    and its device and seed; ``settings`` add the command's own (:class:`FitRequest`)."""
    return FitRequest(
        store=store,
        runs=runs,
        estimator=estimator,
        folds=folds,
        device=estimator.device,
        seed=estimator.seed,
        **settings,
    )


@app.command("fit")
def fit(
    store: StoreOption = None,
    backbone: BackboneOption = None,
    task: TaskOption = None,
    runs: RunsOption = None,
    folds: FoldsOption = None,
    epochs: Annotated[
        int | None,
        typer.Option(help="Epochs (default per task: emotion 30, gender 10, speaker 30)."),
    ] = None,
    min_steps: Annotated[
        int | None,
        typer.Option(
            "--min-steps",
            help=f"Train at least this many optimiser steps per fold, adding epochs on small "
            f"corpora (default {DEFAULT_MIN_STEPS} with the default epochs, none with --epochs; "
            "0 = the paper's epochs exactly).",
        ),
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(
            "--patience",
            help="After the epochs above, train on until this many epochs bring no better dev "
            "score (default: gender and speaker 10, emotion 0 = the epochs exactly).",
        ),
    ] = None,
    max_epochs: Annotated[
        int,
        typer.Option("--max-epochs", help="Cap on epochs when training with patience."),
    ] = DEFAULT_MAX_EPOCHS,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 5e-4,
    layer_lr: Annotated[
        float | None,
        typer.Option("--layer-lr", help="Learning rate of the layer weights (default: --lr)."),
    ] = None,
    weight_decay: Annotated[
        float, typer.Option("--weight-decay", help="Decoupled weight decay (AdamW); 0 = Adam.")
    ] = 0.0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Utterances per batch.")] = 64,
    hidden: Annotated[int, typer.Option(help="Hidden width of the head.")] = 128,
    dropout: Annotated[float, typer.Option(help="Dropout inside the head.")] = 0.0,
    pooling: Annotated[str, typer.Option(help=f"Frame pooling: {' | '.join(POOLINGS)}.")] = "mean",
    class_weight: Annotated[
        str, typer.Option("--class-weight", help="balanced (class-weighted loss) or none.")
    ] = "balanced",
    normalize: Annotated[
        bool,
        typer.Option(
            "--normalize/--no-normalize",
            help="Standardise each layer's features with training-fold statistics.",
        ),
    ] = True,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    seed: SeedOption = 0,
    precision: PrecisionOption = "auto",
    compile_: CompileOption = True,
    data: Annotated[
        str,
        typer.Option(
            help=f"{' | '.join(DATA_MODES)}: keep features in RAM when they fit, or stream."
        ),
    ] = "auto",
    finetune_top: Annotated[
        int,
        typer.Option(
            "--finetune-top",
            help="Fine-tune the backbone's top K encoder blocks with the emotion head, from the "
            "cache (the variant <backbone>@top<K>; gender/speaker then train on its features). "
            "0 = frozen backbone.",
        ),
    ] = 0,
    block_lr: Annotated[
        float,
        typer.Option("--block-lr", help="Adam learning rate of the fine-tuned blocks."),
    ] = DEFAULT_BLOCK_LR,
    block_dropout: Annotated[
        float | None,
        typer.Option(
            "--block-dropout", help="Dropout inside the fine-tuned blocks (default: checkpoint's)."
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--restart",
            help="Take folds an interrupted run finished with the same settings from disk "
            "(--restart trains every fold again).",
        ),
    ] = True,
) -> None:
    """Train the layer-weighted head on every fold, straight from the store.

    Without --backbone every group of the store is trained; without --task every task.
    --backbone NAME@top<K> (or --finetune-top K) trains the fine-tuned variant instead.
    """
    store, runs, names = _targets(store, runs, backbone)
    with user_errors():
        estimator = default_estimator(
            epochs=epochs,
            min_steps=min_steps,
            patience=patience,
            max_epochs=max_epochs,
            hidden=hidden,
            lr=lr,
            layer_lr=layer_lr,
            weight_decay=weight_decay,
            batch_size=batch_size,
            dropout=dropout,
            pooling=pooling,
            class_weight=class_weight_policy(class_weight),
            normalize=normalize,
            device=device,
            seed=seed,
            precision=precision,
            compile=compile_,
        )
    for name in names:
        with user_errors(), _FitProgress() as progress:
            variant = finetuned(name, finetune_top)
            if variant is None:
                fitted = fit_heads(
                    store,
                    name,
                    estimator,
                    task=task or "all",
                    runs=runs,
                    folds=folds,
                    data=data,
                    callback=progress.update,
                    resume=resume,
                )
            else:
                request = fit_request(
                    store,
                    runs,
                    estimator,
                    folds,
                    data=data,
                    tasks=tuple((task or "all").split(",")),
                    options={"block_lr": block_lr, "block_dropout": block_dropout},
                    callback=progress.update,
                    resume=resume,
                )
                fitted = variant.fit(request)
        _render_fit(fitted.tasks)
        not_measurable(fitted.skipped, name)


@app.command("probe")
def probe(
    store: StoreOption = None,
    backbone: BackboneOption = None,
    task: TaskOption = None,
    runs: RunsOption = None,
    folds: FoldsOption = None,
    c: Annotated[
        float, typer.Option("--C", help="Inverse L2 strength of the logistic regression.")
    ] = 1.0,
    max_iter: Annotated[int, typer.Option("--max-iter", help="lbfgs iterations.")] = 2000,
    seed: SeedOption = 0,
) -> None:
    """Logistic-regression probes on time-means, per layer and all layers, per fold.

    Without --backbone every group of the store is probed; without --task every task.
    """
    store, runs, names = _targets(store, runs, backbone)
    for name in names:
        with user_errors(), _ProbeProgress() as progress:
            result = run_probes(
                store,
                name,
                task=task or "all",
                runs=runs,
                folds=folds,
                C=c,
                max_iter=max_iter,
                seed=seed,
                callback=progress.update,
            )
        _render_probe(result)
        not_measurable(result.skipped, name)


class _ProbeProgress:
    """A bar per task counting the logistic-regression fits (layers × folds)."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("probes"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._bars: dict[str, int] = {}

    def __enter__(self) -> _ProbeProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def update(self, event: ProbeEvent) -> None:
        if event.task not in self._bars:
            self._bars[event.task] = self._progress.add_task(
                f"probe {event.task}", total=event.total
            )
        self._progress.update(self._bars[event.task], completed=event.done)


class _FitProgress:
    """A bar per fold that advances per epoch and shows the dev UAR."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("epochs {task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._bars: dict[tuple[str, str], int] = {}

    def __enter__(self) -> _FitProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def update(self, event: TrainingEvent) -> None:
        key = (event.task, event.fold)
        if event.kind == "fold_start":
            self._bars[key] = self._progress.add_task(
                f"{event.task} {event.fold} ({event.fold_index + 1}/{event.num_folds})",
                total=event.epochs,
                status="",
            )
        elif event.kind == "epoch":
            status = "" if event.dev_uar is None else f"dev UAR {event.dev_uar:.3f}"
            self._progress.update(  # with patience, training may run past its budget
                self._bars[key],
                completed=event.epoch,
                total=max(event.epochs, event.epoch),
                status=status,
            )
        elif event.kind == "fold_end":
            self._progress.update(
                self._bars[key], status=f"dev {event.dev_uar:.3f}  test UAR {event.test_uar:.3f}"
            )


def _render_fit(tasks: list[TaskResult]) -> None:
    for task in tasks:
        m = task.metrics
        variant = m.get("variant") or {}
        trained = f"; trained: {variant['trained']}" if variant.get("trained") else ""
        trainable = m.get("trainable_parameters")
        table = Table(
            title=f"{task.task} heads · {task.backbone}",
            caption=f"{len(task.labels)} classes; features read from {task.data_mode}{trained}"
            + (f"; {trainable:,} trainable parameters" if trainable else ""),
        )
        columns = ("fold", "best / trained", "dev UAR", "test UAR", "test acc", "test macro-F1")
        for column in columns:
            table.add_column(column, justify="left" if column == "fold" else "right", no_wrap=True)
        for fold in task.folds:
            table.add_row(
                fold.fold,
                f"{fold.best_epoch} / {fold.epochs_trained}"
                + (" (cap)" if fold.stop_reason == "cap" else ""),
                f"{fold.dev['uar']:.3f}",
                f"{fold.test['uar']:.3f}",
                f"{fold.test['weighted_accuracy']:.3f}",
                f"{fold.test['macro_f1']:.3f}",
            )
        for stat in ("mean", "std"):
            table.add_row(
                stat if stat == "mean" else "sd",
                f"{m['best_epoch_mean']:.1f}" if stat == "mean" else "",
                *(
                    f"{m[f'{key}_{stat}']:.3f}"
                    for key in ("dev_uar", "test_uar", "test_accuracy", "test_macro_f1")
                ),
                style="bold",
                end_section=stat == "std",
            )
        table.rows[len(task.folds) - 1].end_section = True
        print_table(table, console=console)
        weights = Table(title=f"{task.task}: learned layer weights (softmax, sum 1)")
        weights.add_column("layer", justify="right", no_wrap=True)
        for fold in task.folds:
            weights.add_column(fold.fold, justify="right", no_wrap=True)
        weights.add_column("mean", justify="right", style="bold", no_wrap=True)
        for layer, mean in enumerate(m["layer_weights_mean"]):
            weights.add_row(
                str(layer), *(f"{f.layer_weights[layer]:.3f}" for f in task.folds), f"{mean:.3f}"
            )
        print_table(weights, console=console)
        warn_at_cap(task.task, m)
        resumed = f"; folds {', '.join(task.resumed)} resumed from disk" if task.resumed else ""
        console.print(f"wrote {task.directory} ({task.seconds:.1f} s{resumed})")


def not_measurable(skipped: Mapping[str, str], model: str) -> None:
    """One line per task skipped because the corpus cannot measure it (not an error: a bare
    command fits what it can; the profile shows the cell as not measurable)."""
    for task, reason in skipped.items():
        console.print(
            Text.assemble(
                ("note: ", "yellow"),
                f"{task} skipped for {model}, not measurable: {reason}",
            )
        )


def warn_at_cap(task: str, metrics: dict[str, Any]) -> None:
    """Say which folds stopped at the epoch cap while dev was still improving."""
    capped = metrics.get("folds_at_cap") or []
    if capped:
        console.print(
            f"[yellow]{task}: fold(s) {', '.join(capped)} stopped at the epoch cap while dev "
            "was still improving (not shown to have converged); raise --max-epochs.[/yellow]"
        )


def _render_probe(result: ProbeResult) -> None:
    for task in result.tasks:
        table = Table(title=f"{task.task} linear probes · {result.backbone}")
        for column in ("features", "dev UAR", "test UAR", "test acc"):
            table.add_column(
                column, justify="left" if column == "features" else "right", no_wrap=True
            )
        chosen = task.dev_chosen
        layers = ",".join(str(layer) for layer in chosen["layers"])
        rows = [("all layers", task.all_layers)]
        rows += [(f"layer {v['layer']}", v) for v in task.layers]
        rows += [(f"chosen on dev * ({layers})", chosen)]
        for index, (label, values) in enumerate(rows):
            table.add_row(
                label,
                f"{values['dev_uar_mean']:.3f} ± {values['dev_uar_std']:.3f}",
                f"{values['test_uar_mean']:.3f} ± {values['test_uar_std']:.3f}",
                f"{values['test_accuracy_mean']:.3f} ± {values['test_accuracy_std']:.3f}",
                end_section=index in (0, len(rows) - 2),
            )
        print_table(table, console=console)
    console.print(
        f"wrote {result.path} ({result.seconds:.1f} s); * per fold, the layer with the best dev "
        "UAR (the fold's choice in brackets), scored on that fold's test speakers",
        soft_wrap=False,
    )
