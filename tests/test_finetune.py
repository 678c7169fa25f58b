"""Fine-tuning the top blocks from the cache: training, saved tensors, variant features, errors.

Tiny random models of four families (Whisper, wav2vec2, WavLM, APC) on the toy tone corpus:
``fit_variant(store, "<backbone>@top1")`` trains the top block with the head from the cached input of
block L − 2 without ever running the backbone, writes the variant ``<backbone>@top1`` with each
fold's trained tensors, and the variant's privacy heads and probes see the fine-tuned blocks.
"""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from trustser.backbones import load_backbone
from trustser.backbones.top_blocks import TopBlocksError, with_top_blocks
from trustser.extract import extract
from trustser.heads.data import FeatureSet, PackedFeatures, StoreGroupError
from trustser.heads.estimator import HeadClassifier
from trustser.heads.finetune import (
    DEFAULT_BLOCK_LR,
    FineTuneClassifier,
    FineTunedModel,
    FineTuneError,
    padded_batches,
    read_top_blocks,
    store_top_blocks,
)
from trustser.heads.model import load_head
from trustser.heads.tasks import build_task
from trustser.runs import RunLayout, read_json
from trustser.store import open_store
from trustser.variants import VariantError, fit_variant, run_probes
from trustser.variants.finetune import finetuned, variant_features, variant_means
from trustser.variants.kind import encoder_fold

FAMILIES = ("whisper", "wav2vec2", "wavlm", "apc")


def _fit(store, name="tiny:whisper", *, task="emotion", seed=0, **request):
    """The variant ``name`` (``<backbone>@top<K>``) fitted fast: 3 epochs at large rates."""
    if "@" not in name:
        name = f"{name}@top1"
    estimator = HeadClassifier(epochs=3, lr=1e-2, device="cpu", seed=seed)
    tasks = ("emotion", "gender", "speaker") if task == "all" else tuple(task.split(","))
    return fit_variant(store, name, estimator, tasks=tasks, options={"block_lr": 1e-2}, **request)


@pytest.fixture(scope="module")
def stores(tmp_path_factory, toy_manifest_factory):
    """Per family: a float32 store of the toy corpus (6 speakers × 4 emotions × 2, 3 folds)."""
    root = tmp_path_factory.mktemp("finetune")
    manifest = toy_manifest_factory(root / "toy")
    out = {}
    for family in FAMILIES:
        path = root / f"{family}.zarr"
        extract(manifest, path, f"tiny:{family}", device="cpu", dtype="float32", progress=False)
        out[family] = path
    return out


@pytest.fixture(scope="module")
def whisper_run(stores, tmp_path_factory):
    """The tiny:whisper variant fitted for every task (emotion first), with a large block lr
    so its blocks move far from the pretrained ones."""
    runs = tmp_path_factory.mktemp("whisper-runs")
    result = _fit(stores["whisper"], task="all", runs=runs)
    return {"store": stores["whisper"], "runs": runs, "result": result}


def _group(store, name="tiny:whisper"):
    return open_store(store).group(name)


def _features(source, task, ids):
    return FeatureSet(source, tuple(ids), tuple(task.label_of[i] for i in ids))


