"""A fine-tuned variant end to end: attacks reload the base and swap each fold's blocks in; its
cost is its base's. Tiny random Whisper on the toy tone corpus (float16 store, the default)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile as sf
import torch

from trustser.attacks import functional as AF
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


@dataclass(frozen=True)
class _Fold:
    """A fold of the variant as the test rebuilds it by hand: its end-to-end model (the base
    with the fold's blocks swapped in), the base's with the same head, and the test clips."""

    model: EndToEndClassifier
    base_model: EndToEndClassifier
    top_blocks: dict
    head: torch.nn.Module
    labels: tuple[str, ...]
    ids: list[str]
    waveforms: list[torch.Tensor]


def _fold(variant_run, fold: str) -> _Fold:
    group = open_store(variant_run["store"]).group("tiny:whisper")
    provenance, manifest = group.provenance, group.manifest()
    layout = RunLayout(variant_run["runs"])
    state, _ = read_top_blocks(layout.top_blocks_path(VARIANT, fold))
    head, sidecar = load_head(layout.head_path(VARIANT, "emotion", fold))
    backbone = load_backbone("tiny:whisper", device="cpu", window=provenance["window"])
    ids = list(sidecar["test_ids"])
    return _Fold(
        model=EndToEndClassifier(with_top_blocks(backbone, state), head),
        base_model=EndToEndClassifier(backbone, head),
        top_blocks=state,
        head=head,
        labels=tuple(sidecar["labels"]),
        ids=ids,
        waveforms=[
            load_audio(manifest[i].path, max_seconds=provenance["max_seconds"]).waveform
            for i in ids
        ],
    )


def test_variant_clean_logits_match_the_cache_path(variant_run):
    group = open_store(variant_run["store"]).group("tiny:whisper")
    provenance = group.provenance
    fold = _fold(variant_run, "fold1")
    model, ids, waveforms = fold.model, fold.ids, fold.waveforms
    top = store_top_blocks(provenance, 1)
    top.load_state_dict(fold.top_blocks)
    cache_path = FineTunedModel(top, fold.head).eval()
    logits = predict_clips(model, waveforms, batch_size=3)
    base_logits = predict_clips(fold.base_model, waveforms, batch_size=3)
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


def test_attacking_a_variant_differentiates_its_own_blocks(variant_run):
    """The attack classifies and differentiates the variant's model (its blocks swapped in), not
    the base's: every saved adversarial clip is FGSM on the variant's model, recomputed here, and
    the base's gradient would have given other clips; results land under the variant's name."""
    run = run_attack(
        variant_run["store"],
        VARIANT,
        runs=variant_run["runs"],
        method="fgsm",
        snr_db=45,
        folds="1",
        device="cpu",
        batch_size=1,  # clip by clip, as recomputed below
        save_audio=1000,
    )
    layout = RunLayout(variant_run["runs"])
    (result,) = run.results
    assert run.backbone == VARIANT and result.out_dir == layout.attack_dir(VARIANT, "fgsm", 45)
    assert not layout.attack_dirs("tiny:whisper")  # the base has none of its own
    fold = _fold(variant_run, "fold1")
    with open(result.out_dir / "clips.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    base_differs = []
    for row in rows:
        clean = fold.waveforms[fold.ids.index(row["id"])][None]
        mask = torch.ones_like(clean, dtype=torch.bool)
        label = torch.tensor([fold.labels.index(row["true"])])
        epsilon = AF.snr_epsilon(clean, mask, 45.0)
        ours = AF.fgsm(fold.model, clean, labels=label, mask=mask, epsilon=epsilon)
        saved, _ = sf.read(result.out_dir / "audio" / f"{row['id']}.adv.wav", dtype="float32")
        assert torch.allclose(ours[0], torch.from_numpy(saved), atol=1e-7), row["id"]
        base = AF.fgsm(fold.base_model, clean, labels=label, mask=mask, epsilon=epsilon)
        base_differs.append(not torch.equal(base, ours))
        with torch.no_grad():
            lengths = torch.tensor([clean.shape[1]])
            clean_pred = int(fold.model(clean, lengths).argmax())
            adv_pred = int(fold.model(ours, lengths).argmax())
        assert (fold.labels[clean_pred], fold.labels[adv_pred]) == (
            row["clean_pred"],
            row["adv_pred"],
        )
    assert any(base_differs)  # the base's gradient points elsewhere: the check can fail


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
