"""`trustser backbones list|info`: wiring only (the library is tested elsewhere)."""

from __future__ import annotations

from typer.testing import CliRunner

from trustser.cli.main import app

runner = CliRunner()


def test_list_shows_registry_and_optionally_tiny_models():
    result = runner.invoke(app, ["backbones", "list"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    names = ("whisper_tiny_en_offline", "whisper_base_offline", "wavlm_base_plus")
    for text in (*names, "13 × 768", "7 × 512", "4.11 M", "100 Hz"):
        assert text in result.output
    assert "tiny:whisper" not in result.output
    tiny = runner.invoke(app, ["backbones", "list", "--tiny"], env={"COLUMNS": "160"})
    assert tiny.exit_code == 0 and "tiny:wav2vec2_layer" in tiny.output


def test_info_loads_and_shows_the_checksum():
    result = runner.invoke(
        app, ["backbones", "info", "tiny:whisper", "--load"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "weights_sha256" in result.output and "frames_per_6s" in result.output


def test_info_on_an_unknown_name_is_one_line_exit_2():
    result = runner.invoke(app, ["backbones", "info", "wavlm_base"], env={"COLUMNS": "400"})
    assert result.exit_code == 2
    assert "error: unknown backbone 'wavlm_base'" in result.output
    assert "Traceback" not in result.output
