"""Peak resident memory of ``heads fit --data memory`` against the bytes the store holds.

Each arm is a child process that fits the emotion heads of one fold (``fit_heads``, as
``trustser heads fit --data memory`` does) and the parent reads the child's peak resident set
(``wait4``'s ``ru_maxrss``). The arms, for each store dtype (float16 and int8):

- **full**: the whole store;
- **tiny**: a store of 12 clips per speaker copied from it, byte for byte, at evenly spaced
  ranks of each speaker's clip lengths (so its training batches — 64 of fold 1's 72 training
  clips — have the full store's lengths): its peak less its own stored bytes is the process's
  **baseline** (Python, torch, the head, one batch's widened frames and activations);
- **stream**: the whole store read from disk every epoch (``--data stream``), for reference.

The bound checked is ``peak(full) ≤ 1.3 × stored(full) + baseline``, where ``stored`` is what the
features of the needed clips take in the stored dtype (frames, plus scales for int8)::

    python bench/int8_memory.py --store int8-evidence/float16/cache.zarr \\
        --store int8-evidence/int8/cache.zarr
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from trustser.store import StoreWriter, open_store
from trustser.store.plan import ClipFacts

CHILD = r"""
import json, sys
from trustser.heads.estimator import HeadClassifier
from trustser.heads.training import choose_data_mode, fit_heads
from trustser.heads.tasks import build_task, select_splits
from trustser.store import open_store
store, runs, data, out, epochs, batch = sys.argv[1:7]
group = open_store(store).group(open_store(store).backbones[0])
task = build_task("emotion", group.manifest(), seed=0)
needed = list(dict.fromkeys(i for s in select_splits(task, "1") for i in (*s.train, *s.dev, *s.test)))
_, stored = choose_data_mode(group, needed, mode="memory")
estimator = HeadClassifier(epochs=int(epochs), device="cpu", seed=0, batch_size=int(batch))
result = fit_heads(store, None, estimator, task="emotion", runs=runs, folds="1", data=data)
json.dump({"stored": stored, "clips": len(needed), "mode": result.data_mode,
           "uar": result.tasks[0].metrics["test_uar_mean"]}, open(out, "w"))
"""


def tiny_copy(path: Path, out: Path, per_speaker: int) -> Path:
    """A store of ``per_speaker`` clips of each speaker, the stored bytes copied exactly."""
    group = open_store(path).group(open_store(path).backbones[0])
    manifest = group.manifest()
    # Clips at evenly spaced ranks of each speaker's lengths: the tiny store's batches have the
    # full store's clip lengths, so its baseline holds the same per-batch activations.
    by_speaker: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for utterance in manifest.utterances:
        frames = int(group.num_frames([utterance.id])[0])
        by_speaker[utterance.speaker].append((frames, utterance.id))
    keep: set[str] = set()
    for clips in by_speaker.values():
        clips.sort()
        picks = np.linspace(0, len(clips) - 1, min(per_speaker, len(clips))).round().astype(int)
        keep.update(clips[i][1] for i in picks)
    subset = manifest.filter(lambda u: u.id in keep)
    memory = group.load(sorted(keep))
    writer = StoreWriter(out, group.name, provenance=group.provenance)
    clips = {
        u.id: ClipFacts(
            samples=int(group.num_samples([u.id])[0]), frames=int(group.num_frames([u.id])[0])
        )
        for u in subset.utterances
    }
    for part, unit in writer.pending_units(writer.add_manifest(subset, clips=clips)):
        buffer = writer.buffer(part, unit)
        for utt in buffer.ids:
            i = memory._index[utt]
            start, end = int(memory.offsets[i]), int(memory.offsets[i + 1])
            scales = None if memory.scales is None else memory.scales[start:end]
            buffer.put_rows(
                utt,
                memory.rows[start:end],
                memory.means([utt])[0],
                peak=0.0,
                scales=scales,
            )
        writer.commit(buffer)
    return out


def peak_of(store: Path, data: str, epochs: int, work: Path, batch_size: int) -> dict:
    out = work / f"{store.parent.name}-{store.name}-{data}.json"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(store),
            str(work / "runs"),
            data,
            str(out),
            str(epochs),
            str(batch_size),
        ],
        env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
    )
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"the child for {store} ({data}) failed with status {status}")
    result = json.loads(out.read_text())
    result["peak_rss_bytes"] = usage.ru_maxrss * 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", action="append", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--per-speaker", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="int8-memory-"))
    rows = {}
    for index, store in enumerate(map(Path, args.store)):
        dtype = open_store(store).group(open_store(store).backbones[0]).dtype
        tiny = tiny_copy(store, work / f"tiny-{index}.zarr", args.per_speaker)
        small = peak_of(tiny, "memory", args.epochs, work, args.batch_size)
        full = peak_of(store, "memory", args.epochs, work, args.batch_size)
        stream = peak_of(store, "stream", args.epochs, work, args.batch_size)
        baseline = small["peak_rss_bytes"] - small["stored"]
        rows[dtype] = {
            "store": str(store),
            "batch_size": args.batch_size,
            "clips": full["clips"],
            "stored_bytes": full["stored"],
            "peak_memory": full["peak_rss_bytes"],
            "peak_stream": stream["peak_rss_bytes"],
            "tiny_clips": small["clips"],
            "tiny_stored_bytes": small["stored"],
            "tiny_peak": small["peak_rss_bytes"],
            "baseline": baseline,
            "excess_over_stored": (full["peak_rss_bytes"] - baseline) / full["stored"],
            "bound_1_3_holds": full["peak_rss_bytes"] <= 1.3 * full["stored"] + baseline,
            "uar_memory": full["uar"],
            "uar_stream": stream["uar"],
        }
        print(dtype, json.dumps(rows[dtype]), flush=True)
    text = json.dumps(rows, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
