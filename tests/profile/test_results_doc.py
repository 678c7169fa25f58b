"""docs/results.md is rendered from its artefacts: the blocks, their data and the check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import trustser.results_doc as results_doc
from trustser.cli.main import app
from trustser.manifest import Manifest, Utterance, read_manifest, write_manifest
from trustser.results_doc import (
    ResultsDocError,
    drift,
    import_results,
    parse_blocks,
    read_settings,
    render_document,
    write_rendering,
)
from trustser.runs import write_json
from trustser.verification.table import VerificationSummaryError

REPO = Path(__file__).resolve().parents[2]
MODEL = "tiny:whisper"
OTHER = "tiny:wav2vec2"


def test_docs_results_md_is_what_the_current_code_renders():
    """The real document: every table and figure equals what the current code renders from
    docs/results/. When this fails after a change of a scoring rule or renderer, run
    `make results` and commit the document with the change."""
    rendering = render_document(REPO / "docs" / "results.md")
    assert len(rendering.blocks) >= 5
    problems = drift(rendering)
    assert not problems, "run `make results`:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- a small document


def _settings(data: Path, **extra: object) -> None:
    lines = ["[profiles.fake]", 'runs = "runs"', "bootstrap = 50", "seed = 3"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    (data / "results.toml").write_text("\n".join(lines) + "\n")


DOC = """# Results

Prose written by hand, kept as it is.

<!-- results:begin fake/scores -->
stale text
<!-- results:end fake/scores -->

Between the blocks.

<!-- results:begin fake/raw -->
<!-- results:end fake/raw -->

<!-- results:begin fake/radar -->
<!-- results:end fake/radar -->

