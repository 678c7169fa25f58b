"""Coverage and paired-test error rates of the profile's bootstrap intervals, by simulation.

    python bench/intervals.py                  # 5 folds × (1 woman + 1 man), IEMOCAP's clips
    python bench/intervals.py --clips 9        # the same with EmoDB's clips per speaker
    python bench/intervals.py --per-gender 8   # 5 folds × (8 + 8): speakers within fold × gender

Simulates evaluations with a known truth and bootstraps each as ``trustser profile`` does
(:func:`trustser.metrics.bootstrap.draw_speakers`, the count-table metrics, the percentile
interval and the paired test), beside the earlier design (speakers drawn within gender across
folds) for comparison. Per evaluation: ``--folds`` folds, each testing ``--per-gender`` women and
as many men, ``--clips`` clips per class per speaker, 4 classes. Speaker ``s`` of gender ``g``
answers right with probability ``a_s = μ_g + u_s`` (``u_s`` ~ N(0, ``--speaker-sd``²), EmoDB's
per-speaker UAR sd is 6.1 points); a model adds its own speaker deviation (N(0,
``--interaction-sd``²), the model × speaker interaction); a wrong answer is class ``y + 1``, so a
fold's multiclass EO is the mean over classes of ``|â_woman − â_man|``.

The truth is the population figure, infinite clips and speakers (by Monte Carlo over
``--truth-pairs`` simulated pairs): UAR ``E[(a_w + a_m) / 2]``, EO ``E|a_w − a_m|``. Reported per
design: the share of evaluations whose 95 % interval covers the truth, the mean width, the
share of folds a replicate leaves out of its fold mean (their EO undefined there), and for two
models on the same speakers the share of paired tests with ``p < 0.05``: with no difference
(the false-positive rate), and with a planted UAR difference (B's accuracy lower by δ on every
speaker) or a planted EO difference (B's gender gap wider by δ, its UAR unchanged).

Pure NumPy, seeded; about 40 s with the defaults on one core. ``--device`` is accepted
(bench/run_all.py passes it) and ignored.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from trustser.metrics import bootstrap as bs

CLASSES = 4
LABELS = list(range(CLASSES))


@dataclass(frozen=True)
class Design:
    """One simulated test set: speakers in fold-major order, women first in each fold."""

    folds: int
    per_gender: int
    clips: int

    @property
    def speakers(self) -> int:
        return self.folds * 2 * self.per_gender

    def fold_of(self) -> np.ndarray:
        return np.repeat(np.arange(self.folds), 2 * self.per_gender)

    def gender_of(self) -> np.ndarray:
        return np.tile(np.repeat([0, 1], self.per_gender), self.folds)  # 0 woman, 1 man


@dataclass(frozen=True)
class Population:
    accuracy: tuple[float, float]  # (women, men)
    speaker_sd: float
    interaction_sd: float


def speaker_accuracy(
    rng: np.random.Generator, design: Design, population: Population
) -> np.ndarray:
    """``[S]`` speaker effects: each speaker's accuracy before any model's own deviation."""
    means = np.asarray(population.accuracy)[design.gender_of()]
    return means + rng.normal(0.0, population.speaker_sd, design.speakers)


def model_counts(
    rng: np.random.Generator,
    design: Design,
    population: Population,
    speakers: np.ndarray,
    shift: np.ndarray,
) -> np.ndarray:
    """``[S, F, G=2, C, C]`` count tables of one model on the given speakers (``shift[S]``: a
    planted change of this model's accuracy per speaker)."""
    accuracy = speakers + shift + rng.normal(0.0, population.interaction_sd, design.speakers)
    accuracy = np.clip(accuracy, 0.01, 0.99)
    right = rng.binomial(design.clips, np.repeat(accuracy[:, None], CLASSES, axis=1))  # [S, C]
    counts = np.zeros((design.speakers, design.folds, 2, CLASSES, CLASSES), dtype=np.int64)
    s, folds, genders = np.arange(design.speakers), design.fold_of(), design.gender_of()
    for c in range(CLASSES):
        counts[s, folds, genders, c, c] = right[:, c]
        counts[s, folds, genders, c, (c + 1) % CLASSES] = design.clips - right[:, c]
    return counts


def truth(population: Population, pairs: int, seed: int) -> dict[str, float]:
    """Population UAR and multiclass EO (infinite clips) of a model, by Monte Carlo."""
    rng = np.random.default_rng(seed)
    sd = np.hypot(population.speaker_sd, population.interaction_sd)
    women = np.clip(population.accuracy[0] + rng.normal(0, sd, pairs), 0.01, 0.99)
    men = np.clip(population.accuracy[1] + rng.normal(0, sd, pairs), 0.01, 0.99)
    return {"uar": float(np.mean((women + men) / 2)), "eo": float(np.mean(np.abs(women - men)))}


METRICS = {"uar": bs.uar_from_counts, "eo": bs.multiclass_eo_from_counts}


def replicate_values(counts: np.ndarray, draws: bs.SpeakerDraws) -> dict[str, tuple]:
    """Per metric: the observed fold mean, every replicate's fold mean, and the share of the
    drawn folds the replicates left out of their means (the figure undefined there)."""
    folds = list(range(counts.shape[1]))
    observed = bs.resample(counts, np.ones(counts.shape[0]))
    tables = bs.resample(counts, draws.weights)
    weights = draws.fold_weights(folds)
    drawn = np.ones((draws.replicates, len(folds)), bool) if weights is None else weights > 0
    out = {}
    for name, metric in METRICS.items():
        per_fold = metric(tables)  # [B, F]
        left_out = np.sum(np.isnan(per_fold) & drawn) / np.sum(drawn)
        out[name] = (
            float(bs.fold_values(metric, observed)),
            bs.fold_mean(per_fold, weights),
            float(left_out),
        )
    return out


def designs(design: Design, replicates: int, seed: int) -> dict[str, bs.SpeakerDraws]:
    """The profile's design and the earlier one (speakers within gender, across folds)."""
    speakers = list(range(design.speakers))
    genders = ["female" if g == 0 else "male" for g in design.gender_of()]
    profile = bs.draw_speakers(speakers, list(design.fold_of()), genders, replicates, seed)
    earlier = bs.SpeakerDraws(
        speakers, bs.speaker_weights(len(speakers), replicates, seed, strata=genders), "earlier"
    )
    return {f"profile ({profile.design})": profile, "earlier (speakers within gender)": earlier}


def run(args: argparse.Namespace) -> list[dict]:
    design = Design(args.folds, args.per_gender, args.clips)
    population = Population(
        (args.accuracy_female, args.accuracy_male), args.speaker_sd, args.interaction_sd
    )
    truths = truth(population, args.truth_pairs, args.seed)
    plans = [("no difference", 0.0, "uar"), ("no difference", 0.0, "eo")]
    plans += [(f"UAR −{100 * d:g} points", d, "uar") for d in args.uar_differences]
    plans += [(f"EO +{100 * d:g} points", d, "eo") for d in args.eo_differences]
    results = []
    for label, draws in designs(design, args.replicates, args.seed).items():
        covered = {m: 0 for m in METRICS}
        width = {m: [] for m in METRICS}
        left_out = {m: [] for m in METRICS}
        found = {(p[0], p[2]): 0 for p in plans}
        for evaluation in range(args.evaluations):
            rng = np.random.default_rng([args.seed, evaluation])
            speakers = speaker_accuracy(rng, design, population)
            base = replicate_values(
                model_counts(rng, design, population, speakers, np.zeros(design.speakers)), draws
            )
            for m, (value, samples, share) in base.items():
                interval = bs.interval(value, samples)
                if interval.low is not None:
                    covered[m] += interval.low <= truths[m] <= interval.high
                    width[m].append(interval.high - interval.low)
                left_out[m].append(share)
            for name, delta, metric in plans:
                if metric == "uar":
                    shift = np.full(design.speakers, -delta)
                else:  # the gap widened, the mean unchanged: women −δ/2, men +δ/2
                    shift = np.where(design.gender_of() == 0, -delta / 2, delta / 2)
                other = replicate_values(
                    model_counts(rng, design, population, speakers, shift), draws
                )
                (a, a_samples, _), (b, b_samples, _) = base[metric], other[metric]
                comparison = bs.compare_replicates(
                    metric, a, b, a_samples, b_samples, higher_is_better=metric == "uar"
                )
                found[(name, metric)] += comparison.p_value is not None and (
                    comparison.p_value < 0.05
                )
        n = args.evaluations
        results.append(
            {
                "design": label,
                "truth": truths,
                "coverage": {m: covered[m] / n for m in METRICS},
                "width": {m: float(np.mean(width[m])) if width[m] else None for m in METRICS},
                "left_out": {m: float(np.mean(left_out[m])) for m in METRICS},
                "found": {f"{name} ({metric})": v / n for (name, metric), v in found.items()},
            }
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--per-gender", type=int, default=1, help="test speakers per gender/fold")
    parser.add_argument(
        "--clips",
        type=int,
        default=137,
        help="clips per class per speaker (IEMOCAP ~137, EmoDB ~9)",
    )
    parser.add_argument("--accuracy-female", type=float, default=0.60)
    parser.add_argument("--accuracy-male", type=float, default=0.72)
    parser.add_argument("--speaker-sd", type=float, default=0.06)
    parser.add_argument("--interaction-sd", type=float, default=0.02)
    parser.add_argument("--evaluations", type=int, default=400)
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--truth-pairs", type=int, default=1_000_000)
    parser.add_argument("--uar-differences", type=float, nargs="*", default=[0.02, 0.05])
    parser.add_argument("--eo-differences", type=float, nargs="*", default=[0.045])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="ignored: the simulation is NumPy")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with threadpool_limits(1):  # small matrices: BLAS threads only contend
        results = run(args)
    seconds = time.perf_counter() - start
    print(
        f"# bootstrap intervals by simulation ({platform.machine()}, python "
        f"{sys.version.split()[0]}, numpy {np.__version__}; {seconds:.1f} s)"
    )
    truths = results[0]["truth"]
    one = args.per_gender == 1
    print(
        f"{args.folds} folds × ({args.per_gender} {'woman' if one else 'women'} + "
        f"{args.per_gender} {'man' if one else 'men'}), {args.clips} "
        f"clips per class per speaker, accuracy women {args.accuracy_female:g} / men "
        f"{args.accuracy_male:g}, speaker sd {args.speaker_sd:g}, model × speaker sd "
        f"{args.interaction_sd:g}; {args.evaluations} evaluations × {args.replicates} replicates, "
        f"seed {args.seed}; truth: UAR {100 * truths['uar']:.1f} %, EO {100 * truths['eo']:.1f} %"
    )
    found_keys = list(results[0]["found"])
    print("| design | coverage UAR / EO | mean width UAR / EO, points | folds left out of a "
          "replicate (EO) | " + " | ".join(f"p < 0.05: {k}" for k in found_keys) + " |")  # fmt: skip
    print("|---" * (4 + len(found_keys)) + "|")
    for r in results:
        cov, wid = r["coverage"], r["width"]
        widths = " / ".join("–" if wid[m] is None else f"{100 * wid[m]:.1f}" for m in METRICS)
        print(
            f"| {r['design']} | {100 * cov['uar']:.1f} / {100 * cov['eo']:.1f} % | {widths} | "
            f"{100 * r['left_out']['eo']:.1f} % | "
            + " | ".join(f"{100 * r['found'][k]:.1f} %" for k in found_keys)
            + " |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
