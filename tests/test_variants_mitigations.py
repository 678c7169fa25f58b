"""Mitigations as variants: names, the adversarial and reweighted heads, fresh privacy attackers
(including a representation that fools only its own adversary), post-processing offsets, and
randomized smoothing with its adaptive attack and N× cost. Toy tone corpus, tiny random Whisper."""

from __future__ import annotations

import csv
import io
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from trustser.attacks import functional as AF
from trustser.attacks.batched import attack_clips
from trustser.attacks.methods import EOT, PGD, AttackError
from trustser.attacks.runner import PLAIN_SUBDIR, run_attack
from trustser.cli.main import app
from trustser.cost import measure_cost
from trustser.deployed.batches import predict_clips
from trustser.extract import extract
from trustser.heads.data import PackedFeatures
from trustser.heads.estimator import HeadClassifier
from trustser.heads.mitigated import cell_weights, reverse_gradient
from trustser.heads.model import load_head
from trustser.heads.tasks import Split, Task, build_task
from trustser.heads.training import default_estimator, fit_heads
from trustser.metrics._common import MetricWarning
from trustser.metrics.fairness import (
    equalized_odds_difference,
    multiclass_equalized_odds_difference,
)
from trustser.metrics.performance import uar_score
from trustser.profile.collect import collect_backbone, collect_profile
from trustser.profile.mitigations import mitigation_rows
from trustser.runs import ModelName, RunLayout, read_json
from trustser.variants import VariantError, fit_variant, parse
from trustser.variants.fairness import GENDERS, PostProcessing, reweighting_is_moot
from trustser.variants.fairness import KIND as FAIRNESS
from trustser.variants.privacy import KIND as PRIVACY
from trustser.variants.privacy import attack_representation, encoder_frames
from trustser.variants.smoothing import KIND as SMOOTHING
from trustser.variants.smoothing import SmoothedClassifier

BASE = "tiny:whisper"


# ----------------------------------------------------------------------------- names
@pytest.mark.parametrize(
    ("name", "kind", "params"),
    [
        ("w@privacy-l0.3", "privacy", {"lam": 0.3}),
        ("w@fair-post", "fair", {"method": "post"}),
        ("w@fair-reweight", "fair", {"method": "reweight"}),
        ("w@smooth-s30-n8", "smooth", {"snr_db": 30.0, "samples": 8}),
    ],
)
def test_mitigation_variants_parse(name, kind, params):
    parsed = parse(name)
    assert (parsed.base, parsed.kind.word, dict(parsed.params)) == ("w", kind, params)
    assert parsed.name == name and ModelName.parse(name).kind == kind
    assert RunLayout("runs").backbone_dir("tiny:w@" + parsed.tag).name == "tiny-w@" + parsed.tag


def test_mitigation_variant_builders_and_bad_tags():
    assert PRIVACY.variant("w", lam=1).name == "w@privacy-l1"
    assert FAIRNESS.variant("w@top1", method="post").name == "w@fair-post"
    assert SMOOTHING.variant("w", snr_db=30, samples=8).name == "w@smooth-s30-n8"
    for tag in ("privacy-x", "fair-pre", "smooth-s30", "smooth-s30-n0"):
        with pytest.raises(VariantError, match="variant is"):
            parse(f"w@{tag}")
    with pytest.raises(VariantError):
        SMOOTHING.variant("w", snr_db=30, samples=0)
    with pytest.raises(VariantError):
        PRIVACY.variant("w", lam=-1)
    # what the stages ask each kind
    post, reweight = parse("w@fair-post"), parse("w@fair-reweight")
    smooth = parse("w@smooth-s30-n8")
    assert post.not_attackable and reweight.not_attackable is None
    assert post.needs_gender_at_inference and not reweight.needs_gender_at_inference
    assert smooth.randomized and smooth.inference_passes == 8 and smooth.uses_base_heads
    assert all(v.exposes_base_representation for v in (post, reweight, smooth))
    assert not parse("w@privacy-l1").exposes_base_representation


# ------------------------------------------------------------------------- estimator
def test_gradient_reversal_scales_and_flips():
    x = torch.ones(3, requires_grad=True)
    reverse_gradient(x, 0.3).sum().backward()
    assert torch.allclose(x.grad, torch.full((3,), -0.3))


def test_cell_weights_equalise_cells():
    labels = ["a", "a", "a", "b", "a", "b", "b", "b"]
    genders = ["f", "f", "f", "f", "m", "m", "m", "m"]
    weights, cells = cell_weights(labels, genders)
    totals = {}
    for w, cell in zip(weights, zip(genders, labels, strict=True), strict=True):
        totals[cell] = totals.get(cell, 0.0) + w
    assert np.allclose(list(totals.values()), 2.0) and len(cells) == 4
    assert np.isclose(weights.sum(), len(labels))


