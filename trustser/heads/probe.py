"""Linear probes: logistic regression on time-averaged hidden states, per layer and all layers.

A quick baseline and sanity check for the trained heads. For each task and fold, the store's
time-mean array ``[N, L, D]`` is standardised (mean/std of the training part) and a
class-balanced L2 logistic regression is fitted on the training part, once per layer
(``D`` features) and once on all layers concatenated (``L·D`` features). A single layer is
chosen the honest way: on each fold, the layer with the best dev UAR, whose test score is that
fold's figure (``dev_chosen``); no layer is ever chosen by its test score. Results go to
``<runs>/<backbone>/probe/metrics.json``; probing one task keeps the other tasks already there
when they come from the same store group. Asked for every task, the probes skip a privacy task
the corpus cannot measure (one gender, too few speakers) and record why under
``not_measurable`` (:func:`~trustser.heads.tasks.plan_tasks`).
"""

from __future__ import annotations

import csv
import json
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from trustser._validation import check_positive
from trustser._version import __version__
from trustser.heads.data import StoreGroupError
from trustser.heads.tasks import Split, Task, plan_tasks, select_splits
from trustser.metrics._common import mean_std
from trustser.metrics.performance import performance_summary
from trustser.runs import RunLayout, read_json, write_json

__all__ = [
    "PROBE_ATTACKERS",
    "ProbeEvent",
    "ProbeResult",
    "ProbeTaskResult",
    "probe_predictions_path",
    "probe_task",
    "record_probe",
    "run_probes",
    "write_probe_predictions",
]


# The names under which the profile reports the probes as attackers (predictions CSV column).
PROBE_ATTACKERS = {None: "linear probe (all layers)", "dev": "linear probe (layer chosen on dev)"}


@dataclass(frozen=True)
class ProbeEvent:
    """One probe fitted (for progress bars): ``done`` of ``total`` for the current task."""

    task: str
    done: int
    total: int


@dataclass(frozen=True)
class ProbeTaskResult:
    """``all_layers`` and each entry of ``layers`` hold ``<role>_<metric>_mean/_std`` and
    ``folds``. ``dev_chosen`` is the single-layer probe chosen on dev: per fold the layer of best
    dev UAR (``folds[i]["layer"]``, ties to the lower layer) with that layer's scores, and their
    means and sds; ``dev_chosen["layers"]`` lists the chosen layer of each fold."""

    task: str
    labels: tuple[str, ...]
    all_layers: dict[str, Any]
    layers: list[dict[str, Any]]
    dev_chosen: dict[str, Any]
    # Per-clip test predictions of the two probes the profile scores as attackers:
    # ``{"id", "fold", "attacker", "true", "pred"}`` rows (see :data:`PROBE_ATTACKERS`).
    predictions: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "all_layers": self.all_layers,
            "layers": self.layers,
            "dev_chosen": self.dev_chosen,
        }


@dataclass(frozen=True)
class ProbeResult:
    backbone: str
    path: Path
    tasks: list[ProbeTaskResult]
    metrics: dict[str, Any]
    seconds: float
    skipped: dict[str, str] = field(default_factory=dict)  # task -> why it is not measurable


