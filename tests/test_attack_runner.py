"""`trustser attack` end to end on a tiny random Whisper: store → heads → attack → outputs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from trustser.attacks import functional as AF
from trustser.attacks.batched import attack_clips
from trustser.attacks.methods import AttackError
from trustser.attacks.results import CLIP_COLUMNS
from trustser.attacks.runner import AttackProgress, run_attack
from trustser.audio import load_audio
from trustser.backbones import load_backbone
from trustser.batching import length_batches, length_mask
from trustser.deployed.batches import pad_batch, predict_clips
from trustser.end_to_end import EndToEndClassifier
from trustser.heads.estimator import HeadClassifier
from trustser.heads.model import LayerWeightedHead, load_head
from trustser.metrics.safety import asr_by_fold
from trustser.runs import RunLayout

BACKBONE = "tiny:whisper"
SPEAKERS = (("s1", "female"), ("s2", "male"), ("s3", "female"), ("s4", "male"))
F0 = {"neutral": 120.0, "happy": 300.0, "sad": 700.0, "angry": 1600.0}


def _tone(rng: np.random.Generator, index: int, emotion: str) -> np.ndarray:
    """0.4–0.8 s of a tone near the emotion's F0, at a random level, plus a little noise."""
    del index
    n = int(16_000 * (0.4 + 0.4 * rng.random()))
    t = np.arange(n) / 16_000
    f0 = F0[emotion] * (1 + 0.05 * rng.standard_normal())
    x = (0.1 + 0.2 * rng.random()) * np.sin(2 * np.pi * f0 * t)
    return x + 0.01 * rng.standard_normal(n)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, toy_manifest_factory):
    """A store extracted with tiny:whisper and emotion heads for folds 1 and 2.

    The toy corpus: 4 speakers × 4 emotions × 2 clips of 0.4–0.8 s tones; 4 speaker folds.
    """
    from trustser.extract import extract
    from trustser.heads.training import fit_heads

    root = tmp_path_factory.mktemp("attack")
    groups = [[s] for s, _ in SPEAKERS]
    manifest = toy_manifest_factory(root, speakers=SPEAKERS, groups=groups, clip=_tone)
    store = root / "cache.zarr"
    extract(manifest, store, BACKBONE, device="cpu", progress=False)
    runs = root / "runs"
    fit_heads(
        store,
        None,
        HeadClassifier(epochs=3, lr=1e-2, normalize=True, device="cpu"),
        runs=runs,
        folds="1,2",
    )
    return {"root": root, "store": store, "runs": runs, "manifest": manifest}


def _attack(pipeline, method: str, snr_db, **options):
    """``run_attack`` on the shared pipeline, on the CPU in batches of 4."""
    return run_attack(
        pipeline["store"],
        runs=pipeline["runs"],
        method=method,
        snr_db=snr_db,
        device="cpu",
        batch_size=4,
        **options,
    )


@pytest.fixture(scope="module")
def fgsm_and_noise(pipeline):
    fgsm = _attack(pipeline, "fgsm", [45, 10], save_audio=2)
    noise = _attack(pipeline, "noise", [45, 10])
    return fgsm, noise


