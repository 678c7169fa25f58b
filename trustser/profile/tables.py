"""The profile as tables: one row per backbone (CSV) and the Markdown summary (profile.md).

Every axis-specific column comes from the axis's record (:mod:`trustser.profile.axes`): its
part of a CSV row (``Axis.csv``) and its columns of the raw metrics table (``Axis.markdown``);
the scores, scales and comparisons tables have a column per axis of the registry.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from trustser.formatting import MISSING
from trustser.profile.axes import (
    compared,
    details_order,
    registered_axes,
    scored_axes,
    sustainability,
)
from trustser.profile.axis import Axis, Column, CsvColumns, Figure
from trustser.profile.cells import NOT_DEFINED, interval_text, score_text
from trustser.profile.intervals import resampled_text
from trustser.profile.mitigations import mitigations_markdown
from trustser.profile.model import BackboneProfile, Profile

__all__ = [
    "NOT_DEFINED",
    "TRAINING_HEADER",
    "comparison_header",
    "comparison_rows",
    "comparison_verdict",
    "interval_text",
    "profile_rows",
    "profile_to_csv",
    "profile_to_markdown",
    "raw_columns",
    "score_text",
    "training_rows",
]


def _bounds(row: dict[str, Any], b: BackboneProfile, bounds: dict[str, str]) -> None:
    """``<column>_low`` / ``_high`` for each interval of ``bounds`` (key → column) the row has."""
    intervals = b.intervals or {}
    for key, column in bounds.items():
        found = intervals.get(key)
        if found and (found.get("low") is not None or found.get("high") is not None):
            row[f"{column}_low"], row[f"{column}_high"] = found.get("low"), found.get("high")


def _row(b: BackboneProfile) -> dict[str, Any]:
    parts: list[CsvColumns] = [a.csv(b) for a in details_order() if a.csv is not None]
    names = [a.name for a in registered_axes()]
    row: dict[str, Any] = {"backbone": b.name, "reference": b.reference}
    row.update({"variant_of": b.base, "variant": b.variant})
    row.update({f"score_{a}": b.scores.get(a) for a in names})
    for part in parts:
        row.update(part.values)
    row["trainable_params"] = (b.training or {}).get("trainable_parameters")
    row["train_seconds"] = (b.training or {}).get("fit_seconds")
    row["missing"] = "; ".join(f"{a}: {c}" for a, c in b.missing.items())
    row["not_measurable"] = "; ".join(f"{a}: {r}" for a, r in b.not_measurable.items())
    for part in parts:
        row.update(part.later)
    for part in parts:
        _bounds(row, b, part.bounds)
    for part in parts:
        _bounds(row, b, part.later_bounds)
    for axis in names:
        ends = (b.score_intervals or {}).get(axis)
        if ends:
            row[f"score_{axis}_low"], row[f"score_{axis}_high"] = ends
    return row


def profile_rows(profile: Profile) -> list[dict[str, Any]]:
    """One flat row per backbone: the scores, then the raw metrics (fractions, not percent)."""
    return [_row(b) for b in profile.backbones]


def profile_to_csv(profile: Profile) -> str:
    """One row per backbone: the scores, then the raw metrics (fractions, not percent)."""
    rows = profile_rows(profile)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def _md_table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return [*lines, ""]


def raw_columns(profile: Profile) -> list[Column]:
    """The raw metrics table's columns: every axis's, in the order of their details."""
    return [c for a in details_order() if a.markdown is not None for c in a.markdown(profile)]


def _md_intro(profile: Profile) -> list[str]:
    out = [
        "# Trust profile",
        "",
        f"Scale: **{profile.scale}** — every score is in [0, 1] and higher is more trustworthy.",
        "",
    ]
    design = profile.bootstrap
    if design:
        out += [
            f"Intervals: `value [low, high]` is the {design['level']:.0%} interval of a "
            f"speaker-level bootstrap ({design['replicates']} replicates resampling "
            f"{resampled_text(design)}, seed {design['seed']}; strata: "
            f"{design['strata']}). GMACs and parameters are exact.",
            "",
        ]
    return out


def _md_scores(profile: Profile) -> list[str]:
    axes = scored_axes(profile.scale)
    return [
        "## Scores",
        "",
        *_md_table(
            ["backbone", *(a.title for a in axes)],
            [
                [
                    b.name,
                    *(
                        score_text(b, a.name) + (" (clipped)" if b.clipped.get(a.name) else "")
                        for a in axes
                    ),
                ]
                for b in profile.backbones
            ],
        ),
    ]


def _md_scales(profile: Profile) -> list[str]:
    rows = []
    for axis in scored_axes(profile.scale):
        scale = profile.scales[axis.name]
        rows.append(
            [
                axis.title,
                str(scale["metric"]),
                str(scale["description"]),
                str(scale.get("basis", MISSING)),
            ]
        )
    return [
        "## Scales",
        "",
        *_md_table(["axis", "raw metric", "worst → best", "derived from"], rows),
    ]


def profile_to_markdown(profile: Profile) -> str:
    """The profile as Markdown: scores, raw metrics per axis, scales, and what is missing."""
    out = _md_intro(profile) + _md_scores(profile)
    columns = raw_columns(profile)
    out += ["## Raw metrics", ""]
    out += _md_table(
        ["backbone", *(c.header for c in columns)],
        [[b.name, *(c.cell(b) for c in columns)] for b in profile.backbones],
    )
    out += _md_training(profile)
    out += _md_comparisons(profile)
    out += _md_scales(profile)
    out += mitigations_markdown(profile)
    unmeasurable = [(b.name, a, r) for b in profile.backbones for a, r in b.not_measurable.items()]
    if unmeasurable:
        out += ["## Not measurable", ""]
        out += [
            f"- **{name}** — {axis}: {reason} (no score: a gap on the radar, not weighed by the rankings)"
            for name, axis, reason in unmeasurable
        ]
        out.append("")
    missing = [(b.name, a, c) for b in profile.backbones for a, c in b.missing.items()]
    if missing:
        out += ["## Missing axes", ""]
        out += [f"- **{name}** — {axis}: run `{command}`" for name, axis, command in missing]
        out.append("")
    notes = list(profile.notes) + [f"{b.name}: {n}" for b in profile.backbones for n in b.notes]
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)


def training_rows(profile: Profile) -> list[list[str]]:
    """Per measured row: what it is (frozen, or a variant of which base), what training updated,
    trainable parameters, training time of the emotion model (all folds) and inference cost —
    a variant's inference cost is its base's, only training differs."""
    rows = []
    for b in profile.backbones:
        if b.reference:
            continue
        training = b.training or {}
        trainable = training.get("trainable_parameters")
        seconds = training.get("fit_seconds")
        rows.append(
            [
                b.name,
                f"{b.variant_description} ({b.base})" if b.is_variant else "frozen backbone",
                _trained(training),
                MISSING if trainable is None else f"{trainable / 1e3:.1f} k",
                MISSING if seconds is None else f"{seconds:.0f} s",
                sustainability.inference_gmacs(b),
                sustainability.inference_params(b),
            ]
        )
    return rows


def _trained(training: dict) -> str:
    """What training updated, and its precision when it was not float32."""
    trained = str(training.get("trained", MISSING))
    precision = training.get("precision")
    return trained if precision in (None, "fp32") else f"{trained}; {precision}"


TRAINING_HEADER = [
    "backbone",
    "model",
    "trained",
    "trainable params",
    "training time (emotion, all folds)",
    "inference GMAC / 6 s",
    "inference params",
]


def _md_training(profile: Profile) -> list[str]:
    rows = training_rows(profile)
    if not any(b.is_variant for b in profile.backbones) or not rows:
        return []
    return [
        "## Training cost",
        "",
        "Fine-tuning changes weights, not the computation: a variant's inference cost is its "
        "base's. What it adds is training: more trainable parameters and a longer fit.",
        "",
        *_md_table(TRAINING_HEADER, rows),
    ]


def _measure(key: str | None) -> Axis | Figure | None:
    return next((m for m in compared() if m.key == key), None)


def comparison_verdict(result: dict[str, Any]) -> str:
    """One comparison cell: ``+1.2 [−0.4, 2.9], p = 0.14: no significant difference`` (points
    for rates; a counted figure's difference in its unit: ``-27.6 GMAC (exact): A better``)."""
    difference = result.get("difference")
    if difference is None:
        return str(result.get("verdict", MISSING))
    measure = _measure(result.get("metric"))
    percent = measure is None or measure.percent

    def shown(x: float) -> str:
        return f"{100 * x:+.1f}" if percent else f"{x:+.3g}"

    exact = bool(result.get("exact"))
    text = shown(difference) + ("" if percent else f" {measure.unit}")  # type: ignore[union-attr]
    if not percent and exact:
        return f"{text} (exact): {result['verdict']}"
    if result.get("low") is not None and result.get("high") is not None and not exact:
        text += f" [{shown(result['low'])}, {shown(result['high'])}]"
    if result.get("p_value") is not None:
        text += f", p = {result['p_value']:.3f}"
    return f"{text}: {result['verdict']}"


def comparison_rows(profile: Profile) -> list[list[str]]:
    """Per pair of measured rows: the paired difference A − B per axis and its verdict."""
    measures = compared()
    return [
        [
            f"{pair['a']} vs {pair['b']}",
            *(
                comparison_verdict(pair["axes"][m.key]) if m.key in pair["axes"] else MISSING
                for m in measures
            ),
        ]
        for pair in profile.comparisons
    ]


def comparison_header() -> list[str]:
    """The comparisons table's header: a column per compared axis and figure."""
    return ["A vs B", *(m.title for m in compared())]


def _md_comparisons(profile: Profile) -> list[str]:
    if not profile.comparisons:
        return []
    return [
        "## Paired comparisons",
        "",
        "A − B on the same test speakers, in points (percent) for the rates and GMAC for "
        "sustainability, with the paired bootstrap interval and a two-sided p-value; a difference "
        "is significant when p < 0.05.",
        "",
        *_md_table(comparison_header(), comparison_rows(profile)),
    ]
