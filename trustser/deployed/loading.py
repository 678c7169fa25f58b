"""The deployed model of a fold, loaded end to end and checked against the store's features.

What the attacks differentiate, the cost stage times and a variant classifies with is the same
model: the store group's backbone (reloaded with the same window and checked against the
recorded weight checksum), each fold's emotion head (which must have been trained on those very
features), and what a variant changes in it (:class:`Deployment`: a fold's fine-tuned blocks
swapped in, the model wrapped in a randomized defence). The test clips are decoded exactly as
extraction did (same crop, same rate). Any mismatch is a :class:`DeployedModelError` saying what
to redo.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from trustser._validation import TrustSERError, select_names
from trustser.devices import derived_seed
from trustser.end_to_end import EndToEndClassifier
from trustser.manifest import Fold, Manifest, Utterance
from trustser.runs import ModelName, RunLayout

__all__ = [
    "IDENTITY_KEYS",
    "DeployedModelError",
    "Deployment",
    "FoldHead",
    "FoldPlan",
    "LoadedHead",
    "available_heads",
    "check_identity",
    "deploy_plan",
    "load_fold_head",
    "load_waveforms",
    "open_deployed_group",
    "plan_deployment",
    "plan_folds",
    "reload_backbone",
    "select_folds",
]


class DeployedModelError(TrustSERError, ValueError):
    """A deployed model that cannot be loaded as asked (no heads, no provenance, other
    weights); says what to redo."""


@dataclass(frozen=True)
class FoldHead:
    """A fold's trained emotion head as a deployment reads it: its file, its ``head.json`` and
    the store's provenance it was checked against, and the device the model runs on."""

    path: Path
    sidecar: dict[str, Any]
    provenance: dict[str, Any]
    device: torch.device


class Deployment(Protocol):
    """What a model variant changes in a fold's deployed model (a
    :class:`trustser.variants.Variant` is one); a base backbone changes nothing."""

    @property
    def uses_base_heads(self) -> bool:
        """Whether the variant classifies with its base's emotion heads (a defence at inference)."""

    def fold_encoder(self, encoder: Any, head: FoldHead) -> Any:
        """The backbone as the fold of ``head`` deploys it (e.g. with its fine-tuned blocks)."""

    def wrap(self, model: nn.Module, *, fold: str, seed: int) -> nn.Module:
        """The fold's end-to-end model as the variant runs it (e.g. behind a defence)."""


# Provenance keys that, if they differ between the store and the head or the reloaded backbone,
# mean the attacked model is not the one whose features trained the head.
IDENTITY_KEYS = ("backbone", "weights_sha256", "window")


def open_deployed_group(
    store_path: str | os.PathLike, model: str | None
) -> tuple[str, Any, dict[str, Any]]:
    """``(name, group, provenance)`` of the model's store group; its provenance must name the
    backbone, since the deployed model reloads it.

    A variant (``<group>@<tag>``) opens its base group: ``name`` is the variant (its results
    live under it), ``group`` and ``provenance`` are the base's, against which the reloaded
    backbone is checked.
    """
    from trustser.store import open_group

    requested = ModelName.parse(model) if model is not None else None
    base = requested.base if requested is not None else None
    group, name = open_group(store_path, base, error=DeployedModelError)
    provenance = dict(group.provenance or {})
    if not provenance.get("backbone"):
        raise DeployedModelError(
            f"store {str(store_path)!r} group {name!r} records no backbone provenance, so the "
            "extraction cannot be reproduced end to end; re-extract it with `trustser extract`."
        )
    if requested is not None and requested.is_variant:
        name = str(ModelName(name, requested.tag))
    return name, group, provenance


def available_heads(layout: RunLayout, backbone: str) -> dict[str, Path]:
    """``{fold: head.safetensors}`` of the backbone's trained emotion heads (at least one)."""
    head_dir = layout.head_dir(backbone, "emotion")
    found = {}
    if head_dir.is_dir():
        for sub in sorted(head_dir.iterdir()):
            path = sub / "head.safetensors"
            if path.is_file() and path.with_suffix(".json").is_file():
                found[sub.name] = path
    if not found:
        raise DeployedModelError(
            f"no trained emotion head for backbone {backbone!r} under {str(head_dir)!r}; "
            f"train them first with `trustser heads fit --backbone {backbone}` "
            "(or point --runs at the directory that holds them)."
        )
    return found


