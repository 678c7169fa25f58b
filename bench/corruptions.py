"""Per-clip cost of every corruption of the robustness suite on 6 s clips.

    python bench/corruptions.py --clips 4 --repeats 3

Each clip is 6 s of EmoDB speech (test clips of one speaker, joined) when ``--emodb`` exists,
else a synthetic harmonic clip. Each cell is the median over the clips of the fastest of
``--repeats`` runs of ``CorruptionCase.apply`` (contention on a shared machine only ever adds
time). Babble's talkers are loaded once beforehand (their decoding is listed apart), and each
codec setting's one-off delay probe runs before timing (listed apart too). The transforms are
NumPy/SciPy/libsndfile work on the CPU; ``--device`` is accepted (bench/run_all.py passes it)
and ignored.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _timing import fastest  # bench/ is on sys.path when a script runs

from trustser.corruptions import suite
from trustser.corruptions.codec import codec_delay

SECONDS = 6.0
RATE = 16_000


def _synthetic(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(SECONDS * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(150 + 30 * np.sin(2 * np.pi * 0.7 * t)) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25)) * (1 + np.sin(2 * np.pi * 4 * t))
    return (0.05 * voiced + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def _clips_and_talkers(emodb: Path, count: int):
    """``count`` 6 s clips and a babble pool, from EmoDB when present."""
    from trustser.corruptions.babble import Talker

    if not (emodb / "wav").is_dir():
        clips = [(f"synthetic{i}", "synthetic", _synthetic(i)) for i in range(count)]
        talkers = [Talker(f"t{i}", f"s{i}", _synthetic(100 + i)[: 3 * RATE]) for i in range(8)]
        return clips, talkers, 0.0, "synthetic harmonic clips"
    from trustser.audio import load_audio
    from trustser.corpora import emodb as corpus
    from trustser.corruptions.babble_pool import BabblePools, load_talkers

    manifest = corpus.prepare(emodb)
    fold = manifest.folds[0]
    test = manifest.split(fold)["test"]
    clips = []
    for speaker in sorted({u.speaker for u in test}):
        audio = [load_audio(u.path).waveform.numpy() for u in test if u.speaker == speaker]
        joined = np.concatenate(audio)
        for i in range(len(joined) // int(SECONDS * RATE)):
            piece = joined[i * int(SECONDS * RATE) : (i + 1) * int(SECONDS * RATE)]
            clips.append((f"{speaker}-{i}", speaker, piece))
    clips = clips[:count]
    start = time.perf_counter()
    pools = BabblePools(manifest, fold=fold, seed=0)
    talkers = load_talkers(pools.pool(test[0].id))
    setup = time.perf_counter() - start
    return clips, talkers, setup, f"EmoDB speech ({emodb}), fold {fold.name} test speakers"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=4, help="6 s clips to time")
    parser.add_argument("--repeats", type=int, default=3, help="runs per clip (fastest kept)")
    parser.add_argument("--emodb", type=Path, default=Path("../shared/data/emodb"))
    parser.add_argument("--device", default="cpu", help="ignored: the transforms run on the CPU")
    args = parser.parse_args(argv)

    clips, talkers, setup, source = _clips_and_talkers(args.emodb, args.clips)
    cases = suite()
    probes = {}
    for case in cases:
        params = case.severity.params
        if "codec" in params:
            key = (params["codec"], params["bitrate_kbps"])
            start = time.perf_counter()
            codec_delay(*key)
            probes[case.name] = time.perf_counter() - start
    print(
        f"{len(clips)} clips of {SECONDS:g} s ({source}); fastest of {args.repeats} per clip, "
        f"median over clips; {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}\n"
    )
    print("| case | severity | ms per 6 s clip | one-off ms |")
    print("|---|---|---:|---:|")
    total = 0.0
    for case in cases:
        times = []
        for clip_id, speaker, waveform in clips:
            seed = case.clip_seed(0, clip_id)
            times.append(
                fastest(
                    lambda c=case, w=waveform, s=seed, sp=speaker: c.apply(
                        w, s, speaker=sp, talkers=talkers
                    ),
                    args.repeats,
                )
            )
        median = statistics.median(times) * 1000
        total += median
        one_off = f"{probes[case.name] * 1000:.0f} (delay probe)" if case.name in probes else ""
        if case.corruption.needs_talkers and setup:
            one_off = f"{setup * 1000:.0f} (pool + 8 talkers decoded)"
        print(f"| `{case.name}` | {case.severity.label} | {median:.1f} | {one_off} |")
    print(f"| all {len(cases)} cases | | {total:.0f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
