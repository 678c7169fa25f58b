"""Train a task's heads on every fold straight from the embedding store, and write the run.

``fit_heads(store, backbone, task="emotion")`` opens the store group, builds the task's splits
(:mod:`trustser.heads.tasks`), loads the features it needs into RAM when they fit (else streams
length-bucketed batches from disk), trains one :class:`~trustser.heads.estimator.HeadClassifier`
per fold and writes ``<runs>/<backbone>/<task>/`` in the shared results layout
(:class:`trustser.runs.RunLayout`): ``config.json``, ``metrics.json``, ``predictions.csv`` and
``<fold>/head.safetensors`` + ``head.json``. The backbone is never loaded.

With ``finetune_top=K`` (or a ``<backbone>@top<K>`` name) the run is the fine-tuned *variant*
(:mod:`trustser.heads.finetune`): the emotion task trains the top K blocks with the head from
the cache (the backbone is loaded only to copy its top blocks, never run) and writes
``<runs>/<backbone>@top<K>/emotion/``, with each fold's trained blocks beside its head; the
gender and speaker tasks train fresh heads on the variant's hidden states (the frozen lower
layers plus the fold's fine-tuned blocks), what an adversary holding that model's embeddings
infers.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trustser._validation import check_choice, check_probability
from trustser._version import __version__
from trustser.backbones.top_blocks import check_top_blocks_k
from trustser.heads.data import (
    FeatureSet,
    FeatureSource,
    PackedFeatures,
    StoreGroupError,
    available_memory,
    feature_bytes,
)
from trustser.heads.estimator import HeadClassifier, class_weight_policy
from trustser.heads.finetune import (
    DEFAULT_BLOCK_LR,
    FineTuneClassifier,
    VariantSource,
    blocks_fold,
    finetune_k,
    load_variant_blocks,
    save_top_blocks,
    store_top_blocks,
    variant_features,
)
from trustser.heads.model import save_head
from trustser.heads.tasks import (
    DEFAULT_MIN_STEPS,
    Split,
    Task,
    build_task,
    parse_tasks,
    select_splits,
)
from trustser.manifest import Manifest
from trustser.metrics._common import mean_std
from trustser.metrics.performance import performance_summary
from trustser.runs import ModelName, RunLayout, finetune_variant, write_json
from trustser.store.format import DTYPES, frame_row_bytes

__all__ = [
    "DATA_MODES",
    "FitResult",
    "FoldResult",
    "StoreGroupError",
    "TaskResult",
    "TrainingEvent",
    "choose_data_mode",
    "fit_heads",
    "fit_task",
]

DATA_MODES = ("auto", "memory", "stream")


@dataclass(frozen=True)
class TrainingEvent:
    """Progress of :func:`fit_heads`, for progress bars. ``kind`` is ``"fold_start"``,
    ``"epoch"`` or ``"fold_end"``; ``fold_index`` is 0-based."""

    kind: str
    task: str
    fold: str
    fold_index: int
    num_folds: int
    epoch: int = 0
    epochs: int = 0
    dev_uar: float | None = None
    test_uar: float | None = None


@dataclass(frozen=True)
class FoldResult:
    fold: str
    best_epoch: int
    layer_weights: list[float]
    test: dict[str, Any]  # performance_summary on the test part
    dev: dict[str, Any]  # performance_summary on the dev part (best epoch)
    history: list[dict[str, Any]]
    sizes: dict[str, int]
    ids_sha256: str
    seconds: float
    head_path: Path

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "fold": self.fold,
            "best_epoch": self.best_epoch,
            "layer_weights": self.layer_weights,
            "n_train": self.sizes["train"],
            "n_dev": self.sizes["dev"],
            "n_test": self.sizes["test"],
            "ids_sha256": self.ids_sha256,
            "fit_seconds": self.seconds,
            "history": self.history,
        }
        for role, summary in (("test", self.test), ("dev", self.dev)):
            out[f"{role}_uar"] = summary["uar"]
            out[f"{role}_accuracy"] = summary["weighted_accuracy"]
            out[f"{role}_macro_f1"] = summary["macro_f1"]
            out[f"{role}_per_class_recall"] = summary["per_class_recall"]
            out[f"{role}_confusion"] = summary["confusion"]
        return out


@dataclass(frozen=True)
class TaskResult:
    """One task's heads over its folds; ``metrics`` is what ``metrics.json`` holds."""

    task: str
    backbone: str
    labels: tuple[str, ...]
    directory: Path
    folds: list[FoldResult]
    metrics: dict[str, Any]
    data_mode: str
    seconds: float


