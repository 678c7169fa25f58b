"""Privacy mitigations judged honestly: fresh attackers on one deployed encoder, per-clip
predictions behind every attacker's interval, the λ = 0 control, λ chosen on dev, and LEACE
concept erasure — which defeats linear attackers and not necessarily non-linear ones."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from trustser.heads.data import PackedFeatures
from trustser.heads.estimator import HeadClassifier
from trustser.heads.tasks import build_task
from trustser.profile import BackboneProfile, Profile, axis_names, collect_profile, read_profile
from trustser.profile.mitigations import attacker_rows, mitigation_rows
from trustser.profile.recommend import recommend, recommendation_to_markdown
from trustser.runs import RunLayout, inherit_privacy_runs, write_json
from trustser.variants import VariantFit, encoder_fold, parse
from trustser.variants.attackers import attack_representation, privacy_figures, trade_off
from trustser.variants.erasure import ErasedRepresentation, LayerEraser, erased, fit_erasers
from trustser.variants.privacy import KIND as PRIVACY
from trustser.variants.privacy import choose_lambda, with_control

BASE = "tiny:whisper"


def _attacker(**changes) -> HeadClassifier:
    """A small attacker head for the toy representations."""
    return HeadClassifier(**{"hidden": 16, "lr": 1e-2, "epochs": 25, "device": "cpu", **changes})


def _fold_accuracy(path, attacker: str) -> dict[str, float]:
    """Per-fold accuracy of one attacker's rows of a probe predictions CSV."""
    with open(path, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["attacker"] == attacker]
    folds = sorted({r["fold"] for r in rows})
    return {
        f: float(np.mean([r["true"] == r["pred"] for r in rows if r["fold"] == f])) for f in folds
    }


# ---------------------------------------------------------------- one deployed encoder
def test_speaker_folds_read_one_deployed_encoder_not_the_emotion_fold_of_the_same_name(
    tmp_path, toy_manifest
):
    """Emotion fold 1's encoder exposes who speaks; folds 2 and 3's expose noise. The speaker
    split's folds are named fold1..fold5 like the emotion folds, but every one of them must read
    the one deployed encoder (fold 1's), so every speaker fold finds the speakers."""
    rng = np.random.default_rng(0)
    speakers = sorted({u.speaker for u in toy_manifest.utterances})
    voice = {s: 3.0 * rng.standard_normal(8) for s in speakers}
    telling, noise = {}, {}
    for u in toy_manifest.utterances:
        telling[u.id] = (voice[u.speaker] + 0.1 * rng.standard_normal((4, 8)))[None]
        noise[u.id] = rng.standard_normal((1, 4, 8))
    encoded = {
        "fold1": PackedFeatures.from_arrays(telling),
        "fold2": PackedFeatures.from_arrays(noise),
        "fold3": PackedFeatures.from_arrays(noise),
    }
    speaker = build_task("speaker", toy_manifest)
    (run,), probe = attack_representation(
        encoded,
        [speaker],
        estimator=_attacker(),
        manifest=toy_manifest,
        layout=RunLayout(tmp_path),
        variant=f"{BASE}@privacy-l1",
        store_info={"group": BASE},
    )
    assert set(run.metrics["variant"]["encoder_folds"].values()) == {"fold1"}
    per_fold = [f["test_accuracy"] for f in run.metrics["folds"]]
    assert len(per_fold) == 5 and min(per_fold) >= 0.8, per_fold
    assert min(f["test_accuracy"] for f in probe["tasks"]["speaker"]["all_layers"]["folds"]) >= 0.8
    assert encoder_fold("fold2", ["fold1", "fold2"], task="speaker") == "fold1"
    assert encoder_fold("fold2", ["fold1", "fold2"], task="gender") == "fold2"


# ------------------------------------------------------------ per-clip probe predictions
def _linear_gender(
    manifest, rng, *, shift: float = 2.0, spread_ratio: float = 1.0, frames: int = 4
):
    """Gender as a mean shift along one direction (linear), optionally also as a larger frame
    spread for men (a second-order signal)."""
    direction = np.zeros(6)
    direction[0] = 1.0
    arrays = {}
    for u in manifest.utterances:
        sign = 1.0 if u.gender == "male" else -1.0
        scale = spread_ratio if u.gender == "male" else 1.0
        x = sign * shift * direction + scale * rng.standard_normal((frames, 6))
        arrays[u.id] = x[None].astype(np.float32)
    return arrays