@pytest.mark.parametrize("family", FAMILIES)
def test_fine_tuning_trains_the_top_block_from_the_cache_without_running_the_backbone(
    stores, tmp_path, monkeypatch, family
):
    name = f"tiny:{family}"
    backbone_type = type(load_backbone(name, device="cpu"))

    def never(*args, **kwargs):
        raise AssertionError("fine-tuning from the cache must never run the backbone")

    monkeypatch.setattr(backbone_type, "forward", never)
    result = _fit(stores[family], name, runs=tmp_path)
    variant = f"{name}@top1"
    assert result.variant == variant and result.tasks[0].backbone == variant
    layout = RunLayout(tmp_path)
    assert layout.backbone_dir(variant).name == f"tiny-{family}@top1"
    group = _group(stores[family], name)
    pretrained = store_top_blocks(group.provenance, 1).state_dict()
    metrics = result.tasks[0].metrics
    assert metrics["variant"]["name"] == variant and metrics["variant"]["k"] == 1
    for fold in ("fold1", "fold2", "fold3"):
        state, sidecar = read_top_blocks(layout.top_blocks_path(variant, fold))
        assert set(state) == set(pretrained)  # only the trained tensors
        assert any(not torch.equal(state[k], pretrained[k]) for k in state)  # they trained
        assert sidecar["base_backbone"] == name and sidecar["k"] == 1
        assert sidecar["base_weights_sha256"] == group.provenance["weights_sha256"]
        assert sidecar["store"]["group"] == name and sidecar["fold"] == fold
        head_sidecar = json.loads(
            layout.head_path(variant, "emotion", fold).with_suffix(".json").read_text()
        )
        assert head_sidecar["variant"]["top_blocks"] == "top_blocks.safetensors"
    head_params = sum(
        p.numel() for p in load_head(layout.head_path(variant, "emotion", "fold1"))[0].parameters()
    )
    block_params = sum(t.numel() for t in pretrained.values())
    assert metrics["trainable_parameters"] == head_params + block_params
    # nothing else of the backbone is saved: the fold's files are the head, the blocks and the
    # fold's resumable results
    names = sorted(p.name for p in (layout.head_dir(variant, "emotion") / "fold1").iterdir())
    assert names == [
        "fold.json",
        "head.json",
        "head.safetensors",
        "top_blocks.json",
        "top_blocks.safetensors",
    ]


def test_same_seed_same_variant_and_another_seed_another(stores, tmp_path):
    runs = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    for runs_dir, seed in zip(runs, (0, 0, 1), strict=True):
        _fit(
            stores["wav2vec2"], "tiny:wav2vec2", runs=runs_dir, folds="1", seed=seed
        )  # wav2vec2's blocks keep their dropout (0.1) in training: seeded too
    loaded = [
        load_file(str(RunLayout(r).top_blocks_path("tiny:wav2vec2@top1", "fold1"))) for r in runs
    ]
    assert all(torch.equal(loaded[0][k], loaded[1][k]) for k in loaded[0])
    assert any(not torch.equal(loaded[0][k], loaded[2][k]) for k in loaded[0])
    metrics = [
        json.loads(
            (RunLayout(r).head_dir("tiny:wav2vec2@top1", "emotion") / "metrics.json").read_text()
        )
        for r in runs
    ]
    assert (
        metrics[0]["folds"][0]["history"][-1]["train_loss"]
        == metrics[1]["folds"][0]["history"][-1]["train_loss"]
    )


def test_memory_and_streamed_features_train_the_same_model(stores, tmp_path):
    for data in ("memory", "stream"):
        _fit(stores["whisper"], runs=tmp_path / data, folds="2", data=data)
    a, b = (
        load_file(str(RunLayout(tmp_path / d).top_blocks_path("tiny:whisper@top1", "fold2")))
        for d in ("memory", "stream")
    )
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_saved_tensors_reload_into_the_model_and_into_the_backbone(whisper_run):
    layout = RunLayout(whisper_run["runs"])
    group = _group(whisper_run["store"])
    variant = "tiny:whisper@top1"
    state, _ = read_top_blocks(layout.top_blocks_path(variant, "fold1"))
    head, sidecar = load_head(layout.head_path(variant, "emotion", "fold1"))
    top = store_top_blocks(group.provenance, 1)
    top.load_state_dict(state)
    model = FineTunedModel(top, head).eval()
    # The reloaded model reproduces the probabilities the run wrote for the fold's test clips.
    rows = {}
    with open(layout.head_dir(variant, "emotion") / "predictions.csv") as handle:
        header = handle.readline().strip().split(",")
        for line in handle:
            row = dict(zip(header, line.strip().split(","), strict=True))
            if row["fold"] == "fold1":
                rows[row["id"]] = np.array([float(row[f"prob_{x}"]) for x in sidecar["labels"]])
    source = PackedFeatures.from_source(group, list(rows))
    with torch.no_grad():
        for batch in padded_batches(source, list(rows), layers=model.lower_layers, batch_size=4):
            proba = torch.softmax(model(batch.hidden, batch.mask), 1).numpy()
            for row, utterance_id in enumerate(batch.ids):
                np.testing.assert_allclose(proba[row], rows[utterance_id], atol=1e-6)
    # Swapped into the frozen backbone (the attack path), they are its top block.
    backbone = load_backbone("tiny:whisper", device="cpu")
    swapped = with_top_blocks(backbone, state)
    assert (
        swapped.provenance()["top_blocks"]["base_weights_sha256"]
        == group.provenance["weights_sha256"]
    )
    for key, tensor in swapped.top_blocks(1).state_dict().items():
        assert torch.equal(tensor, state[key])
    assert not torch.equal(
        backbone.top_blocks(1).state_dict()["blocks.0.fc1.weight"], state["blocks.0.fc1.weight"]
    )


