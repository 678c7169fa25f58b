"""Privacy mitigation, ``privacy-l<λ>``: an encoder that keeps emotion and hides gender, judged
by fresh attackers.

:data:`KIND` fits, per fold, the emotion head against a gender adversary behind gradient
reversal (:class:`~trustser.heads.mitigated.MitigatedHeadClassifier`, every other setting the
base's heads') and writes the variant ``<runs>/<backbone>@privacy-l<λ>/emotion/`` in the shared
layout (the saved model is a plain
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
same name (the speaker split, which has no such fold, uses the first: one deployed model;
:func:`~trustser.variants.kind.encoder_fold`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustser._version import __version__
from trustser.devices import resolve_device
from trustser.heads.crossval import FoldVariant, TaskResult, TrainingEvent, cross_validate
from trustser.heads.data import PackedFeatures, StoreGroupError
from trustser.heads.estimator import HeadClassifier
from trustser.heads.mitigated import MitigatedHeadClassifier
from trustser.heads.model import LayerWeightedHead, load_head
from trustser.heads.probe import probe_task
from trustser.heads.tasks import Split, Task, build_task, select_splits
from trustser.heads.training import store_info
from trustser.runs import RunLayout, write_json
from trustser.variants.kind import (
    Exposed,
    FitRequest,
    Variant,
    VariantError,
    VariantFit,
    VariantKind,
    encoder_fold,
    fold_means,
)

__all__ = [
    "DEFAULT_LAMBDAS",
    "KIND",
    "PrivacyKind",
    "attack_representation",
    "encoder_frames",
    "encoder_means",
    "fit_privacy",
]

DEFAULT_LAMBDAS = (0.1, 0.3, 1.0)
TASK_ORDER = ("emotion", "gender", "speaker")


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


def encoder_means(variant: Variant, group: Any, layout: RunLayout) -> Exposed:
    """The encoder's output (:func:`encoder_frames`) of every fold's trained emotion head of
    ``variant``, time-averaged, ``[N, 1, H]`` per fold: what each deployed model shares."""
    emotion = layout.head_dir(variant.name, "emotion")
    paths = {
        d.name: d / "head.safetensors"
        for d in (sorted(emotion.iterdir()) if emotion.is_dir() else [])
        if (d / "head.safetensors").is_file()
    }
    if not paths:
        raise VariantError(
            f"no trained emotion heads of {variant.name} under {str(emotion)!r}; fit the "
            f"variant first (`trustser mitigate privacy --lambda {variant.params['lam']:g}`, the "
            "same --runs)."
        )
    ids = list(group.ids)
    packed: list[PackedFeatures] = []  # the store group read once, when first needed

    def compute(fold: str) -> np.ndarray:
        if not packed:
            packed.append(PackedFeatures.from_source(group, ids))
        head = load_head(paths[fold], device="cpu")[0]
        return encoder_frames(head, packed[0], ids).means(ids)

    return Exposed(
        fold_means(paths, ids, compute),
        "time-mean of the encoder's output (layer weights + 1x1 conv stack of each fold's "
        "emotion head, trained against the gender adversary)",
    )


class _Attacker(FoldVariant):
    """A fresh attacker of one task: each fold reads the representation of its emotion fold's
    encoder (:func:`~trustser.variants.kind.encoder_fold`)."""

    def __init__(
        self,
        task: Task,
        encoded: Mapping[str, PackedFeatures],
        identity: Mapping[str, Any],
        description: Mapping[str, Any],
    ) -> None:
        self.task, self.encoded, self.identity = task, encoded, identity
        self.description = {
            **description,
            "trained": "a fresh attacker head on the encoder's output",
        }

    def _fold(self, split: Split) -> str:
        return encoder_fold(split.name, list(self.encoded), task=self.task.name)

    def features(self, split: Split, source: Any) -> PackedFeatures:
        return self.encoded[self._fold(split)]

    def fold_identity(self, split: Split) -> Any:
        return self.identity.get(self._fold(split))


def attack_representation(
    encoded: Mapping[str, PackedFeatures],
    tasks: Sequence[Task],
    *,
    estimator: HeadClassifier,
    manifest: Any,
    layout: RunLayout,
    variant: str,
    store_info: Mapping[str, Any],
    folds: str | Sequence[str] | None = None,
    description: Mapping[str, Any] | None = None,
    identity: Mapping[str, Any] | None = None,
    callback: Callable[[TrainingEvent], None] | None = None,
    resume: bool = True,
) -> tuple[list[TaskResult], dict[str, Any]]:
    """Fresh attackers on a shared representation: per task (gender, speaker) a head
    (``estimator``) trained on ``encoded[fold]`` (the representation of the emotion fold's
    encoder, whose files ``identity`` names) and a linear probe; writes ``<variant>/<task>/``
    and ``<variant>/probe/metrics.json``. Returns the task runs and the probe metrics."""
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
        results.append(
            cross_validate(
                estimator,
                task,
                splits,
                first,
                manifest=manifest,
                layout=layout,
                model=variant,
                store_info=store_info,
                variant=_Attacker(task, encoded, dict(identity or {}), dict(description or {})),
                callback=callback,
                resume=resume,
            )
        )
        ids = list(dict.fromkeys(i for s in splits for i in s.ids))

        def means_of(split: Any, task: Task = task, ids: list[str] = ids) -> np.ndarray:
            source = encoded[encoder_fold(split.name, available, task=task.name)]
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


class _Adversarial(FoldVariant):
    """The emotion head trained against the gender adversary: genders in ``fit``, the training
    adversary's dev accuracy recorded beside each head (for reference only)."""

    def __init__(self, description: Mapping[str, Any], genders: Mapping[str, str]) -> None:
        self.mitigation = dict(description)
        self.description = {
            **description,
            "trained": "emotion head against a gender adversary (GRL)",
        }
        self.genders = dict(genders)

    def fit_options(self) -> Mapping[str, Any]:
        return {"genders": self.genders}

    def after_fold(self, split: Split, model: Any, fold_dir: Path) -> Mapping[str, Any]:
        return {
            "mitigation": {
                **self.mitigation,
                "training_adversary_dev_accuracy": model.adversary_dev_accuracy_,
            }
        }


