"""Seconds to bootstrap every axis of a profile: count tables vs re-running the metrics, side by side.

    python bench/bootstrap.py --folds 5 --clips 10000 --replicates 1000

Simulates one model's test predictions as the stages write them — ``--folds`` folds of
``--clips`` clips each, ``--speakers`` test speakers per fold (half of each gender), 4 emotions —
with a gender head, a speaker-ID head (one class per speaker) and three attacks (FGSM, PGD,
noise), and times, in one run:

- *count tables* (the profile's way, :mod:`trustser.metrics.bootstrap`): tally each speaker's
  clips once, draw the speaker weights, and compute every figure the profile bootstraps — UAR,
  accuracy, macro-F1, multiclass EO and SP (fold mean and pooled), max-class EO, gender-head
  accuracy and UAR, speaker-ID accuracy, the three attacks' ASR and the adversarial excess —
  for all ``--replicates`` replicates;
- *re-running the metrics* (the obvious loop): per replicate, gather the drawn speakers' clips and
  call ``trustser.metrics`` (UAR and multiclass EO per fold only); timed for ``--loop-replicates``
  replicates and scaled to ``--replicates``.

The goal: every axis of a 5-fold × 10 000-clip profile in under 10 s on 2 cores. Pure NumPy;
``--device`` is accepted (bench/run_all.py passes it) and ignored. Set ``OMP_NUM_THREADS`` to the
cores you mean to measure with.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

import numpy as np

from trustser.metrics import bootstrap as bs
from trustser.metrics.fairness import multiclass_equalized_odds_difference
from trustser.metrics.performance import uar_score

LABELS = np.array(["neutral", "happy", "sad", "angry"])


def simulate(folds: int, clips: int, speakers: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Per clip: fold, speaker, gender, emotion truth/prediction, heads' and attacks' results."""
    rng = np.random.default_rng(seed)
    n = folds * clips
    fold = np.repeat(np.arange(folds), clips)
    speaker = fold * speakers + rng.integers(0, speakers, n)
    gender = np.where(speaker % 2 == 0, "female", "male")
    skill = rng.beta(14, 6, folds * speakers)[speaker]  # speaker effects
    true = rng.integers(0, 4, n)
    right = rng.random(n) < skill
    pred = np.where(right, true, (true + rng.integers(1, 4, n)) % 4)
    gender_pred = np.where(
        rng.random(n) < 0.95, gender, np.where(gender == "male", "female", "male")
    )
    speaker_hit = rng.random(n) < 0.8
    attacks = {
        name: rng.random(n) < p for name, p in (("fgsm", 0.6), ("pgd", 0.9), ("noise", 0.05))
    }
    return {
        "fold": fold.astype(str),
        "speaker": speaker.astype(str),
        "gender": gender,
        "true": LABELS[true],
        "pred": LABELS[pred],
        "gender_pred": gender_pred,
        "speaker_hit": speaker_hit,
        **{f"flip_{k}": v for k, v in attacks.items()},
    }