@dataclass(frozen=True)
class FitResult:
    store: Path
    backbone: str
    data_mode: str
    tasks: list[TaskResult] = field(default_factory=list)
    seconds: float = 0.0


def choose_data_mode(
    group: Any,
    ids: Sequence[str],
    *,
    mode: str = "auto",
    memory_fraction: float = 0.5,
    normalize: bool = True,
) -> tuple[str, int]:
    """``("memory" | "stream", bytes in RAM)``: keep the features in RAM when they fit.

    In RAM the features keep the store's dtype (:class:`PackedFeatures`: float16, or int8
    codes with their scales) and are widened to float32 one batch at a time; their size is the
    group's exact frame counts (``num_frames(ids)``) times the bytes of one stored frame row
    (float32 rows for a source without a store ``dtype``), else from the manifest durations, capped at the extraction's
    ``max_seconds``, times the frame rate. A normalising head standardises each batch as it is
    widened, so ``normalize`` needs no second copy (the argument is kept for callers).
    ``auto`` loads when the need is at most ``memory_fraction`` of the memory available now;
    ``memory`` / ``stream`` force the choice.
    """
    del normalize
    check_choice("data", mode, DATA_MODES)
    check_probability("memory_fraction", memory_fraction)
    if hasattr(group, "num_frames"):
        frames = int(np.sum(group.num_frames(list(ids))))
        dtype = getattr(group, "dtype", None)
        if isinstance(dtype, str) and dtype in DTYPES:
            size = frames * frame_row_bytes(dtype, group.num_layers, group.dim)
        else:
            size = feature_bytes(frames, group.num_layers, group.dim)
    else:
        manifest = group.manifest()
        frame_rate = float(group.provenance.get("frame_rate") or 50.0)
        max_seconds = group.provenance.get("max_seconds")
        frames = 0
        for utterance_id in ids:
            seconds = manifest[utterance_id].duration
            if max_seconds:
                seconds = min(seconds, float(max_seconds))
            frames += int(np.ceil(seconds * frame_rate)) + 1
        size = feature_bytes(frames, group.num_layers, group.dim)
    if mode != "auto":
        return mode, size
    free = available_memory()
    return ("memory" if free is not None and size <= memory_fraction * free else "stream"), size


