"""Benchmark robustness evaluation: N heads on corrupted clips from the cache vs the backbone
rerun for each head; Markdown.

The corrupted copies of one fold's test clips (every case of ``--corruptions``) are extracted
once into the store (**one-off**: corruption + the frozen backbone, timed, the extraction's own
forward time beside it). Then N emotion heads (the fold's head trained with N seeds) classify
every copy:

- **cache**: each batch of cached features is read once and every head runs on it
  (:func:`trustser.robustness.predict_from_cache`, what ``trustser robustness`` does);
- **backbone per head**: each head deployed end to end (backbone + head) on the same corrupted
  waveforms, as an evaluation without the cache must. The waveforms are corrupted once per
  case in memory beforehand and that time is left out of this arm, which flatters it.

Both arms must give the same predictions (checked clip by clip; the store is float32 by default
so the only difference is padding round-off). The table gives each arm's seconds, the ratio
backbone ÷ cache, and the break-even N from which one-off + cache beats rerunning.

    python bench/robustness.py --emodb ../shared/data/emodb --backbone whisper_tiny_en_offline \
        [--heads 8] [--corruptions white_noise,babble,...] [--fold 1] [--device cpu]
    python bench/robustness.py --tiny        # a tiny random Whisper on synthetic tones: a check
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from trustser.backbones import load_backbone
from trustser.corruptions import suite
from trustser.deployed.batches import predict_clips
from trustser.deployed.cached import head_on_cache
from trustser.deployed.loading import load_fold_head, load_waveforms
from trustser.devices import resolve_device
from trustser.end_to_end import EndToEndClassifier
from trustser.extract import extract
from trustser.heads.estimator import HeadClassifier
from trustser.heads.training import fit_heads
from trustser.manifest import EMOTIONS, Manifest, Utterance
from trustser.robustness import Corrupter, corrupted_set, extract_copies, predict_from_cache
from trustser.runs import RunLayout
from trustser.store import open_store


def _tones(root: Path) -> Manifest:
    """6 speakers × 4 emotions × 3 clips of 0.5–1 s tones whose pitch encodes the emotion; each
    fold tests one woman and one man."""
    from trustser.folds import rotating_folds

    rng = np.random.default_rng(0)
    speakers = tuple((f"s{i}", ("female", "male")[i % 2]) for i in range(6))
    utterances = []
    for speaker, gender in speakers:
        for k, emotion in enumerate(EMOTIONS):
            for take in range(3):
                n = int(16_000 * (0.5 + 0.5 * rng.random()))
                t = np.arange(n) / 16_000
                x = 0.2 * np.sin(2 * np.pi * 150 * (k + 1) * t) + 0.01 * rng.standard_normal(n)
                path = root / f"{speaker}_{emotion}_{take}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(path), x.astype(np.float32), 16_000, subtype="PCM_16")
                utterances.append(
                    Utterance(
                        path.stem,
                        str(path),
                        speaker,
                        gender,
                        emotion,
                        n / 16_000,
                        sample_rate=16_000,
                        num_frames=n,
                    )
                )
    folds = rotating_folds([["s0", "s1"], ["s2", "s3"], ["s4", "s5"]], by="speaker")
    return Manifest(corpus="tones", utterances=tuple(utterances), folds=folds)


def _manifest(args: argparse.Namespace, work: Path) -> tuple[Manifest, str]:
    if args.tiny or not (args.emodb / "wav").is_dir():
        return _tones(work / "tones"), "synthetic tones (6 speakers × 4 emotions × 3 clips)"
    from trustser.corpora import emodb

    return emodb.prepare(args.emodb), f"EmoDB ({args.emodb})"


def _heads(store: Path, backbone: str, work: Path, args: argparse.Namespace) -> list[Path]:
    """N emotion heads of fold ``args.fold``: the paper's head trained with seeds 0 … N − 1."""
    paths = []
    for seed in range(args.heads):
        runs = work / f"runs-{seed}"
        estimator = HeadClassifier(epochs=args.epochs, seed=seed, device=args.device)
        fit_heads(store, backbone, estimator, runs=runs, folds=str(args.fold), task="emotion")
        layout = RunLayout(runs)
        (fold,) = [p.name for p in layout.head_dir(backbone, "emotion").iterdir() if p.is_dir()]
        paths.append(layout.head_path(backbone, "emotion", fold))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--emodb", type=Path, default=Path("../shared/data/emodb"))
    parser.add_argument("--tiny", action="store_true", help="tiny:whisper on synthetic tones")
    parser.add_argument("--backbone", default="whisper_tiny_en_offline")
    parser.add_argument("--heads", type=int, default=8, help="N heads evaluated")
    parser.add_argument("--corruptions", default=None, help="comma-separated (default: all)")
    parser.add_argument("--fold", type=int, default=1, help="1-based fold whose test clips")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of each head")
    parser.add_argument("--dtype", default="float32", help="store dtype (float32: exact)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", type=Path, default=None, help="working directory (kept)")
    args = parser.parse_args(argv)
    backbone_name = "tiny:whisper" if args.tiny else args.backbone
    device = resolve_device(args.device)
    work = args.work or Path(tempfile.mkdtemp(prefix="trustser-bench-robustness-"))
    manifest, source = _manifest(args, work)
    store = work / "cache.zarr"
    extract(manifest, store, backbone_name, device=device, dtype=args.dtype, progress=False)
    heads = _heads(store, backbone_name, work, args)
    group = open_store(store).group(backbone_name)
    clean = group.manifest()
    fold = clean.folds[args.fold - 1]
    names = args.corruptions.split(",") if args.corruptions else None
    cases = suite(names)
    copies = corrupted_set(clean, cases, folds=[fold], seed=0)

    start = time.perf_counter()  # one-off: corrupt and extract every copy
    extraction = extract_copies(store, group, copies, device=str(device))
    one_off = time.perf_counter() - start
    group = open_store(store).group(backbone_name)
    provenance = group.provenance
    loaded = [load_fold_head(fold, p, clean, provenance, device) for p in heads]
    clips = loaded[0].utterances
    genders = {u.id: u.gender for u in clips}

    start = time.perf_counter()  # cache: every head on every copy, features read once per batch
    paths = {str(k): head_on_cache(h.head) for k, h in enumerate(loaded)}
    cached = {}
    for case in cases:
        ids = {u.id: copies.ids[(u.id, case.name)] for u in clips}
        cached[case.name] = predict_from_cache(
            group, ids, paths, genders=genders, batch_size=args.batch_size, device=device
        )
    cache_seconds = time.perf_counter() - start

    encoder = load_backbone(backbone_name, device=device, window=provenance.get("window"))
    corrupter = Corrupter(clean, seed=0, max_seconds=provenance.get("max_seconds"))
    waves = load_waveforms(clips, provenance)
    backbone_seconds = corrupt_seconds = 0.0
    agree = total = 0
    for case in cases:
        started = time.perf_counter()
        corrupted = []
        for u, w in zip(clips, waves, strict=True):
            record = copies.manifest[copies.ids[(u.id, case.name)]].custom
            pool = record.get("babble_pool", ())
            corrupted.append(torch.from_numpy(corrupter.corrupt(u, case, w.numpy(), pool=pool)))
        corrupt_seconds += time.perf_counter() - started
        for k, head in enumerate(loaded):
            started = time.perf_counter()
            logits = predict_clips(
                EndToEndClassifier(encoder, head.head),
                corrupted,
                batch_size=args.batch_size,
                identical_only=not encoder.masks_padding,
                device=device,
            )
            backbone_seconds += time.perf_counter() - started
            for u, row in zip(clips, logits, strict=True):
                agree += int(int(row.argmax()) == cached[case.name][str(k)][u.id])
                total += 1

    passes = len(clips) * len(cases)
    ratio = backbone_seconds / cache_seconds if cache_seconds else float("inf")
    per_head_gain = (backbone_seconds - cache_seconds) / args.heads
    break_even = one_off / per_head_gain if per_head_gain > 0 else float("inf")
    print(
        f"{source}; backbone {backbone_name} ({args.dtype} store); fold {fold.name}: "
        f"{len(clips)} test clips × {len(cases)} cases = {passes} copies; {args.heads} heads; "
        f"device {device}; {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads\n"
    )
    print("| arm | seconds | what |")
    print("|---|---:|---|")
    print(
        f"| one-off: corrupt + extract the copies | {one_off:.1f} | "
        f"{extraction.clips_written} copies; backbone forward {extraction.forward_seconds:.1f} s |"
    )
    print(f"| cache: {args.heads} heads | {cache_seconds:.2f} | features read once per batch |")
    print(
        f"| backbone per head: {args.heads} heads | {backbone_seconds:.1f} | "
        f"+ {corrupt_seconds:.1f} s corrupting in memory, left out |"
    )
    print(
        f"\nratio backbone per head ÷ cache: **{ratio:.1f}×**; break-even: one-off + cache beats "
        f"rerunning from N ≈ {break_even:.1f} heads; same predictions: {agree}/{total} clip passes"
    )
    return 0 if agree == total else 1


if __name__ == "__main__":
    sys.exit(main())
