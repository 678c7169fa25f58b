"""The trust profile: collecting the results layout, normalising, writing tables/charts/report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trustser.cost import CostReport
from trustser.metrics.fairness import multiclass_equalized_odds_difference
from trustser.metrics.performance import uar_score
from trustser.profile import (
    AXES,
    Profile,
    ProfileError,
    axis_score,
    collect_profile,
    read_profile,
    run_profile,
    score_profile,
)
from trustser.runs import RunLayout, write_json

LABELS = ["neutral", "happy", "sad", "angry"]
SPEAKERS = {
    "fold1": [("m1", "male"), ("f1", "female")],
    "fold2": [("m2", "male"), ("f2", "female")],
}


def _write_predictions(path: Path, rows: list[dict], labels: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["id", "fold", "speaker", "gender", "true", "pred", *(f"prob_{x}" for x in labels)]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            probs = {
                f"prob_{x}": (0.7 if x == row["pred"] else 0.3 / (len(labels) - 1)) for x in labels
            }
            writer.writerow({**row, **probs})


def _write_task(layout: RunLayout, backbone: str, task: str, rows: list[dict], labels: list[str]):
    directory = layout.head_dir(backbone, task)
    _write_predictions(directory / "predictions.csv", rows, labels)
    folds = sorted({r["fold"] for r in rows})
    uars, accs = [], []
    for fold in folds:
        true = [r["true"] for r in rows if r["fold"] == fold]
        pred = [r["pred"] for r in rows if r["fold"] == fold]
        uars.append(uar_score(true, pred))
        accs.append(float(np.mean(np.array(true) == np.array(pred))))
    metrics = {
        "task": task,
        "backbone": backbone,
        "labels": labels,
        "test_uar_mean": float(np.mean(uars)),
        "test_uar_std": float(np.std(uars)),
        "test_accuracy_mean": float(np.mean(accs)),
        "test_accuracy_std": float(np.std(accs)),
        "test_macro_f1_mean": 0.5,
        "folds": [{"fold": f} for f in folds],
    }
    write_json(directory / "metrics.json", metrics)
    write_json(
        directory / "config.json", {"backbone": backbone, "store": {"path": "/data/cache.zarr"}}
    )
    return metrics


def write_fake_runs(
    root: Path,
    backbone: str = "tiny:whisper",
    *,
    seed: int = 0,
    accuracy: float = 0.7,
    gmacs: float = 2.4,
    asr: float = 0.75,
    tasks: tuple[str, ...] = ("emotion", "gender", "speaker"),
    attacks: bool = True,
    cost: bool = True,
) -> dict[str, dict]:
    """A results layout as the heads, attack and cost stages write it (two folds, 4 speakers)."""
    layout = RunLayout(root)
    rng = np.random.default_rng(seed)
    emotion, gender, speaker = [], [], []
    for fold, speakers in SPEAKERS.items():
        for name, sex in speakers:
            for k, label in enumerate(LABELS):
                for rep in range(5):
                    uid = f"{name}_{label}_{rep}"
                    wrong = LABELS[(k + 1 + int(rng.integers(3))) % 4]
                    pred = label if rng.random() < accuracy else wrong
                    base = {"id": uid, "fold": fold, "speaker": name, "gender": sex}
                    emotion.append({**base, "true": label, "pred": pred})
                    other = "female" if sex == "male" else "male"
                    gender.append(
                        {**base, "true": sex, "pred": sex if rng.random() < 0.9 else other}
                    )
                    speaker.append(
                        {**base, "true": name, "pred": name if rng.random() < 0.8 else "m1"}
                    )
    written = {}
    sets = {"emotion": (emotion, LABELS), "gender": (gender, ["female", "male"])}
    sets["speaker"] = (speaker, ["f1", "f2", "m1", "m2"])
    for task in tasks:
        rows, labels = sets[task]
        written[task] = _write_task(layout, backbone, task, rows, labels)
    if attacks:
        for method, value in (("fgsm", asr), ("pgd", min(1.0, asr + 0.1)), ("noise", 0.05)):
            summary = {
                "backbone": backbone,
                "method": method,
                "snr_db": 45.0,
                "asr_mean": value,
                "asr_std": 0.02,
                "num_attacked": 50,
                "clean_accuracy": 0.7,
            }
            write_json(layout.attack_dir(backbone, method, 45) / "summary.json", summary)
    probe = {"emotion_test_uar_mean": 0.9, "gender_test_accuracy_mean": 0.99, "other": "x"}
    write_json(layout.probe_dir(backbone) / "metrics.json", probe)
    if cost:
        report = CostReport(
            backbone=backbone,
            family="whisper",
            source="random",
            window="trimmed",
            seconds=6.0,
            num_samples=96000,
            num_frames=300,
            num_layers=3,
            dim=32,
            backbone_params=75904,
            head_params=37767,
            head_config={},
            head_source="test",
            backbone_macs=int(gmacs * 1e9) - 1000,
            head_macs=1000,
            attention_macs=11520000,
            macs_by_category={},
            norm_macs=0,
            torch_flops=int(2 * gmacs * 1e9),
            device="cpu",
            torch_threads=1,
            latency_ms=12.5,
            latency_ms_p90=13.0,
            throughput_clips_per_s=80.0,
            throughput_batch_size=8,
            repeats=5,
        )
        write_json(layout.cost_path(backbone), report.to_dict())
    written["emotion_rows"] = {"rows": emotion}
    return written


def test_collect_reads_every_axis(tmp_path):
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
    for fold in SPEAKERS:
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


def test_missing_axes_name_the_exact_command(tmp_path):
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


def test_other_attack_only_is_noted_not_used(tmp_path):
    write_fake_runs(tmp_path)
    (entry,) = collect_profile(tmp_path, attack=("fgsm", 25)).backbones
    assert entry.raw["safety"] is None and "--snr 25" in entry.missing["safety"]
    assert any("fgsm at 45 dB" in note for note in entry.notes)
    (pgd,) = collect_profile(tmp_path, attack=("pgd", 45)).backbones
    assert pgd.raw["safety"] == pytest.approx(0.85)


def test_axis_score_and_scales(tmp_path):
    assert axis_score(0.625, 0.5, 0.75) == (pytest.approx(0.5), False)
    assert axis_score(0.9, 0.5, 0.75) == (1.0, True)
    assert axis_score(10.0, 100.0, 1.0, log=True) == (pytest.approx(0.5), False)
    with pytest.raises(ProfileError, match="distinct"):
        axis_score(1.0, 2.0, 2.0)
    with pytest.raises(ProfileError, match="positive"):
        axis_score(0.0, 100.0, 1.0, log=True)

    write_fake_runs(tmp_path, "good", accuracy=0.9, gmacs=1.0, asr=0.5, seed=1)
    write_fake_runs(tmp_path, "bad", accuracy=0.5, gmacs=40.0, asr=0.9, seed=2)
    relative = collect_profile(tmp_path, scale="relative")
    good, bad = relative.get("good"), relative.get("bad")
    for axis in ("performance", "safety", "sustainability"):
        assert (good.scores[axis], bad.scores[axis]) == (1.0, 0.0)
    absolute = collect_profile(tmp_path, scale="absolute")
    uar = absolute.get("good").raw["performance"]
    assert absolute.get("good").scores["performance"] == pytest.approx((uar - 0.25) / 0.75)
    assert absolute.get("bad").scores["safety"] == pytest.approx(0.1)
    # re-scoring a profile keeps the raw values
    rescored = score_profile(absolute, "paper")
    assert rescored.scale == "paper" and rescored.get("good").raw == absolute.get("good").raw
    with pytest.raises(ValueError, match="scale='linear'"):
        collect_profile(tmp_path, scale="linear")


def test_relative_scale_with_one_backbone_says_so(tmp_path):
    write_fake_runs(tmp_path)
    profile = collect_profile(tmp_path, scale="relative")
    assert all(profile.backbones[0].scores[a] == 1.0 for a in AXES)
    assert any("same performance value" in n for n in profile.notes)


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


def test_run_profile_writes_every_output(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "report"
    write_fake_runs(runs, "tiny:whisper", seed=1)
    write_fake_runs(runs, "tiny:wav2vec2", seed=2, tasks=("emotion",), attacks=False, cost=False)
    profile, files = run_profile(runs, out, paper=["Whisper tiny"])
    names = {p.name for p in files.values()}
    assert {"profile.json", "profile.csv", "profile.md", "report.html"} <= names
    for stem in (
        "radar_tiny-whisper",
        "radar_tiny-wav2vec2",
        "radar_paper-Whisper-tiny",
        "radar_overlay",
    ):
        for suffix in (".png", ".svg"):
            assert (out / f"{stem}{suffix}").stat().st_size > 1000
    assert (out / "radar_overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = read_profile(out)
    assert [b.scores for b in again.backbones] == [b.scores for b in profile.backbones]
    assert again.get("tiny:wav2vec2").missing.keys() == {"privacy", "safety", "sustainability"}
    with open(out / "profile.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["backbone"] for r in rows] == ["tiny:wav2vec2", "tiny:whisper", "paper: Whisper tiny"]
    assert float(rows[1]["gmacs"]) == pytest.approx(2.4)
    markdown = (out / "profile.md").read_text()
    assert "| backbone | Performance | Privacy | Safety | Fairness | Sustainability |" in markdown
    assert "run `trustser cost --backbone tiny:wav2vec2" in markdown
    assert "| 99.0 |" in markdown  # the linear-probe gender accuracy beside the head's
    page = (out / "report.html").read_text()
    assert page.count("data:image/svg+xml;base64,") == 4  # overlay + one per backbone
    assert "http://" not in page.replace("http://www.w3.org", "") and "<script" not in page
    # deterministic outputs: a second run gives identical bytes (the report embeds the SVG charts)
    run_profile(runs, tmp_path / "again", paper=["Whisper tiny"], charts=False)
    for name in ("profile.json", "profile.csv", "profile.md", "report.html"):
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


def test_profile_json_refuses_other_versions(tmp_path):
    write_fake_runs(tmp_path / "runs")
    run_profile(tmp_path / "runs", tmp_path / "out", charts=False)
    data = json.loads((tmp_path / "out" / "profile.json").read_text())
    data["format_version"] = 99
    (tmp_path / "out" / "profile.json").write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="version 99"):
        read_profile(tmp_path / "out")
    with pytest.raises(ProfileError, match="no profile"):
        read_profile(tmp_path / "nowhere")
    assert isinstance(Profile.from_dict({**data, "format_version": 1}), Profile)


def test_cli_profile_wiring(tmp_path):
    from trustser.cli.profile import app

    runs = tmp_path / "runs"
    write_fake_runs(runs, "a", seed=1)
    write_fake_runs(runs, "b", seed=2)
    write_fake_runs(runs, "c", seed=3)
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "profile",
            "--runs",
            str(runs),
            "-o",
            str(tmp_path / "out"),
            "--backbone",
            "a",
            "b",
            "--no-charts",
            "--scale",
            "relative",
        ],
    )
    assert result.exit_code == 0, result.output
    names = [b.name for b in read_profile(tmp_path / "out").backbones]
    assert names == ["a", "b"]
    bad = runner.invoke(
        app, ["profile", "--runs", str(tmp_path / "empty"), "-o", str(tmp_path / "x")]
    )
    assert bad.exit_code == 2 and "nothing to profile" in bad.output
    stray = runner.invoke(app, ["profile", "--runs", str(runs), "oops"])
    assert stray.exit_code == 2 and "unexpected argument" in stray.output


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
