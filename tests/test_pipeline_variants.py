"""`trustser run` with fine-tuned variants: every stage per variant, skipped when done, profiled."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from trustser.manifest import write_manifest
from trustser.pipeline import (
    AttackSettings,
    CorpusSource,
    HeadSettings,
    PipelineConfig,
    PipelineConfigError,
    VariantSettings,
    config_from_options,
    load_config,
    run_pipeline,
)
from trustser.runs import RunLayout

VARIANT = "tiny:whisper@top1"


def _config(manifest, out, **changes) -> PipelineConfig:
    settings = {
        "corpora": (CorpusSource("toy", manifest=str(manifest)),),
        "backbones": ("tiny:whisper",),
        "out": out,
        "device": "cpu",
        "heads": HeadSettings(tasks=("emotion", "gender"), epochs=2),
        "attack": AttackSettings(methods=("fgsm",), snr=(45.0,), steps=2),
        "variants": VariantSettings(finetune_top=(1,)),
        **changes,
    }
    return PipelineConfig(**settings)


def _statuses(result) -> dict[tuple[str, str | None], str]:
    return {(e.stage, e.backbone): e.status for e in result.events}


def test_run_with_a_variant_runs_its_stages_then_skips_them(tmp_path, toy_manifest):
    manifest = write_manifest(toy_manifest, tmp_path / "toy.jsonl")
    out = tmp_path / "runs"
    first = run_pipeline(_config(manifest, out), progress=False)
    assert first.exit_code == 0, [e.detail for e in first.failures]
    statuses = _statuses(first)
    for stage in ("heads", "probe", "attack-fgsm", "cost"):
        assert statuses[(stage, "tiny:whisper")] == "done", stage
        assert statuses[(stage, VARIANT)] == "done", stage
    layout = RunLayout(out / "toy")
    assert layout.top_blocks_path(VARIANT, "fold1").is_file()
    assert (layout.head_dir(VARIANT, "gender") / "metrics.json").is_file()
    assert (layout.attack_dir(VARIANT, "fgsm", 45) / "summary.json").is_file()
    cost = json.loads(layout.cost_path(VARIANT).read_text())
    base_cost = json.loads(layout.cost_path("tiny:whisper").read_text())
    assert cost["base_backbone"] == "tiny:whisper" and cost["total_macs"] == base_cost["total_macs"]
    profile = json.loads((out / "toy" / "report" / "profile.json").read_text())
    rows = {b["name"]: b for b in profile["backbones"]}
    assert list(rows) == ["tiny:whisper", VARIANT]  # found beside the store's group
    assert rows[VARIANT]["base"] == "tiny:whisper" and rows[VARIANT]["variant"] == "top1"
    assert (out / "toy" / "report" / "radar_tiny-whisper_variants.png").is_file()

    again = run_pipeline(_config(manifest, out), progress=False)
    statuses = _statuses(again)
    for stage in ("heads", "probe", "attack-fgsm", "cost"):
        assert statuses[(stage, VARIANT)] == "skipped", stage
    # another block learning rate retrains the variant (and what depends on it), not the base;
    # its cost is the base's computation, so that stays
    changed = run_pipeline(
        _config(manifest, out, variants=VariantSettings(finetune_top=(1,), block_lr=1e-3)),
        progress=False,
    )
    statuses = _statuses(changed)
    assert statuses[("heads", "tiny:whisper")] == "skipped"
    for stage in ("heads", "probe", "attack-fgsm"):
        assert statuses[(stage, VARIANT)] == "done", stage
    assert statuses[("cost", VARIANT)] == "skipped"
    saved = json.loads(layout.top_blocks_path(VARIANT, "fold1").with_suffix(".json").read_text())
    assert saved["block_lr"] == 1e-3


def test_variants_from_flags_and_config(tmp_path, toy_manifest):
    manifest = write_manifest(toy_manifest, tmp_path / "toy.jsonl")
    config = config_from_options(manifest=manifest, backbones=["tiny:whisper"], finetune_top=[1, 2])
    assert config.variants.for_backbone("tiny:whisper") == (1, 2)
    assert config_from_options(manifest=manifest, backbones=["x"]).variants.any is False
    toml = tmp_path / "grid.toml"
    toml.write_text(
        'backbones = ["tiny:whisper", "tiny:wav2vec2"]\n'
        '[[corpora]]\nname = "toy"\nmanifest = "toy.jsonl"\n'
        "[variants]\nfinetune_top = [1]\nblock_lr = 3e-5\n"
        '[variants.per_backbone]\n"tiny:wav2vec2" = [2]\n'
    )
    loaded = load_config(toml)
    assert loaded.variants.for_backbone("tiny:whisper") == (1,)
    assert loaded.variants.for_backbone("tiny:wav2vec2") == (2,)
    assert loaded.variants.block_lr == 3e-5
    overridden = config_from_options(config=toml, finetune_top=[2])
    assert overridden.variants.for_backbone("tiny:whisper") == (2,)
    with pytest.raises(PipelineConfigError, match="K >= 1"):
        VariantSettings(finetune_top=(0,))
    with pytest.raises(PipelineConfigError, match="not among the backbones"):
        _config(manifest, tmp_path, variants=VariantSettings(per_backbone={"tiny:apc": (1,)}))
    with pytest.raises(PipelineConfigError, match="train with the emotion head"):
        _config(
            manifest,
            tmp_path,
            heads=HeadSettings(tasks=("gender",)),
            attack=AttackSettings(methods=()),
        )


def test_cli_run_takes_finetune_top(tmp_path):
    from trustser.cli.main import app

    result = CliRunner().invoke(
        app, ["run", "--corpus", "emodb", "--backbone", "x", "--finetune-top", "0"]
    )
    assert result.exit_code == 2  # one --root per --corpus is checked first
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--corpus",
            "emodb",
            "--root",
            str(tmp_path),
            "--backbone",
            "x",
            "--finetune-top",
            "0",
        ],
    )
    assert result.exit_code == 2 and "K >= 1" in result.output