# ---------------------------------------------------------------------- fresh attackers
def test_a_representation_that_fools_only_its_own_adversary_does_not_score_private(
    tmp_path, toy_manifest
):
    """Gender is the XOR of two signs: a linear adversary (what training fought) is at chance,
    but the fresh gender head trained on the representation finds it."""
    rng = np.random.default_rng(0)
    arrays, genders = {}, {}
    for u in toy_manifest.utterances:
        a = rng.choice([-1.0, 1.0])
        b = a if u.gender == "female" else -a
        frames = np.array([[a, b]] * 4) + 0.05 * rng.standard_normal((4, 2))
        arrays[u.id] = frames[None].astype(np.float32)  # [1, T, 2]
        genders[u.id] = u.gender
    encoded = PackedFeatures.from_arrays(arrays)
    gender = build_task("gender", toy_manifest)
    split = gender.splits[0]
    means = encoded.means(list(arrays))[:, 0]
    row = {i: k for k, i in enumerate(arrays)}
    linear = LogisticRegression().fit(
        means[[row[i] for i in split.train]], [genders[i] for i in split.train]
    )
    own = linear.score(means[[row[i] for i in split.test]], [genders[i] for i in split.test])
    assert own <= 0.7  # the adversary the representation was made against: fooled

    runs, probe = attack_representation(
        {s.name: encoded for s in gender.splits},
        [gender],
        manifest=toy_manifest,
        layout=RunLayout(tmp_path / "runs"),
        variant=f"{BASE}@privacy-l1",
        store_info={"group": BASE},
        estimator=HeadClassifier(hidden=16, lr=1e-2, epochs=60, device="cpu"),
    )
    fresh = runs[0].metrics["test_accuracy_mean"]
    assert fresh >= 0.9, fresh  # a fresh attacker is not fooled: the variant is not private
    # and the profile reports it so: its privacy axis holds what the fresh attackers found
    row = collect_profile(tmp_path / "runs", bootstrap=0).get(f"{BASE}@privacy-l1")
    assert row.raw["privacy"] >= 0.9 and row.privacy["axis"]["attacker"] == "gender head"
    assert (
        probe["gender_test_accuracy_mean"] <= 0.7
    )  # the linear probe is fooled like the adversary


# ------------------------------------------------------------------- on the toy store
@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory, toy_manifest_factory):
    root = tmp_path_factory.mktemp("mitigate")
    manifest = toy_manifest_factory(root / "toy")
    store = root / "cache.zarr"
    extract(manifest, store, BASE, device="cpu", progress=False)
    runs = root / "runs"
    fit_heads(
        store,
        None,
        HeadClassifier(epochs=3, lr=1e-2, device="cpu"),
        task="all",
        runs=runs,
        folds="1,2",
    )
    return {"store": store, "runs": runs, "manifest": manifest}


def _clean_predictions(out_dir) -> dict[str, str]:
    with open(out_dir / "clips.csv", newline="") as handle:
        return {row["id"]: row["clean_pred"] for row in csv.DictReader(handle)}


def _cached_predictions(directory) -> dict[str, str]:
    with open(directory / "predictions.csv", newline="") as handle:
        return {row["id"]: row["pred"] for row in csv.DictReader(handle)}


def test_privacy_variant_is_deployed_as_trained_and_its_control_has_no_adversary(toy_runs):
    store, runs = toy_runs["store"], toy_runs["runs"]
    estimator = default_estimator(epochs=3, patience=0, device="cpu")
    trained = fit_variant(store, f"{BASE}@privacy-l1", estimator, runs=runs, folds="1,2")
    control = fit_variant(store, f"{BASE}@privacy-l0", estimator, runs=runs, folds="1")
    layout = RunLayout(runs)
    head, sidecar = load_head(layout.head_path(trained.variant, "emotion", "fold1"))
    _, control_sidecar = load_head(layout.head_path(control.variant, "emotion", "fold1"))
    assert 0.0 <= sidecar["mitigation"]["training_adversary_dev_accuracy"] <= 1.0
    assert control_sidecar["mitigation"]["training_adversary_dev_accuracy"] is None
    assert control_sidecar["hyperparameters"]["adversary_weight"] == 0.0
    # the shared representation the attackers read: [1, T, H] per clip
    ids = list(sidecar["test_ids"])
    from trustser.store import open_group

    group, _ = open_group(store, BASE)
    encoded = encoder_frames(head, PackedFeatures.from_source(group, ids), ids)
    assert (encoded.num_layers, encoded.dim) == (1, head.hidden)
    # deployed end to end, the variant classifies clean clips as its cached-feature run did
    run = run_attack(store, trained.variant, runs=runs, method="fgsm", snr_db=30, device="cpu")
    clean = _clean_predictions(run.results[0].out_dir)
    cached = _cached_predictions(layout.head_dir(trained.variant, "emotion"))
    agree = np.mean([clean[i] == cached[i] for i in clean])
    assert len(clean) >= 16 and agree >= 0.9, agree


