"""Speaker verification end to end: a synthetic store, both attackers, files, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trustser.cli.main import app
from trustser.manifest import Manifest
from trustser.profile.det import write_det_chart
from trustser.store import StoreWriter
from trustser.store.plan import ClipFacts
from trustser.verification import read_trial_scores, run_verification, summarise_scores, verify
from trustser.verification.run import VerificationError

from .test_store_format import PROVENANCE as STORE_PROVENANCE
from .test_verification_trials import speaker_manifest

L, D, FRAMES = 3, 16, 6
PROVENANCE = {**STORE_PROVENANCE, "num_layers": L, "dim": D}


def planted(manifest: Manifest, *, signal: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Per clip ``[L, T, D]`` frames: a per-speaker vector times ``signal`` plus noise, with an
    emotion offset shared by every speaker (what the informed attacker can learn to discount)."""
    rng = np.random.default_rng(seed)
    speakers = sorted({u.speaker for u in manifest})
    voice = {s: rng.normal(size=(L, 1, D)) for s in speakers}
    mood = {e: 0.5 * rng.normal(size=(L, 1, D)) for e in manifest.labels}
    return {
        u.id: signal * voice[u.speaker] + mood[u.emotion] + rng.normal(size=(L, FRAMES, D))
        for u in manifest
    }


def write_store(path: Path, name: str, manifest: Manifest, frames: dict[str, np.ndarray]) -> Path:
    writer = StoreWriter(path, name, provenance={**PROVENANCE, "backbone": name}, durable=False)
    clips = {u.id: ClipFacts(samples=16_000, frames=FRAMES) for u in manifest}
    for part, unit in writer.pending_units(writer.add_manifest(manifest, clips=clips)):
        buffer = writer.buffer(part, unit)
        for utterance_id in buffer.ids:
            buffer.put(utterance_id, frames[utterance_id].astype(np.float32))
        writer.commit(buffer)
    return path


def voice_and_noise(path: Path, clips: int = 6) -> tuple[Path, Manifest]:
    """One store, two groups: ``voice`` (a planted speaker signal) and ``noise`` (none)."""
    manifest = speaker_manifest(groups=4, per_gender=2, clips=clips)
    write_store(path, "voice", manifest, planted(manifest, signal=2.0))
    write_store(path, "noise", manifest, planted(manifest, signal=0.0, seed=1))
    return path, manifest


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory) -> tuple[Path, Manifest]:
    """:func:`voice_and_noise` in a temporary directory."""
    return voice_and_noise(tmp_path_factory.mktemp("verify") / "cache.zarr")


def test_a_planted_speaker_signal_is_linkable_and_random_embeddings_are_not(toy_store, tmp_path):
    store, _ = toy_store
    voice = run_verification(store, "voice", runs=tmp_path, replicates=200)
    noise = run_verification(store, "noise", runs=tmp_path, replicates=200)
    for attacker in ("ignorant", "informed"):
        assert voice.metrics[f"{attacker}_eer"] < 0.1
        assert abs(noise.metrics[f"{attacker}_eer"] - 0.5) < 0.12
        interval = voice.metrics["attackers"][attacker]["eer"]
        assert interval["low"] <= interval["value"] <= interval["high"]
        for gender in ("female", "male"):
            assert voice.metrics[f"{attacker}_eer_{gender}"] < 0.15
    assert voice.directory == tmp_path / "voice" / "verification"


def test_results_files_hold_everything_to_recompute_the_figures(toy_store, tmp_path):
    store, manifest = toy_store
    result = run_verification(store, "voice", runs=tmp_path, replicates=100, seed=5)
    metrics = json.loads(result.metrics_path.read_text())
    assert metrics["pooled_across_folds"] is False
    assert metrics["operating_point"] == {
        "p_target": 0.05,
        "c_miss": 1.0,
        "c_fa": 1.0,
        "normalised": True,
        "normaliser": 0.05,
    }
    assert len(metrics["informed_layers"]) == len(manifest.folds)
    assert metrics["trials"]["female"]["nontarget"] == metrics["trials"]["male"]["nontarget"]
    for entry in metrics["attackers"]["informed"]["sets"]:
        assert 0 <= entry["layer"] < L and len(entry["dev_eer"]) == L
    table = read_trial_scores(result.trials_path)
    assert len(table) == metrics["trials"]["target"] + metrics["trials"]["nontarget"]
    again = summarise_scores(table, replicates=100, seed=5)
    for attacker in ("ignorant", "informed"):
        for key in ("eer", "min_dcf", "by_gender"):
            assert again[attacker][key] == metrics["attackers"][attacker][key]


