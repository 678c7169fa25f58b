"""Heads from cached features: tasks and splits, the estimator, per-fold training, probes, CLI.

Everything here runs on a small in-memory fake of the store API (random features with planted
class signals: emotion in layer 1, gender in layer 2, speaker identity in layer 0), so the tests
need neither a backbone nor a store on disk. tests/test_heads_store.py covers the real store.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import trustser.store
from trustser.folds import gender_balanced_speaker_groups, rotating_folds
from trustser.heads import training
from trustser.heads.data import DataError, FeatureSet, PackedFeatures, feature_statistics
from trustser.heads.estimator import HeadClassifier, class_weight_policy, class_weights
from trustser.heads.model import LayerWeightedHead, load_head
from trustser.heads.probe import run_probes
from trustser.heads.tasks import (
    DEFAULT_EPOCHS,
    DEFAULT_MIN_STEPS,
    TaskError,
    build_task,
    parse_tasks,
    select_splits,
    speaker_splits,
)
from trustser.heads.training import choose_data_mode, default_estimator, fit_heads
from trustser.manifest import EMOTIONS, Manifest, Utterance, speakers_by_gender

L, D = 3, 12
EMOTION_LAYER, GENDER_LAYER, SPEAKER_LAYER = 1, 2, 0


def make_manifest(per_emotion: int = 3, speakers: int = 10) -> Manifest:
    utterances = []
    for s in range(speakers):
        gender = "female" if s % 2 else "male"
        for emotion in EMOTIONS:
            for k in range(per_emotion):
                uid = f"s{s}_{emotion}_{k}"
                utterances.append(
                    Utterance(uid, f"/nowhere/{uid}.wav", f"spk{s}", gender, emotion, 1.0 + 0.1 * k)
                )
    groups = gender_balanced_speaker_groups(speakers_by_gender(utterances), 5)
    return Manifest(
        corpus="fake",
        utterances=tuple(utterances),
        folds=rotating_folds(groups, by="speaker"),
        fold_scheme="5 gender-balanced speaker folds",
    )


def make_frames(manifest: Manifest, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    emotion_centre = {e: rng.normal(size=D) for e in EMOTIONS}
    gender_centre = {"female": rng.normal(size=D), "male": rng.normal(size=D)}
    speakers = sorted({u.speaker for u in manifest})
    speaker_centre = {s: rng.normal(size=D) for s in speakers}
    frames = {}
    for u in manifest:
        x = rng.normal(size=(L, int(rng.integers(4, 16)), D))
        x[EMOTION_LAYER] += 3.0 * emotion_centre[u.emotion]
        x[GENDER_LAYER] += 3.0 * gender_centre[u.gender]
        x[SPEAKER_LAYER] += 2.0 * speaker_centre[u.speaker]
        frames[u.id] = x.astype(np.float32)
    return frames


class FakeGroup:
    """The store group API (docs/architecture.md) over in-memory arrays; counts what is used."""

    def __init__(self, manifest: Manifest, frames: dict[str, np.ndarray]) -> None:
        self._manifest = manifest
        self._features = PackedFeatures.from_arrays(frames)
        self.num_layers, self.dim = L, D
        self.ids = list(frames)
        self.skipped: dict[str, str] = {}
        self.provenance = {
            "backbone": "tiny:fake",
            "num_layers": L,
            "dim": D,
            "frame_rate": 50.0,
            "max_seconds": 6.0,
            "weights_sha256": "ab" * 32,
        }
        self.streamed = 0  # batch passes over the group

    def manifest(self) -> Manifest:
        return self._manifest

    def frames(self, utterance_id: str) -> np.ndarray:
        return self._features.clip(utterance_id).numpy()

    def means(self, ids):
        return self._features.means(ids)

    def batches(self, ids, batch_size=64, *, shuffle=False, seed=0):
        self.streamed += 1
        return self._features.batches(ids, batch_size=batch_size, shuffle=shuffle, seed=seed)


class FakeStore:
    def __init__(self, group: FakeGroup, name: str = "fakenet") -> None:
        self._group, self.backbones = group, [name]

    def group(self, name: str) -> FakeGroup:
        if name not in self.backbones:
            raise KeyError(f"no group {name!r}")
        return self._group


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    return make_manifest()


@pytest.fixture(scope="module")
def frames(manifest) -> dict[str, np.ndarray]:
    return make_frames(manifest)


@pytest.fixture
def fake_store(monkeypatch, tmp_path, manifest, frames):
    """A store directory whose ``open_store`` returns the fake; yields (path, group)."""
    group = FakeGroup(manifest, frames)
    path = tmp_path / "cache.zarr"
    path.mkdir()
    monkeypatch.setattr(trustser.store, "open_store", lambda p: FakeStore(group), raising=False)
    return path, group


def feature_set(source, manifest, ids, attribute="emotion") -> FeatureSet:
    return FeatureSet(source, ids, [getattr(manifest[i], attribute) for i in ids])


# ------------------------------------------------------------------------------------ tasks
def test_emotion_and_gender_tasks_use_the_speaker_independent_folds(manifest):
    for name, labels in (("emotion", EMOTIONS), ("gender", ("female", "male"))):
        task = build_task(name, manifest)
        assert task.labels == tuple(labels)
        assert [s.name for s in task.splits] == [f.name for f in manifest.folds]
        assert task.default_epochs == {"emotion": 30, "gender": 10}[name]
        for split in task.splits:
            speakers = {
                r: {manifest[i].speaker for i in getattr(split, r)}
                for r in ("train", "dev", "test")
            }
            assert not speakers["train"] & speakers["test"]
            assert not speakers["dev"] & speakers["test"]
            assert not speakers["train"] & speakers["dev"]
            assert len(split.ids) == len(manifest)


def test_speaker_split_puts_every_speaker_in_every_role_stratified_and_seeded(manifest):
    task = speaker_splits(manifest, num_folds=4, seed=3)
    assert task.labels == tuple(sorted({u.speaker for u in manifest}))
    tests = [set(s.test) for s in task.splits]
    assert set().union(*tests) == set(manifest.ids)  # every utterance tested exactly once
    assert sum(len(t) for t in tests) == len(manifest)
    for split in task.splits:
        assert not set(split.train) & set(split.test) and not set(split.dev) & set(split.test)
        for role in ("train", "dev", "test"):
            assert {manifest[i].speaker for i in getattr(split, role)} == set(task.labels)
        # 12 utterances per speaker over 4 groups: exactly 3 per speaker in test
        counts = {s: 0 for s in task.labels}
        for i in split.test:
            counts[manifest[i].speaker] += 1
        assert set(counts.values()) == {3}
        # and the emotions of each speaker are spread (stratified): 3 distinct in 3 test clips
        for speaker in task.labels:
            emotions = [manifest[i].emotion for i in split.test if manifest[i].speaker == speaker]
            assert len(set(emotions)) == 3
    again = speaker_splits(manifest, num_folds=4, seed=3)
    other = speaker_splits(manifest, num_folds=4, seed=4)
    assert again.splits == task.splits
    assert other.splits != task.splits


def test_speaker_split_excludes_speakers_with_too_few_utterances(manifest):
    small = manifest.filter(lambda u: u.speaker != "spk0" or u.emotion == "sad")  # spk0: 3 clips
    task = speaker_splits(small, num_folds=5)
    assert "spk0" not in task.labels
    assert len(task.excluded) == 3 and all("spk0" in why for why in task.excluded.values())
    with pytest.raises(TaskError, match=">= 3"):
        speaker_splits(manifest, num_folds=2)


def test_fold_selection_by_name_or_index_and_clear_errors(manifest):
    task = build_task("emotion", manifest)
    assert [s.name for s in select_splits(task, "1,3")] == ["fold1", "fold3"]
    assert [s.name for s in select_splits(task, ["fold2", "2", "5"])] == ["fold2", "fold5"]
    assert len(select_splits(task, None)) == 5
    with pytest.raises(TaskError, match=r"fold '7' does not exist.*1\.\.5"):
        select_splits(task, "7")
    assert parse_tasks("all") == ["emotion", "gender", "speaker"]
    assert parse_tasks("gender,emotion") == ["gender", "emotion"]
    with pytest.raises(TaskError, match="choose emotion, gender, speaker or all"):
        parse_tasks("valence")
    no_folds = Manifest(corpus="x", utterances=manifest.utterances)
    with pytest.raises(TaskError, match="defines no folds"):
        build_task("emotion", no_folds)


# -------------------------------------------------------------------------------- estimator
def test_class_weights_balanced_formula():
    weights = class_weights(["a", "a", "a", "b"], ["a", "b"], "balanced")
    np.testing.assert_allclose(weights, [4 / (2 * 3), 4 / (2 * 1)])
    np.testing.assert_allclose(class_weights(["a", "b"], ["a", "b"], None), [1, 1])
    np.testing.assert_allclose(class_weights(["a", "b"], ["a", "b"], {"b": 3.0}), [1, 3])
    with pytest.raises(DataError, match=r"\['c'\] have no training utterances"):
        class_weights(["a", "b"], ["a", "b", "c"], "balanced")


def test_estimator_learns_the_planted_signal_and_is_deterministic(manifest, frames):
    source = PackedFeatures.from_arrays(frames)
    split = build_task("emotion", manifest).splits[0]
    train, dev, test = (
        feature_set(source, manifest, getattr(split, r)) for r in ("train", "dev", "test")
    )
    params = dict(epochs=6, batch_size=16, hidden=32, lr=1e-2, device="cpu", seed=7)
    a = HeadClassifier(**params).fit(train, dev, classes=EMOTIONS)
    b = HeadClassifier(**params).fit(train, dev, classes=EMOTIONS)
    c = HeadClassifier(**{**params, "seed": 8}).fit(train, dev, classes=EMOTIONS)
    assert a.score(test) > 0.7  # chance: 0.25
    for (name, x), y in zip(
        a.head_.state_dict().items(), b.head_.state_dict().values(), strict=True
    ):
        assert torch.equal(x, y), name
    assert a.history_ == [
        {**h, "seconds": a.history_[i]["seconds"]} for i, h in enumerate(b.history_)
    ]
    assert not torch.equal(a.head_.frame_net[0].weight, c.head_.frame_net[0].weight)
    assert len(a.history_) == 6 and 1 <= a.best_epoch_ <= 6
    assert a.best_score_ == max(h["dev_uar"] for h in a.history_)
    assert a.best_epoch_ == min(h["epoch"] for h in a.history_ if h["dev_uar"] == a.best_score_)
    proba = a.predict_proba(test)
    assert proba.shape == (len(test), 4)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-6)
    assert list(a.predict(test)) == [EMOTIONS[k] for k in proba.argmax(1)]
    assert a.layer_weights_.shape == (L,) and np.isclose(a.layer_weights_.sum(), 1)


def test_estimator_contract_and_errors(manifest, frames):
    source = PackedFeatures.from_arrays(frames)
    ids = manifest.ids[:24]
    data = feature_set(source, manifest, ids)
    est = HeadClassifier(lr=-1.0)
    assert est.lr == -1.0  # stored as given, checked in fit
    with pytest.raises(ValueError, match="lr must be > 0"):
        est.fit(data)
    with pytest.raises(ValueError, match="layer_lr must be > 0"):
        HeadClassifier(layer_lr=0.0).fit(data)
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        HeadClassifier(weight_decay=-0.1).fit(data)
    with pytest.raises(ValueError, match="pooling='max'"):
        HeadClassifier(pooling="max").fit(data)
    with pytest.raises(RuntimeError, match="not fitted"):
        HeadClassifier().predict(data)
    with pytest.raises(DataError, match=r"dev labels \['bored'\]"):
        dev = FeatureSet(source, ids[:2], ["bored", "sad"])
        HeadClassifier(epochs=1, device="cpu").fit(data, dev, classes=EMOTIONS)
    with pytest.raises(DataError, match="one label per id"):
        FeatureSet(source, ids, ["sad"])
    # attention pooling and dropout train too; no dev set keeps the last epoch
    fitted = HeadClassifier(epochs=2, pooling="attention", dropout=0.2, device="cpu").fit(data)
    assert fitted.best_epoch_ == 2 and fitted.best_score_ is None
    assert fitted.head_.pooling == "attention"
    # the layer logits have their own learning rate: a larger one moves the weights further
    slow = HeadClassifier(epochs=2, device="cpu", layer_lr=1e-4).fit(data)
    fast = HeadClassifier(epochs=2, device="cpu", layer_lr=1e-1).fit(data)
    assert np.ptp(fast.layer_weights_) > 10 * np.ptp(slow.layer_weights_)
    normalized = HeadClassifier(epochs=1, normalize=True, device="cpu").fit(data)
    mean, std = source.statistics(ids)
    torch.testing.assert_close(normalized.head_.feature_mean, mean)
    torch.testing.assert_close(normalized.head_.feature_scale, 1 / std)
    with pytest.raises(ValueError, match="normalize must be True or False"):
        HeadClassifier(normalize="yes").fit(data)
    # a floor on optimiser steps adds epochs on small data: 24 clips / batch 10 = 3 steps an epoch
    floored = HeadClassifier(epochs=1, min_steps=7, batch_size=10, device="cpu")
    assert floored.epochs_for(24) == 3 and floored.epochs_for(1000) == 1
    floored.fit(data)
    assert floored.epochs_ == 3 and len(floored.history_) == 3
    with pytest.raises(ValueError, match="min_steps must be >= 0"):
        HeadClassifier(min_steps=-1).fit(data)


def test_head_ignores_padding_and_packed_forward_matches_padded():
    torch.manual_seed(0)
    lengths = [5, 2, 7]
    clips = [torch.randn(n, L, D) * 3 + 1 for n in lengths]
    hidden = torch.randn(3, L, 7, D) * 100  # padding full of garbage
    for row, clip in enumerate(clips):
        hidden[row, :, : len(clip)] = clip.transpose(0, 1)
    mask = torch.arange(7)[None, :] < torch.tensor(lengths)[:, None]
    packed = torch.cat(clips).transpose(0, 1)  # [L, F, D]
    segments = torch.repeat_interleave(torch.arange(3), torch.tensor(lengths))
    for pooling in ("mean", "attention"):
        for normalize in (False, True):
            head = LayerWeightedHead(L, D, 4, hidden=8, pooling=pooling, normalize=normalize).eval()
            head.set_normalization(torch.rand(L, D), torch.rand(L, D) + 0.5)
            alone = torch.cat(
                [
                    head(c.transpose(0, 1)[None], torch.ones(1, len(c), dtype=torch.bool))
                    for c in clips
                ]
            )
            torch.testing.assert_close(head(hidden, mask), alone)
            torch.testing.assert_close(head.forward_packed(packed, segments, 3), alone)


def test_normalization_statistics_and_the_head_buffers(frames):
    packed = PackedFeatures.from_arrays(frames)
    ids = list(frames)[:30]
    mean, std = packed.statistics(ids)
    stacked = np.concatenate([frames[i] for i in ids], axis=1)  # [L, ΣT, D]
    np.testing.assert_allclose(mean.numpy(), stacked.mean(1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(std.numpy(), stacked.std(1), rtol=1e-4, atol=1e-5)

    class Padded:  # a source with only the padded batches API takes the generic route
        def batches(self, ids, batch_size=64, *, shuffle=False, seed=0):
            return packed.batches(ids, batch_size=batch_size, shuffle=shuffle, seed=seed)

    generic = feature_statistics(Padded(), ids, batch_size=7)
    torch.testing.assert_close(generic[0], mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(generic[1], std, rtol=1e-4, atol=1e-5)
    head = LayerWeightedHead(L, D, 2, normalize=True)
    head.set_normalization(mean, std)
    torch.testing.assert_close(head.feature_scale, 1 / std)
    # training standardises each batch as it widens it; the head then skips its own
    copy = packed.standardized(mean, std, ids=ids[:8])
    assert copy.rows is packed.rows  # the same values in RAM, no second copy
    raw = next(packed.packed_batches(ids[:8], shuffle=False))
    done = next(copy.packed_batches(ids[:8], shuffle=False))
    torch.testing.assert_close(
        head.forward_packed(done.frames, done.segments, 8, standardized=True),
        head.forward_packed(raw.frames, raw.segments, 8),
    )
    with pytest.raises(ValueError, match=r"must be \[L, D\]"):
        head.set_normalization(mean[0], std)


# ------------------------------------------------------------------------- training + runs
def test_fit_heads_writes_the_results_layout(fake_store, tmp_path, manifest):
    store, group = fake_store
    events = []
    result = fit_heads(
        store,
        None,
        HeadClassifier(epochs=3, batch_size=16, lr=3e-3, device="cpu"),
        task="emotion",
        runs=tmp_path / "runs",
        folds="1,3",
        callback=events.append,
    )
    assert result.backbone == "fakenet" and result.data_mode == "memory"
    assert group.streamed == 1  # one read into RAM, then every epoch from memory
    (task,) = result.tasks
    out = tmp_path / "runs" / "fakenet" / "emotion"
    assert task.directory == out
    assert {p.name for p in out.iterdir()} == {
        "config.json",
        "metrics.json",
        "predictions.csv",
        "fold1",
        "fold3",
    }
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_uar", "test_accuracy", "test_macro_f1", "dev_uar", "dev_accuracy"):
        assert 0 <= metrics[f"{key}_mean"] <= 1 and metrics[f"{key}_std"] >= 0
    assert metrics["test_uar_mean"] > 0.6
    assert [f["fold"] for f in metrics["folds"]] == ["fold1", "fold3"]
    fold = metrics["folds"][0]
    assert set(fold["test_per_class_recall"]) == set(EMOTIONS)
    assert np.asarray(fold["test_confusion"]).shape == (4, 4)
    assert len(fold["layer_weights"]) == L and len(metrics["layer_weights_mean"]) == L
    assert np.isclose(metrics["test_uar_mean"], np.mean([f["test_uar"] for f in metrics["folds"]]))
    config = json.loads((out / "config.json").read_text())
    assert config["store"]["group"] == "fakenet"
    assert config["store"]["provenance"]["weights_sha256"] == "ab" * 32
    assert config["hyperparameters"]["epochs"] == 3 and config["folds"] == ["fold1", "fold3"]

    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    emotion = build_task("emotion", manifest)
    expected = [i for name in ("fold1", "fold3") for i in emotion.split(name).test]
    assert [r["id"] for r in rows] == expected
    assert list(rows[0]) == [
        "id",
        "fold",
        "speaker",
        "gender",
        "true",
        "pred",
        *(f"prob_{e}" for e in EMOTIONS),
    ]
    for r in rows[:10]:
        u = manifest[r["id"]]
        assert (r["speaker"], r["gender"], r["true"]) == (u.speaker, u.gender, u.emotion)
        probs = [float(r[f"prob_{e}"]) for e in EMOTIONS]
        assert np.isclose(sum(probs), 1, atol=1e-5) and r["pred"] == EMOTIONS[int(np.argmax(probs))]

    # the saved head reloads and reproduces the predictions; its sidecar names the data
    head, sidecar = load_head(out / "fold1" / "head.safetensors")
    assert sidecar["store"]["group"] == "fakenet" and sidecar["task"] == "emotion"
    assert sidecar["store"]["provenance"]["weights_sha256"] == "ab" * 32
    assert sidecar["labels"] == list(EMOTIONS) and sidecar["fold"] == "fold1"
    assert sidecar["test_ids"] == list(emotion.split("fold1").test)
    assert sidecar["ids_sha256"] == emotion.split("fold1").checksum()
    batch = next(group._features.batches(sidecar["test_ids"][:4], shuffle=False))
    with torch.no_grad():
        proba = torch.softmax(head(torch.as_tensor(batch.hidden), torch.as_tensor(batch.mask)), 1)
    saved = np.array([[float(r[f"prob_{e}"]) for e in EMOTIONS] for r in rows[:4]])
    np.testing.assert_allclose(proba.numpy(), saved, atol=1e-5)

    kinds = [e.kind for e in events]
    assert (
        kinds.count("fold_start") == 2
        and kinds.count("epoch") == 6
        and kinds.count("fold_end") == 2
    )


def test_fit_heads_is_deterministic_and_streaming_matches_memory(fake_store, tmp_path):
    store, group = fake_store
    estimator = default_estimator(epochs=2, batch_size=16, device="cpu", seed=5)
    common = dict(task="gender", folds="2")
    a = fit_heads(store, None, estimator, runs=tmp_path / "a", data="memory", **common)
    b = fit_heads(store, None, estimator, runs=tmp_path / "b", data="memory", **common)
    head = tmp_path / "{}" / "fakenet" / "gender" / "fold2" / "head.safetensors"
    assert Path(str(head).format("a")).read_bytes() == Path(str(head).format("b")).read_bytes()
    assert a.tasks[0].folds[0].test == b.tasks[0].folds[0].test
    assert (tmp_path / "a" / "fakenet" / "gender" / "predictions.csv").read_text() == (
        tmp_path / "b" / "fakenet" / "gender" / "predictions.csv"
    ).read_text()
    # streaming reads padded batches from the group every epoch; the fake serves the same
    # batches as the packed path, so the two computations must agree to rounding
    reads = group.streamed
    s = fit_heads(store, None, estimator, runs=tmp_path / "s", data="stream", **common)
    assert s.data_mode == "stream" and group.streamed - reads > 2
    assert s.tasks[0].folds[0].test["confusion"] == a.tasks[0].folds[0].test["confusion"]
    np.testing.assert_allclose(
        s.tasks[0].folds[0].layer_weights, a.tasks[0].folds[0].layer_weights, atol=1e-6
    )


def test_all_tasks_and_layer_weights_find_the_informative_layer(fake_store, tmp_path):
    store, group = fake_store
    result = fit_heads(
        store,
        None,
        HeadClassifier(epochs=6, batch_size=16, lr=2e-2, device="cpu"),
        task="all",
        runs=tmp_path,
        folds="1",
    )
    assert [t.task for t in result.tasks] == ["emotion", "gender", "speaker"]
    assert group.streamed == 1  # one read into RAM serves all three tasks
    expected = {"emotion": EMOTION_LAYER, "gender": GENDER_LAYER, "speaker": SPEAKER_LAYER}
    for task in result.tasks:
        assert (tmp_path / "fakenet" / task.task / "metrics.json").is_file()
        assert int(np.argmax(task.folds[0].layer_weights)) == expected[task.task], task.task
        assert task.metrics["test_uar_mean"] > 0.7, task.task
    speaker = result.tasks[2]
    assert len(speaker.labels) == 10 and speaker.folds[0].sizes["test"] == 24


def test_memory_decision_and_errors(fake_store, monkeypatch, manifest):
    store, group = fake_store
    monkeypatch.setattr(training, "available_memory", lambda: 10**12)
    mode, size = choose_data_mode(group, manifest.ids, normalize=False)
    # without the store's num_frames(): 120 clips of 1.0-1.2 s at 50 frames/s (+1 each), float32
    frames = sum(int(np.ceil(manifest[i].duration * 50)) + 1 for i in manifest.ids)
    assert (mode, size) == ("memory", frames * L * D * 4)
    assert choose_data_mode(group, manifest.ids)[1] == size  # standardised per batch: no copy
    monkeypatch.setattr(training, "available_memory", lambda: size)  # needs 2x headroom
    assert choose_data_mode(group, manifest.ids, normalize=False)[0] == "stream"
    monkeypatch.setattr(training, "available_memory", lambda: 2 * size)
    assert choose_data_mode(group, manifest.ids, normalize=False)[0] == "memory"
    assert choose_data_mode(group, manifest.ids)[0] == "memory"
    assert choose_data_mode(group, manifest.ids, mode="memory")[0] == "memory"
    with pytest.raises(ValueError, match="data='disk'"):
        choose_data_mode(group, manifest.ids, mode="disk")
    with pytest.raises(training.StoreGroupError, match="choose one with --backbone"):
        two = FakeStore(group)
        two.backbones = ["a", "b"]
        monkeypatch.setattr(trustser.store, "open_store", lambda p: two)
        fit_heads(store)


# ----------------------------------------------------------------------------------- probes
def test_probes_per_layer_and_all_layers(fake_store, tmp_path):
    store, _ = fake_store
    result = run_probes(store, task="emotion", runs=tmp_path)
    (emotion,) = result.tasks
    assert result.path == tmp_path / "fakenet" / "probe" / "metrics.json"
    assert len(emotion.layers) == L
    # the single layer is chosen per fold on dev, and that layer's test score is reported
    assert emotion.dev_chosen["layers"] == [EMOTION_LAYER] * 5
    for fold in emotion.dev_chosen["folds"]:
        picked = emotion.layers[fold["layer"]]["folds"]
        assert fold["test_uar"] == next(f["test_uar"] for f in picked if f["fold"] == fold["fold"])
    assert emotion.all_layers["test_uar_mean"] > 0.9
    assert len(emotion.all_layers["folds"]) == 5
    run_probes(store, task="gender", runs=tmp_path, folds="1,2")
    metrics = json.loads(result.path.read_text())
    assert set(metrics["tasks"]) == {"emotion", "gender"}  # the second run kept the first
    gender = metrics["tasks"]["gender"]
    for fold in gender["dev_chosen"]["folds"]:  # the best dev UAR of all layers (ties: lowest)
        dev = [
            next(f["dev_uar"] for f in v["folds"] if f["fold"] == fold["fold"])
            for v in gender["layers"]
        ]
        assert fold["layer"] == dev.index(max(dev)) and fold["dev_uar"] == max(dev)
    assert metrics["gender_dev_chosen_layers"] == gender["dev_chosen"]["layers"]
    assert not any("best_layer_test" in key for key in metrics)  # nothing chosen on test
    assert metrics["tasks"]["gender"]["folds"] == ["fold1", "fold2"]
    assert metrics["emotion_test_uar_mean"] == emotion.all_layers["test_uar_mean"]


def test_probes_write_the_attackers_per_clip_predictions_and_the_profile_bounds_them(
    fake_store, tmp_path
):
    """The profile scores privacy by the strongest attacker, a probe included: its per-clip test
    predictions give that figure its speaker-bootstrap interval."""
    import csv

    from trustser.heads.probe import PROBE_ATTACKERS
    from trustser.profile import collect_profile
    from trustser.profile.axes.privacy import attacker as privacy_attacker

    store, _ = fake_store
    result = run_probes(store, task="gender", runs=tmp_path)
    (gender,) = result.tasks
    with (result.path.parent / "predictions-gender.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["attacker"] for r in rows} == set(PROBE_ATTACKERS.values())
    assert all(r["speaker"] and r["gender"] for r in rows)
    for attacker, figure in (
        (PROBE_ATTACKERS[None], gender.all_layers),
        (PROBE_ATTACKERS["dev"], gender.dev_chosen),
    ):
        mine = [r for r in rows if r["attacker"] == attacker]
        folds = sorted({r["fold"] for r in mine})
        assert len(mine) == sum(len(s.test) for s in _gender_splits(store))
        accuracy = np.mean(
            [np.mean([r["true"] == r["pred"] for r in mine if r["fold"] == f]) for f in folds]
        )
        assert accuracy == pytest.approx(figure["test_accuracy_mean"])
    profile = collect_profile(tmp_path, bootstrap=200)
    (entry,) = profile.backbones
    assert privacy_attacker(entry) in PROBE_ATTACKERS.values()
    interval = entry.intervals["privacy"]
    assert interval["value"] == pytest.approx(entry.raw["privacy"])
    assert interval["low"] <= interval["value"] <= interval["high"]
    assert not any("no interval" in note for note in entry.notes)


def _gender_splits(store):
    from trustser.heads.tasks import build_task
    from trustser.store import open_group

    group, _ = open_group(store)
    return build_task("gender", group.manifest()).splits


# -------------------------------------------------------------------------------------- CLI
def test_cli_fit_and_probe_wiring(fake_store, tmp_path):
    from trustser.cli.main import app

    store, _ = fake_store
    runner = CliRunner()
    runs = tmp_path / "runs"
    result = runner.invoke(
        app,
        [
            "heads",
            "fit",
            "--store",
            str(store),
            "--task",
            "gender",
            "--epochs",
            "2",
            "--folds",
            "1,2",
            "--runs",
            str(runs),
            "--device",
            "cpu",
            "--batch-size",
            "32",
            "--no-normalize",
            "--weight-decay",
            "0.01",
        ],
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # rich wraps at the terminal width
    assert "gender heads" in text and "mean" in text and "learned layer weights" in text
    config = json.loads((runs / "fakenet" / "gender" / "config.json").read_text())
    assert config["hyperparameters"]["normalize"] is False
    assert config["hyperparameters"]["weight_decay"] == 0.01
    assert (runs / "fakenet" / "gender" / "fold2" / "head.safetensors").is_file()
    result = runner.invoke(app, ["heads", "probe", "--store", str(store), "--runs", str(runs)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "emotion linear probes" in text and "all layers" in text
    bad = runner.invoke(
        app, ["heads", "fit", "--store", str(store), "--folds", "9", "--runs", str(runs)]
    )
    assert bad.exit_code == 2 and "fold '9' does not exist" in " ".join(bad.output.split())
    bad = runner.invoke(app, ["heads", "fit", "--store", str(store), "--class-weight", "x"])
    assert bad.exit_code == 2 and "--class-weight" in bad.output


def test_class_weight_none_as_typed_means_no_weighting(fake_store, tmp_path):
    assert class_weight_policy("none") is None
    assert class_weight_policy(None) is None
    assert class_weight_policy("balanced") == "balanced"
    assert class_weight_policy({"a": 2.0}) == {"a": 2.0}
    with pytest.raises(
        ValueError, match="--class-weight 'x' is not supported; use balanced or none"
    ):
        class_weight_policy("x")
    store, _ = fake_store
    common = dict(task="gender", folds="1")

    def head(policy):
        return default_estimator(batch_size=16, device="cpu", epochs=1, class_weight=policy)

    typed = fit_heads(store, None, head(class_weight_policy("none")), runs=tmp_path / "a", **common)
    plain = fit_heads(store, None, head(None), runs=tmp_path / "b", **common)
    typed, plain = typed.tasks[0], plain.tasks[0]
    config = json.loads((typed.directory / "config.json").read_text())
    assert config["hyperparameters"]["class_weight"] is None  # recorded as if None was passed
    assert typed.metrics["test_uar_mean"] == plain.metrics["test_uar_mean"]
    with pytest.raises(ValueError, match="--class-weight"):
        class_weight_policy("inverse")


def test_step_floor_applies_to_default_epochs_only(fake_store, tmp_path):
    store, _ = fake_store
    common = dict(task="gender", folds="1")

    def head(**params):  # no patience: the budget alone decides how long a fit trains
        return default_estimator(batch_size=16, device="cpu", patience=0, **params)

    exact = fit_heads(store, None, head(epochs=1), runs=tmp_path / "a", **common)
    exact = exact.tasks[0].folds[0]
    assert len(exact.history) == 1  # an explicit epoch count is taken as given
    floored = fit_heads(store, None, head(epochs=1, min_steps=40), runs=tmp_path / "b", **common)
    fold = floored.tasks[0].folds[0]
    steps_per_epoch = -(-fold.sizes["train"] // 16)
    assert len(fold.history) == -(-40 // steps_per_epoch) > 1
    default = fit_heads(store, None, head(), runs=tmp_path / "c", **common).tasks[0].folds[0]
    expected = max(DEFAULT_EPOCHS["gender"], -(-DEFAULT_MIN_STEPS // steps_per_epoch))
    assert len(default.history) == expected > DEFAULT_EPOCHS["gender"]


# ------------------------------------------------------------------- training to convergence
def _run_selection(scores, **options):
    """The epochs an EpochSelection lets a fit train when dev scores follow ``scores``."""
    from trustser.heads.estimator import EpochSelection, run_epochs

    selection = EpochSelection(3, **options)
    module = torch.nn.Linear(1, 1)
    run_epochs(
        selection,
        seed=0,
        train=lambda seed: (module, 0.0),
        evaluate=lambda m: scores[len(selection.history)],
    )
    return selection


def test_patience_trains_past_the_budget_until_dev_stops_improving():
    rising_then_flat = [0.1 * k for k in range(1, 9)] + [0.5] * 40
    selection = _run_selection(rising_then_flat, patience=4, max_epochs=100)
    # best at epoch 8, then 4 epochs without a better score
    assert (selection.best_epoch, len(selection.history)) == (8, 12)
    assert selection.stop_reason == "patience"
    # the cap ends a fit that is still improving, and says so
    still_rising = [0.01 * k for k in range(1, 60)]
    capped = _run_selection(still_rising, patience=4, max_epochs=20)
    assert len(capped.history) == 20 and capped.stop_reason == "cap"
    # no patience: the budget exactly, whatever dev does
    budget = _run_selection(still_rising, patience=0, max_epochs=20)
    assert len(budget.history) == 3 and budget.stop_reason == "budget"
    # patience never stops a fit before its budget
    early_peak = [0.9] + [0.1] * 20
    floor = _run_selection(early_peak, patience=1, max_epochs=50)
    assert len(floor.history) == 3 and floor.stop_reason == "patience"


def test_attackers_train_to_convergence_by_default_and_runs_record_the_cap(fake_store, tmp_path):
    store, _ = fake_store
    default = fit_heads(
        store,
        None,
        default_estimator(epochs=1, min_steps=0, batch_size=16, device="cpu"),
        task="gender,emotion",
        folds="1",
        runs=tmp_path / "a",
    )
    gender, emotion = default.tasks
    fold = gender.folds[0]
    # the attacker goes on until 10 epochs bring no better dev score
    assert fold.stop_reason == "patience" and fold.epochs_trained == fold.best_epoch + 10
    assert emotion.folds[0].epochs_trained == 1  # the emotion head keeps its budget
    assert emotion.folds[0].stop_reason == "budget"
    sidecar = json.loads(fold.head_path.with_suffix(".json").read_text())
    assert sidecar["stop_reason"] == "patience" and sidecar["hit_cap"] is False
    capped = fit_heads(
        store,
        None,
        default_estimator(
            epochs=1, min_steps=0, patience=50, max_epochs=3, batch_size=16, device="cpu"
        ),
        task="gender",
        folds="1",
        runs=tmp_path / "b",
    ).tasks[0]
    metrics = json.loads((capped.directory / "metrics.json").read_text())
    assert metrics["folds_at_cap"] == ["fold1"] and metrics["folds"][0]["hit_cap"] is True
    assert metrics["folds"][0]["epochs_trained"] == 3
