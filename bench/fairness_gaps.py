"""The planted gap and the fairness axis before and after each fairness mitigation, with intervals.

    python bench/fairness_gaps.py --runs runs --backbone whisper_tiny_en_offline \\
        [--emotion angry] [--bootstrap 1000] [--seed 0] [--json gaps.json]

Reads ``emotion/predictions.csv`` of the base backbone and of each fairness variant of it under
``--runs`` (``<backbone>@fair-post``, ``<backbone>@fair-reweight``: ``trustser mitigate fairness``
first), which must share their test clips. Per model, each figure is a fold mean with its 95 %
interval from the profile's bootstrap design (``trustser.profile.intervals.speaker_draws``: the
same draws for every model, so differences are paired):

- the true-positive rate of ``--emotion`` for women and for men, and the **planted gap** women −
  men (``trustser data synth --bias angry:female`` renders female anger with neutral prosody, so
  the gap starts negative) and its absolute value, which decides whether a variant closed it;
- the **fairness axis**: the multiclass equalized odds (docs/metrics.md), and the worst-class
  equalized-odds gap beside it;
- UAR.

Then, per variant, the paired difference variant − base of each figure, its interval and
p-value (docs/metrics.md, "Paired comparisons"). Prints Markdown; ``--json`` also writes every
number. Reads files only: no model, no store.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trustser.metrics import bootstrap as bs
from trustser.profile.estimator import METHOD_FAIR, METHOD_FOLD, Estimator, Tables
from trustser.profile.intervals import speaker_draws
from trustser.runs import RunLayout
from trustser.variants.fairness import FAIRNESS_METHODS, KIND

Rows = list[dict[str, str]]


def read_rows(path: Path) -> Rows:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _tpr(emotion: int, group: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda tables: bs.class_tpr_from_counts(tables)[..., group, emotion]


def _gap(emotion: int, women: int, men: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda tables: _tpr(emotion, women)(tables) - _tpr(emotion, men)(tables)


def _absolute(metric: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    return lambda tables: np.abs(metric(tables))


def figures(
    estimator: Estimator, rows: Rows, emotion: str
) -> tuple[dict[str, bs.Interval], dict[str, bool | None]]:
    """Every figure of one model's predictions (fold means with intervals) and whether higher
    is better for each (None: neither, a signed gap)."""
    tables: Tables = estimator.confusion(rows, "true", "pred", grouped=True)
    genders = sorted({r["gender"] for r in rows})  # the tables' group order
    if genders != ["female", "male"]:
        raise SystemExit(f"the test clips' genders are {genders}; this needs female and male.")
    labels = tables.labels or []
    if emotion not in labels:
        raise SystemExit(f"--emotion {emotion!r} is not among the labels {labels}.")
    c, women, men = labels.index(emotion), 0, 1
    metrics = {
        f"tpr_{emotion}_female": (_tpr(c, women), True),
        f"tpr_{emotion}_male": (_tpr(c, men), True),
        f"gap_{emotion}_female_minus_male": (_gap(c, women, men), None),  # its sign: who is behind
        f"abs_gap_{emotion}": (_absolute(_gap(c, women, men)), False),
        "eo_multiclass": (bs.multiclass_eo_from_counts, False),
        "eo_worst_class": (lambda t: bs.class_gaps_from_counts(t)["equalized_odds_max"], False),
        "uar": (bs.uar_from_counts, True),
    }
    out = {}
    for key, (metric, _) in metrics.items():
        method = METHOD_FOLD if key == "uar" else METHOD_FAIR
        out[key] = estimator.interval(metric, tables, method)
    return out, {key: higher for key, (_, higher) in metrics.items()}


def _points(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _interval(result: dict[str, Any]) -> str:
    if result["low"] is None:
        return f"{_points(result['value'])} (no interval)"
    return f"{_points(result['value'])} [{_points(result['low'])}, {_points(result['high'])}]"


def gap_report(
    runs: Path, backbone: str, emotion: str, replicates: int, seed: int
) -> dict[str, Any]:
    """The figures of the base and each fairness variant found, and each variant's paired
    differences from the base."""
    layout = RunLayout(runs)
    names = [backbone] + [KIND.variant(backbone, method=m).name for m in FAIRNESS_METHODS]
    found: dict[str, Rows] = {}
    for name in names:
        path = layout.head_dir(name, "emotion") / "predictions.csv"
        if path.is_file():
            found[name] = read_rows(path)
    if backbone not in found:
        raise SystemExit(f"no {layout.head_dir(backbone, 'emotion') / 'predictions.csv'}.")
    clips = {name: sorted(r["id"] for r in rows) for name, rows in found.items()}
    for name, ids in clips.items():
        if ids != clips[backbone]:
            raise SystemExit(f"{name} was tested on other clips than {backbone}: not paired.")
    draws = speaker_draws(found.values(), replicates, seed)
    estimator = Estimator(draws, bs.DEFAULT_LEVEL)
    results = {name: figures(estimator, rows, emotion) for name, rows in found.items()}
    base, higher = results[backbone]
    report: dict[str, Any] = {
        "emotion": emotion,
        "bootstrap": {
            "replicates": replicates,
            "seed": seed,
            "design": draws.design,
            "test_speakers": len(draws.speakers),
        },
        "models": {
            name: {k: v.to_dict() for k, v in figs.items()} for name, (figs, _) in results.items()
        },
        "changes": {},
    }
    for name, (figs, _) in results.items():
        if name == backbone:
            continue
        changes = {}
        for key in figs:
            change = bs.compare_replicates(
                key,
                figs[key].value,
                base[key].value,
                figs[key].samples,
                base[key].samples,
                higher_is_better=bool(higher[key]),
            )
            if higher[key] is None:  # a signed gap: its absolute value carries the verdict
                change.verdict = "–"
            changes[key] = change.to_dict()
        report["changes"][name] = changes
    return report


def print_report(report: dict[str, Any]) -> None:
    emotion = report["emotion"]
    models = report["models"]
    keys = list(next(iter(models.values())))
    design = report["bootstrap"]
    print(
        f"## The {emotion} gap and the fairness axis, before and after (fold means, %, "
        f"[95 % interval]; {design['replicates']} replicates, design: {design['design']}, "
        f"seed {design['seed']})\n"
    )
    print("| model | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, figs in models.items():
        cells = [_interval(figs[k]) for k in keys]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name, changes in report["changes"].items():
        print(f"\n### {name} − base (paired, points)\n")
        print("| figure | change [95 %] | p | verdict |")
        print("|---|---|---|---|")
        for key, c in changes.items():
            low, high = _points(c["low"]), _points(c["high"])
            p_value = "–" if c["p_value"] is None else f"{c['p_value']:.3f}"
            verdict = {"A better": "variant better", "B better": "base better"}.get(
                c["verdict"], c["verdict"]
            )
            print(f"| {key} | {_points(c['difference'])} [{low}, {high}] | {p_value} | {verdict} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--backbone", required=True, help="the base backbone (its runs name)")
    parser.add_argument("--emotion", default="angry", help="the class whose gender gap is planted")
    parser.add_argument("--bootstrap", type=int, default=bs.DEFAULT_REPLICATES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    report = gap_report(args.runs, args.backbone, args.emotion, args.bootstrap, args.seed)
    print_report(report)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