def test_erasure_variant_deploys_the_eraser_its_heads_were_trained_behind(toy_runs):
    from trustser.deployed.loading import FoldHead, reload_backbone
    from trustser.end_to_end import EndToEndClassifier
    from trustser.store import open_group
    from trustser.variants.erasure import ERASER_FILE, LayerEraser

    store, runs = toy_runs["store"], toy_runs["runs"]
    estimator = default_estimator(epochs=2, patience=0, device="cpu")
    result = fit_variant(store, f"{BASE}@erase-gender", estimator, runs=runs, folds="1")
    assert [t.task for t in result.tasks] == ["emotion", "gender", "speaker"]
    layout = RunLayout(runs)
    path = layout.head_path(result.variant, "emotion", "fold1")
    head, sidecar = load_head(path)
    eraser, info = LayerEraser.load(path.parent / ERASER_FILE)
    assert info["fold"] == "fold1" and sidecar["mitigation"]["eraser_sha256"] == eraser.digest()
    group, _ = open_group(store, BASE)
    provenance = dict(group.provenance)
    device = torch.device("cpu")
    deployed = parse(result.variant).fold_encoder(
        reload_backbone(provenance, device), FoldHead(path, sidecar, provenance, device)
    )
    model = EndToEndClassifier(deployed, head)
    utterance = toy_runs["manifest"][sidecar["test_ids"][0]]
    from trustser.deployed.loading import load_waveforms

    (waveform,) = load_waveforms([utterance], provenance)
    logits = model(waveform[None], torch.tensor([waveform.numel()]))
    cached = torch.as_tensor(group.frames(utterance.id))[None]  # [1, L, T, D]
    mask = torch.ones(1, cached.shape[2], dtype=torch.bool)
    with torch.no_grad():
        expected = head(eraser.erase_frames(cached), mask)
        unerased = head(cached, mask)
    gap = (logits - expected).abs().max().item()
    assert gap < 0.05 and gap < (logits - unerased).abs().max().item(), gap
    attack = run_attack(store, result.variant, runs=runs, method="fgsm", snr_db=30, device="cpu")
    clean = _clean_predictions(attack.results[0].out_dir)
    cached_run = _cached_predictions(layout.head_dir(result.variant, "emotion"))
    assert np.mean([clean[i] == cached_run[i] for i in clean]) >= 0.9


def _fold_figures(rows: list[dict[str, str]], labels: list[str]) -> dict[str, dict[str, float]]:
    """Per fold of a predictions.csv: UAR and the axis's multiclass EO, by the metric functions."""
    out = {}
    for fold in sorted({r["fold"] for r in rows}):
        part = [r for r in rows if r["fold"] == fold]
        true, pred = [r["true"] for r in part], [r["pred"] for r in part]
        genders = [r["gender"] for r in part]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MetricWarning)
            eo = multiclass_equalized_odds_difference(true, pred, genders, labels=labels)
        out[fold] = {"uar": uar_score(true, pred, labels=labels), "eo_multiclass": eo}
    return out


