"""`trustser run` with a [mitigate] section: each mitigation a variant with its stages, skipped
when done, and profiled beside its backbone."""

from __future__ import annotations

import json

import pytest

from trustser.manifest import write_manifest
from trustser.pipeline import (
    AttackSettings,
    CorpusSource,
    HeadSettings,
    MitigateSettings,
    PipelineConfig,
    PipelineConfigError,
    load_config,
    run_pipeline,
)
from trustser.runs import RunLayout

BASE = "tiny:whisper"
VARIANTS = (
    f"{BASE}@privacy-l0",  # the control, fitted whenever privacy variants are
    f"{BASE}@privacy-l1",
    f"{BASE}@fair-post",
    f"{BASE}@fair-reweight",
    f"{BASE}@smooth-s30-n2",
)


def _config(manifest, out) -> PipelineConfig:
    return PipelineConfig(
        corpora=(CorpusSource("toy", manifest=str(manifest)),),
        backbones=(BASE,),
        out=out,
        device="cpu",
        # patience 0: the attackers' convergence is tested in test_heads.py; here it only costs time
        heads=HeadSettings(tasks=("emotion", "gender", "speaker"), epochs=2, patience=0),
        attack=AttackSettings(methods=("pgd",), snr=(30.0,), steps=2),
        mitigate=MitigateSettings(
            privacy=(1.0,),
            fairness=("post", "reweight"),
            smoothing_snr=(30.0,),
            smoothing_samples=2,
            eot_samples=2,
        ),
    )


def test_run_with_mitigations_runs_each_then_skips_it(tmp_path, toy_manifest):
    manifest = write_manifest(toy_manifest, tmp_path / "toy.jsonl")
    out = tmp_path / "runs"
    first = run_pipeline(_config(manifest, out), progress=False)
    assert first.exit_code == 0, [e.detail for e in first.failures]
    statuses = {(e.stage, e.backbone): e.status for e in first.events}
    for variant in VARIANTS:
        assert statuses[("mitigate", variant)] == "done", variant
        assert statuses[("cost", variant)] == "done", variant
    assert ("attack-pgd", f"{BASE}@fair-post") not in statuses  # needs gender at inference
    layout = RunLayout(out / "toy")
    smoothed = f"{BASE}@smooth-s30-n2"
    summary = json.loads((layout.attack_dir(smoothed, "pgd", 30) / "summary.json").read_text())
    assert summary["settings"]["eot_samples"] == 2 and "plain_attack" in summary["settings"]
    assert json.loads(layout.cost_path(smoothed).read_text())["inference_passes"] == 2
    profile = json.loads((out / "toy" / "report" / "profile.json").read_text())
    names = [b["name"] for b in profile["backbones"]]
    assert set(VARIANTS) <= set(names)
    markdown = (out / "toy" / "report" / "profile.md").read_text()
    section = markdown.split("## Mitigations", 1)[1]
    for variant in VARIANTS:
        assert f"| {variant} |" in section, variant
    assert "| tiny:whisper@fair-post | per-gender logit offsets fitted on dev | yes |" in section
    assert "<h2>Mitigations</h2>" in (out / "toy" / "report" / "report.html").read_text()
    # λ = 1 against its control: the change of each axis's raw figure, as profile.json has them
    rows = {b["name"]: b for b in profile["backbones"]}
    l1, l0 = rows[f"{BASE}@privacy-l1"], rows[f"{BASE}@privacy-l0"]
    control = section.split("### Against the control", 1)[1]
    line = next(x for x in control.splitlines() if x.startswith(f"| {BASE}@privacy-l1 |"))
    change = 100 * (l1["raw"]["performance"] - l0["raw"]["performance"])
    assert line.split(" | ")[1] == f"{BASE}@privacy-l0"
    assert line.split(" | ")[2].startswith(f"{change:+.1f} (")
    assert l1["dev"]["uar"] is not None and "attacker_accuracy" in l1["dev"]
    again = run_pipeline(_config(manifest, out), progress=False)
    statuses = {(e.stage, e.backbone): e.status for e in again.events}
    for variant in VARIANTS:
        assert statuses[("mitigate", variant)] == "skipped", variant


def test_mitigate_section_in_the_config(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(
        'backbones = ["tiny:whisper"]\n[[corpora]]\nname = "toy"\nmanifest = "toy.jsonl"\n'
        '[mitigate]\nprivacy = [0.1, 0.3, 1]\nfairness = ["post", "reweight"]\n'
        'smoothing_snr = [30, 20]\nsmoothing_samples = 8\nerasure = ["gender"]\n'
    )
    config = load_config(path)
    assert config.mitigate.privacy == (0.1, 0.3, 1)
    assert config.mitigate.erasure == ("gender",)
    assert config.mitigate.smoothing_snr == (30, 20)
    path.write_text(path.read_text().replace('"reweight"', '"pre"'))
    with pytest.raises(ValueError, match="fairness"):
        load_config(path)
    with pytest.raises(PipelineConfigError):
        MitigateSettings(smoothing_samples=0)
    with pytest.raises(ValueError, match=r"mitigate\.erasure"):
        MitigateSettings(erasure=("speaker",))
