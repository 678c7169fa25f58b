"""The embedded default: a synthetic corpus and a real offline model, profiled end to end.

``make demo`` calls :func:`run_demo`: synthesise the espeak-ng corpus (docs/synthetic-corpus.md),
then run the whole pipeline with OpenAI Whisper tiny.en from the ``offline`` extra — no network,
about seven minutes on two CPU cores. It is a smoke test of the toolkit, not a benchmark.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trustser.pipeline import (
    AttackSettings,
    CorpusSource,
    HeadSettings,
    Notify,
    PipelineConfig,
    PipelineResult,
    run_pipeline,
)

__all__ = ["DEMO_BACKBONE", "DEMO_MIN_STEPS", "demo_config", "run_demo"]

DEMO_BACKBONE = "whisper_tiny_en_offline"
DEMO_MIN_STEPS = 150


def demo_config(
    out: str | os.PathLike, manifest: str | os.PathLike, *, device: str = "auto", seed: int = 0
) -> PipelineConfig:
    """The demo's settings: paper defaults (with a step floor of :data:`DEMO_MIN_STEPS`),
    FGSM/PGD/noise at 45 dB, offline Whisper tiny.en."""
    return PipelineConfig(
        corpora=(CorpusSource(name="synth", manifest=str(manifest)),),
        backbones=(DEMO_BACKBONE,),
        out=Path(out),
        device=device,
        seed=seed,
        # Half the default step floor keeps the demo's heads near two minutes on 2 CPU cores.
        heads=HeadSettings(min_steps=DEMO_MIN_STEPS),
        attack=AttackSettings(methods=("fgsm", "pgd", "noise"), snr=(45.0,), save_audio=2),
    )


def run_demo(
    out: str | os.PathLike = "runs/demo",
    *,
    device: str = "auto",
    seed: int = 0,
    size: str = "default",
    notify: Notify | None = None,
    synth_progress: Callable[[int, int], None] | None = None,
    attack_progress: Callable[[Any], None] | None = None,
) -> PipelineResult:
    """Synthesise (or reuse) the demo corpus under ``out/corpus`` and run the pipeline.

    ``size`` is the corpus preset (``default``: 400 clips; ``tiny``: 48, a quick smoke test).
    ``synth_progress(done, total)`` follows the synthesis clip by clip; ``notify`` the stages;
    ``attack_progress`` the attacks' clip passes (see :func:`~trustser.pipeline.run_pipeline`).
    """
    from trustser.corpora.synth import MANIFEST_NAME, synthesize

    out = Path(out)
    corpus_dir = out / "corpus"
    manifest_path = corpus_dir / MANIFEST_NAME
    synthesize(corpus_dir, size=size, seed=seed, progress=synth_progress)
    return run_pipeline(
        demo_config(out, manifest_path, device=device, seed=seed),
        notify=notify,
        attack_progress=attack_progress,
    )
