"""Backbone speed: ms per 6 s clip at batch 1 and 16, and Whisper's trimmed vs 30 s window.

    python bench/backbones.py --device cpu --clips 16
    python bench/backbones.py --device cuda --clips 64 --backbones whisper_tiny wavlm_base_plus

Prints a Markdown table. Backbones whose weights are not available locally are timed with their
exact architecture and random weights (``build_random_backbone``): speed does not depend on the
weight values. The "weights" column says which was used. Each cell is the fastest of its calls
(contention on a shared machine only ever adds time).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time

# Weights come from local caches only, unless --online: no retries against unreachable hubs.
if "--online" not in sys.argv:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from trustser.backbones import (
    REGISTRY,
    WeightsNotFoundError,
    build_random_backbone,
    load_backbone,
)
from trustser.devices import resolve_device

CLIP_SECONDS = 6.0
SAMPLE_RATE = 16_000


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _load(name: str, device: torch.device, window: str, random_only: bool):
    if not random_only:
        try:
            return load_backbone(name, device=device, window=window), "real"
        except WeightsNotFoundError:
            pass
    return build_random_backbone(name, device=device, window=window), "random (same architecture)"


def ms_per_clip(
    backbone, *, batch_size: int, clips: int, device: torch.device, seed: int = 0
) -> float:
    """Fastest call's time / batch size, after a warm-up call on two clips.

    The minimum, not the mean: on a shared machine, contention only ever adds time.
    """
    samples = int(CLIP_SECONDS * SAMPLE_RATE)
    generator = torch.Generator().manual_seed(seed)
    waveforms = (0.05 * torch.randn(batch_size, samples, generator=generator)).to(device)
    lengths = torch.full((batch_size,), samples, dtype=torch.long)
    calls = max(1, math.ceil(clips / batch_size))
    times = []
    with torch.no_grad():
        backbone(waveforms[:2], lengths[:2])  # warm-up (kernels, caches, allocator)
        for _ in range(calls):
            _synchronize(device)
            start = time.perf_counter()
            backbone(waveforms, lengths)
            _synchronize(device)
            times.append((time.perf_counter() - start) * 1000 / batch_size)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, or cuda")
    parser.add_argument("--clips", type=int, default=16, help="6 s clips timed per setting")
    parser.add_argument(
        "--backbones", nargs="+", default=list(REGISTRY), help="registry names (default: all)"
    )
    parser.add_argument(
        "--batch-sizes", nargs="+", type=int, default=[1, 16], help="batch sizes to time"
    )
    parser.add_argument("--random-weights", action="store_true", help="always time random weights")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if device.type == "cpu":
        where = (
            f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        )
    else:
        where = torch.cuda.get_device_name(device)
    print(f"Backbone speed on {where}, torch {torch.__version__}, {args.clips} clips of 6 s.\n")
    sizes = args.batch_sizes
    header = ["backbone", "weights", "L × D", "frames / 6 s"]
    header += [f"ms/clip, batch {b}" for b in sizes]
    header += ["30 s window, batch 1", "30 s / trimmed"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in args.backbones:
        backbone, weights = _load(name, device, "trimmed", args.random_weights)
        timings = [
            ms_per_clip(backbone, batch_size=b, clips=args.clips, device=device) for b in sizes
        ]
        row = [
            name,
            weights,
            f"{backbone.num_layers} × {backbone.dim}",
            str(backbone.frame_count(int(CLIP_SECONDS * SAMPLE_RATE))),
        ]
        row += [f"{t:.1f}" for t in timings]
        if REGISTRY[name].family == "whisper":
            padded, _ = _load(name, device, "30s", args.random_weights)
            full = ms_per_clip(padded, batch_size=1, clips=args.clips, device=device)
            trimmed = (
                timings[sizes.index(1)]
                if 1 in sizes
                else ms_per_clip(backbone, batch_size=1, clips=args.clips, device=device)
            )
            row += [f"{full:.1f}", f"{full / trimmed:.1f}×"]
            del padded
        else:
            row += ["—", "—"]
        print("| " + " | ".join(row) + " |", flush=True)
        del backbone
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
