"""Run every benchmark in one go and collect their Markdown tables into one file.

Each benchmark is its own process (a fresh interpreter: no warm caches carried from one to the
next), run one after the other so they never compete for the cores. The combined report goes to
``bench/results/<date>-<device>.md`` and to stdout; copy the tables you quote into
``docs/benchmarks.md`` together with the command line.

    make bench                                  # all of them, CPU-sized defaults
    .venv/bin/python bench/run_all.py --only extract heads --device cuda

Benchmarks that need EmoDB run when ``--emodb`` (default ``../shared/data/emodb`` or
``$EMODB_ROOT``) exists and are listed as skipped otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str
    what: str
    emodb: str  # "needs" (skipped without it), "uses" (falls back to synthetic clips), "no"

    @property
    def needs_emodb(self) -> bool:
        return self.emodb == "needs"

    def command(self, args: argparse.Namespace) -> list[str]:
        cmd = [sys.executable, str(HERE / self.script), "--device", args.device]
        if self.emodb != "no":
            cmd += ["--emodb", str(args.emodb)]
        return cmd + SIZES[args.size][self.name]


BENCHMARKS = (
    Benchmark("backbones", "backbones.py", "ms per 6 s clip; Whisper trimmed vs 30 s", "no"),
    Benchmark("extract", "extract.py", "extract ÷ forward, padding, store size, reads", "needs"),
    Benchmark("heads", "heads.py", "heads from the cache vs the reference recipe", "needs"),
    Benchmark("attack", "attack.py", "batched FGSM vs a batch-size-1 loop", "uses"),
    Benchmark("decode", "decode.py", "decode ms per clip at 16–48 kHz: torchaudio vs soxr", "no"),
    Benchmark("bootstrap", "bootstrap.py", "speaker bootstrap of every axis vs a loop", "no"),
    Benchmark("corruptions", "corruptions.py", "ms per 6 s clip of each corruption", "uses"),
    Benchmark("robustness", "robustness.py", "N heads on corrupted copies: cache vs rerun", "uses"),
)

# Arguments per size: "quick" finishes in minutes on 2 CPU cores, "full" is the published run.
SIZES: dict[str, dict[str, list[str]]] = {
    "quick": {
        "backbones": ["--clips", "4", "--backbones", "whisper_tiny_en_offline", "tiny:whisper"],
        "extract": ["--clips", "60", "--backbone", "whisper_tiny_en_offline"],
        "heads": ["--folds", "1", "--skip-reference"],
        "attack": ["--clips", "16"],
        "decode": ["--clips", "4"],
        "bootstrap": ["--clips", "2000", "--loop-replicates", "2"],
        "corruptions": ["--clips", "2", "--repeats", "2"],
        "robustness": ["--heads", "2", "--corruptions", "white_noise,telephone", "--epochs", "2"],
    },
    "full": {
        "backbones": ["--clips", "4"],
        "extract": ["--codec-compare"],
        "heads": ["--folds", "1"],
        "attack": ["--clips", "48"],
        "decode": ["--clips", "8", "--repeats", "3"],
        "bootstrap": [],
        "corruptions": ["--clips", "8", "--repeats", "3"],
        "robustness": ["--heads", "8"],
    },
}


def run(benchmark: Benchmark, args: argparse.Namespace) -> tuple[str, float, int]:
    """``(output, seconds, exit status)`` of one benchmark process."""
    if benchmark.needs_emodb and not Path(args.emodb).is_dir():
        return f"_skipped: EmoDB not found at `{args.emodb}` (set --emodb or EMODB_ROOT)._\n", 0, 0
    start = time.perf_counter()
    done = subprocess.run(benchmark.command(args), capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    text = done.stdout
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        text += f"\n**failed with exit status {done.returncode}:**\n\n```\n{tail}\n```\n"
    return text, seconds, done.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHMARKS])
    parser.add_argument("--size", choices=sorted(SIZES), default="quick")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--emodb", default=os.environ.get("EMODB_ROOT", "../shared/data/emodb"))
    parser.add_argument("--out", type=Path, default=None, help="report path (default: dated)")
    args = parser.parse_args(argv)

    import torch

    from trustser.devices import resolve_device

    device = args.device = resolve_device(args.device).type
    chosen = [b for b in BENCHMARKS if not args.only or b.name in args.only]
    stamp = dt.datetime.now(dt.timezone.utc)
    lines = [
        f"# TrustSER benchmarks, {stamp:%Y-%m-%d %H:%M} UTC",
        "",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"- torch {torch.__version__}, device `{device}`"
        + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else ""),
        f"- size `{args.size}`; each benchmark in its own process, one after the other",
        "",
    ]
    failures = 0
    for benchmark in chosen:
        print(f"[run_all] {benchmark.name}: {benchmark.what} ...", file=sys.stderr, flush=True)
        text, seconds, status = run(benchmark, args)
        failures += status != 0
        command = " ".join(["python", f"bench/{benchmark.script}", *benchmark.command(args)[2:]])
        lines += [
            f"## {benchmark.name}: {benchmark.what}",
            "",
            f"`{command}` ({seconds:.0f} s)",
            "",
        ]
        lines += [text.rstrip(), ""]
    report = "\n".join(lines) + "\n"
    out = args.out or HERE / "results" / f"{stamp:%Y%m%d-%H%M}-{device}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(report)
    print(f"[run_all] report written to {out}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
