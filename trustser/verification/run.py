"""Speaker verification on unseen speakers, end to end: trials, both attackers, figures, files.

:func:`verify` is the computation (a manifest and an embedding source in, a
:class:`VerificationReport` out, no files); :func:`run_verification` runs it on a store group
and writes ``<runs>/<model>/verification/`` (``metrics.json``, ``trials.csv``; with an
``emotion``, ``verification/<emotion>/``). Design and formulas: docs/metrics.md, "Speaker
verification"; how to run it: docs/verification.md.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack

import numpy as np

from trustser._validation import TrustSERError
from trustser._version import __version__
from trustser.manifest import Manifest, read_manifest
from trustser.metrics.bootstrap import DEFAULT_LEVEL, DEFAULT_REPLICATES
from trustser.metrics.verification import DEFAULT_OPERATING_POINT, OperatingPoint
from trustser.runs import ModelName, RunLayout, write_json
from trustser.verification.attackers import ATTACKERS, choose_layer, score_trials
from trustser.verification.scores import (
    BOOTSTRAP_DESIGN,
    TrialScores,
    summarise_scores,
    write_trial_scores,
)
from trustser.verification.sources import fold_sources, read_embeddings, store_source
from trustser.verification.trials import DEFAULT_MAX_NONTARGETS, TrialDesign, build_trials

__all__ = [
    "VerificationError",
    "VerificationOptions",
    "VerificationReport",
    "VerificationResult",
    "run_verification",
    "verify",
]

Progress = Callable[[int, int], None]


class VerificationOptions(TypedDict, total=False):
    """The settings of a verification run, as :func:`verify` takes them (its defaults hold)."""

    emotion: str | None
    seed: int
    max_nontargets: int
    replicates: int
    level: float
    operating_point: OperatingPoint
    progress: Progress | None


class VerificationError(TrustSERError, ValueError):
    """Bad input to a verification run (no such group, a variant without its embeddings)."""


@dataclass(frozen=True, eq=False)
class VerificationReport:
    """What :func:`verify` computed: the design, every trial's scores and the figures."""

    design: TrialDesign
    scores: TrialScores
    attackers: dict[str, Any]  # per attacker: figures with intervals, per gender, per set
    bootstrap: dict[str, Any]
    operating_point: OperatingPoint

    def metrics(self) -> dict[str, Any]:
        """The ``metrics.json`` body (flat keys first, then the details)."""
        flat: dict[str, Any] = {"pooled_across_folds": self.design.pooled}
        for name, figures in self.attackers.items():
            for metric in ("eer", "min_dcf"):
                flat[f"{name}_{metric}"] = figures[metric]["value"]
                for gender, entry in figures["by_gender"].items():
                    flat[f"{name}_{metric}_{gender}"] = entry[metric]["value"]
            flat[f"{name}_layers"] = [s["layer"] for s in figures["sets"]]
        return {
            **flat,
            "operating_point": self.operating_point.to_dict(),
            "trials": self.scores.trials.counts(),
            "design": self.design.to_dict(),
            "attackers": self.attackers,
            "bootstrap": self.bootstrap,
        }


@dataclass(frozen=True)
class VerificationResult:
    """A run written to disk: the model's name, its directory and files, and the report."""

    backbone: str
    directory: Path
    metrics_path: Path
    trials_path: Path
    report: VerificationReport
    metrics: dict[str, Any] = field(repr=False)
    seconds: float = 0.0


