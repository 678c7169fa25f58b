"""Shared fixtures of the profile tests: a results layout as the stages write it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from trustser.cost import CostReport
from trustser.metrics.performance import macro_f1_score, uar_score
from trustser.runs import RunLayout, write_json

LABELS = ["neutral", "happy", "sad", "angry"]
SPEAKERS = {
    "fold1": [("m1", "male"), ("f1", "female")],
    "fold2": [("m2", "male"), ("f2", "female")],
}


def _write_predictions(path: Path, rows: list[dict], labels: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["id", "fold", "speaker", "gender", "true", "pred", *(f"prob_{x}" for x in labels)]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            probs = {
                f"prob_{x}": (0.7 if x == row["pred"] else 0.3 / (len(labels) - 1)) for x in labels
            }
            writer.writerow({**row, **probs})


def _write_task(layout: RunLayout, backbone: str, task: str, rows: list[dict], labels: list[str]):
    directory = layout.head_dir(backbone, task)
    _write_predictions(directory / "predictions.csv", rows, labels)
    folds = sorted({r["fold"] for r in rows})
    uars, accs, f1s = [], [], []
    for fold in folds:
        true = [r["true"] for r in rows if r["fold"] == fold]
        pred = [r["pred"] for r in rows if r["fold"] == fold]
        uars.append(uar_score(true, pred))
        f1s.append(macro_f1_score(true, pred, labels=labels))
        accs.append(float(np.mean(np.array(true) == np.array(pred))))
    metrics = {
        "task": task,
        "backbone": backbone,
        "labels": labels,
        "test_uar_mean": float(np.mean(uars)),
        "test_uar_std": float(np.std(uars)),
        "test_accuracy_mean": float(np.mean(accs)),
        "test_accuracy_std": float(np.std(accs)),
        "test_macro_f1_mean": float(np.mean(f1s)),
        "folds": [{"fold": f} for f in folds],
    }
    write_json(directory / "metrics.json", metrics)
    write_json(
        directory / "config.json", {"backbone": backbone, "store": {"path": "/data/cache.zarr"}}
    )
    return metrics


def _write_clips(path: Path, emotion: list[dict], asr: float, rng) -> dict[str, float]:
    """An attack's clips.csv over the emotion test clips: clean = the head's prediction, the
    correctly classified ones flipped with probability ``asr``; returns the fold-mean ASR."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["id", "fold", "speaker", "gender", "true", "clean_pred", "adv_pred", "snr_db"]
    per_fold: dict[str, list[int]] = {}
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*columns, "success"])
        writer.writeheader()
        for row in emotion:
            attacked = row["true"] == row["pred"]
            flipped = attacked and rng.random() < asr
            adv = LABELS[(LABELS.index(row["pred"]) + 1) % 4] if flipped else row["pred"]
            if attacked:
                per_fold.setdefault(row["fold"], []).append(int(flipped))
            writer.writerow(
                {
                    **{k: row[k] for k in ("id", "fold", "speaker", "gender", "true")},
                    "clean_pred": row["pred"],
                    "adv_pred": adv,
                    "snr_db": "45.0000",
                    "success": int(flipped),
                }
            )
    rates = [float(np.mean(v)) for v in per_fold.values()]
    return {
        "asr_mean": float(np.mean(rates)),
        "asr_std": float(np.std(rates)),
        "num_attacked": sum(len(v) for v in per_fold.values()),
    }


def _write_robustness(
    layout: RunLayout, backbone: str, emotion: list[dict], unchanged: float, rng
) -> dict:
    """``robustness/`` as ``trustser robustness`` writes it over the emotion test clips: every
    case of the suite, each clip's prediction changed with probability ``1 − unchanged``."""
    from trustser.corruptions import suite
    from trustser.robustness.results import suite_record, write_clips, write_summary
    from trustser.robustness.scores import ClipRow, score_suite

    cases = suite()
    rows = []
    for case in cases:
        for r in emotion:
            changed = rng.random() >= unchanged
            pred = LABELS[(LABELS.index(r["pred"]) + 1) % 4] if changed else r["pred"]
            rows.append(
                ClipRow(
                    r["id"], r["fold"], r["speaker"], r["gender"], r["true"], case.name,
                    r["pred"], pred,
                )
            )  # fmt: skip
    summary = {
        "model": backbone,
        "inference": {"path": "cache", "description": "the emotion head", "reason": None},
        "suite": suite_record(cases, 0),
        "labels": LABELS,
        **score_suite(rows, LABELS, cases, replicates=0),
    }
    directory = layout.robustness_dir(backbone)
    write_clips(directory, rows)
    write_summary(directory, summary)
    return summary


