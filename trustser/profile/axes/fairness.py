"""The fairness axis: multiclass equalized odds between genders (fold mean), lower is better.

Read from the emotion head's ``predictions.csv`` (as performance is, so its details follow
performance's): the gap per fold with both genders, then the mean over folds; when no fold has
both genders, the gap pooled over all test predictions.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from trustser.formatting import MISSING, percent
from trustser.manifest import GENDERS
from trustser.metrics import bootstrap as bs
from trustser.metrics._common import MetricError, MetricWarning, mean_std
from trustser.metrics.fairness import fairness_report
from trustser.profile.axes.performance import AXIS as PERFORMANCE
from trustser.profile.axes.performance import EMOTION
from trustser.profile.axis import AbsoluteEnds, Axis, Column, CsvColumns, Reading, Section
from trustser.profile.cells import NOT_DEFINED, escape, html_table, interval_text, unmeasured
from trustser.profile.estimator import METHOD_FAIR, METHOD_POOLED, RowBootstrap, Tables
from trustser.profile.model import BackboneProfile, Profile
from trustser.profile.results import Results, column, labels_of

__all__ = ["AXIS", "fold_eo"]

_NAME = "fairness"
_GAPS = (
    "multiclass_equalized_odds",
    "multiclass_statistical_parity",
    "equalized_odds_max",
    "equalized_odds_mean",
    "statistical_parity_max",
    "statistical_parity_mean",
)


def _per_fold(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    genders: np.ndarray,
    folds: np.ndarray,
    labels: list[str],
    notes: list[str],
) -> dict[str, dict[str, float]]:
    per_fold: dict[str, dict[str, float]] = {}
    for fold in dict.fromkeys(folds.tolist()):
        keep = folds == fold
        if len(set(genders[keep].tolist())) < 2:
            notes.append(
                f"fold {fold}: only one gender among its test speakers; no fold-level fairness."
            )
            continue
        report = fairness_report(y_true[keep], y_pred[keep], genders[keep], labels=labels)
        per_fold[fold] = {key: getattr(report, key) for key in _GAPS}
    return per_fold


def _details(rows: list[dict[str, str]], labels: list[str]) -> tuple[dict[str, Any], list[str]]:
    y_true, y_pred = column(rows, "true"), column(rows, "pred")
    genders, speakers, folds = column(rows, "gender"), column(rows, "speaker"), column(rows, "fold")
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetricWarning)
        pooled = fairness_report(y_true, y_pred, genders, speakers=speakers, labels=labels)
        per_fold = _per_fold(y_true, y_pred, genders, folds, labels, notes)
    for w in caught:
        if issubclass(w.category, MetricWarning) and str(w.message) not in notes:
            notes.append(str(w.message))
    result: dict[str, Any] = {"pooled": pooled.to_dict(), "per_fold": per_fold}
    for key in _GAPS:
        # Undefined on every fold: no fold figure at all (shown as n/a), never pooled ± 0.
        mean, std = mean_std([f[key] for f in per_fold.values()]) if per_fold else (None, None)
        result[f"{key}_fold_mean"], result[f"{key}_fold_std"] = mean, std
    if not per_fold:
        notes.append(
            "fold-level fairness is undefined on every fold (n/a); the fairness axis uses the "
            "value pooled over all test predictions."
        )
    result["eo_basis"] = "mean over folds" if per_fold else "pooled over all test predictions"
    result["axis_value"] = (
        result["multiclass_equalized_odds_fold_mean"]
        if per_fold
        else pooled.multiclass_equalized_odds
    )
    return result, notes


def _known_gender(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The test clips whose speaker's gender is known: the only ones fairness can compare."""
    return [row for row in rows if row["gender"] in GENDERS]


def unmeasurable_reason(rows: list[dict[str, str]]) -> str | None:
    """Why fairness between genders cannot be measured on these test clips (None: it can)."""
    present = sorted({row["gender"] for row in rows} & set(GENDERS))
    if not present:
        return "no gender labels among the test clips (every gender unknown)"
    if len(present) < 2:
        return f"one gender only among the test clips ({present[0]})"
    return None