def select_folds(
    manifest: Manifest, heads: dict[str, Path], requested: str | Sequence[str] | None
) -> list[Fold]:
    """Manifest folds that have a head, filtered by name or 1-based index."""
    with_head = [f for f in manifest.folds if f.name in heads]
    if not with_head:
        raise DeployedModelError(
            f"none of the trained emotion heads ({', '.join(heads)}) matches a fold of the store's "
            f"{manifest.corpus} manifest ({', '.join(f.name for f in manifest.folds) or 'no folds'})."
        )
    chosen = select_names(requested, [f.name for f in manifest.folds], error=DeployedModelError)
    if not chosen:
        return with_head
    for name in chosen:
        if name not in heads:
            raise DeployedModelError(
                f"fold {name!r} has no trained emotion head; train it with `trustser heads fit` "
                f"(folds with heads: {', '.join(heads)})."
            )
    return [manifest.fold(name) for name in chosen]


def _head_labels(sidecar: dict[str, Any], manifest: Manifest, path: Path) -> tuple[str, ...]:
    labels = sidecar.get("labels") or sidecar.get("classes")
    if not labels:
        raise DeployedModelError(
            f"head {str(path)!r} does not record its class labels in {path.with_suffix('.json').name}; "
            "retrain it with `trustser heads fit`."
        )
    labels = tuple(str(label) for label in labels)
    unknown = sorted(set(labels) - set(manifest.labels))
    if unknown:
        raise DeployedModelError(
            f"head {str(path)!r} predicts labels {unknown} that the store's {manifest.corpus} "
            "manifest does not use; it was trained on another corpus."
        )
    return labels


def _head_test_clips(
    sidecar: dict[str, Any], manifest: Manifest, fallback: list[Utterance]
) -> list[Utterance]:
    """The clips the head was tested on (recorded in its sidecar), else the fold's test role.

    Ids the store no longer holds are dropped: only extracted clips have known features.
    """
    recorded = sidecar.get("test_ids")
    if not recorded:
        return fallback
    return [manifest.by_id[i] for i in recorded if i in manifest.by_id]


def check_identity(
    expected: dict[str, Any], found: dict[str, Any] | None, *, what: str, fix: str
) -> None:
    """Refuse ``found`` provenance whose :data:`IDENTITY_KEYS` differ from the store's."""
    if not found:
        return
    for key in IDENTITY_KEYS:
        if key in expected and key in found and expected[key] != found[key]:
            raise DeployedModelError(
                f"{what} has {key}={found[key]!r} but the store's features have "
                f"{key}={expected[key]!r}; {fix}"
            )


def reload_backbone(provenance: dict[str, Any], device: torch.device):
    """The backbone the store's features came from, with the same window, on ``device``."""
    from trustser.backbones import load_backbone

    kwargs: dict[str, Any] = {"device": device}
    if provenance.get("window") is not None:
        kwargs["window"] = provenance["window"]
    backbone = load_backbone(provenance["backbone"], **kwargs)
    check_identity(
        provenance,
        backbone.provenance(),
        what=f"the backbone {provenance['backbone']!r} loaded now",
        fix="the weights or settings changed since extraction; re-extract the store.",
    )
    return backbone


def load_waveforms(
    utterances: Sequence[Utterance], provenance: dict[str, Any]
) -> list[torch.Tensor]:
    """The clips decoded as extraction decoded them (its sample rate and crop)."""
    from trustser.audio import DEFAULT_MAX_SECONDS, TARGET_SAMPLE_RATE, load_audio

    sample_rate = int(provenance.get("sample_rate") or TARGET_SAMPLE_RATE)
    max_seconds = provenance.get("max_seconds", DEFAULT_MAX_SECONDS)
    return [
        load_audio(u.path, sample_rate=sample_rate, max_seconds=max_seconds).waveform
        for u in utterances
    ]


