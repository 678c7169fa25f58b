"""Benchmark and evidence for the cache-trained mitigations; prints Markdown.

Side by side in one process, on the same store group and folds:

- **time**: each cache-trained mitigation against the baseline heads it replaces — privacy
  (emotion head against the adversary + fresh gender and speaker heads + probes on the encoder's
  output) against the baseline emotion, gender and speaker heads + probes; ``fair-reweight`` and
  ``fair-post`` against the baseline emotion heads. Goal: each at most 3× its baseline.
- **fairness evidence**: the TPR gap of ``--emotion`` (default angry) between the genders, the
  fairness axis (multiclass EO), the worst-class EO gap and UAR of the baseline and both
  fairness variants, fold means with intervals and paired changes (``bench/fairness_gaps.py``;
  on a planted-bias corpus: ``trustser data synth --bias angry:female``).
- **privacy evidence**: emotion UAR against every fresh attacker's accuracy, per λ.

    python bench/mitigate.py --store cache.zarr --backbone whisper_tiny_en_offline \\
        [--runs DIR] [--folds 1,2] [--lambda 0.1 0.3 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from fairness_gaps import gap_report, print_report  # bench/ is on sys.path when a script runs

from trustser.heads.probe import run_probes
from trustser.heads.training import default_estimator, fit_heads
from trustser.runs import RunLayout, read_json
from trustser.variants import fit_variant


def _timed(action):
    start = time.perf_counter()
    result = action()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--runs", default=None, help="results root (default: a temp directory)")
    parser.add_argument("--folds", default=None)
    parser.add_argument("--lambda", dest="lambdas", type=float, nargs="+", default=[0.3])
    parser.add_argument("--emotion", default="angry", help="the class whose TPR gap is reported")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    runs = Path(args.runs or tempfile.mkdtemp(prefix="bench-mitigate-"))
    estimator = default_estimator(device=args.device)
    options = {"runs": runs, "folds": args.folds}
    store, name = args.store, args.backbone

    base, t_heads = _timed(lambda: fit_heads(store, name, estimator, task="all", **options))
    _, t_probe = _timed(
        lambda: run_probes(store, name, task="gender,speaker", runs=runs, folds=args.folds)
    )
    t_emotion = next(t.seconds for t in base.tasks if t.task == "emotion")
    privacy, t_privacy = [], []
    for lam in args.lambdas:
        result, seconds = _timed(
            lambda lam=lam: fit_variant(store, f"{name}@privacy-l{lam:g}", estimator, **options)
        )
        privacy.append(result)
        t_privacy.append(seconds)
    _, t_post = _timed(lambda: fit_variant(store, f"{name}@fair-post", estimator, **options))
    _, t_reweight = _timed(
        lambda: fit_variant(store, f"{name}@fair-reweight", estimator, **options)
    )

    print(f"## Mitigations benchmark ({name}, folds {args.folds or 'all'})\n")
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), device {args.device}\n"
    )
    print("| mitigation | its time, s | baseline it replaces | baseline, s | ratio (goal ≤ 3) |")
    print("|---|---|---|---|---|")
    baseline_all = t_heads + t_probe
    for lam, seconds in zip(args.lambdas, t_privacy, strict=True):
        print(
            f"| privacy λ={lam:g} (adversarial emotion + fresh gender/speaker heads + probes) | "
            f"{seconds:.1f} | emotion + gender + speaker heads + probes | {baseline_all:.1f} | "
            f"{seconds / baseline_all:.2f} |"
        )
    for label, seconds in (("fair-reweight", t_reweight), ("fair-post (dev offsets)", t_post)):
        print(
            f"| {label} | {seconds:.1f} | emotion heads | {t_emotion:.1f} | "
            f"{seconds / t_emotion:.2f} |"
        )
    layout = RunLayout(runs)
    print()
    print_report(gap_report(runs, name, args.emotion, replicates=1000, seed=0))
    print("\n## Privacy (test, fold mean; fresh attackers on the shared representation)\n")
    print("| model | emotion UAR | gender head acc. | gender probe acc. | speaker-ID head acc. |")
    print("|---|---|---|---|---|")
    base_probe = read_json(layout.probe_dir(name) / "metrics.json")
    rows = [
        (
            name,
            read_json(layout.head_dir(name, "emotion") / "metrics.json")["test_uar_mean"],
            read_json(layout.head_dir(name, "gender") / "metrics.json")["test_accuracy_mean"],
            base_probe["gender_test_accuracy_mean"],
            read_json(layout.head_dir(name, "speaker") / "metrics.json")["test_accuracy_mean"],
        )
    ]
    for result in privacy:
        emotion, gender, speaker = result.tasks
        rows.append(
            (
                result.variant,
                emotion.metrics["test_uar_mean"],
                gender.metrics["test_accuracy_mean"],
                result.probe["gender_test_accuracy_mean"],
                speaker.metrics["test_accuracy_mean"],
            )
        )
    for row in rows:
        print(f"| {row[0]} | " + " | ".join(f"{v:.3f}" for v in row[1:]) + " |")
    print(f"\nruns: {runs}")


if __name__ == "__main__":
    main()
