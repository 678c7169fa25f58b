"""ASR versus SNR: one table (CSV and Markdown) and one plot per backbone, from its summaries.

Every ``attack-<method>-<snr>/summary.json`` under ``runs/<backbone>/`` becomes a row, so FGSM,
PGD and the noise control at every SNR attacked so far appear side by side. The files sit next
to the attack directories, named so that ``RunLayout.attack_dirs`` (``attack-*``) never lists
them: ``asr-vs-snr.csv``, ``asr-vs-snr.md``, ``asr-vs-snr.png``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustser.formatting import percent
from trustser.runs import ATTACK_METHODS, RunLayout, read_json

__all__ = [
    "SWEEP_STEM",
    "SweepFiles",
    "SweepRow",
    "collect_rows",
    "markdown_table",
    "write_sweep",
]

SWEEP_STEM = "asr-vs-snr"
CSV_COLUMNS = (
    "method",
    "snr_db",
    "asr_mean",
    "asr_std",
    "num_attacked",
    "num_flipped",
    "measured_snr_db_mean",
    "num_folds",
)


@dataclass(frozen=True)
class SweepRow:
    """One attack run's headline numbers, read back from its ``summary.json``."""

    method: str
    snr_db: float
    asr_mean: float | None
    asr_std: float | None
    num_attacked: int
    num_flipped: int
    measured_snr_db_mean: float | None
    num_folds: int

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> SweepRow:
        measured = summary.get("measured_snr_db") or {}
        return cls(
            method=str(summary["method"]),
            snr_db=float(summary["snr_db"]),
            asr_mean=summary.get("asr_mean"),
            asr_std=summary.get("asr_std"),
            num_attacked=int(summary.get("num_attacked", 0)),
            num_flipped=int(summary.get("num_flipped", 0)),
            measured_snr_db_mean=measured.get("mean"),
            num_folds=len(summary.get("folds", [])),
        )


@dataclass(frozen=True)
class SweepFiles:
    csv: Path
    markdown: Path
    plot: Path
    rows: tuple[SweepRow, ...]


def _method_order(method: str) -> int:
    return ATTACK_METHODS.index(method) if method in ATTACK_METHODS else len(ATTACK_METHODS)


def collect_rows(layout: RunLayout, backbone: str) -> list[SweepRow]:
    """Rows of every finished attack of ``backbone``, by method then descending SNR."""
    rows = []
    for directory in layout.attack_dirs(backbone):
        path = directory / "summary.json"
        if directory.is_dir() and path.is_file():
            rows.append(SweepRow.from_summary(read_json(path)))
    return sorted(rows, key=lambda r: (_method_order(r.method), r.method, -r.snr_db))


def markdown_table(rows: Sequence[SweepRow]) -> str:
    """SNR down the side, one ``ASR % (mean ± sd over folds)`` column per method."""
    methods = sorted({r.method for r in rows}, key=lambda m: (_method_order(m), m))
    snrs = sorted({r.snr_db for r in rows}, reverse=True)
    cell = {(r.method, r.snr_db): r for r in rows}
    lines = [
        "| SNR (dB) | " + " | ".join(f"{m} ASR %" for m in methods) + " |",
        "|---:|" + "---:|" * len(methods),
    ]
    for snr in snrs:
        cells = []
        for method in methods:
            row = cell.get((method, snr))
            cells.append(percent(row.asr_mean, row.asr_std) if row else "")
        lines.append(f"| {snr:g} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "ASR = clips whose prediction changed / correctly classified clips attacked; "
        "mean ± population sd over folds."
    )
    return "\n".join(lines) + "\n"


def _plot(rows: Sequence[SweepRow], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    methods = sorted({r.method for r in rows}, key=lambda m: (_method_order(m), m))
    for method in methods:
        points = sorted(
            (r for r in rows if r.method == method and r.asr_mean is not None),
            key=lambda r: r.snr_db,
        )
        if not points:
            continue
        axes.errorbar(
            [p.snr_db for p in points],
            [100 * p.asr_mean for p in points],
            yerr=[100 * (p.asr_std or 0.0) for p in points],
            marker="o",
            capsize=3,
            label=method,
        )
    axes.set_xticks(sorted({r.snr_db for r in rows}))
    axes.set_xlabel("SNR of the perturbation (dB)")
    axes.set_ylabel("attack success rate (%)")
    axes.set_ylim(-2, 102)
    axes.invert_xaxis()  # quieter perturbations on the left, louder on the right
    axes.grid(alpha=0.3)
    axes.legend()
    axes.set_title(title)
    figure.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    figure.savefig(tmp)
    plt.close(figure)
    os.replace(tmp, path)


def write_sweep(layout: RunLayout, backbone: str) -> SweepFiles | None:
    """(Re)write the backbone's ASR-vs-SNR CSV, Markdown and PNG; ``None`` if nothing to show."""
    rows = collect_rows(layout, backbone)
    if not rows:
        return None
    base = layout.backbone_dir(backbone)
    csv_path = base / f"{SWEEP_STEM}.csv"
    tmp = csv_path.with_name(csv_path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow(
                [getattr(row, c) if getattr(row, c) is not None else "" for c in CSV_COLUMNS]
            )
    os.replace(tmp, csv_path)
    md_path = base / f"{SWEEP_STEM}.md"
    md_path.write_text(f"# Attack success rate vs SNR: {backbone}\n\n" + markdown_table(rows))
    png_path = base / f"{SWEEP_STEM}.png"
    _plot(rows, png_path, f"{backbone}: ASR vs SNR")
    return SweepFiles(csv_path, md_path, png_path, tuple(rows))
