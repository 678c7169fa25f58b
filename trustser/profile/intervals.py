"""95 % intervals for every figure of a profile, and paired comparisons between its rows.

The test clips a profile's figures were measured on are re-read (``predictions.csv`` of the
heads, ``clips.csv`` of the attacks) into per-speaker count tables and bootstrapped at the
speaker level (:mod:`trustser.metrics.bootstrap`). One set of speaker draws serves every row and
every axis, so replicate ``b`` of two models is the same resampled test set: comparisons between
rows are paired, and a ranking can be recomputed replicate by replicate. The test speakers are
those of the per-clip files the axes name (``Axis.clips``); each axis estimates its own figures
(``Axis.bootstrap``, with :class:`~trustser.profile.estimator.RowBootstrap`).

What each figure's interval means (docs/metrics.md, "Uncertainty"):

========================  =======================================================
figure                    bootstrap
========================  =======================================================
UAR, accuracy, macro-F1   per fold, then the fold mean (the heads' figures)
multiclass EO and SP      per fold, then the mean over folds with both genders
gender / speaker attacks  the head's accuracy per fold, then the fold mean
ASR (each attack)         attacked clips per fold (clustered by speaker), then the mean
GMACs, parameters         exact: counted, no sampling error
latency                   the spread of the repeated timings (2.5th–97.5th percentile)
========================  =======================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trustser.metrics import bootstrap as bs
from trustser.profile.axes import compared, details_order
from trustser.profile.axis import Axis, Figure
from trustser.profile.estimator import ClipFiles, Estimator, RowBootstrap
from trustser.profile.model import BackboneProfile, Profile, ProfileError

__all__ = [
    "DEFAULT_SEED",
    "FEW_SPEAKERS",
    "bootstrap_profile",
    "compare_rows",
    "comparison_table",
]

DEFAULT_SEED = 0
FEW_SPEAKERS = 10  # fewer test speakers per stratum than this: the intervals are optimistic


def _speakers_of(files: Sequence[ClipFiles]) -> tuple[list[str], list[str]]:
    """Every test speaker of the per-clip files the axes read (sorted), and its gender (``""``
    when unknown)."""
    gender: dict[str, str] = {}
    for clips in files:
        for axis in details_order():
            for rows in axis.clips(clips):
                for row in rows:
                    if "speaker" in row:
                        gender.setdefault(row["speaker"], row.get("gender", "") or "")
    speakers = sorted(gender)
    return speakers, [gender[s] for s in speakers]


def _bootstrap_entry(
    entry: BackboneProfile, clips: ClipFiles, estimator: Estimator, attack: tuple[str, float]
) -> None:
    entry.intervals, entry.replicates = {}, {}
    for axis in details_order():
        if axis.bootstrap is not None:
            axis.bootstrap(RowBootstrap(entry, axis.name, clips, estimator, attack))


def bootstrap_profile(
    profile: Profile,
    runs: str | Path,
    *,
    replicates: int = bs.DEFAULT_REPLICATES,
    seed: int = DEFAULT_SEED,
    level: float = bs.DEFAULT_LEVEL,
) -> Profile:
    """Attach intervals (``entry.intervals``) and the axes' replicate values
    (``entry.replicates``) to every measured row of ``profile``, from the per-clip files under
    ``runs``; records the design in ``profile.bootstrap``. ``replicates = 0`` leaves it as is."""
    if replicates < 0:
        raise ProfileError(
            f"--bootstrap must be 0 (off) or a number of replicates, got {replicates}."
        )
    if replicates == 0:
        return profile
    attack = (profile.attack["method"], float(profile.attack["snr_db"]))
    root = Path(runs)
    measured = [b for b in profile.backbones if not b.reference and b.directory]
    files = [ClipFiles(root / b.directory) for b in measured]
    speakers, genders = _speakers_of(files)
    if not speakers:
        profile.notes.append(
            "no per-clip predictions (predictions.csv, clips.csv) were found, so the figures have "
            "no intervals."
        )
        return profile
    strata = genders if all(genders) else None
    weights = bs.speaker_weights(len(speakers), replicates, seed, strata=strata)
    estimator = Estimator(speakers, weights, level)
    for entry, clips in zip(measured, files, strict=True):
        _bootstrap_entry(entry, clips, estimator, attack)
    smallest = min(genders.count(g) for g in set(genders)) if strata is not None else len(speakers)
    if smallest < FEW_SPEAKERS:
        profile.notes.append(
            f"intervals: only {smallest} test speaker(s) in the smallest "
            f"{'gender' if strata is not None else 'test set'}; a bootstrap over so few speakers "
            "is optimistic (in a simulation of 5 × 2 test speakers the paired test's false-positive "
            "rate was about 16 %, not 5 %): read p-values near 0.05 as inconclusive."
        )
    profile.bootstrap = {
        "replicates": replicates,
        "seed": seed,
        "level": level,
        "unit": "test speaker",
        "num_speakers": len(speakers),
        "strata": "gender (each replicate keeps the number of test speakers of each gender)"
        if strata is not None
        else "none (some speakers have no gender)",
        "interval": "percentile",
    }
    return profile


def _samples(entry: BackboneProfile, axis: str) -> np.ndarray | None:
    values = entry.replicates.get(axis) if entry.replicates else None
    if values is None:
        return None
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _compare(
    a: BackboneProfile, b: BackboneProfile, measure: Axis | Figure, level: float
) -> bs.Comparison:
    """The paired comparison of one axis (its raw figure) or secondary figure of two rows."""
    if isinstance(measure, Axis):
        key, av, bv = measure.name, a.raw.get(measure.name), b.raw.get(measure.name)
        exact = measure.counted
    else:
        key, av, bv, exact = measure.key, measure.value(a), measure.value(b), False
    higher = measure.higher_is_better
    pairing = measure.pairing if isinstance(measure, Figure) else None
    if pairing is not None and None not in (av, bv) and pairing(a) != pairing(b):
        result = bs.compare_replicates(key, av, bv, None, None, higher_is_better=higher)
        result.exact, result.low, result.high = False, None, None
        result.verdict = "not paired (measured on different trials)"
        return result
    if exact:
        return bs.compare_replicates(key, av, bv, None, None, higher_is_better=higher)
    sa, sb = _samples(a, key), _samples(b, key)
    if sa is None or sb is None or sa.size != sb.size:
        result = bs.compare_replicates(key, av, bv, None, None, higher_is_better=higher)
        result.exact = False
        result.low = result.high = None
        if result.difference is not None:
            result.verdict = "no interval (no per-clip predictions)"
        return result
    return bs.compare_replicates(key, av, bv, sa, sb, higher_is_better=higher, level=level)


def compare_rows(
    a: BackboneProfile, b: BackboneProfile, *, level: float = bs.DEFAULT_LEVEL
) -> list[bs.Comparison]:
    """Per axis (and secondary figure), the paired difference ``A − B`` of the raw figures, its
    interval, p-value and verdict (``A better``, ``B better``, ``no significant difference``).
    A counted axis (sustainability: MACs) is exact; a figure without replicates on either side
    is compared only when exact."""
    return [_compare(a, b, measure, level) for measure in compared()]


def comparison_table(profile: Profile) -> list[dict[str, Any]]:
    """Paired comparisons of every pair of measured rows of ``profile`` (in profile order) that
    were tested on the same speakers (the same corpus, or both means over the same corpora)."""
    rows = [b for b in profile.backbones if not b.reference and b.replicates]
    level = (profile.bootstrap or {}).get("level", bs.DEFAULT_LEVEL)
    out = []
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            if a.corpus != b.corpus:  # different test speakers: not a paired comparison
                continue
            out.append(
                {
                    "a": a.name,
                    "b": b.name,
                    "axes": {c.metric: c.to_dict() for c in compare_rows(a, b, level=level)},
                }
            )
    return out
