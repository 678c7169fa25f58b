"""Fairness mitigations as one variant kind, ``fair-<method>``: closing the gender gap in
emotion errors (docs/mitigations.md).

(a) ``fit_fair_post`` — post-processing, ``<backbone>@fair-post``: the base's emotion heads,
with per-gender class offsets added to their log-probabilities,
:math:`\\hat y = \\arg\\max_c\\, \\log p_c(x) + \\delta_{g(x), c}`, fitted on each fold's **dev**
speakers to minimise the figure the fairness axis scores, the multiclass equalized odds of
docs/metrics.md, subject to a UAR floor (dev UAR at least the unadjusted dev UAR minus
``uar_floor``), by coordinate search over a grid (:class:`PostProcessing`); the worst-class gap
:math:`\\max_c \\max(|\\Delta\\mathrm{TPR}_c|, |\\Delta\\mathrm{FPR}_c|)` is reported beside it. The
offsets fitted on a fold's dev clips are applied, unchanged, to its test clips. The multiclass
case fairlearn's ``ThresholdOptimizer`` does not cover. It needs each clip's gender **at
inference**.

(b) ``fit_fair_reweight`` — training-time reweighting, ``<backbone>@fair-reweight``: the emotion
head trained with every (gender, class) cell weighing the same in the loss
(:func:`~trustser.heads.mitigated.cell_weights`); no gender at inference.

Neither changes the representation an adversary reads (the backbone's hidden states), so both
variants inherit the base's gender, speaker and probe runs, marked ``inherited_from``
(:meth:`~trustser.variants.kind.VariantKind.exposes_base_representation`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustser._validation import TrustSERError, select_names
from trustser._version import __version__
from trustser.deployed.cached import CachedPath, head_on_cache
from trustser.deployed.loading import FoldHead
from trustser.heads.crossval import FoldVariant, cross_validate
from trustser.heads.data import PackedFeatures, StoreGroupError
from trustser.heads.estimator import class_weights
from trustser.heads.mitigated import MitigatedHeadClassifier, cell_weights
from trustser.heads.model import LayerWeightedHead, load_head
from trustser.heads.tasks import build_task, select_splits
from trustser.heads.training import store_info
from trustser.metrics import bootstrap as bs
from trustser.metrics._common import mean_std
from trustser.metrics.performance import performance_summary, uar_score
from trustser.runs import RunLayout, read_json, task_metrics, write_json, write_predictions
from trustser.variants.kind import FitRequest, Variant, VariantError, VariantFit, VariantKind

__all__ = [
    "DEFAULT_UAR_FLOOR",
    "FAIRNESS_METHODS",
    "KIND",
    "FairnessError",
    "FairnessKind",
    "PostProcessing",
    "fit_fair_post",
    "fit_fair_reweight",
    "gender_gaps",
    "offsets_path",
]

DEFAULT_UAR_FLOOR = 0.02  # dev UAR may drop by at most 2 points
GENDERS = ("female", "male")


FAIRNESS_METHODS = ("post", "reweight")


class FairnessError(TrustSERError, ValueError):
    """A fairness mitigation that cannot be fitted from the runs and store at hand."""


def _group_rows(genders: Sequence[str]) -> np.ndarray:
    """Each clip's row of the offsets: 0 female, 1 male, -1 any other gender (no offset)."""
    return np.array([GENDERS.index(g) if g in GENDERS else -1 for g in genders], dtype=np.int64)


