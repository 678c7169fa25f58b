"""What an 8-bit cache changes on every trust axis: float32 vs float16 vs int8 stores, same seeds.

For each store dtype this extracts the corpus, fits the emotion, gender and speaker heads, runs
the linear probes, and writes everything under ``<out>/<dtype>/`` (``cache.zarr``, ``runs/``).
It then measures, side by side:

- the bytes per audio-second of each store (and the int8 : float16 ratio);
- the reconstruction error of each layer against the float32 store (relative RMS, largest
  absolute error, and for int8 the largest error in units of the row's scale, which §6.5 of
  docs/store-format.md bounds by 0.5);
- emotion UAR, gender and speaker accuracy (head and probe) and the emotion head's multiclass
  equalized-odds gap across gender (docs/metrics.md);
- the gap between the cache path's clean logits (the head on the stored features) and the
  end-to-end model's (the same head on the backbone's float32 output for the waveform, as the
  attacks run it), for every test clip of every fold.

Heads train with the paper's epochs (emotion 30, gender 10, speaker 30) and no step floor;
emotion on every fold, gender on folds 1–2 and speaker on fold 1 unless ``--all-folds``.
``<out>/<dtype>/summary.json`` holds one store's numbers, ``<out>/summary.json`` the comparison;
docs/results.md quotes it. The dtypes may run as separate processes, then compare::

    python bench/int8_profile.py --root /work/shared/data/emodb --out int8-evidence
    python bench/int8_profile.py --dtypes int8 ...; python bench/int8_profile.py --report-only
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from trustser.audio import load_audio
from trustser.backbones import load_backbone
from trustser.batching import length_mask
from trustser.corpora import prepare_corpus
from trustser.extract import extract
from trustser.heads.estimator import HeadClassifier
from trustser.heads.model import load_head
from trustser.heads.probe import run_probes
from trustser.heads.training import fit_heads
from trustser.metrics.fairness import fairness_report
from trustser.runs import RunLayout
from trustser.store import open_store
from trustser.store.info import store_info

DTYPES = ("float32", "float16", "int8")


def _metrics(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def reconstruction(reference, other, ids) -> list[dict]:
    """Per layer: relative RMS error, largest |error|, and (int8) largest |error| / row scale."""
    layers = reference.num_layers
    squares = np.zeros(layers)
    errors = np.zeros(layers)
    largest = np.zeros(layers)
    in_scales = np.zeros(layers)
    peak_to_rms = np.zeros(layers)
    frames = 0
    for utt in ids:
        x = reference.frames(utt).astype(np.float64)  # [L, T, D]
        y = other.frames(utt).astype(np.float64)
        diff = y - x
        squares += (x**2).sum((1, 2))
        errors += (diff**2).sum((1, 2))
        largest = np.maximum(largest, np.abs(diff).max((1, 2)))
        rms = np.sqrt((x**2).mean(2)) + 1e-12
        peak_to_rms = np.maximum(peak_to_rms, (np.abs(x).max(2) / rms).max(1))
        frames += x.shape[1]
        if other.dtype == "int8":
            part, index = other._done[utt]
            start, count = int(part.offsets[index]), int(part.num_frames[index])
            _, scales = part.read_stored(start, count)
            scale = scales.astype(np.float64).transpose(1, 0)[:, :, None]  # [L, T, 1]
            ratio = np.where(scale > 0, np.abs(diff) / np.where(scale > 0, scale, 1), 0)
            in_scales = np.maximum(in_scales, ratio.max((1, 2)))
    rows = []
    for layer in range(layers):
        row = {
            "layer": layer,
            "relative_rms_error": float(np.sqrt(errors[layer] / squares[layer])),
            "max_abs_error": float(largest[layer]),
            "max_peak_to_rms": float(peak_to_rms[layer]),
        }
        if other.dtype == "int8":
            row["max_error_in_scales"] = float(in_scales[layer])
        rows.append(row)
    return rows


@torch.no_grad()
def logit_gaps(stores: dict, backbone_name: str, manifest, max_seconds: float) -> dict:
    """Cache-path vs end-to-end clean logits for every test clip of every emotion fold."""
    backbone = load_backbone(backbone_name, device="cpu")
    hidden_of: dict[str, torch.Tensor] = {}
    gaps: dict[str, dict[str, list[float]]] = {d: {"max": [], "flip": []} for d in stores}
    group_of = {d: open_store(s["store"]).group(backbone_name) for d, s in stores.items()}
    heads = {}
    for dtype, info in stores.items():
        layout = RunLayout(info["runs"])
        for fold_dir in sorted(layout.head_dir(backbone_name, "emotion").iterdir()):
            if (fold_dir / "head.safetensors").is_file():
                head, sidecar = load_head(fold_dir / "head.safetensors")
                heads[(dtype, fold_dir.name)] = (head.eval(), sidecar)
    folds = sorted({fold for _, fold in heads})
    by_fold = {f.name: f for f in manifest.folds}
    for fold in folds:
        chosen = by_fold[fold]
        test = set(chosen.test)
        ids = [
            u.id
            for u in manifest.utterances
            if getattr(u, chosen.by) in test and all(u.id in g for g in group_of.values())
        ]
        for utt in ids:
            if utt not in hidden_of:
                audio = load_audio(manifest[utt].path, max_seconds=max_seconds)
                wave = audio.waveform.reshape(1, -1)
                lengths = torch.tensor([wave.shape[-1]])
                hidden, _ = backbone(wave, lengths)
                hidden_of[utt] = hidden.float()  # [1, L, T, D]
        for dtype in stores:
            head, _ = heads[(dtype, fold)]
            for utt in ids:
                # EndToEndClassifier.forward is head(backbone(wave)); the backbone's float32
                # output is computed once per clip and shared by the three stores' heads
                live = hidden_of[utt]
                end_to_end = head(live, length_mask(torch.tensor([live.shape[2]]), live.shape[2]))
                cached = torch.from_numpy(group_of[dtype].frames(utt))[None]
                cache = head(cached, length_mask(torch.tensor([cached.shape[2]]), cached.shape[2]))
                gaps[dtype]["max"].append(float((end_to_end - cache).abs().max()))
                gaps[dtype]["flip"].append(float(end_to_end.argmax() != cache.argmax()))
    return {
        dtype: {
            "clips": len(values["max"]),
            "mean_max_abs_logit_gap": float(np.mean(values["max"])),
            "max_abs_logit_gap": float(np.max(values["max"])),
            "argmax_disagreement": float(np.mean(values["flip"])),
        }
        for dtype, values in gaps.items()
    }


EPOCHS = {"emotion": 30, "gender": 10, "speaker": 30}  # the paper's, no step floor
# Folds fitted per task (None: all). Emotion, the axis the goal is stated on, uses every fold;
# on two shared cores the privacy heads run on the first folds only (--all-folds for all).
FOLDS = {"emotion": None, "gender": ["1", "2"], "speaker": ["1"]}


def run_dtype(args, manifest, dtype: str) -> dict:
    """Extract, fit every head, probe; the numbers of one store dtype."""
    where = Path(args.out) / dtype
    store, runs = where / "cache.zarr", where / "runs"
    started = time.perf_counter()
    extract(manifest, store, args.backbone, device="cpu", dtype=dtype, progress=False)
    extracted = time.perf_counter()
    layout = RunLayout(runs)
    for task, epochs in EPOCHS.items():
        if not (layout.head_dir(args.backbone, task) / "metrics.json").is_file():
            fit_heads(
                store,
                args.backbone,
                HeadClassifier(seed=args.seed, device="cpu", epochs=epochs, min_steps=0),
                task=task,
                runs=runs,
                folds=None if args.all_folds else FOLDS[task],
            )
    if not (layout.probe_dir(args.backbone) / "metrics.json").is_file():
        run_probes(store, args.backbone, task="all", runs=runs, seed=args.seed)
    (info,) = store_info(store)
    heads = {
        task: _metrics(layout.head_dir(args.backbone, task) / "metrics.json") for task in EPOCHS
    }
    with (layout.head_dir(args.backbone, "emotion") / "predictions.csv").open() as table:
        rows = list(csv.DictReader(table))
    fairness = fairness_report(
        np.array([r["true"] for r in rows]),
        np.array([r["pred"] for r in rows]),
        np.array([r["gender"] for r in rows]),
        labels=sorted({r["true"] for r in rows}),
    )
    result = {
        "disk_bytes": info.summary["disk_bytes"],
        "audio_seconds": info.summary["audio_seconds"],
        "bytes_per_audio_second": info.summary["disk_bytes"] / info.summary["audio_seconds"],
        "extract_seconds": extracted - started,
        "fit_and_probe_seconds": time.perf_counter() - extracted,
        "heads": {
            task: {
                k: v
                for k, v in m.items()
                if k.startswith("test_") and k.endswith(("_mean", "_std")) and "per_class" not in k
            }
            for task, m in heads.items()
        },
        "probe": _metrics(layout.probe_dir(args.backbone) / "metrics.json"),
        "emotion_equalized_odds": fairness.multiclass_equalized_odds,
    }
    (where / "summary.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def report(args, manifest, dtypes: list[str]) -> dict:
    """Compare the stores the runs wrote: sizes, reconstruction, logit gaps, metric deltas."""
    out = Path(args.out)
    summary: dict = {"backbone": args.backbone, "corpus": args.corpus, "seed": args.seed}
    stores = {}
    for dtype in dtypes:
        summary[dtype] = json.loads((out / dtype / "summary.json").read_text())
        stores[dtype] = {"store": out / dtype / "cache.zarr", "runs": out / dtype / "runs"}
    if "float32" in stores:
        reference = open_store(stores["float32"]["store"]).group(args.backbone)
        summary["reconstruction"] = {
            d: reconstruction(
                reference, open_store(stores[d]["store"]).group(args.backbone), reference.ids
            )
            for d in dtypes
            if d != "float32"
        }
    if "float16" in summary and "int8" in summary:
        summary["int8_over_float16_bytes"] = (
            summary["int8"]["disk_bytes"] / summary["float16"]["disk_bytes"]
        )
    summary["logit_gaps"] = logit_gaps(stores, args.backbone, manifest, args.max_seconds)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="/work/shared/data/emodb")
    parser.add_argument("--corpus", default="emodb")
    parser.add_argument("--backbone", default="whisper_tiny_en_offline")
    parser.add_argument("--out", default="int8-evidence")
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=6.0)
    parser.add_argument(
        "--report-only", action="store_true", help="only compare the stores already written"
    )
    parser.add_argument("--all-folds", action="store_true", help="every task on every fold")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = prepare_corpus(args.corpus, args.root, out / "manifest.jsonl")
    dtypes = args.dtypes.split(",")
    if not args.report_only:
        for dtype in dtypes:
            result = run_dtype(args, manifest, dtype)
            print(dtype, json.dumps(result["heads"]["emotion"]), flush=True)
    if args.report_only or len(dtypes) == len(DTYPES):
        summary = report(args, manifest, dtypes)
        print(json.dumps({k: v for k, v in summary.items() if k not in dtypes}, indent=2))


if __name__ == "__main__":
    main()