def fit_heads(
    store: str | os.PathLike,
    backbone: str | None = None,
    *,
    task: str = "emotion",
    runs: str | os.PathLike = "runs",
    folds: str | Sequence[str] | None = None,
    epochs: int | None = None,
    min_steps: int | None = None,
    hidden: int = 128,
    lr: float = 5e-4,
    layer_lr: float | None = None,
    weight_decay: float = 0.0,
    batch_size: int = 64,
    dropout: float = 0.0,
    pooling: str = "mean",
    class_weight: str | None = "balanced",
    normalize: bool = True,
    device: str = "auto",
    seed: int = 0,
    data: str = "auto",
    memory_fraction: float = 0.5,
    callback: Callable[[TrainingEvent], None] | None = None,
    finetune_top: int = 0,
    block_lr: float = DEFAULT_BLOCK_LR,
    block_dropout: float | None = None,
) -> FitResult:
    """Fit heads for ``task`` (``emotion``, ``gender``, ``speaker``, ``all`` or a comma list)
    on every fold (or ``folds``: names or 1-based indices) and write the runs.

    ``finetune_top=K`` (or ``backbone="<group>@top<K>"``) fits the fine-tuned variant: emotion
    trains the top K blocks too (learning rate ``block_lr``; ``block_dropout`` overrides the
    checkpoint's dropout), gender and speaker train on the variant's features (those need the
    variant's emotion run first; ``task="all"`` runs emotion first). 0 is the frozen backbone.

    ``epochs=None`` uses each task's default (emotion 30, gender 10, speaker 30);
    ``min_steps=None`` then sets a floor of :data:`~trustser.heads.tasks.DEFAULT_MIN_STEPS`
    optimiser steps (it only lengthens training on small corpora); with an explicit ``epochs``
    it means no floor, so ``epochs=30`` trains exactly 30 epochs, as the paper. ``data``:
    ``auto`` keeps the needed features in RAM when they fit, ``memory`` forces it, ``stream``
    reads batches from the store every epoch. ``class_weight``: ``"balanced"``, or ``"none"``
    (as typed on a command line) or ``None`` for an unweighted loss.
    """
    from trustser.store import open_group

    start = time.perf_counter()
    check_choice("data", data, DATA_MODES)
    class_weight = class_weight_policy(class_weight)
    names = parse_tasks(task)
    k = finetune_k(backbone, finetune_top)
    if backbone is not None:
        backbone = ModelName.parse(backbone).base
    group, name = open_group(store, backbone, error=StoreGroupError)
    if k:  # a fine-tuned variant: emotion first, so its blocks exist for the privacy heads
        check_top_blocks_k(name, k, group.num_layers)
        names = sorted(names, key=lambda n: n != "emotion")
    manifest = group.manifest()
    tasks = [build_task(n, manifest, seed=seed) for n in names]
    chosen = {t.name: select_splits(t, folds) for t in tasks}
    needed = list(dict.fromkeys(i for splits in chosen.values() for s in splits for i in s.ids))
    mode, _ = choose_data_mode(
        group, needed, mode=data, memory_fraction=memory_fraction, normalize=normalize
    )
    source: FeatureSource = PackedFeatures.from_source(group, needed) if mode == "memory" else group
    # An explicit epoch count means exactly that many epochs unless a floor is asked for too.
    floor = min_steps if min_steps is not None else (DEFAULT_MIN_STEPS if epochs is None else 0)
    results = []
    store_info = {
        "path": str(Path(store).resolve()),
        "group": name,
        "provenance": dict(group.provenance),
    }
    layout = RunLayout(Path(runs))
    for t in tasks:
        head_options = dict(
            hidden=hidden,
            lr=lr,
            layer_lr=layer_lr,
            weight_decay=weight_decay,
            epochs=epochs if epochs is not None else t.default_epochs,
            min_steps=floor,
            batch_size=batch_size,
            dropout=dropout,
            pooling=pooling,
            class_weight=class_weight,
            normalize=normalize,
            device=device,
            seed=seed,
        )
        if k:
            results.append(
                _fit_variant_task(
                    source,
                    t,
                    head_options,
                    k=k,
                    block_lr=block_lr,
                    block_dropout=block_dropout,
                    splits=chosen[t.name],
                    manifest=manifest,
                    layout=layout,
                    store_info=store_info,
                    data_mode=mode,
                    callback=callback,
                )
            )
            continue
        results.append(
            fit_task(
                source,
                t,
                HeadClassifier(**head_options),
                splits=chosen[t.name],
                manifest=manifest,
                layout=layout,
                backbone=name,
                store_info=store_info,
                data_mode=mode,
                callback=callback,
            )
        )
    return FitResult(
        store=Path(store),
        backbone=finetune_variant(name, k) if k else name,
        data_mode=mode,
        tasks=results,
        seconds=time.perf_counter() - start,
    )


