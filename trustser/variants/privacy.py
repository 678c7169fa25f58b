"""Privacy mitigation, ``privacy-l<λ>``: an encoder that keeps emotion and hides gender, judged
by fresh attackers.

:data:`KIND` fits, per fold, the emotion head against a gender adversary behind gradient
reversal (:class:`~trustser.heads.mitigated.MitigatedHeadClassifier`, every other setting the
base's heads') and writes the variant ``<runs>/<backbone>@privacy-l<λ>/emotion/`` in the shared
layout (the saved model is a plain
layer-weighted head, so ``trustser attack`` runs it end to end: backbone → encoder → classifier).

**The λ = 0 control.** ``privacy-l0`` is the same narrow encoder (layer weights and the 1×1
conv stack, ``[T, H]``) trained for emotion alone, from the same seed: the change of a λ > 0
variant against it is the adversary's; against the base it mixes the adversary with the switch
to a narrow encoder. Every sweep fits it (:meth:`PrivacyKind.planned`, ``trustser mitigate
privacy``), and each λ's change is reported against both (:meth:`PrivacyKind.control`).

What a deployment shares is the **encoder's output**: the head's front end (layer weights and
the 1×1 conv stack) applied to every frame, ``[T, H]`` per clip (:func:`encoder_frames`). Privacy
is judged only by attackers trained afresh on that output (:mod:`trustser.variants.attackers`),
never by the adversary used in training, which the encoder may fool without hiding anything.

**Choosing λ.** Which λ a user would deploy is chosen on dev clips only
(:func:`choose_lambda`): the lowest dev accuracy of the strongest fresh gender attacker among the
λ whose dev emotion UAR is within :data:`DEV_UAR_FLOOR` of the control's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustser.devices import resolve_device
from trustser.heads.crossval import FoldVariant, cross_validate
from trustser.heads.data import PackedFeatures
from trustser.heads.mitigated import MitigatedHeadClassifier
from trustser.heads.model import LayerWeightedHead, load_head
from trustser.heads.tasks import Split
from trustser.runs import RunLayout
from trustser.variants.attackers import (
    EncodedRepresentation,
    PrivacyFitData,
    attack_representation,
    privacy_figures,
)
from trustser.variants.kind import (
    DevChoice,
    Exposed,
    FitRequest,
    Variant,
    VariantError,
    VariantFit,
    VariantKind,
    fold_means,
)

__all__ = [
    "CONTROL_LAMBDA",
    "DEFAULT_LAMBDAS",
    "DEV_UAR_FLOOR",
    "KIND",
    "PrivacyKind",
    "attack_representation",
    "choose_lambda",
    "encoder_frames",
    "encoder_means",
    "fit_privacy",
    "with_control",
]

DEFAULT_LAMBDAS = (0.1, 0.3, 1.0)
CONTROL_LAMBDA = 0.0  # the same encoder trained for emotion alone
# The largest drop of dev emotion UAR below the λ = 0 control's that a chosen λ may cost (the
# fairness post-processing's floor too); fixed, not tuned to any corpus.
DEV_UAR_FLOOR = 0.02


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
    data = PrivacyFitData.open(variant, request)
    source = PackedFeatures.from_source(data.group, data.needed)
    layout = request.layout
    description = KIND.description(variant, request)
    estimator = MitigatedHeadClassifier(
        adversary_weight=float(variant.params["lam"]), **request.estimator.get_params()
    )
    genders = {u.id: u.gender for u in data.manifest.utterances}
    emotion_run = cross_validate(
        estimator,
        data.emotion,
        data.emotion_splits,
        source,
        manifest=data.manifest,
        layout=layout,
        model=variant.name,
        store_info=data.store_info,
        variant=_Adversarial(description, genders),
        callback=request.callback,
        resume=request.resume,
    )
    device = resolve_device(request.estimator.device)
    paths = {s.name: layout.head_path(variant.name, "emotion", s.name) for s in data.emotion_splits}
    encoded = {
        fold: encoder_frames(load_head(path, device=device)[0], source, data.needed)
        for fold, path in paths.items()
    }
    identity = {fold: _file_digest(path) for fold, path in paths.items()}
    representation = EncodedRepresentation(encoded, identity)
    return data.judged(variant, request, representation, emotion_run, description)


def _file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class PrivacyKind(VariantKind):
    """``privacy-l<λ>``: the emotion head trained against a gender adversary of weight λ."""

    word = "privacy"
    targets = "privacy"
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
        if float(params["lam"]) == CONTROL_LAMBDA:
            return "λ = 0 control: the privacy encoder trained for emotion alone"
        return f"gender adversary (gradient reversal), λ = {params['lam']:g}"

    def control(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        return None if float(params["lam"]) == CONTROL_LAMBDA else {"lam": CONTROL_LAMBDA}

    def dev_figures(self, variant: Variant, layout: RunLayout) -> dict[str, Any] | None:
        figures = privacy_figures(layout, variant.name, "dev")
        if figures["uar"] is None or figures["attacker_accuracy"] is None:
            return None
        return figures

    def choose_on_dev(
        self, candidates: Sequence[tuple[Variant, Mapping[str, Any]]]
    ) -> DevChoice | None:
        return choose_lambda(candidates)

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
        """The λ of ``[mitigate] privacy``, the λ = 0 control first (always fitted)."""
        return [self.variant(base, lam=lam) for lam in with_control(settings.get("privacy", ()))]

    def exposed(self, variant: Variant, group: Any, layout: RunLayout) -> Exposed:
        return encoder_means(variant, group, layout)

    def fit(self, variant: Variant, request: FitRequest) -> VariantFit:
        return fit_privacy(variant, request)


KIND = PrivacyKind()


def with_control(lambdas: Sequence[float]) -> list[float]:
    """``lambdas`` with the λ = 0 control first (once), in the order given; empty stays empty
    (no privacy sweep, no control)."""
    values = [float(lam) for lam in lambdas]
    if not values:
        return []
    return list(dict.fromkeys([CONTROL_LAMBDA, *values]))


def choose_lambda(
    candidates: Sequence[tuple[Variant, Mapping[str, Any]]], *, uar_floor: float = DEV_UAR_FLOOR
) -> DevChoice | None:
    """The λ a user would deploy, from **dev** figures only (:func:`privacy_figures` with
    role ``dev``): among the λ whose dev emotion UAR is at most ``uar_floor`` below the λ = 0
    control's (the best dev UAR when the control is absent), the one whose strongest fresh
    gender attacker has the lowest dev accuracy; ties go to the higher dev UAR, then the
    smaller λ. None when no candidate has both dev figures."""
    usable = [
        (v, f)
        for v, f in candidates
        if f.get("uar") is not None and f.get("attacker_accuracy") is not None
    ]
    if not usable:
        return None
    control = [f for v, f in usable if float(v.params["lam"]) == CONTROL_LAMBDA]
    reference = control[0]["uar"] if control else max(f["uar"] for _, f in usable)
    where = "the λ = 0 control's" if control else "the best λ's"
    admissible = [(v, f) for v, f in usable if f["uar"] >= reference - uar_floor - 1e-12]
    chosen, best = min(
        admissible,
        key=lambda c: (c[1]["attacker_accuracy"], -c[1]["uar"], float(c[0].params["lam"])),
    )
    rejected = {}
    for v, f in usable:
        if v.name == chosen.name:
            continue
        if f["uar"] < reference - uar_floor - 1e-12:
            why = (
                f"dev UAR {f['uar']:.3f} is more than {uar_floor:g} below {where} ({reference:.3f})"
            )
        else:
            why = (
                f"dev attacker accuracy {f['attacker_accuracy']:.3f} vs "
                f"{best['attacker_accuracy']:.3f} for λ = {chosen.params['lam']:g}"
            )
        rejected[v.name] = why
    rule = (
        f"on dev: the lowest accuracy of the strongest fresh gender attacker among the λ whose "
        f"emotion UAR is within {uar_floor:g} of {where} ({reference:.3f}); ties: higher UAR, "
        "then smaller λ"
    )
    return DevChoice(chosen.name, rule, rejected)
