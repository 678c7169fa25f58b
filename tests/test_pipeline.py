"""`trustser run`: the whole pipeline, resumable, from flags or a TOML config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trustser.cli.main import app
from trustser.manifest import write_manifest
from trustser.pipeline import (
    AttackSettings,
    CorpusSource,
    HeadSettings,
    MitigateSettings,
    PipelineConfig,
    PipelineConfigError,
    config_from_options,
    load_config,
    run_pipeline,
)
from trustser.runs import RunLayout

FAST_HEADS = HeadSettings(tasks=("emotion", "gender"), epochs=2)
FAST_ATTACK = AttackSettings(methods=("fgsm",), snr=(45.0,), steps=2)


def _config(manifest: Path, out: Path, **changes) -> PipelineConfig:
    settings = {
        "corpora": (CorpusSource("toy", manifest=str(manifest)),),
        "backbones": ("tiny:whisper",),
        "out": out,
        "device": "cpu",
        "heads": FAST_HEADS,
        "attack": FAST_ATTACK,
        **changes,
    }
    return PipelineConfig(**settings)


def _statuses(result) -> dict[tuple[str, str | None], str]:
    return {(e.stage, e.backbone): e.status for e in result.events}


def test_run_writes_every_stage_then_resumes_and_reruns_only_what_changed(tmp_path, toy_manifest):
    manifest = write_manifest(toy_manifest, tmp_path / "toy.jsonl")
    out = tmp_path / "runs"
    first = run_pipeline(_config(manifest, out), progress=False)
    assert first.exit_code == 0, [e.detail for e in first.failures]
    statuses = _statuses(first)
    for stage in ("extract", "heads", "probe", "attack-fgsm", "cost"):
        assert statuses[(stage, "tiny:whisper")] == "done"
    corpus_dir = out / "toy"
    layout = RunLayout(corpus_dir)
    assert (layout.head_dir("tiny:whisper", "emotion") / "metrics.json").is_file()
    assert (layout.attack_dir("tiny:whisper", "fgsm", 45) / "summary.json").is_file()
    assert layout.cost_path("tiny:whisper").is_file()
    assert (layout.probe_dir("tiny:whisper") / "metrics.json").is_file()
    assert first.reports["toy"].is_file() and first.radars["toy"].is_file()
    profile = json.loads((corpus_dir / "report" / "profile.json").read_text())
    assert [b["name"] for b in profile["backbones"]] == ["tiny:whisper"]

    # Same command again: everything but the (cheap) profile is skipped.
    again = run_pipeline(_config(manifest, out), progress=False)
    statuses = _statuses(again)
    for stage in ("extract", "heads", "probe", "attack-fgsm", "cost"):
        assert statuses[(stage, "tiny:whisper")] == "skipped", stage
    # A new attack setting re-runs the attack only; heads stay.
    changed = run_pipeline(
        _config(manifest, out, attack=AttackSettings(methods=("fgsm",), snr=(35.0,), steps=2)),
        progress=False,
    )
    statuses = _statuses(changed)
    assert statuses[("heads", "tiny:whisper")] == "skipped"
    assert statuses[("attack-fgsm", "tiny:whisper")] == "done"
    assert (layout.attack_dir("tiny:whisper", "fgsm", 35) / "summary.json").is_file()


def test_a_failing_backbone_does_not_stop_the_others(tmp_path, toy_manifest, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    manifest = write_manifest(toy_manifest, tmp_path / "toy.jsonl")
    config = _config(
        manifest,
        tmp_path / "runs",
        backbones=("whisper_small", "tiny:whisper"),  # no weights offline for the first
        heads=HeadSettings(tasks=("emotion",), epochs=1),
        attack=AttackSettings(methods=()),
    )
    result = run_pipeline(config, progress=False)
    assert result.exit_code == 3
    (failure,) = result.failures
    assert failure.stage == "extract" and failure.backbone == "whisper_small"
    assert "whisper_small" in failure.detail
    assert _statuses(result)[("heads", "tiny:whisper")] == "done"


def test_config_file_round_trip_and_errors(tmp_path):
    config_path = tmp_path / "grid.toml"
    config_path.write_text(
        """
out = "results"
device = "cpu"
seed = 3
backbones = ["tiny:whisper", "tiny:wav2vec2"]

[[corpora]]
name = "emodb"
root = "data/emodb"

[heads]
tasks = ["emotion", "gender"]
epochs = 5

