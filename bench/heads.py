"""Benchmark heads trained from the cache vs the reference recipe on EmoDB; prints Markdown.

Both paths train the same head (:class:`trustser.heads.estimator.HeadClassifier`, same
hyperparameters, seeds, epochs — emotion 30, gender 10 — folds and data):

- **cache**: features read once from the embedding store into RAM (``PackedFeatures``), then
  every epoch trains from memory — what ``trustser heads fit`` does;
- **reference**: the reference recipe, which runs the frozen backbone forward for every batch
  of every epoch (train and dev), here as a feature source that calls the backbone on
  in-memory audio (audio decoding is excluded, to isolate the redundant compute).

The ratio is reference time ÷ cache time for fitting emotion + gender heads on the same folds;
the one-off extraction is reported apart. The reference path takes minutes per fold on a CPU,
so ``--folds`` (default ``1``) picks the folds both paths run; ``--folds all`` runs all five.

    python bench/heads.py --emodb ../shared/data/emodb [--store cache.zarr] [--folds 1,2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from trustser.audio import load_audio
from trustser.backbones import load_backbone
from trustser.corpora import emodb
from trustser.devices import resolve_device
from trustser.extract import extract
from trustser.heads.data import FeatureSet, PackedFeatures
from trustser.heads.estimator import HeadClassifier
from trustser.heads.tasks import DEFAULT_EPOCHS, build_task, select_splits
from trustser.store import Batch, open_store

TASKS = ("emotion", "gender")


class BackboneFeatures:
    """The reference recipe as a feature source: a backbone forward for every batch requested.

    Batches are drawn exactly as the cache path draws them (a seeded permutation cut into
    batches, like the reference's shuffled DataLoader), and the features are rounded to the
    store's dtype, so both paths train on the same numbers in the same order.
    """

    def __init__(
        self, backbone, waves: dict[str, torch.Tensor], device: torch.device, dtype: str
    ) -> None:
        self.backbone, self.waves, self.device = backbone, waves, device
        self.dtype = getattr(torch, dtype)
        self.forward_seconds = 0.0

    def batches(
        self, ids: Sequence[str], batch_size: int = 64, *, shuffle: bool = True, seed: int = 0
    ) -> Iterator[Batch]:
        ids = list(ids)
        lengths = [int(self.waves[i].numel()) for i in ids]
        order = (
            np.random.default_rng(seed).permutation(len(ids)) if shuffle else np.arange(len(ids))
        )
        for start in range(0, len(ids), batch_size):
            batch = order[start : start + batch_size]
            chosen = [ids[i] for i in batch]
            samples = torch.tensor([lengths[i] for i in batch])
            audio = torch.zeros(len(chosen), int(samples.max()))
            for row, utterance_id in enumerate(chosen):
                audio[row, : samples[row]] = self.waves[utterance_id]
            start = time.perf_counter()
            with torch.inference_mode():
                hidden, frames = self.backbone(audio.to(self.device), samples.to(self.device))
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.forward_seconds += time.perf_counter() - start
            hidden = hidden.to(self.dtype).float()  # the store's rounding
            mask = (
                torch.arange(hidden.shape[2], device=hidden.device)[None, :]
                < frames.to(hidden.device)[:, None]
            )
            yield Batch(ids=chosen, hidden=hidden, mask=mask, lengths=frames)


def fit_folds(source, task, splits, *, device: str, seed: int) -> tuple[float, list[float]]:
    """Seconds to fit one head per split, and each split's test UAR."""
    scores = []
    start = time.perf_counter()
    for split in splits:
        part = {
            r: FeatureSet(source, getattr(split, r), [task.label_of[i] for i in getattr(split, r)])
            for r in ("train", "dev", "test")
        }
        model = HeadClassifier(epochs=DEFAULT_EPOCHS[task.name], device=device, seed=seed)
        model.fit(part["train"], part["dev"], classes=task.labels)
        scores.append(model.score(part["test"]))
    return time.perf_counter() - start, scores


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emodb", type=Path, default=Path("../shared/data/emodb"))
    parser.add_argument("--backbone", default="whisper_tiny_en_offline")
    parser.add_argument(
        "--store", type=Path, help="an existing store holding the backbone (else extract now)"
    )
    parser.add_argument(
        "--folds", default="1", help="folds both paths run: names, 1-based indices or 'all'"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-reference", action="store_true", help="time the cache path only")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    workdir = Path(tempfile.mkdtemp(prefix="bench-heads-"))
    manifest = emodb.prepare(args.emodb, out=workdir / "emodb.jsonl")
    extraction = None
    store = args.store
    if store is None:
        store = workdir / "cache.zarr"
        start = time.perf_counter()
        extract(manifest, store, args.backbone, device=device, progress=False)
        extraction = time.perf_counter() - start
    group = open_store(store).group(args.backbone)
    stored = group.manifest()
    folds = None if args.folds == "all" else args.folds
    tasks = {name: build_task(name, stored, seed=args.seed) for name in TASKS}
    splits = {name: select_splits(task, folds) for name, task in tasks.items()}
    needed = list(dict.fromkeys(i for s in splits.values() for split in s for i in split.ids))

    rows: dict[str, dict[str, object]] = {}
    start = time.perf_counter()
    packed = PackedFeatures.from_source(group, needed)
    load_seconds = time.perf_counter() - start
    cache_total = load_seconds
    cache = {}
    for name, task in tasks.items():
        seconds, scores = fit_folds(packed, task, splits[name], device=str(device), seed=args.seed)
        cache[name] = (seconds, scores)
        cache_total += seconds
    rows["cache (trustser heads fit)"] = {
        "seconds": cache_total,
        **{n: s for n, (_, s) in cache.items()},
    }

    reference_total = None
    forward = None
    if not args.skip_reference:
        model = load_backbone(args.backbone, device=device)
        if model.provenance()["weights_sha256"] != group.provenance["weights_sha256"]:
            print("error: the store was extracted with other weights", file=sys.stderr)
            return 2
        waves = {u.id: load_audio(u.path).waveform for u in stored if u.id in set(needed)}
        source = BackboneFeatures(model, waves, device, group.dtype)
        reference_total = 0.0
        reference = {}
        for name, task in tasks.items():
            seconds, scores = fit_folds(
                source, task, splits[name], device=str(device), seed=args.seed
            )
            reference[name] = scores
            reference_total += seconds
        forward = source.forward_seconds
        rows["reference (backbone every batch, every epoch)"] = {
            "seconds": reference_total,
            **reference,
        }

    chosen = ", ".join(s.name for s in splits["emotion"])
    print(f"# Heads from the cache vs the reference recipe ({args.backbone}, EmoDB)\n")
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, device {device}, "
        f"{torch.get_num_threads()} threads, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
        f"folds {chosen}; epochs emotion {DEFAULT_EPOCHS['emotion']}, gender {DEFAULT_EPOCHS['gender']}; "
        f"batch 64, Adam 5e-4, the same seeds.\n"
    )
    print("| path | fit emotion + gender, s | emotion test UAR | gender test UAR |")
    print("|---|---|---|---|")
    for label, row in rows.items():
        emotion, gender = row["emotion"], row["gender"]
        print(
            f"| {label} | {row['seconds']:.1f} | {np.mean(emotion):.3f} ({', '.join(f'{x:.3f}' for x in emotion)}) "
            f"| {np.mean(gender):.3f} ({', '.join(f'{x:.3f}' for x in gender)}) |"
        )
    print()
    print(
        f"- cache: {load_seconds:.1f} s reading the features into RAM, then training from memory."
    )
    if extraction is not None:
        print(
            f"- one-off extraction of {len(manifest)} clips into the store: {extraction:.1f} s (not in the ratio)."
        )
    if reference_total is not None:
        print(f"- reference: {forward:.1f} s of it inside the backbone forward.")
        print(
            f"- **speed-up: {reference_total / cache_total:.1f}×** (reference ÷ cache, same folds and epochs)."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
