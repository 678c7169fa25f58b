"""The profile as tables: one row per backbone (CSV) and the Markdown summary (profile.md)."""

from __future__ import annotations

import csv
import io
from typing import Any

from trustser.formatting import MISSING, number, percent
from trustser.profile.mitigations import mitigations_markdown
from trustser.profile.model import AXES, AXIS_TITLES, BackboneProfile, Profile

__all__ = [
    "INTERVAL_COLUMNS",
    "NOT_DEFINED",
    "TRAINING_HEADER",
    "comparison_rows",
    "comparison_verdict",
    "fold_eo",
    "interval_text",
    "profile_rows",
    "profile_to_csv",
    "profile_to_markdown",
    "score_text",
    "training_rows",
]


# profile.json interval key -> the profile.csv column it bounds (``<column>_low``, ``_high``)
INTERVAL_COLUMNS = {
    "performance": "uar_mean",
    "accuracy": "accuracy_mean",
    "macro_f1": "macro_f1_mean",
    "fairness": "eo_multiclass",
    "sp_multiclass": "sp_multiclass",
    "eo_max_class": "eo_max_fold_mean",
    "eo_multiclass_pooled": "eo_multiclass_pooled",
    "privacy": "gender_accuracy",
    "gender_accuracy_head": "gender_accuracy_head",
    "gender_uar_head": "gender_uar",
    "speaker_accuracy": "speaker_id_accuracy",
    "safety": "asr",
    "adversarial_excess": "adversarial_excess",
    "latency_ms": "latency_ms",
}


def interval_text(
    b: BackboneProfile,
    key: str,
    value: float | None = None,
    *,
    spread: float | None = None,
    missing: str = MISSING,
    digits: int = 1,
    as_percent: bool = True,
) -> str:
    """``88.8 [85.4, 93.3]``: the figure with its 95 % interval (``intervals[key]``), or the
    figure alone (with ``± spread`` when given) where it has none."""
    found = (b.intervals or {}).get(key) or {}
    if value is None:
        value = found.get("value")

    def shown(x: float | None) -> str:
        if as_percent:
            return percent(x, digits=digits, missing=missing)
        return number(x, digits, missing=missing)

    low, high = found.get("low"), found.get("high")
    if value is None:
        return missing
    if low is None or high is None:
        if high is not None:  # latency from an older cost.json: median and p90 only
            return f"{shown(value)} (p90 {shown(high)})"
        return percent(value, spread, digits=digits) if as_percent else shown(value)
    if low == high == value:
        return shown(value)  # exact
    return f"{shown(value)} [{shown(low)}, {shown(high)}]"


def score_text(b: BackboneProfile, axis: str) -> str:
    """``0.83 [0.15, 1.00]``: an axis score with the scores of its raw interval's ends."""
    found = (b.score_intervals or {}).get(axis)
    text = number(b.scores.get(axis))
    if found and b.scores.get(axis) is not None and found[0] != found[1]:
        text += f" [{number(found[0])}, {number(found[1])}]"
    return text


def profile_rows(profile: Profile) -> list[dict[str, Any]]:
    """One flat row per backbone: the five scores, then the raw metrics (fractions, not percent)."""
    rows = []
    for b in profile.backbones:
        perf, fair, priv = b.performance or {}, b.fairness or {}, b.privacy or {}
        gender, speaker = priv.get("gender") or {}, priv.get("speaker") or {}
        cost, safety = b.sustainability or {}, b.safety or {}
        spread = (fair.get("pooled") or {}).get("speakers") or {}
        row: dict[str, Any] = {"backbone": b.name, "reference": b.reference}
        row.update({"variant_of": b.base, "variant": b.variant})
        row.update({f"score_{a}": b.scores.get(a) for a in AXES})
        row.update(
            {
                "uar_mean": b.raw.get("performance"),
                "uar_std": perf.get("uar_std"),
                "accuracy_mean": perf.get("accuracy_mean"),
                "macro_f1_mean": perf.get("macro_f1_mean"),
                "eo_multiclass": b.raw.get("fairness"),
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
                "gender_accuracy": b.raw.get("privacy"),
                "privacy_attacker": b.privacy_attacker,
                "gender_accuracy_head": gender.get("accuracy"),
                "gender_uar": gender.get("uar"),
                "gender_chance_majority": gender.get("chance_majority"),
                "gender_accuracy_probe": (b.probe or {}).get("gender_test_accuracy_mean"),
                "gender_accuracy_probe_dev_layer": (b.probe or {}).get(
                    "gender_dev_chosen_layer_test_accuracy_mean"
                ),
                "speaker_id_accuracy": speaker.get("accuracy"),
                "speaker_id_chance_uniform": speaker.get("chance_uniform"),
                "asr": b.raw.get("safety"),
                "noise_asr": safety.get("noise_asr"),
                "gmacs": b.raw.get("sustainability"),
                "backbone_params": cost.get("backbone_params"),
                "head_params": cost.get("head_params"),
                "latency_ms": cost.get("latency_ms"),
                "throughput_clips_per_s": cost.get("throughput_clips_per_s"),
                "trainable_params": (b.training or {}).get("trainable_parameters"),
                "train_seconds": (b.training or {}).get("fit_seconds"),
                "missing": "; ".join(f"{a}: {c}" for a, c in b.missing.items()),
            }
        )
        row["adversarial_excess"] = safety.get("adversarial_excess")
        for attack in safety.get("attacks", []):
            row[f"asr_{attack['method']}_{attack['snr_db']:g}db"] = attack["asr_mean"]
        intervals = b.intervals or {}
        for key, column in INTERVAL_COLUMNS.items():
            found = intervals.get(key)
            if found and (found.get("low") is not None or found.get("high") is not None):
                row[f"{column}_low"], row[f"{column}_high"] = found.get("low"), found.get("high")
        for key, found in intervals.items():
            if key.startswith("asr_") and found and found.get("low") is not None:
                row[f"{key}_low"], row[f"{key}_high"] = found["low"], found["high"]
        for axis in AXES:
            ends = (b.score_intervals or {}).get(axis)
            if ends:
                row[f"score_{axis}_low"], row[f"score_{axis}_high"] = ends
        rows.append(row)
    return rows


