"""Collecting the results layout: every axis, missing axes, attacks, paper rows, bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trustser.heads.estimator import HeadClassifier
from trustser.metrics.fairness import multiclass_equalized_odds_difference
from trustser.profile import ProfileError, axis_names, collect_profile, run_profile
from trustser.profile.axes import scored_axes
from trustser.profile.axes.privacy import attacker, strongest_attacker
from trustser.runs import RunLayout


def test_collect_reads_every_axis(tmp_path, write_fake_runs, fake_speakers):
    written = write_fake_runs(tmp_path)
    profile = collect_profile(tmp_path)
    (entry,) = profile.backbones
    assert entry.name == "tiny:whisper" and entry.directory == "tiny-whisper"
    assert entry.missing == {}
    assert entry.raw["performance"] == pytest.approx(written["emotion"]["test_uar_mean"])
    # privacy: the strongest attacker run (the probe's 99 %), the head's figure beside it
    assert written["gender"]["test_accuracy_mean"] < 0.99
    assert entry.raw["privacy"] == pytest.approx(0.99)
    axis = entry.privacy["axis"]
    assert axis["attacker"] == attacker(entry) == "linear probe (all layers)"
    assert axis["head_accuracy"] == pytest.approx(written["gender"]["test_accuracy_mean"])
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
    # paper scale, from Table 4: UAR 53.45 → 71.65 %, ASR 100 → 36.8 %, log GMAC 173.2 → 0.576
    expected_perf = min(1.0, max(0.0, (entry.raw["performance"] - 0.5345) / 0.182))
    assert entry.scores["performance"] == pytest.approx(expected_perf)
    assert entry.scores["safety"] == pytest.approx((1 - 0.75) / (1 - 0.368))
    worst, best = np.log10(173.1946), np.log10(0.57646)
    assert entry.scores["sustainability"] == pytest.approx(
        (np.log10(2.4) - worst) / (best - worst), rel=1e-4
    )
    assert not entry.missing and all(entry.scores[a.name] is not None for a in scored_axes("paper"))


def test_privacy_is_scored_by_the_strongest_attacker(tmp_path, write_fake_runs):
    from trustser.runs import RunLayout, write_json

    write_fake_runs(tmp_path)
    probe = RunLayout(tmp_path).probe_dir("tiny:whisper") / "metrics.json"
    write_json(probe, {"gender_test_accuracy_mean": 0.6})  # a weak probe: the head is stronger
    (entry,) = collect_profile(tmp_path).backbones
    assert attacker(entry) == "gender head"
    assert entry.raw["privacy"] == entry.privacy["axis"]["head_accuracy"] > 0.6
    write_json(
        probe,
        {
            "gender_test_accuracy_mean": 0.6,
            "gender_dev_chosen_layer_test_accuracy_mean": 0.995,  # chosen on dev, scored on test
        },
    )
    (entry,) = collect_profile(tmp_path).backbones
    assert attacker(entry) == "linear probe (layer chosen on dev)"
    assert entry.raw["privacy"] == pytest.approx(0.995)
    assert set(entry.privacy["axis"]["attackers"]) == {
        "gender head",
        "linear probe (all layers)",
        "linear probe (layer chosen on dev)",
    }
    # the tables say which attacker, and keep the head's (the paper's) figure beside it
    from trustser.profile import profile_to_csv, profile_to_markdown

    profile = collect_profile(tmp_path)
    assert "linear probe (layer chosen on dev)" in profile_to_markdown(profile)
    assert "privacy_attacker" in profile_to_csv(profile).splitlines()[0]
    assert strongest_attacker(None, None) is None
    assert strongest_attacker(None, {"gender_test_accuracy_mean": 0.7})["attacker"] == (
        "linear probe (all layers)"
    )
    assert strongest_attacker(0.9, {"gender_test_accuracy_mean": 0.9})["attacker"] == "gender head"


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
    assert set(missing) == set(axis_names())
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
    """extract → heads (emotion, gender) → attack → cost → robustness → profile, with the
    real producers."""
    from trustser.attacks.runner import run_attack
    from trustser.cost import run_cost
    from trustser.extract import extract
    from trustser.heads.training import fit_heads
    from trustser.robustness import run_robustness

    store, runs = tmp_path / "cache.zarr", tmp_path / "runs"
    extract(toy_manifest, store, "tiny:whisper", device="cpu", progress=False)
    for task in ("emotion", "gender"):
        fit_heads(
            store,
            None,
            HeadClassifier(epochs=2, lr=1e-2, device="cpu"),
            task=task,
            runs=runs,
            folds="1,2",
        )
    run_attack(store, runs=runs, method="fgsm", snr_db=45, folds="1,2", device="cpu", batch_size=8)
    run_cost("tiny:whisper", runs=runs, timing=False)
    (robust,) = run_robustness(
        store, runs=runs, corruptions=["white_noise"], severities=[3], device="cpu", replicates=0
    )

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
    suite_mean = robust.models[0].summary["suite_mean"]
    assert entry.raw["robustness"] == pytest.approx(suite_mean["unchanged"])
    assert "robustness: measured on 1 of the suite's 31 cases (white_noise)" in " ".join(
        entry.notes
    )
    assert entry.raw["sustainability"] > 0 and entry.fairness["per_fold"].keys() == {
        "fold1",
        "fold2",
    }
    assert all(0.0 <= entry.scores[a.name] <= 1.0 for a in scored_axes("paper"))
    assert "report" in files


def test_only_directories_holding_results_are_rows(tmp_path, write_fake_runs, monkeypatch):
    from typer.testing import CliRunner

    from trustser.cli.main import app
    from trustser.profile.collect import discover_backbones, holds_results

    run = tmp_path / "runs" / "emodb"  # what `trustser run` leaves: a store, a report, a ledger
    write_fake_runs(run, "tiny:whisper")
    write_fake_runs(run, "tiny:whisper-ft", tasks=("emotion",), attacks=False, cost=False)
    (run / "tiny-whisper-ft").rename(run / "tiny-whisper@ft")  # any name holding results
    (run / "cache.zarr" / "tiny-whisper").mkdir(parents=True)
    (run / "report").mkdir()
    (run / "report" / "profile.json").write_text("{}")
    (run / "stages.json").write_text("{}")
    (run / "empty-backbone" / "emotion").mkdir(parents=True)  # started, nothing written yet
    assert not holds_results(run / "cache.zarr") and not holds_results(run / "report")
    assert discover_backbones(run) == ["tiny-whisper", "tiny-whisper@ft"]
    monkeypatch.chdir(tmp_path)  # no ./cache.zarr here: profile and recommend use --runs only
    runner = CliRunner()
    result = runner.invoke(app, ["profile", "--runs", str(run), "-o", "out"])
    assert result.exit_code == 0, result.output
    profile = json.loads((tmp_path / "out" / "profile.json").read_text())
    names = [b["name"] for b in profile["backbones"]]
    assert names == ["tiny:whisper", "tiny-whisper@ft"]
    assert profile["backbones"][1]["raw"]["performance"] is not None  # read from that directory
    result = runner.invoke(app, ["recommend", "--runs", str(run), "--scenario", "edge"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "tiny:whisper" in output
    for folder in ("cache.zarr", "report", "empty-backbone"):
        assert f"not ranked {folder}" not in output and f" {folder} │" not in output


def test_fold_fairness_undefined_everywhere_reads_n_a(tmp_path, write_fake_runs):
    import csv

    from trustser.profile import profile_to_markdown
    from trustser.profile.report import render_report

    write_fake_runs(tmp_path)
    path = RunLayout(tmp_path).head_dir("tiny:whisper", "emotion") / "predictions.csv"
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:  # every fold now tests one gender only: no fold-level gender gap exists
        row["fold"] = "fold1" if row["gender"] == "male" else "fold2"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (entry,) = (profile := collect_profile(tmp_path)).backbones
    fairness = entry.fairness
    assert fairness["multiclass_equalized_odds_fold_mean"] is None
    assert fairness["multiclass_equalized_odds_fold_std"] is None
    pooled = fairness["pooled"]["multiclass_equalized_odds"]
    assert entry.raw["fairness"] == pooled and fairness["eo_basis"].startswith("pooled")
    markdown = profile_to_markdown(profile)
    raw_rows = [line for line in markdown.splitlines() if line.startswith("| tiny:whisper |")]
    row = raw_rows[1]  # the raw-metrics table (the first is the scores)
    assert row.split(" | ")[4] == "n/a"  # EO (multiclass, fold mean)
    assert "± 0.0" not in row
    assert f"| {100 * pooled:.1f} [" in row  # the pooled figure and its interval, in its column
    html = render_report(profile)
    assert "n/a" in html and "± 0.0" not in html