def count_tables(data: dict[str, np.ndarray], replicates: int) -> dict[str, bs.Interval]:
    """Every figure the profile bootstraps, the profile's way."""
    speakers = sorted(set(data["speaker"].tolist()))
    gender_of = dict(zip(data["speaker"].tolist(), data["gender"].tolist(), strict=True))
    fold_of = dict(zip(data["speaker"].tolist(), data["fold"].tolist(), strict=True))
    draws = bs.draw_speakers(  # the profile's design
        speakers, [fold_of[s] for s in speakers], [gender_of[s] for s in speakers], replicates
    )
    weights = draws.weights
    fold_weights = draws.fold_weights(sorted(set(data["fold"].tolist())))
    common = {"speaker_list": speakers}
    emotion = bs.confusion_counts(
        data["speaker"], data["fold"], data["true"], data["pred"],
        labels=list(LABELS), groups=data["gender"], **common,
    )  # fmt: skip
    gender = bs.confusion_counts(
        data["speaker"], data["fold"], data["gender"], data["gender_pred"],
        labels=["female", "male"], **common,
    )  # fmt: skip
    hits = bs.attack_counts(
        data["speaker"],
        data["fold"],
        np.ones(len(data["fold"]), bool),
        data["speaker_hit"],
        **common,
    )
    attacked = data["true"] == data["pred"]
    attacks = {
        name: bs.attack_counts(
            data["speaker"], data["fold"], attacked, data[f"flip_{name}"], **common
        )
        for name in ("fgsm", "pgd", "noise")
    }
    out: dict[str, bs.Interval] = {}

    def add(key, metric, counts, **kwargs):
        observed = bs.resample(counts, np.ones((1, counts.shape[0])))[0]
        value = float(bs.fold_values(metric, observed, **kwargs))
        resampled = bs.resample(counts, weights)
        out[key] = bs.interval(
            value, bs.fold_values(metric, resampled, fold_weights=fold_weights, **kwargs)
        )

    for key, metric in (
        ("uar", bs.uar_from_counts),
        ("accuracy", bs.accuracy_from_counts),
        ("macro_f1", bs.macro_f1_from_counts),
        ("eo_multiclass", bs.multiclass_eo_from_counts),
        ("sp_multiclass", bs.multiclass_sp_from_counts),
        ("eo_max_class", lambda t: bs.class_gaps_from_counts(t)["equalized_odds_max"]),
    ):
        add(key, metric, emotion)
    add("eo_multiclass_pooled", bs.multiclass_eo_from_counts, emotion, pooled=True)
    add("gender_accuracy", bs.accuracy_from_counts, gender)
    add("gender_uar", bs.uar_from_counts, gender)
    add("speaker_accuracy", bs.asr_from_counts, hits, cell_dims=1)
    for name, counts in attacks.items():
        add(f"asr_{name}", bs.asr_from_counts, counts, cell_dims=1)
    excess = out["asr_fgsm"].samples - out["asr_noise"].samples
    out["adversarial_excess"] = bs.interval(out["asr_fgsm"].value - out["asr_noise"].value, excess)
    return out


def metric_loop(data: dict[str, np.ndarray], replicates: int) -> float:
    """Seconds for ``replicates`` replicates of UAR and multiclass EO by re-running the metrics."""
    rng = np.random.default_rng(0)
    speakers = np.array(sorted(set(data["speaker"].tolist())))
    rows_of = {s: np.flatnonzero(data["speaker"] == s) for s in speakers}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(replicates):
            drawn = rng.choice(speakers, size=speakers.size, replace=True)
            rows = np.concatenate([rows_of[s] for s in drawn])
            folds = data["fold"][rows]
            for fold in np.unique(folds):
                keep = rows[folds == fold]
                uar_score(data["true"][keep], data["pred"][keep])
                multiclass_equalized_odds_difference(
                    data["true"][keep], data["pred"][keep], data["gender"][keep]
                )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--clips", type=int, default=10_000, help="test clips per fold")
    parser.add_argument("--speakers", type=int, default=40, help="test speakers per fold")
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--loop-replicates", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="count-table runs (fastest kept)")
    parser.add_argument("--device", default="cpu", help="ignored: the bootstrap is NumPy")
    args = parser.parse_args(argv)

    data = simulate(args.folds, args.clips, args.speakers)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        figures = count_tables(data, args.replicates)
        times.append(time.perf_counter() - start)
    loop = metric_loop(data, args.loop_replicates) * args.replicates / args.loop_replicates
    fastest = min(times)
    print(f"# bootstrap of every profile axis ({platform.machine()}, {os.cpu_count()} cores, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"python {sys.version.split()[0]}, numpy {np.__version__})")  # fmt: skip
    print(
        f"{args.folds} folds × {args.clips} clips, {args.folds * args.speakers} speakers, "
        f"{args.replicates} replicates, {len(figures)} figures"
    )
    print("| arm | seconds | figures |")
    print("|---|---|---|")
    print(
        f"| count tables (all figures; fastest of {args.repeats}) | {fastest:.2f} | {len(figures)} |"
    )
    print(
        f"| re-running the metrics (UAR + EO only; {args.loop_replicates} replicates scaled to "
        f"{args.replicates}) | {loop:.1f} | 2 |"
    )
    print(
        f"ratio (loop ÷ count tables, for 2 of the {len(figures)} figures): {loop / fastest:.0f}×"
    )
    print(f"goal: under 10 s — {'met' if fastest < 10 else 'NOT met'}")
    for key in ("uar", "eo_multiclass", "asr_fgsm"):
        f = figures[key]
        print(f"  {key}: {100 * f.value:.1f} [{100 * f.low:.1f}, {100 * f.high:.1f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