def profile_to_csv(profile: Profile) -> str:
    """One row per backbone: the five scores, then the raw metrics (fractions, not percent)."""
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


def profile_to_markdown(profile: Profile) -> str:
    """The profile as Markdown: scores, raw metrics per axis, scales, and what is missing."""
    attack = profile.attack
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
            f"speaker-level bootstrap ({design['replicates']} replicates over "
            f"{design['num_speakers']} test speakers, seed {design['seed']}; strata: "
            f"{design['strata']}). GMACs and parameters are exact.",
            "",
        ]
    out += ["## Scores", ""]
    out += _md_table(
        ["backbone", *(AXIS_TITLES[a] for a in AXES)],
        [
            [
                b.name,
                *(score_text(b, a) + (" (clipped)" if b.clipped.get(a) else "") for a in AXES),
            ]
            for b in profile.backbones
        ],
    )
    out += ["## Raw metrics", ""]
    out += _md_table(
        [
            "backbone",
            "UAR %",
            "WA %",
            "macro-F1 %",
            "EO (multiclass, fold mean) %",
            "EO (multiclass, pooled) %",
            "EO max-class %",
            "SP (multiclass) %",
            "speaker UAR min–max %",
            "gender acc. % (strongest attacker)",
            "attacker",
            "gender acc., head % (the paper's)",
            "gender chance %",
            "gender acc., linear probe % (all layers / layer chosen on dev)",
            "speaker-ID acc. %",
            "speaker chance %",
            f"{attack['method'].upper()} {attack['snr_db']:g} dB ASR %",
            "noise ASR %",
            "other attacks: ASR %",
            "GMAC",
            "params (backbone + head)",
            "latency ms",
        ],
        [_md_raw_row(b, profile.attack) for b in profile.backbones],
    )
    out += _md_training(profile)
    out += _md_comparisons(profile)
    out += ["## Scales", ""]
    out += _md_table(
        ["axis", "raw metric", "worst → best", "derived from"],
        [
            [
                AXIS_TITLES[a],
                str(profile.scales[a]["metric"]),
                str(profile.scales[a]["description"]),
                str(profile.scales[a].get("basis", MISSING)),
            ]
            for a in AXES
        ],
    )
    out += mitigations_markdown(profile)
    missing = [(b.name, a, c) for b in profile.backbones for a, c in b.missing.items()]
    if missing:
        out += ["## Missing axes", ""]
        out += [f"- **{name}** — {axis}: run `{command}`" for name, axis, command in missing]
        out.append("")
    notes = list(profile.notes) + [f"{b.name}: {n}" for b in profile.backbones for n in b.notes]
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)


NOT_DEFINED = "n/a"  # a fold-level figure no fold defines (e.g. every fold tests one gender)


def fold_eo(b: BackboneProfile) -> str:
    """The fairness axis's fold mean ± sd: n/a when no fold defines it (the paper rows: raw)."""
    if b.reference:
        return percent(b.raw.get("fairness"))
    fair = b.fairness or {}
    if not fair:
        return MISSING
    if (b.intervals or {}).get("eo_multiclass", {}).get("low") is not None and fair.get(
        "multiclass_equalized_odds_fold_mean"
    ) is not None:
        return interval_text(b, "eo_multiclass", fair["multiclass_equalized_odds_fold_mean"])
    return percent(
        fair.get("multiclass_equalized_odds_fold_mean"),
        fair.get("multiclass_equalized_odds_fold_std"),
        missing=NOT_DEFINED,
    )


def _asr_key(attack: dict[str, Any]) -> str:
    return f"asr_{attack['method']}_{attack['snr_db']:g}db"


