"""Which layers a verification attacker links speakers from: every layer, a layer range, one layer.

    python bench/linkability_layers.py --store cache.zarr --backbone whisper_tiny_en_offline \\
        [--manifest manifest.jsonl] [--emotion neutral] [--bootstrap 200] [--seed 0]

Runs :func:`trustser.verification.run.verify` (the trials, both attackers and the speaker
bootstrap of ``trustser privacy verify``) on the store group's time-means restricted to: every
layer (what ``trustser privacy verify`` measures), every layer but the input layer (layer 0: for
a Whisper encoder the convolution stem's output, a spectral average over the clip), and the input
layer alone. Each attacker still chooses its layer on the dev speakers, among the layers given.
Prints one Markdown row per (trials, layers, attacker): EER % and its 95 % interval. Why it
exists: docs/results.md's construct check compares an ASR encoder with a speaker encoder, and
this says whether the ASR encoder's linkability comes from its input layer alone.
"""

from __future__ import annotations

import argparse

import numpy as np

from trustser.manifest import read_manifest
from trustser.store import open_group
from trustser.verification.run import verify

_SUBSETS = (
    ("every layer", slice(None)),
    ("layers 1 and up (no input layer)", slice(1, None)),
    ("layer 0 (input layer) alone", slice(0, 1)),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--manifest", help="default: the store group's own")
    parser.add_argument(
        "--emotion",
        action="append",
        help="trials of this emotion only (repeat; every clip is always run too)",
    )
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    group, _ = open_group(args.store, args.backbone)
    manifest = read_manifest(args.manifest) if args.manifest else group.manifest()
    ids = [u.id for u in manifest.utterances]
    means = np.asarray(group.means(ids), dtype=np.float64)
    print(f"{args.backbone}: {len(ids)} clips, {means.shape[1]} layers of {means.shape[2]}\n")
    print("| trials | layers | attacker | EER % | 95 % CI |")
    print("|---|---|---|---:|---|")
    for emotion in [None, *(args.emotion or [])]:
        for name, layers in _SUBSETS:
            report = verify(
                manifest,
                means[:, layers],
                ids=ids,
                emotion=emotion,
                seed=args.seed,
                replicates=args.bootstrap,
            )
            for attacker, figures in report.attackers.items():
                eer = figures["eer"]
                low, high = eer.get("low"), eer.get("high")
                interval = "—" if low is None else f"[{100 * low:.1f}, {100 * high:.1f}]"
                print(
                    f"| {emotion or 'every clip'} | {name} | {attacker} | "
                    f"{100 * eer['value']:.1f} | {interval} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