[attack]
methods = ["fgsm", "pgd"]
snr = [45, 35]
"""
    )
    config = load_config(config_path)
    assert config.backbones == ("tiny:whisper", "tiny:wav2vec2")
    assert config.corpora[0].root == str(tmp_path / "data" / "emodb")  # relative to the file
    assert config.heads.epochs == 5 and config.attack.snr == (45, 35) and config.seed == 3
    assert load_config(config_path, out=tmp_path / "x").out == tmp_path / "x"

    config_path.write_text('backbones = ["tiny:whisper"]\n[heads]\nepochz = 3\n')
    with pytest.raises(PipelineConfigError, match="epochz"):
        load_config(config_path)
    with pytest.raises(PipelineConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(PipelineConfigError, match="no corpus"):
        PipelineConfig(corpora=(), backbones=("tiny:whisper",))
    with pytest.raises(PipelineConfigError, match="exactly one of root"):
        PipelineConfig(corpora=(CorpusSource("emodb"),), backbones=("tiny:whisper",))
    with pytest.raises(PipelineConfigError, match="emotion head"):
        PipelineConfig(
            corpora=(CorpusSource("emodb", root="x"),),
            backbones=("tiny:whisper",),
            heads=HeadSettings(tasks=("gender",)),
        )


def test_config_from_options_builds_what_the_flags_say(tmp_path, toy_manifest):
    manifest = write_manifest(toy_manifest, tmp_path / "toy.jsonl")
    config = config_from_options(
        corpora=["emodb"], roots=[tmp_path / "emodb"], manifest=manifest, backbones=["tiny:whisper"]
    )
    assert config.corpora == (
        CorpusSource("toy", manifest=str(manifest)),  # the name comes from the manifest header
        CorpusSource("emodb", root=str(tmp_path / "emodb")),
    )
    assert config.backbones == ("tiny:whisper",)
    assert (config.out, config.device, config.seed) == (Path("runs"), "auto", 0)
    chosen = config_from_options(
        manifest=manifest, backbones=["tiny:whisper"], out=tmp_path / "o", device="cpu", seed=7
    )
    assert (chosen.out, chosen.device, chosen.seed) == (tmp_path / "o", "cpu", 7)
    with pytest.raises(ValueError, match=r"one --root per --corpus \(got 2 corpora, 1 roots\)"):
        config_from_options(corpora=["a", "b"], roots=[tmp_path], backbones=["tiny:whisper"])
    with pytest.raises(PipelineConfigError, match="no backbone"):
        config_from_options(manifest=manifest)

    toml = tmp_path / "run.toml"
    toml.write_text(
        'backbones = ["tiny:whisper"]\ndevice = "cpu"\nseed = 3\n'
        '[[corpora]]\nname = "toy"\nmanifest = "toy.jsonl"\n'
    )
    from_file = config_from_options(config=toml, corpora=["ignored"], seed=5)
    assert from_file.seed == 5 and from_file.device == "cpu"  # given options override the file
    assert from_file.corpora == (CorpusSource("toy", manifest=str(manifest)),)


def test_cli_run_wiring(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--corpus", "emodb", "--backbone", "tiny:whisper"])
    assert result.exit_code == 2 and "one --root per --corpus" in result.output
    result = runner.invoke(app, ["run", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(
        app, ["run", "--corpus", "emodb", "--root", str(tmp_path), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "no backbone" in result.output


def test_demo_synthesises_the_corpus_then_runs_both_offline_models(tmp_path, monkeypatch):
    import trustser.demo as demo
    from trustser.corpora import synth
    from trustser.pipeline import PipelineResult

    calls: dict = {}
    monkeypatch.setattr(synth, "synthesize", lambda out, **kw: calls.setdefault("synth", out))
    monkeypatch.setattr(
        demo,
        "run_pipeline",
        lambda config, **_: PipelineResult(config=calls.setdefault("config", config)),
    )
    result = demo.run_demo(tmp_path / "d", device="cpu", seed=3)
    config = result.config
    assert Path(calls["synth"]) == tmp_path / "d" / "corpus"
    assert config.backbones == demo.DEMO_BACKBONES
    assert demo.DEMO_BACKBONES == ("whisper_tiny_en_offline", "ge2e_lstm_offline")
    assert config.corpora[0].name == demo.DEMO_CORPUS == "synth"
    assert config.corpora[0].manifest == str(tmp_path / "d" / "corpus" / synth.MANIFEST_NAME)
    assert config.seed == 3 and config.device == "cpu"
    assert config.heads.min_steps == demo.DEMO_MIN_STEPS
    assert config.attack.methods == ("fgsm", "pgd", "noise") and config.attack.snr == (45.0,)
    assert not (tmp_path / "d" / "synth" / "report" / "summary.md").exists()  # no profile: none


def test_any_failure_is_logged_with_its_traceback_and_the_others_go_on(
    tmp_path, toy_manifest, monkeypatch
):
    import torch

    import trustser.extract

    real = trustser.extract.extract

    def extract(manifest, store, backbone, **options):
        if backbone == "tiny:apc":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(manifest, store, backbone, **options)

    monkeypatch.setattr(trustser.extract, "extract", extract)
    manifest = write_manifest(toy_manifest, tmp_path / "toy.jsonl")
    config = _config(
        manifest,
        tmp_path / "runs",
        backbones=("tiny:apc", "tiny:whisper"),
        heads=HeadSettings(tasks=("emotion",), epochs=1),
        attack=AttackSettings(methods=()),
    )
    result = run_pipeline(config, progress=False)
    assert result.exit_code == 3  # something failed
    (failure,) = result.failures
    assert (failure.stage, failure.backbone) == ("extract", "tiny:apc")
    assert "OutOfMemoryError: CUDA out of memory" in failure.detail
    log = tmp_path / "runs" / "toy" / "failures.log"
    assert str(log) in failure.detail
    text = log.read_text()
    assert "toy · extract tiny:apc failed" in text
    assert "Traceback (most recent call last)" in text and "OutOfMemoryError" in text
    statuses = _statuses(result)
    assert statuses[("heads", "tiny:whisper")] == "done"  # the other backbone went on
    assert statuses[("profile", None)] == "done"


def test_cost_uses_the_extraction_window_and_reruns_when_the_head_changes(tmp_path, toy_manifest):
    from trustser.pipeline import ExtractSettings

    manifest = write_manifest(toy_manifest, tmp_path / "toy.jsonl")
    out = tmp_path / "runs"
    settings = {
        "extract": ExtractSettings(window="30s"),
        "attack": AttackSettings(methods=()),
    }
    narrow = HeadSettings(tasks=("emotion",), epochs=1, hidden=16)
    first = run_pipeline(_config(manifest, out, heads=narrow, **settings), progress=False)
    assert first.exit_code == 0, [e.detail for e in first.failures]
    cost_path = RunLayout(out / "toy").cost_path("tiny:whisper")
    cost = json.loads(cost_path.read_text())
    assert cost["window"] == "30s"  # as extracted, not the cost command's default
    again = run_pipeline(_config(manifest, out, heads=narrow, **settings), progress=False)
    assert _statuses(again)[("cost", "tiny:whisper")] == "skipped"
    wide = HeadSettings(tasks=("emotion",), epochs=1, hidden=32)
    changed = run_pipeline(_config(manifest, out, heads=wide, **settings), progress=False)
    assert _statuses(changed)[("cost", "tiny:whisper")] == "done"  # the head's size changed
    assert json.loads(cost_path.read_text())["head_params"] > cost["head_params"]


def test_cli_run_shows_an_attack_bar_counting_clips(tmp_path, toy_manifest):
    manifest = write_manifest(toy_manifest, tmp_path / "toy.jsonl")
    config = tmp_path / "run.toml"
    config.write_text(
        f'backbones = ["tiny:whisper"]\ndevice = "cpu"\nout = "{tmp_path / "out"}"\n'
        f'[[corpora]]\nname = "toy"\nmanifest = "{manifest}"\n'
        '[heads]\ntasks = ["emotion"]\nepochs = 1\n'
        '[attack]\nmethods = ["fgsm", "pgd", "noise"]\nsteps = 2\n'
    )
    result = CliRunner().invoke(app, ["run", "-c", str(config)])
    assert result.exit_code == 0, result.output
    passes = 2 * len(toy_manifest)  # every clip is a test clip once: one clean, one attacked pass
    assert result.output.count(f"{passes}/{passes} clip passes") == 3  # one bar per attack


def test_a_corpus_of_one_gender_gives_every_axis_it_can_and_resumes(tmp_path, toy_manifest_factory):
    women = tuple((f"f{i}", "female") for i in range(1, 7))
    corpus = toy_manifest_factory(
        tmp_path / "toy", speakers=women, groups=[["f1", "f2"], ["f3", "f4"], ["f5", "f6"]]
    )
    manifest = write_manifest(corpus, tmp_path / "women.jsonl")
    out = tmp_path / "runs"
    heads = HeadSettings(tasks=("emotion", "gender", "speaker"), epochs=1, min_steps=0)
    settings = {"heads": heads, "mitigate": MitigateSettings(privacy=(1.0,))}
    first = run_pipeline(_config(manifest, out, **settings), progress=False)
    assert first.exit_code == 0, [e.detail for e in first.failures]
    details = {(e.stage, e.backbone): e.detail for e in first.events}
    reason = "one gender only (6 female speakers in the toy manifest)"
    assert f"gender not measurable: {reason}" in details[("heads", "tiny:whisper")]
    assert f"gender not measurable: {reason}" in details[("probe", "tiny:whisper")]
    # The gender adversary cannot train on one gender: skipped with the reason, not failed.
    privacy = "tiny:whisper@privacy-l1"
    assert _statuses(first)[("mitigate", privacy)] == "skipped"
    assert details[("mitigate", privacy)] == f"not measurable: needs the gender task: {reason}"
    assert ("cost", privacy) not in details
    row = json.loads((out / "toy" / "report" / "profile.json").read_text())["backbones"][0]
    assert set(row["not_measurable"]) == {"fairness", "privacy"}
    assert row["scores"]["performance"] is not None and row["scores"]["safety"] is not None
    # The skipped task's record counts as done: a second run redoes nothing.
    again = run_pipeline(_config(manifest, out, **settings), progress=False)
    statuses = _statuses(again)
    for stage in ("extract", "heads", "probe", "attack-fgsm", "cost"):
        assert statuses[(stage, "tiny:whisper")] == "skipped", stage