def fit_task(
    source: FeatureSource,
    task: Task,
    estimator: HeadClassifier,
    *,
    splits: Sequence[Split],
    manifest: Manifest,
    layout: RunLayout,
    backbone: str,
    store_info: Mapping[str, Any],
    data_mode: str = "memory",
    callback: Callable[[TrainingEvent], None] | None = None,
    fit_options: Mapping[str, Any] | None = None,
    fold_source: Callable[[Split], FeatureSource] | None = None,
    fold_extras: Callable[[Split, Any, Path], Mapping[str, Any]] | None = None,
    variant: Mapping[str, Any] | None = None,
) -> TaskResult:
    """Train ``estimator`` (cloned per fold) on each split of ``task`` and write the task's run.

    For variants: ``fit_options`` go to every ``fit``; ``fold_source(split)`` gives a fold its
    own features (instead of ``source``); ``fold_extras(split, model, fold_dir)`` may write files
    beside the fold's head and returns what its ``head.json`` records about them; ``variant``
    describes the model in ``config.json`` and ``metrics.json``.
    """
    start = time.perf_counter()
    directory = layout.head_dir(backbone, task.name)
    params = estimator.get_params()
    fold_results: list[FoldResult] = []
    rows: list[dict[str, Any]] = []
    trainable = None
    for index, split in enumerate(splits):
        fold_start = time.perf_counter()
        notify = _notifier(callback, task.name, split.name, index, len(splits))
        model = type(estimator)(**params)
        notify("fold_start", epochs=model.epochs_for(len(split.train)))
        features = fold_source(split) if fold_source is not None else source
        model.fit(
            _feature_set(features, task, split.train),
            _feature_set(features, task, split.dev),
            classes=task.labels,
            callback=(
                lambda e, n=notify: n("epoch", epoch=e.epoch, epochs=e.epochs, dev_uar=e.dev_uar)
            )
            if callback
            else None,
            **dict(fit_options or {}),
        )
        trainable = getattr(model, "trainable_parameters_", trainable)
        summaries, probabilities = {}, {}
        for role in ("dev", "test"):
            part = _feature_set(features, task, getattr(split, role))
            proba = model.predict_proba(part)
            predicted = [task.labels[k] for k in proba.argmax(axis=1)]
            summaries[role] = performance_summary(
                list(part.labels), predicted, labels=list(task.labels)
            )
            probabilities[role] = (part, proba, predicted)
        test_part, test_proba, test_pred = probabilities["test"]
        for utterance_id, truth, pred, proba in zip(
            test_part.ids, test_part.labels, test_pred, test_proba, strict=True
        ):
            utterance = manifest[utterance_id]
            row = {
                "id": utterance_id,
                "fold": split.name,
                "speaker": utterance.speaker,
                "gender": utterance.gender,
                "true": truth,
                "pred": pred,
            }
            row.update(
                {f"prob_{label}": float(p) for label, p in zip(task.labels, proba, strict=True)}
            )
            rows.append(row)
        layer_weights = [float(w) for w in model.layer_weights_]
        head_path = layout.head_path(backbone, task.name, split.name)
        extras = dict(fold_extras(split, model, head_path.parent)) if fold_extras else {}
        save_head(
            model.head_,
            head_path,
            metadata={
                "store": dict(store_info),
                "task": task.name,
                "labels": list(task.labels),
                "fold": split.name,
                "split_scheme": task.scheme,
                "ids_sha256": split.checksum(),
                "train_ids": list(split.train),
                "dev_ids": list(split.dev),
                "test_ids": list(split.test),
                "epochs_trained": model.epochs_,
                "best_epoch": model.best_epoch_,
                "layer_weights": layer_weights,
                "dev_uar": summaries["dev"]["uar"],
                "test_uar": summaries["test"]["uar"],
                "hyperparameters": params,
                "trustser_version": __version__,
                **extras,
            },
        )
        del features
        result = FoldResult(
            fold=split.name,
            best_epoch=model.best_epoch_,
            layer_weights=layer_weights,
            test=summaries["test"],
            dev=summaries["dev"],
            history=model.history_,
            sizes={"train": len(split.train), "dev": len(split.dev), "test": len(split.test)},
            ids_sha256=split.checksum(),
            seconds=time.perf_counter() - fold_start,
            head_path=head_path,
        )
        fold_results.append(result)
        notify("fold_end", dev_uar=result.dev["uar"], test_uar=result.test["uar"])
    metrics = _task_metrics(task, backbone, fold_results, time.perf_counter() - start)
    metrics["trainable_parameters"] = trainable
    config = {
        "task": task.name,
        "backbone": backbone,
        "store": dict(store_info),
        "labels": list(task.labels),
        "split_scheme": task.scheme,
        "folds": [s.name for s in splits],
        "excluded": dict(task.excluded),
        "hyperparameters": params,
        "data_mode": data_mode,
        "trustser_version": __version__,
    }
    if variant is not None:
        config["variant"] = metrics["variant"] = dict(variant)
    write_json(directory / "config.json", config)
    write_json(directory / "metrics.json", metrics)
    _write_predictions(directory / "predictions.csv", rows, task.labels)
    return TaskResult(
        task=task.name,
        backbone=backbone,
        labels=task.labels,
        directory=directory,
        folds=fold_results,
        metrics=metrics,
        data_mode=data_mode,
        seconds=time.perf_counter() - start,
    )


