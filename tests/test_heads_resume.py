"""A killed heads fit resumes at the first unfinished fold and writes what an uninterrupted run
writes (apart from timings); a changed setting retrains; ``resume=False`` retrains."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from trustser.extract import extract
from trustser.heads.crossval import FOLD_STATE
from trustser.heads.training import default_estimator, fit_heads
from trustser.runs import RunLayout

TIMINGS = {"fit_seconds", "fit_seconds_total", "seconds"}


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


@pytest.fixture(scope="module")
def store(tmp_path_factory, toy_manifest_factory):
    root = tmp_path_factory.mktemp("resume")
    manifest = toy_manifest_factory(root / "toy")
    path = root / "cache.zarr"
    extract(manifest, path, "tiny:whisper", device="cpu", progress=False)
    return path


def _fit(store, runs, **options):
    estimator = default_estimator(epochs=3, lr=1e-2, device="cpu")
    return fit_heads(store, None, estimator, task="emotion,gender", runs=runs, **options)


def _killed_run(store, runs) -> None:
    """A child process fitting the same heads, killed with SIGKILL as the gender task starts its
    second fold (emotion done, gender fold 1 done)."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from trustser.heads.training import default_estimator, fit_heads

        def die(event):
            if event.task == "gender" and event.kind == "fold_start" and event.fold_index == 1:
                os.kill(os.getpid(), signal.SIGKILL)

        fit_heads({str(store)!r}, None, default_estimator(epochs=3, lr=1e-2, device="cpu"),
                  task="emotion,gender", runs={str(runs)!r}, callback=die)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=900)
    assert done.returncode == -9, done.stderr.decode()


def test_a_killed_fit_resumes_at_the_fold_with_the_same_results(store, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    _fit(store, whole)
    _killed_run(store, killed)
    layout = RunLayout(killed)
    assert (layout.head_dir("tiny:whisper", "emotion") / "metrics.json").is_file()
    assert not (layout.head_dir("tiny:whisper", "gender") / "metrics.json").exists()
    trained = []
    result = _fit(store, killed, callback=lambda e: trained.append((e.task, e.fold, e.resumed)))
    emotion, gender = result.tasks
    assert emotion.resumed == ("fold1", "fold2", "fold3") and gender.resumed == ("fold1",)
    assert ("gender", "fold2", False) in trained and ("emotion", "fold1", False) not in trained
    for task in ("emotion", "gender"):
        a = RunLayout(whole).head_dir("tiny:whisper", task)
        b = RunLayout(killed).head_dir("tiny:whisper", task)
        assert (a / "predictions.csv").read_bytes() == (b / "predictions.csv").read_bytes()
        for name in ("metrics.json", "config.json"):
            left = _without_timings(json.loads((a / name).read_text()))
            right = _without_timings(json.loads((b / name).read_text()))
            assert left == right, (task, name)
        for fold in ("fold1", "fold2", "fold3"):
            assert (a / fold / "head.safetensors").read_bytes() == (
                b / fold / "head.safetensors"
            ).read_bytes()


def test_a_changed_setting_or_restart_trains_again(store, tmp_path):
    runs = tmp_path / "runs"
    estimator = default_estimator(epochs=2, lr=1e-2, device="cpu")
    first = fit_heads(store, None, estimator, task="emotion", runs=runs, folds="1")
    again = fit_heads(store, None, estimator, task="emotion", runs=runs, folds="1")
    assert first.tasks[0].resumed == () and again.tasks[0].resumed == ("fold1",)
    changed = default_estimator(epochs=2, lr=5e-3, device="cpu")
    other = fit_heads(store, None, changed, task="emotion", runs=runs, folds="1")
    assert other.tasks[0].resumed == ()
    restarted = fit_heads(store, None, changed, task="emotion", runs=runs, folds="1", resume=False)
    assert restarted.tasks[0].resumed == ()
    # a fold whose results file is damaged is trained again, not trusted
    state = RunLayout(runs).head_dir("tiny:whisper", "emotion") / "fold1" / FOLD_STATE
    state.write_text("{ not json")
    repaired = fit_heads(store, None, changed, task="emotion", runs=runs, folds="1")
    assert repaired.tasks[0].resumed == () and json.loads(state.read_text())["key"]