def fit_privacy(variant: Variant, request: FitRequest) -> VariantFit:
    """Train ``<backbone>@privacy-l<λ>``'s emotion heads against the gender adversary, then
    judge the encoder they share with fresh attackers (module docstring)."""
    from trustser.store import open_group

    start = time.perf_counter()
    group, name = open_group(request.store, variant.base, error=StoreGroupError)
    manifest = group.manifest()
    emotion, gender, speaker = (build_task(t, manifest, seed=request.seed) for t in TASK_ORDER)
    folds = request.folds
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
    info = store_info(request.store, group, name)
    layout = request.layout
    description = KIND.description(variant, request)
    estimator = MitigatedHeadClassifier(
        adversary_weight=float(variant.params["lam"]), **request.estimator.get_params()
    )
    emotion_run = cross_validate(
        estimator,
        emotion,
        emotion_splits,
        source,
        manifest=manifest,
        layout=layout,
        model=variant.name,
        store_info=info,
        variant=_Adversarial(description, {u.id: u.gender for u in manifest.utterances}),
        callback=request.callback,
        resume=request.resume,
    )
    device = resolve_device(request.estimator.device)
    paths = {s.name: layout.head_path(variant.name, "emotion", s.name) for s in emotion_splits}
    encoded = {
        fold: encoder_frames(load_head(path, device=device)[0], source, needed)
        for fold, path in paths.items()
    }
    attackers, probe = attack_representation(
        encoded,
        [gender, speaker],
        estimator=request.estimator,
        manifest=manifest,
        layout=layout,
        variant=variant.name,
        store_info=info,
        folds=folds,
        description=description,
        identity={fold: _file_digest(path) for fold, path in paths.items()},
        callback=request.callback,
        resume=request.resume,
    )
    return VariantFit(
        variant.name,
        tasks=[emotion_run, *attackers],
        probe=probe,
        seconds=time.perf_counter() - start,
    )


def _file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class PrivacyKind(VariantKind):
    """``privacy-l<λ>``: the emotion head trained against a gender adversary of weight λ."""

    word = "privacy"
    label = "privacy mitigation"
    summary = "emotion head trained against a gender adversary with weight λ"
    form = "privacy-l<λ> with λ >= 0 (e.g. privacy-l0.3)"
    _TAG = re.compile(r"^privacy-l(?P<lam>[0-9]+(?:\.[0-9]+)?)$")

    def parse(self, tag: str) -> dict[str, Any] | None:
        match = self._TAG.match(tag)
        return {"lam": float(match["lam"])} if match else None

    def tag(self, *, lam: float) -> str:
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0:
            raise VariantError(f"the adversary weight λ must be a number >= 0, got {lam!r}.")
        return f"privacy-l{float(lam):g}"

    def describe(self, params: Mapping[str, Any]) -> str:
        return f"gender adversary (gradient reversal), λ = {params['lam']:g}"

    def description(self, variant: Variant, request: FitRequest) -> dict[str, Any]:
        return {
            "name": variant.name,
            "base_backbone": variant.base,
            "kind": "privacy",
            "adversary_weight": float(variant.params["lam"]),
            "store_group": variant.base,
            "shared_representation": "encoder output: layer weights + 1x1 conv stack, [T, H]",
            "privacy_judged_by": "fresh gender head, speaker-ID head and linear probes",
        }

    def planned(self, base: str, settings: Mapping[str, Any]) -> list[Variant]:
        return [self.variant(base, lam=float(lam)) for lam in settings.get("privacy", ())]

    def exposed(self, variant: Variant, group: Any, layout: RunLayout) -> Exposed:
        return encoder_means(variant, group, layout)

    def fit(self, variant: Variant, request: FitRequest) -> VariantFit:
        return fit_privacy(variant, request)


KIND = PrivacyKind()
