"""The files a robustness run writes for one model, under ``runs/<model>/robustness/``.

``clips.csv``: one row per test clip per case, its clean and corrupted predictions
(:data:`CLIP_COLUMNS`); what the figures and the profile's intervals are computed from.
``summary.json``: the figures (:func:`trustser.robustness.scores.score_suite`), how the model
was run (from the cache or end to end, and why), the suite (every case's record: transform,
parameters, seed) and the store the copies came from. Both are written atomically.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from trustser.corruptions import SUITE_VERSION, CorruptionCase
from trustser.robustness.copies import RobustnessError
from trustser.robustness.scores import ClipRow
from trustser.runs import PREDICTION_COLUMNS, read_json, write_json

__all__ = [
    "CLIPS",
    "CLIP_COLUMNS",
    "FORMAT",
    "FORMAT_VERSION",
    "SUMMARY",
    "read_clips",
    "read_summary",
    "suite_record",
    "write_clips",
    "write_summary",
]

FORMAT = "trustser-robustness"
FORMAT_VERSION = 1
SUMMARY = "summary.json"
CLIPS = "clips.csv"
# a test clip (its predictions.csv columns up to the label), the case, both predictions
CLIP_COLUMNS = (*PREDICTION_COLUMNS[:5], "case", "clean_pred", "pred", "unchanged")


def write_clips(directory: str | os.PathLike, rows: Iterable[ClipRow]) -> Path:
    """``clips.csv`` (:data:`CLIP_COLUMNS`; ``unchanged`` is 1 or 0), written atomically."""
    path = Path(directory) / CLIPS
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CLIP_COLUMNS)
        for r in rows:
            fields = (r.id, r.fold, r.speaker, r.gender, r.true, r.case, r.clean_pred, r.pred)
            writer.writerow([*fields, int(r.unchanged)])
    os.replace(tmp, path)
    return path


def read_clips(directory: str | os.PathLike) -> list[ClipRow]:
    """The rows of ``clips.csv`` (its ``unchanged`` column is recomputed from the predictions)."""
    path = Path(directory) / CLIPS
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(CLIP_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise RobustnessError(
                f"{str(path)!r} lacks column(s) {sorted(missing)}; rerun `trustser robustness`."
            )
        return [
            ClipRow(*(row[k] for k in CLIP_COLUMNS[:-1]))
            for row in reader  # type: ignore[arg-type]
        ]


def write_summary(directory: str | os.PathLike, summary: dict[str, Any]) -> Path:
    """``summary.json`` with the format's name and version."""
    return write_json(
        Path(directory) / SUMMARY, {"format": FORMAT, "format_version": FORMAT_VERSION, **summary}
    )


def read_summary(path: str | os.PathLike) -> dict[str, Any]:
    """A ``summary.json``, refused when it is not one this version reads."""
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RobustnessError(f"{str(path)!r} is not a robustness summary; rerun the command.")
    if data.get("format_version") != FORMAT_VERSION:
        raise RobustnessError(
            f"{str(path)!r} has robustness format version {data.get('format_version')!r}; this "
            f"trustser reads version {FORMAT_VERSION}. Rerun `trustser robustness`."
        )
    return data


def suite_record(cases: Sequence[CorruptionCase], seed: int) -> dict[str, Any]:
    """The suite as run, for ``summary.json``: its seed and version, the cases and corruptions
    in order, each case's record (transform parameters, notes) and the library versions once."""
    records = {}
    versions: dict[str, Any] = {}
    for case in cases:
        record = case.record()
        versions = record.pop("versions")
        records[case.name] = record
    return {
        "seed": int(seed),
        "suite_version": SUITE_VERSION,
        "cases": [c.name for c in cases],
        "corruptions": list(dict.fromkeys(c.corruption.name for c in cases)),
        "records": records,
        "versions": versions,
    }