def _collect(results: Results) -> Reading | None:
    rows = results.predictions(EMOTION)
    if rows is None:
        return None
    reason = unmeasurable_reason(rows)
    if reason is not None:
        return Reading(not_measurable=reason)
    known = _known_gender(rows)
    notes = []
    if len(known) < len(rows):
        notes.append(
            f"{_NAME}: {len(rows) - len(known)} of {len(rows)} test clips have no gender label "
            "and are left out of the gaps."
        )
    try:
        details, found = _details(known, labels_of(rows, results.metrics(EMOTION)))
    except MetricError as error:
        return Reading(notes=[*notes, f"{_NAME}: {error}"])
    notes += [f"{_NAME}: {n}" for n in found]
    return Reading(details, details["axis_value"], notes=notes)


def _tables(draws: RowBootstrap) -> Tables | None:
    """The emotion head's per-gender count tables over the clips of known gender."""
    rows = draws.clips.predictions(EMOTION)
    if rows is None:
        return None
    known = _known_gender(rows)
    if len(known) == len(rows):
        return draws.head_tables(EMOTION, grouped=True)  # shared with performance
    return draws.estimator.confusion(known, "true", "pred", grouped=True)


def _bootstrap(draws: RowBootstrap) -> None:
    if draws.entry.raw.get(_NAME) is None and _NAME in draws.entry.not_measurable:
        return
    tables = _tables(draws)
    if tables is None:
        return
    estimate, entry = draws.estimator.interval, draws.entry
    eo = estimate(bs.multiclass_eo_from_counts, tables, METHOD_FAIR)
    if entry.fairness and entry.fairness.get("eo_basis", "").startswith("pooled"):
        eo = estimate(bs.multiclass_eo_from_counts, tables, METHOD_POOLED, pooled=True)
    draws.store("eo_multiclass", eo, axis=entry.raw.get(_NAME) is not None)
    draws.store(
        "eo_multiclass_pooled",
        estimate(bs.multiclass_eo_from_counts, tables, METHOD_POOLED, pooled=True),
    )
    draws.store("sp_multiclass", estimate(bs.multiclass_sp_from_counts, tables, METHOD_FAIR))
    draws.store(
        "eo_max_class",
        estimate(lambda t: bs.class_gaps_from_counts(t)["equalized_odds_max"], tables, METHOD_FAIR),
    )


def fold_eo(b: BackboneProfile) -> str:
    """The fairness axis's fold mean ± sd: n/a when no fold defines it (the paper rows: raw)."""
    if b.reference:
        return percent(b.raw.get(_NAME))
    fair = b.fairness or {}
    if not fair:
        return unmeasured(b, _NAME) or MISSING
    if (b.intervals or {}).get("eo_multiclass", {}).get("low") is not None and fair.get(
        "multiclass_equalized_odds_fold_mean"
    ) is not None:
        return interval_text(b, "eo_multiclass", fair["multiclass_equalized_odds_fold_mean"])
    return percent(
        fair.get("multiclass_equalized_odds_fold_mean"),
        fair.get("multiclass_equalized_odds_fold_std"),
        missing=NOT_DEFINED,
    )


def _csv(b: BackboneProfile) -> CsvColumns:
    fair = b.fairness or {}
    spread = (fair.get("pooled") or {}).get("speakers") or {}
    return CsvColumns(
        values={
            "eo_multiclass": b.raw.get(_NAME),
            "eo_basis": fair.get("eo_basis"),
            "eo_multiclass_fold_mean": fair.get("multiclass_equalized_odds_fold_mean"),
            "eo_multiclass_std": fair.get("multiclass_equalized_odds_fold_std"),
            "eo_multiclass_pooled": (fair.get("pooled") or {}).get("multiclass_equalized_odds"),
            "eo_max_fold_mean": fair.get("equalized_odds_max_fold_mean"),
            "eo_mean_fold_mean": fair.get("equalized_odds_mean_fold_mean"),
            "sp_multiclass": fair.get("multiclass_statistical_parity_fold_mean"),
            "sp_max_fold_mean": fair.get("statistical_parity_max_fold_mean"),
            "speaker_uar_min": spread.get("min"),
            "speaker_uar_max": spread.get("max"),
            "speaker_uar_sd": spread.get("sd"),
        },
        bounds={
            "fairness": "eo_multiclass",
            "sp_multiclass": "sp_multiclass",
            "eo_max_class": "eo_max_fold_mean",
            "eo_multiclass_pooled": "eo_multiclass_pooled",
        },
    )


def _undefined(b: BackboneProfile) -> str:
    """How a fold-level figure reads when no fold defines it: n/a, or – when nothing was read."""
    return NOT_DEFINED if b.fairness else MISSING