def _read_clips(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == CLIP_COLUMNS
        return list(reader)


def test_clean_logits_equal_the_head_on_cached_features(pipeline):
    from trustser.store import open_store

    group = open_store(pipeline["store"]).group(BACKBONE)
    provenance = group.provenance
    backbone = load_backbone(provenance["backbone"], device="cpu", window=provenance["window"])
    head, sidecar = load_head(RunLayout(pipeline["runs"]).head_path(BACKBONE, "emotion", "fold1"))
    model = EndToEndClassifier(backbone, head)
    manifest = group.manifest()
    ids = sidecar["test_ids"]
    waveforms = [
        load_audio(manifest[i].path, max_seconds=provenance["max_seconds"]).waveform for i in ids
    ]
    logits = predict_clips(model, waveforms, batch_size=3)
    with torch.no_grad():
        for row, utt_id in enumerate(ids):
            cached = torch.from_numpy(group.frames(utt_id))[None]
            hidden, frames = backbone(waveforms[row][None], torch.tensor([waveforms[row].numel()]))
            # the live features are the cached ones before fp16 rounding (half an ulp: 2^-11)
            assert hidden.shape == cached.shape and int(frames[0]) == cached.shape[2]
            assert bool(((hidden - cached).abs() <= cached.abs() * 2**-11 + 1e-5).all())
            every = torch.ones(1, cached.shape[2], dtype=torch.bool)
            reference = head(cached, every)[0]
            # tolerance: how far fp16 rounding of the live features moves this head's logits
            rounding = (head(hidden, every) - head(hidden.half().float(), every)).abs().max()
            assert np.abs(logits[row] - reference.numpy()).max() <= 2 * float(rounding) + 1e-4
            assert logits[row].argmax() == int(reference.argmax())


def test_fgsm_and_noise_outputs_measure_the_target_snr(pipeline, fgsm_and_noise):
    layout = RunLayout(pipeline["runs"])
    for run in fgsm_and_noise:
        assert [r.snr_db for r in run.results] == [45.0, 10.0]
        for result in run.results:
            out = layout.attack_dir(BACKBONE, result.method, result.snr_db)
            assert result.out_dir == out
            summary = json.loads((out / "summary.json").read_text())
            for key in (
                "method",
                "snr_db",
                "asr_mean",
                "asr_std",
                "num_attacked",
                "num_flipped",
                "folds",
                "measured_snr_db",
                "settings",
            ):
                assert key in summary
            assert summary["method"] == result.method and summary["snr_db"] == result.snr_db
            assert [f["fold"] for f in summary["folds"]] == ["fold1", "fold2"]
            rows = _read_clips(out / "clips.csv")
            assert len(rows) == summary["num_attacked"] > 0
            assert sum(f["num_test"] for f in summary["folds"]) == 16  # 2 test speakers × 8 clips
            assert all(r["true"] == r["clean_pred"] for r in rows)  # only correct clips attacked
            for r in rows:
                assert abs(float(r["snr_db"]) - result.snr_db) < 0.1
                assert int(r["success"]) == (r["adv_pred"] != r["clean_pred"])
            assert summary["measured_snr_db"]["max_abs_error"] < 0.1
            metric = asr_by_fold(
                [r["true"] for r in rows],
                [r["clean_pred"] for r in rows],
                [r["adv_pred"] for r in rows],
                [r["fold"] for r in rows],
            )
            assert metric["asr_mean"] == pytest.approx(summary["asr_mean"])
            assert metric["asr_std"] == pytest.approx(summary["asr_std"])
            assert summary["num_flipped"] == sum(int(r["success"]) for r in rows)
    # the sweep table and plot gather every method and SNR of the backbone
    sweep = fgsm_and_noise[1].sweep
    assert sweep is not None and sweep.plot.stat().st_size > 1000
    table = sweep.markdown.read_text()
    assert "fgsm ASR %" in table and "noise ASR %" in table and "| 45 |" in table
    with open(sweep.csv, newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 4


def test_save_audio_writes_float_pairs_at_the_target_snr(fgsm_and_noise):
    result = fgsm_and_noise[0].results[0]
    assert len(result.audio_files) == 4  # 2 clean/adversarial pairs
    for clean_path in sorted(p for p in result.audio_files if p.name.endswith(".clean.wav")):
        adv_path = clean_path.with_name(clean_path.name.replace(".clean.", ".adv."))
        clean, rate = sf.read(str(clean_path), dtype="float64")
        adv, _ = sf.read(str(adv_path), dtype="float64")
        assert rate == 16_000 and sf.info(str(adv_path)).subtype == "FLOAT"
        snr = 10 * math.log10((clean**2).sum() / ((adv - clean) ** 2).sum())
        assert abs(snr - 45.0) < 0.1


def test_pgd_flips_every_clip_fgsm_flips(pipeline, fgsm_and_noise):
    pgd = _attack(pipeline, "pgd", 10, steps=5).results[0]
    fgsm = fgsm_and_noise[0].results[1]
    assert [c.id for c in pgd.clips] == [c.id for c in fgsm.clips]
    for ours, theirs in zip(pgd.clips, fgsm.clips, strict=True):  # clip by clip
        if theirs.success:
            assert ours.success, ours.id
            assert ours.snr_db == pytest.approx(theirs.snr_db)  # FGSM's own point was kept
    assert pgd.num_flipped >= fgsm.num_flipped > 0
    assert all(c.snr_db >= 10.0 - 1e-3 for c in pgd.clips)  # inside the same L∞ ball
    assert pgd.settings["steps"] == 5 and pgd.settings["step_size"] == pytest.approx(0.5)
    assert pgd.settings["first_iterate"] == "the FGSM point"


def test_same_seed_same_results(pipeline, fgsm_and_noise):
    again = _attack(pipeline, "noise", [45, 10])
    assert [c for r in again.results for c in r.clips] == [
        c for r in fgsm_and_noise[1].results for c in r.clips
    ]
    fgsm = _attack(pipeline, "fgsm", [45, 10], save_audio=2)
    assert [c for r in fgsm.results for c in r.clips] == [
        c for r in fgsm_and_noise[0].results for c in r.clips
    ]
    first, second, other = (
        _attack(pipeline, "pgd", 20, steps=3, random_start=True, seed=seed).results[0]
        for seed in (1, 1, 2)
    )
    assert first.clips == second.clips
    assert [c.snr_db for c in first.clips] != [c.snr_db for c in other.clips]


def test_bad_requests_fail_with_one_clear_sentence(pipeline, tmp_path):
    store, runs = pipeline["store"], pipeline["runs"]
    with pytest.raises(AttackError, match="SNR must be"):
        run_attack(store, runs=runs, snr_db=0)
    with pytest.raises(AttackError, match="SNR must be"):
        run_attack(store, runs=runs, snr_db=[45, -3])
    with pytest.raises(AttackError, match="unknown attack method 'deepfool'"):
        run_attack(store, runs=runs, method="deepfool")
    with pytest.raises(AttackError, match="no trained emotion head for backbone 'tiny:whisper'"):
        run_attack(store, runs=tmp_path / "empty-runs", device="cpu")
    with pytest.raises(AttackError, match="has no features of backbone 'wavlm_base_plus'"):
        run_attack(store, "wavlm_base_plus", runs=runs, device="cpu")
    with pytest.raises(AttackError, match="fold 'fold3' has no trained emotion head"):
        run_attack(store, runs=runs, folds="3", device="cpu")
    with pytest.raises(AttackError, match="fold '9' does not exist"):
        run_attack(store, runs=runs, folds="9", device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(AttackError, match="no CUDA GPU is visible"):
            run_attack(store, runs=runs, device="cuda")


def test_store_without_provenance_and_mismatched_heads_are_refused(pipeline, tmp_path):
    import shutil

    store = tmp_path / "cache.zarr"
    shutil.copytree(pipeline["store"], store)
    runs = tmp_path / "runs"
    shutil.copytree(pipeline["runs"], runs)
    sidecar = RunLayout(runs).head_path(BACKBONE, "emotion", "fold2").with_suffix(".json")
    data = json.loads(sidecar.read_text())
    data["store"]["provenance"]["weights_sha256"] = "0" * 64
    sidecar.write_text(json.dumps(data))
    with pytest.raises(AttackError, match="emotion head of fold fold2 has weights_sha256"):
        run_attack(store, runs=runs, device="cpu")
    for node in store.rglob("zarr.json"):
        document = json.loads(node.read_text())
        for value in document.get("attributes", {}).values():
            if isinstance(value, dict) and "provenance" in value:
                del value["provenance"]
                node.write_text(json.dumps(document))
    with pytest.raises(AttackError, match="no usable provenance"):
        run_attack(store, runs=runs, device="cpu")


def test_progress_reaches_the_caller_through_events(pipeline):
    events: list[AttackProgress] = []
    run = _attack(pipeline, "noise", [30, 20], folds="1", callback=events.append)
    test_clips = run.results[0].num_test
    assert {e.total for e in events} == {test_clips * 3}  # clean pass + one pass per SNR
    assert events[-1].done == events[-1].total
    done = [e.done for e in events]
    assert done == sorted(done)
    stages = list(dict.fromkeys(e.description for e in events))
    assert stages == ["fold1: clean pass", "fold1: noise @ 30 dB", "fold1: noise @ 20 dB"]


def test_cli_wiring(pipeline):
    from trustser.cli.main import app

    runner = CliRunner()
    base = ["attack", "--store", str(pipeline["store"]), "--runs", str(pipeline["runs"])]
    result = runner.invoke(
        app,
        [
            *base,
            "--method",
            "noise",
            "--snr",
            "45",
            "30",
            "--folds",
            "1",
            "--device",
            "cpu",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "noise" in result.output and "attack-noise-30" in result.output
    assert "…" not in result.output  # at 80 columns nothing is cut (docs: tables stay legible)
    summary = RunLayout(pipeline["runs"]).attack_dir(BACKBONE, "noise", 30) / "summary.json"
    assert [f["fold"] for f in json.loads(summary.read_text())["folds"]] == ["fold1"]
    bad = runner.invoke(app, [*base, "--snr", "0", "--no-progress"])
    assert bad.exit_code == 2 and "SNR must be" in bad.output
    stray = runner.invoke(app, [*base, "--snr", "45", "loud", "--no-progress"])
    assert stray.exit_code == 2 and "unexpected argument 'loud'" in stray.output
    bar = runner.invoke(app, [*base, "--method", "noise", "--folds", "1", "--device", "cpu"])
    clips = json.loads(summary.read_text())["num_test"]
    assert f"{2 * clips}/{2 * clips} clip passes" in bar.output  # clean + adversarial pass per clip


# ----------------------------------------------------------------- the real tiny backbone, no store


def _trained_model(backbone, clips, labels, steps=50):
    """A head fitted on the clips' standardised frames (full batch): it depends on the input."""
    batch = pad_batch(clips, list(range(len(clips))))
    with torch.no_grad():
        hidden, frames = backbone(batch.waveforms, batch.lengths)
    mask = length_mask(frames, hidden.shape[2])
    real = hidden.permute(0, 2, 1, 3)[mask]  # [frames, L, D]
    torch.manual_seed(0)
    head = LayerWeightedHead(backbone.num_layers, backbone.dim, 4, normalize=True)
    head.set_normalization(real.mean(0), real.std(0))
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = F.cross_entropy(head(hidden, mask), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return EndToEndClassifier(backbone, head.eval())


def _tones(count, seed=1):
    """Four tone classes; lengths 0.375–0.5 s, independent of the class."""
    generator = torch.Generator().manual_seed(seed)
    clips, labels = [], []
    for i in range(count):
        n = 6000 + int(2000 * float(torch.rand(1, generator=generator)))
        t = torch.arange(n) / 16_000
        f0 = (150, 300, 600, 1200)[i % 4] * (1 + 0.1 * float(torch.rand(1, generator=generator)))
        tone = 0.2 * torch.sin(2 * math.pi * f0 * t) + 0.02 * torch.randn(n, generator=generator)
        clips.append(tone.float())
        labels.append(i % 4)
    return clips, torch.tensor(labels)


def test_end_to_end_pgd_beats_fgsm_and_padding_changes_nothing():
    backbone = load_backbone(BACKBONE, device="cpu")
    clips, labels = _tones(32)
    model = _trained_model(backbone, clips, labels)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    clean = predict_clips(model, clips, batch_size=8).argmax(1)
    correct = [i for i in range(len(clips)) if clean[i] == int(labels[i])]
    assert len(correct) >= 6
    chosen = [clips[i] for i in correct]
    y = [int(labels[i]) for i in correct]
    from trustser.attacks.methods import FGSM, PGD

    better = 0
    for snr in (45.0, 35.0):
        fgsm = attack_clips(model, chosen, attack=FGSM(snr), labels=y, batch_size=8)
        pgd = attack_clips(model, chosen, attack=PGD(snr, steps=5), labels=y, batch_size=8)
        fgsm_flips = int((fgsm.adv_pred != np.array(y)).sum())
        pgd_flips = int((pgd.adv_pred != np.array(y)).sum())
        assert pgd_flips >= fgsm_flips
        better += pgd_flips > fgsm_flips
        assert np.abs(fgsm.snr_db - snr).max() < 0.1
    assert better >= 1
    # a clip's loss gradient is the same alone and inside a padded batch (padding has no effect)
    batch = pad_batch(chosen, list(range(len(chosen))))
    together, _ = AF.loss_gradient(model, batch.waveforms, labels=torch.tensor(y), mask=batch.mask)
    for index, clip in enumerate(chosen):
        single = pad_batch(chosen, [index])
        alone, _ = AF.loss_gradient(
            model, single.waveforms, labels=torch.tensor(y[index : index + 1]), mask=single.mask
        )
        scale = alone.abs().max()
        assert (alone[0] - together[index, : clip.numel()]).abs().max() <= 1e-4 * scale
        assert torch.count_nonzero(together[index, clip.numel() :]) == 0


def test_backbones_that_cannot_mask_padding_batch_identical_lengths_only():
    backbone = load_backbone("tiny:wav2vec2", device="cpu")
    assert backbone.masks_padding is False
    torch.manual_seed(0)
    head = LayerWeightedHead(backbone.num_layers, backbone.dim, 4).eval()
    model = EndToEndClassifier(backbone, head)
    clips = _tones(6)[0]
    clips.append(clips[0].flip(0))  # two clips of equal length
    one_by_one = predict_clips(model, clips, batch_size=1)
    grouped = predict_clips(model, clips, batch_size=4, identical_only=True)
    assert np.allclose(one_by_one, grouped, atol=1e-5)
    lengths = [c.numel() for c in clips]
    for bucket in length_batches(lengths, batch_size=4, descending=True, identical_only=True):
        assert len({lengths[i] for i in bucket}) == 1


# -- scale-out: ranks split the attack batches, the last rank merges ---------------------------
RANK_SCRIPT = """
import sys
from trustser.attacks.runner import run_attack
run_attack(sys.argv[1], runs=sys.argv[2], method="pgd", snr_db=[45.0, 20.0], device="cpu",
           batch_size=2, seed=3, steps=3, random_start=True, save_audio=3)
"""


def _attack_files(directory: Path) -> tuple[str, dict]:
    summary = json.loads((directory / "summary.json").read_text())
    for key in ("seconds", "clips_per_second"):
        summary.pop(key)
    return (directory / "clips.csv").read_text(), summary


def test_two_processes_give_the_same_summary_and_clips_as_one(pipeline):
    """Two CPU ranks (torchrun's variables) write what one process writes, audio included."""
    import os
    import shutil
    import subprocess
    import sys

    runs = pipeline["runs"]
    single = run_attack(
        pipeline["store"],
        runs=runs,
        method="pgd",
        snr_db=[45.0, 20.0],
        device="cpu",
        batch_size=2,
        seed=3,
        steps=3,
        random_start=True,
        save_audio=3,
    )
    expected = {r.snr_db: _attack_files(r.out_dir) for r in single.results}
    audio = {r.snr_db: sorted(p.name for p in r.audio_files) for r in single.results}
    assert all(r.num_attacked >= 4 for r in single.results)  # several batches per rank
    for result in single.results:
        shutil.rmtree(result.out_dir)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2"}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", RANK_SCRIPT, str(pipeline["store"]), str(runs)],
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stderr=subprocess.PIPE,
        )
        for rank in (0, 1)
    ]
    for child in children:
        _, err = child.communicate(timeout=600)
        assert child.returncode == 0, err.decode()[-2000:]
    for result in single.results:
        assert _attack_files(result.out_dir) == expected[result.snr_db]
        assert sorted(p.name for p in (result.out_dir / "audio").iterdir()) == audio[result.snr_db]
        ranks = sorted(p.name for p in (result.out_dir / "ranks").iterdir())
        assert ranks == ["rank-0-of-2.json", "rank-1-of-2.json"]
    # --merge rebuilds the same files from the rank files alone.
    for result in single.results:
        (result.out_dir / "summary.json").unlink()
    from trustser.attacks.runner import merge_attack

    merged = merge_attack(pipeline["store"], runs=runs, method="pgd", snr_db=[45.0, 20.0])
    for result in merged.results:
        assert _attack_files(result.out_dir) == expected[result.snr_db]


def test_a_rank_alone_writes_its_share_and_merge_names_the_missing_rank(pipeline, tmp_path):
    import shutil

    from trustser.attacks.runner import merge_attack

    runs = tmp_path / "runs"
    shutil.copytree(pipeline["runs"], runs)
    run = run_attack(
        pipeline["store"],
        runs=runs,
        method="fgsm",
        snr_db=30.0,
        device="cpu",
        batch_size=2,
        rank=1,
        world_size=2,
    )
    assert any("rank 1 of 2" in note and "--merge" in note for note in run.warnings)
    out = RunLayout(runs).attack_dir(run.backbone, "fgsm", 30.0)
    assert not (out / "summary.json").exists() and (out / "ranks" / "rank-1-of-2.json").exists()
    with pytest.raises(AttackError, match="missing rank\\(s\\) 0"):
        merge_attack(pipeline["store"], runs=runs, method="fgsm", snr_db=30.0)
    from trustser.ranks import RankError

    with pytest.raises(RankError, match="--world-size was given without --rank"):
        run_attack(pipeline["store"], runs=runs, device="cpu", world_size=2)
