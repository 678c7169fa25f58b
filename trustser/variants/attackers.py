"""Fresh attackers on what a privacy variant shares: the judge of every privacy kind.

A privacy mitigation changes what a deployment exposes — the encoder output of ``privacy-l<λ>``,
the erased hidden states of ``erase-gender``. Whether it hides anything is decided only by
attackers trained afresh on that exposed representation, never by an adversary the mitigation
trained against (which it may fool without hiding anything):

* a gender head (the layer-weighted head: non-linear) per emotion fold, trained on the fold's
  training speakers and tested on its held-out speakers → ``<variant>/gender/``;
* the speaker-ID head on the speaker task's closed-set split → ``<variant>/speaker/``; every
  speaker fold reads **one** deployed representation, the first emotion fold's
  (:func:`~trustser.variants.kind.encoder_fold`);
* linear probes (logistic regression on time-means, all layers and the layer chosen on dev) for
  both tasks → ``<variant>/probe/metrics.json`` and ``predictions-<task>.csv`` (the per-clip
  predictions the privacy axis's speaker bootstrap reads).

These are the files the profile's privacy axis reads for a backbone, so a variant's privacy is
measured exactly as a backbone's. The heads train with the base's head configuration, whose
attacker tasks train until dev stops improving (``patience``; docs/heads.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from trustser._version import __version__
from trustser.heads.crossval import FoldVariant, TaskResult, TrainingEvent, cross_validate
from trustser.heads.data import FeatureSource, PackedFeatures, StoreGroupError
from trustser.heads.estimator import HeadClassifier
from trustser.heads.probe import (
    PROBE_ATTACKERS,
    probe_task,
    record_probe,
    write_probe_predictions,
)
from trustser.heads.tasks import Split, Task, build_task, select_splits
from trustser.heads.training import store_info
from trustser.runs import FOLD_STD, RunLayout, read_json, write_json
from trustser.variants.kind import VariantFit, encoder_fold

__all__ = [
    "GENDER_HEAD",
    "EncodedRepresentation",
    "PrivacyFitData",
    "Representation",
    "attack_representation",
    "privacy_figures",
    "trade_off",
]

PROBE_C, PROBE_MAX_ITER = 1.0, 2000


class Representation(Protocol):
    """What a variant exposes, per emotion fold: its features (what the attacker heads read) and
    their time-means (what the probes read)."""

    #: the emotion folds with a deployed encoder, in fold order
    folds: Sequence[str]
    #: what the features are, in words (probe/metrics.json records it)
    summary: str

    def features(self, fold: str) -> FeatureSource:
        """Every needed clip's features as emotion fold ``fold``'s deployed model exposes them."""

    def means(self, fold: str, ids: Sequence[str]) -> np.ndarray:
        """Their time-means ``[N, L, D]`` for ``ids``."""

    def identity(self, fold: str) -> Any:
        """What fold ``fold``'s features are computed from (a file digest): part of the
        attacker folds' resume key."""


class EncodedRepresentation:
    """A representation computed once per fold and held in RAM (the encoder output of
    ``privacy-l<λ>``, ``[1, ΣT, H]`` per fold)."""

    summary = "time-mean of the encoder's output (the shared representation)"

    def __init__(
        self, encoded: Mapping[str, PackedFeatures], identity: Mapping[str, Any] | None = None
    ) -> None:
        self.encoded, self._identity = dict(encoded), dict(identity or {})
        self.folds = list(self.encoded)

    def features(self, fold: str) -> PackedFeatures:
        return self.encoded[fold]

    def means(self, fold: str, ids: Sequence[str]) -> np.ndarray:
        return np.asarray(self.encoded[fold].means(list(ids)), dtype=np.float64)

    def identity(self, fold: str) -> Any:
        return self._identity.get(fold)


class _Attacker(FoldVariant):
    """A fresh attacker head of one task: each fold reads the representation of the emotion
    fold :func:`~trustser.variants.kind.encoder_fold` picks, recorded as ``encoder_folds``."""

    def __init__(
        self,
        task: Task,
        splits: Sequence[Split],
        representation: Representation,
        description: Mapping[str, Any],
    ) -> None:
        self.task, self.representation = task, representation
        self.description = {
            **description,
            "trained": "a fresh attacker head on the variant's exposed representation",
            "encoder_folds": {s.name: self.fold(s) for s in splits},
        }

    def fold(self, split: Split) -> str:
        return encoder_fold(split.name, list(self.representation.folds), task=self.task.name)

    def features(self, split: Split, source: FeatureSource) -> FeatureSource:
        return self.representation.features(self.fold(split))

    def fold_identity(self, split: Split) -> Any:
        return self.representation.identity(self.fold(split))


