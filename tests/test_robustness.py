"""`trustser robustness` on a tiny random Whisper: corrupted copies extracted once into the
store, every model evaluated from the cache (the same predictions as end to end), smoothing end
to end, determinism, resume, the store's derived manifest, the command line."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from trustser.backbones import load_backbone
from trustser.cli.main import app
from trustser.corruptions import suite
from trustser.deployed.loading import load_waveforms
from trustser.end_to_end import EndToEndClassifier
from trustser.heads.estimator import HeadClassifier
from trustser.heads.model import load_head
from trustser.robustness import (
    Corrupter,
    RobustnessError,
    corrupted_id,
    corrupted_set,
    extract_copies,
    read_clips,
    run_robustness,
)
from trustser.robustness.results import CLIP_COLUMNS
from trustser.runs import RunLayout
from trustser.store import StoreError, open_store
from trustser.variants import parse
from trustser.variants.finetune import variant_encoder

BACKBONE = "tiny:whisper"
TOP = f"{BACKBONE}@top1"
SMOOTH = f"{BACKBONE}@smooth-s20-n2"
SPEAKERS = (("s1", "female"), ("s2", "male"), ("s3", "female"), ("s4", "male"))
CORRUPTIONS = ["white_noise", "babble", "telephone"]  # seeded, talkers, deterministic


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, toy_manifest_factory):
    """A float32 store of tiny:whisper (so the cache path can be compared with the live
    backbone exactly), emotion heads for folds 1 and 2, a fine-tuned and a smoothed variant,
    and a pristine copy of the store before any corrupted copy."""
    from trustser.extract import extract
    from trustser.heads.training import fit_heads
    from trustser.variants import fit_variant

    root = tmp_path_factory.mktemp("robustness")
    groups = [[s] for s, _ in SPEAKERS]
    manifest = toy_manifest_factory(root, speakers=SPEAKERS, groups=groups)
    store = root / "cache.zarr"
    extract(manifest, store, BACKBONE, device="cpu", progress=False, dtype="float32")
    shutil.copytree(store, root / "pristine.zarr")
    runs = root / "runs"
    estimator = HeadClassifier(epochs=3, lr=1e-2, normalize=True, device="cpu")
    fit_heads(store, None, estimator, runs=runs, folds="1,2", task="emotion")
    fit_variant(
        store,
        TOP,
        estimator,
        runs=runs,
        folds="1,2",
        tasks=("emotion",),
        options={"block_lr": 1e-2},
    )
    fit_variant(store, SMOOTH, estimator, runs=runs, folds="1,2", batch_size=4)
    shutil.copytree(runs, root / "pristine-runs")
    return {"root": root, "store": store, "runs": runs, "manifest": manifest}


@pytest.fixture(scope="module")
def evaluated(pipeline):
    """One robustness run of every model on the small suite."""
    (run,) = run_robustness(
        pipeline["store"],
        runs=pipeline["runs"],
        corruptions=CORRUPTIONS,
        device="cpu",
        batch_size=4,
        replicates=200,
    )
    return run


def _clips(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == CLIP_COLUMNS
        return list(reader)


def test_every_model_is_evaluated_and_says_how(evaluated):
    models = {m.model: m for m in evaluated.models}
    assert set(models) == {BACKBONE, TOP, SMOOTH}
    cases = [c.name for c in suite(CORRUPTIONS)]
    for model in models.values():
        summary = model.summary
        assert summary["suite"]["cases"] == cases and [c["name"] for c in summary["cases"]] == cases
        assert summary["folds"] == ["fold1", "fold2"]
        # every test clip of both folds once per case, each with its clean prediction
        rows = _clips(model.directory / "clips.csv")
        assert len(rows) == 16 * len(cases)
        assert all(r["unchanged"] == str(int(r["pred"] == r["clean_pred"])) for r in rows)
        for case in summary["cases"]:
            mine = [r for r in rows if r["case"] == case["name"]]
            per_fold = [
                np.mean([r["unchanged"] == "1" for r in mine if r["fold"] == f])
                for f in ("fold1", "fold2")
            ]
            assert case["unchanged"] == pytest.approx(np.mean(per_fold))
            assert case["uar_drop"] == pytest.approx(case["uar_clean"] - case["uar"])
            assert set(case["per_gender"]) == {"female", "male"}
            interval = case["intervals"]["unchanged"]
            assert interval["low"] <= case["unchanged"] <= interval["high"]
        # the record of each case names its transform's parameters
        assert summary["suite"]["records"]["babble-2"]["params"]["snr_db"] == 10.0
    assert models[BACKBONE].summary["inference"]["path"] == "cache"
    assert "top 1 block" in models[TOP].summary["inference"]["description"]
    smooth = models[SMOOTH].summary["inference"]
    assert smooth["path"] == "end to end" and "noise to the waveform" in smooth["reason"]
    assert models[SMOOTH].end_to_end is not None and models[BACKBONE].end_to_end is None


def test_cache_predictions_equal_end_to_end_on_the_same_corrupted_clip(pipeline, evaluated):
    """The corrupted copy's cached features give the predictions the deployed model (backbone
    and head; with the variant's fine-tuned block swapped in) gives on the same corrupted
    waveform, made again here."""
    from trustser.deployed.batches import predict_clips
    from trustser.deployed.loading import FoldHead

    group = open_store(pipeline["store"]).group(BACKBONE)
    provenance = group.provenance
    manifest = group.manifest()
    layout = RunLayout(pipeline["runs"])
    backbone = load_backbone(BACKBONE, device="cpu", window=provenance["window"])
    corrupter = Corrupter(manifest, seed=0, max_seconds=provenance["max_seconds"])
    copies = corrupted_set(
        manifest, suite(CORRUPTIONS), folds=[manifest.fold("fold1"), manifest.fold("fold2")]
    )
    rows = {m.model: read_clips(m.directory) for m in evaluated.models}
    compared = 0
    for fold in ("fold1", "fold2"):
        deployed = {}
        for model in (BACKBONE, TOP):
            path = layout.head_path(model, "emotion", fold)
            head, sidecar = load_head(path)
            encoder = backbone
            if model == TOP:
                record = FoldHead(path, sidecar, provenance, torch.device("cpu"))
                encoder = variant_encoder(parse(TOP), backbone, record)
            deployed[model] = (EndToEndClassifier(encoder, head), sidecar["labels"])
        clips = [manifest[i] for i in sidecar["test_ids"]]
        waves = load_waveforms(clips, provenance)
        for case in suite(CORRUPTIONS):
            pools = [copies.manifest[copies.ids[(c.id, case.name)]].custom for c in clips]
            corrupted = [
                torch.from_numpy(
                    corrupter.corrupt(c, case, w.numpy(), pool=p.get("babble_pool", ()))
                )
                for c, w, p in zip(clips, waves, pools, strict=True)
            ]
            # the copy in the store is the backbone's output on this very waveform
            x = corrupted[0][None]
            with torch.no_grad():
                hidden, _ = backbone(x, torch.tensor([x.shape[1]]))
            cached = torch.from_numpy(group.frames(copies.ids[(clips[0].id, case.name)]))[None]
            assert torch.allclose(hidden, cached, atol=1e-5)
            for model, (classifier, labels) in deployed.items():
                logits = predict_clips(classifier, corrupted, batch_size=8)
                expected = {r.id: r.pred for r in rows[model] if r.case == case.name}
                for clip, row in zip(clips, logits, strict=True):
                    assert labels[int(row.argmax())] == expected[clip.id], (model, case.name)
                    compared += 1
    assert compared == 2 * 16 * len(suite(CORRUPTIONS))


def test_the_same_seed_gives_the_same_results_and_reuses_the_copies(pipeline, evaluated):
    first = {m.model: m for m in evaluated.models}
    before = {m.model: read_clips(m.directory) for m in evaluated.models}
    (again,) = run_robustness(
        pipeline["store"],
        runs=pipeline["runs"],
        corruptions=CORRUPTIONS,
        device="cpu",
        batch_size=3,  # other batches of cached features: the same predictions
        replicates=200,
        variants=False,
    )
    assert again.extraction.clips_written == 0 and again.extraction.done == 16 * 7
    (smooth,) = run_robustness(  # randomized, so the same settings: the same draws
        pipeline["store"],
        runs=pipeline["runs"],
        backbones=[SMOOTH],
        corruptions=CORRUPTIONS,
        device="cpu",
        batch_size=4,
        replicates=200,
    )
    for second in (*again.models, *smooth.models):
        model = first[second.model]
        assert before[second.model] == read_clips(second.directory)
        for key in ("cases", "suite_mean", "clean"):
            assert json.dumps(model.summary[key], sort_keys=True) == json.dumps(
                second.summary[key], sort_keys=True
            )


def test_another_seed_makes_other_copies(pipeline):
    manifest = open_store(pipeline["store"]).group(BACKBONE).manifest()
    folds = [manifest.fold("fold1")]
    one = corrupted_set(manifest, suite(["white_noise"], levels=[1]), folds=folds, seed=0)
    two = corrupted_set(manifest, suite(["white_noise"], levels=[1]), folds=folds, seed=1)
    assert set(one.ids.values()).isdisjoint(two.ids.values())  # one id is one audio clip
    clip = manifest.split(folds[0])["test"][0]
    assert one.ids[(clip.id, "white_noise-1")] == corrupted_id(clip.id, "white_noise-1", seed=0)
    for copy in one.manifest:
        assert (
            copy.custom["source"] in manifest.by_id
            and copy.speaker == manifest[copy.custom["source"]].speaker
        )


def test_babble_pools_never_hold_the_clip_speaker(pipeline):
    manifest = open_store(pipeline["store"]).group(BACKBONE).manifest()
    copies = corrupted_set(
        manifest, suite(["babble"]), folds=[manifest.fold("fold1"), manifest.fold("fold2")]
    )
    for copy in copies.manifest:
        pool = copy.custom["babble_pool"]
        assert len(pool) >= 3 and all(manifest[i].speaker != copy.speaker for i in pool)


def test_the_copies_are_a_derived_manifest_not_a_corpus(pipeline, evaluated):
    group = open_store(pipeline["store"]).group(BACKBONE)
    assert group.corpora == ["toy"]
    assert {u.id for u in group.manifest()} == {u.id for u in pipeline["manifest"]}
    derived = group.derived_manifests()[0]
    record = derived["derived"]
    assert derived["corpus"] == "toy+corrupted" and record["kind"] == "corrupted copies"
    assert record["suite_seed"] == 0 and record["cases"] == [c.name for c in suite(CORRUPTIONS)]
    assert record["from"] == group.manifest().checksum()
    summary = group.summary()
    assert summary["copies_done"] == 16 * 7 and summary["clips_done"] == len(pipeline["manifest"])
    # a corpus manifest may not take the derived manifest's name, nor the other way round
    from trustser.store import StoreWriter
    from trustser.store.plan import ClipFacts

    writer = StoreWriter(pipeline["store"], BACKBONE, provenance=group.provenance)
    clash = pipeline["manifest"].__class__(
        corpus="toy+corrupted", utterances=pipeline["manifest"].utterances[:1]
    )
    with pytest.raises(StoreError, match="already holds a derived manifest"):
        writer.add_manifest(clash, clips={u.id: ClipFacts(16_000, 50, None) for u in clash})
    info = CliRunner().invoke(app, ["store", "info", str(pipeline["store"])])
    assert info.exit_code == 0 and "corrupted copies" in info.output


def test_an_interrupted_extraction_resumes_without_losing_written_units(
    pipeline, evaluated, tmp_path, monkeypatch
):
    store = tmp_path / "cache.zarr"
    shutil.copytree(pipeline["root"] / "pristine.zarr", store)
    group = open_store(store).group(BACKBONE)
    manifest = group.manifest()
    copies = corrupted_set(
        manifest, suite(CORRUPTIONS), folds=[manifest.fold("fold1"), manifest.fold("fold2")]
    )
    calls = {"n": 0}
    original = Corrupter.__call__

    def failing(self, utterance, waveform):
        calls["n"] += 1
        if calls["n"] > 60:
            raise RuntimeError("simulated crash")
        return original(self, utterance, waveform)

    monkeypatch.setattr(Corrupter, "__call__", failing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        extract_copies(store, group, copies, device="cpu", shard_mb=0.02, num_workers=1)
    kept = len(open_store(store).group(BACKBONE).ids) - len(manifest)
    assert 0 < kept < 112  # whole units were written before the crash
    monkeypatch.setattr(Corrupter, "__call__", original)
    resumed = extract_copies(store, group, copies, device="cpu", shard_mb=0.02)
    assert resumed.pending == 0 and resumed.clips_written == 112 - kept
    # the resumed copies are the uninterrupted run's (features up to padding round-off)
    reference = open_store(pipeline["store"]).group(BACKBONE)
    final = open_store(store).group(BACKBONE)
    for copy in copies.ids.values():
        np.testing.assert_allclose(final.frames(copy), reference.frames(copy), atol=1e-5)


def test_variant_kinds_say_whether_they_need_the_waveform():
    assert parse(SMOOTH).end_to_end is not None
    for name in (TOP, f"{BACKBONE}@fair-post", f"{BACKBONE}@fair-reweight"):
        assert parse(name).end_to_end is None, name
    assert parse(f"{BACKBONE}@privacy-l1").end_to_end is None


def test_bad_requests_fail_with_one_clear_sentence(pipeline):
    from trustser.extract import ExtractionError, extract

    with pytest.raises(ExtractionError, match="transform and derived go together"):
        extract(pipeline["manifest"], pipeline["store"], BACKBONE, transform=lambda u, w: w)
    with pytest.raises(Exception, match="unknown corruption 'hum'"):
        run_robustness(pipeline["store"], runs=pipeline["runs"], corruptions=["hum"])
    with pytest.raises(RobustnessError, match="batch_size"):
        run_robustness(pipeline["store"], runs=pipeline["runs"], batch_size=0)
    with pytest.raises(Exception, match="no trained emotion head"):
        run_robustness(
            pipeline["store"],
            runs=pipeline["root"] / "nothing",
            backbones=[BACKBONE],
            corruptions=["white_noise"],
        )


def test_cli_wiring_and_an_80_column_table(pipeline, evaluated):
    runner = CliRunner()
    args = ["robustness", "-s", str(pipeline["store"]), "-r", str(pipeline["runs"])]
    result = runner.invoke(
        app,
        [
            *args,
            *("--corruption", "white_noise,telephone", "--severity", "3", "--severity", "1"),
            *("--no-variants", "--device", "cpu", "--bootstrap", "50", "--no-progress"),
        ],
        env={"COLUMNS": "80"},
    )
    assert result.exit_code == 0, result.output
    assert "tiny:whisper: robustness (from the cache)" in result.output
    for name in ("white_noise-1", "white_noise-3", "telephone-1", "suite mean"):
        assert name in result.output
    assert all(len(line) <= 80 for line in result.output.splitlines())
    bad = runner.invoke(app, [*args, "--corruption", "hum", "--no-progress"])
    assert bad.exit_code == 2 and "unknown corruption 'hum'" in bad.output


def test_the_phase_bar_draws_one_bar_per_phase_with_its_unit():
    import io

    from rich.console import Console

    from trustser.cli._progress import PhaseBar
    from trustser.robustness import RobustnessProgress

    stream = io.StringIO()
    with PhaseBar(console=Console(file=stream, width=100, force_terminal=False)) as bar:
        for done in (0, 5, 10):
            bar(RobustnessProgress("tiny:whisper: corrupted copies", done, 10, "clips"))
        for done in (0, 40):
            bar(RobustnessProgress("tiny:whisper: evaluating", done, 40, "clip passes"))
    text = stream.getvalue()
    assert "corrupted copies" in text and "10/10 clips" in text
    assert "evaluating" in text and "40/40 clip passes" in text
