"""The working-directory convention: bare commands, typed as the design writes them, do the job."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from trustser.cli.main import app
from trustser.heads.estimator import HeadClassifier
from trustser.workspace import (
    WorkspaceError,
    attack_backbones,
    load_workspace,
    stage_backbones,
)

EMODB_SPEAKERS = ("03", "10", "11", "12", "15", "08", "09", "13", "14", "16")


def fake_emodb(root: Path, *, texts: tuple[str, ...] = ("a01", "a02")) -> Path:
    """EmoDB's layout (``wav/03a01Fa.wav``) with short tones whose pitch encodes the emotion."""
    rng = np.random.default_rng(0)
    wav = root / "wav"
    wav.mkdir(parents=True)
    for speaker in EMODB_SPEAKERS:
        for k, letter in enumerate("NFTW"):
            for text in texts:
                n = int(16_000 * (0.3 + 0.2 * rng.random()))
                t = np.arange(n) / 16_000
                x = 0.2 * np.sin(2 * np.pi * 150 * (k + 1) * t) + 0.01 * rng.standard_normal(n)
                sf.write(str(wav / f"{speaker}{text}{letter}a.wav"), x.astype(np.float32), 16_000)
    return root


def typed(runner: CliRunner, line: str):
    """Run ``line`` exactly as a user types it (``trustser`` and all)."""
    words = shlex.split(line)
    assert words[0] == "trustser"
    result = runner.invoke(app, words[1:], catch_exceptions=False)
    assert result.exit_code == 0, f"{line!r} exited {result.exit_code}:\n{result.output}"
    return result


@pytest.fixture
def quick_heads(monkeypatch):
    """Short training: the commands' wiring is under test here, not the heads' convergence."""
    import trustser.heads.crossval as crossval
    import trustser.heads.tasks as tasks

    monkeypatch.setattr(crossval, "DEFAULT_MIN_STEPS", 0)
    for task in ("emotion", "gender", "speaker"):
        monkeypatch.setitem(tasks.DEFAULT_EPOCHS, task, 2)


def test_the_designs_commands_run_as_written_in_an_empty_directory(
    tmp_path, monkeypatch, quick_heads
):
    corpus = fake_emodb(tmp_path / "emodb")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    runner = CliRunner()
    typed(runner, f"trustser data prepare emodb {corpus}")
    typed(runner, "trustser extract --backbone tiny:whisper")
    typed(runner, "trustser extract --backbone tiny:wav2vec2")
    typed(runner, "trustser heads fit")
    attack = typed(runner, "trustser attack --snr 45")
    typed(runner, "trustser cost --no-timing")
    # the README's bare `trustser robustness`, on one case to stay quick
    typed(runner, "trustser robustness --corruption white_noise --severity 3 --bootstrap 0")
    typed(runner, "trustser profile")

    assert (work / "manifest.jsonl").is_file()
    from trustser.store import open_store

    assert sorted(open_store(work / "cache.zarr").backbones) == ["tiny:wav2vec2", "tiny:whisper"]
    for directory in ("tiny-whisper", "tiny-wav2vec2"):
        base = work / "runs" / directory
        for task in ("emotion", "gender", "speaker"):  # every task of every group
            assert (base / task / "metrics.json").is_file(), (directory, task)
        assert (base / "attack-fgsm-45" / "summary.json").is_file(), directory
        assert (base / "cost.json").is_file()
        assert (base / "robustness" / "summary.json").is_file()
    # 80 test clips over the folds, one clean and one adversarial pass each, for each backbone
    assert attack.output.count("160/160 clip passes") == 2
    profile = json.loads((work / "report" / "profile.json").read_text())
    rows = {b["name"]: b for b in profile["backbones"]}
    assert set(rows) == {"tiny:whisper", "tiny:wav2vec2"}
    for row in rows.values():
        assert row["missing"] == {}, row["missing"]
    assert sorted(p.name for p in work.iterdir()) == [
        "cache.zarr",
        "manifest.jsonl",
        "report",
        "runs",
    ]


def test_bare_commands_say_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["extract", "--backbone", "tiny:whisper"])
    assert result.exit_code == 2
    assert "manifest.jsonl" in result.output and "trustser data prepare" in result.output
    result = runner.invoke(app, ["heads", "fit"])
    assert result.exit_code == 2 and "trustser extract" in result.output
    result = runner.invoke(app, ["attack"])
    assert result.exit_code == 2 and "cache.zarr" in result.output


def test_flag_beats_trustser_toml_beats_default(tmp_path, monkeypatch):
    assert load_workspace(tmp_path).store == tmp_path / "cache.zarr"
    default = load_workspace(tmp_path)
    assert default.origin == {"manifest": "default", "store": "default", "runs": "default"}
    (tmp_path / "trustser.toml").write_text(
        '[workspace]\nmanifest = "data/emodb.jsonl"\nstore = "/big/disk/cache.zarr"\n'
    )
    ws = load_workspace(tmp_path)
    assert ws.manifest == tmp_path / "data" / "emodb.jsonl"  # relative to the file's directory
    assert ws.store == Path("/big/disk/cache.zarr")
    assert ws.runs == tmp_path / "runs"  # not in the file: the default
    assert ws.origin == {"manifest": "trustser.toml", "store": "trustser.toml", "runs": "default"}
    assert ws.resolve("store", "other.zarr") == Path("other.zarr")
    assert ws.resolve("store", None) == Path("/big/disk/cache.zarr")

    # The CLI reads it from the current directory.
    corpus = fake_emodb(tmp_path / "corpus", texts=("a01",))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    typed(runner, "trustser data prepare emodb corpus")
    assert (tmp_path / "data" / "emodb.jsonl").is_file()
    assert not (tmp_path / "manifest.jsonl").exists()
    typed(runner, "trustser data prepare emodb corpus -o mine.jsonl")  # the flag wins
    assert (tmp_path / "mine.jsonl").is_file()
    typed(runner, "trustser data info")  # reads the file's manifest
    del corpus


def test_a_bad_trustser_toml_is_one_clear_error(tmp_path, monkeypatch):
    (tmp_path / "trustser.toml").write_text('[workspace]\nstroe = "x.zarr"\n')
    with pytest.raises(WorkspaceError, match="stroe"):
        load_workspace(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["heads", "fit"])
    assert result.exit_code == 2 and "stroe" in result.output
    (tmp_path / "trustser.toml").write_text("[workspace\n")
    with pytest.raises(WorkspaceError, match="not valid TOML"):
        load_workspace(tmp_path)


def test_which_backbones_bare_stages_work_on(tmp_path, toy_manifest):
    from trustser.extract import extract
    from trustser.heads.training import fit_heads

    store = tmp_path / "cache.zarr"
    with pytest.raises(WorkspaceError, match="no embedding store"):
        stage_backbones(store, None)
    for backbone in ("tiny:whisper", "tiny:apc"):
        extract(toy_manifest, store, backbone, device="cpu", progress=False)
    assert sorted(stage_backbones(store, None)) == ["tiny:apc", "tiny:whisper"]
    assert stage_backbones(store, ["tiny:apc"]) == ["tiny:apc"]
    runs = tmp_path / "runs"
    with pytest.raises(WorkspaceError, match="trustser heads fit"):
        attack_backbones(store, runs, None)
    fit_heads(store, "tiny:apc", HeadClassifier(epochs=1, device="cpu"), runs=runs)
    assert attack_backbones(store, runs, None) == ["tiny:apc"]  # only it has emotion heads
