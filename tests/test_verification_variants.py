"""Speaker verification of a variant: attacked on what its deployed model exposes, by attackers
trained afresh on it (never the mitigation's own adversary).

A privacy mitigation (``@privacy-l0.3``) on a store of planted speaker features, a fine-tuned
variant (``@top1``) on a tiny random Whisper, a variant that exposes its base's representation
(``@fair-post``), and a kind that does not say what it exposes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from trustser import variants
from trustser.cli.main import app
from trustser.extract import extract
from trustser.heads.data import PackedFeatures
from trustser.heads.estimator import HeadClassifier
from trustser.heads.model import load_head
from trustser.runs import RunLayout
from trustser.store import open_store
from trustser.variants import VariantError, VariantKind, fit_variant, parse, verify_model
from trustser.variants.privacy import encoder_frames
from trustser.verification import read_trial_scores

from .test_verification_run import planted, write_store
from .test_verification_trials import speaker_manifest

PRIVACY = "voice@privacy-l0.3"


def _estimator() -> HeadClassifier:
    return HeadClassifier(hidden=16, epochs=2, lr=1e-2, device="cpu", seed=0)


@pytest.fixture(scope="module")
def mitigated(tmp_path_factory):
    """A store with a planted speaker signal and its privacy mitigation fitted."""
    root = tmp_path_factory.mktemp("verify-variants")
    manifest = speaker_manifest(groups=4, per_gender=2, clips=6)
    store = write_store(root / "cache.zarr", "voice", manifest, planted(manifest, signal=2.0))
    runs = root / "runs"
    fit_variant(store, PRIVACY, _estimator(), runs=runs)
    return {"store": store, "runs": runs}


def test_a_mitigation_is_attacked_on_its_encoder_output(mitigated):
    store, runs = mitigated["store"], mitigated["runs"]
    base = verify_model(store, "voice", runs=runs, replicates=50)
    variant = verify_model(store, PRIVACY, runs=runs, replicates=50)
    assert variant.directory == runs / PRIVACY / "verification"
    assert "encoder's output" in variant.metrics["features"]
    assert set(variant.metrics["informed_layers"]) == {0}  # one representation: the encoder's
    ours, theirs = (read_trial_scores(r.trials_path) for r in (variant, base))
    assert np.array_equal(ours.trials.enrol, theirs.trials.enrol)  # the same trials ...
    assert np.array_equal(ours.trials.test, theirs.trials.test)
    assert not np.allclose(ours.scores["ignorant"], theirs.scores["ignorant"])  # ... other scores


def test_the_attacker_sees_each_folds_deployed_encoder(mitigated):
    store, runs = mitigated["store"], mitigated["runs"]
    group = open_store(store).group("voice")
    exposed = parse(PRIVACY).exposed(group, RunLayout(runs))
    folds = sorted(exposed.source)
    assert folds == sorted(f.name for f in group.manifest().folds)
    ids = list(group.ids)[:7]
    head, _ = load_head(RunLayout(runs).head_path(PRIVACY, "emotion", folds[1]))
    expected = encoder_frames(head, PackedFeatures.from_source(group, ids), ids).means(ids)
    np.testing.assert_allclose(exposed.source[folds[1]](ids), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(exposed.source[folds[0]](ids), exposed.source[folds[1]](ids))


def test_a_variants_verification_is_deterministic(mitigated, tmp_path):
    store, runs = mitigated["store"], mitigated["runs"]
    first = verify_model(store, PRIVACY, runs=runs, replicates=30, seed=3)
    text = first.trials_path.read_bytes()
    again = verify_model(store, PRIVACY, runs=runs, replicates=30, seed=3)
    assert again.trials_path.read_bytes() == text
    assert again.metrics["attackers"] == first.metrics["attackers"]


def test_cli_verifies_a_variant(mitigated):
    store, runs = mitigated["store"], mitigated["runs"]
    command = ["privacy", "verify", "-s", str(store), "-r", str(runs), "--bootstrap", "20"]
    result = CliRunner().invoke(app, [*command, "-b", PRIVACY, "--no-plot"])
    assert result.exit_code == 0, result.output
    assert PRIVACY in result.output and "informed" in result.output
    unfitted = CliRunner().invoke(app, [*command, "-b", "voice@privacy-l1", "--no-plot"])
    assert unfitted.exit_code == 2 and "trustser mitigate privacy --lambda 1" in unfitted.output


def test_a_variant_exposing_its_bases_representation_is_linked_as_its_base(mitigated, tmp_path):
    store = mitigated["store"]
    base = verify_model(store, "voice", runs=tmp_path, replicates=20)
    post = verify_model(store, "voice@fair-post", runs=tmp_path, replicates=20)
    assert post.metrics["attackers"] == base.metrics["attackers"]
    assert "base" in post.metrics["features"]


class _Opaque(VariantKind):
    """A kind that changes the encoder but does not say what it exposes."""

    word, label, summary, form = "opaque", "opaque encoder", "a test kind", "opaque"

    def parse(self, tag: str) -> dict[str, Any] | None:
        return {} if tag == "opaque" else None

    def tag(self, **params: Any) -> str:
        return "opaque"

    def describe(self, params: Mapping[str, Any]) -> str:
        return "opaque"


def test_a_kind_that_does_not_say_what_it_exposes_is_refused(mitigated, tmp_path):
    variants.register(_Opaque())
    try:
        with pytest.raises(VariantError, match="does not say which embeddings"):
            verify_model(mitigated["store"], "voice@opaque", runs=tmp_path)
    finally:
        variants.unregister("opaque")


def test_a_fine_tuned_variant_exposes_its_fine_tuned_blocks(tmp_path, toy_manifest_factory):
    speakers = [(f"s{i}", "female" if i % 2 == 0 else "male") for i in range(10)]
    manifest = toy_manifest_factory(tmp_path / "toy", speakers=speakers, takes=1)
    store = tmp_path / "cache.zarr"
    extract(manifest, store, "tiny:whisper", device="cpu", dtype="float32", progress=False)
    runs = tmp_path / "runs"
    fit_variant(
        store,
        "tiny:whisper@top1",
        _estimator(),
        runs=runs,
        tasks=("emotion",),
        options={"block_lr": 1e-2},
    )
    group = open_store(store).group("tiny:whisper")
    exposed = parse("tiny:whisper@top1").exposed(group, RunLayout(runs))
    ids = list(group.ids)
    base = group.means(ids)
    for fold, source in exposed.source.items():
        means = source(ids)
        np.testing.assert_array_equal(means[:, :-1], base[:, :-1])  # the frozen lower layers
        assert not np.allclose(means[:, -1], base[:, -1]), fold  # the fine-tuned top block
    result = verify_model(store, "tiny:whisper@top1", runs=runs, replicates=20)
    assert "fine-tuned top 1 block" in result.metrics["features"]
    assert result.metrics["pooled_across_folds"] is True


def test_an_erased_variant_is_linked_on_its_erased_features(mitigated, tmp_path):
    """A LEACE variant exposes each fold's erased hidden states: what its eraser leaves."""
    store = mitigated["store"]
    runs = tmp_path / "runs"
    fit_variant(store, "voice@erase-gender", _estimator(), runs=runs)
    group = open_store(store).group("voice")
    exposed = parse("voice@erase-gender").exposed(group, RunLayout(runs))
    folds = sorted(exposed.source)
    assert folds == sorted(f.name for f in group.manifest().folds)
    ids = list(group.ids)[:7]
    from trustser.variants.erasure import load_erasers

    eraser = load_erasers(RunLayout(runs), parse("voice@erase-gender"))[folds[0]]
    expected = eraser.erase_means(np.asarray(group.means(ids), dtype=np.float32))
    np.testing.assert_allclose(exposed.source[folds[0]](ids), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(exposed.source[folds[0]](ids), group.means(ids))
    result = verify_model(store, "voice@erase-gender", runs=runs, replicates=20)
    assert "eraser" in result.metrics["features"]
