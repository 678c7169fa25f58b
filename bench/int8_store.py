"""float16 vs int8 stores side by side: bytes per audio-second, write and random-batch read speed.

The features come from an existing float32 store (the backbone's own values, e.g. the one
``bench/int8_profile.py`` writes), read into RAM once, so only the store is timed: for each
round, a float16 and an int8 store are written from the same values (``StoreWriter``: cast or
quantise, shard, ``fsync``, record), then each is read back as random shuffled 64-clip batches
(warm page cache, the access pattern of ``heads fit --data stream``) and with ``group.load()``
(the ``--data memory`` read). Arms alternate within every round, so both see the same load of a
shared machine; the table gives the median of the rounds::

    python bench/int8_store.py --source int8-evidence/float32/cache.zarr --rounds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from trustser.store import StoreWriter, open_store
from trustser.store.info import store_info
from trustser.store.plan import ClipFacts

ARMS = ("float16", "int8")


def write(source, values, manifest, path: Path, dtype: str) -> float:
    provenance = {**source.provenance, "dtype": dtype, "codec": "none"}
    started = time.perf_counter()
    writer = StoreWriter(path, source.name, provenance=provenance)
    clips = {
        u.id: ClipFacts(
            samples=int(source.num_samples([u.id])[0]), frames=int(values[u.id].shape[1])
        )
        for u in manifest.utterances
    }
    for part, unit in writer.pending_units(writer.add_manifest(manifest, clips=clips)):
        buffer = writer.buffer(part, unit)
        for utt in buffer.ids:
            buffer.put(utt, values[utt])
        writer.commit(buffer)
    return time.perf_counter() - started


def read_batches(path: Path, name: str, seed: int) -> tuple[float, int]:
    group = open_store(path).group(name)
    started = time.perf_counter()
    clips = 0
    for batch in group.batches(batch_size=64, shuffle=True, seed=seed):
        clips += len(batch)
    return time.perf_counter() - started, clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", required=True, help="a float32 store")
    parser.add_argument("--group", default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    store = open_store(args.source)
    source = store.group(args.group or store.backbones[0])
    manifest = source.manifest()
    values = {utt: source.frames(utt) for utt in source.ids}
    manifest = manifest.filter(lambda u: u.id in values)
    audio = float(source.num_samples().sum()) / float(source.provenance["sample_rate"])
    float32_bytes = sum(v.nbytes for v in values.values())
    work = Path(args.workdir or tempfile.mkdtemp(prefix="int8-bench-"))
    results: dict[str, dict[str, list[float]]] = {a: {} for a in ARMS}
    sizes = {}
    for round_ in range(args.rounds):
        for arm in ARMS if round_ % 2 == 0 else ARMS[::-1]:
            path = work / f"{arm}-{round_}.zarr"
            seconds = write(source, values, manifest, path, arm)
            results[arm].setdefault("write_s", []).append(seconds)
            (info,) = store_info(path)
            sizes[arm] = info.summary["disk_bytes"]
            read_batches(path, source.name, seed=99)  # warm the page cache
            seconds, _ = read_batches(path, source.name, seed=round_)
            results[arm].setdefault("batches_s", []).append(seconds)
            group = open_store(path).group(source.name)
            started = time.perf_counter()
            memory = group.load()
            results[arm].setdefault("load_s", []).append(time.perf_counter() - started)
            results[arm]["memory_bytes"] = [float(memory.nbytes)]
            del memory
            shutil.rmtree(path)
    table = {
        "clips": len(values),
        "audio_seconds": audio,
        "float32_feature_bytes": float32_bytes,
        "arms": {},
    }
    for arm in ARMS:
        median = {k: float(np.median(v)) for k, v in results[arm].items()}
        table["arms"][arm] = {
            "disk_bytes": sizes[arm],
            "bytes_per_audio_second": sizes[arm] / audio,
            "write_s": median["write_s"],
            "write_audio_s_per_s": audio / median["write_s"],
            "random_batches_s": median["batches_s"],
            "random_batches_clips_per_s": len(values) / median["batches_s"],
            "random_batches_float32_mb_per_s": float32_bytes / 1e6 / median["batches_s"],
            "load_s": median["load_s"],
            "load_stored_mb_per_s": median["memory_bytes"] / 1e6 / median["load_s"],
            "rounds": {k: v for k, v in results[arm].items() if k != "memory_bytes"},
        }
    table["int8_over_float16_bytes"] = sizes["int8"] / sizes["float16"]
    text = json.dumps(table, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
