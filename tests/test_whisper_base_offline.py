"""The real Whisper base through the stages, kept small: extraction of a few short clips, heads,
FGSM, PGD and noise at 45 dB, its cost, the fine-tuned top block and a fairness mitigation, each
attacked end to end. Skipped when its two packages are not installed.

The contract, the transcription check and the top blocks from its store are in test_ct2.py and
test_top_blocks_store.py; the join of its parts in test_split_weights.py.
"""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest

from trustser.backbones.split_weights import WHISPER_BASE

BACKBONE = "whisper_base_offline"
if any(importlib.util.find_spec(part.module) is None for part in WHISPER_BASE.parts):
    pytest.skip(f"{BACKBONE} needs `{WHISPER_BASE.install_command()}`", allow_module_level=True)


def test_extract_heads_fgsm_and_cost_on_whisper_base(tmp_path, toy_manifest_factory):
    from trustser.attacks.runner import run_attack
    from trustser.cost import measure_cost
    from trustser.extract import extract
    from trustser.heads.training import default_estimator, fit_heads
    from trustser.runs import RunLayout
    from trustser.store import open_store

    # 6 speakers × 4 emotions × 1 take of 0.3–0.5 s tones; speaker folds of one woman + one man
    manifest = toy_manifest_factory(tmp_path / "toy", takes=1)
    store = tmp_path / "cache.zarr"
    summary = extract(manifest, store, BACKBONE, device="cpu", progress=False)
    assert summary.complete and summary.exit_code == 0
    group = open_store(store).group(BACKBONE)
    assert (group.num_layers, group.dim, len(group.ids)) == (7, 512, 24)
    assert group.provenance["weights_file_sha256"] == WHISPER_BASE.sha256

    runs = tmp_path / "runs"
    head = default_estimator(epochs=3, lr=1e-2, normalize=True, device="cpu")
    fit_heads(store, estimator=head, runs=runs, folds="1")
    (result,) = run_attack(
        store, runs=runs, method="fgsm", snr_db=45, device="cpu", batch_size=4
    ).results
    out = RunLayout(runs).attack_dir(BACKBONE, "fgsm", 45)
    attack = json.loads((out / "summary.json").read_text())
    assert attack["folds"][0]["num_test"] == 8 and attack["num_attacked"] == result.num_attacked
    with open(out / "clips.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            assert abs(float(row["snr_db"]) - 45.0) < 0.1  # the perturbation has the asked SNR

    cost = measure_cost(BACKBONE, device="cpu", timing=False)
    assert (cost.backbone_params, cost.num_frames) == (20_590_592, 300)  # 6 s, trimmed window
    assert 0 < cost.attention_macs < cost.backbone_macs  # eager attention is counted
    print(f"{BACKBONE}: {cost.gmacs:.2f} GMAC per 6 s clip")


def test_pgd_noise_top_block_and_a_mitigation_on_whisper_base(tmp_path, toy_manifest_factory):
    from trustser.attacks.runner import run_attack
    from trustser.extract import extract
    from trustser.heads.training import default_estimator, fit_heads
    from trustser.runs import RunLayout, read_json
    from trustser.variants import fit_variant

    manifest = toy_manifest_factory(tmp_path / "toy", takes=1)
    store, runs = tmp_path / "cache.zarr", tmp_path / "runs"
    extract(manifest, store, BACKBONE, device="cpu", progress=False)
    head = default_estimator(epochs=2, lr=1e-2, normalize=True, device="cpu")
    fit_heads(store, estimator=head, runs=runs, folds="1")
    layout = RunLayout(runs)
    for method in ("pgd", "noise"):
        run_attack(store, BACKBONE, runs=runs, method=method, snr_db=45, steps=2, batch_size=4)
        summary = read_json(layout.attack_dir(BACKBONE, method, 45) / "summary.json")
        assert summary["folds"][0]["num_test"] == 8 and summary["method"] == method
    for model in (f"{BACKBONE}@top1", f"{BACKBONE}@fair-reweight"):
        fitted = fit_variant(store, model, head, runs=runs, folds="1", tasks=("emotion",))
        (emotion,) = [t for t in fitted.tasks if t.task == "emotion"]
        assert emotion.backbone == model and 0.0 <= emotion.metrics["test_uar_mean"] <= 1.0
        run_attack(store, model, runs=runs, method="fgsm", snr_db=45, batch_size=4)
        attack = read_json(layout.attack_dir(model, "fgsm", 45) / "summary.json")
        assert attack["backbone"] == model and attack["folds"][0]["num_test"] == 8