def _csv_rows(path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_fairness_variants(toy_runs, tmp_path):
    store = toy_runs["store"]
    runs = tmp_path / "runs"
    shutil.copytree(toy_runs["runs"], runs)
    post = fit_variant(store, f"{BASE}@fair-post", runs=runs)
    assert post.variant == f"{BASE}@fair-post"
    assert set(post.inherited) == {"gender", "speaker"}
    # every per-fold figure recorded is the figure of the predictions written: after from the
    # variant's, before from the base's (the offsets change nothing else)
    layout = RunLayout(runs)
    labels = post.metrics["labels"]
    after = _fold_figures(
        _csv_rows(layout.head_dir(post.variant, "emotion") / "predictions.csv"), labels
    )
    before = _fold_figures(_csv_rows(layout.head_dir(BASE, "emotion") / "predictions.csv"), labels)
    for fold in post.metrics["folds"]:
        name = fold["fold"]
        assert fold["test_uar"] == pytest.approx(after[name]["uar"])
        assert fold["test_eo_multiclass_after"] == pytest.approx(after[name]["eo_multiclass"])
        assert fold["test_eo_multiclass_before"] == pytest.approx(before[name]["eo_multiclass"])
        assert "dev_eo_worst_class_after" in fold and fold["objective"].startswith("multiclass")
    assert post.metrics["test_eo_multiclass_after_mean"] == pytest.approx(
        np.mean([f["eo_multiclass"] for f in after.values()])
    )
    args = ["mitigate", "fairness", "-s", str(store), "-b", BASE, "-r", str(runs)]
    shown = CliRunner().invoke(app, [*args, "--method", "post"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    before_mean = post.metrics["test_eo_multiclass_before_mean"]
    after_mean = post.metrics["test_eo_multiclass_after_mean"]
    assert f"{100 * before_mean:.1f} → {100 * after_mean:.1f}" in shown.output
    with pytest.raises(AttackError, match="gender at inference"):
        run_attack(store, post.variant, runs=runs, device="cpu")
    # ... and the profile says so instead of naming an attack command that would fail
    row = collect_backbone(runs, post.variant, store=str(store))
    assert "gender at inference" in row.not_measurable["safety"] and "safety" not in row.missing
    reweighted = fit_variant(
        store,
        f"{BASE}@fair-reweight",
        default_estimator(epochs=2, device="cpu"),
        runs=runs,
        folds="1",
    )
    (run,) = reweighted.tasks
    assert run.backbone == f"{BASE}@fair-reweight" and "gender" in reweighted.inherited
    sidecar = json.loads((run.directory / "fold1" / "head.json").read_text())
    weights = sidecar["mitigation"]["cell_weights"]
    assert len(weights) == 8  # 2 genders × 4 emotions


def test_post_processing_applies_the_dev_offsets_to_test_clips(toy_runs, tmp_path, monkeypatch):
    """Dev and test differ: on dev the women's last class is under-predicted, on test their
    second-to-last. The test predictions written must be the test log-probabilities plus the
    offsets fitted on dev (those of offsets.json); offsets fitted on the test clips would
    predict differently."""
    store, manifest = toy_runs["store"], toy_runs["manifest"]
    runs = tmp_path / "runs"
    shutil.copytree(toy_runs["runs"], runs)
    layout = RunLayout(runs)
    rng = np.random.default_rng(0)
    planted = {}
    for fold in ("fold1", "fold2"):
        _, sidecar = load_head(layout.head_path(BASE, "emotion", fold))
        labels = list(sidecar["labels"])
        for role, hidden in (("dev", labels[-1]), ("test", labels[-2])):
            ids = list(sidecar[f"{role}_ids"])
            logits = 0.1 * rng.standard_normal((len(ids), len(labels)))
            for k, i in enumerate(ids):
                utterance = manifest[i]
                logits[k, labels.index(utterance.emotion)] += 4.0
                if utterance.gender == "female":
                    logits[k, labels.index(hidden)] -= 4.0
            logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
            planted[(fold, role)] = (ids, logp)

    def tagged_head(path, **options):  # a fold's dev ids may be another fold's test ids
        head, sidecar = load_head(path, **options)
        head.fold = Path(path).parent.name
        return head, sidecar

    def planted_log_proba(head, source, ids, **_):
        role = next(r for r in ("dev", "test") if planted[(head.fold, r)][0] == list(ids))
        return planted[(head.fold, role)][1]

    monkeypatch.setattr("trustser.variants.fairness.load_head", tagged_head)
    monkeypatch.setattr("trustser.variants.fairness.head_log_proba", planted_log_proba)
    post = fit_variant(store, f"{BASE}@fair-post", runs=runs)
    written = _csv_rows(layout.head_dir(post.variant, "emotion") / "predictions.csv")
    differs = 0
    for fold in ("fold1", "fold2"):
        fitted = {}
        for role in ("dev", "test"):
            ids, logp = planted[(fold, role)]
            true = [labels.index(manifest[i].emotion) for i in ids]
            genders = [manifest[i].gender for i in ids]
            fitted[role] = PostProcessing().fit(logp, true, genders)
        offsets = read_json(layout.head_dir(post.variant, "emotion") / fold / "offsets.json")
        for g, row in zip(GENDERS, fitted["dev"].offsets, strict=True):
            assert offsets["offsets"][g] == pytest.approx(dict(zip(labels, row, strict=True)))
        assert fitted["dev"].offsets[0, labels.index(labels[-1])] > 0  # women's dev class raised
        ids, logp = planted[(fold, "test")]
        genders = [manifest[i].gender for i in ids]
        expected = dict(zip(ids, fitted["dev"].predict(logp, genders), strict=True))
        on_test = dict(zip(ids, fitted["test"].predict(logp, genders), strict=True))
        rows = [r for r in written if r["fold"] == fold]
        assert sorted(r["id"] for r in rows) == sorted(ids)
        for row in rows:
            assert row["pred"] == labels[expected[row["id"]]]
            differs += row["pred"] != labels[on_test[row["id"]]]
    assert differs > 0  # a fit on the test clips would not have written these predictions


def _planted_split(rng: np.random.Generator, n: int = 800, classes: int = 4):
    """Clips whose women's class 1 is under-predicted (its log-probability pushed down)."""
    true = rng.integers(0, classes, n)
    genders = np.where(rng.random(n) < 0.5, "female", "male")
    logits = rng.normal(0, 1, (n, classes))
    logits[np.arange(n), true] += 2.0
    logits[genders == "female", 1] -= 2.0
    return logits - np.log(np.exp(logits).sum(1, keepdims=True)), true, genders


def _class_tpr_gap(true, pred, genders, c: int) -> float:
    tpr = {g: np.mean(pred[(genders == g) & (true == c)] == c) for g in GENDERS}
    return tpr["female"] - tpr["male"]


def test_post_processing_fitted_on_dev_closes_a_planted_gap_on_held_out_clips():
    """Offsets fitted on one sample close the planted gap on another from the same source:
    the women's class-1 TPR gap and the axis's multiclass EO fall on the held-out clips, and
    what the fit records is the axis's own figure (the metric functions of docs/metrics.md)."""
    rng = np.random.default_rng(0)
    dev, test = _planted_split(rng), _planted_split(rng)
    post = PostProcessing().fit(*dev)
    logp, true, genders = test
    before, after = logp.argmax(1), post.predict(logp, genders)
    assert post.offsets[0, 1] > 0  # women's class 1 raised
    assert (
        abs(_class_tpr_gap(true, after, genders, 1))
        <= abs(_class_tpr_gap(true, before, genders, 1)) / 2
    )
    eo = {
        k: multiclass_equalized_odds_difference(true, p, genders)
        for k, p in (("before", before), ("after", after))
    }
    assert eo["after"] < eo["before"] - 0.03
    assert uar_score(true, after) >= uar_score(true, before) - 0.03
    dev_pred = post.predict(dev[0], dev[2])
    info = post.fit_info
    assert info["dev_eo_multiclass_after"] == pytest.approx(
        multiclass_equalized_odds_difference(dev[1], dev_pred, dev[2])
    )
    assert info["dev_eo_worst_class_after"] == pytest.approx(
        equalized_odds_difference(dev[1], dev_pred, dev[2], aggregate="max")
    )
    assert info["dev_uar_after"] >= info["dev_uar_before"] - post.uar_floor - 1e-12


def test_post_processing_minimises_the_axis_figure_not_the_worst_class_gap():
    """At the fitted offsets no single offset move on the grid that keeps the UAR floor lowers
    the dev multiclass EO (coordinate-wise optimum of the axis's figure); the worst-class gap is
    only reported, and here a move that lowers it exists."""
    rng = np.random.default_rng(1)
    logp, true, genders = _planted_split(rng, n=400)
    post = PostProcessing(sweeps=30).fit(logp, true, genders)
    floor = post.fit_info["dev_uar_before"] - post.uar_floor
    best = multiclass_equalized_odds_difference(true, post.predict(logp, genders), genders)
    lower_worst = False
    for g in range(2):
        for c in range(1, logp.shape[1]):
            for value in post.grid:
                trial = PostProcessing(offsets=post.offsets.copy())
                trial.offsets[g, c] = value
                pred = trial.predict(logp, genders)
                if uar_score(true, pred) < floor - 1e-12:
                    continue
                assert multiclass_equalized_odds_difference(true, pred, genders) >= best - 1e-12
                worst = equalized_odds_difference(true, pred, genders, aggregate="max")
                lower_worst |= worst < post.fit_info["dev_eo_worst_class_after"] - 1e-9
    assert lower_worst


# ------------------------------------------------------------------------- smoothing
class _TinyModel(torch.nn.Module):
    """A fixed random linear classifier of waveforms of up to 64 samples (padding adds 0)."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weight = torch.randn(4, 64, generator=generator)

    def forward(self, waveforms, lengths):
        return 20 * waveforms @ self.weight[:, : waveforms.shape[1]].T


def _two_class(score: torch.Tensor) -> torch.Tensor:
    """Logits ``[0, score]``: class 1 wins where ``score > 0``."""
    return torch.stack([torch.zeros_like(score), score], dim=1)


class _Concave(torch.nn.Module):
    """Class 1's logit is ``−0.05 + Σₜ (xₜ − xₜ²)``: from ``x = 0`` FGSM's corner ``x = 1``
    (logit ≈ 0, so a noisy pass is a coin toss there) is a poor point; ``x = 0.5`` is best."""

    def forward(self, waveforms, lengths):
        return _two_class(-0.05 + (waveforms - waveforms**2).sum(1))


class _Rippled(torch.nn.Module):
    """Class 1's logit is ``s·x + 0.4 Σₜ cos(10 xₜ)``: under smoothing noise the ripple's
    gradient (up to ±4 per sample) is noise, while its expectation is the slope ``s`` (±1)."""

    def __init__(self, length: int) -> None:
        super().__init__()
        self.slope = torch.where(torch.arange(length) % 3 == 0, -1.0, 1.0)

    def forward(self, waveforms, lengths):
        return _two_class(waveforms @ self.slope + 0.4 * torch.cos(10 * waveforms).sum(1))


class _TwoMoods(torch.nn.Module):
    """A randomized toy whose calls alternate between two linear classifiers: class 1's logit is
    ``bias[k] + scale[k] · direction[k] · x`` on call k mod 2."""

    def __init__(self, bias, scale, directions) -> None:
        super().__init__()
        self.bias, self.scale, self.directions = bias, scale, directions
        self.calls = 0

    def forward(self, waveforms, lengths):
        k = self.calls % 2
        self.calls += 1
        return _two_class(self.bias[k] + self.scale[k] * waveforms @ self.directions[k])


def test_smoothing_is_the_mean_softmax_over_noisy_copies():
    model = _TinyModel()
    x = torch.randn(3, 64)
    lengths = torch.full((3,), 64)
    smoothed = SmoothedClassifier(model, snr_db=200, samples=4)
    assert torch.allclose(
        smoothed(x, lengths).exp(), torch.softmax(model(x, lengths), 1), atol=1e-5
    )
    noisy = SmoothedClassifier(model, snr_db=10, samples=3, seed=1)
    again = SmoothedClassifier(model, snr_db=10, samples=3, seed=1)
    assert torch.equal(noisy(x, lengths), again(x, lengths))  # deterministic given the seed
    assert torch.allclose(noisy(x, lengths).exp().sum(1), torch.ones(3))


def test_a_smoothed_prediction_fixes_each_clips_draws_by_its_seed():
    model = _TinyModel()
    smoothed = SmoothedClassifier(model, snr_db=0, samples=3, seed=1)
    x = torch.randn(2, 64, generator=torch.Generator().manual_seed(4))
    x[1, 40:] = 0.0
    lengths = torch.tensor([64, 40])
    predict = smoothed.seeded([11, 12])
    first = predict(x, lengths)
    assert torch.equal(first, predict(x, lengths))  # the same draws on every call
    assert not torch.equal(smoothed(x, lengths), smoothed(x, lengths))  # a plain call redraws
    # clip 1 alone, without padding, with its own seed: the same prediction as in the batch
    alone = smoothed.seeded([12])(x[1:, :40], lengths[1:])
    assert torch.allclose(alone, first[1:], atol=1e-6)
    assert not torch.allclose(smoothed.seeded([13])(x[1:, :40], lengths[1:]), alone)
    # exactly the mean softmax over N copies drawn from the clip's seeded generator
    generator = torch.Generator().manual_seed(11)
    sigma = x[0].pow(2).mean().sqrt()
    copies = [x[:1] + sigma * torch.randn(64, generator=generator) for _ in range(3)]
    expected = torch.stack([torch.softmax(model(c, lengths[:1]), 1) for c in copies]).mean(0)
    assert torch.allclose(first[:1].exp(), expected, atol=1e-5)


def test_a_lucky_noisy_pass_does_not_stop_pgd():
    """At FGSM's corner a noisy pass of :class:`_Concave` says "class 1" about one time in four,
    while one more step flips the clip for good. Judged by fresh passes, PGD froze those clips
    at the corner and a second pass called most of them correct again (82–86 % ASR here);
    judged by the clip's verdict, a clip stops only where the verdict says it is flipped."""
    clips, samples = 64, 16
    x = torch.zeros(clips, samples)
    mask = torch.ones(clips, samples, dtype=torch.bool)
    lengths = torch.full((clips,), samples)
    labels = torch.zeros(clips, dtype=torch.long)
    for seed in range(3):
        smoothed = SmoothedClassifier(_Concave(), snr_db=20, samples=2, seed=seed)
        verdict = smoothed.seeded([1000 * seed + i for i in range(clips)])
        corner = verdict(x + 1.0, lengths).argmax(1)
        assert 0 < int(corner.sum()) < clips  # the corner is a coin toss under the noise
        adversarial = AF.pgd(
            smoothed, x, labels=labels, mask=mask, epsilon=1.0, steps=10, verdict=verdict
        )
        assert bool((verdict(adversarial, lengths).argmax(1) != labels).all()), seed
        pushed = ~(adversarial == 1.0).all(1)  # clips that left FGSM's corner
        assert torch.equal(pushed, corner == 0)  # exactly those the verdict did not flip there


def test_eot_gradient_is_the_raw_mean_over_draws_rescaled_once():
    samples = 32
    generator = torch.Generator().manual_seed(0)
    u, v = (torch.randn(samples, generator=generator, dtype=torch.float64) for _ in range(2))
    x = torch.zeros(1, samples, dtype=torch.float64)
    mask = torch.ones(1, samples, dtype=torch.bool)
    labels = torch.zeros(1, dtype=torch.long)
    # draw 0 is confident (p(class 1) ≈ 2e-9, raw gradient tiny), draw 1 unsure (p = 0.5)
    toy = _TwoMoods(bias=(-20.0, 0.0), scale=(3.0, 1.0), directions=(u, v))
    eot, _ = AF.eot_gradient(toy, x, labels=labels, mask=mask, samples=2)
    # the gradient of the mean loss over the same two draws, by autograd
    x_grad = x.clone().requires_grad_(True)
    loss = sum(torch.nn.functional.cross_entropy(toy(x_grad, None), labels) for _ in range(2))
    (raw,) = torch.autograd.grad(loss, x_grad)
    assert torch.allclose(eot / eot.norm(), raw / raw.norm(), atol=1e-9)  # a positive multiple
    assert torch.equal(torch.sign(eot), torch.sign(v)[None])  # led by the unsure draw
    toy.calls = 0
    per_draw = sum(AF.loss_gradient(toy, x, labels=labels, mask=mask)[0] for _ in range(2))
    assert bool((torch.sign(per_draw) != torch.sign(eot)).any())  # the old weighting differs
    # two confident draws: the raw mean underflows in float32, the rescaled one does not
    confident = _TwoMoods((-200.0, -210.0), (1.0, 1.0), directions=(u.float(), v.float()))
    x32 = x.float()
    eot, _ = AF.eot_gradient(confident, x32, labels=labels, mask=mask, samples=2)
    assert torch.equal(torch.sign(eot), torch.sign(u.float())[None])  # weight 1 vs e^-10


def test_eot_gradient_on_a_deterministic_model_is_the_loss_gradient():
    model = _TinyModel()
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(2))
    mask = torch.ones(3, 64, dtype=torch.bool)
    labels = torch.tensor([0, 1, 2])
    direction, logits = AF.loss_gradient(model, x, labels=labels, mask=mask)
    eot, eot_logits = AF.eot_gradient(model, x, labels=labels, mask=mask, samples=4)
    assert torch.allclose(eot, direction, rtol=1e-5, atol=1e-6)
    assert torch.allclose(eot_logits, torch.log_softmax(logits, 1), atol=1e-5)
    with pytest.raises(ValueError, match="samples"):
        AF.eot(0)


def test_attack_clips_counts_a_clip_by_its_verdict():
    """The clean prediction and the adversarial one are the clip's seeded verdict, whatever its
    batch: recomputed clip by clip, alone; fresh noisy passes would have said otherwise."""
    smoothed = SmoothedClassifier(_TinyModel(), snr_db=0, samples=2, seed=3)
    generator = torch.Generator().manual_seed(5)
    clips = [torch.randn(64 - 3 * i, generator=generator) for i in range(12)]
    seeds = [100 + i for i in range(12)]

    def verdict_alone(i: int, waveform: torch.Tensor) -> int:
        length = torch.tensor([waveform.numel()])
        return int(smoothed.seeded([seeds[i]])(waveform[None], length).argmax())

    clean = predict_clips(smoothed, clips, batch_size=5, clip_seeds=seeds).argmax(1)
    assert [int(c) for c in clean] == [verdict_alone(i, c) for i, c in enumerate(clips)]
    outcome = attack_clips(
        smoothed,
        clips,
        attack=EOT(PGD(20.0, steps=3), 2),
        labels=clean.tolist(),
        batch_size=5,
        clip_seeds=seeds,
        keep=frozenset(range(12)),
    )
    adversarial = [outcome.adversarial[i] for i in range(12)]
    assert outcome.adv_pred.tolist() == [verdict_alone(i, a) for i, a in enumerate(adversarial)]
    fresh = [
        [int(smoothed(a[None], torch.tensor([a.numel()])).argmax()) for a in adversarial]
        for _ in range(5)
    ]
    assert any(f != outcome.adv_pred.tolist() for f in fresh)  # the noise alone changes calls


def test_the_adaptive_attack_beats_the_plain_one_where_one_pass_gradient_is_noise():
    """With the same ε and the same verdict, EOT-PGD follows the expected gradient of
    :class:`_Rippled` (the slope) while plain PGD follows one noisy pass's: the adaptive attack
    flips far more clips, seed after seed."""
    clips, samples = 64, 64
    model = _Rippled(samples)
    mask = torch.ones(clips, samples, dtype=torch.bool)
    lengths = torch.full((clips,), samples)
    labels = torch.zeros(clips, dtype=torch.long)
    for seed in range(3):
        noise = torch.randn(clips, samples, generator=torch.Generator().manual_seed(seed))
        x = -0.5 * model.slope + 0.05 * noise  # class 0 by a margin of about 32
        smoothed = SmoothedClassifier(model, snr_db=0, samples=2, seed=seed)
        verdict = smoothed.seeded(range(clips))
        assert bool((verdict(x, lengths).argmax(1) == labels).all())
        asr = {}
        for name, gradient in (("plain", AF.loss_gradient), ("adaptive", AF.eot(16))):
            adversarial = AF.pgd(
                smoothed,
                x,
                labels=labels,
                mask=mask,
                epsilon=1.0,
                steps=10,
                gradient=gradient,
                verdict=verdict,
            )
            assert float((adversarial - x).abs().max()) <= 1.0 + 1e-6  # the same ε budget
            asr[name] = float((verdict(adversarial, lengths).argmax(1) != labels).float().mean())
        assert asr["adaptive"] >= asr["plain"] + 0.4, (seed, asr)
    assert EOT(PGD(30.0), 4).settings()["eot_samples"] == 4


def test_smoothed_variant_attacks_adaptive_and_plain_and_costs_n_passes(toy_runs):
    store, runs = toy_runs["store"], toy_runs["runs"]
    variant = SMOOTHING.variant(BASE, snr_db=30, samples=2).name
    fit_variant(store, variant, default_estimator(epochs=1, device="cpu"), runs=runs, folds="1,2")
    run = run_attack(
        store, variant, runs=runs, method="pgd", snr_db=30, steps=2, eot_samples=2, device="cpu"
    )
    (adaptive,) = run.results
    layout = RunLayout(runs)
    out_dir = layout.attack_dir(variant, "pgd", 30)
    assert adaptive.out_dir == out_dir
    summary = read_json(out_dir / "summary.json")
    assert summary["settings"]["eot_samples"] == 2 and "verdict" in summary["settings"]
    plain = read_json(out_dir / PLAIN_SUBDIR / "summary.json")
    assert summary["settings"]["plain_attack"]["asr_mean"] == plain["asr_mean"]
    assert "eot_samples" not in plain["settings"]
    # one verdict per clip: the attack's clean pass says what the variant's evaluation said
    predicted = {r["id"]: r["pred"] for r in _rows_in(layout.head_dir(variant, "emotion"))}
    for directory in (out_dir, out_dir / PLAIN_SUBDIR):
        rows = _rows_in(directory, "clips.csv")
        assert rows and all(predicted[r["id"]] == r["clean_pred"] for r in rows)
    # the profile holds the adaptive ASR on the safety axis and shows the plain one beside it
    profile = collect_profile(runs, backbones=[BASE, variant], attack=("pgd", 30), bootstrap=0)
    (row,) = [r for r in mitigation_rows(profile) if r["variant"] == variant]
    assert row["axes"]["safety"]["raw"] == pytest.approx(summary["asr_mean"])
    assert row["plain_asr"] == pytest.approx(plain["asr_mean"])
    with pytest.raises(AttackError, match="randomized defences"):
        run_attack(store, BASE, runs=runs, eot_samples=2, device="cpu")
    base = measure_cost(BASE, device="cpu", timing=False, seconds=1.0)
    smoothed = measure_cost(variant, device="cpu", timing=False, seconds=1.0)
    assert smoothed.total_macs == 2 * base.total_macs
    assert smoothed.total_params == base.total_params and smoothed.inference_passes == 2


def _rows_in(directory, name: str = "predictions.csv") -> list[dict[str, str]]:
    with open(directory / name, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _task(cells: dict[tuple[str, str], int]) -> tuple[Task, dict[str, str]]:
    """A one-fold emotion task whose training clips fill (gender, emotion) cells as asked."""
    label_of, genders = {}, {}
    for (gender, emotion), count in cells.items():
        for k in range(count):
            utterance = f"{gender}-{emotion}-{k}"
            label_of[utterance], genders[utterance] = emotion, gender
    split = Split("fold1", train=tuple(label_of), dev=(), test=())
    labels = tuple(dict.fromkeys(label_of.values()))
    return Task("emotion", labels, label_of, (split,), "toy"), genders


def test_fair_reweight_says_when_its_weights_are_the_base_class_weights():
    # every emotion split evenly by gender: cell weights N/(K n_gc) = N/(C n_c), the base's
    even, genders = _task({("f", "a"): 4, ("m", "a"): 4, ("f", "b"): 2, ("m", "b"): 2})
    assert reweighting_is_moot(even, even.splits[0], genders, "balanced")
    # ... but not against unweighted classes, nor when one emotion leans to one gender
    assert not reweighting_is_moot(even, even.splits[0], genders, None)
    cells = {("f", "a"): 3, ("m", "a"): 3, ("f", "b"): 3, ("m", "b"): 3}
    uniform, genders = _task(cells)  # every cell the same size: weights all equal
    assert reweighting_is_moot(uniform, uniform.splits[0], genders, None)
    skewed, genders = _task({("f", "a"): 5, ("m", "a"): 3, ("f", "b"): 2, ("m", "b"): 2})
    assert not reweighting_is_moot(skewed, skewed.splits[0], genders, "balanced")