def test_the_same_seed_writes_the_same_trials(toy_store, tmp_path):
    store, _ = toy_store
    first = run_verification(store, "voice", runs=tmp_path / "a", replicates=50, seed=1)
    second = run_verification(store, "voice", runs=tmp_path / "b", replicates=50, seed=1)
    assert first.trials_path.read_bytes() == second.trials_path.read_bytes()
    assert first.metrics["attackers"] == second.metrics["attackers"]


def test_one_emotion_writes_its_own_directory(toy_store, tmp_path):
    store, _ = toy_store
    result = run_verification(store, "voice", runs=tmp_path, emotion="neutral", replicates=50)
    assert result.directory == tmp_path / "voice" / "verification" / "neutral"
    assert result.metrics["design"]["emotion"] == "neutral"


def test_pooled_design_end_to_end_from_an_array():
    manifest = speaker_manifest(groups=5, per_gender=1, clips=8)
    frames = planted(manifest, signal=2.0)
    ids = [u.id for u in manifest]
    means = np.stack([frames[i].mean(axis=1) for i in ids])
    report = verify(manifest, means, ids=ids, replicates=50)
    metrics = report.metrics()
    assert metrics["pooled_across_folds"] is True
    assert "combination of 2 folds" in metrics["design"]["pooled_reason"]
    assert metrics["ignorant_eer"] < 0.1
    assert len(metrics["ignorant_layers"]) == 10


def test_a_variant_needs_its_own_embeddings(toy_store, tmp_path):
    store, manifest = toy_store
    with pytest.raises(VerificationError, match="variant"):
        run_verification(store, "voice@top1", runs=tmp_path)
    ids = [u.id for u in manifest]
    frames = planted(manifest, signal=0.0, seed=7)
    per_fold = {f.name: np.stack([frames[i].mean(axis=1) for i in ids]) for f in manifest.folds}
    with pytest.raises(ValueError, match="ids"):
        verify(manifest, per_fold)
    result = run_verification(
        store,
        "voice@top1",
        runs=tmp_path,
        replicates=50,
        source={
            fold: (lambda wanted, m=m: m[[ids.index(i) for i in wanted]])
            for fold, m in per_fold.items()
        },
    )
    assert result.directory == tmp_path / "voice@top1" / "verification"
    assert abs(result.metrics["ignorant_eer"] - 0.5) < 0.15  # the variant's (random) features


def test_cli_verify_renders_a_table_and_a_det_plot(toy_store, tmp_path):
    store, _ = toy_store
    runs = tmp_path / "runs"
    result = CliRunner().invoke(
        app,
        [
            "privacy",
            "verify",
            "-s",
            str(store),
            "-b",
            "voice",
            "-r",
            str(runs),
            "--bootstrap",
            "30",
        ],
        env={"COLUMNS": "80"},
    )
    assert result.exit_code == 0, result.output
    assert "speaker verification" in result.output and "informed" in result.output
    assert "layer chosen on dev" in result.output
    too_wide = [line for line in result.output.splitlines() if len(line) > 80]
    assert all(str(runs) in line for line in too_wide), too_wide  # a path is printed whole
    directory = runs / "voice" / "verification"
    for name in ("metrics.json", "trials.csv", "det.png", "det.svg"):
        assert (directory / name).is_file()
    bad = CliRunner().invoke(
        app,
        ["privacy", "verify", "-s", str(store), "-b", "voice", "-r", str(runs), "--emotion", "x"],
    )
    assert bad.exit_code == 2 and "not a label" in bad.output


def test_det_chart_is_reproducible(toy_store, tmp_path):
    store, _ = toy_store
    result = run_verification(store, "voice", runs=tmp_path, replicates=20)
    first = write_det_chart(result.directory)["svg"].read_bytes()
    second = write_det_chart(result.directory)["svg"].read_bytes()
    assert first == second and b"ignorant" in first
