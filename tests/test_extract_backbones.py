"""Extraction with the real tiny model families, and with real EmoDB audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from trustser.audio import audio_info, load_audio
from trustser.backbones import load_backbone
from trustser.extract import extract
from trustser.manifest import Manifest, Utterance
from trustser.store import open_store, verify_store


def _corpus(root: Path) -> Manifest:
    """Clips of assorted lengths; c1/c2 share a length, so they may share a batch."""
    rng = np.random.default_rng(3)
    seconds = [0.7, 1.3, 1.3, 0.45, 2.1, 1.0]
    utts = []
    for i, s in enumerate(seconds):
        path = root / f"c{i}.wav"
        sf.write(str(path), (0.3 * rng.standard_normal(int(s * 16_000))).astype(np.float32), 16_000)
        info = audio_info(path)
        utts.append(
            Utterance(
                id=f"c{i}",
                path=str(path),
                speaker=f"s{i % 2}",
                gender=("female", "male")[i % 2],
                emotion="neutral",
                duration=info.duration,
                sample_rate=info.sample_rate,
                num_frames=info.num_frames,
            )
        )
    return Manifest("toy", tuple(utts))


@pytest.mark.parametrize("spec", ["tiny:whisper", "tiny:wav2vec2"])
def test_tiny_families_store_what_the_clip_gives_alone(spec: str, tmp_path: Path):
    manifest = _corpus(tmp_path)
    path = tmp_path / "s.zarr"
    summary = extract(manifest, path, spec, device="cpu", progress=False, batch_seconds=30)
    assert summary.complete and summary.exit_code == 0 and summary.done == len(manifest)
    model = load_backbone(spec, device="cpu")
    group = open_store(path).group(spec)
    assert group.provenance["weights_sha256"] == model.provenance()["weights_sha256"]
    assert group.provenance["masks_padding"] == model.masks_padding
    if not model.masks_padding:  # group-norm wav2vec2: only identical lengths share a batch
        assert summary.padded_frames == 0
    else:
        assert summary.padded_fraction <= 0.1
    for utt in manifest:
        wave = load_audio(utt.path).waveform
        with torch.no_grad():
            hidden, frames = model(wave[None], torch.tensor([wave.numel()]))
        alone = hidden[0, :, : int(frames[0])].numpy()
        stored = group.frames(utt.id)
        assert (
            stored.shape
            == alone.shape
            == (model.num_layers, model.frame_count(wave.numel()), model.dim)
        )
        np.testing.assert_allclose(stored, alone, rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(
            group.means([utt.id])[0], alone.mean(axis=1), rtol=1e-4, atol=1e-5
        )
    assert verify_store(path, deep=True).complete


@pytest.mark.emodb
def test_emodb_clips_extract_with_folds(emodb_root: Path, tmp_path: Path):
    from trustser.corpora import emodb

    full = emodb.prepare(emodb_root)
    keep = {u.id for u in full.utterances[::40]}
    manifest = full.filter(lambda u: u.id in keep)
    summary = extract(
        manifest, tmp_path / "emodb.zarr", "tiny:whisper", device="cpu", progress=False
    )
    assert summary.complete and not summary.skipped and summary.done == len(keep)
    group = open_store(tmp_path / "emodb.zarr").group("tiny:whisper")
    stored = group.manifest()
    assert stored.corpus == "emodb" and stored.folds == full.folds and set(stored.ids) == keep
    model = load_backbone("tiny:whisper", device="cpu")
    lengths = group.num_frames(stored.ids)
    expected = [model.frame_count(load_audio(u.path).num_samples) for u in stored]
    assert lengths.tolist() == expected
    batch = next(iter(group.batches(stored.ids, batch_size=4, shuffle=True, seed=0)))
    assert batch.hidden.shape[1:] == (model.num_layers, int(batch.lengths.max()), model.dim)


def test_two_backbones_and_two_corpora_share_one_store(tmp_path: Path):
    manifest = _corpus(tmp_path)
    first = Manifest("one", manifest.utterances[:3])
    second = Manifest("two", manifest.utterances[3:])
    path = tmp_path / "shared.zarr"
    for spec in ("tiny:whisper", "tiny:wav2vec2"):
        summary = extract([first, second], path, spec, device="cpu", progress=False)
        assert summary.complete and summary.done == len(manifest)
    store = open_store(path)
    assert store.backbones == ["tiny:wav2vec2", "tiny:whisper"]
    assert len(list((path / "manifests").glob("*/zarr.json"))) == 2  # stored once, shared
    for spec in store.backbones:
        group = store.group(spec)
        assert group.corpora == ["one", "two"] and group.manifest("two").ids == second.ids
