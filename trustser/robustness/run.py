"""``trustser robustness``: every head and variant of a backbone on corrupted test clips.

Per backbone: the test clips of the chosen folds are corrupted by every case of the suite and
the frozen backbone is run **once** over the copies, into the backbone's own store group
(:func:`~trustser.robustness.copies.extract_copies`: resumable, units never lost). Then every
model of the backbone — the backbone's emotion heads and each variant found under ``runs`` —
classifies the clean clips and every copy **from the cache**: one read of each batch of cached
hidden states serves every model (:class:`~trustser.deployed.cached.CachedPath`: the head, a
variant's fine-tuned top blocks then its head, offsets on the head's output). A variant whose
inference path changes what the backbone sees (randomized smoothing: noise on the waveform)
cannot be read from the cache: it runs end to end on the same corrupted waveforms, and its
results say so and why (``inference`` in ``summary.json``). The figures and their intervals:
:mod:`trustser.robustness.scores`; the files: :mod:`trustser.robustness.results`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trustser._version import __version__
from trustser.corruptions import CorruptionCase, suite
from trustser.deployed.batches import predict_clips
from trustser.deployed.cached import CachedPath, head_on_cache
from trustser.deployed.loading import (
    LoadedHead,
    available_heads,
    deploy_plan,
    load_fold_head,
    load_waveforms,
    plan_folds,
    reload_backbone,
    select_folds,
)
from trustser.devices import derived_seed, resolve_device
from trustser.extract import ExtractionSummary, ExtractProgress
from trustser.manifest import Fold, Manifest, Utterance
from trustser.metrics.bootstrap import DEFAULT_LEVEL, DEFAULT_REPLICATES
from trustser.robustness.copies import (
    CorruptedSet,
    Corrupter,
    RobustnessError,
    copies_of,
    corrupted_set,
    extract_copies,
)
from trustser.robustness.results import suite_record, write_clips, write_summary
from trustser.robustness.scores import ClipRow, score_suite
from trustser.runs import ModelName, RunLayout
from trustser.variants import Variant, parse
from trustser.workspace import attack_backbones

__all__ = [
    "ModelResult",
    "RobustnessProgress",
    "RobustnessRun",
    "predict_from_cache",
    "robustness_models",
    "run_robustness",
]

CACHE, END_TO_END = "cache", "end to end"


@dataclass(frozen=True)
class RobustnessProgress:
    """Progress of a robustness run for a progress bar: ``done`` of ``total`` ``unit``
    (``clips`` extracted, or ``clip passes``: one model classifying one clip, clean or one
    copy), of the work ``label`` names."""

    label: str
    done: int
    total: int
    unit: str


ProgressCallback = Callable[[RobustnessProgress], None]


@dataclass(frozen=True)
class ModelResult:
    """One model's robustness: its ``summary.json`` (as written) and its directory."""

    model: str
    directory: Path
    summary: dict[str, Any]

    @property
    def end_to_end(self) -> str | None:
        """Why it ran end to end (None: from the cache)."""
        return self.summary["inference"].get("reason")