def test_privacy_variant_probes_write_per_clip_predictions_so_the_axis_has_its_interval(
    tmp_path, toy_manifest
):
    """A representation whose gender a linear probe reads and a barely trained head does not:
    the axis holds the probe, whose interval needs its per-clip predictions."""
    arrays = _linear_gender(toy_manifest, np.random.default_rng(1), shift=0.6)
    encoded = PackedFeatures.from_arrays(arrays)
    gender = build_task("gender", toy_manifest)
    layout = RunLayout(tmp_path / "runs")
    variant = f"{BASE}@privacy-l1"
    _, probe = attack_representation(
        {s.name: encoded for s in gender.splits},
        [gender],
        estimator=_attacker(lr=1e-6, epochs=1),
        manifest=toy_manifest,
        layout=layout,
        variant=variant,
        store_info={"group": BASE},
    )
    predictions = layout.probe_dir(variant) / "predictions-gender.csv"
    written = _fold_accuracy(predictions, "linear probe (all layers)")
    recorded = {
        f["fold"]: f["test_accuracy"] for f in probe["tasks"]["gender"]["all_layers"]["folds"]
    }
    assert written == pytest.approx(recorded)
    row = collect_profile(layout.root, bootstrap=200).get(variant)
    assert row.privacy["axis"]["attacker"].startswith("linear probe")
    interval = row.intervals["privacy"]
    assert interval["value"] == row.raw["privacy"]
    assert interval["low"] is not None and interval["high"] is not None  # drawn from the clips
    assert "bootstrap" in interval["method"]
    assert not any("no interval" in note for note in row.notes)


def test_inherited_privacy_runs_carry_the_probe_predictions(tmp_path, toy_manifest):
    encoded = PackedFeatures.from_arrays(_linear_gender(toy_manifest, np.random.default_rng(2)))
    gender = build_task("gender", toy_manifest)
    layout = RunLayout(tmp_path / "runs")
    attack_representation(
        {s.name: encoded for s in gender.splits},
        [gender],
        estimator=_attacker(lr=1e-6, epochs=1),
        manifest=toy_manifest,
        layout=layout,
        variant=BASE,
        store_info={"group": BASE},
    )
    variant = f"{BASE}@smooth-s30-n2"  # a defence at inference: the same representation
    write_json(layout.head_dir(variant, "emotion") / "metrics.json", {"backbone": variant})
    stale = layout.probe_dir(variant) / "predictions-speaker.csv"
    stale.parent.mkdir(parents=True)
    stale.write_text("id,fold,speaker,gender,attacker,true,pred\n")
    assert set(inherit_privacy_runs(layout, BASE, variant)) == {"gender", "probe"}
    assert not stale.exists()  # the base has no speaker probe: nothing stale is left
    profile = collect_profile(layout.root, bootstrap=200)
    base, inherited = profile.get(BASE), profile.get(variant)
    assert inherited.privacy["axis"]["attacker"] == base.privacy["axis"]["attacker"]
    assert "gender_accuracy_probe" in inherited.intervals
    assert inherited.intervals["privacy"]["low"] == base.intervals["privacy"]["low"]


# ----------------------------------------------------------------------- concept erasure
def test_leace_leaves_no_linear_gender_signal_on_the_clips_it_was_fitted_on():
    rng = np.random.default_rng(0)
    n, layers, dim = 120, 2, 6
    z = (rng.random(n) < 0.5).astype(float)
    mixing = rng.standard_normal((dim, dim))
    means = rng.standard_normal((n, layers, dim)) @ mixing  # correlated dimensions
    means[:, 0, :2] += 8.0 * z[:, None]
    means[:, 1, 3] -= 6.0 * z
    flat = means.reshape(n, -1)
    before = LogisticRegression(max_iter=2000).fit(flat, z).score(flat, z)
    eraser = LayerEraser.fit(means, z)
    erased_means = eraser.erase_means(means.astype(np.float32)).astype(np.float64)
    for layer in range(layers):
        x = erased_means[:, layer]
        gap = x[z == 1].mean(0) - x[z == 0].mean(0)
        assert np.abs(gap).max() < 1e-3  # class-conditional means equal: linear guardedness
    after_flat = erased_means.reshape(n, -1)
    after = LogisticRegression(max_iter=2000).fit(after_flat, z).score(after_flat, z)
    assert before >= 0.95 and after <= 0.65, (before, after)
    # the erasure is affine, so it commutes with the time-mean: frames erased, then averaged
    frames = torch.as_tensor(rng.standard_normal((layers, 7, dim)), dtype=torch.float32)
    assert torch.allclose(
        eraser.erase_frames(frames).mean(1),
        torch.as_tensor(eraser.erase_means(frames.mean(1)[None].numpy())[0]),
        atol=1e-5,
    )


