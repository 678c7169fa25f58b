"""Train a task's heads on every fold straight from the embedding store, and write the run.

``fit_heads(store, backbone, HeadClassifier(...), task="emotion")`` opens the store group,
builds the task's splits (:mod:`trustser.heads.tasks`), loads the features it needs into RAM
when they fit (else streams length-bucketed batches from disk) and cross-validates the one
configured estimator over the folds (:func:`~trustser.heads.crossval.cross_validate`), writing
``<runs>/<backbone>/<task>/`` in the shared results layout (:class:`trustser.runs.RunLayout`):
``config.json``, ``metrics.json``, ``predictions.csv`` and ``<fold>/head.safetensors`` +
``head.json``. The backbone is never loaded. An interrupted fit resumes at the first unfinished
fold. Asked for every task, a fit skips a privacy task the corpus cannot measure (one gender, too
few speakers) and writes ``<task>/not_measurable.json`` with the reason instead
(:func:`~trustser.heads.tasks.plan_tasks`). Variants of a backbone (fine-tuned blocks, mitigations) are fitted by their kind
(:mod:`trustser.variants`), on the same driver.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trustser._validation import check_choice, check_probability
from trustser.heads.crossval import TaskResult, TrainingEvent, cross_validate
from trustser.heads.data import (
    FeatureSource,
    PackedFeatures,
    StoreGroupError,
    available_memory,
    feature_bytes,
)
from trustser.heads.estimator import HeadClassifier
from trustser.heads.tasks import plan_tasks, select_splits
from trustser.runs import RunLayout, record_not_measurable
from trustser.store.format import DTYPES, frame_row_bytes

__all__ = [
    "DATA_MODES",
    "FitResult",
    "StoreGroupError",
    "choose_data_mode",
    "default_estimator",
    "fit_heads",
    "open_features",
    "store_info",
]

DATA_MODES = ("auto", "memory", "stream")


@dataclass(frozen=True)
class FitResult:
    store: Path
    backbone: str
    data_mode: str
    tasks: list[TaskResult] = field(default_factory=list)
    seconds: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)  # task -> why it is not measurable


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


def default_estimator(**params: Any) -> HeadClassifier:
    """The heads' estimator as ``trustser heads fit`` configures it by default: the paper's
    head with each task's own epoch count, the step floor and the attackers' patience
    (``epochs=None``, ``min_steps=None``, ``patience=None``:
    :func:`~trustser.heads.crossval.task_estimator`), ``params`` changed."""
    return HeadClassifier(**{"epochs": None, "min_steps": None, "patience": None, **params})


def store_info(store: str | os.PathLike, group: Any, name: str) -> dict[str, Any]:
    """What every run records about the features it was trained on."""
    return {
        "path": str(Path(store).resolve()),
        "group": name,
        "provenance": dict(group.provenance),
    }


def open_features(
    group: Any, ids: Sequence[str], *, data: str = "auto", memory_fraction: float = 0.5
) -> tuple[FeatureSource, str]:
    """``(source, mode)``: ``ids``' features in RAM when they fit (or ``data="memory"``), else
    the store group itself, streamed (:func:`choose_data_mode`)."""
    mode, _ = choose_data_mode(group, ids, mode=data, memory_fraction=memory_fraction)
    return (PackedFeatures.from_source(group, ids) if mode == "memory" else group), mode


def fit_heads(
    store: str | os.PathLike,
    backbone: str | None = None,
    estimator: HeadClassifier | None = None,
    *,
    task: str = "emotion",
    runs: str | os.PathLike = "runs",
    folds: str | Sequence[str] | None = None,
    data: str = "auto",
    memory_fraction: float = 0.5,
    callback: Callable[[TrainingEvent], None] | None = None,
    resume: bool = True,
    skip_unmeasurable: bool | None = None,
) -> FitResult:
    """Cross-validate ``estimator`` (default :func:`default_estimator`) for ``task``
    (``emotion``, ``gender``, ``speaker``, ``all`` or a comma list) on every fold (or
    ``folds``: names or 1-based indices) of the store group ``backbone`` and write the runs.

    A task the corpus cannot measure is skipped, its reason in :attr:`FitResult.skipped` and
    ``<task>/not_measurable.json``, when ``skip_unmeasurable`` (default: when ``task`` is
    ``all``); otherwise it raises :class:`~trustser.heads.tasks.NotMeasurableError`.

    ``data``: ``auto`` keeps the needed features in RAM when they fit, ``memory`` forces it,
    ``stream`` reads batches from the store every epoch. Folds finished by an earlier run with
    the same settings are taken from disk unless ``resume=False``.
    """
    from trustser.store import open_group

    start = time.perf_counter()
    check_choice("data", data, DATA_MODES)
    estimator = estimator if estimator is not None else default_estimator()
    group, name = open_group(store, backbone, error=StoreGroupError)
    manifest = group.manifest()
    plan = plan_tasks(task, manifest, seed=estimator.seed, skip_unmeasurable=skip_unmeasurable)
    tasks = plan.tasks
    chosen = {t.name: select_splits(t, folds) for t in tasks}
    needed = list(dict.fromkeys(i for splits in chosen.values() for s in splits for i in s.ids))
    source, mode = open_features(group, needed, data=data, memory_fraction=memory_fraction)
    info = store_info(store, group, name)
    layout = RunLayout(Path(runs))
    for skipped, reason in plan.skipped.items():
        record_not_measurable(layout, name, skipped, reason)
    for t in tasks:
        record_not_measurable(layout, name, t.name, None)
    results = [
        cross_validate(
            estimator,
            t,
            chosen[t.name],
            source,
            manifest=manifest,
            layout=layout,
            model=name,
            store_info=info,
            data_mode=mode,
            callback=callback,
            resume=resume,
        )
        for t in tasks
    ]
    return FitResult(
        store=Path(store),
        backbone=name,
        data_mode=mode,
        tasks=results,
        seconds=time.perf_counter() - start,
        skipped=dict(plan.skipped),
    )