@dataclass
class RobustnessRun:
    """One backbone: the extraction of its copies and every model's results."""

    backbone: str
    extraction: ExtractionSummary
    models: list[ModelResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class _Model:
    """A model to evaluate: its name, variant (None: the backbone), the emotion heads it
    classifies with (``{fold: path}``, its base's for a defence at inference) and its folds."""

    name: str
    variant: Variant | None
    heads: dict[str, Path]
    folds: list[Fold]

    @property
    def reason(self) -> str | None:
        return None if self.variant is None else self.variant.end_to_end


def robustness_models(layout: RunLayout, base: str, *, variants: bool = True) -> list[str]:
    """The backbone ``base`` and, with ``variants``, each of its variants under ``layout``
    whose emotion run is written (``emotion/metrics.json``)."""
    names = [base]
    if variants:
        for directory in layout.variants(base):
            name = str(ModelName(base, ModelName.parse(directory).tag))
            if (layout.head_dir(name, "emotion") / "metrics.json").is_file():
                names.append(name)
    return names


def _requests(
    store: str | os.PathLike, runs: str | os.PathLike, backbones: Sequence[str] | None
) -> dict[str, list[str] | None]:
    """``{backbone: model names asked for, or None for the backbone and its variants}``: a
    variant named in ``backbones`` asks for itself alone."""
    asked: dict[str, list[str] | None] = {}
    for name in backbones or ():
        model = ModelName.parse(name)
        if not model.is_variant:
            asked[name] = None
        elif asked.get(model.base, []) is not None:
            asked.setdefault(model.base, []).append(name)  # type: ignore[union-attr]
    if not asked:
        asked = dict.fromkeys(attack_backbones(store, runs, None))
    return asked


def _model(
    name: str, layout: RunLayout, manifest: Manifest, folds: str | Sequence[str] | None
) -> _Model:
    variant = parse(name)
    heads_of = variant.base if variant is not None and variant.uses_base_heads else name
    heads = available_heads(layout, heads_of)
    return _Model(name, variant, heads, select_folds(manifest, heads, folds))


def run_robustness(
    store: str | os.PathLike,
    *,
    runs: str | os.PathLike = "runs",
    backbones: Sequence[str] | None = None,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    folds: str | Sequence[str] | None = None,
    variants: bool = True,
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 16,
    replicates: int = DEFAULT_REPLICATES,
    level: float = DEFAULT_LEVEL,
    num_workers: int = 2,
    progress: ProgressCallback | None = None,
) -> list[RobustnessRun]:
    """Corrupt the test clips, extract them once per backbone, and evaluate every model.

    ``backbones``: store groups (default: every one with emotion heads under ``runs``); each
    comes with its variants under ``runs`` unless ``variants`` is False, and a variant name
    asks for that variant alone. ``corruptions`` / ``severities``: the suite's cases (default:
    all, :func:`trustser.corruptions.suite`); ``folds``: names or 1-based indexes (default:
    every fold with a trained emotion head); ``seed``: the suite seed (noise, rooms, babble)
    and the bootstrap's; ``replicates``: speaker-bootstrap replicates (0: no intervals).
    Writes ``runs/<model>/robustness/`` per model; resumable (the copies' extraction resumes,
    the evaluation reads the cache again).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise RobustnessError(f"batch_size must be a whole number >= 1, got {batch_size!r}.")
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 0:
        raise RobustnessError(f"replicates must be 0 (no intervals) or more, got {replicates!r}.")
    cases = suite(corruptions, levels=severities)
    report = progress or (lambda event: None)
    settings = dict(
        folds=folds,
        variants=variants,
        seed=int(seed),
        device=resolve_device(device),
        batch_size=batch_size,
        replicates=replicates,
        level=level,
        num_workers=num_workers,
        report=report,
    )
    return [
        _run_backbone(store, RunLayout(Path(runs)), backbone, asked, cases, **settings)
        for backbone, asked in _requests(store, runs, backbones).items()
    ]


def _run_backbone(
    store: str | os.PathLike,
    layout: RunLayout,
    backbone: str,
    asked: list[str] | None,
    cases: tuple[CorruptionCase, ...],
    *,
    folds: str | Sequence[str] | None,
    variants: bool,
    seed: int,
    device: torch.device,
    batch_size: int,
    replicates: int,
    level: float,
    num_workers: int,
    report: ProgressCallback,
) -> RobustnessRun:
    from trustser.store import open_group

    started = time.perf_counter()
    group, name = open_group(store, backbone, error=RobustnessError)
    manifest = group.manifest()
    names = asked or robustness_models(layout, name, variants=variants)
    models = [_model(n, layout, manifest, folds) for n in names]
    chosen = {f.name for m in models for f in m.folds}
    copies = corrupted_set(
        manifest, cases, folds=[f for f in manifest.folds if f.name in chosen], seed=seed
    )

    def extracted(event: ExtractProgress) -> None:
        report(RobustnessProgress(f"{name}: corrupted copies", event.done, event.total, "clips"))

    extraction = extract_copies(
        store, group, copies, device=str(device), num_workers=num_workers, progress=extracted
    )
    if extraction.pending:
        raise RobustnessError(
            f"{extraction.pending} corrupted copies of {name} are still being extracted by other "
            "writers; rerun when they finish."
        )
    group = group.refresh()
    run = RobustnessRun(name, extraction)
    if extraction.skipped:
        run.notes.append(
            f"{len(extraction.skipped)} corrupted copies could not be extracted and are left out "
            f"(`trustser store skipped --backbone {name}` lists them)."
        )
    evaluation = _Evaluation(
        group, manifest, layout, copies, device=device, batch_size=batch_size, seed=seed
    )
    rows = evaluation.run(models, report)
    for model in models:
        if not rows[model.name]:
            raise RobustnessError(
                f"{model.name}: none of its test clips has a corrupted copy with features in "
                f"{store} (`trustser store skipped --backbone {name}` says why)."
            )
        directory = layout.robustness_dir(model.name)
        scores = score_suite(
            rows[model.name],
            evaluation.labels[model.name],
            cases,
            replicates=replicates,
            seed=seed,
            level=level,
        )
        summary = {
            "model": model.name,
            "base_backbone": name,
            "inference": evaluation.inference(model),
            "store": {
                "path": str(store),
                "group": name,
                **{k: group.provenance.get(k) for k in ("backbone", "weights_sha256", "dtype")},
                "copies_corpus": copies.manifest.corpus,
            },
            "suite": suite_record(cases, seed),
            "folds": [f.name for f in model.folds],
            "labels": evaluation.labels[model.name],
            **scores,
            "notes": list(run.notes),
            "trustser_version": __version__,
            "seconds": time.perf_counter() - started,
        }
        write_clips(directory, rows[model.name])
        write_summary(directory, summary)
        run.models.append(ModelResult(model.name, directory, summary))
    run.seconds = time.perf_counter() - started
    return run


class _Evaluation:
    """Clean and corrupted predictions of a backbone's models: from the cache for every model
    that can be read from it, end to end for the others."""

    def __init__(
        self,
        group: Any,
        manifest: Manifest,
        layout: RunLayout,
        copies: CorruptedSet,
        *,
        device: torch.device,
        batch_size: int,
        seed: int,
    ) -> None:
        self.group, self.manifest, self.layout, self.copies = group, manifest, layout, copies
        self.provenance = dict(group.provenance)
        self.device, self.batch_size, self.seed = device, batch_size, seed
        self.labels: dict[str, list[str]] = {}
        self.descriptions: dict[str, str] = {}
        self._encoder: Any = None

    def inference(self, model: _Model) -> dict[str, Any]:
        """How the model was run, for ``summary.json``."""
        if model.reason is not None:
            return {
                "path": END_TO_END,
                "description": "the deployed model run end to end on every clean and corrupted "
                "clip (backbone included)",
                "reason": model.reason,
            }
        return {"path": CACHE, "description": self.descriptions.get(model.name, ""), "reason": None}

    def run(self, models: list[_Model], report: ProgressCallback) -> dict[str, list[ClipRow]]:
        cached = [m for m in models if m.reason is None]
        direct = [m for m in models if m.reason is not None]
        rows: dict[str, list[ClipRow]] = {m.name: [] for m in models}
        passes = 1 + len(self.copies.cases)
        # the progress total: heads' test clips, counted from their sidecars before loading
        total = sum(len(self.manifest.split(f)["test"]) * passes for m in models for f in m.folds)
        counter = _Counter(report, f"{self.group.name}: evaluating", total)
        folds = [f for f in self.manifest.folds if any(f in m.folds for m in cached)]
        for fold in folds:
            self._cached_fold(fold, [m for m in cached if fold in m.folds], rows, counter)
        for model in direct:
            self._end_to_end(model, rows, counter)
        return rows

    def _keep_labels(self, model: str, labels: Sequence[str]) -> None:
        known = self.labels.setdefault(model, [])
        known.extend(label for label in labels if label not in known)

    def _cached_fold(
        self,
        fold: Fold,
        models: list[_Model],
        rows: dict[str, list[ClipRow]],
        counter: _Counter,
    ) -> None:
        """One fold of every cache-read model: each batch of cached features read once."""
        heads: dict[str, LoadedHead] = {}
        paths: dict[str, CachedPath] = {}
        for model in models:
            loaded = load_fold_head(
                fold, model.heads[fold.name], self.manifest, self.provenance, self.device
            )
            heads[model.name] = loaded
            if model.variant is None:
                paths[model.name] = head_on_cache(loaded.head)
            else:
                paths[model.name] = model.variant.cached_path(
                    loaded.head, loaded.record, self.layout
                )
            self.descriptions[model.name] = paths[model.name].description
            self._keep_labels(model.name, loaded.labels)
        clips = list({u.id: u for h in heads.values() for u in h.utterances}.values())
        clean = self._predict({u.id: u.id for u in clips}, paths, counter)
        for case in self.copies.cases:
            copies = copies_of(self.copies, [u.id for u in clips], case.name)
            present = {clip: copy for clip, copy in copies.items() if copy in self.group}
            corrupted = self._predict(present, paths, counter)
            for name, loaded in heads.items():
                labels = loaded.labels
                for u in loaded.utterances:
                    if u.id in corrupted[name]:
                        rows[name].append(
                            _row(
                                u,
                                fold,
                                case,
                                labels[clean[name][u.id]],
                                labels[corrupted[name][u.id]],
                            )
                        )

    def _predict(
        self, ids: Mapping[str, str], paths: Mapping[str, CachedPath], counter: _Counter
    ) -> dict[str, dict[str, int]]:
        genders = {clip: self.manifest[clip].gender for clip in ids}
        return predict_from_cache(
            self.group,
            ids,
            paths,
            genders=genders,
            batch_size=self.batch_size,
            device=self.device,
            advance=counter.advance,
        )

    def _end_to_end(self, model: _Model, rows: dict[str, list[ClipRow]], counter: _Counter) -> None:
        """A model whose inference path the cache cannot stand in for: the deployed model on
        the clean and corrupted waveforms (the same samples extraction computed)."""
        if self._encoder is None:
            self._encoder = reload_backbone(self.provenance, self.device)
        corrupter = Corrupter(
            self.manifest,
            seed=self.seed,
            max_seconds=self.provenance.get("max_seconds"),
            sample_rate=int(self.provenance.get("sample_rate") or 16_000),
        )
        plans = plan_folds(
            model.folds,
            model.heads,
            self.manifest,
            self.provenance,
            self._encoder,
            self.device,
            model.variant,
        )
        for plan in plans:
            self._keep_labels(model.name, plan.labels)
            clean_waves = load_waveforms(plan.utterances, self.provenance)
            clean = self._run(model, plan, clean_waves, "clean", counter)
            for case in self.copies.cases:
                chosen = [
                    (i, u)
                    for i, u in enumerate(plan.utterances)
                    if (u.id, case.name) in self.copies.ids
                ]
                waves = [
                    torch.from_numpy(
                        corrupter.corrupt(
                            u, case, clean_waves[i].numpy(), pool=self._pool(u.id, case.name)
                        )
                    )
                    for i, u in chosen
                ]
                predicted = self._run(model, plan, waves, case.name, counter)
                fold = self.manifest.fold(plan.fold)
                for (i, u), pred in zip(chosen, predicted, strict=True):
                    rows[model.name].append(
                        _row(u, fold, case, plan.labels[clean[i]], plan.labels[pred])
                    )

    def _pool(self, clip_id: str, case: str) -> list[str]:
        copy = self.copies.manifest[self.copies.ids[(clip_id, case)]]
        return list(copy.custom.get("babble_pool", ()))

    def _run(
        self, model: _Model, plan: Any, waves: list[torch.Tensor], tag: str, counter: _Counter
    ):
        """Class indices of ``waves`` through the fold's deployed model, its randomness seeded
        per (seed, pass) so every pass is reproducible on its own."""
        deployed = deploy_plan(plan, model.variant, derived_seed(self.seed, "robustness", tag))
        logits = predict_clips(
            deployed.model,
            waves,
            batch_size=self.batch_size,
            identical_only=not bool(self._encoder.masks_padding),
            device=self.device,
            advance=counter.advance,
        )
        return logits.argmax(1).tolist() if len(waves) else []


class _Counter:
    """Clip passes done, reported as :class:`RobustnessProgress` events."""

    def __init__(self, report: ProgressCallback, label: str, total: int) -> None:
        self.report, self.label, self.total, self.done = report, label, total, 0
        report(RobustnessProgress(label, 0, total, "clip passes"))

    def advance(self, count: int) -> None:
        self.done += int(count)
        total = max(self.total, self.done)
        self.report(RobustnessProgress(self.label, self.done, total, "clip passes"))


def predict_from_cache(
    group: Any,
    ids: Mapping[str, str],
    paths: Mapping[str, CachedPath],
    *,
    genders: Mapping[str, str],
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    advance: Callable[[int], None] = lambda count: None,
) -> dict[str, dict[str, int]]:
    """``{model: {clip: class index}}``: every model of ``paths`` on the clips whose cached
    features are ``ids[clip]`` in the store group ``group`` (a copy's id, or the clip's own).

    Each batch of features is read once and serves every model; ``genders[clip]`` reaches a
    model that needs it at inference; ``advance(n)`` counts clip passes (clips × models).
    """
    back = {stored: clip for clip, stored in ids.items()}
    out: dict[str, dict[str, int]] = {name: {} for name in paths}
    if not back:
        return out
    for batch in group.batches(list(back), batch_size=batch_size, shuffle=False):
        hidden = torch.as_tensor(batch.hidden, dtype=torch.float32).to(device)
        mask = torch.as_tensor(batch.mask, dtype=torch.bool).to(device)
        clips = [back[i] for i in batch.ids]
        clip_genders = [genders[c] for c in clips]
        for name, path in paths.items():
            predicted = path(hidden, mask, clip_genders).argmax(1).tolist()
            out[name].update(zip(clips, predicted, strict=True))
        advance(len(clips) * len(paths))
    return out


def _row(u: Utterance, fold: Fold, case: CorruptionCase, clean: str, pred: str) -> ClipRow:
    return ClipRow(u.id, fold.name, u.speaker, u.gender, u.emotion, case.name, clean, pred)
