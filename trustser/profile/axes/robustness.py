"""The robustness axis: the share of test clips whose emotion prediction survives real-world
corruptions (noise, babble, rooms, phone line, codecs, gain, tilt), higher is better.

Read from ``robustness/summary.json`` (``trustser robustness``): the suite mean of the share of
unchanged predictions — each corruption's mean over its severities, then the mean over
corruptions. The UAR drop (its suite mean) is a secondary figure, shown and compared beside it,
never scored. Bootstrapped from ``robustness/clips.csv`` with the profile's speaker draws, per
case per fold then the fold mean, then the suite mean replicate by replicate. Not on the paper's
scale (the paper has no such axis); the paper's scenarios do not weigh it (docs/metrics.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trustser.formatting import MISSING, percent
from trustser.metrics import bootstrap as bs
from trustser.metrics.robustness import suite_mean
from trustser.profile.axis import (
    AbsoluteEnds,
    Axis,
    Chance,
    Column,
    Commands,
    CsvColumns,
    Figure,
    Reading,
    Section,
)
from trustser.profile.cells import html_table, interval_text
from trustser.profile.estimator import ClipFiles, RowBootstrap
from trustser.profile.model import BackboneProfile, Profile, ProfileError
from trustser.profile.results import Results

__all__ = ["AXIS", "CLIPS", "DROP", "SUMMARY"]

_NAME = "robustness"
SUMMARY = "robustness/summary.json"
CLIPS = "robustness/clips.csv"
DROP = "robustness_uar_drop"  # the secondary figure: suite mean of the UAR drop
_GENDERS = ("female", "male")
_CASE_KEYS = ("name", "corruption", "severity", "label", "uar", "uar_drop", "unchanged")
_METHOD = (
    "speaker bootstrap per case (per fold then the fold mean), then the suite mean "
    "(each corruption's severities, then the corruptions)"
)


def _collect(results: Results) -> Reading | None:
    summary = results.json(SUMMARY)
    if summary is None:
        return None
    from trustser.robustness.results import FORMAT, FORMAT_VERSION

    if summary.get("format") != FORMAT or summary.get("format_version") != FORMAT_VERSION:
        raise ProfileError(
            f"{str(results.directory / SUMMARY)!r} is not a robustness summary of format "
            f"{FORMAT} {FORMAT_VERSION}; rerun `trustser robustness`."
        )
    mean = summary.get("suite_mean") or {}
    suite = summary.get("suite") or {}
    details: dict[str, Any] = {
        "unchanged": mean.get("unchanged"),
        "uar_drop": mean.get("uar_drop"),
        "uar": mean.get("uar"),
        "clean_uar": (summary.get("clean") or {}).get("uar"),
        "per_gender": mean.get("per_gender") or {},
        "cases": [
            {**{k: c.get(k) for k in _CASE_KEYS}, "per_gender": c.get("per_gender") or {}}
            for c in summary.get("cases", [])
        ],
        "inference": summary.get("inference") or {},
        "suite": {k: suite.get(k) for k in ("seed", "suite_version", "cases", "corruptions")},
    }
    labels = summary.get("labels") or []
    reading = Reading(details, mean.get("unchanged"))
    if labels:
        reading.context["emotion_chance"] = 1.0 / len(labels)
    reason = details["inference"].get("reason")
    if reason:
        reading.notes.append(f"robustness: ran end to end, because {reason}.")
    from trustser.corruptions import suite as default_suite

    full = len(default_suite())
    if len(details["cases"]) < full:
        reading.notes.append(
            f"robustness: measured on {len(details['cases'])} of the suite's {full} cases "
            f"({', '.join(suite.get('corruptions') or [])}); compare rows on the same cases only."
        )
    return reading


def _command(c: Commands) -> str:
    return f"trustser robustness --store {c.store_arg} --backbone {c.quoted_model}{c.runs_arg}"


def _clips(clips: ClipFiles) -> list[list[dict[str, str]]]:
    rows = clips.rows(CLIPS)
    return [rows] if rows else []


def _replicated(draws: RowBootstrap, rows: list[dict[str, str]]) -> dict[str, Any]:
    """Per case: (value, replicates) of the unchanged share and of the UAR drop."""
    estimator = draws.estimator
    out: dict[str, Any] = {"unchanged": {}, "drop": {}}
    by_case: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_case.setdefault(row["case"], []).append(row)
    for case, mine in by_case.items():
        hits = [r["unchanged"].strip() in ("1", "True", "true") for r in mine]
        rates = estimator.rates(mine, hits)
        out["unchanged"][case] = (
            float(bs.fold_values(bs.asr_from_counts, rates.observed, cell_dims=1)),
            bs.fold_values(
                bs.asr_from_counts,
                rates.resampled,
                cell_dims=1,
                fold_weights=estimator.fold_weights(rates),
            ),
        )
        clean = estimator.confusion(mine, "true", "clean_pred", grouped=False)
        corrupted = estimator.confusion(mine, "true", "pred", grouped=False)
        values = [bs.fold_values(bs.uar_from_counts, t.observed) for t in (clean, corrupted)]
        samples = [
            bs.fold_values(
                bs.uar_from_counts,
                t.resampled,
                fold_weights=estimator.fold_weights(t),
            )
            for t in (clean, corrupted)
        ]
        out["drop"][case] = (float(values[0] - values[1]), samples[0] - samples[1])
    return out


def _bootstrap(draws: RowBootstrap) -> None:
    rows = draws.clips.rows(CLIPS)
    details = AXIS.details(draws.entry)
    if not rows or not details:
        return
    corruption_of = {c["name"]: c["corruption"] for c in details["cases"]}
    cases = _replicated(draws, [r for r in rows if r["case"] in corruption_of])
    for key, figure in (("unchanged", _NAME), ("drop", DROP)):
        found = cases[key]
        if not found:
            continue
        value = suite_mean({c: v for c, (v, _) in found.items()}, corruption_of)
        samples = suite_mean({c: s for c, (_, s) in found.items()}, corruption_of)
        result = bs.interval(
            None if np.isnan(value) else float(value), samples, level=draws.level, method=_METHOD
        )
        if figure == _NAME:
            draws.store("robustness_unchanged", result, axis=draws.entry.raw.get(_NAME) is not None)
        else:
            draws.store(figure, result, replicates=True)


def _combine(rows: Sequence[BackboneProfile]) -> Reading:
    """A mean over corpora keeps the suite means of the figures (not the per-case table)."""
    found = [AXIS.details(r) or {} for r in rows]

    def mean(values: list[Any]) -> float | None:
        return None if any(v is None for v in values) or not values else float(np.mean(values))

    details = {
        "unchanged": mean([d.get("unchanged") for d in found]),
        "uar_drop": mean([d.get("uar_drop") for d in found]),
        "per_gender": {
            g: {
                k: mean([(d.get("per_gender") or {}).get(g, {}).get(k) for d in found])
                for k in ("unchanged", "uar_drop")
            }
            for g in _GENDERS
        },
        "cases": [],
    }
    return Reading(details=details)


def _gender(b: BackboneProfile, gender: str, key: str = "unchanged") -> float | None:
    details = AXIS.details(b) or {}
    return ((details.get("per_gender") or {}).get(gender) or {}).get(key)


def _drop(b: BackboneProfile) -> float | None:
    return (AXIS.details(b) or {}).get("uar_drop")


def _worst(b: BackboneProfile) -> str:
    cases = [c for c in (AXIS.details(b) or {}).get("cases", []) if c.get("unchanged") is not None]
    if not cases:
        return MISSING
    worst = min(cases, key=lambda c: c["unchanged"])
    return f"{worst['name']} {percent(worst['unchanged'])}"


def _csv(b: BackboneProfile) -> CsvColumns:
    return CsvColumns(
        values={
            "robustness_unchanged": b.raw.get(_NAME),
            "robustness_unchanged_female": _gender(b, "female"),
            "robustness_unchanged_male": _gender(b, "male"),
            DROP: _drop(b),
        },
        bounds={_NAME: "robustness_unchanged", DROP: DROP},
    )


def _markdown(_profile: Profile) -> list[Column]:
    return [
        Column("unchanged %", lambda b: interval_text(b, _NAME, b.raw.get(_NAME))),
        Column(
            "unchanged F / M %",
            lambda b: f"{percent(_gender(b, 'female'))} / {percent(_gender(b, 'male'))}",
        ),
        Column("UAR drop pts", lambda b: interval_text(b, DROP, _drop(b))),
        Column("least robust case", _worst),
    ]


def _severity_cells(cases: list[dict[str, Any]], key: str) -> list[str]:
    by_level = {c["severity"]: c.get(key) for c in cases}
    return [percent(by_level.get(level)) if level in by_level else "" for level in (1, 2, 3)]


def _section(profile: Profile) -> str:
    summary, detail = [], []
    for b in profile.backbones:
        details = AXIS.details(b)
        if not details:
            continue
        inference = details.get("inference") or {}
        summary.append(
            [
                b.name,
                interval_text(b, _NAME, b.raw.get(_NAME)),
                percent(_gender(b, "female")),
                percent(_gender(b, "male")),
                interval_text(b, DROP, _drop(b)),
                percent(details.get("clean_uar")),
                "end to end" if inference.get("reason") else "cache",
            ]
        )
        by_corruption: dict[str, list[dict[str, Any]]] = {}
        for case in details.get("cases", []):
            by_corruption.setdefault(case["corruption"], []).append(case)
        for corruption, cases in by_corruption.items():
            detail.append(
                [
                    b.name,
                    corruption,
                    *_severity_cells(cases, "unchanged"),
                    *_severity_cells(cases, "uar_drop"),
                ]
            )
    if not summary:
        return '<p class="missing">No robustness results.</p>'
    head = html_table(
        [
            "backbone",
            "unchanged % (suite)",
            "female %",
            "male %",
            "UAR drop pts",
            "clean UAR %",
            "run from",
        ],
        summary,
    )
    table = html_table(
        [
            "backbone",
            "corruption",
            "unchanged % s1",
            "s2",
            "s3",
            "UAR drop pts s1",
            "s2",
            "s3",
        ],
        detail,
    )
    return (
        head
        + table
        + (
            '<p class="note">Unchanged: share of test clips whose emotion prediction on the '
            "corrupted copy equals the clean one (per fold, then the fold mean); the suite mean "
            "averages each corruption's severities, then the corruptions. Severities and transforms: "
            "docs/robustness.md.</p>"
        )
    )


AXIS = Axis(
    name=_NAME,
    title="Robustness",
    metric="unchanged predictions under corruption",
    short="unchanged",
    higher_is_better=True,
    collect=_collect,
    command=_command,
    absolute=AbsoluteEnds(
        Chance("emotion_chance", 0.25, "chance (1/C)"), 1.0, "unchanged chance (1/C) → 100 %"
    ),
    clips=_clips,
    bootstrap=_bootstrap,
    combine=_combine,
    csv=_csv,
    markdown=_markdown,
    section=Section("Robustness", _section),
    change_label="unchanged",
    figures=(Figure(DROP, "Robustness: UAR drop", higher_is_better=False),),
    aliases=("robust", "corruption"),
)
