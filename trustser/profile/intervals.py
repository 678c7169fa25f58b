"""95 % intervals for every figure of a profile, and paired comparisons between its rows.

The test clips a profile's figures were measured on are re-read (``predictions.csv`` of the
heads, ``clips.csv`` of the attacks) into per-speaker count tables and bootstrapped at the
speaker level (:mod:`trustser.metrics.bootstrap`). One set of speaker draws serves every row and
every axis, so replicate ``b`` of two models is the same resampled test set: comparisons between
rows are paired, and a ranking can be recomputed replicate by replicate. The test speakers are
those of the per-clip files the axes name (``Axis.clips``); each axis estimates its own figures
(``Axis.bootstrap``, with :class:`~trustser.profile.estimator.RowBootstrap`). The design
(:func:`~trustser.metrics.bootstrap.draw_speakers`) scores every fold in every replicate:
speakers drawn within fold × gender, or whole folds when a fold tests a single speaker of a
gender (EmoDB, IEMOCAP).

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

from collections.abc import Iterable, Iterator, Mapping, Sequence
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
    "resampled_text",
    "speaker_draws",
    "tested_speakers",
]

DEFAULT_SEED = 0
FEW_SPEAKERS = 10  # fewer units (folds, or speakers per stratum): the intervals are optimistic
# Measured by bench/intervals.py (docs/metrics.md, "Uncertainty"): 5 folds × (1 woman + 1 man).
FEW_UNITS_COVERAGE = "83 %"
FEW_UNITS_FALSE_POSITIVES = "16 %"


def tested_speakers(
    tables: Iterable[Sequence[Mapping[str, str]]],
) -> tuple[list[str], list[str | None], list[str]]:
    """Every test speaker of per-clip rows (sorted), the one fold that tested it (None when
    several did) and its gender (``""`` when unknown).

    A speaker's fold comes from the speaker-independent files only: a file that tests one
    speaker in several folds (the speaker-ID task's closed-set split) and rows that name no fold
    (verification trials) add speakers and genders, not folds, so they cannot turn the design
    of every other figure into a plain speaker draw."""
    gender: dict[str, str] = {}
    folds: dict[str, set[str]] = {}
    for rows in tables:
        tested_in: dict[str, set[str]] = {}
        for row in rows:
            if "speaker" in row:
                gender.setdefault(row["speaker"], row.get("gender", "") or "")
                tested_in.setdefault(row["speaker"], set())
                if row.get("fold") is not None:
                    tested_in[row["speaker"]].add(row["fold"])
        independent = all(len(f) <= 1 for f in tested_in.values())
        for speaker, found in tested_in.items():
            folds.setdefault(speaker, set()).update(found if independent else ())
    speakers = sorted(gender)
    fold_of = [next(iter(folds[s])) if len(folds[s]) == 1 else None for s in speakers]
    return speakers, fold_of, [gender[s] for s in speakers]


def speaker_draws(
    tables: Iterable[Sequence[Mapping[str, str]]], replicates: int, seed: int = DEFAULT_SEED
) -> bs.SpeakerDraws:
    """The profile's draws over the test speakers of per-clip rows (``predictions.csv``,
    ``clips.csv``): models scored with them are compared replicate by replicate."""
    return bs.draw_speakers(*tested_speakers(tables), replicates, seed)


def _axis_rows(files: Sequence[ClipFiles]) -> Iterator[Sequence[Mapping[str, str]]]:
    """The per-clip rows the axes read, file by file."""
    for clips in files:
        for axis in details_order():
            yield from axis.clips(clips)


def resampled_text(design: dict[str, Any]) -> str:
    """What a profile's replicates resample, in words (older profiles: the test speakers)."""
    return design.get("resampled") or f"the {design['num_speakers']} test speakers"


def _design_record(draws: bs.SpeakerDraws, num_folds: int) -> dict[str, Any]:
    """``profile.bootstrap``'s description of the draws."""
    num_speakers = len(draws.speakers)
    if draws.design == bs.DESIGN_FOLDS:
        return {
            "unit": "fold (all its test speakers together)",
            "resampled": f"the {num_folds} folds with replacement, each with all its test "
            f"speakers ({num_speakers} in all)",
            "strata": "none (a fold drawn k times counts k times in the fold mean; some fold "
            "tests fewer speakers of a gender than there are folds, down to one, whom a draw "
            "within fold × gender could only repeat)",
        }
    strata = {
        bs.DESIGN_FOLD_GENDER: "fold × gender (each replicate keeps each fold's number of test "
        "speakers of each gender)",
        bs.DESIGN_FOLD: "fold (each replicate keeps each fold's number of test speakers; some "
        "speakers have no gender)",
        bs.DESIGN_GENDER: "gender (speakers tested in several folds, or a single fold: a "
        "replicate may leave a fold without one gender)",
        bs.DESIGN_NONE: "none (some speakers have no gender, or a gender has a single speaker)",
    }[draws.design]
    return {
        "unit": "test speaker",
        "resampled": f"the {num_speakers} test speakers with replacement",
        "strata": strata,
    }


def _few_units_note(draws: bs.SpeakerDraws) -> str | None:
    """The warning of a design with few independent units (docs/metrics.md, "Uncertainty")."""
    if draws.smallest_unit_count >= FEW_SPEAKERS:
        return None
    if draws.design == bs.DESIGN_FOLDS:
        what = f"they resample only {draws.smallest_unit_count} folds"
    else:
        what = (
            f"only {draws.smallest_unit_count} test speaker(s) in the smallest stratum "
            f"({draws.design})"
        )
    return (
        f"intervals: {what}; a bootstrap over so few units is optimistic (in the simulation of "
        "5 folds × (1 woman + 1 man) of docs/metrics.md, 95 % intervals covered the true UAR in "
        f"{FEW_UNITS_COVERAGE} of evaluations and the paired test's false-positive rate was "
        f"{FEW_UNITS_FALSE_POSITIVES}, not 5 %): read p-values near 0.05 as inconclusive."
    )


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
    speakers, folds, genders = tested_speakers(_axis_rows(files))
    if not speakers:
        profile.notes.append(
            "no per-clip predictions (predictions.csv, clips.csv) were found, so the figures have "
            "no intervals."
        )
        return profile
    draws = bs.draw_speakers(speakers, folds, genders, replicates, seed)
    estimator = Estimator(draws, level)
    for entry, clips in zip(measured, files, strict=True):
        _bootstrap_entry(entry, clips, estimator, attack)
    note = _few_units_note(draws)
    if note:
        profile.notes.append(note)
    profile.bootstrap = {
        "replicates": replicates,
        "seed": seed,
        "level": level,
        "design": draws.design,
        **_design_record(draws, len({f for f in folds if f is not None})),
        "num_speakers": len(speakers),
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
        why = [
            f"{row.name}: {row.not_measurable[key]}"
            for row, value in ((a, av), (b, bv))
            if value is None and key in (row.not_measurable or {})
        ]
        if why:  # the corpus cannot measure it: say so rather than "not comparable"
            result = bs.compare_replicates(
                key, av, bv, None, None, higher_is_better=measure.higher_is_better
            )
            result.verdict = "not measurable (" + "; ".join(why) + ")"
            return result
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
            result.verdict = "no interval (no per-clip or per-trial results were kept)"
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