@dataclass
class FoldPlan:
    """A fold ready to attack: its end-to-end model, class labels and test clips."""

    fold: str
    model: EndToEndClassifier
    labels: tuple[str, ...]
    utterances: list[Utterance]
    head_path: Path
    skipped_labels: int = 0

    def clip_seeds(self, seed: int) -> list[int]:
        """One seed per test clip, from (``seed``, fold, clip id): the draws a randomized model
        classifies that clip with, the same in the clean evaluation and in every attack."""
        return [derived_seed(seed, self.fold, u.id, "draws") for u in self.utterances]


@dataclass
class LoadedHead:
    """A fold's trained emotion head, checked against the store: the module, its
    :class:`FoldHead` record, its class labels and the test clips it is evaluated on (those
    with a label it knows; ``skipped_labels`` counts the others)."""

    fold: str
    head: nn.Module
    record: FoldHead
    labels: tuple[str, ...]
    utterances: list[Utterance]
    skipped_labels: int = 0


def load_fold_head(
    fold: Fold, path: Path, manifest: Manifest, provenance: dict[str, Any], device: torch.device
) -> LoadedHead:
    """Load ``fold``'s emotion head from ``path``; its recorded store provenance must be the
    store group's (else :class:`DeployedModelError` says to retrain)."""
    from trustser.heads.model import load_head

    head, sidecar = load_head(path, device=device)
    check_identity(
        provenance,
        (sidecar.get("store") or {}).get("provenance"),
        what=f"the emotion head of fold {fold.name}",
        fix="retrain the heads on this store with `trustser heads fit`.",
    )
    labels = _head_labels(sidecar, manifest, path)
    clips = _head_test_clips(sidecar, manifest, manifest.split(fold)["test"])
    known = [u for u in clips if u.emotion in labels]
    record = FoldHead(path, sidecar, provenance, device)
    return LoadedHead(fold.name, head, record, labels, known, len(clips) - len(known))


def plan_folds(
    chosen: Sequence[Fold],
    heads: dict[str, Path],
    manifest: Manifest,
    provenance: dict[str, Any],
    encoder: Any,
    device: torch.device,
    deployment: Deployment | None = None,
) -> list[FoldPlan]:
    """Load each chosen fold's head (checked against the store) and pair it with ``encoder``
    as ``deployment`` deploys it for that fold (a fine-tuned variant: the fold's blocks)."""
    plans = []
    for fold in chosen:
        loaded = load_fold_head(fold, heads[fold.name], manifest, provenance, device)
        fold_encoder = encoder
        if deployment is not None:
            fold_encoder = deployment.fold_encoder(encoder, loaded.record)
        plans.append(
            FoldPlan(
                fold=fold.name,
                model=EndToEndClassifier(fold_encoder, loaded.head),
                labels=loaded.labels,
                utterances=loaded.utterances,
                head_path=heads[fold.name],
                skipped_labels=loaded.skipped_labels,
            )
        )
    return plans


def plan_deployment(
    layout: RunLayout,
    name: str,
    group: Any,
    provenance: dict[str, Any],
    deployment: Deployment | None,
    folds: str | Sequence[str] | None,
    device: torch.device,
) -> tuple[list[FoldPlan], Any]:
    """The fold plans of model ``name`` (store ``group``) as ``deployment`` runs it, and the
    reloaded backbone: a defence at inference classifies with its base's heads."""
    uses_base = deployment is not None and deployment.uses_base_heads
    heads = available_heads(layout, ModelName.parse(name).base if uses_base else name)
    manifest = group.manifest()
    chosen = select_folds(manifest, heads, folds)
    encoder = reload_backbone(provenance, device)
    return plan_folds(chosen, heads, manifest, provenance, encoder, device, deployment), encoder


def deploy_plan(plan: FoldPlan, deployment: Deployment | None, seed: int) -> FoldPlan:
    """``plan`` with its model as ``deployment`` runs it. A randomized defence's fresh draws
    (what an attack's gradients see) come from a generator seeded per fold; its predictions use
    each clip's own draws (:meth:`FoldPlan.clip_seeds`)."""
    if deployment is None:
        return plan

    model = deployment.wrap(
        plan.model, fold=plan.fold, seed=derived_seed(seed, plan.fold, "smooth")
    )
    return replace(plan, model=model)
