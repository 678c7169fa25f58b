"""Privacy mitigation: an encoder that keeps emotion and hides gender, judged by fresh attackers.

``fit_privacy(store, backbone, lambdas=(0.1, 0.3, 1.0))`` trains, per λ and fold, the emotion
head against a gender adversary behind gradient reversal
(:class:`~trustser.mitigate.estimator.MitigatedHeadClassifier`) and writes the variant
``<runs>/<backbone>@privacy-l<λ>/emotion/`` in the shared layout (the saved model is a plain
layer-weighted head, so ``trustser attack`` runs it end to end: backbone → encoder → classifier).

What a deployment shares is the **encoder's output**: the head's front end (layer weights and
the 1×1 conv stack) applied to every frame, ``[T, H]`` per clip (:func:`encoder_frames`). Privacy
is judged only by attackers trained afresh on that output — never by the adversary used in
training, which the encoder may fool without hiding anything:

* a gender head (the layer-weighted head on the one "layer" of encoder frames) trained on the
  fold's training speakers and tested on its held-out speakers → ``gender/``;
* the speaker-ID head on the speaker task's own split (closed set) → ``speaker/``;
* linear probes (logistic regression on the time-mean of the encoder frames) for both →
  ``probe/metrics.json``.

These are the files the profile's privacy axis reads for any backbone, so the variant's privacy
is measured exactly as a backbone's. Each task fold uses the encoder of the emotion fold of the
same name (the speaker split, which has no such fold, uses the first: one deployed model).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustser._version import __version__
from trustser.heads.data import PackedFeatures, StoreGroupError
from trustser.heads.estimator import HeadClassifier
from trustser.heads.finetune import blocks_fold
from trustser.heads.model import LayerWeightedHead
from trustser.heads.probe import probe_task
from trustser.heads.tasks import DEFAULT_MIN_STEPS, Task, build_task, select_splits
from trustser.heads.training import TaskResult, TrainingEvent, fit_task
from trustser.mitigate.estimator import MitigatedHeadClassifier
from trustser.runs import RunLayout, privacy_variant, write_json

__all__ = [
    "DEFAULT_LAMBDAS",
    "PrivacyResult",
    "attack_representation",
    "encoder_frames",
    "fit_privacy",
]

DEFAULT_LAMBDAS = (0.1, 0.3, 1.0)


@dataclass(frozen=True)
class PrivacyResult:
    """One λ: the variant's name and the task runs written (emotion, gender, speaker)."""

    variant: str
    adversary_weight: float
    tasks: list[TaskResult] = field(default_factory=list)
    probe: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@torch.no_grad()
def encoder_frames(
    head: LayerWeightedHead, source: Any, ids: Sequence[str], *, batch_size: int = 64
) -> PackedFeatures:
    """The encoder's output for ``ids``: the head's standardisation, layer average and 1×1 conv
    stack on every frame, packed as features with one layer, ``[1, ΣT, H]``."""
    head = head.eval()
    device = head.layer_logits.device
    ids = list(dict.fromkeys(ids))
    outputs: dict[str, torch.Tensor] = {}
    for batch in source.packed_batches(ids, batch_size=batch_size, shuffle=False):
        frames = batch.frames.to(device)
        x = head._normalized(frames, 0).reshape(head.num_layers, -1)
        mixed = (head.layer_weights.to(x.dtype) @ x).view(-1, head.dim)
        encoded = head._frame_net(mixed).float().cpu()  # [F, H]
        for utterance_id, part in zip(
            batch.ids, torch.split(encoded, batch.lengths.tolist()), strict=True
        ):
            outputs[utterance_id] = part
    lengths = [outputs[i].shape[0] for i in ids]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    frames = torch.cat([outputs[i] for i in ids])[None]  # [1, ΣT, H]
    return PackedFeatures(ids, frames, offsets)


def attack_representation(
    encoded: Mapping[str, PackedFeatures],
    tasks: Sequence[Task],
    *,
    manifest: Any,
    layout: RunLayout,
    variant: str,
    store_info: Mapping[str, Any],
    head_options: Mapping[str, Any],
    folds: str | Sequence[str] | None = None,
    description: Mapping[str, Any] | None = None,
    callback: Callable[[TrainingEvent], None] | None = None,
) -> tuple[list[TaskResult], dict[str, Any]]:
    """Fresh attackers on a shared representation: per task (gender, speaker) a head trained
    on ``encoded[fold]`` (the representation of the emotion fold's encoder) and a linear probe;
    writes ``<variant>/<task>/`` and ``<variant>/probe/metrics.json``. Returns the task runs and
    the probe metrics."""
    available = list(encoded)
    first = encoded[available[0]]
    results: list[TaskResult] = []
    probe: dict[str, Any] = {
        "backbone": variant,
        "store": dict(store_info),
        "features": "time-mean of the encoder's output (the shared representation)",
        "model": "LogisticRegression(C=1.0, class_weight='balanced', L2, lbfgs, max_iter=2000)",
        "std": "population standard deviation over folds (ddof=0)",
        "tasks": {},
        "trustser_version": __version__,
        "variant": dict(description or {}),
    }
    for task in tasks:
        splits = select_splits(task, folds if task.name != "speaker" else None)

        def fold_source(split: Any, task: Task = task) -> PackedFeatures:
            return encoded[blocks_fold(split.name, available, task=task.name)]

        options = dict(head_options)
        options["epochs"] = options.get("epochs") or task.default_epochs
        results.append(
            fit_task(
                first,
                task,
                HeadClassifier(**options),
                splits=splits,
                manifest=manifest,
                layout=layout,
                backbone=variant,
                store_info=store_info,
                callback=callback,
                fold_source=fold_source,
                variant={
                    **dict(description or {}),
                    "trained": "a fresh attacker head on the encoder's output",
                },
            )
        )
        ids = list(dict.fromkeys(i for s in splits for i in s.ids))

        def means_of(split: Any, task: Task = task, ids: list[str] = ids) -> np.ndarray:
            source = encoded[blocks_fold(split.name, available, task=task.name)]
            return np.asarray(source.means(ids), dtype=np.float64)

        result = probe_task(means_of, ids, task, splits)
        probe["tasks"][task.name] = {
            **result.to_dict(),
            "split_scheme": task.scheme,
            "folds": [s.name for s in splits],
        }
        for key in ("test_uar", "test_accuracy", "test_macro_f1", "dev_uar", "dev_accuracy"):
            for stat in ("mean", "std"):
                probe[f"{task.name}_{key}_{stat}"] = result.all_layers[f"{key}_{stat}"]
                probe[f"{task.name}_dev_chosen_layer_{key}_{stat}"] = result.dev_chosen[
                    f"{key}_{stat}"
                ]
        probe[f"{task.name}_dev_chosen_layers"] = result.dev_chosen["layers"]
    write_json(layout.probe_dir(variant) / "metrics.json", probe)
    return results, probe