def _fit_variant_task(
    source: FeatureSource,
    task: Task,
    head_options: Mapping[str, Any],
    *,
    k: int,
    block_lr: float,
    block_dropout: float | None,
    splits: Sequence[Split],
    manifest: Manifest,
    layout: RunLayout,
    store_info: Mapping[str, Any],
    data_mode: str,
    callback: Callable[[TrainingEvent], None] | None,
) -> TaskResult:
    """One task of the fine-tuned variant ``<group>@top<k>``.

    emotion: the top ``k`` blocks fine-tuned with the head, each fold's blocks saved beside its
    head; gender / speaker: fresh heads on the variant's hidden states (each fold through the
    emotion fold's blocks chosen by :func:`~trustser.heads.finetune.blocks_fold`).
    """
    group = str(store_info["group"])
    provenance = store_info["provenance"]
    variant = finetune_variant(group, k)
    description: dict[str, Any] = {
        "name": variant,
        "base_backbone": group,
        "kind": "finetune",
        "k": k,
        "base_weights_sha256": provenance.get("weights_sha256"),
        "store_group": group,
    }
    if task.name == "emotion":
        blocks = store_top_blocks(provenance, k)
        description.update(
            block_lr=block_lr,
            block_dropout=block_dropout,
            trained="top blocks + head",
            block_parameters=blocks.num_trainable(),
            blocks_config=blocks.config(),
        )

        def save_blocks(split: Split, model: Any, fold_dir: Path) -> dict[str, Any]:
            path = save_top_blocks(
                model.top_blocks_,
                layout.top_blocks_path(variant, split.name),
                metadata={
                    "variant": variant,
                    "base_backbone": group,
                    "base_weights_sha256": provenance.get("weights_sha256"),
                    "store": {"path": store_info.get("path"), "group": group},
                    "fold": split.name,
                    "block_lr": block_lr,
                },
            )
            return {"variant": {**description, "top_blocks": path.name, "blocks_fold": split.name}}

        return fit_task(
            source,
            task,
            FineTuneClassifier(**head_options, block_lr=block_lr, block_dropout=block_dropout),
            splits=splits,
            manifest=manifest,
            layout=layout,
            backbone=variant,
            store_info=store_info,
            data_mode=data_mode,
            callback=callback,
            fit_options={"blocks": blocks},
            fold_extras=save_blocks,
            variant=description,
        )
    blocks_by_fold = load_variant_blocks(layout, variant, provenance, group=group)
    available = list(blocks_by_fold)
    for split in splits:  # refuse before any training when a fold lacks its blocks
        blocks_fold(split.name, available, task=task.name)
    description["trained"] = "head only, on the variant's hidden states (blocks frozen)"

    def features(split: Split) -> FeatureSource:
        top = blocks_by_fold[blocks_fold(split.name, available, task=task.name)]
        if data_mode == "memory":
            return variant_features(source, split.ids, top)
        return VariantSource(source, top)

    def record(split: Split, model: Any, fold_dir: Path) -> dict[str, Any]:
        chosen = blocks_fold(split.name, available, task=task.name)
        return {"variant": {**description, "blocks_fold": chosen}}

    return fit_task(
        source,
        task,
        HeadClassifier(**head_options),
        splits=splits,
        manifest=manifest,
        layout=layout,
        backbone=variant,
        store_info=store_info,
        data_mode=data_mode,
        callback=callback,
        fold_source=features,
        fold_extras=record,
        variant={
            **description,
            "blocks_folds": {
                s.name: blocks_fold(s.name, available, task=task.name) for s in splits
            },
        },
    )


