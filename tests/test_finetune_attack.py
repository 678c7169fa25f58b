"""A fine-tuned variant end to end: attacks reload the base and swap each fold's blocks in; its
cost is its base's. Tiny random Whisper on the toy tone corpus (float16 store, the default)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trustser.attacks.methods import AttackError
from trustser.attacks.runner import run_attack
from trustser.audio import load_audio
from trustser.backbones import load_backbone
from trustser.backbones.top_blocks import with_top_blocks
from trustser.cost import read_cost, run_cost
from trustser.deployed.batches import predict_clips
from trustser.end_to_end import EndToEndClassifier
from trustser.extract import extract
from trustser.heads.estimator import HeadClassifier
from trustser.heads.finetune import FineTunedModel, read_top_blocks, store_top_blocks
from trustser.heads.model import load_head
from trustser.runs import RunLayout
from trustser.store import open_store
from trustser.variants import fit_variant

VARIANT = "tiny:whisper@top1"


@pytest.fixture(scope="module")
def variant_run(tmp_path_factory, toy_manifest_factory):
    root = tmp_path_factory.mktemp("variant-attack")
    manifest = toy_manifest_factory(root / "toy")
    store = root / "cache.zarr"
    extract(manifest, store, "tiny:whisper", device="cpu", progress=False)
    runs = root / "runs"
    fit_variant(
        store,
        "tiny:whisper@top1",
        HeadClassifier(epochs=3, lr=1e-2, device="cpu"),
        tasks=tuple(["emotion"]),
        runs=runs,
        folds="1,2",
        options={"block_lr": 1e-2},
    )
    return {"store": store, "runs": runs}


def test_variant_clean_logits_match_the_cache_path(variant_run):
    group = open_store(variant_run["store"]).group("tiny:whisper")
    provenance = group.provenance
    layout = RunLayout(variant_run["runs"])
    state, _ = read_top_blocks(layout.top_blocks_path(VARIANT, "fold1"))
    head, sidecar = load_head(layout.head_path(VARIANT, "emotion", "fold1"))
    backbone = load_backbone("tiny:whisper", device="cpu", window=provenance["window"])
    model = EndToEndClassifier(with_top_blocks(backbone, state), head)
    top = store_top_blocks(provenance, 1)
    top.load_state_dict(state)
    cache_path = FineTunedModel(top, head).eval()
    manifest = group.manifest()
    ids = sidecar["test_ids"]
    waveforms = [
        load_audio(manifest[i].path, max_seconds=provenance["max_seconds"]).waveform for i in ids
    ]
    logits = predict_clips(model, waveforms, batch_size=3)
    base_model = EndToEndClassifier(backbone, head)
    base_logits = predict_clips(base_model, waveforms, batch_size=3)
    assert np.abs(base_logits - logits).max() > 1e-3  # the swapped blocks are not the base's
    with torch.no_grad():
        for row, utterance_id in enumerate(ids):
            cached = torch.from_numpy(group.frames(utterance_id))[None]  # [1, L, T, D]
            every = torch.ones(1, cached.shape[2], dtype=torch.bool)
            reference = cache_path(cached[:, :2], every)[0]
            live, _ = model.backbone(waveforms[row][None], torch.tensor([waveforms[row].numel()]))
            # tolerance: how far fp16 rounding of the live lower layers moves these logits
            rounding = (
                (cache_path(live[:, :2], every) - cache_path(live[:, :2].half().float(), every))
                .abs()
                .max()
            )
            assert np.abs(logits[row] - reference.numpy()).max() <= 2 * float(rounding) + 1e-4
            assert logits[row].argmax() == int(reference.argmax())


def test_attack_a_variant_writes_its_own_results(variant_run):
    run = run_attack(
        variant_run["store"],
        VARIANT,
        runs=variant_run["runs"],
        method="fgsm",
        snr_db=45,
        device="cpu",
        batch_size=4,
    )
    layout = RunLayout(variant_run["runs"])
    (result,) = run.results
    assert run.backbone == VARIANT
    assert result.out_dir == layout.attack_dir(VARIANT, "fgsm", 45)
    summary = json.loads((result.out_dir / "summary.json").read_text())
    assert summary["backbone"] == VARIANT and summary["num_attacked"] > 0
    assert not layout.attack_dirs("tiny:whisper")  # the base has none of its own


def test_attack_refuses_blocks_of_other_weights(variant_run, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(variant_run["runs"], runs)
    sidecar = RunLayout(runs).top_blocks_path(VARIANT, "fold1").with_suffix(".json")
    data = json.loads(sidecar.read_text())
    data["base_weights_sha256"] = "0" * 64
    sidecar.write_text(json.dumps(data))
    with pytest.raises(AttackError, match="retrain the variant"):
        run_attack(variant_run["store"], VARIANT, runs=runs, folds="1", device="cpu")
    with pytest.raises(AttackError, match="no trained emotion head"):
        run_attack(variant_run["store"], "tiny:whisper@top2", runs=runs, device="cpu")


def test_a_variant_costs_what_its_base_costs(variant_run, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(variant_run["runs"], runs)
    options = {"device": "cpu", "repeats": 2, "batch_size": 2}
    measured, path = run_cost(VARIANT, runs=runs, **options)  # no base cost yet: measured
    assert path == RunLayout(runs).cost_path(VARIANT)
    assert measured.backbone == VARIANT and measured.base_backbone == "tiny:whisper"
    assert measured.variant == "top1" and measured.basis == "measured on the base backbone"
    # With the base's cost.json measured for the same head, the variant's is that, relabelled.
    head_config = measured.head_config
    base, base_path = run_cost("tiny:whisper", runs=runs, head_config=head_config, **options)
    derived, _ = run_cost(VARIANT, runs=runs, **options)
    assert str(base_path) in derived.basis
    for key in ("backbone_params", "head_params", "total_macs", "torch_flops", "latency_ms"):
        assert getattr(derived, key) == getattr(base, key), key
    assert measured.total_macs == base.total_macs  # the computation is the same either way
    written = read_cost(RunLayout(runs).cost_path(VARIANT))
    assert written["backbone"] == VARIANT and written["base_backbone"] == "tiny:whisper"
