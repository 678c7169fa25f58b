"""Decode ms per clip at common corpus sample rates: torchaudio's resampler vs soxr, side by side.

    python bench/decode.py --clips 8 --seconds 3

Writes ``--clips`` WAV files of ``--seconds`` of noise at each rate (16, 22.05, 24.414, 44.1 and
48 kHz; TESS is 24 414 Hz) and decodes each to 16 kHz mono float32 two ways, in one run:

- *torchaudio*: read with soundfile, ``torchaudio.transforms.Resample`` (built once per rate and
  reused, as the loader did before soxr);
- *soxr*: ``trustser.audio.load_audio`` as extraction and attacks call it.

Each cell is the median over the clips of the fastest of ``--repeats`` decodes (contention on a
shared machine only ever adds time). The last columns divide each rate's time by the 48 kHz time
of the same arm: the goal is every rate within 2× of 48 kHz. Decoding is CPU work; ``--device``
is accepted (bench/run_all.py passes it) and ignored.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from _timing import fastest  # bench/ is on sys.path when a script runs

from trustser.audio import TARGET_SAMPLE_RATE, expected_num_samples, load_audio

RATES = (16_000, 22_050, 24_414, 44_100, 48_000)


def _torchaudio_decode(path: Path, resamplers: dict) -> torch.Tensor:
    import torchaudio

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1, dtype=np.float32)))
    if rate != TARGET_SAMPLE_RATE:
        if rate not in resamplers:
            resamplers[rate] = torchaudio.transforms.Resample(rate, TARGET_SAMPLE_RATE)
        mono = resamplers[rate](mono)
    return mono


def _soxr_decode(path: Path) -> torch.Tensor:
    return load_audio(path, max_seconds=None, warn=False).waveform


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=8, help="clips per rate")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each clip")
    parser.add_argument("--repeats", type=int, default=2, help="decodes per clip (fastest kept)")
    parser.add_argument("--device", default="cpu", help="ignored: decoding runs on the CPU")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        resamplers: dict = {}
        for rate in RATES:
            paths = []
            for i in range(args.clips):
                path = Path(tmp) / f"{rate}-{i}.wav"
                frames = int(args.seconds * rate)
                sf.write(str(path), (0.1 * rng.standard_normal(frames)).astype(np.float32), rate)
                paths.append(path)
            # Warm-up (filter construction, imports) outside the timings.
            _torchaudio_decode(paths[0], resamplers)
            _soxr_decode(paths[0])
            times = {"torchaudio": [], "soxr": []}
            for path in paths:
                old = _torchaudio_decode(path, resamplers)
                new = _soxr_decode(path)
                expected = expected_num_samples(sf.info(str(path)).frames, rate, max_seconds=None)
                if new.numel() != expected:
                    raise SystemExit(f"{path}: soxr gave {new.numel()} samples, planned {expected}")
                if abs(old.numel() - new.numel()) > 1:
                    raise SystemExit(f"{path}: lengths {old.numel()} vs {new.numel()}")
                times["torchaudio"].append(
                    fastest(lambda p=path: _torchaudio_decode(p, resamplers), args.repeats)
                )
                times["soxr"].append(fastest(lambda p=path: _soxr_decode(p), args.repeats))
            rows[rate] = {arm: 1000 * statistics.median(v) for arm, v in times.items()}

    print(
        f"decode to 16 kHz, {args.clips} clips of {args.seconds:g} s per rate, "
        f"{platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, Python {sys.version.split()[0]}\n"
    )
    print(
        "| rate Hz | torchaudio ms/clip | soxr ms/clip | speed-up | torchaudio ÷ its 48 kHz | soxr ÷ its 48 kHz |"
    )
    print("|---|---|---|---|---|---|")
    base = rows[48_000]
    for rate in RATES:
        old, new = rows[rate]["torchaudio"], rows[rate]["soxr"]
        print(
            f"| {rate} | {old:.2f} | {new:.2f} | {old / new:.1f}× | "
            f"{old / base['torchaudio']:.2f} | {new / base['soxr']:.2f} |"
        )
    worst = max(rows[r]["soxr"] / base["soxr"] for r in RATES)
    print(f"\nworst soxr rate ÷ 48 kHz: {worst:.2f} (goal ≤ 2)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