def test_erased_features_read_as_the_heads_read_them():
    rng = np.random.default_rng(3)
    arrays = {f"c{i}": rng.standard_normal((2, 5, 4)).astype(np.float32) for i in range(6)}
    packed = PackedFeatures.from_arrays(arrays)
    means = packed.means(list(arrays))
    eraser = LayerEraser.fit(means, [0, 1, 0, 1, 0, 1])
    source = erased(packed, eraser)
    ids = list(arrays)
    expected = {i: eraser.erase_frames(torch.as_tensor(arrays[i])) for i in ids}
    mean, std = source.statistics(ids)
    stacked = torch.cat([expected[i] for i in ids], dim=1)
    assert torch.allclose(mean, stacked.mean(1), atol=1e-5)
    assert torch.allclose(std, stacked.std(1, unbiased=False), atol=1e-5)
    standard = source.standardized(mean, std, ids)
    (batch,) = standard.packed_batches(ids, batch_size=6, shuffle=False)
    assert torch.allclose(batch.frames, (stacked - mean[:, None]) / std[:, None], atol=1e-4)
    (padded,) = source.batches(ids[:2], batch_size=2, shuffle=False)
    assert torch.allclose(padded.hidden[1], expected[ids[1]], atol=1e-5)
    assert np.allclose(source.means(ids), np.stack([expected[i].mean(1) for i in ids]), atol=1e-5)


def test_erasure_defeats_the_linear_probes_but_a_nonlinear_attacker_still_reads_gender(
    tmp_path, toy_manifest
):
    """Gender as a mean shift (linear) and a wider frame spread for men (second order): LEACE
    fitted on each fold's training clips leaves the probes near chance on unseen speakers, while
    a fresh non-linear head still reads the spread — the guarantee covers linear attackers only."""
    rng = np.random.default_rng(4)
    arrays = _linear_gender(toy_manifest, rng, spread_ratio=3.0, frames=20)
    packed = PackedFeatures.from_arrays(arrays)
    gender = build_task("gender", toy_manifest)
    ids = list(arrays)
    concept = {u.id: float(u.gender == "male") for u in toy_manifest.utterances}
    erasers = fit_erasers(packed.means(ids), ids, gender.splits, concept)
    layout = RunLayout(tmp_path / "runs")
    _, plain = attack_representation(
        {s.name: packed for s in gender.splits},
        [gender],
        estimator=_attacker(epochs=30),
        manifest=toy_manifest,
        layout=layout,
        variant=BASE,
        store_info={"group": BASE},
    )
    (head,), probe = attack_representation(
        ErasedRepresentation(packed, erasers),
        [gender],
        estimator=_attacker(epochs=30),
        manifest=toy_manifest,
        layout=layout,
        variant=f"{BASE}@erase-gender",
        store_info={"group": BASE},
    )
    assert plain["gender_test_accuracy_mean"] >= 0.85  # before erasure the probe reads gender
    assert probe["gender_test_accuracy_mean"] <= 0.7, probe["gender_test_accuracy_mean"]
    assert head.metrics["test_accuracy_mean"] >= 0.85, head.metrics["test_accuracy_mean"]


# ------------------------------------------------------------------- control and dev choice
def test_a_privacy_sweep_always_fits_the_control_first():
    assert with_control([0.3, 1]) == [0.0, 0.3, 1.0]
    assert with_control([1, 0]) == [0.0, 1.0] and with_control([]) == []
    planned = PRIVACY.planned(BASE, {"privacy": [1.0]})
    assert [v.tag for v in planned] == ["privacy-l0", "privacy-l1"]
    assert parse(f"{BASE}@privacy-l1").control.name == f"{BASE}@privacy-l0"
    assert parse(f"{BASE}@privacy-l0").control is None
    assert parse(f"{BASE}@erase-gender").control is None