def _md_raw_row(b: BackboneProfile, axis: dict[str, Any]) -> list[str]:
    perf, fair, priv = b.performance or {}, b.fairness or {}, b.privacy or {}
    gender, speaker = priv.get("gender") or {}, priv.get("speaker") or {}
    cost, safety = b.sustainability or {}, b.safety or {}
    spread = (fair.get("pooled") or {}).get("speakers")
    undefined = NOT_DEFINED if fair else MISSING
    params = MISSING
    if cost.get("backbone_params") is not None:
        params = f"{cost['backbone_params'] / 1e6:.2f} M + {cost['head_params'] / 1e3:.0f} k"
    return [
        b.name,
        interval_text(b, "performance", b.raw.get("performance"), spread=perf.get("uar_std")),
        interval_text(b, "accuracy", perf.get("accuracy_mean")),
        interval_text(b, "macro_f1", perf.get("macro_f1_mean")),
        fold_eo(b),
        interval_text(
            b, "eo_multiclass_pooled", (fair.get("pooled") or {}).get("multiclass_equalized_odds")
        ),
        interval_text(
            b, "eo_max_class", fair.get("equalized_odds_max_fold_mean"), missing=undefined
        ),
        interval_text(
            b,
            "sp_multiclass",
            fair.get("multiclass_statistical_parity_fold_mean"),
            missing=undefined,
        ),
        f"{percent(spread['min'])}–{percent(spread['max'])}" if spread else MISSING,
        interval_text(b, "privacy", b.raw.get("privacy")),
        b.privacy_attacker or MISSING,
        interval_text(
            b, "gender_accuracy_head", gender.get("accuracy"), spread=gender.get("accuracy_std")
        )
        if not b.reference
        else percent(b.raw.get("privacy")),
        percent(gender.get("chance_majority")),
        f"{percent((b.probe or {}).get('gender_test_accuracy_mean'))} / "
        f"{percent((b.probe or {}).get('gender_dev_chosen_layer_test_accuracy_mean'))}",
        interval_text(b, "speaker_accuracy", speaker.get("accuracy")),
        percent(speaker.get("chance_uniform")),
        interval_text(b, "safety", b.raw.get("safety")),
        interval_text(b, f"asr_noise_{axis['snr_db']:g}db", safety.get("noise_asr")),
        ", ".join(
            f"{a['method'].upper()} {a['snr_db']:g} dB "
            f"{interval_text(b, _asr_key(a), a['asr_mean'])}"
            for a in safety.get("attacks", [])
            if a["method"] != "noise"
            and (a["method"], a["snr_db"]) != (axis["method"], axis["snr_db"])
        )
        or MISSING,
        number(b.raw.get("sustainability")),
        params,
        interval_text(b, "latency_ms", cost.get("latency_ms"), as_percent=False),
    ]


def training_rows(profile: Profile) -> list[list[str]]:
    """Per measured row: what it is (frozen, or a variant of which base), what training updated,
    trainable parameters, training time of the emotion model (all folds) and inference cost —
    a variant's inference cost is its base's, only training differs."""
    rows = []
    for b in profile.backbones:
        if b.reference:
            continue
        training, cost = b.training or {}, b.sustainability or {}
        trainable = training.get("trainable_parameters")
        seconds = training.get("fit_seconds")
        rows.append(
            [
                b.name,
                f"{b.variant_description} ({b.base})" if b.is_variant else "frozen backbone",
                str(training.get("trained", MISSING)),
                MISSING if trainable is None else f"{trainable / 1e3:.1f} k",
                MISSING if seconds is None else f"{seconds:.0f} s",
                number(b.raw.get("sustainability")),
                MISSING
                if cost.get("backbone_params") is None
                else f"{(cost['backbone_params'] + cost['head_params']) / 1e6:.2f} M",
            ]
        )
    return rows


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


def comparison_verdict(result: dict[str, Any]) -> str:
    """One comparison cell: ``+1.2 [−0.4, 2.9], p = 0.14: no significant difference``."""
    difference = result.get("difference")
    if difference is None:
        return str(result.get("verdict", MISSING))
    if result.get("metric") == "sustainability":
        return f"{difference:+.3g} GMAC (exact): {result['verdict']}"
    text = f"{100 * difference:+.1f}"
    if result.get("low") is not None and result.get("high") is not None and not result.get("exact"):
        text += f" [{100 * result['low']:+.1f}, {100 * result['high']:+.1f}]"
    if result.get("p_value") is not None:
        text += f", p = {result['p_value']:.3f}"
    return f"{text}: {result['verdict']}"


def comparison_rows(profile: Profile) -> list[list[str]]:
    """Per pair of measured rows: the paired difference A − B per axis and its verdict."""
    return [
        [
            f"{pair['a']} vs {pair['b']}",
            *(
                comparison_verdict(pair["axes"][axis]) if axis in pair["axes"] else MISSING
                for axis in AXES
            ),
        ]
        for pair in profile.comparisons
    ]


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
        *_md_table(["A vs B", *(AXIS_TITLES[a] for a in AXES)], comparison_rows(profile)),
    ]