def probe_task(
    means: np.ndarray | Callable[[Split], np.ndarray],
    ids: Sequence[str],
    task: Task,
    splits: Sequence[Split],
    *,
    C: float = 1.0,
    max_iter: int = 2000,
    callback: Callable[[ProbeEvent], None] | None = None,
) -> ProbeTaskResult:
    """Probe ``task`` on time-means ``[N, L, D]`` whose rows follow ``ids``.

    ``means`` may be a function of the split giving that fold's time-means (a fine-tuned
    variant's features differ per fold: each fold has its own blocks).
    """
    check_positive("C", C)
    row = {utterance_id: i for i, utterance_id in enumerate(ids)}
    per_split = means if callable(means) else (lambda _split, fixed=means: fixed)
    num_layers = 0 if callable(means) else means.shape[1]
    per_view: dict[int | None, list[dict[str, Any]]] = {None: []}
    test_pred: dict[tuple[int | None, int], list[str]] = {}  # (view, fold index) -> labels
    done = 0
    for fold_index, split in enumerate(splits):
        fold_means = per_split(split)
        num_layers = fold_means.shape[1]
        views: list[tuple[int | None, np.ndarray]] = [(None, fold_means.reshape(len(ids), -1))]
        views += [(layer, fold_means[:, layer]) for layer in range(num_layers)]
        for layer, _ in views:
            per_view.setdefault(layer, [])
        total = len(views) * len(splits)
        index = {role: [row[i] for i in getattr(split, role)] for role in ("train", "dev", "test")}
        truth = {role: [task.label_of[i] for i in getattr(split, role)] for role in index}
        for layer, features in views:
            model = make_pipeline(
                StandardScaler(),
                LogisticRegression(C=C, max_iter=max_iter, class_weight="balanced"),
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(features[index["train"]], truth["train"])
            iterations = int(np.max(model[-1].n_iter_))
            fold: dict[str, Any] = {
                "fold": split.name,
                "iterations": iterations,
                # lbfgs stopped by max_iter, not by its tolerance: the probe may be under-fitted
                "hit_max_iter": iterations >= max_iter,
            }
            for role in ("dev", "test"):
                predicted = model.predict(features[index[role]])
                if role == "test":
                    test_pred[(layer, fold_index)] = [str(p) for p in predicted]
                summary = performance_summary(truth[role], predicted, labels=list(task.labels))
                fold[f"{role}_uar"] = summary["uar"]
                fold[f"{role}_accuracy"] = summary["weighted_accuracy"]
                fold[f"{role}_macro_f1"] = summary["macro_f1"]
                if layer is None:
                    fold[f"{role}_per_class_recall"] = summary["per_class_recall"]
                    fold[f"{role}_confusion"] = summary["confusion"]
            per_view[layer].append(fold)
            done += 1
            if callback is not None:
                callback(ProbeEvent(task.name, done, total))
    all_layers = _aggregate(per_view[None])
    layers = [{"layer": layer, **_aggregate(per_view[layer])} for layer in range(num_layers)]
    dev_chosen = _dev_chosen(per_view, num_layers)
    predictions = []
    for fold_index, split in enumerate(splits):
        views = {None: None, "dev": dev_chosen["layers"][fold_index]}
        for attacker, layer in views.items():
            for utterance_id, predicted in zip(
                split.test, test_pred[(layer, fold_index)], strict=True
            ):
                predictions.append(
                    {
                        "id": utterance_id,
                        "fold": split.name,
                        "attacker": PROBE_ATTACKERS[attacker],
                        "true": task.label_of[utterance_id],
                        "pred": predicted,
                    }
                )
    return ProbeTaskResult(
        task=task.name,
        labels=task.labels,
        all_layers=all_layers,
        layers=layers,
        dev_chosen=dev_chosen,
        predictions=predictions,
    )


def _dev_chosen(per_view: dict[int | None, list[dict[str, Any]]], num_layers: int) -> dict:
    """Per fold, the layer whose probe has the best dev UAR, scored on that fold's test part."""
    chosen = []
    for index, fold in enumerate(per_view[0]):
        dev = [per_view[layer][index]["dev_uar"] for layer in range(num_layers)]
        layer = int(np.argmax(dev))  # first maximum: ties go to the lower layer
        chosen.append({**per_view[layer][index], "fold": fold["fold"], "layer": layer})
    return {
        **_aggregate(chosen),
        "layers": [f["layer"] for f in chosen],
        "rule": "per fold, the layer with the best dev UAR; its test score is the fold's figure",
    }


def _aggregate(folds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for role in ("test", "dev"):
        for name in ("uar", "accuracy", "macro_f1"):
            out[f"{role}_{name}_mean"], out[f"{role}_{name}_std"] = mean_std(
                [f[f"{role}_{name}"] for f in folds]
            )
    out["folds_at_max_iter"] = [f["fold"] for f in folds if f.get("hit_max_iter")]
    out["folds"] = folds
    return out


def run_probes(
    store: str | os.PathLike,
    backbone: str | None = None,
    *,
    task: str = "emotion",
    runs: str | os.PathLike = "runs",
    folds: str | Sequence[str] | None = None,
    C: float = 1.0,
    max_iter: int = 2000,
    seed: int = 0,
    callback: Callable[[ProbeEvent], None] | None = None,
    model: str | None = None,
    representation: Callable[..., Callable[..., np.ndarray]] | None = None,
    description: Mapping[str, Any] | None = None,
    skip_unmeasurable: bool | None = None,
) -> ProbeResult:
    """Probe each task of ``task`` (a name, a comma list or ``all``) and write probe/metrics.json.

    A task the corpus cannot measure is skipped (its reason under ``not_measurable``) when
    ``skip_unmeasurable`` (default: when ``task`` is ``all``), else it raises.

    ``seed`` only matters for the speaker task's split (the probes themselves are deterministic).
    A model variant probes what it exposes: ``representation(group, layout, ids)`` gives its
    ``means_of(split, task=...)`` (per-fold time-means), ``model`` names the run and
    ``description`` is recorded as ``variant`` (:mod:`trustser.variants`).
    """
    from trustser.store import open_group

    start = time.perf_counter()
    group, name = open_group(store, backbone, error=StoreGroupError)
    manifest = group.manifest()
    plan = plan_tasks(task, manifest, seed=seed, skip_unmeasurable=skip_unmeasurable)
    tasks = list(plan.tasks)
    chosen = {t.name: select_splits(t, folds) for t in tasks}
    ids = list(dict.fromkeys(i for splits in chosen.values() for s in splits for i in s.ids))
    if representation is not None:  # a variant: its own features per fold
        means_of = representation(group, RunLayout(Path(runs)), ids)
        results = [
            probe_task(
                partial(means_of, task=t.name),
                ids,
                t,
                chosen[t.name],
                C=C,
                max_iter=max_iter,
                callback=callback,
            )
            for t in tasks
        ]
    else:
        means = np.asarray(group.means(ids), dtype=np.float64)
        results = [
            probe_task(means, ids, t, chosen[t.name], C=C, max_iter=max_iter, callback=callback)
            for t in tasks
        ]
    name = model or name
    store_info = {
        "path": str(Path(store).resolve()),
        "group": name,
        "provenance": dict(group.provenance),
    }
    path = RunLayout(Path(runs)).probe_dir(name) / "metrics.json"
    metrics = _merge_existing(path, store_info)
    metrics.update(
        {
            "backbone": name,
            "store": store_info,
            "features": "time-mean of every hidden state; standardised on each fold's training part",
            "model": f"LogisticRegression(C={C}, class_weight='balanced', L2, lbfgs, max_iter={max_iter})",
            "std": "population standard deviation over folds (ddof=0)",
            "trustser_version": __version__,
        }
    )
    if description is not None:
        metrics["variant"] = dict(description)
    _record_skipped(metrics, plan.skipped, probed=[t.name for t in tasks])
    for task, result in zip(tasks, results, strict=True):
        record_probe(metrics, result, task, chosen[task.name], C=C, seed=seed)
    write_json(path, metrics)
    for skipped in plan.skipped:
        (path.parent / f"predictions-{skipped}.csv").unlink(missing_ok=True)
    for result in results:
        write_probe_predictions(path.parent, result, manifest)
    return ProbeResult(
        backbone=name,
        path=path,
        tasks=results,
        metrics=metrics,
        seconds=time.perf_counter() - start,
        skipped=dict(plan.skipped),
    )


def _record_skipped(
    metrics: dict[str, Any], skipped: Mapping[str, str], *, probed: Sequence[str]
) -> None:
    """Record the tasks this corpus cannot measure under ``not_measurable`` (with earlier
    records), drop what an earlier probe wrote for them, and clear the ones probed now."""
    unmeasurable = {**metrics.get("not_measurable", {}), **skipped}
    for task in skipped:  # what an earlier probe of this task wrote no longer holds
        metrics["tasks"].pop(task, None)
        for key in [k for k in metrics if k.startswith(f"{task}_")]:
            del metrics[key]
    for task in probed:
        unmeasurable.pop(task, None)
    if unmeasurable:
        metrics["not_measurable"] = unmeasurable
    else:
        metrics.pop("not_measurable", None)


def record_probe(
    metrics: dict[str, Any],
    result: ProbeTaskResult,
    task: Task,
    splits: Sequence[Split],
    **settings: Any,
) -> None:
    """Put one task's probe ``result`` into a probe ``metrics.json`` dict: its details under
    ``tasks[<task>]`` (with ``settings``), and the plain ``<task>_<role>_<metric>_mean/_std``
    keys of the all-layers probe and of the layer chosen on dev."""
    metrics.setdefault("tasks", {})[result.task] = {
        **result.to_dict(),
        "split_scheme": task.scheme,
        "folds": [s.name for s in splits],
        **settings,
    }
    for key in ("test_uar", "test_accuracy", "test_macro_f1", "dev_uar", "dev_accuracy"):
        for stat in ("mean", "std"):
            metrics[f"{result.task}_{key}_{stat}"] = result.all_layers[f"{key}_{stat}"]
            metrics[f"{result.task}_dev_chosen_layer_{key}_{stat}"] = result.dev_chosen[
                f"{key}_{stat}"
            ]
    metrics[f"{result.task}_dev_chosen_layers"] = result.dev_chosen["layers"]
    for stale in ("best_layer_test", "best_layer_dev"):  # written by earlier versions
        metrics.pop(f"{result.task}_{stale}", None)


def probe_predictions_path(probe_dir: Path, task: str) -> Path:
    """``<probe dir>/predictions-<task>.csv``: the probes' per-clip test predictions."""
    return Path(probe_dir) / f"predictions-{task}.csv"


def write_probe_predictions(probe_dir: Path, result: ProbeTaskResult, manifest: Any) -> Path:
    """Per-clip test predictions of the probes scored as attackers, with speaker and gender (the
    profile's speaker bootstrap clusters them); written to a temporary name, then renamed."""
    path = probe_predictions_path(probe_dir, result.task)
    path.parent.mkdir(parents=True, exist_ok=True)
    utterances = {u.id: u for u in manifest.utterances}
    columns = ["id", "fold", "speaker", "gender", "attacker", "true", "pred"]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in result.predictions:
            utterance = utterances[row["id"]]
            writer.writerow({**row, "speaker": utterance.speaker, "gender": utterance.gender or ""})
    os.replace(tmp, path)
    return path


def _merge_existing(path: Path, store_info: Mapping[str, Any]) -> dict[str, Any]:
    """Earlier probe results at ``path`` when they probed the same features, else a fresh dict."""
    if path.is_file():
        try:
            previous = read_json(path)
        except ValueError:
            previous = None
        if (
            isinstance(previous, dict)
            and isinstance(previous.get("tasks"), dict)
            and previous.get("store", {}).get("group") == store_info["group"]
            and _plain(previous.get("store", {}).get("provenance"))
            == _plain(store_info["provenance"])
        ):
            return previous
    return {"tasks": {}}


def _plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparisons."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))