# Figures per λ: (dev UAR, dev attacker acc., test UAR, test attacker acc.). On test λ = 1 looks
# best (lowest attacker accuracy at the same UAR); on dev it costs 5 points of UAR, so the dev
# choice is λ = 0.3.
SWEEP = {
    0.0: (0.80, 0.95, 0.78, 0.96),
    0.3: (0.79, 0.85, 0.77, 0.90),
    1.0: (0.75, 0.70, 0.78, 0.60),
}
BASE_FIGURES = (0.81, 0.97, 0.79, 0.97)


def _write_privacy_runs(layout: RunLayout, name: str, figures: tuple[float, ...]) -> None:
    dev_uar, dev_acc, test_uar, test_acc = figures
    write_json(
        layout.head_dir(name, "emotion") / "metrics.json",
        {"backbone": name, "task": "emotion", "dev_uar_mean": dev_uar, "test_uar_mean": test_uar},
    )
    write_json(
        layout.head_dir(name, "gender") / "metrics.json",
        {
            "backbone": name,
            "task": "gender",
            "labels": ["female", "male"],
            "dev_accuracy_mean": dev_acc,
            "test_accuracy_mean": test_acc,
        },
    )
    write_json(
        layout.probe_dir(name) / "metrics.json",
        {
            "backbone": name,
            "gender_dev_accuracy_mean": dev_acc - 0.05,
            "gender_test_accuracy_mean": test_acc - 0.05,
        },
    )


def test_lambda_is_chosen_on_dev_never_on_test(tmp_path):
    layout = RunLayout(tmp_path)
    candidates = []
    for lam, figures in SWEEP.items():
        variant = PRIVACY.variant(BASE, lam=lam)
        _write_privacy_runs(layout, variant.name, figures)
        candidates.append((variant, privacy_figures(layout, variant.name, "dev")))
    choice = choose_lambda(candidates)
    assert choice.chosen == f"{BASE}@privacy-l0.3"
    assert "more than 0.02 below the λ = 0 control's" in choice.rejected[f"{BASE}@privacy-l1"]
    assert "attacker accuracy 0.950" in choice.rejected[f"{BASE}@privacy-l0"]
    # a looser floor admits λ = 1, the lowest dev attacker
    assert choose_lambda(candidates, uar_floor=0.06).chosen == f"{BASE}@privacy-l1"
    # the strongest attacker is the privacy axis's: the head (probes read 5 points less here)
    assert candidates[0][1]["attacker"] == "gender head"


