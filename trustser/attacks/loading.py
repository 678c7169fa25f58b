"""Everything an attack loads before it runs, each piece checked against the store's features.

The store group's provenance names the backbone (reloaded with the same window and checked
against the recorded weight checksum); each fold's emotion head must have been trained on those
very features; the test clips are decoded exactly as extraction did (same crop, same rate). Any
mismatch is an :class:`~trustser.attacks.methods.AttackError` saying what to redo.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trustser._validation import select_names
from trustser.attacks.methods import AttackError
from trustser.end_to_end import EndToEndClassifier
from trustser.manifest import Fold, Manifest, Utterance
from trustser.runs import ModelName, RunLayout

__all__ = [
    "IDENTITY_KEYS",
    "FoldPlan",
    "available_heads",
    "check_identity",
    "load_waveforms",
    "open_attack_group",
    "plan_folds",
    "reload_backbone",
    "select_folds",
    "smoothed_plan",
    "variant_encoder",
]

# Provenance keys that, if they differ between the store and the head or the reloaded backbone,
# mean the attacked model is not the one whose features trained the head.
IDENTITY_KEYS = ("backbone", "weights_sha256", "window")


def open_attack_group(
    store_path: str | os.PathLike, backbone: str | None
) -> tuple[str, Any, dict[str, Any]]:
    """``(name, group, provenance)`` of the store group to attack; its provenance must name the
    backbone, since the attack reloads it.

    A variant (``<group>@top<K>``, ``@privacy-l<λ>``, ``@fair-reweight``, ``@smooth-…``) opens
    its base group: ``name`` is the variant (its results live under it), ``group`` and
    ``provenance`` are the base's, against which the reloaded backbone is checked (a fine-tuned
    variant then swaps each fold's blocks in). ``@fair-post`` is refused: it needs gender at
    inference.
    """
    from trustser.store import open_group

    requested = ModelName.parse(backbone) if backbone is not None else None
    if requested is not None and requested.fairness_method == "post":
        raise AttackError(
            f"{backbone!r} adds per-gender offsets to the emotion logits, which needs each clip's "
            "gender at inference; the end-to-end attack takes waveforms only, so this variant's "
            "safety is not measured (docs/mitigations.md)."
        )
    base = requested.base if requested is not None else None
    group, backbone = open_group(store_path, base, error=AttackError)
    provenance = dict(group.provenance or {})
    if not provenance.get("backbone"):
        raise AttackError(
            f"store {str(store_path)!r} group {backbone!r} records no backbone provenance, so the "
            "extraction cannot be reproduced end to end; re-extract it with `trustser extract`."
        )
    if requested is not None and requested.is_variant:
        backbone = str(ModelName(backbone, requested.tag))
    return backbone, group, provenance


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
        raise AttackError(
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
        raise AttackError(
            f"none of the trained emotion heads ({', '.join(heads)}) matches a fold of the store's "
            f"{manifest.corpus} manifest ({', '.join(f.name for f in manifest.folds) or 'no folds'})."
        )
    chosen = select_names(requested, [f.name for f in manifest.folds], error=AttackError)
    if not chosen:
        return with_head
    for name in chosen:
        if name not in heads:
            raise AttackError(
                f"fold {name!r} has no trained emotion head; train it with `trustser heads fit` "
                f"(folds with heads: {', '.join(heads)})."
            )
    return [manifest.fold(name) for name in chosen]


def _head_labels(sidecar: dict[str, Any], manifest: Manifest, path: Path) -> tuple[str, ...]:
    labels = sidecar.get("labels") or sidecar.get("classes")
    if not labels:
        raise AttackError(
            f"head {str(path)!r} does not record its class labels in {path.with_suffix('.json').name}; "
            "retrain it with `trustser heads fit`."
        )
    labels = tuple(str(label) for label in labels)
    unknown = sorted(set(labels) - set(manifest.labels))
    if unknown:
        raise AttackError(
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
            raise AttackError(
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


def plan_folds(
    chosen: Sequence[Fold],
    heads: dict[str, Path],
    manifest: Manifest,
    provenance: dict[str, Any],
    encoder: Any,
    device: torch.device,
) -> list[FoldPlan]:
    """Load each chosen fold's head (checked against the store) and pair it with ``encoder``.

    A fine-tuned variant's head (its ``head.json`` records ``variant``) is paired with a copy of
    ``encoder`` whose top blocks are that fold's fine-tuned ones (:func:`variant_encoder`).
    """
    from trustser.heads.model import load_head

    plans = []
    for fold in chosen:
        head, sidecar = load_head(heads[fold.name], device=device)
        check_identity(
            provenance,
            (sidecar.get("store") or {}).get("provenance"),
            what=f"the emotion head of fold {fold.name}",
            fix="retrain the heads on this store with `trustser heads fit`.",
        )
        fold_encoder = encoder
        if sidecar.get("variant"):
            fold_encoder = variant_encoder(encoder, heads[fold.name], sidecar, provenance, device)
        labels = _head_labels(sidecar, manifest, heads[fold.name])
        clips = _head_test_clips(sidecar, manifest, manifest.split(fold)["test"])
        known = [u for u in clips if u.emotion in labels]
        plans.append(
            FoldPlan(
                fold=fold.name,
                model=EndToEndClassifier(fold_encoder, head),
                labels=labels,
                utterances=known,
                head_path=heads[fold.name],
                skipped_labels=len(clips) - len(known),
            )
        )
    return plans


def smoothed_plan(plan: FoldPlan, smoothing: tuple[float, int], seed: int) -> FoldPlan:
    """``plan`` with its model behind randomized smoothing at ``(snr_db, samples)``."""
    from dataclasses import replace

    from trustser.mitigate.smoothing import SmoothedClassifier

    snr_db, samples = smoothing
    model = SmoothedClassifier(plan.model, snr_db=snr_db, samples=samples, seed=seed)
    return replace(plan, model=model)


def variant_encoder(
    encoder: Any,
    head_path: Path,
    sidecar: dict[str, Any],
    provenance: dict[str, Any],
    device: torch.device,
) -> Any:
    """A copy of the (identity-checked) base ``encoder`` with one fold's fine-tuned top blocks
    swapped in, read from beside the fold's emotion head; the blocks must extend the store's
    backbone (same weights checksum, the head's K)."""
    from trustser.backbones.top_blocks import TopBlocksError, with_top_blocks
    from trustser.heads.finetune import FineTuneError, read_top_blocks

    info = sidecar["variant"]
    path = head_path.parent / str(info.get("top_blocks") or "top_blocks.safetensors")
    try:
        state, blocks = read_top_blocks(path)
    except FineTuneError as error:
        raise AttackError(str(error)) from None
    expected = provenance.get("weights_sha256")
    if blocks.get("base_weights_sha256") != expected or blocks.get("k") != info.get("k"):
        raise AttackError(
            f"the fine-tuned blocks {str(path)!r} extend weights {blocks.get('base_weights_sha256')!r} "
            f"with K={blocks.get('k')!r}, but the store's backbone has {expected!r} and the head "
            f"K={info.get('k')!r}; retrain the variant on this store."
        )
    try:
        return with_top_blocks(encoder, state, k=int(blocks["k"])).to(device)
    except TopBlocksError as error:
        raise AttackError(f"{str(path)!r}: {error}") from None