def attack_representation(
    representation: Representation | Mapping[str, PackedFeatures],
    tasks: Sequence[Task],
    *,
    estimator: HeadClassifier,
    manifest: Any,
    layout: RunLayout,
    variant: str,
    store_info: Mapping[str, Any],
    folds: str | Sequence[str] | None = None,
    description: Mapping[str, Any] | None = None,
    callback: Callable[[TrainingEvent], None] | None = None,
    resume: bool = True,
) -> tuple[list[TaskResult], dict[str, Any]]:
    """Fresh attackers on ``representation`` (or ``{fold: features}``): per task (gender,
    speaker) a head (``estimator``, the base's configuration) and linear probes; writes
    ``<variant>/<task>/`` and ``<variant>/probe/`` (module docstring). Returns the task runs and
    the probe metrics."""
    if isinstance(representation, Mapping):
        representation = EncodedRepresentation(representation)
    if not representation.folds:
        raise ValueError(
            "the representation has no fold to attack; fit the variant's emotion model first."
        )
    description = dict(description or {})
    results: list[TaskResult] = []
    probe: dict[str, Any] = {
        "backbone": variant,
        "store": dict(store_info),
        "features": representation.summary,
        "model": f"LogisticRegression(C={PROBE_C}, class_weight='balanced', L2, lbfgs, "
        f"max_iter={PROBE_MAX_ITER})",
        "std": FOLD_STD,
        "tasks": {},
        "trustser_version": __version__,
        "variant": description,
    }
    probe_dir = layout.probe_dir(variant)
    for task in tasks:
        splits = select_splits(task, folds if task.name != "speaker" else None)
        attacker = _Attacker(task, splits, representation, description)
        results.append(
            cross_validate(
                estimator,
                task,
                splits,
                representation.features(representation.folds[0]),
                manifest=manifest,
                layout=layout,
                model=variant,
                store_info=store_info,
                variant=attacker,
                callback=callback,
                resume=resume,
            )
        )
        ids = list(dict.fromkeys(i for s in splits for i in s.ids))
        cache: dict[str, np.ndarray] = {}

        def means_of(
            split: Split, attacker: _Attacker = attacker, ids: list[str] = ids, cache=cache
        ) -> np.ndarray:
            fold = attacker.fold(split)
            if fold not in cache:
                cache.clear()  # one fold's means at a time
                cache[fold] = representation.means(fold, ids)
            return cache[fold]

        result = probe_task(means_of, ids, task, splits, C=PROBE_C, max_iter=PROBE_MAX_ITER)
        record_probe(
            probe,
            result,
            task,
            splits,
            encoder_folds=attacker.description["encoder_folds"],
        )
        write_probe_predictions(probe_dir, result, manifest)
    write_json(probe_dir / "metrics.json", probe)
    return results, probe


GENDER_HEAD = "gender head"  # the paper's attack; the profile's privacy axis uses this name
ROLES = ("dev", "test")


def _metrics(path: Path) -> dict[str, Any]:
    data = read_json(path) if path.is_file() else None
    return data if isinstance(data, dict) else {}