def fit_privacy(
    store: str | os.PathLike,
    backbone: str | None = None,
    *,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    runs: str | os.PathLike = "runs",
    folds: str | Sequence[str] | None = None,
    epochs: int | None = None,
    hidden: int = 128,
    lr: float = 5e-4,
    batch_size: int = 64,
    device: str = "auto",
    seed: int = 0,
    callback: Callable[[TrainingEvent], None] | None = None,
) -> list[PrivacyResult]:
    """Train ``<backbone>@privacy-l<λ>`` for every λ in ``lambdas`` and judge each with fresh
    attackers (module docstring). The heads' other settings are the defaults of
    ``trustser heads fit``; ``epochs=None`` uses each task's default with the step floor."""
    from trustser.store import open_group

    if not lambdas:
        raise ValueError("give at least one adversary weight λ (e.g. --lambda 0.1 0.3 1).")
    group, name = open_group(store, backbone, error=StoreGroupError)
    manifest = group.manifest()
    emotion, gender, speaker = (build_task(t, manifest, seed=seed) for t in TASK_ORDER)
    emotion_splits = select_splits(emotion, folds)
    needed = list(
        dict.fromkeys(
            i
            for task in (emotion, gender, speaker)
            for s in select_splits(task, folds if task is not speaker else None)
            for i in s.ids
        )
    )
    source = PackedFeatures.from_source(group, needed)
    genders = {u.id: u.gender for u in manifest.utterances}
    store_info = {
        "path": str(Path(store).resolve()),
        "group": name,
        "provenance": dict(group.provenance),
    }
    layout = RunLayout(Path(runs))
    head_options = dict(
        hidden=hidden,
        lr=lr,
        batch_size=batch_size,
        epochs=epochs,
        min_steps=DEFAULT_MIN_STEPS if epochs is None else 0,
        device=device,
        seed=seed,
    )
    out = []
    for lam in lambdas:
        start = time.perf_counter()
        variant = privacy_variant(name, float(lam))
        description = {
            "name": variant,
            "base_backbone": name,
            "kind": "privacy",
            "adversary_weight": float(lam),
            "store_group": name,
            "shared_representation": "encoder output: layer weights + 1x1 conv stack, [T, H]",
            "privacy_judged_by": "fresh gender head, speaker-ID head and linear probes",
        }
        heads: dict[str, LayerWeightedHead] = {}

        def keep_head(
            split: Any,
            model: Any,
            fold_dir: Path,
            heads: dict = heads,
            description: dict = description,
        ) -> dict:
            heads[split.name] = model.head_
            return {
                "mitigation": {
                    **description,
                    "training_adversary_dev_accuracy": model.adversary_dev_accuracy_,
                }
            }

        options = {**head_options, "epochs": epochs or emotion.default_epochs}
        emotion_run = fit_task(
            source,
            emotion,
            MitigatedHeadClassifier(adversary_weight=float(lam), **options),
            splits=emotion_splits,
            manifest=manifest,
            layout=layout,
            backbone=variant,
            store_info=store_info,
            callback=callback,
            fit_options={"genders": genders},
            fold_extras=keep_head,
            variant={**description, "trained": "emotion head against a gender adversary (GRL)"},
        )
        encoded = {fold: encoder_frames(head, source, needed) for fold, head in heads.items()}
        attackers, probe = attack_representation(
            encoded,
            [gender, speaker],
            manifest=manifest,
            layout=layout,
            variant=variant,
            store_info=store_info,
            head_options=head_options,
            folds=folds,
            description=description,
            callback=callback,
        )
        out.append(
            PrivacyResult(
                variant=variant,
                adversary_weight=float(lam),
                tasks=[emotion_run, *attackers],
                probe=probe,
                seconds=time.perf_counter() - start,
            )
        )
    return out


TASK_ORDER = ("emotion", "gender", "speaker")