def _feature_set(source: FeatureSource, task: Task, ids: Sequence[str]) -> FeatureSet:
    return FeatureSet(source, tuple(ids), tuple(task.label_of[i] for i in ids))


def _notifier(
    callback: Callable[[TrainingEvent], None] | None, task: str, fold: str, index: int, total: int
) -> Callable[..., None]:
    def notify(kind: str, **info: Any) -> None:
        if callback is not None:
            callback(TrainingEvent(kind, task, fold, index, total, **info))

    return notify


def _task_metrics(
    task: Task, backbone: str, folds: Sequence[FoldResult], seconds: float
) -> dict[str, Any]:
    """metrics.json: plain ``<role>_<metric>_mean/_std`` keys over folds, then per-fold details."""
    metrics: dict[str, Any] = {
        "task": task.name,
        "backbone": backbone,
        "labels": list(task.labels),
        "num_folds": len(folds),
        "std": "population standard deviation over folds (ddof=0)",
    }
    for role in ("test", "dev"):
        for key, name in (
            ("uar", "uar"),
            ("weighted_accuracy", "accuracy"),
            ("macro_f1", "macro_f1"),
        ):
            mean, std = mean_std([getattr(f, role)[key] for f in folds])
            metrics[f"{role}_{name}_mean"] = mean
            metrics[f"{role}_{name}_std"] = std
        recalls: dict[str, float | None] = {}
        for label in task.labels:
            values = [getattr(f, role)["per_class_recall"].get(label) for f in folds]
            defined = [v for v in values if v is not None]
            recalls[label] = float(np.mean(defined)) if defined else None
        metrics[f"{role}_per_class_recall_mean"] = recalls
        metrics[f"{role}_confusion_sum"] = np.sum(
            [getattr(f, role)["confusion"] for f in folds], axis=0
        ).tolist()
    weights = np.array([f.layer_weights for f in folds])
    metrics["layer_weights_mean"] = weights.mean(axis=0).tolist()
    metrics["layer_weights_std"] = weights.std(axis=0).tolist()
    metrics["best_epoch_mean"] = float(np.mean([f.best_epoch for f in folds]))
    metrics["fit_seconds_total"] = seconds
    metrics["folds"] = [f.to_dict() for f in folds]
    return metrics


def _write_predictions(path: Path, rows: list[dict[str, Any]], labels: Sequence[str]) -> Path:
    """predictions.csv (id, fold, speaker, gender, true, pred, prob_<label>...), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [
        "id",
        "fold",
        "speaker",
        "gender",
        "true",
        "pred",
        *(f"prob_{label}" for label in labels),
    ]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (f"{v:.8g}" if isinstance(v, float) else v) for k, v in row.items()}
            )
    os.replace(tmp, path)
    return path