def test_padding_changes_nothing_in_the_training_batch_path(whisper_run):
    """Logits of clips alone equal their logits inside a padded batch, even with garbage in the
    padded frames (the blocks zero padded inputs and mask keys; the head pools real frames)."""
    layout = RunLayout(whisper_run["runs"])
    group = _group(whisper_run["store"])
    state, _ = read_top_blocks(layout.top_blocks_path("tiny:whisper@top1", "fold1"))
    head, _ = load_head(layout.head_path("tiny:whisper@top1", "emotion", "fold1"))
    top = store_top_blocks(group.provenance, 1)
    top.load_state_dict(state)
    model = FineTunedModel(top, head).eval()
    ids = sorted(group.ids, key=lambda i: group.num_frames([i])[0])
    chosen = [ids[0], ids[len(ids) // 2], ids[-1]]
    lengths = group.num_frames(chosen)
    assert len(set(lengths.tolist())) == 3
    source = PackedFeatures.from_source(group, chosen)
    (batch,) = padded_batches(source, chosen, layers=model.lower_layers, batch_size=8)
    hidden = batch.hidden.clone()
    padding = ~batch.mask[:, None, :, None].expand_as(hidden)
    hidden[padding] = 1e3 * torch.randn(int(padding.sum()))
    with torch.no_grad():
        together = model(hidden, batch.mask)
        for row, utterance_id in enumerate(batch.ids):
            n = int(batch.lengths[row])
            alone = model(batch.hidden[row : row + 1, :, :n], torch.ones(1, n, dtype=torch.bool))
            torch.testing.assert_close(
                together[row : row + 1], alone, rtol=1e-5, atol=1e-5, msg=utterance_id
            )


def _assert_head_read_the_variant(store, runs, task_name: str, fold: str) -> None:
    """The ``task`` head of ``tiny:whisper@top1`` in ``fold``: its written test probabilities
    are the head applied to the variant's features (the fold's fine-tuned blocks over the
    cache), and the pretrained blocks would have given other ones."""
    variant = "tiny:whisper@top1"
    layout = RunLayout(runs)
    group = _group(store)
    split = build_task(task_name, group.manifest()).split(fold)
    head, sidecar = load_head(layout.head_path(variant, task_name, fold))
    labels = list(sidecar["labels"])
    written = {}
    with open(layout.head_dir(variant, task_name) / "predictions.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["fold"] == fold:
                written[row["id"]] = np.array([float(row[f"prob_{c}"]) for c in labels])
    assert written
    top = store_top_blocks(group.provenance, 1)
    pretrained = store_top_blocks(group.provenance, 1)
    top.load_state_dict(read_top_blocks(layout.top_blocks_path(variant, fold))[0])

    def probabilities(blocks):
        features = variant_features(group, split.test, blocks)
        out = {}
        for batch in features.batches(split.test, batch_size=64, shuffle=False):
            with torch.no_grad():
                proba = torch.softmax(head(batch.hidden, batch.mask), 1).numpy()
            out.update(zip(batch.ids, proba, strict=True))
        return out

    fine_tuned, frozen = probabilities(top), probabilities(pretrained)
    gap = 0.0
    for utterance_id, expected in written.items():
        np.testing.assert_allclose(fine_tuned[utterance_id], expected, atol=1e-5)
        gap = max(gap, float(np.abs(frozen[utterance_id] - expected).max()))
    assert gap > 1e-3  # the pretrained blocks would give other answers: the heads saw the variant


def test_variant_privacy_heads_and_probes_see_the_fine_tuned_blocks(whisper_run):
    layout = RunLayout(whisper_run["runs"])
    group = _group(whisper_run["store"])
    variant = "tiny:whisper@top1"
    tasks = {t.task: t for t in whisper_run["result"].tasks}
    assert list(tasks) == [
        "emotion",
        "gender",
        "speaker",
    ]  # emotion first: its blocks feed the rest
    assert tasks["gender"].metrics["variant"]["trained"].startswith("head only")
    assert load_head(layout.head_path(variant, "gender", "fold2"))[1]["variant"]["blocks_fold"] == (
        "fold2"
    )
    _assert_head_read_the_variant(whisper_run["store"], whisper_run["runs"], "gender", "fold2")
    # The speaker task has its own split, whose fold names only match the emotion folds': every
    # speaker fold reads one deployed model, the first emotion fold's blocks.
    speaker = tasks["speaker"].metrics["variant"]["blocks_folds"]
    assert speaker == dict.fromkeys(("fold1", "fold2", "fold3", "fold4", "fold5"), "fold1")
    # Probes: the variant's time-means — the store's for the lower layers, the blocks' above.
    probe = run_probes(whisper_run["store"], variant, task="gender", runs=whisper_run["runs"])
    assert (
        probe.path == layout.probe_dir(variant) / "metrics.json"
        and probe.metrics["variant"]["k"] == 1
    )
    top = store_top_blocks(group.provenance, 1)
    top.load_state_dict(read_top_blocks(layout.top_blocks_path(variant, "fold2"))[0])
    ids = list(build_task("gender", group.manifest()).split("fold2").test)
    means = variant_means(group, ids, top)
    np.testing.assert_allclose(means[:, :2], group.means(ids)[:, :2], rtol=0, atol=1e-6)
    frames = torch.from_numpy(group.frames(ids[0]))
    with torch.no_grad():
        upper = top(frames[1][None])[0, 0].mean(0).numpy()
    np.testing.assert_allclose(means[0, 2], upper, rtol=1e-5, atol=1e-6)


def test_fine_tune_classifier_on_its_own(stores):
    group = _group(stores["apc"], "tiny:apc")
    task = build_task("emotion", group.manifest())
    split = task.splits[0]
    blocks = store_top_blocks(group.provenance, 2)
    before = {k: v.clone() for k, v in blocks.state_dict().items()}
    model = FineTuneClassifier(epochs=2, device="cpu").fit(
        _features(group, task, split.train),
        _features(group, task, split.dev),
        blocks=blocks,
        classes=task.labels,
    )
    assert model.block_lr == DEFAULT_BLOCK_LR and model.top_blocks_.k == 2
    assert all(torch.equal(before[k], v) for k, v in blocks.state_dict().items())  # a copy trained
    assert model.predict_proba(_features(group, task, split.test)).shape == (len(split.test), 4)
    assert "FineTuneClassifier(" in repr(model)
    with pytest.raises(ValueError, match="block_lr"):
        FineTuneClassifier(block_lr=0).fit(_features(group, task, split.train), blocks=blocks)
    with pytest.raises(FineTuneError, match="top blocks"):
        FineTuneClassifier().fit(_features(group, task, split.train), blocks=object())


def test_clear_errors(stores, tmp_path, toy_manifest, monkeypatch):
    store = stores["whisper"]
    with pytest.raises(TopBlocksError, match=r"K must lie in \[1, 2\]"):
        _fit(store, "tiny:whisper@top3", runs=tmp_path)
    with pytest.raises(VariantError, match="give one of them"):
        finetuned("tiny:whisper@top1", 2)
    with pytest.raises(VariantError, match="not a fine-tuned one"):
        finetuned("tiny:whisper@privacy-l0.3", 0)
    assert finetuned("tiny:whisper", 0) is None
    assert finetuned("tiny:whisper", 2).name == finetuned("tiny:whisper@top2").name
    with pytest.raises(FineTuneError, match="train the variant first"):
        _fit(store, "tiny:whisper@top1", task="gender", runs=tmp_path / "empty")
    with pytest.raises(ValueError, match="top<K> with K >= 1"):
        _fit(store, "tiny:whisper@top0", runs=tmp_path)
    with pytest.raises(StoreGroupError, match="no features of backbone"):
        _fit(store, "tiny:hubert@top1", runs=tmp_path)
    # Whisper's 30 s window: the cache lacks the padding those blocks attend to.
    window = tmp_path / "30s.zarr"
    extract(toy_manifest, window, "tiny:whisper", device="cpu", window="30s", progress=False)
    with pytest.raises(TopBlocksError, match="window='30s'"):
        _fit(window, runs=tmp_path)
    # A family whose backbone offers no top blocks.
    from trustser.backbones.base import Backbone
    from trustser.backbones.wav2vec2 import Wav2Vec2StyleBackbone

    monkeypatch.setattr(Wav2Vec2StyleBackbone, "top_blocks", Backbone.top_blocks)
    with pytest.raises(TopBlocksError, match="not implemented for family 'wavlm'"):
        _fit(stores["wavlm"], "tiny:wavlm", runs=tmp_path)
    with pytest.raises(VariantError, match="fold 'fold9' has no trained encoder"):
        encoder_fold("fold9", ["fold1"], task="gender")


def test_cli_fits_the_variant_and_its_privacy_heads(stores, tmp_path):
    from trustser.cli.main import app

    runner = CliRunner()
    common = [
        "--store",
        str(stores["whisper"]),
        "--runs",
        str(tmp_path),
        "--epochs",
        "2",
        "--device",
        "cpu",
    ]
    fine_tune = ["--finetune-top", "1", "--block-lr", "1e-2"]  # blocks that move in 2 epochs
    result = runner.invoke(
        app, ["heads", "fit", *common, "--task", "emotion", *fine_tune, "--folds", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "tiny:whisper@top1" in result.output and "trainable parameters" in result.output
    result = runner.invoke(
        app,
        [
            "heads",
            "fit",
            *common,
            "--backbone",
            "tiny:whisper@top1",
            "--task",
            "gender",
            "--folds",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    # the gender head was trained on, and scores, the variant's representation
    _assert_head_read_the_variant(stores["whisper"], tmp_path, "gender", "fold1")
    result = runner.invoke(
        app,
        [
            "heads",
            "probe",
            "--store",
            str(stores["whisper"]),
            "--runs",
            str(tmp_path),
            "--backbone",
            "tiny:whisper@top1",
            "--task",
            "gender",
            "--folds",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    # the probes read the variant's time-means: what the library call on the variant writes,
    # and not what probes of the frozen backbone read
    layout = RunLayout(tmp_path)
    written = read_json(layout.probe_dir("tiny:whisper@top1") / "metrics.json")
    again = tmp_path / "again"
    shutil.copytree(tmp_path, again, ignore=shutil.ignore_patterns("again"))
    library = run_probes(
        stores["whisper"], "tiny:whisper@top1", task="gender", runs=again, folds="1"
    )
    frozen = run_probes(stores["whisper"], "tiny:whisper", task="gender", runs=again, folds="1")
    assert written["variant"]["k"] == 1
    assert written["tasks"]["gender"] == library.metrics["tasks"]["gender"]
    assert written["tasks"]["gender"]["layers"] != frozen.metrics["tasks"]["gender"]["layers"]
    result = runner.invoke(app, ["heads", "fit", *common, "--finetune-top", "5"])
    assert result.exit_code == 2 and "K must lie in" in result.output