def gender_gaps(
    true: np.ndarray, pred: np.ndarray, genders: Sequence[str], num_classes: int
) -> dict[str, float | None]:
    r"""The fairness axis's figure and the worst-class gap beside it, between the two genders
    (class indices; clips of another gender left out; None where undefined):

    - ``eo_multiclass``: the multiclass equalized odds of docs/metrics.md,
      :math:`\frac{1}{C'}\sum_y \tfrac12\sum_{\hat y}|P_f(\hat y|y) - P_m(\hat y|y)|`
      (:func:`~trustser.metrics.fairness.multiclass_equalized_odds_difference`);
    - ``eo_worst_class``: :math:`\max_c \max(|\Delta\mathrm{TPR}_c|, |\Delta\mathrm{FPR}_c|)`
      (:func:`~trustser.metrics.fairness.equalized_odds_difference`, ``aggregate="max"``).
    """
    rows = _group_rows(genders)
    keep = rows >= 0
    flat = np.ravel_multi_index(
        (rows[keep], np.asarray(true)[keep], np.asarray(pred)[keep]),
        (2, num_classes, num_classes),
    )
    confusion = np.bincount(flat, minlength=2 * num_classes**2).reshape(2, num_classes, num_classes)
    figures = {
        "eo_multiclass": bs.multiclass_eo_from_counts(confusion),
        "eo_worst_class": bs.class_gaps_from_counts(confusion)["equalized_odds_max"],
    }
    return {k: None if np.isnan(v) else float(v) for k, v in figures.items()}


@dataclass
class PostProcessing:
    """Per-gender additive offsets on log-probabilities, ``offsets[g, c]`` (class 0 fixed at 0).

    :meth:`fit` runs coordinate search: ``sweeps`` passes over every free offset, each trying
    every value of ``grid`` and keeping the one of lowest **multiclass equalized odds** (the
    fairness axis's figure, :func:`gender_gaps`) among those whose UAR stays at least
    ``base UAR − uar_floor`` (ties: higher UAR, then the smaller offset). The worst-class gap is
    recorded beside it, not optimised.
    """

    uar_floor: float = DEFAULT_UAR_FLOOR
    grid: tuple[float, ...] = tuple(np.round(np.linspace(-3.0, 3.0, 61), 3))
    sweeps: int = 4
    offsets: np.ndarray | None = None
    fit_info: dict[str, Any] = field(default_factory=dict)

    def predict(self, log_proba: np.ndarray, genders: Sequence[str]) -> np.ndarray:
        return self.adjusted(log_proba, genders).argmax(axis=1)

    def adjusted(self, log_proba: np.ndarray, genders: Sequence[str]) -> np.ndarray:
        if self.offsets is None:
            raise FairnessError("PostProcessing is not fitted; call fit(...) first.")
        return _shifted(np.asarray(log_proba, dtype=np.float64), self.offsets, _group_rows(genders))

    def fit(
        self, log_proba: np.ndarray, true: np.ndarray, genders: Sequence[str]
    ) -> PostProcessing:
        """Fit the offsets on (dev) log-probabilities ``[N, C]``, true class indices and genders."""
        log_proba = np.asarray(log_proba, dtype=np.float64)
        true = np.asarray(true)
        genders = list(genders)
        rows = _group_rows(genders)
        num_classes = log_proba.shape[1]
        self.offsets = np.zeros((2, num_classes))

        def evaluate(offsets: np.ndarray) -> tuple[dict[str, float | None], float]:
            pred = _shifted(log_proba, offsets, rows).argmax(1)
            return gender_gaps(true, pred, genders, num_classes), float(uar_score(true, pred))

        gaps, base_uar = evaluate(self.offsets)
        self.fit_info = {
            "objective": "multiclass equalized odds (the fairness axis) under a dev UAR floor",
            "dev_uar_before": base_uar,
            "dev_eo_multiclass_before": gaps["eo_multiclass"],
            "dev_eo_worst_class_before": gaps["eo_worst_class"],
        }
        why = None
        if len({r for r in rows.tolist() if r >= 0}) < 2:
            why = "the dev speakers are of one gender: no offsets fitted"
        elif gaps["eo_multiclass"] is None:
            why = "no class has dev clips of both genders: no offsets fitted"
        if why is not None:
            self.fit_info["note"] = why
            self._record(gaps, base_uar)
            return self
        floor = base_uar - self.uar_floor
        best_eo, best_uar = gaps["eo_multiclass"], base_uar
        for _ in range(self.sweeps):
            improved = False
            for g in range(2):
                for c in range(1, num_classes):
                    current = self.offsets[g, c]
                    for value in self.grid:
                        trial = self.offsets.copy()
                        trial[g, c] = value
                        found, uar = evaluate(trial)
                        eo = found["eo_multiclass"]
                        if eo is None or uar < floor - 1e-12:
                            continue
                        key = (round(eo, 12), -round(uar, 12), abs(value))
                        if key < (round(best_eo, 12), -round(best_uar, 12), abs(current)):
                            best_eo, best_uar, current = eo, uar, value
                            self.offsets[g, c] = value
                            improved = True
            if not improved:
                break
        self._record(*evaluate(self.offsets))
        return self

    def _record(self, gaps: dict[str, float | None], uar: float) -> None:
        self.fit_info.update(
            dev_uar_after=uar,
            dev_eo_multiclass_after=gaps["eo_multiclass"],
            dev_eo_worst_class_after=gaps["eo_worst_class"],
        )


