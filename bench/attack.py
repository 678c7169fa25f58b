"""Batched FGSM vs a batch-size-1 loop: clips per second on the same clips and device.

Runs the end-to-end model (frozen backbone + a seeded random emotion head; the head's weights do
not change the cost) over EmoDB's four-class clips when the corpus is present, else over
synthetic clips with EmoDB-like durations (1.5–6 s). Labels are the clean predictions, so every
clip is attacked. Prints a Markdown table; the batched and the looped runs must agree on every
adversarial prediction.

    .venv/bin/python bench/attack.py --backbone whisper_tiny_en_offline --clips 48
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from trustser.attacks.batched import attack_clips
from trustser.attacks.methods import FGSM
from trustser.audio import load_audio
from trustser.backbones import load_backbone
from trustser.deployed.batches import predict_clips
from trustser.devices import resolve_device
from trustser.end_to_end import EndToEndClassifier
from trustser.heads.model import LayerWeightedHead

REPO = Path(__file__).resolve().parents[1]
DEFAULT_EMODB = REPO.parent / "shared" / "data" / "emodb"


def load_clips(count: int, emodb: Path, seed: int) -> tuple[list[torch.Tensor], str]:
    wav_dir = emodb / "wav"
    if wav_dir.is_dir():
        files = sorted(p for p in wav_dir.glob("*.wav") if len(p.stem) == 7 and p.stem[5] in "NFTW")
        rng = np.random.default_rng(seed)
        chosen = sorted(rng.choice(len(files), size=min(count, len(files)), replace=False))
        return [load_audio(files[i]).waveform for i in chosen], f"EmoDB ({wav_dir})"
    generator = torch.Generator().manual_seed(seed)
    clips = []
    for _ in range(count):
        seconds = 1.5 + 4.5 * float(torch.rand(1, generator=generator))
        n = int(seconds * 16_000)
        t = torch.arange(n) / 16_000
        f0 = 100 + 150 * float(torch.rand(1, generator=generator))
        clips.append(
            (
                0.2 * torch.sin(2 * math.pi * f0 * t) + 0.02 * torch.randn(n, generator=generator)
            ).float()
        )
    return clips, "synthetic tones (EmoDB not found)"


def timed(fn, device: torch.device) -> tuple[float, object]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


def bench(
    backbone_name: str,
    *,
    clips: list[torch.Tensor],
    batch_size: int,
    device: torch.device,
    seed: int,
) -> dict:
    backbone = load_backbone(backbone_name, device=device)
    torch.manual_seed(seed)
    head = LayerWeightedHead(backbone.num_layers, backbone.dim, 4).to(device).eval()
    model = EndToEndClassifier(backbone, head)
    identical = not backbone.masks_padding
    labels = predict_clips(
        model, clips, batch_size=batch_size, identical_only=identical, device=device
    ).argmax(1)
    attack = FGSM(45.0)

    def run(size: int, *, count: int | None = None, seed: int = 0):
        """FGSM on the first ``count`` clips (all when None) in batches of ``size``."""
        chosen = clips if count is None else clips[:count]
        return attack_clips(
            model,
            chosen,
            attack=attack,
            labels=labels[: len(chosen)].tolist(),
            batch_size=size,
            identical_only=identical and size > 1,  # batches of one clip are always identical
            device=device,
            generator=torch.Generator().manual_seed(seed),
        )

    # warm-up (allocator, kernels) on a few clips at both batch sizes
    run(batch_size, count=batch_size)
    run(1, count=2)
    batched_s, batched = timed(lambda: run(batch_size, seed=seed), device)
    single_s, single = timed(lambda: run(1, seed=seed), device)
    agree = float(np.mean(batched.adv_pred == single.adv_pred))
    return {
        "backbone": backbone_name,
        "device": str(device),
        "clips": len(clips),
        "audio_s": sum(c.numel() for c in clips) / 16_000,
        "batch_size": batch_size,
        "identical_only": identical,
        "batched_cps": len(clips) / batched_s,
        "single_cps": len(clips) / single_s,
        "speedup": single_s / batched_s,
        "agree": agree,
        "snr_err": float(np.max(np.abs(batched.snr_db - 45.0))),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", nargs="+", default=["whisper_tiny_en_offline"])
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--emodb", type=Path, default=Path(os.environ.get("EMODB_ROOT", DEFAULT_EMODB))
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    clips, source = load_clips(args.clips, args.emodb, args.seed)
    rows = [
        bench(name, clips=clips, batch_size=args.batch_size, device=device, seed=args.seed)
        for name in args.backbone
    ]
    threads = torch.get_num_threads()
    gpu = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu"
    )
    print("# FGSM @ 45 dB: batched vs batch-size-1 loop\n")
    print(
        f"clips: {source}; device: {device} ({gpu}); torch {torch.__version__}, {threads} threads\n"
    )
    print(
        "| backbone | device | clips | audio s | batch | batched clips/s | batch-1 clips/s | speedup | same adv. preds | max SNR error dB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['backbone']} | {r['device']} | {r['clips']} | {r['audio_s']:.1f} | {r['batch_size']}"
            f"{' (equal lengths)' if r['identical_only'] else ''} | {r['batched_cps']:.2f} | {r['single_cps']:.2f} | "
            f"{r['speedup']:.2f}× | {100 * r['agree']:.0f} % | {r['snr_err']:.4f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
