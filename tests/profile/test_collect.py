"""Collecting the results layout: every axis, missing axes, attacks, paper rows, bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trustser.metrics.fairness import multiclass_equalized_odds_difference
from trustser.profile import AXES, ProfileError, collect_profile, run_profile
from trustser.runs import RunLayout


def test_collect_reads_every_axis(tmp_path, write_fake_runs, fake_speakers):
    written = write_fake_runs(tmp_path)
    profile = collect_profile(tmp_path)
    (entry,) = profile.backbones
    assert entry.name == "tiny:whisper" and entry.directory == "tiny-whisper"
    assert entry.missing == {}
    assert entry.raw["performance"] == pytest.approx(written["emotion"]["test_uar_mean"])
    assert entry.raw["privacy"] == pytest.approx(written["gender"]["test_accuracy_mean"])
    assert entry.raw["safety"] == pytest.approx(0.75)
    assert entry.raw["sustainability"] == pytest.approx(2.4)
    rows = written["emotion_rows"]["rows"]
    per_fold = []
    for fold in fake_speakers:
        part = [r for r in rows if r["fold"] == fold]
        per_fold.append(
            multiclass_equalized_odds_difference(
                [r["true"] for r in part], [r["pred"] for r in part], [r["gender"] for r in part]
            )
        )
    assert entry.raw["fairness"] == pytest.approx(np.mean(per_fold))
    assert entry.fairness["multiclass_equalized_odds_fold_std"] == pytest.approx(np.std(per_fold))
    assert set(entry.fairness["pooled"]["speakers"]["per_speaker"]) == {"m1", "f1", "m2", "f2"}
    assert entry.privacy["gender"]["chance_majority"] == pytest.approx(0.5)
    assert entry.privacy["speaker"]["chance_uniform"] == pytest.approx(0.25)
    assert entry.safety["noise_asr"] == pytest.approx(0.05)
    assert entry.safety["adversarial_excess"] == pytest.approx(0.70)
    assert entry.probe == {"emotion_test_uar_mean": 0.9, "gender_test_accuracy_mean": 0.99}
    # paper scale: UAR 0.50 → 0.75, gender acc 1.00 → 0.85, ASR 1.00 → 0.40, log GMAC 100 → 1
    expected_perf = min(1.0, max(0.0, (entry.raw["performance"] - 0.5) / 0.25))
    assert entry.scores["performance"] == pytest.approx(expected_perf)
    assert entry.scores["safety"] == pytest.approx((1 - 0.75) / 0.6)
    assert entry.scores["sustainability"] == pytest.approx((2 - np.log10(2.4)) / 2)
    assert entry.complete


def test_missing_axes_name_the_exact_command(tmp_path, write_fake_runs):
    write_fake_runs(tmp_path, tasks=("emotion",), attacks=False, cost=False)
    (entry,) = collect_profile(tmp_path).backbones
    assert entry.scores["performance"] is not None and entry.scores["fairness"] is not None
    runs = str(tmp_path)
    assert entry.missing == {
        "privacy": f"trustser heads fit --store /data/cache.zarr --backbone tiny:whisper --task gender --runs {runs}",
        "safety": f"trustser attack --store /data/cache.zarr --backbone tiny:whisper --method fgsm --snr 45 --runs {runs}",
        "sustainability": f"trustser cost --backbone tiny:whisper --runs {runs}",
    }
    # a named backbone with nothing run at all: every axis says what to run
    profile = collect_profile(tmp_path, backbones=["whisper_base"], attack=("pgd", 35))
    missing = profile.get("whisper_base").missing
    assert set(missing) == set(AXES)
    assert missing["performance"].startswith(
        "trustser heads fit --store <cache.zarr> --backbone whisper_base"
    )
    assert "--method pgd --snr 35" in missing["safety"]


def test_other_attack_only_is_noted_not_used(tmp_path, write_fake_runs):
    write_fake_runs(tmp_path)
    (entry,) = collect_profile(tmp_path, attack=("fgsm", 25)).backbones
    assert entry.raw["safety"] is None and "--snr 25" in entry.missing["safety"]
    assert any("fgsm at 45 dB" in note for note in entry.notes)
    (pgd,) = collect_profile(tmp_path, attack=("pgd", 45)).backbones
    assert pgd.raw["safety"] == pytest.approx(0.85)


def test_paper_rows_and_nothing_to_profile(tmp_path):
    profile = collect_profile(tmp_path, paper=["Whisper tiny"])
    (row,) = profile.backbones
    assert row.reference and row.raw["sustainability"] == 2.4
    with pytest.raises(ProfileError, match="nothing to profile"):
        collect_profile(tmp_path)
    with pytest.raises(ProfileError, match="no paper row"):
        collect_profile(tmp_path, paper=["Whisper huge"])


def test_bad_predictions_file_is_a_clear_error(tmp_path):
    path = RunLayout(tmp_path).head_dir("x", "emotion") / "predictions.csv"
    path.parent.mkdir(parents=True)
    path.write_text("id,true\nu1,happy\n")
    with pytest.raises(ProfileError, match=r"lacks column\(s\)"):
        collect_profile(tmp_path)


def test_profile_of_a_real_pipeline_run(tmp_path, toy_manifest):
    """extract → heads (emotion, gender) → attack → cost → profile, with the real producers."""
    from trustser.attacks.runner import run_attack
    from trustser.cost import run_cost
    from trustser.extract import extract
    from trustser.heads.training import fit_heads

    store, runs = tmp_path / "cache.zarr", tmp_path / "runs"
    extract(toy_manifest, store, "tiny:whisper", device="cpu", progress=False)
    for task in ("emotion", "gender"):
        fit_heads(store, task=task, runs=runs, folds="1,2", epochs=2, lr=1e-2, device="cpu")
    run_attack(store, runs=runs, method="fgsm", snr_db=45, folds="1,2", device="cpu", batch_size=8)
    run_cost("tiny:whisper", runs=runs, timing=False)

    profile, files = run_profile(runs, tmp_path / "out", store=str(store), charts=False)
    (entry,) = profile.backbones
    assert entry.name == "tiny:whisper" and entry.missing == {}, entry.missing
    layout = RunLayout(runs)
    metrics = json.loads((layout.head_dir("tiny:whisper", "emotion") / "metrics.json").read_text())
    summary = json.loads(
        (layout.attack_dir("tiny:whisper", "fgsm", 45) / "summary.json").read_text()
    )
    assert entry.raw["performance"] == pytest.approx(metrics["test_uar_mean"])
    assert entry.raw["safety"] == pytest.approx(summary["asr_mean"])
    assert entry.raw["sustainability"] > 0 and entry.fairness["per_fold"].keys() == {
        "fold1",
        "fold2",
    }
    assert all(0.0 <= entry.scores[a] <= 1.0 for a in AXES)
    assert "report" in files
