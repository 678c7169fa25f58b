"""Heads on a real embedding store: tiny backbone → ``extract`` → ``heads fit`` / ``probe``.

The store is written once per module from a few synthetic tones with a tiny randomly
initialised Whisper; then heads train from it with every backbone entry point trapped, which
proves training reads only the cache.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import trustser.backbones
import trustser.backbones.loading
from trustser.backbones.base import Backbone
from trustser.extract import extract
from trustser.folds import gender_balanced_speaker_groups, rotating_folds
from trustser.heads.data import PackedFeatures
from trustser.heads.estimator import HeadClassifier
from trustser.heads.model import load_head
from trustser.heads.probe import run_probes
from trustser.heads.training import choose_data_mode, fit_heads
from trustser.manifest import EMOTIONS, Manifest, Utterance, speakers_by_gender
from trustser.runs import RunLayout
from trustser.store import open_store

BACKBONE = "tiny:whisper"
PITCH = {"neutral": 140.0, "happy": 260.0, "sad": 100.0, "angry": 380.0}


def _tone_corpus(root: Path) -> Manifest:
    """6 speakers × 4 emotions × 2 clips: pitch carries emotion, a factor carries gender."""
    utterances = []
    rng = np.random.default_rng(0)
    for s in range(6):
        gender = "female" if s % 2 else "male"
        for emotion in EMOTIONS:
            for k in range(2):
                seconds = 0.3 + 0.1 * k
                t = np.arange(int(seconds * 16_000)) / 16_000
                f0 = PITCH[emotion] * (1.6 if gender == "female" else 1.0) * (1 + 0.03 * s)
                wave = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.standard_normal(t.size)
                uid = f"spk{s}_{emotion}_{k}"
                path = root / f"{uid}.wav"
                sf.write(str(path), wave.astype(np.float32), 16_000)
                utterances.append(Utterance(uid, str(path), f"spk{s}", gender, emotion, seconds))
    groups = gender_balanced_speaker_groups(speakers_by_gender(utterances), 3)
    return Manifest(
        corpus="tones",
        utterances=tuple(utterances),
        folds=rotating_folds(groups, by="speaker"),
        fold_scheme="3 speaker folds",
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("heads_store")
    (root / "wav").mkdir()
    manifest = _tone_corpus(root / "wav")
    path = root / "cache.zarr"
    summary = extract(manifest, path, BACKBONE, device="cpu", progress=False)
    assert summary.done == len(manifest)
    return path


@pytest.fixture
def no_backbone(monkeypatch):
    """Every way to build a backbone raises: training must not need one."""

    def trap(*args, **kwargs):
        raise AssertionError("a backbone was instantiated during head training")

    monkeypatch.setattr(trustser.backbones, "load_backbone", trap)
    monkeypatch.setattr(trustser.backbones.loading, "load_backbone", trap)
    monkeypatch.setattr(Backbone, "__init__", trap)
    with pytest.raises(AssertionError, match="instantiated"):  # the trap works
        trustser.backbones.loading._load_tiny(
            trustser.backbones.resolve_spec(BACKBONE), window="trimmed", attn=None
        )


@pytest.mark.parametrize("data", ["memory", "stream"])
def test_fit_from_a_real_store_never_touches_the_backbone(store, tmp_path, no_backbone, data):
    result = fit_heads(
        store,
        None,
        HeadClassifier(epochs=3, batch_size=8, device="cpu"),
        task="emotion,gender",
        runs=tmp_path,
        data=data,
    )
    assert result.backbone == BACKBONE and result.data_mode == data
    layout = RunLayout(tmp_path)
    group = open_store(store).group(BACKBONE)
    for task in result.tasks:
        out = layout.head_dir(BACKBONE, task.task)
        assert out == tmp_path / "tiny-whisper" / task.task and task.directory == out
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["num_folds"] == 3 and len(metrics["folds"]) == 3
        assert len(metrics["layer_weights_mean"]) == group.num_layers
        with open(out / "predictions.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == 48 and {r["id"] for r in rows} == set(
            group.ids
        )  # every clip tested once
        head, sidecar = load_head(layout.head_path(BACKBONE, task.task, "fold2"))
        assert sidecar["store"]["provenance"] == json.loads(json.dumps(group.provenance))
        assert (
            sidecar["store"]["provenance"]["weights_sha256"] == group.provenance["weights_sha256"]
        )
        assert sidecar["store"]["group"] == BACKBONE and sidecar["task"] == task.task
        assert (head.num_layers, head.dim) == (group.num_layers, group.dim)


def test_probe_and_memory_estimate_on_a_real_store(store, tmp_path, no_backbone):
    group = open_store(store).group(BACKBONE)
    mode, size = choose_data_mode(group, group.ids, mode="auto", normalize=False)
    itemsize = np.dtype(group.dtype).itemsize  # held in RAM in the stored dtype
    assert size == int(group.num_frames(group.ids).sum()) * group.num_layers * group.dim * itemsize
    assert mode == "memory"
    packed = PackedFeatures.from_source(group, group.ids, batch_size=5)
    assert packed.nbytes == size
    for utterance_id in group.ids[:5]:
        np.testing.assert_array_equal(packed.clip(utterance_id).numpy(), group.frames(utterance_id))
    result = run_probes(store, task="all", runs=tmp_path)
    assert [t.task for t in result.tasks] == ["emotion", "gender", "speaker"]
    assert result.path == RunLayout(tmp_path).probe_dir(BACKBONE) / "metrics.json"
    assert len(result.tasks[0].layers) == group.num_layers
