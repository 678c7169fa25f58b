"""``trustser.store.open_group``: the one way heads, probes and attacks pick a store group."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trustser.manifest import Fold, Manifest, Utterance
from trustser.store import StoreError, StoreWriter, open_group
from trustser.store.plan import ClipFacts

L, D = 2, 3


class PickError(ValueError):
    """Stands for a caller's own error class (AttackError, StoreGroupError)."""


def _write_group(path: Path, name: str) -> None:
    utterances = tuple(
        Utterance(
            id=f"u{i}",
            path=f"/nonexistent/u{i}.wav",
            speaker=f"s{i % 3}",
            gender=("female", "male")[i % 2],
            emotion="neutral",
            duration=0.5,
            sample_rate=16_000,
            num_frames=8000,
        )
        for i in range(3)
    )
    manifest = Manifest(
        corpus="toy",
        utterances=utterances,
        folds=(Fold("fold1", "speaker", ("s2",), ("s1",), ("s0",)),),
    )
    provenance = {
        "backbone": name,
        "family": "fake",
        "weights_sha256": "0" * 64,
        "num_layers": L,
        "dim": D,
        "sample_rate": 16_000,
        "max_seconds": 6.0,
        "dtype": "float16",
        "codec": "none",
    }
    writer = StoreWriter(path, name, provenance=provenance, durable=False)
    clips = {u.id: ClipFacts(samples=8000, frames=8000 // 320) for u in utterances}
    parts = writer.add_manifest(manifest, clips=clips)
    for part, unit in writer.pending_units(parts):
        buffer = writer.buffer(part, unit)
        for utt in buffer.ids:
            _, frames, _ = buffer.planned(utt)
            buffer.put(utt, np.zeros((L, frames, D), dtype=np.float32))
        writer.commit(buffer)


@pytest.fixture
def two_groups(tmp_path: Path) -> Path:
    path = tmp_path / "cache.zarr"
    _write_group(path, "tiny:whisper")
    _write_group(path, "other")
    return path


def test_the_only_group_or_the_named_one(tmp_path: Path, two_groups: Path):
    single = tmp_path / "single.zarr"
    _write_group(single, "tiny:whisper")
    group, name = open_group(single)
    assert name == "tiny:whisper" and group.name == "tiny:whisper" and len(group.ids) == 3
    group, name = open_group(two_groups, "other")
    assert (name, group.name) == ("other", "other")


def test_errors_list_the_groups_in_the_callers_class(two_groups: Path):
    with pytest.raises(PickError, match=r"holds 2 backbone groups \(other, tiny:whisper\); choose"):
        open_group(two_groups, error=PickError)
    with pytest.raises(StoreError, match="choose one with --backbone"):
        open_group(two_groups)  # the store's own error by default
    with pytest.raises(PickError, match=r"no features of backbone 'wavlm' \(it holds: other, tiny"):
        open_group(two_groups, "wavlm", error=PickError)


def test_a_directory_key_names_the_group_too(two_groups: Path):
    keys = [p.name for p in two_groups.iterdir() if (p / "zarr.json").is_file()]
    key = next(k for k in keys if k != "other" and k != "manifests")
    group, name = open_group(two_groups, key)
    assert name == "tiny:whisper" == group.name  # the canonical name, for the results layout


def test_a_group_without_provenance_is_refused_clearly(two_groups: Path):
    for node in two_groups.rglob("zarr.json"):
        document = json.loads(node.read_text())
        for value in document.get("attributes", {}).values():
            if isinstance(value, dict) and value.get("name") == "other":
                del value["provenance"]
                node.write_text(json.dumps(document))
    with pytest.raises(PickError, match="group 'other' is unreadable or has no usable provenance"):
        open_group(two_groups, "other", error=PickError)