def _shifted(log_proba: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``log_proba`` plus each clip's gender's offsets (none for another gender)."""
    return log_proba + np.where(rows[:, None] >= 0, offsets[np.clip(rows, 0, 1)], 0.0)


@torch.no_grad()
def head_log_proba(
    head: LayerWeightedHead, source: PackedFeatures, ids: Sequence[str], *, batch_size: int = 64
) -> np.ndarray:
    """Log-probabilities ``[N, C]`` of a trained head on cached features, rows in ``ids`` order."""
    head = head.eval()
    device = head.layer_logits.device
    rows: dict[str, np.ndarray] = {}
    for batch in source.packed_batches(list(ids), batch_size=batch_size, shuffle=False):
        logits = head.forward_packed(
            batch.frames.to(device), batch.segments.to(device), len(batch.ids)
        )
        rows.update(
            zip(batch.ids, torch.log_softmax(logits.double(), 1).cpu().numpy(), strict=True)
        )
    return np.stack([rows[i] for i in ids])


def fit_fair_post(variant: Variant, request: FitRequest) -> VariantFit:
    """Fit per-gender logit offsets on each fold's dev clips over the base's emotion heads
    (``trustser heads fit`` first) and write ``<runs>/<backbone>@fair-post/emotion/``."""
    from trustser.store import open_group

    start = time.perf_counter()
    group, name = open_group(request.store, variant.base, error=StoreGroupError)
    layout = request.layout
    head_dir = layout.head_dir(name, "emotion")
    available = sorted(p.name for p in head_dir.glob("*") if (p / "head.safetensors").is_file())
    if not available:
        raise FairnessError(
            f"no emotion heads of {name!r} under {str(head_dir)!r}; train them first with "
            f"`trustser heads fit --backbone {name}`."
        )
    chosen = select_names(request.folds, available, error=FairnessError) or available
    manifest = group.manifest()
    # the offsets are fitted on the CPU whatever the device: a few hundred clips' log-probabilities
    heads = {f: load_head(layout.head_path(name, "emotion", f), device="cpu") for f in chosen}
    ids = list(dict.fromkeys(i for _, s in heads.values() for i in (*s["dev_ids"], *s["test_ids"])))
    source = PackedFeatures.from_source(group, [i for i in ids if i in manifest.by_id])
    uar_floor = float(request.options.get("uar_floor", DEFAULT_UAR_FLOOR))
    target = variant.name
    rows: list[dict[str, Any]] = []
    fold_metrics: list[dict[str, Any]] = []
    labels: list[str] = []
    for fold in chosen:
        head, sidecar = heads[fold]
        labels = list(sidecar["labels"])
        record, fold_rows = _post_process_fold(head, sidecar, source, manifest, fold, uar_floor)
        rows += fold_rows
        write_json(
            offsets_path(layout, target, fold),
            {
                "fold": fold,
                "offsets": record["offsets"],
                "labels": labels,
                "base_head": str(layout.head_path(name, "emotion", fold)),
            },
        )
        fold_metrics.append(record)
    description = KIND.description(variant, request)
    metrics = task_metrics("emotion", target, labels, fold_metrics, roles=("test", "dev"))
    metrics.update(
        **_gap_means(fold_metrics),
        variant=description,
        trustser_version=__version__,
        fit_seconds_total=time.perf_counter() - start,
    )
    directory = layout.head_dir(target, "emotion")
    write_json(directory / "metrics.json", metrics)
    write_json(
        directory / "config.json",
        {"task": "emotion", "backbone": target, "variant": description, "folds": chosen},
    )
    write_predictions(directory / "predictions.csv", rows, labels)
    return VariantFit(target, metrics=metrics, seconds=time.perf_counter() - start)


def _gap_means(folds: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """``test_<gap>_<before|after>_mean`` over the folds that define it (the axis's fold mean
    for ``eo_multiclass``); None when none does."""
    out: dict[str, float | None] = {}
    for gap in ("eo_multiclass", "eo_worst_class"):
        for when in ("before", "after"):
            values = [
                f[key] for f in folds if (key := f"test_{gap}_{when}") in f and f[key] is not None
            ]
            out[f"test_{gap}_{when}_mean"] = mean_std(values)[0] if values else None
    return out


def _post_process_fold(
    head: LayerWeightedHead,
    sidecar: Mapping[str, Any],
    source: PackedFeatures,
    manifest: Any,
    fold: str,
    uar_floor: float,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One fold: offsets fitted on its dev clips only, applied unchanged to dev and test; the
    fold's record (dev/test figures, the test gaps before and after, the offsets) and its test
    prediction rows."""
    labels = list(sidecar["labels"])
    index = {c: k for k, c in enumerate(labels)}
    parts = {r: [i for i in sidecar[f"{r}_ids"] if i in manifest.by_id] for r in ("dev", "test")}
    genders = {r: [manifest[i].gender for i in parts[r]] for r in parts}
    truth = {r: np.array([index[manifest[i].emotion] for i in parts[r]]) for r in parts}
    logp = {r: head_log_proba(head, source, parts[r]) for r in parts}
    post = PostProcessing(uar_floor=uar_floor).fit(logp["dev"], truth["dev"], genders["dev"])
    record: dict[str, Any] = {"fold": fold, **post.fit_info}
    rows: list[dict[str, Any]] = []
    base = gender_gaps(truth["test"], logp["test"].argmax(1), genders["test"], len(labels))
    record.update({f"test_{k}_before": v for k, v in base.items()})
    for role in ("dev", "test"):
        adjusted = post.adjusted(logp[role], genders[role])
        predicted = [labels[k] for k in adjusted.argmax(1)]
        summary = performance_summary([labels[k] for k in truth[role]], predicted, labels=labels)
        if role == "test":
            gaps = gender_gaps(truth[role], adjusted.argmax(1), genders[role], len(labels))
            record.update({f"test_{k}_after": v for k, v in gaps.items()})
        record[f"{role}_uar"] = summary["uar"]
        record[f"{role}_accuracy"] = summary["weighted_accuracy"]
        record[f"{role}_macro_f1"] = summary["macro_f1"]
        record[f"{role}_per_class_recall"] = summary["per_class_recall"]
        if role == "test":
            proba = np.exp(adjusted - adjusted.max(1, keepdims=True))
            proba /= proba.sum(1, keepdims=True)
            for utterance_id, pred, p in zip(parts["test"], predicted, proba, strict=True):
                u = manifest[utterance_id]
                rows.append(
                    {
                        "id": u.id,
                        "fold": fold,
                        "speaker": u.speaker,
                        "gender": u.gender,
                        "true": u.emotion,
                        "pred": pred,
                        **{f"prob_{c}": float(v) for c, v in zip(labels, p, strict=True)},
                    }
                )
    record["offsets"] = {
        g: dict(zip(labels, post.offsets[k].tolist(), strict=True)) for k, g in enumerate(GENDERS)
    }
    return record, rows


def offsets_path(layout: RunLayout, variant: str, fold: str) -> Path:
    """Where ``fit_fair_post`` writes one fold's per-gender offsets."""
    return layout.head_dir(variant, "emotion") / fold / "offsets.json"


def cached_post_processing(head: torch.nn.Module, path: Path) -> CachedPath:
    """The base's emotion head on the cached hidden states, its log-probabilities shifted by
    the per-gender offsets saved at ``path`` (a clip of another gender is not shifted)."""
    if not path.is_file():
        raise FairnessError(
            f"no per-gender offsets at {str(path)!r}; fit the variant first with "
            "`trustser mitigate fairness --method post`."
        )
    saved = read_json(path)
    labels = list(saved["labels"])
    table = torch.tensor(
        [[float(saved["offsets"][g][c]) for c in labels] for g in GENDERS], dtype=torch.float32
    )
    head.eval()

    def logits(hidden: torch.Tensor, mask: torch.Tensor, genders: Sequence[str]) -> torch.Tensor:
        log_proba = torch.log_softmax(head(hidden, mask).double(), dim=1)
        shift = torch.zeros_like(log_proba)
        for row, gender in enumerate(genders):
            if gender in GENDERS:
                shift[row] = table[GENDERS.index(gender)].to(shift)
        return log_proba + shift

    return CachedPath(
        logits,
        "the base's emotion head on the cached hidden states plus the fold's per-gender offsets "
        "(each clip's gender given)",
    )


class _Reweighting(FoldVariant):
    """The reweighted emotion head: each clip's gender in ``fit``, the cell weights recorded."""

    def __init__(self, description: Mapping[str, Any], genders: Mapping[str, str]) -> None:
        self.description = dict(description)
        self.genders = dict(genders)

    def fit_options(self) -> Mapping[str, Any]:
        return {"genders": self.genders}

    def after_fold(self, split: Any, model: Any, fold_dir: Path) -> Mapping[str, Any]:
        return {"mitigation": {"kind": "fairness", "cell_weights": model.cell_weights_}}


def fit_fair_reweight(variant: Variant, request: FitRequest) -> VariantFit:
    """Train ``<backbone>@fair-reweight``'s emotion heads with gender × class cell weights,
    every other setting the base's heads' (``request.estimator``)."""
    from trustser.store import open_group

    start = time.perf_counter()
    group, name = open_group(request.store, variant.base, error=StoreGroupError)
    manifest = group.manifest()
    task = build_task("emotion", manifest, seed=request.seed)
    splits = select_splits(task, request.folds)
    source = PackedFeatures.from_source(
        group, list(dict.fromkeys(i for s in splits for i in s.ids))
    )
    genders = {u.id: u.gender for u in manifest.utterances}
    estimator = MitigatedHeadClassifier(cell_weight=True, **request.estimator.get_params())
    unchanged = [
        s.name for s in splits if reweighting_is_moot(task, s, genders, estimator.class_weight)
    ]
    run = cross_validate(
        estimator,
        task,
        splits,
        source,
        manifest=manifest,
        layout=request.layout,
        model=variant.name,
        store_info=store_info(request.store, group, name),
        variant=_Reweighting(KIND.description(variant, request), genders),
        callback=request.callback,
        resume=request.resume,
    )
    notes = []
    if unchanged:
        notes.append(
            f"{variant.name}: in {', '.join(unchanged)} every emotion has as many training "
            "clips of each gender, so the cell weights are the base's class weights and "
            "these heads train exactly as the base's: there is nothing to reweight"
        )
    return VariantFit(variant.name, tasks=[run], seconds=time.perf_counter() - start, notes=notes)


def reweighting_is_moot(
    task: Any, split: Any, genders: Mapping[str, str], class_weight: Any
) -> bool:
    """Whether the gender × class cell weights of ``split``'s training clips are proportional,
    clip for clip, to the base head's per-class weights: the loss divides by the sum of the
    weights, so the reweighted head then trains exactly as the base's (e.g. every emotion's
    clips split evenly by gender, with balanced class weights)."""
    labels = [task.label_of[i] for i in split.train]
    reweighted, _ = cell_weights(labels, [genders[i] for i in split.train])
    per_class = class_weights(labels, task.labels, class_weight)
    base = np.array([per_class[task.labels.index(y)] for y in labels])
    return bool(np.allclose(reweighted / reweighted.sum(), base / base.sum(), rtol=1e-9, atol=0))


class FairnessKind(VariantKind):
    """``fair-post`` (offsets on the base's logits, fitted on dev; gender needed at inference)
    and ``fair-reweight`` (an emotion head trained with gender × class cell weights)."""

    word = "fair"
    label = "fairness mitigation"
    summary = (
        "per-gender logit offsets fitted on dev (post) or gender × class reweighting (reweight)"
    )
    form = "fair-post or fair-reweight"
    _TAG = re.compile(rf"^fair-(?P<method>{'|'.join(FAIRNESS_METHODS)})$")

    def parse(self, tag: str) -> dict[str, Any] | None:
        match = self._TAG.match(tag)
        return {"method": match["method"]} if match else None

    def tag(self, *, method: str) -> str:
        if method not in FAIRNESS_METHODS:
            raise VariantError(
                f"fairness method {method!r} is not one of {', '.join(FAIRNESS_METHODS)}."
            )
        return f"fair-{method}"

    def describe(self, params: Mapping[str, Any]) -> str:
        if params["method"] == "post":
            return "per-gender logit offsets fitted on dev"
        return "gender × class reweighting of the loss"

    def description(self, variant: Variant, request: FitRequest) -> dict[str, Any]:
        common = {"name": variant.name, "base_backbone": variant.base, "kind": "fairness"}
        if variant.params["method"] == "post":
            return {
                **common,
                "method": "post-processing: per-gender class offsets on the emotion log-probabilities",
                "needs_gender_at_inference": True,
                "uar_floor": float(request.options.get("uar_floor", DEFAULT_UAR_FLOOR)),
                "fitted_on": "each fold's dev speakers",
                "trained": "no training: offsets over the base's emotion heads",
            }
        return {
            **common,
            "method": "training-time reweighting: every gender × class cell weighs the same",
            "needs_gender_at_inference": False,
            "trained": "emotion head with gender × class cell weights",
        }

    def not_attackable(self, params: Mapping[str, Any]) -> str | None:
        if params["method"] != "post":
            return None
        return (
            "it adds per-gender offsets to the emotion logits, which needs each clip's gender at "
            "inference; the end-to-end attack takes waveforms only, so this variant's safety is "
            "not measured (docs/mitigations.md)."
        )

    def needs_gender_at_inference(self, params: Mapping[str, Any]) -> bool:
        return params["method"] == "post"

    def cached_path(
        self, variant: Variant, head: torch.nn.Module, fold: FoldHead, layout: RunLayout
    ) -> CachedPath:
        """``fair-post``: the base's head, its log-probabilities shifted by the fold's fitted
        offsets for each clip's gender (``offsets.json``); ``fair-reweight``: its own head."""
        if variant.params["method"] != "post":
            return head_on_cache(head)
        return cached_post_processing(
            head, offsets_path(layout, variant.name, fold.path.parent.name)
        )

    def uses_base_heads(self, params: Mapping[str, Any]) -> bool:
        return params["method"] == "post"

    def exposes_base_representation(self, params: Mapping[str, Any]) -> bool:
        return True

    def planned(self, base: str, settings: Mapping[str, Any]) -> list[Variant]:
        return [self.variant(base, method=method) for method in settings.get("fairness", ())]

    def fit(self, variant: Variant, request: FitRequest) -> VariantFit:
        if variant.params["method"] == "post":
            return fit_fair_post(variant, request)
        return fit_fair_reweight(variant, request)


KIND = FairnessKind()
