"""Mitigations as variants: names, the adversarial and reweighted heads, fresh privacy attackers
(including a representation that fools only its own adversary), post-processing offsets, and
randomized smoothing with its adaptive attack and N× cost. Toy tone corpus, tiny random Whisper."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from trustser.attacks import functional as AF
from trustser.attacks.methods import EOT, PGD, AttackError
from trustser.attacks.runner import PLAIN_SUBDIR, run_attack
from trustser.cost import measure_cost
from trustser.extract import extract
from trustser.heads.data import PackedFeatures
from trustser.heads.estimator import HeadClassifier
from trustser.heads.mitigated import cell_weights, reverse_gradient
from trustser.heads.model import load_head
from trustser.heads.tasks import build_task
from trustser.heads.training import default_estimator, fit_heads
from trustser.profile import collect_profile
from trustser.runs import ModelName, RunLayout, read_json
from trustser.variants import VariantError, fit_variant, parse
from trustser.variants.fairness import KIND as FAIRNESS
from trustser.variants.fairness import PostProcessing, worst_class_eo_gap
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


def test_fairness_variants(toy_runs):
    store, runs = toy_runs["store"], toy_runs["runs"]
    post = fit_variant(store, f"{BASE}@fair-post", runs=runs)
    assert post.variant == f"{BASE}@fair-post"
    assert set(post.inherited) == {"gender", "speaker"}
    for fold in post.metrics["folds"]:
        assert fold["dev_uar_after"] >= fold["dev_uar_before"] - 0.02 - 1e-9
        assert fold["dev_worst_eo_gap_after"] <= fold["dev_worst_eo_gap_before"] + 1e-9
    assert (RunLayout(runs).head_dir(post.variant, "emotion") / "predictions.csv").is_file()
    with pytest.raises(AttackError, match="gender at inference"):
        run_attack(store, post.variant, runs=runs, device="cpu")
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


def test_post_processing_closes_a_planted_gap():
    """Women's 'angry' is under-predicted (its log-probability pushed down): the offsets fitted
    on these clips raise it back, cutting the worst-class EO gap, within the UAR floor."""
    rng = np.random.default_rng(0)
    n, classes = 800, 4
    true = rng.integers(0, classes, n)
    genders = np.where(rng.random(n) < 0.5, "female", "male")
    logits = rng.normal(0, 1, (n, classes))
    logits[np.arange(n), true] += 2.0
    logits[genders == "female", 1] -= 2.0  # class 1 hard to predict for women
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    before = worst_class_eo_gap(true, logp.argmax(1), genders, classes)
    post = PostProcessing().fit(logp, true, genders)
    after = worst_class_eo_gap(true, post.predict(logp, genders), genders, classes)
    assert after <= before / 2
    assert post.fit_info["dev_uar_after"] >= post.fit_info["dev_uar_before"] - 0.02
    assert post.offsets[0, 1] > 0  # women's class 1 raised


# ------------------------------------------------------------------------- smoothing
class _TinyModel(torch.nn.Module):
    """A fixed random linear classifier of 64-sample waveforms."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weight = torch.randn(4, 64, generator=generator)

    def forward(self, waveforms, lengths):
        return 20 * waveforms @ self.weight.T


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


def test_adaptive_attack_is_at_least_as_strong_as_the_plain_one_on_the_smoothed_model():
    model = _TinyModel()
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(96, 64, generator=generator)
    lengths = torch.full((96,), 64)
    mask = torch.ones(96, 64, dtype=torch.bool)
    labels = model(x, lengths).argmax(1)
    epsilon = AF.snr_epsilon(x, mask, 20.0)

    def asr(attack_model, adversarial) -> float:
        judge = SmoothedClassifier(model, snr_db=5, samples=32, seed=99)
        return float((judge(adversarial, lengths).argmax(1) != labels).float().mean())

    plain = AF.pgd(
        SmoothedClassifier(model, snr_db=5, samples=2, seed=5),
        x,
        labels=labels,
        mask=mask,
        epsilon=epsilon,
        steps=5,
    )
    adaptive = AF.eot_pgd(
        SmoothedClassifier(model, snr_db=5, samples=2, seed=5),
        x,
        labels=labels,
        mask=mask,
        epsilon=epsilon,
        steps=5,
        samples=16,
    )
    assert AF.measured_snr(x, adaptive, mask).min() >= 20.0 - 1e-3  # the same ε budget
    assert asr(None, adaptive) >= asr(None, plain)
    assert EOT(PGD(30.0), 4).settings()["eot_samples"] == 4


def test_smoothed_variant_attacks_adaptive_and_plain_and_costs_n_passes(toy_runs):
    store, runs = toy_runs["store"], toy_runs["runs"]
    variant = SMOOTHING.variant(BASE, snr_db=30, samples=2).name
    run = run_attack(
        store, variant, runs=runs, method="pgd", snr_db=30, steps=2, eot_samples=2, device="cpu"
    )
    (adaptive,) = run.results
    layout = RunLayout(runs)
    out_dir = layout.attack_dir(variant, "pgd", 30)
    assert adaptive.out_dir == out_dir
    summary = read_json(out_dir / "summary.json")
    assert summary["settings"]["eot_samples"] == 2
    plain = read_json(out_dir / PLAIN_SUBDIR / "summary.json")
    assert summary["settings"]["plain_attack"]["asr_mean"] == plain["asr_mean"]
    assert "eot_samples" not in plain["settings"]
    with pytest.raises(AttackError, match="randomized defences"):
        run_attack(store, BASE, runs=runs, eot_samples=2, device="cpu")
    base = measure_cost(BASE, device="cpu", timing=False, seconds=1.0)
    smoothed = measure_cost(variant, device="cpu", timing=False, seconds=1.0)
    assert smoothed.total_macs == 2 * base.total_macs
    assert smoothed.total_params == base.total_params and smoothed.inference_passes == 2
