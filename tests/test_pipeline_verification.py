"""`trustser run`'s ``[verification]``: speaker verification for every backbone, its EER in the
pipeline's profile, skipped when done, noted (not failed) where a corpus has too few speakers."""

from __future__ import annotations

import json

import pytest

from trustser.manifest import write_manifest
from trustser.pipeline import (
    AttackSettings,
    CorpusSource,
    HeadSettings,
    PipelineConfig,
    PipelineConfigError,
    VerificationSettings,
    load_config,
    run_pipeline,
)
from trustser.runs import RunLayout

BACKBONE = "tiny:whisper"


def _config(corpora, out, **changes) -> PipelineConfig:
    return PipelineConfig(
        corpora=tuple(corpora),
        backbones=(BACKBONE,),
        out=out,
        device="cpu",
        heads=HeadSettings(tasks=("emotion", "gender"), epochs=1, hidden=16),
        attack=AttackSettings(methods=()),
        **changes,
    )


def _statuses(result, corpus):
    return {(e.stage, e.backbone): e for e in result.events if e.corpus == corpus}


def test_verification_runs_in_the_pipeline_and_reaches_its_profile(
    tmp_path, toy_manifest_factory, toy_manifest
):
    speakers = [(f"s{i}", "female" if i % 2 == 0 else "male") for i in range(10)]
    ten = write_manifest(
        toy_manifest_factory(tmp_path / "ten", speakers=speakers, takes=2), tmp_path / "ten.jsonl"
    )
    six = write_manifest(toy_manifest, tmp_path / "six.jsonl")
    corpora = [CorpusSource("ten", manifest=str(ten)), CorpusSource("six", manifest=str(six))]
    out = tmp_path / "out"
    settings = VerificationSettings(emotions=("neutral",), bootstrap=20)
    first = run_pipeline(_config(corpora, out, verification=settings), progress=False)
    assert first.exit_code == 0, [e.detail for e in first.failures]
    verify = _statuses(first, "ten")[("verify", BACKBONE)]
    assert verify.status == "done" and "neutral: EER" in verify.detail
    directory = RunLayout(out / "ten").verification_dir(BACKBONE)
    for name in ("metrics.json", "trials.csv", "det.svg", "neutral/metrics.json"):
        assert (directory / name).is_file(), name
    profile = json.loads((out / "ten" / "report" / "profile.json").read_text())
    row = profile["backbones"][0]
    metrics = json.loads((directory / "metrics.json").read_text())
    assert row["intervals"]["eer_informed"]["value"] == pytest.approx(metrics["informed_eer"])
    assert "neutral" in row["privacy"]["verification"]["emotions"]
    # six speakers, one woman and one man per fold: no trial set can be built, noted
    small = _statuses(first, "six")[("verify", BACKBONE)]
    assert small.status == "skipped" and small.detail.startswith("not measurable on this corpus")

    again = run_pipeline(_config(corpora, out, verification=settings), progress=False)
    assert _statuses(again, "ten")[("verify", BACKBONE)].status == "skipped"
    changed = run_pipeline(
        _config(corpora, out, verification=VerificationSettings(bootstrap=30)), progress=False
    )
    statuses = _statuses(changed, "ten")
    assert statuses[("verify", BACKBONE)].status == "done"
    assert statuses[("heads", BACKBONE)].status == "skipped"
    off = run_pipeline(
        _config(corpora, out, verification=VerificationSettings(enabled=False)), progress=False
    )
    assert ("verify", BACKBONE) not in _statuses(off, "ten")


def test_the_config_file_reads_verification_and_the_privacy_score(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(
        'backbones = ["tiny:whisper"]\n'
        '[[corpora]]\nname = "toy"\nmanifest = "toy.jsonl"\n'
        '[verification]\nemotions = ["neutral"]\nmax_nontargets = 200\n'
        '[profile]\nscale = "absolute"\nprivacy_score = "strongest"\n'
    )
    config = load_config(path)
    assert config.verification == VerificationSettings(emotions=("neutral",), max_nontargets=200)
    assert (config.scale, config.privacy_score) == ("absolute", "strongest")
    for text, message in (
        ("[verification]\nmax_nontargets = 0\n", "verification.max_nontargets"),
        ("[verification]\nenabled = 1\n", "verification.enabled"),
        ("[verification]\nfolds = 2\n", r"unknown key\(s\) \['folds'\] in \[verification\]"),
        ('[profile]\nprivacy_score = "max"\n', "profile.privacy_score"),
        ('[profile]\nsacle = "paper"\n', r"unknown key\(s\) \['sacle'\] in \[profile\]"),
    ):
        path.write_text(
            'backbones = ["tiny:whisper"]\n[[corpora]]\nname = "toy"\nmanifest = "t.jsonl"\n' + text
        )
        with pytest.raises((PipelineConfigError, ValueError), match=message):
            load_config(path)
