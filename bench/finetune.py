"""Benchmark fine-tuning the top block from the cache vs from the waveform every batch; Markdown.

Both arms run the very same training (:class:`trustser.heads.finetune.FineTuneClassifier`: the
top K blocks + the paper's head, same clips, seeds, batches, epochs, block learning rate):

- **cache**: ``trustser heads fit --finetune-top K`` — the clips' cached layers ``0 … L − 1 − K``
  are read once into RAM and every batch runs only the K trainable blocks and the head;
- **waveform**: the same batches computed from the audio for every batch of every epoch (train,
  dev and test), as a recipe without a cache must: the frozen backbone's front end and the
  blocks below the trained ones run on the padded clips (under ``no_grad``; the top blocks are
  cut from this copy, so nothing is computed twice), features rounded to the store's dtype so
  both arms train on the same numbers. Audio decoding is excluded.

The ratio is waveform time ÷ cache time for one fold's fit + test scoring. Arms alternate
(cache, waveform, waveform, cache, …) over ``--repeats`` pairs so a change in the machine's
load hits both; the median of the per-pair ratios is reported. Models: the offline Whisper
tiny.en (4 blocks: K = 1 skips 3) and a 12-block tiny random Whisper (K = 1 skips 11).

    python bench/finetune.py --emodb ../shared/data/emodb [--models tiny.en,whisper12]
        [--fold 1] [--epochs 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from trustser.audio import load_audio
from trustser.backbones import load_backbone
from trustser.backbones.architecture import build_architecture
from trustser.backbones.tiny import tiny_spec
from trustser.backbones.top_blocks import top_blocks_for_store
from trustser.backbones.whisper import WhisperBackbone
from trustser.batching import length_batches, length_mask
from trustser.corpora import emodb
from trustser.devices import resolve_device
from trustser.extract import extract
from trustser.heads.data import FeatureSet, PackedFeatures
from trustser.heads.finetune import DEFAULT_BLOCK_LR, FineTuneClassifier
from trustser.heads.tasks import build_task, select_splits
from trustser.store import Batch, open_store

MODELS = ("tiny.en", "whisper12")


def whisper12() -> WhisperBackbone:
    """A tiny random Whisper (``tiny:whisper``'s widths) with 12 encoder blocks, fixed seed."""
    spec = tiny_spec("whisper")
    config = {**spec.extra["config"], "encoder_layers": 12}
    spec = dataclasses.replace(
        spec,
        name="bench:whisper12",
        num_layers=13,
        description="12-block tiny random Whisper (benchmark only)",
        extra={**spec.extra, "config": config, "tiny": "whisper12"},
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        encoder = build_architecture(spec).float().eval()
    return WhisperBackbone(encoder, spec, window="trimmed")


def lower_part(backbone: WhisperBackbone, k: int) -> WhisperBackbone:
    """A copy of ``backbone`` that stops below its top ``k`` blocks: it returns store layers
    ``0 … L − 1 − k`` (the last without the final norm, exactly as the store keeps it)."""
    lower = copy.deepcopy(backbone)
    lower.encoder.layers = lower.encoder.layers[: len(lower.encoder.layers) - k]
    lower.encoder.layer_norm = nn.Identity()
    return lower


class WaveformFeatures:
    """The fine-tuning batches computed from the waveform for every request (see module doc).

    ``batches`` cuts the same length-bucketed batches a store group or the in-RAM cache cuts
    (from the same frame counts and seed) and returns the lower ``L − K`` layers; ``statistics``
    (the head's per-layer standardisation) runs the full backbone once over the clips, as the
    cache arm's statistics come from the full cached stack.
    """

    def __init__(
        self, backbone: WhisperBackbone, k: int, waves: dict[str, torch.Tensor], dtype: str
    ) -> None:
        self.full, self.lower = backbone, lower_part(backbone, k)
        self.waves, self.dtype = waves, getattr(torch, dtype)
        self.num_layers, self.dim = backbone.num_layers, backbone.dim
        self.device = backbone.device
        self.forward_seconds = 0.0

    def num_frames(self, ids: Sequence[str]) -> np.ndarray:
        return np.array([self.full.frame_count(self.waves[i].numel()) for i in ids], dtype=np.int64)

    def _forward(self, model: nn.Module, ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        samples = torch.tensor([self.waves[i].numel() for i in ids])
        audio = torch.zeros(len(ids), int(samples.max()))
        for row, utterance_id in enumerate(ids):
            audio[row, : samples[row]] = self.waves[utterance_id]
        start = time.perf_counter()
        with torch.no_grad():
            hidden, frames = model(audio.to(self.device), samples)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.forward_seconds += time.perf_counter() - start
        return hidden.to(self.dtype).float().cpu(), frames  # the store's rounding

    def batches(
        self, ids: Sequence[str], batch_size: int = 64, *, shuffle: bool = True, seed: int = 0
    ) -> Iterator[Batch]:
        ids = list(ids)
        order = length_batches(
            self.num_frames(ids), batch_size=batch_size, shuffle=shuffle, seed=seed
        )
        for chunk in order:
            chosen = [ids[i] for i in chunk]
            hidden, frames = self._forward(self.lower, chosen)
            mask = length_mask(frames, hidden.shape[2])
            yield Batch(ids=chosen, hidden=hidden, mask=mask, lengths=frames)

    def statistics(self, ids: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        total = squares = None
        count = 0
        ids = list(ids)
        for chunk in length_batches(self.num_frames(ids), batch_size=64):
            hidden, frames = self._forward(self.full, [ids[i] for i in chunk])
            mask = length_mask(frames, hidden.shape[2])[:, None, :, None].double()
            hidden = hidden.double() * mask
            part, part_squares = hidden.sum((0, 2)), (hidden * hidden).sum((0, 2))
            total = part if total is None else total + part
            squares = part_squares if squares is None else squares + part_squares
            count += int(frames.sum())
        mean = total / count
        return mean.float(), (squares / count - mean * mean).clamp_min(0).sqrt().float()


def fit_once(source, split, task, top, args) -> dict[str, object]:
    """One fold's fine-tuning + test scoring on ``source``; seconds, metrics and the blocks."""
    part = {
        role: FeatureSet(
            source, getattr(split, role), [task.label_of[i] for i in getattr(split, role)]
        )
        for role in ("train", "dev", "test")
    }
    model = FineTuneClassifier(
        epochs=args.epochs,
        min_steps=0,
        block_lr=args.block_lr,
        device=str(resolve_device(args.device)),
        seed=args.seed,
    )
    start = time.perf_counter()
    model.fit(part["train"], part["dev"], blocks=top, classes=task.labels)
    test_uar = model.score(part["test"])
    return {
        "seconds": time.perf_counter() - start,
        "dev_uar": [h["dev_uar"] for h in model.history_],
        "best_epoch": model.best_epoch_,
        "test_uar": test_uar,
        "blocks": {k: v.detach().cpu() for k, v in model.top_blocks_.state_dict().items()},
    }


def bench_model(name: str, manifest, workdir: Path, args) -> list[str]:
    device = resolve_device(args.device)
    backbone = (
        load_backbone("whisper_tiny_en_offline", device=device)
        if name == "tiny.en"
        else whisper12()
    )
    backbone = backbone.to(device).freeze()
    store = workdir / f"{name}.zarr"
    start = time.perf_counter()
    extract(manifest, store, backbone, device=device, progress=False)
    extraction = time.perf_counter() - start
    group = open_store(store).group(backbone.spec.name)
    task = build_task("emotion", group.manifest(), seed=args.seed)
    (split,) = select_splits(task, args.fold)
    top = top_blocks_for_store(group.provenance, backbone, args.k)
    ids = list(split.ids)
    waves = {u.id: load_audio(u.path).waveform for u in group.manifest() if u.id in set(ids)}
    runs: dict[str, list[dict[str, object]]] = {"cache": [], "waveform": []}
    ratios = []
    for repeat in range(args.repeats):
        order = ("cache", "waveform") if repeat % 2 == 0 else ("waveform", "cache")
        pair = {}
        for arm in order:
            if arm == "cache":
                start = time.perf_counter()
                source = PackedFeatures.from_source(group, ids)  # the one read of the cache
                load = time.perf_counter() - start
                result = fit_once(source, split, task, top, args)
                result["seconds"] += load
                result["load_seconds"] = load
            else:
                source = WaveformFeatures(backbone, args.k, waves, group.dtype)
                result = fit_once(source, split, task, top, args)
                result["forward_seconds"] = source.forward_seconds
            pair[arm] = result
            runs[arm].append(result)
        ratios.append(pair["waveform"]["seconds"] / pair["cache"]["seconds"])
    cache, wave = runs["cache"][0], runs["waveform"][0]
    drift = max(
        float((cache["blocks"][k] - wave["blocks"][k]).abs().max()) for k in cache["blocks"]
    )
    lower = backbone.num_layers - 1 - args.k
    label = (
        f"{backbone.spec.name} ({backbone.num_layers - 1} blocks, D = {backbone.dim}; "
        f"K = {args.k}: {lower} skipped)"
    )
    lines = [
        f"### {label}\n",
        f"fold {split.name}: {len(split.train)} train / {len(split.dev)} dev / {len(split.test)} "
        f"test clips; {args.epochs} epochs; one-off extraction {extraction:.1f} s (not in the ratio).\n",
        "| arm | fit + test, s (each repeat) | of which backbone forward, s | dev UAR per epoch | "
        "best epoch | test UAR |",
        "|---|---|---|---|---|---|",
    ]
    for arm, results in runs.items():
        first = results[0]
        inner = (
            ", ".join(f"{r['forward_seconds']:.1f}" for r in results)
            if arm == "waveform"
            else "0 ("
            + ", ".join(f"{r['load_seconds']:.1f}" for r in results)
            + " reading the cache)"
        )
        times = ", ".join(f"{r['seconds']:.1f}" for r in results)
        dev = ", ".join(f"{u:.3f}" for u in first["dev_uar"])
        lines.append(
            f"| {arm} | {times} | {inner} | {dev} | {first['best_epoch']} | "
            f"{first['test_uar']:.3f} |"
        )
    same = cache["dev_uar"] == wave["dev_uar"] and cache["test_uar"] == wave["test_uar"]
    lines += [
        "",
        f"- **ratio waveform ÷ cache: {statistics.median(ratios):.2f}×** (median of "
        f"{len(ratios)} interleaved pair(s): {', '.join(f'{r:.2f}' for r in ratios)}).",
        f"- same metrics: {'yes' if same else 'no'}; largest difference between the two arms' "
        f"trained block tensors {drift:.2g}.",
        "",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emodb", type=Path, default=Path("../shared/data/emodb"))
    parser.add_argument("--models", default=",".join(MODELS), help="tiny.en, whisper12 or both")
    parser.add_argument("--fold", default="1", help="the fold both arms train (name or index)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved pairs of runs")
    parser.add_argument("--k", type=int, default=1, help="top blocks fine-tuned")
    parser.add_argument("--block-lr", type=float, default=DEFAULT_BLOCK_LR)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    workdir = Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    manifest = emodb.prepare(args.emodb, out=workdir / "emodb.jsonl")
    print("# Fine-tuning the top block: from the cache vs from the waveform every batch\n")
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, device "
        f"{args.device}, {torch.get_num_threads()} threads, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; EmoDB; batch 64, head Adam 5e-4, blocks "
        f"{args.block_lr:g}, seed {args.seed}; load average at start "
        f"{os.getloadavg()[0]:.1f}.\n"
    )
    for name in models:
        for line in bench_model(name, manifest, workdir, args):
            print(line, flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