def _speaker_range(b: BackboneProfile) -> str:
    spread = ((b.fairness or {}).get("pooled") or {}).get("speakers")
    return f"{percent(spread['min'])}–{percent(spread['max'])}" if spread else MISSING


def _markdown(_profile: Profile) -> list[Column]:
    def fair(b: BackboneProfile) -> dict[str, Any]:
        return b.fairness or {}

    return [
        Column("EO (multiclass, fold mean) %", fold_eo),
        Column(
            "EO (multiclass, pooled) %",
            lambda b: interval_text(
                b,
                "eo_multiclass_pooled",
                (fair(b).get("pooled") or {}).get("multiclass_equalized_odds"),
            ),
        ),
        Column(
            "EO max-class %",
            lambda b: interval_text(
                b,
                "eo_max_class",
                fair(b).get("equalized_odds_max_fold_mean"),
                missing=_undefined(b),
            ),
        ),
        Column(
            "SP (multiclass) %",
            lambda b: interval_text(
                b,
                "sp_multiclass",
                fair(b).get("multiclass_statistical_parity_fold_mean"),
                missing=_undefined(b),
            ),
        ),
        Column("speaker UAR min–max %", _speaker_range),
    ]


def _section_row(b: BackboneProfile) -> list[str]:
    f = b.fairness or {}
    undefined = _undefined(b)
    spread = (f.get("pooled") or {}).get("speakers") or {}
    return [
        b.name,
        fold_eo(b),
        interval_text(
            b, "sp_multiclass", f.get("multiclass_statistical_parity_fold_mean"), missing=undefined
        ),
        interval_text(b, "eo_max_class", f.get("equalized_odds_max_fold_mean"), missing=undefined),
        percent(f.get("equalized_odds_mean_fold_mean"), missing=undefined),
        percent(f.get("statistical_parity_max_fold_mean"), missing=undefined),
        interval_text(
            b, "eo_multiclass_pooled", (f.get("pooled") or {}).get("multiclass_equalized_odds")
        ),
        f"{percent(spread.get('min'))} / {percent(spread.get('max'))} / {percent(spread.get('sd'))}"
        if spread
        else MISSING,
        spread.get("worst_speaker", MISSING),
    ]


def _per_class(b: BackboneProfile) -> str:
    """The per-class rates by gender, pooled over folds (empty when not read)."""
    per_class = ((b.fairness or {}).get("pooled") or {}).get("per_class") or {}
    if not per_class:
        return ""
    rows = []
    for label, c in per_class.items():
        groups = sorted(c["tpr"])
        rows.append(
            [
                label,
                " / ".join(percent(c["tpr"][g]) for g in groups),
                " / ".join(percent(c["fpr"][g]) for g in groups),
                " / ".join(percent(c["selection_rate"][g]) for g in groups),
                percent(c.get("equalized_odds_difference")),
                percent(c.get("statistical_parity_difference")),
            ]
        )
    groups_text = " / ".join(sorted(next(iter(per_class.values()))["tpr"]))
    note = f'<p class="note">{escape(b.name)} — per class, pooled over folds ({escape(groups_text)}):</p>'
    return note + html_table(
        ["class", "TPR %", "FPR %", "selection rate %", "EO difference %", "SP difference %"], rows
    )


def _section(profile: Profile) -> str:
    header = [
        "backbone",
        "EO multiclass % (fold mean)",
        "SP multiclass %",
        "EO worst class %",
        "EO class mean %",
        "SP worst class %",
        "EO multiclass pooled %",
        "speaker UAR min / max / sd %",
        "worst speaker",
    ]
    out = html_table(header, [_section_row(b) for b in profile.backbones])
    return out + "".join(_per_class(b) for b in profile.backbones)


AXIS = Axis(
    name=_NAME,
    title="Fairness",
    metric="multiclass equalized odds",
    short="EO",
    higher_is_better=False,
    collect=_collect,
    command=lambda c: c.heads(EMOTION),
    paper_key="eo",
    absolute=AbsoluteEnds(1.0, 0.0, "EO 100 % → 0 %"),
    own_field=True,
    clips=lambda files: files.heads(EMOTION),
    bootstrap=_bootstrap,
    csv=_csv,
    markdown=_markdown,
    section=Section("Fairness (gender)", _section),
    change_label="EO gap",
    aliases=("fair",),
    details_after=PERFORMANCE.name,
)