def privacy_figures(layout: RunLayout, model: str, role: str) -> dict[str, Any]:
    """A model's privacy trade-off on ``role`` clips (``dev`` or ``test``; fold means read from
    its runs): the emotion ``uar``, every gender attacker's accuracy (``attackers``: the gender
    head and the linear probes), the strongest of them (``attacker``, ``attacker_accuracy``:
    the privacy axis's rule, a tie going to the head) and the speaker-ID head's and probe's
    accuracy. A figure not run is None."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}.")
    emotion = _metrics(layout.head_dir(model, "emotion") / "metrics.json")
    gender = _metrics(layout.head_dir(model, "gender") / "metrics.json")
    speaker = _metrics(layout.head_dir(model, "speaker") / "metrics.json")
    probe = _metrics(layout.probe_dir(model) / "metrics.json")
    found = {
        GENDER_HEAD: gender.get(f"{role}_accuracy_mean"),
        PROBE_ATTACKERS[None]: probe.get(f"gender_{role}_accuracy_mean"),
        PROBE_ATTACKERS["dev"]: probe.get(f"gender_dev_chosen_layer_{role}_accuracy_mean"),
    }
    attackers = {k: float(v) for k, v in found.items() if isinstance(v, (int, float))}
    strongest = (
        max(attackers, key=lambda k: (attackers[k], k == GENDER_HEAD)) if attackers else None
    )
    return {
        "role": role,
        "uar": emotion.get(f"{role}_uar_mean"),
        "attackers": attackers,
        "attacker": strongest,
        "attacker_accuracy": attackers.get(strongest) if strongest else None,
        "speaker_head": speaker.get(f"{role}_accuracy_mean"),
        "speaker_probe": probe.get(f"speaker_{role}_accuracy_mean"),
        "attackers_at_cap": {
            task: metrics.get("folds_at_cap")
            for task, metrics in (("gender", gender), ("speaker", speaker))
            if metrics.get("folds_at_cap")
        },
    }


def _change(own: Mapping[str, Any], other: Mapping[str, Any] | None) -> dict[str, float | None]:
    """``own`` minus ``other`` for the emotion UAR and the strongest attacker's accuracy."""
    out: dict[str, float | None] = {}
    for key in ("uar", "attacker_accuracy"):
        a, b = own.get(key), (other or {}).get(key)
        out[key] = None if a is None or b is None else float(a) - float(b)
    return out


def trade_off(layout: RunLayout, variant: Any) -> dict[str, Any]:
    """A privacy variant's figures per role (``dev``, ``test``: :func:`privacy_figures`) with
    their change against its base (``vs_base``) and against its control (``vs_control``, the
    same model without the mitigation, e.g. λ = 0; None when the base is its only reference).
    ``variant`` is a :class:`~trustser.variants.kind.Variant`."""
    control = variant.control
    out: dict[str, Any] = {
        "variant": variant.name,
        "base": variant.base,
        "control": None if control is None else control.name,
    }
    for role in ROLES:
        own = privacy_figures(layout, variant.name, role)
        base = privacy_figures(layout, variant.base, role)
        reference = None if control is None else privacy_figures(layout, control.name, role)
        out[role] = {
            **own,
            "vs_base": _change(own, base),
            "vs_control": None if reference is None else _change(own, reference),
        }
    return out


@dataclass(frozen=True)
class PrivacyFitData:
    """What every privacy kind's fit starts from: the base's store group (``group``, its
    ``name``) and manifest, the emotion, gender and speaker tasks, the emotion splits of the
    requested folds, every clip some task needs (``needed``) and what runs record of the store."""

    group: Any
    name: str
    manifest: Any
    emotion: Task
    gender: Task
    speaker: Task
    emotion_splits: list[Split]
    needed: list[str]
    store_info: dict[str, Any]
    start: float

    @classmethod
    def open(cls, variant: Any, request: Any) -> PrivacyFitData:
        """The data of ``variant`` (a privacy kind's) under the :class:`~.kind.FitRequest`."""
        from trustser.store import open_group

        start = time.perf_counter()
        group, name = open_group(request.store, variant.base, error=StoreGroupError)
        manifest = group.manifest()
        emotion, gender, speaker = (
            build_task(t, manifest, seed=request.seed) for t in ("emotion", "gender", "speaker")
        )
        needed = list(
            dict.fromkeys(
                i
                for task in (emotion, gender, speaker)
                for s in select_splits(task, request.folds if task is not speaker else None)
                for i in s.ids
            )
        )
        return cls(
            group,
            name,
            manifest,
            emotion,
            gender,
            speaker,
            select_splits(emotion, request.folds),
            needed,
            store_info(request.store, group, name),
            start,
        )

    def judged(
        self,
        variant: Any,
        request: Any,
        representation: Representation,
        emotion_run: TaskResult,
        description: Mapping[str, Any],
    ) -> VariantFit:
        """The fit's result once the fresh attackers have judged ``representation``."""
        attackers, probe = attack_representation(
            representation,
            [self.gender, self.speaker],
            estimator=request.estimator,
            manifest=self.manifest,
            layout=request.layout,
            variant=variant.name,
            store_info=self.store_info,
            folds=request.folds,
            description=description,
            callback=request.callback,
            resume=request.resume,
        )
        return VariantFit(
            variant.name,
            tasks=[emotion_run, *attackers],
            probe=probe,
            seconds=time.perf_counter() - self.start,
        )
