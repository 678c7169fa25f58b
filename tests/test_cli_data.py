"""`trustser data prepare | validate | info | corpora`: wiring only (the library is tested elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from trustser.cli.data import app

runner = CliRunner(env={"COLUMNS": "200"})  # no wrapping of long paths


@pytest.fixture
def emodb_tree(tone, tmp_path) -> Path:
    for speaker in ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16"):
        for code in ("a01Fa", "a02Nb", "b01Tc", "b02Wa"):
            tone(f"emodb/wav/{speaker}{code}.wav", seconds=0.06)
    return tmp_path / "emodb"


def test_prepare_then_info_and_validate(emodb_tree, tmp_path):
    out = tmp_path / "m.jsonl"
    result = runner.invoke(app, ["prepare", "emodb", str(emodb_tree), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    assert "wrote" in result.stdout and "40 utterances of emodb" in result.stdout
    assert "fold5" in result.stdout and "neutral" in result.stdout

    again = runner.invoke(app, ["prepare", "emodb", str(emodb_tree), "-o", str(out)])
    assert (
        again.exit_code == 0 and "reused existing" in again.stdout and "--overwrite" in again.stdout
    )
    rebuilt = runner.invoke(
        app, ["prepare", "emodb", str(emodb_tree), "-o", str(out), "--overwrite"]
    )
    assert rebuilt.exit_code == 0 and "wrote" in rebuilt.stdout

    info = runner.invoke(app, ["info", str(out)])
    assert info.exit_code == 0, info.output
    assert "40 utterances" in info.stdout and "10 speakers (5 female, 5 male)" in info.stdout
    assert "fold1" in info.stdout and "speaker" in info.stdout

    valid = runner.invoke(app, ["validate", str(out), "--audio", "headers"])
    assert valid.exit_code == 0, valid.output
    assert "ok" in valid.stdout and "audio checked (headers)" in valid.stdout


def test_prepare_reports_skipped_files(emodb_tree, tmp_path):
    (emodb_tree / "wav" / "03a01Fa.wav").write_bytes(b"")
    out = tmp_path / "m.jsonl"
    failed = runner.invoke(app, ["prepare", "emodb", str(emodb_tree), "-o", str(out)])
    assert failed.exit_code == 2 and "cannot be read" in failed.stderr
    result = runner.invoke(
        app, ["prepare", "emodb", str(emodb_tree), "-o", str(out), "--skip-unreadable"]
    )
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "unreadable" in result.stdout
    assert "emodb_03a01Fa" in result.stdout


def test_bad_input_is_one_line_and_exit_2(emodb_tree, tmp_path):
    unknown = runner.invoke(
        app, ["prepare", "timit", str(emodb_tree), "-o", str(tmp_path / "x.jsonl")]
    )
    assert unknown.exit_code == 2 and "error: unknown corpus 'timit'" in unknown.stderr
    assert "Traceback" not in unknown.output

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"format": "trustser-manifest", "format_version": 9}\n')
    for command in ("validate", "info"):
        result = runner.invoke(app, [command, str(broken)])
        assert result.exit_code == 2 and "format_version 9 is not supported" in result.stderr

    out = tmp_path / "m.jsonl"
    assert runner.invoke(app, ["prepare", "emodb", str(emodb_tree), "-o", str(out)]).exit_code == 0
    (emodb_tree / "wav" / "03a01Fa.wav").unlink()
    missing = runner.invoke(app, ["validate", str(out)])
    assert missing.exit_code == 2 and "missing file (1)" in missing.stderr
    assert runner.invoke(app, ["validate", str(out), "--no-files"]).exit_code == 0
    assert runner.invoke(app, ["info", str(out)]).exit_code == 0  # info does not open files
    bad_mode = runner.invoke(app, ["validate", str(out), "--no-files", "--audio", "everything"])
    assert bad_mode.exit_code == 2 and "audio='everything'" in bad_mode.stderr


def test_corpora_lists_the_registry():
    result = runner.invoke(app, ["corpora"])
    assert result.exit_code == 0, result.output
    for name in ("iemocap", "crema_d", "msp_improv", "msp_podcast", "ravdess", "emodb"):
        assert name in result.stdout
