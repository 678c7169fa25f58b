"""Variants in the profile: rows of their own labelled with their base, the frozen-vs-variant
overlay (the paper's Fig. 4), training cost beside inference cost, and rankings."""

from __future__ import annotations

import json

import pytest

from trustser import variants
from trustser.profile import collect_profile, write_profile
from trustser.profile.collect import with_variants
from trustser.profile.radar import draw_radar_charts
from trustser.profile.recommend import recommend
from trustser.profile.report import render_report
from trustser.profile.tables import profile_rows, profile_to_markdown
from trustser.runs import ModelName, RunLayout, read_json, write_json
from trustser.variants.finetune import KIND as FINETUNED

BASE, VARIANT = "tiny:whisper", "tiny:whisper@top1"


@pytest.fixture
def runs(tmp_path, write_fake_runs):
    """A frozen backbone and its top-1 variant (a little worse, less robust), as the stages
    write them, plus what the heads record about training."""
    write_fake_runs(tmp_path, BASE, accuracy=0.8, asr=0.6)
    write_fake_runs(tmp_path, VARIANT, seed=1, accuracy=0.7, asr=0.8)
    layout = RunLayout(tmp_path)
    for name, trainable, seconds, variant in (
        (BASE, 37767, 20.0, None),
        (VARIANT, 1812615, 600.0, {"trained": "top blocks + head", "k": 1, "block_lr": 2e-5}),
    ):
        path = layout.head_dir(name, "emotion") / "metrics.json"
        metrics = read_json(path)
        metrics.update(trainable_parameters=trainable, fit_seconds_total=seconds)
        if variant:
            metrics["variant"] = {**variant, "name": name, "base_backbone": BASE}
        write_json(path, metrics)
    return tmp_path


def test_variant_names_parse_and_build_generically():
    name = ModelName.parse("whisper_tiny_en_offline@top1")
    assert (name.base, name.tag, name.kind) == ("whisper_tiny_en_offline", "top1", "top")
    assert variants.parse(name).params == {"k": 1}
    assert str(name) == "whisper_tiny_en_offline@top1" and name.directory == str(name)
    assert ModelName.parse("tiny:whisper@top2").directory == "tiny-whisper@top2"
    # an hf: revision is not a variant kind: the name stays a base (its variants still parse)
    assert not ModelName.parse("hf:org/model@main").is_variant
    assert ModelName.parse("hf:org/model@main@top3").base == "hf:org/model@main"
    assert FINETUNED.variant("tiny:whisper", k=2).name == "tiny:whisper@top2"
    with pytest.raises(ValueError, match="K >= 1"):
        variants.parse("tiny:whisper@top0")
    layout = RunLayout("runs")
    assert layout.backbone_dir(VARIANT) == layout.backbone_dir("tiny-whisper@top1")
    assert layout.top_blocks_path(VARIANT, "fold1").parts[-4:] == (
        "tiny-whisper@top1",
        "emotion",
        "fold1",
        "top_blocks.safetensors",
    )


def test_variants_are_rows_labelled_with_their_base(runs):
    assert RunLayout(runs).variants(BASE) == ["tiny-whisper@top1"]
    assert with_variants(RunLayout(runs), [BASE]) == [BASE, "tiny-whisper@top1"]
    profile = collect_profile(runs)
    base, variant = profile.backbones
    assert (base.name, base.is_variant, base.base) == (BASE, False, None)
    assert (variant.name, variant.base, variant.variant) == (VARIANT, BASE, "top1")
    assert variant.directory == "tiny-whisper@top1"
    assert variant.variant_description == "top 1 block fine-tuned"
    assert profile.variants_of(base) == [variant] and profile.get("tiny-whisper@top1") is variant
    assert variant.training["trainable_parameters"] == 1812615
    assert variant.training["trained"] == "top blocks + head" and variant.training["k"] == 1
    assert base.training["trained"] == "head only (backbone frozen)"
    assert variant.scores["performance"] < base.scores["performance"]
    assert variant.missing == {}
    row = profile_rows(profile)[1]
    assert row["variant_of"] == BASE and row["variant"] == "top1"
    assert row["trainable_params"] == 1812615 and row["train_seconds"] == 600.0
    markdown = profile_to_markdown(profile)
    assert "## Training cost" in markdown and "top 1 block fine-tuned (tiny:whisper)" in markdown
    # Written and read back, the variant keeps its labels.
    files = write_profile(profile, runs / "report", charts=False)
    saved = json.loads(files["json"].read_text())["backbones"][1]
    assert saved["base"] == BASE and saved["variant"] == "top1"


def test_frozen_and_variant_overlaid(runs, tmp_path):
    profile = collect_profile(runs)
    charts = draw_radar_charts(profile)
    (overlay,) = charts.variants
    assert overlay.stem == "radar_tiny-whisper_variants"
    assert overlay.title == "tiny:whisper: frozen vs its variants"
    legend = [t.get_text() for t in overlay.figure.axes[0].get_legend().get_texts()]
    assert legend == [BASE, f"{VARIANT} (top 1 block fine-tuned)"]
    files = write_profile(profile, tmp_path / "report")
    assert files["radar_tiny-whisper_variants.png"].is_file()
    assert files["radar_tiny-whisper_variants.svg"].is_file()
    page = render_report(profile, charts=charts)
    assert "frozen vs its variants" in page and "Training cost" in page


def test_recommend_ranks_variants_with_the_backbones(runs):
    profile = collect_profile(runs)
    result = recommend(profile, scenario="critical")
    assert {r.backbone for r in result.ranking} == {BASE, VARIANT}
    ranked = {r.backbone: r for r in result.ranking}
    assert ranked[VARIANT].reasons[0] == "variant of tiny:whisper: top 1 block fine-tuned"
    assert result.best == BASE  # better UAR and lower ASR on a safety-heavy scenario
