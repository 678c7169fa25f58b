"""Intervals of every profile figure, their files, and the paired comparisons of its rows."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from trustser.cli.main import app
from trustser.metrics import bootstrap as bs
from trustser.metrics.fairness import multiclass_equalized_odds_difference
from trustser.metrics.performance import uar_score
from trustser.profile import collect_profile, profile_to_markdown, read_profile, run_profile
from trustser.profile.axes import get_axis
from trustser.profile.intervals import compare_rows
from trustser.profile.scales import axis_score, scale_bounds


def test_every_measured_axis_gets_the_percentile_interval_of_its_replicates(
    tmp_path, write_fake_runs
):
    write_fake_runs(tmp_path, clips=True)
    profile = collect_profile(tmp_path, bootstrap=300)
    (entry,) = profile.backbones
    for name in ("performance", "fairness", "safety"):
        found = entry.intervals[name]
        assert found["value"] == pytest.approx(entry.raw[name])
        samples = np.array(entry.replicates[name], dtype=float)
        assert samples.size == 300 and not np.isnan(samples).any()  # every replicate defined
        # as computed: the percentiles of the replicates, never widened to hold the estimate
        ends = np.percentile(samples, [2.5, 97.5])
        assert [found["low"], found["high"]] == pytest.approx(ends, abs=1e-5)
        assert found["low"] < found["high"]
        worst, best, log = scale_bounds(profile.scale, get_axis(name), entry, profile.backbones)
        scores = sorted(axis_score(v, worst, best, log=log)[0] for v in ends)
        assert entry.score_intervals[name] == pytest.approx(scores, abs=1e-4)
    # the privacy axis holds the linear probe (no per-clip predictions): no interval, said so
    assert "privacy" not in entry.intervals and entry.intervals["gender_accuracy_head"]["low"]
    assert any("no interval" in n for n in entry.notes)
    assert entry.intervals["sustainability"]["low"] == entry.intervals["sustainability"]["high"]
    assert entry.intervals["latency_ms"]["high"] == pytest.approx(13.0)  # p90 of the timings
    assert profile.bootstrap["num_speakers"] == 4 and profile.bootstrap["replicates"] == 300


def _per_fold(rows: list[dict], metric) -> dict[str, float]:
    folds = sorted({r["fold"] for r in rows})
    return {
        f: metric(
            [r["true"] for r in rows if r["fold"] == f],
            [r["pred"] for r in rows if r["fold"] == f],
            [r["gender"] for r in rows if r["fold"] == f],
        )
        for f in folds
    }


def test_folds_of_one_speaker_per_gender_are_drawn_whole_and_every_replicate_scores_them(
    tmp_path, write_fake_runs
):
    """Each fold tests one woman and one man (EmoDB, IEMOCAP): a replicate draws whole folds, so
    every drawn fold has both genders, and its figure is the mean of the drawn folds' figures,
    a fold drawn twice counting twice."""
    write_fake_runs(tmp_path, clips=True)
    profile = collect_profile(tmp_path, bootstrap=200, seed=3)
    (entry,) = profile.backbones
    assert profile.bootstrap["design"] == bs.DESIGN_FOLDS
    assert "2 folds" in profile.bootstrap["resampled"]
    assert any("resample only 2 folds" in note for note in profile.notes)
    path = tmp_path / "tiny-whisper" / "emotion" / "predictions.csv"
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    speakers = sorted({r["speaker"] for r in rows})
    fold_of = {r["speaker"]: r["fold"] for r in rows}
    gender_of = {r["speaker"]: r["gender"] for r in rows}
    draws = bs.draw_speakers(
        speakers, [fold_of[s] for s in speakers], [gender_of[s] for s in speakers], 200, 3
    )
    counts = draws.fold_weights(["fold1", "fold2"])  # [B, 2]
    assert set(np.unique(counts.sum(axis=1))) == {2.0} and (counts == 0).any()
    for name, metric in (
        ("fairness", lambda t, p, g: multiclass_equalized_odds_difference(t, p, g)),
        ("performance", lambda t, p, g: uar_score(t, p)),
    ):
        folds = _per_fold(rows, metric)
        expected = counts @ np.array([folds["fold1"], folds["fold2"]]) / counts.sum(axis=1)
        assert entry.replicates[name] == pytest.approx(expected, abs=1e-6)


def test_intervals_reach_every_file_and_are_deterministic(tmp_path, write_fake_runs):
    write_fake_runs(tmp_path / "runs", clips=True)
    _, files = run_profile(tmp_path / "runs", tmp_path / "a", bootstrap=200, charts=False)
    run_profile(tmp_path / "runs", tmp_path / "b", bootstrap=200, charts=False)
    first = (tmp_path / "a" / "profile.json").read_bytes()
    assert first == (tmp_path / "b" / "profile.json").read_bytes()
    loaded = read_profile(tmp_path / "a")
    assert loaded.backbones[0].intervals["performance"]["low"] is not None
    assert loaded.bootstrap["seed"] == 0
    markdown = files["markdown"].read_text()
    assert "Intervals: `value [low, high]`" in markdown
    uar = loaded.backbones[0].intervals["performance"]
    assert f"{100 * uar['value']:.1f} [{100 * uar['low']:.1f}, {100 * uar['high']:.1f}]" in markdown
    row = next(csv.DictReader(io.StringIO(files["csv"].read_text())))
    assert float(row["uar_mean_low"]) == pytest.approx(uar["low"], abs=1e-5)
    assert "score_safety_low" in row and "asr_fgsm_45db_high" in row
    assert "speaker-level bootstrap" in files["report"].read_text()


def test_bootstrap_zero_switches_intervals_off(tmp_path, write_fake_runs):
    write_fake_runs(tmp_path / "runs", clips=True)
    out = str(tmp_path / "out")
    args = ["profile", "-r", str(tmp_path / "runs"), "-o", out, "--no-charts", "--bootstrap", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "out" / "profile.json").read_text())
    assert data["bootstrap"] is None and data["backbones"][0]["intervals"] == {}
    assert "[" not in (tmp_path / "out" / "profile.md").read_text().split("## Raw metrics")[1]
    bad = CliRunner().invoke(app, ["profile", "-r", str(tmp_path / "runs"), "--bootstrap", "-1"])
    assert bad.exit_code != 0


def test_several_rows_get_paired_comparisons(tmp_path, write_fake_runs):
    write_fake_runs(tmp_path, "good", accuracy=0.95, asr=0.3, gmacs=1.0, seed=1, clips=True)
    write_fake_runs(tmp_path, "bad", accuracy=0.4, asr=0.9, gmacs=9.0, seed=2, clips=True)
    profile = collect_profile(tmp_path, bootstrap=400)
    (pair,) = profile.comparisons
    assert {pair["a"], pair["b"]} == {"good", "bad"}
    good, bad = profile.get("good"), profile.get("bad")
    verdicts = {c.metric: c for c in compare_rows(good, bad)}
    assert verdicts["performance"].verdict == "A better" and verdicts["performance"].p_value < 0.05
    assert verdicts["safety"].verdict == "A better"
    assert verdicts["sustainability"].exact and verdicts["sustainability"].verdict == "A better"
    assert verdicts["privacy"].verdict.startswith("no interval")  # the probe: no per-clip data
    assert compare_rows(bad, good)[0].verdict == "B better"
    assert "## Paired comparisons" in profile_to_markdown(profile)


def test_compare_command_gives_per_axis_verdicts_and_json(tmp_path, write_fake_runs):
    runs = tmp_path / "runs"
    write_fake_runs(runs, "good", accuracy=0.95, asr=0.3, gmacs=1.0, seed=1, clips=True)
    write_fake_runs(runs, "good@top1", accuracy=0.95, asr=0.3, gmacs=1.0, seed=3, clips=True)
    write_fake_runs(runs, "bad", accuracy=0.4, asr=0.9, gmacs=9.0, seed=2, clips=True)
    out = tmp_path / "c.json"
    args = ["compare", "good", "bad", "-r", str(runs), "--bootstrap", "300", "-o", str(out)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["format"] == "trustser-comparison" and data["a"] == "good"
    assert data["axes"]["performance"]["verdict"] == "A better"
    assert "A better" in result.output
    variant = CliRunner().invoke(app, ["compare", "good@top1", "good", "-r", str(runs)])
    assert variant.exit_code == 0, variant.output  # a variant is a row like a backbone
    same = CliRunner().invoke(app, ["compare", "good", "good", "-r", str(runs)])
    assert same.exit_code == 2 and "two different models" in same.output


def test_compare_refuses_models_tested_on_different_clips(tmp_path, write_fake_runs):
    runs = tmp_path / "runs"
    write_fake_runs(runs, "a", clips=True)
    write_fake_runs(runs, "b", clips=True)
    path = runs / "b" / "emotion" / "predictions.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-5]) + "\n")
    result = CliRunner().invoke(app, ["compare", "a", "b", "-r", str(runs), "--bootstrap", "50"])
    assert result.exit_code == 2 and "different clips" in result.output


def test_latency_interval_is_the_spread_of_the_recorded_timings(tmp_path, write_fake_runs):
    write_fake_runs(tmp_path)
    path = tmp_path / "tiny-whisper" / "cost.json"
    cost = json.loads(path.read_text())
    cost["latency_ms_runs"] = [10.0 + i for i in range(41)]  # 10 … 50 ms
    path.write_text(json.dumps(cost))
    (entry,) = collect_profile(tmp_path, bootstrap=20).backbones
    found = entry.intervals["latency_ms"]
    assert found["low"] == pytest.approx(11.0) and found["high"] == pytest.approx(49.0)
    assert "41 repeated timings" in found["method"]


def test_the_speaker_id_split_and_verification_rows_do_not_change_the_draw_design():
    """EmoDB-like: each fold tests one woman and one man. The speaker-ID task's closed-set split
    tests every speaker in every fold and verification rows name no fold: neither may turn the
    design of every other figure into a plain speaker draw."""
    from trustser.metrics.bootstrap import DESIGN_FOLDS, draw_speakers
    from trustser.profile.intervals import tested_speakers

    emotion = [
        {"speaker": f"s{k}{g}", "gender": g, "fold": f"fold{k}"} for k in range(5) for g in "fm"
    ]
    speaker_id = [{**row, "fold": f"fold{j}"} for row in emotion for j in range(5)]
    trials = [{"speaker": row["speaker"], "gender": row["gender"]} for row in emotion]
    speakers, folds, genders = tested_speakers([emotion, speaker_id, trials])
    assert folds == [f"fold{s[1]}" for s in speakers]
    assert draw_speakers(speakers, folds, genders, 20, 0).design == DESIGN_FOLDS
    # the speaker-ID split alone names no fold for anyone
    assert set(tested_speakers([speaker_id])[1]) == {None}