def test_mitigate_privacy_fits_the_control_names_the_dev_choice_and_labels_test(
    tmp_path, monkeypatch
):
    """The command's wiring with the fits replaced by runs written with the figures above."""
    from trustser.cli.main import app
    from trustser.variants import privacy

    fitted = []

    def fake_fit(variant, request):
        fitted.append(variant.params["lam"])
        _write_privacy_runs(request.layout, variant.name, SWEEP[variant.params["lam"]])
        return VariantFit(variant.name)

    monkeypatch.setattr(privacy, "fit_privacy", fake_fit)
    layout = RunLayout(tmp_path / "runs")
    _write_privacy_runs(layout, BASE, BASE_FIGURES)
    result = CliRunner().invoke(
        app,
        ["mitigate", "privacy", "-b", BASE, "-r", str(layout.root), "--lambda", "0.3", "1"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert fitted == [0.0, 0.3, 1.0]
    assert f"Chosen on dev: {BASE}@privacy-l0.3" in result.output
    assert "DEV clips (these choose λ" in result.output
    assert "TEST figures for every λ (reported, never used to choose" in result.output
    # λ = 1 against the control on test: UAR +0.0, strongest attacker 60.0 - 96.0 = -36.0 points
    assert "+0.0" in result.output and "-36.0" in result.output
    offs = trade_off(layout, parse(f"{BASE}@privacy-l1"))
    assert offs["test"]["vs_control"]["attacker_accuracy"] == pytest.approx(0.60 - 0.96)
    assert offs["test"]["vs_base"]["uar"] == pytest.approx(0.78 - 0.79)


def _row(name: str, privacy: float, performance: float, dev: dict | None = None):
    base, _, tag = name.partition("@")
    entry = BackboneProfile(name=name, base=base if tag else None, variant=tag or None)
    for axis in axis_names():
        entry.raw[axis], entry.scores[axis] = 0.5, 0.5
    entry.raw["privacy"], entry.scores["privacy"] = privacy, 1.0 - privacy
    entry.raw["performance"], entry.scores["performance"] = performance, performance
    entry.dev = dict(dev or {})
    return entry


def test_recommend_ranks_only_the_variant_chosen_on_dev_among_one_backbones_lambdas():
    rows = [_row(BASE, 0.97, 0.79)]
    for lam, (dev_uar, dev_acc, test_uar, test_acc) in SWEEP.items():
        name = PRIVACY.variant(BASE, lam=lam).name
        rows.append(_row(name, test_acc, test_uar, {"uar": dev_uar, "attacker_accuracy": dev_acc}))
    profile = Profile(backbones=rows, scale="paper", scales={}, attack={})
    result = recommend(profile, weights="privacy=1,perf=1")
    ranked = [r.backbone for r in result.ranking]
    assert ranked == [f"{BASE}@privacy-l0.3", BASE]  # on test, λ = 1 would have ranked first
    assert "not chosen on dev" in result.excluded[f"{BASE}@privacy-l1"]
    assert "not chosen on dev" in result.excluded[f"{BASE}@privacy-l0"]
    assert result.dev_choices[0]["chosen"] == f"{BASE}@privacy-l0.3"
    assert "chosen on dev among" in recommendation_to_markdown(result)


def test_profile_keeps_dev_figures_and_compares_each_lambda_with_its_control(tmp_path):
    layout = RunLayout(tmp_path / "runs")
    _write_privacy_runs(layout, BASE, BASE_FIGURES)
    for lam, figures in SWEEP.items():
        _write_privacy_runs(layout, PRIVACY.variant(BASE, lam=lam).name, figures)
    profile = collect_profile(layout.root, bootstrap=0)
    l1 = profile.get(f"{BASE}@privacy-l1")
    assert l1.dev["uar"] == pytest.approx(0.75) and l1.dev["attacker_accuracy"] == 0.70
    assert profile.get(BASE).dev == {}
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile.to_dict()))
    assert read_profile(path).get(f"{BASE}@privacy-l1").dev == l1.dev
    rows = {r["variant"]: r for r in mitigation_rows(profile)}
    against = rows[f"{BASE}@privacy-l1"]["against_control"]
    assert rows[f"{BASE}@privacy-l1"]["control"] == f"{BASE}@privacy-l0"
    assert against["performance"]["delta_raw"] == pytest.approx(0.78 - 0.78)
    assert against["privacy"]["delta_raw"] == pytest.approx(0.60 - 0.96)
    assert rows[f"{BASE}@privacy-l0"]["against_control"] is None
    verdicts = {(a["model"], a["attacker"]): a for a in attacker_rows(profile)}
    head = verdicts[(f"{BASE}@privacy-l1", "gender head")]
    assert head["accuracy"] == 0.60 and head["defeated"] is None  # no clips, no interval


def test_mitigations_attacker_verdict_follows_the_interval():
    entry = _row(f"{BASE}@erase-gender", 0.55, 0.7)
    entry.privacy = {"gender": {"accuracy": 0.9, "chance_majority": 0.5}}
    entry.probe = {"gender_test_accuracy_mean": 0.55}
    entry.intervals = {
        "gender_accuracy_head": {"value": 0.9, "low": 0.8, "high": 0.97},
        "gender_accuracy_probe": {"value": 0.55, "low": 0.45, "high": 0.66},
    }
    profile = Profile(backbones=[_row(BASE, 0.97, 0.8), entry], scale="paper", scales={}, attack={})
    verdicts = {
        a["attacker"]: a["defeated"] for a in attacker_rows(profile) if a["model"] == entry.name
    }
    assert verdicts == {"gender head": False, "linear probe (all layers)": True}


def test_an_eraser_round_trips_through_safetensors(tmp_path):
    """The eraser round-trips through safetensors with its metadata (nothing unpickled)."""
    rng = np.random.default_rng(5)
    eraser = LayerEraser.fit(rng.standard_normal((20, 2, 3)), [0, 1] * 10)
    path = eraser.save(tmp_path / "eraser.safetensors", {"fold": "fold1"})
    loaded, info = LayerEraser.load(path)
    assert info == {"fold": "fold1"} and loaded.digest() == eraser.digest()