def write_fake_runs(
    root: Path,
    backbone: str = "tiny:whisper",
    *,
    seed: int = 0,
    accuracy: float = 0.7,
    gmacs: float = 2.4,
    asr: float = 0.75,
    tasks: tuple[str, ...] = ("emotion", "gender", "speaker"),
    attacks: bool = True,
    cost: bool = True,
    clips: bool = False,
    robustness: float | None = 0.8,
) -> dict[str, dict]:
    """A results layout as the heads, attack, cost and robustness stages write it (two folds,
    4 speakers); ``robustness``: the share of unchanged predictions (None: not run)."""
    layout = RunLayout(root)
    rng = np.random.default_rng(seed)
    emotion, gender, speaker = [], [], []
    for fold, speakers in SPEAKERS.items():
        for name, sex in speakers:
            for k, label in enumerate(LABELS):
                for rep in range(5):
                    uid = f"{name}_{label}_{rep}"
                    wrong = LABELS[(k + 1 + int(rng.integers(3))) % 4]
                    pred = label if rng.random() < accuracy else wrong
                    base = {"id": uid, "fold": fold, "speaker": name, "gender": sex}
                    emotion.append({**base, "true": label, "pred": pred})
                    other = "female" if sex == "male" else "male"
                    gender.append(
                        {**base, "true": sex, "pred": sex if rng.random() < 0.9 else other}
                    )
                    speaker.append(
                        {**base, "true": name, "pred": name if rng.random() < 0.8 else "m1"}
                    )
    written = {}
    sets = {"emotion": (emotion, LABELS), "gender": (gender, ["female", "male"])}
    sets["speaker"] = (speaker, ["f1", "f2", "m1", "m2"])
    for task in tasks:
        rows, labels = sets[task]
        written[task] = _write_task(layout, backbone, task, rows, labels)
    if attacks:
        for method, value in (("fgsm", asr), ("pgd", min(1.0, asr + 0.1)), ("noise", 0.05)):
            directory = layout.attack_dir(backbone, method, 45)
            summary = {
                "backbone": backbone,
                "method": method,
                "snr_db": 45.0,
                "asr_mean": value,
                "asr_std": 0.02,
                "num_attacked": 50,
                "clean_accuracy": 0.7,
            }
            if clips:  # per-clip results, and the summary they give
                summary.update(_write_clips(directory / "clips.csv", emotion, value, rng))
            write_json(directory / "summary.json", summary)
    probe = {"emotion_test_uar_mean": 0.9, "other": "x"}
    if "gender" in tasks:  # probes run beside the heads of the same tasks
        probe["gender_test_accuracy_mean"] = 0.99
    write_json(layout.probe_dir(backbone) / "metrics.json", probe)
    if cost:
        report = CostReport(
            backbone=backbone,
            family="whisper",
            source="random",
            window="trimmed",
            seconds=6.0,
            num_samples=96000,
            num_frames=300,
            num_layers=3,
            dim=32,
            backbone_params=75904,
            head_params=37767,
            head_config={},
            head_source="test",
            backbone_macs=int(gmacs * 1e9) - 1000,
            head_macs=1000,
            attention_macs=11520000,
            macs_by_category={},
            norm_macs=0,
            torch_flops=int(2 * gmacs * 1e9),
            device="cpu",
            torch_threads=1,
            latency_ms=12.5,
            latency_ms_p90=13.0,
            throughput_clips_per_s=80.0,
            throughput_batch_size=8,
            repeats=5,
        )
        write_json(layout.cost_path(backbone), report.to_dict())
    if robustness is not None and "emotion" in tasks:
        written["robustness"] = _write_robustness(layout, backbone, emotion, robustness, rng)
    written["emotion_rows"] = {"rows": emotion}
    return written


@pytest.fixture(name="write_fake_runs")
def _write_fake_runs():
    """:func:`write_fake_runs`: writes a results layout under a directory of the test's choosing."""
    return write_fake_runs


@pytest.fixture
def fake_speakers():
    """The folds of :func:`write_fake_runs` and their ``(speaker, gender)`` test speakers."""
    return SPEAKERS
