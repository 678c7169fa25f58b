"""The performance axis: emotion UAR of the emotion head (fold mean), higher is better.

Read from the emotion head's ``metrics.json`` (its fold means are authoritative) and
``predictions.csv`` (pooled and per-fold figures); bootstrapped per fold then the fold mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trustser.formatting import MISSING, percent
from trustser.metrics import bootstrap as bs
from trustser.metrics._common import mean_std
from trustser.metrics.performance import performance_summary
from trustser.profile.axis import AbsoluteEnds, Axis, Chance, Column, CsvColumns, Reading, Section
from trustser.profile.cells import html_table, interval_text
from trustser.profile.estimator import METHOD_FOLD, RowBootstrap
from trustser.profile.model import BackboneProfile, Profile
from trustser.profile.results import Results, column, labels_of, noting

__all__ = ["AXIS", "EMOTION"]

EMOTION = "emotion"  # the head whose predictions performance and fairness are measured on
_NAME = "performance"


def _from_rows(metrics: dict[str, Any] | None, rows: list[dict[str, str]]) -> dict[str, Any]:
    y_true, y_pred = column(rows, "true"), column(rows, "pred")
    labels = labels_of(rows, metrics)
    pooled = performance_summary(y_true, y_pred, labels=labels)
    folds = column(rows, "fold")
    per_fold = {}
    for fold in dict.fromkeys(folds.tolist()):
        keep = folds == fold
        per_fold[fold] = performance_summary(y_true[keep], y_pred[keep], labels=labels)
    result: dict[str, Any] = dict(
        labels=labels,
        pooled=pooled,
        per_fold_uar={f: s["uar"] for f, s in per_fold.items()},
        num_utterances=len(rows),
    )
    uar = mean_std([s["uar"] for s in per_fold.values()])
    acc = mean_std([s["weighted_accuracy"] for s in per_fold.values()])
    f1 = mean_std([s["macro_f1"] for s in per_fold.values()])
    result.update(
        uar_mean=uar[0],
        uar_std=uar[1],
        accuracy_mean=acc[0],
        accuracy_std=acc[1],
        macro_f1_mean=f1[0],
        macro_f1_std=f1[1],
        num_folds=len(per_fold),
        source="predictions.csv",
    )
    return result


def _details(metrics: dict[str, Any] | None, rows: list[dict[str, str]] | None) -> dict[str, Any]:
    result = _from_rows(metrics, rows) if rows is not None else {}
    if metrics is not None:  # the heads' own numbers are authoritative when present
        for ours, theirs in (
            ("uar_mean", "test_uar_mean"),
            ("uar_std", "test_uar_std"),
            ("accuracy_mean", "test_accuracy_mean"),
            ("accuracy_std", "test_accuracy_std"),
            ("macro_f1_mean", "test_macro_f1_mean"),
            ("macro_f1_std", "test_macro_f1_std"),
        ):
            if isinstance(metrics.get(theirs), (int, float)):
                result[ours] = float(metrics[theirs])
        if isinstance(metrics.get("test_per_class_recall_mean"), dict):
            result["per_class_recall_mean"] = metrics["test_per_class_recall_mean"]
        if isinstance(metrics.get("folds"), list):
            result["num_folds"] = len(metrics["folds"])
        result["source"] = "metrics.json"
    return result


def _collect(results: Results) -> Reading | None:
    metrics, rows = results.metrics(EMOTION), results.predictions(EMOTION)
    if metrics is None and rows is None:
        return None
    with noting(_NAME) as notes:
        details = _details(metrics, rows)
    labels = details.get("labels") or (metrics or {}).get("labels")
    context = {"emotion_chance": 1.0 / len(labels)} if labels else {}
    return Reading(details, details.get("uar_mean"), context, notes)


def _bootstrap(draws: RowBootstrap) -> None:
    tables = draws.head_tables(EMOTION, grouped=True)
    if tables is None:
        return
    estimate = draws.estimator.interval
    draws.store("uar", estimate(bs.uar_from_counts, tables, METHOD_FOLD), axis=True)
    for key, metric in (
        ("accuracy", bs.accuracy_from_counts),
        ("macro_f1", bs.macro_f1_from_counts),
    ):
        draws.store(key, estimate(metric, tables, METHOD_FOLD))


def _combine(rows: Sequence[BackboneProfile]) -> Reading:
    """A mean over corpora keeps the chance level when every corpus has the same classes."""
    chance = {r.context.get("emotion_chance") for r in rows}
    if len(chance) == 1 and None not in chance:
        return Reading(context={"emotion_chance": chance.pop()})
    return Reading()


def _csv(b: BackboneProfile) -> CsvColumns:
    perf = b.performance or {}
    return CsvColumns(
        values={
            "uar_mean": b.raw.get(_NAME),
            "uar_std": perf.get("uar_std"),
            "accuracy_mean": perf.get("accuracy_mean"),
            "macro_f1_mean": perf.get("macro_f1_mean"),
        },
        bounds={
            "performance": "uar_mean",
            "accuracy": "accuracy_mean",
            "macro_f1": "macro_f1_mean",
        },
    )


def _markdown(_profile: Profile) -> list[Column]:
    def perf(b: BackboneProfile) -> dict[str, Any]:
        return b.performance or {}

    return [
        Column(
            "UAR %",
            lambda b: interval_text(b, _NAME, b.raw.get(_NAME), spread=perf(b).get("uar_std")),
        ),
        Column("WA %", lambda b: interval_text(b, "accuracy", perf(b).get("accuracy_mean"))),
        Column("macro-F1 %", lambda b: interval_text(b, "macro_f1", perf(b).get("macro_f1_mean"))),
    ]


def _section(profile: Profile) -> str:
    labels: list[str] = []
    for b in profile.backbones:
        for label in (b.performance or {}).get("labels", []):
            if label not in labels:
                labels.append(label)
    rows = []
    for b in profile.backbones:
        p = b.performance or {}
        recall = (
            p.get("per_class_recall_mean") or (p.get("pooled") or {}).get("per_class_recall") or {}
        )
        rows.append(
            [
                b.name,
                interval_text(b, _NAME, b.raw.get(_NAME), spread=p.get("uar_std")),
                interval_text(b, "accuracy", p.get("accuracy_mean"), spread=p.get("accuracy_std")),
                interval_text(b, "macro_f1", p.get("macro_f1_mean"), spread=p.get("macro_f1_std")),
                str(p.get("num_folds", MISSING)),
                *(percent(recall.get(label)) for label in labels),
            ]
        )
    header = [
        "backbone",
        "UAR %",
        "weighted acc. %",
        "macro-F1 %",
        "folds",
        *(f"recall {x} %" for x in labels),
    ]
    return html_table(header, rows)


AXIS = Axis(
    name=_NAME,
    title="Performance",
    metric="emotion UAR",
    short="UAR",
    higher_is_better=True,
    collect=_collect,
    command=lambda c: c.heads(EMOTION),
    paper_key="uar",
    absolute=AbsoluteEnds(
        Chance("emotion_chance", 0.25, "chance (1/C)"), 1.0, "UAR chance (1/C) → 100 %"
    ),
    own_field=True,
    clips=lambda files: files.heads(EMOTION),
    bootstrap=_bootstrap,
    combine=_combine,
    csv=_csv,
    markdown=_markdown,
    section=Section("Performance", _section),
    aliases=("perf", "uar"),
)