The end.
"""


@pytest.fixture
def document(tmp_path, write_fake_runs):
    """docs/results.md in miniature: a document, its data directory (results.toml and a
    results directory with per-clip files) and its figure directory."""
    docs = tmp_path / "docs"
    data = docs / "results"
    write_fake_runs(data / "runs", MODEL, clips=True)
    _settings(data)
    path = docs / "results.md"
    path.write_text(DOC)
    return path


def test_blocks_are_rendered_from_the_files_and_the_prose_is_kept(document):
    rendering = render_document(document)
    text = rendering.text
    assert "stale text" not in text
    for prose in ("Prose written by hand, kept as it is.", "Between the blocks.", "The end."):
        assert prose in text
    scores = text.split("<!-- results:begin fake/scores -->")[1].split("<!-- results:end")[0]
    assert "| backbone | Performance |" in scores and MODEL in scores
    # the intervals come from the speaker bootstrap of the per-clip files
    assert "[" in scores.split(MODEL)[1].splitlines()[0]
    raw = text.split("<!-- results:begin fake/raw -->")[1].split("<!-- results:end")[0]
    assert "| axis | figure | tiny:whisper |" in raw and "| Performance | UAR % |" in raw
    figure = document.parent / "img" / "results" / "fake-radar.svg"
    assert rendering.figures[figure].startswith(b"<?xml")
    assert "(img/results/fake-radar.svg)" in text
    # a second rendering of the rendered document is the same document
    write_rendering(rendering)
    assert drift(render_document(document)) == []
    assert render_document(document).text == text


def test_a_changed_result_makes_the_document_stale(document, write_fake_runs):
    write_rendering(render_document(document))
    assert drift(render_document(document)) == []
    # the same model measured again, better: what the document shows no longer holds
    write_fake_runs(document.parent / "results" / "runs", MODEL, clips=True, accuracy=0.95)
    problems = drift(render_document(document))
    assert any("block 'fake/scores' differs" in p for p in problems)
    assert any("block 'fake/raw' differs" in p for p in problems)
    assert any("fake-radar.svg: differs" in p for p in problems)


def test_a_hand_edited_number_is_found(document):
    write_rendering(render_document(document))
    text = document.read_text()
    line = next(x for x in text.splitlines() if x.startswith("| Performance | UAR % |"))
    document.write_text(text.replace(line, line.replace("|", "| 99.9", 3)[:-1] + "|"))
    assert drift(render_document(document)) == [
        f"{document}: block 'fake/raw' differs from its rendering"
    ]


def test_a_figure_no_block_renders_is_removed(document):
    write_rendering(render_document(document))
    figure = document.parent / "img" / "results" / "fake-radar.svg"
    assert figure.is_file()
    text = document.read_text()
    start = text.index("<!-- results:begin fake/radar -->")
    end = text.index("<!-- results:end fake/radar -->") + len("<!-- results:end fake/radar -->")
    document.write_text(text[:start] + text[end:])
    rendering = render_document(document)
    assert drift(rendering) == [f"{figure}: no block renders it any more"]
    assert figure in write_rendering(rendering)
    assert not figure.exists()


def test_views_that_read_the_results_directory(tmp_path, write_fake_runs):
    data = tmp_path / "results"
    write_fake_runs(data / "runs", MODEL, clips=True)
    head = data / "runs" / "tiny-whisper" / "speaker" / "metrics.json"
    metrics = json.loads(head.read_text())
    metrics["folds"] = [
        {"fold": "fold1", "best_epoch": 40, "history": [{}] * 40},
        {"fold": "fold2", "best_epoch": 12, "history": [{}] * 30},
    ]
    write_json(head, metrics)
    _settings(data)
    path = tmp_path / "results.md"
    path.write_text(
        "<!-- results:begin fake/heads -->\n<!-- results:end fake/heads -->\n"
        "<!-- results:begin fake/attacks -->\n<!-- results:end fake/attacks -->\n"
    )
    text = render_document(path).text
    assert "| tiny:whisper | linear probe, all layers | 90.0 | 99.0 | – |" in text
    # the speaker head stopped at its last epoch in fold 1: still improving when cut off
    assert "| head: best dev epoch / epochs run, per fold | – | – | 40/40, 12/30 |" in text
    assert "| tiny:whisper | fgsm | 45 |" in text and "| 45.0 |" in text


def test_the_attacks_view_names_partial_folds_and_shows_the_plain_attack(tmp_path, write_fake_runs):
    """A randomized variant's attack is labelled adaptive (EOT-E) with its plain attack in the
    row below; an attack over fewer folds than the others names its folds."""
    data = tmp_path / "results"
    write_fake_runs(data / "runs", MODEL)
    folder = data / "runs" / "tiny-whisper" / "attack-pgd-45"
    summary = json.loads((folder / "summary.json").read_text())
    summary["folds"] = [{"fold": "fold2", "asr": 0.6}]
    summary["settings"] = {"eot_samples": 8}
    write_json(folder / "summary.json", summary)
    plain = {**summary, "asr_mean": 0.25, "asr_pooled": 0.25, "num_attacked": 40}
    plain.pop("settings")
    write_json(folder / "plain" / "summary.json", plain)
    fgsm = folder.parent / "attack-fgsm-45" / "summary.json"
    write_json(
        fgsm, {**json.loads(fgsm.read_text()), "folds": [{"fold": "fold1"}, {"fold": "fold2"}]}
    )
    _settings(data)
    path = tmp_path / "results.md"
    path.write_text("<!-- results:begin fake/attacks -->\n<!-- results:end fake/attacks -->\n")
    text = render_document(path).text
    assert "| tiny:whisper | fgsm | 45 | 2 |" in text
    assert "|  | pgd, EOT-8 | 45 | 1: fold2 |" in text
    assert "|  | pgd, plain | 45 | 1: fold2 | 25.0 | 10 / 40 |" in text  # one fold: no sd


def test_a_missing_section_is_an_error_not_an_empty_block(document):
    document.write_text(
        "<!-- results:begin fake/mitigations -->\n<!-- results:end fake/mitigations -->\n"
    )
    with pytest.raises(ResultsDocError, match="no 'Mitigations' section"):
        render_document(document)


# --------------------------------------------------------------------------- markers and settings


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- results:begin a/b -->\n", ":1: block .a/b. is never ended"),
        ("<!-- results:end a/b -->\n", "never begun"),
        ("<!-- results:begin a/b -->\n<!-- results:end a/c -->\n", "same block"),
        (
            "<!-- results:begin a/b -->\n<!-- results:begin a/c -->\n",
            ":2: block 'a/c' begins inside block 'a/b'",
        ),
        (
            "<!-- results:begin a/b -->\n<!-- results:end a/b -->\n" * 2,
            ":3: block 'a/b' appears twice",
        ),
        ("<!-- results:begin scores -->\n<!-- results:end scores -->\n", "not <profile>/<view>"),
    ],
)
def test_broken_markers_are_refused_with_their_line(text, message):
    with pytest.raises(ResultsDocError, match=message):
        parse_blocks(text, "doc.md")


def test_unknown_profile_or_view_names_the_choices(document):
    document.write_text("<!-- results:begin other/scores -->\n<!-- results:end other/scores -->\n")
    with pytest.raises(ResultsDocError, match=r"profile 'other'.*it has: fake"):
        render_document(document)
    document.write_text("<!-- results:begin fake/pie -->\n<!-- results:end fake/pie -->\n")
    with pytest.raises(ResultsDocError, match=r"view 'pie'; the views are design, scores"):
        render_document(document)
    document.write_text("no blocks here\n")
    with pytest.raises(ResultsDocError, match="no generated block"):
        render_document(document)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[profiles.x]\nruns = "runs"\nreplicates = 5\n', r"unknown key\(s\) \['replicates'\]"),
        ("[profiles.x]\nbootstrap = 5\n", "lacks runs"),
        ('[profiles.x]\nruns = "nowhere"\n', "'nowhere' is not a directory"),
        ('[profiles.x]\nruns = "runs"\nbootstrap = "many"\n', "bootstrap must be int"),
        ('[profiles.x]\nruns = "runs"\nmodels = "a"\n', "models must be list"),
        ('[profiles.x]\nruns = "runs"\nscale = "log"\n', "scale 'log' is not one of"),
        ("[other]\nx = 1\n", r"unknown table\(s\) \['other'\]"),
        ("[profiles.x\n", "not valid TOML"),
    ],
)
def test_bad_settings_are_refused_naming_the_file_and_key(tmp_path, toml, message):
    (tmp_path / "runs").mkdir()
    (tmp_path / "results.toml").write_text(toml)
    with pytest.raises(ResultsDocError, match=message):
        read_settings(tmp_path)


def test_settings_reach_the_profile(tmp_path, write_fake_runs):
    write_fake_runs(tmp_path / "runs", MODEL, clips=True)
    write_fake_runs(tmp_path / "runs", "tiny:wavlm", clips=True, seed=1)
    _settings(tmp_path, models=[MODEL], paper=["Whisper tiny"], attack="pgd", snr_db=45)
    settings = read_settings(tmp_path)["fake"]
    profile = settings.collect()
    assert [b.name for b in profile.backbones] == [MODEL, "paper: Whisper tiny"]
    assert profile.attack == {"method": "pgd", "snr_db": 45.0}
    assert profile.bootstrap["replicates"] == 50 and profile.bootstrap["seed"] == 3


# --------------------------------------------------------------------------- importing results


def _manifest(path: Path, root: Path) -> None:
    utterances = tuple(
        Utterance(
            id=f"u{i}",
            path=str(root / "wav" / f"u{i}.wav"),
            speaker="s",
            gender="male",
            emotion="happy",
            duration=1.0,
        )
        for i in range(2)
    )
    write_manifest(Manifest(corpus="c", utterances=utterances, root=str(root)), path)


def test_import_copies_only_the_small_result_files(tmp_path, write_fake_runs):
    runs = tmp_path / "run-output"
    write_fake_runs(runs, MODEL, clips=True)
    model = runs / "tiny-whisper"
    (model / "emotion" / "fold1").mkdir()
    (model / "emotion" / "fold1" / "head.safetensors").write_bytes(b"weights")
    (model / "attack-fgsm-45" / "audio").mkdir()
    (model / "attack-fgsm-45" / "audio" / "clip.wav").write_bytes(b"RIFF")
    config = {"store": {"path": str(runs / "cache.zarr")}, "root": str(runs)}
    write_json(model / "emotion" / "config.json", config)
    cost = json.loads((model / "cost.json").read_text())
    cost["head_source"] = f"trained emotion head config ({model}/emotion/fold1/head.json)"
    write_json(model / "cost.json", cost)
    _manifest(runs / "manifest.jsonl", tmp_path / "corpus")

    out = tmp_path / "docs" / "results" / "runs"
    imported = import_results(runs, out)
    names = {p.as_posix() for p in imported.files}
    assert "tiny-whisper/emotion/predictions.csv" in names
    assert "tiny-whisper/attack-fgsm-45/clips.csv" in names
    assert "manifest.jsonl" in names
    assert not any(n.endswith((".safetensors", ".wav")) for n in names)
    assert imported.total_bytes == sum((out / n).stat().st_size for n in names)
    # absolute paths of the run become relative; the audio's become relative to the corpus
    copied = json.loads((out / "tiny-whisper" / "emotion" / "config.json").read_text())
    assert copied == {"store": {"path": "cache.zarr"}, "root": "."}
    head = json.loads((out / "tiny-whisper" / "cost.json").read_text())["head_source"]
    assert head == "trained emotion head config (tiny-whisper/emotion/fold1/head.json)"
    manifest = (out / "manifest.jsonl").read_text()
    assert str(tmp_path) not in manifest and '"path": "wav/u0.wav"' in manifest
    assert read_manifest(out / "manifest.jsonl", check=False).root == ""
    # the copy profiles as the original does
    assert results_doc.collect_profile(out, bootstrap=0).backbones[0].raw == (
        results_doc.collect_profile(runs, bootstrap=0).backbones[0].raw
    )


def test_import_refuses_to_mix_old_and_new_files_or_large_ones(
    tmp_path, write_fake_runs, monkeypatch
):
    runs, out = tmp_path / "runs", tmp_path / "out"
    write_fake_runs(runs, MODEL, clips=True)
    import_results(runs, out)
    with pytest.raises(ResultsDocError, match="exists; pass --replace"):
        import_results(runs, out)
    stale = out / "tiny-whisper" / "stale.json"
    stale.write_text("{}")
    import_results(runs, out, replace=True)
    assert not stale.exists()
    with pytest.raises(ResultsDocError, match="no results directory for 'tiny:wavlm'"):
        import_results(runs, out, models=["tiny:wavlm"])
    monkeypatch.setattr(results_doc, "MAX_FILE_BYTES", 100)
    with pytest.raises(ResultsDocError, match="must stay small"):
        import_results(runs, tmp_path / "other")


# --------------------------------------------------------------------------- the command


def test_cli_check_fails_on_a_stale_document_and_render_fixes_it(document):
    runner = CliRunner()
    stale = runner.invoke(app, ["results", "check", str(document)])
    assert stale.exit_code == 1
    assert "block 'fake/scores' differs" in stale.output
    rendered = runner.invoke(app, ["results", "render", str(document)])
    assert rendered.exit_code == 0, rendered.output
    assert "3 block(s) rendered" in rendered.output
    assert runner.invoke(app, ["results", "check", str(document)]).exit_code == 0
    broken = document.parent / "broken.md"
    broken.write_text("<!-- results:begin fake/scores -->\n")
    result = runner.invoke(
        app, ["results", "check", str(broken), "--data", str(document.with_suffix(""))]
    )
    assert result.exit_code == 2 and "never ended" in result.output


# --------------------------------------------------------------------------- speaker verification


@pytest.fixture(scope="module")
def verification_runs(tmp_path_factory):
    """A results directory holding speaker-verification runs only (no heads): ``voice`` on every
    clip and on the neutral clips, ``noise`` on every clip; and the store they came from."""
    from trustser.verification import run_verification

    from ..test_verification_run import voice_and_noise

    root = tmp_path_factory.mktemp("verification")
    store, _ = voice_and_noise(root / "cache.zarr", clips=8)
    runs = root / "runs"
    metrics = {
        "voice": run_verification(store, "voice", runs=runs, replicates=30).metrics,
        "voice/neutral": run_verification(
            store, "voice", runs=runs, emotion="neutral", replicates=30
        ).metrics,
        "noise": run_verification(store, "noise", runs=runs, replicates=30).metrics,
    }
    return {"runs": runs, "metrics": metrics}


def _verification_document(tmp_path: Path, runs: Path, **settings: object) -> Path:
    data = tmp_path / "results"
    imported = import_results(runs, data / "runs")
    assert any(p.name == "trials.csv" for p in imported.files)
    _settings(data, **settings)
    path = tmp_path / "results.md"
    path.write_text(
        "<!-- results:begin fake/verification -->\n<!-- results:end fake/verification -->\n"
    )
    return path


def test_the_verification_view_shows_each_run_from_its_metrics(
    tmp_path, verification_runs, monkeypatch
):
    from trustser.formatting import number, percent

    path = _verification_document(tmp_path, verification_runs["runs"])
    # the view reads the runs' metrics.json alone: no profile is collected for it
    monkeypatch.setattr(
        results_doc.ProfileSettings, "collect", lambda self: pytest.fail("profile collected")
    )
    text = render_document(path).text
    titles = [line for line in text.splitlines() if line.startswith("**speaker verification")]
    assert [t.split("**")[1] for t in titles] == [
        "speaker verification · noise, every clip",
        "speaker verification · voice, every clip",
        "speaker verification · voice, neutral clips",
    ]
    for key in ("voice", "voice/neutral", "noise"):
        figures = verification_runs["metrics"][key]["attackers"]["informed"]
        eer, dcf = figures["eer"], figures["min_dcf"]
        row = (
            f"| informed | all | {percent(eer['value'])} | [{percent(eer['low'])}, "
            f"{percent(eer['high'])}] | {number(dcf['value'], 3)} |"
        )
        assert row in text
        male = figures["by_gender"]["male"]["eer"]["value"]
        assert f"|  | male | {percent(male)} |" in text
    assert "30 replicates" in text and "Layer chosen on dev: ignorant" in text
    # the voice is linked, the noise is not
    voice = verification_runs["metrics"]["voice"]["ignorant_eer"]
    assert voice < 0.2 < verification_runs["metrics"]["noise"]["ignorant_eer"]


def test_the_verification_view_names_what_is_missing(tmp_path, verification_runs, write_fake_runs):
    path = _verification_document(tmp_path, verification_runs["runs"])
    runs = path.parent / "results" / "runs"
    write_fake_runs(runs, MODEL, clips=True)  # a model with heads and no verification
    text = render_document(path).text
    assert "No speaker verification for tiny-whisper." in text  # its directory
    _settings(path.parent / "results", models=[MODEL])
    with pytest.raises(ResultsDocError, match=r"no model of profile 'fake' has speaker verif"):
        render_document(path)
    broken = runs / "noise" / "verification" / "metrics.json"
    write_json(broken, {"backbone": "noise"})
    _settings(path.parent / "results", models=["noise"])
    with pytest.raises(VerificationSummaryError, match=r"lacks attackers, design.*privacy verify"):
        render_document(path)


def test_import_without_trials_keeps_the_view_and_relative_paths(
    tmp_path, verification_runs, monkeypatch
):
    out = tmp_path / "out"
    imported = import_results(verification_runs["runs"], out, trials=False)
    names = sorted(p.as_posix() for p in imported.files)
    assert names == [
        "noise/verification/metrics.json",
        "voice/verification/metrics.json",
        "voice/verification/neutral/metrics.json",
    ]
    # the store lived beside the results: its path is relative to them, the machine unnamed
    copied = json.loads((out / "voice" / "verification" / "metrics.json").read_text())
    assert copied["store"]["path"] == "../cache.zarr"
    root = verification_runs["runs"].parent
    assert str(root) not in (out / "voice" / "verification" / "metrics.json").read_text()
    # a trials.csv over the size limit is refused, naming the way out, which the command takes
    runs = verification_runs["runs"]
    largest = max(f.stat().st_size for f in runs.rglob("metrics.json"))
    assert (runs / "voice" / "verification" / "trials.csv").stat().st_size > largest
    monkeypatch.setattr(results_doc, "MAX_FILE_BYTES", largest)
    with pytest.raises(ResultsDocError, match="pass --no-trials"):
        import_results(runs, tmp_path / "big")
    command = ["results", "import", "-r", str(runs), "-o", str(tmp_path / "small")]
    result = CliRunner().invoke(app, [*command, "--no-trials"])
    assert result.exit_code == 0, result.output
    assert "copied 3 files" in result.output
    assert not list((tmp_path / "small").rglob("trials.csv"))


def test_the_recommend_view_ranks_the_rows_for_each_scenario_beside_the_paper(
    tmp_path, write_fake_runs
):
    data = tmp_path / "results"
    # the same speakers and seed: one model better on every axis but privacy (the same gender
    # predictions), so it must rank first in every scenario
    write_fake_runs(data / "runs", MODEL, clips=True, accuracy=0.95, asr=0.2, gmacs=1.0)
    write_fake_runs(data / "runs", OTHER, clips=True, accuracy=0.5, asr=0.9, gmacs=9.0)
    _settings(data, models=[MODEL, OTHER], paper=["Whisper tiny"])
    path = tmp_path / "results.md"
    path.write_text("<!-- results:begin fake/recommend -->\n<!-- results:end fake/recommend -->\n")
    text = render_document(path).text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if "| **" in line}
    assert set(rows) == {"**edge**", "**cloud**", "**critical**"}
    for scenario, paper in (("edge", "Whisper tiny"), ("cloud", "Whisper small")):
        cells = [c.strip() for c in rows[f"**{scenario}**"].split("|")[1:-1]]
        assert cells[1].startswith(f"1. {MODEL} ") and f"2. {OTHER} " in cells[1]
        assert cells[2].startswith(MODEL) and cells[3] == paper
        assert "paper:" not in cells[1]  # the paper's rows are the reference, not candidates
    assert "Sustainability 0.33 (high)" in text  # edge's weights, said beside the table


def test_the_robustness_view_shows_each_case_and_the_ranking_clean_and_corrupted(
    tmp_path, write_fake_runs
):
    data = tmp_path / "results"
    # one model more accurate on clean speech, the other far steadier under corruption
    write_fake_runs(data / "runs", MODEL, clips=True, accuracy=0.9, robustness=0.3)
    write_fake_runs(data / "runs", OTHER, clips=True, accuracy=0.7, robustness=0.99)
    _settings(data, models=[MODEL, OTHER])
    path = tmp_path / "results.md"
    path.write_text(
        "<!-- results:begin fake/robustness -->\n<!-- results:end fake/robustness -->\n"
    )
    text = render_document(path).text
    summary = {line.split("|")[1].strip(): line for line in text.splitlines() if "| tiny:" in line}
    assert summary[MODEL].rstrip().endswith("| 1 → 2 |")  # first clean, second corrupted
    assert summary[OTHER].rstrip().endswith("| 2 → 1 |")
    per_case = [line for line in text.splitlines() if line.startswith("| white_noise-1 |")]
    assert len(per_case) == 1 and per_case[0].count(" / ") == 2  # a cell per model