def verify(
    manifest: Manifest,
    source: Any,
    *,
    ids: Sequence[str] | None = None,
    emotion: str | None = None,
    seed: int = 0,
    max_nontargets: int = DEFAULT_MAX_NONTARGETS,
    replicates: int = DEFAULT_REPLICATES,
    level: float = DEFAULT_LEVEL,
    operating_point: OperatingPoint = DEFAULT_OPERATING_POINT,
    progress: Progress | None = None,
) -> VerificationReport:
    """Build the trials of ``manifest``, run both attackers on ``source`` and summarise.

    ``source`` gives time-means ``[N, L, D]``: a function of clip ids, an array whose rows
    follow ``ids``, or ``{fold: either}`` for a model deployed per fold
    (:mod:`trustser.verification.sources`). ``seed`` fixes the non-target sample and the
    bootstrap draws. ``progress(done, total)`` counts attacker runs (sets × attackers).
    """
    design = build_trials(manifest, emotion=emotion, seed=seed, max_nontargets=max_nontargets)
    of_fold = fold_sources(source, ids)
    total, done = len(design.sets) * len(ATTACKERS), 0
    parts: list[tuple[str, Any, dict[str, np.ndarray]]] = []
    chosen: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in ATTACKERS}
    for trial_set in design.sets:
        needed = list(
            dict.fromkeys(
                [
                    *trial_set.train_ids,
                    *trial_set.dev_ids,
                    *trial_set.dev_trials.ids,
                    *trial_set.trials.ids,
                ]
            )
        )
        fold = trial_set.attacker_fold
        means = read_embeddings(of_fold(fold), needed, fold=fold)
        row = {utterance_id: i for i, utterance_id in enumerate(needed)}
        scores = {}
        for name, spec in ATTACKERS.items():
            choice = choose_layer(
                spec,
                means,
                row,
                train_ids=trial_set.train_ids,
                train_labels=trial_set.train_labels,
                dev_trials=trial_set.dev_trials,
                where=f"trial set {trial_set.name}, {name} attacker",
                refit_ids=trial_set.dev_ids,
                refit_labels=trial_set.dev_labels,
            )
            scores[name] = score_trials(
                choice.attacker, means[:, choice.layer], row, trial_set.trials
            )
            chosen[name][trial_set.name] = {"layer": choice.layer, "dev_eer": choice.dev_eer}
            done += 1
            if progress is not None:
                progress(done, total)
        parts.append((trial_set.name, trial_set.trials, scores))
    table = TrialScores.concat(parts)
    summary = summarise_scores(
        table, replicates=replicates, seed=seed, level=level, operating_point=operating_point
    )
    for name, spec in ATTACKERS.items():
        summary[name]["description"] = spec.description
        for entry in summary[name]["sets"]:
            entry.update(chosen[name][entry["set"]])
    bootstrap = {
        "design": BOOTSTRAP_DESIGN,
        "replicates": replicates,
        "seed": seed,
        "level": level,
        "strata": "gender",
    }
    return VerificationReport(design, table, summary, bootstrap, operating_point)


def run_verification(
    store: str | os.PathLike,
    backbone: str | None = None,
    *,
    runs: str | os.PathLike = "runs",
    manifest: Manifest | str | os.PathLike | None = None,
    source: Any = None,
    features: str | None = None,
    **options: Unpack[VerificationOptions],
) -> VerificationResult:
    """Speaker verification on the unseen speakers of a store group; writes
    ``<runs>/<model>/verification/[<emotion>/]{metrics.json,trials.csv}``.

    ``backbone`` names the store group (default: the store's only one). ``manifest`` (default:
    the group's own) gives speakers, genders, emotions and folds; clips without features are
    left out. A variant ``<backbone>@<tag>`` exposes other embeddings than the store's, so it
    needs ``source`` (see :func:`verify`); its results go to the variant's directory.
    ``features`` says in words what the source exposes (recorded in ``metrics.json``);
    :func:`trustser.variants.verify_model` builds both from a variant's kind. ``options`` are
    :func:`verify`'s settings (:class:`VerificationOptions`).
    """
    from trustser.store import open_group

    start = time.perf_counter()
    model = ModelName.parse(backbone) if backbone is not None else None
    group, name = open_group(
        store, model.base if model is not None else None, error=VerificationError
    )
    if model is not None and model.is_variant:
        if source is None:
            raise VerificationError(
                f"{model} is a variant: its deployed model exposes other embeddings than the "
                f"store group {name!r}; pass its embedding source (`source=`) to attack it."
            )
        name = str(ModelName(name, model.tag))
    stored = set(group.ids)
    if manifest is None:
        manifest = group.manifest()
    elif not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest)
    missing = [u.id for u in manifest.utterances if u.id not in stored]
    manifest = manifest.filter(lambda u: u.id in stored)
    report = verify(manifest, source if source is not None else store_source(group), **options)
    directory = RunLayout(Path(runs)).verification_dir(name, options.get("emotion"))
    trials_path = write_trial_scores(directory / "trials.csv", report.scores)
    metrics = {
        "backbone": name,
        "store": {
            "path": str(Path(store).resolve()),
            "group": group.name,
            "provenance": dict(group.provenance),
        },
        "manifest": {
            "corpus": manifest.corpus,
            "checksum": manifest.checksum(),
            "clips_without_features": len(missing),
        },
        "features": features
        or (
            "time-mean of every hidden state (the store's means)"
            if source is None
            else "the embedding source passed by the caller (a variant's deployed model)"
        ),
        **report.metrics(),
        "trustser_version": __version__,
    }
    metrics_path = write_json(directory / "metrics.json", metrics)
    return VerificationResult(
        backbone=name,
        directory=directory,
        metrics_path=metrics_path,
        trials_path=trials_path,
        report=report,
        metrics=metrics,
        seconds=time.perf_counter() - start,
    )
