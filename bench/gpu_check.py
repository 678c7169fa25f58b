"""Every backbone family on CUDA: extraction, heads, an FGSM and a PGD attack, one short script.

    python bench/gpu_check.py                      # every tiny family, cuda
    python bench/gpu_check.py --families apc tera  # some of them
    python bench/gpu_check.py --device cpu         # the same checks on the CPU

For each family's tiny random configuration (``tiny:<family>``, no download) on a small tone
corpus (4 speakers × 4 emotions × 2 clips of 0.4–0.8 s): extract into a store, fit emotion heads
for one fold, then attack that fold's test clips with FGSM and with PGD (3 steps) at 30 dB — a
waveform gradient through every encoder, recurrent ones included (cuDNN refuses an RNN's backward
in eval mode; see trustser/backbones/rnn.py). Prints one Markdown row per family with the
seconds of each stage, or the error that stopped it; exits 1 if any family failed. Finishes in
a couple of minutes on one GPU.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

FAMILIES = (
    "wav2vec2",
    "wav2vec2_layer",
    "wavlm",
    "hubert",
    "data2vec",
    "whisper",
    "apc",
    "tera",
)
EMOTIONS = ("neutral", "happy", "sad", "angry")
SPEAKERS = (("s1", "female"), ("s2", "male"), ("s3", "female"), ("s4", "male"))
F0 = {"neutral": 120.0, "happy": 300.0, "sad": 700.0, "angry": 1600.0}


def _corpus(root: Path):
    from trustser.folds import rotating_folds
    from trustser.manifest import Manifest, Utterance

    rng = np.random.default_rng(0)
    utterances = []
    for speaker, gender in SPEAKERS:
        for emotion in EMOTIONS:
            for take in range(2):
                n = int(16_000 * (0.4 + 0.4 * rng.random()))
                t = np.arange(n) / 16_000
                x = 0.2 * np.sin(2 * np.pi * F0[emotion] * t) + 0.01 * rng.standard_normal(n)
                path = root / "wav" / f"{speaker}_{emotion}_{take}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(path), x.astype(np.float32), 16_000, subtype="PCM_16")
                utterances.append(
                    Utterance(
                        id=path.stem,
                        path=str(path),
                        speaker=speaker,
                        gender=gender,
                        emotion=emotion,
                        duration=n / 16_000,
                        sample_rate=16_000,
                        num_frames=n,
                    )
                )
    folds = rotating_folds([[s] for s, _ in SPEAKERS], by="speaker")
    return Manifest(corpus="toy", utterances=tuple(utterances), folds=folds)


def _check(family: str, manifest, root: Path, device: str) -> dict[str, str]:
    from trustser.attacks.runner import run_attack
    from trustser.extract import extract
    from trustser.heads.estimator import HeadClassifier
    from trustser.heads.training import fit_heads

    row: dict[str, str] = {}
    store, runs = root / f"{family}.zarr", root / f"runs-{family}"
    start = time.perf_counter()
    summary = extract(manifest, store, f"tiny:{family}", device=device)
    if not summary.complete or summary.skipped:
        raise RuntimeError(f"extraction incomplete: {summary.pending} pending, {summary.skipped}")
    row["extract s"] = f"{time.perf_counter() - start:.1f}"
    start = time.perf_counter()
    fit_heads(store, None, HeadClassifier(epochs=3, lr=1e-2, device=device), runs=runs, folds="1")
    row["heads s"] = f"{time.perf_counter() - start:.1f}"
    for method, options in (("fgsm", {}), ("pgd", {"steps": 3})):
        start = time.perf_counter()
        run = run_attack(
            store, runs=runs, method=method, snr_db=30.0, device=device, batch_size=4, **options
        )
        result = run.results[0]
        if result.num_attacked and not np.isfinite([c.snr_db for c in result.clips]).all():
            raise RuntimeError(f"{method}: non-finite measured SNR")
        row[f"{method} s"] = f"{time.perf_counter() - start:.1f}"
        row[f"{method} attacked"] = str(result.num_attacked)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA GPU is visible; run this on a GPU machine (or pass --device cpu)")
        return 2
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.machine()
    print(f"{args.device} ({name}), torch {torch.__version__}, Python {sys.version.split()[0]}\n")
    columns = ("extract s", "heads s", "fgsm s", "fgsm attacked", "pgd s", "pgd attacked")
    print("| family | " + " | ".join(columns) + " | status |")
    print("|---|" + "---|" * (len(columns) + 1))
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        manifest = _corpus(Path(tmp))
        for family in args.families:
            try:
                row = _check(family, manifest, Path(tmp), args.device)
                status = "ok"
            except Exception as error:  # reported per family; the others still run
                failed += 1
                row = {}
                status = f"FAILED: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
                traceback.print_exc(file=sys.stderr)
            cells = " | ".join(row.get(c, "–") for c in columns)
            print(f"| tiny:{family} | {cells} | {status} |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
