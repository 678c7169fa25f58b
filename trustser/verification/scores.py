"""Per-trial scores of the verification attackers, their CSV file and their summary with intervals.

``trials.csv`` holds one row per trial of every set: ``set, enrol, test, enrol_speaker,
test_speaker, enrol_gender, test_gender, target, score_<attacker>...``. Everything
:func:`summarise_scores` reports — EER and minDCF per attacker, in all and per gender, with
speaker-bootstrap intervals — is recomputed from that file alone (:func:`read_trial_scores`),
so a report can redraw intervals with another seed or replicate count.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trustser._validation import TrustSERError
from trustser.metrics.bootstrap import (
    DEFAULT_LEVEL,
    DEFAULT_REPLICATES,
    interval,
    speaker_weights,
)
from trustser.metrics.verification import (
    DEFAULT_OPERATING_POINT,
    OperatingPoint,
    verification_replicates,
)
from trustser.verification.trials import Trials

__all__ = [
    "BOOTSTRAP_DESIGN",
    "TRIAL_COLUMNS",
    "TrialScores",
    "TrialScoresError",
    "read_trial_scores",
    "replicates_on",
    "summarise_scores",
    "trials_digest",
    "write_trial_scores",
]

TRIAL_COLUMNS = (
    "set",
    "enrol",
    "test",
    "enrol_speaker",
    "test_speaker",
    "enrol_gender",
    "test_gender",
    "target",
)
SCORE_PREFIX = "score_"
BOOTSTRAP_DESIGN = (
    "speaker bootstrap: each replicate draws the test speakers with replacement within their "
    "gender; a speaker drawn k times brings its target trials k times, and a non-target trial "
    "between speakers drawn k and m times counts k*m times; per set, then the mean over the sets "
    "the replicate can score (both target and non-target trials drawn)"
)


class TrialScoresError(TrustSERError, ValueError):
    """A trial-score file that cannot be read (missing columns, bad values)."""


@dataclass(frozen=True, eq=False)
class TrialScores:
    """Every set's trials with each attacker's score: ``sets[n]`` names trial ``n``'s set."""

    sets: np.ndarray
    trials: Trials
    scores: dict[str, np.ndarray]

    @classmethod
    def concat(cls, parts: Sequence[tuple[str, Trials, Mapping[str, np.ndarray]]]) -> TrialScores:
        """Join ``(set name, trials, {attacker: scores})`` parts in order."""
        if not parts:
            raise TrialScoresError("no trial set to join.")
        attackers = list(parts[0][2])
        fields = {name: [] for name in Trials.__dataclass_fields__}
        for _, trials, _ in parts:
            for name in fields:
                fields[name].append(getattr(trials, name))
        return cls(
            sets=np.concatenate(
                [np.full(len(trials), name, dtype=object) for name, trials, _ in parts]
            ),
            trials=Trials(**{k: np.concatenate(v) for k, v in fields.items()}),
            scores={
                a: np.concatenate([np.asarray(s[a], dtype=np.float64) for *_, s in parts])
                for a in attackers
            },
        )

    def __len__(self) -> int:
        return len(self.trials)


def write_trial_scores(path: str | os.PathLike, table: TrialScores) -> Path:
    """``trials.csv``, written to a temporary name, then renamed (never seen half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    attackers = list(table.scores)
    t = table.trials
    columns = [
        table.sets,
        t.enrol,
        t.test,
        t.enrol_speaker,
        t.test_speaker,
        t.enrol_gender,
        t.test_gender,
        t.target.astype(int),
        *(table.scores[a] for a in attackers),
    ]
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*TRIAL_COLUMNS, *(SCORE_PREFIX + a for a in attackers)])
        for values in zip(*(c.tolist() for c in columns), strict=True):
            writer.writerow(
                [repr(v) if isinstance(v, float) else v for v in values]  # exact round trip
            )
    os.replace(tmp, path)
    return path


def read_trial_scores(path: str | os.PathLike) -> TrialScores:
    """The table :func:`write_trial_scores` wrote."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        rows = list(reader)
    if header is None or tuple(header[: len(TRIAL_COLUMNS)]) != TRIAL_COLUMNS:
        raise TrialScoresError(
            f"{path}: expected the columns {', '.join(TRIAL_COLUMNS)}, score_<attacker>...; "
            f"got {header}. Write it with `trustser privacy verify`."
        )
    attackers = [h[len(SCORE_PREFIX) :] for h in header[len(TRIAL_COLUMNS) :]]
    if not attackers or not all(h.startswith(SCORE_PREFIX) for h in header[len(TRIAL_COLUMNS) :]):
        raise TrialScoresError(f"{path}: no score_<attacker> column after {TRIAL_COLUMNS[-1]}.")
    if not rows:
        raise TrialScoresError(f"{path} lists no trial.")
    columns = list(zip(*rows, strict=True))
    text = {name: np.array(columns[i], dtype=object) for i, name in enumerate(TRIAL_COLUMNS)}
    try:
        target = np.array([int(v) for v in text.pop("target")], dtype=np.int64)
        scores = {
            a: np.array(columns[len(TRIAL_COLUMNS) + k], dtype=np.float64)
            for k, a in enumerate(attackers)
        }
    except ValueError as error:
        raise TrialScoresError(
            f"{path}: a target or score value is not a number ({error})."
        ) from None
    if not np.isin(target, (0, 1)).all():
        raise TrialScoresError(f"{path}: the target column must hold 0 or 1.")
    sets = text.pop("set")
    return TrialScores(sets=sets, trials=Trials(**text, target=target.astype(bool)), scores=scores)


def _speaker_index(trials: Trials) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Sorted speakers, each one's gender, and the speaker index of each trial's two clips."""
    gender_of: dict[str, str] = {}
    for speakers, genders in (
        (trials.enrol_speaker, trials.enrol_gender),
        (trials.test_speaker, trials.test_gender),
    ):
        for speaker, gender in zip(speakers.tolist(), genders.tolist(), strict=True):
            if gender_of.setdefault(speaker, gender) != gender:
                raise TrialScoresError(f"speaker {speaker!r} has two genders in the trials.")
    speakers = sorted(gender_of)
    index = {s: i for i, s in enumerate(speakers)}
    enrol = np.array([index[s] for s in trials.enrol_speaker.tolist()], dtype=np.int64)
    test = np.array([index[s] for s in trials.test_speaker.tolist()], dtype=np.int64)
    return speakers, [gender_of[s] for s in speakers], enrol, test


def summarise_scores(
    table: TrialScores,
    *,
    replicates: int = DEFAULT_REPLICATES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    operating_point: OperatingPoint = DEFAULT_OPERATING_POINT,
) -> dict[str, Any]:
    """Per attacker: EER and minDCF (per set, then the mean over sets) with speaker-bootstrap
    intervals, in all and per gender (the trials whose two clips are of that gender); each set's
    own figures under ``sets``. The draws depend only on the speakers, ``replicates`` and
    ``seed``, so every attacker (and every model tested on the same trials) shares them."""
    speakers, genders, enrol, test = _speaker_index(table.trials)
    draws = speaker_weights(len(speakers), replicates, seed, strata=genders)
    observed = np.ones((1, len(speakers)))
    trial_gender = table.trials.gender
    subsets = {"all": np.ones(len(table), dtype=bool)}
    subsets.update({g: trial_gender == g for g in sorted(set(genders))})
    set_names = list(dict.fromkeys(table.sets.tolist()))
    out: dict[str, Any] = {}
    for attacker, scores in table.scores.items():

        def figures(mask: np.ndarray, draws_: np.ndarray, scores: np.ndarray = scores) -> dict:
            return verification_replicates(
                scores[mask],
                table.trials.target[mask],
                enrol[mask],
                test[mask],
                table.sets[mask],
                draws_,
                operating_point=operating_point,
            )

        result: dict[str, Any] = {"by_gender": {}, "sets": []}
        for subset, mask in subsets.items():
            if not mask.any():
                continue
            point = figures(mask, observed)
            samples = figures(mask, draws)
            entry = {
                metric: interval(_value(point[metric][0]), samples[metric], level=level).to_dict()
                for metric in ("eer", "min_dcf")
            }
            entry["trials"] = _counts(table.trials.target[mask])
            if subset == "all":
                result.update(entry)
            else:
                result["by_gender"][subset] = entry
        for name in set_names:
            in_set = table.sets == name
            row: dict[str, Any] = {"set": name}
            for subset, mask in subsets.items():
                prefix = "" if subset == "all" else f"{subset}_"
                point = figures(in_set & mask, observed) if (in_set & mask).any() else None
                for metric in ("eer", "min_dcf"):
                    row[prefix + metric] = None if point is None else _value(point[metric][0])
            result["sets"].append(row)
        out[attacker] = result
    return out


def replicates_on(
    table: TrialScores,
    speakers: Sequence[str],
    draws: np.ndarray,
    *,
    operating_point: OperatingPoint = DEFAULT_OPERATING_POINT,
) -> dict[str, dict[str, tuple[float | None, np.ndarray]]]:
    """Per attacker, ``{"eer": (observed, replicates [B]), "min_dcf": (...)}`` over every trial
    (per set, then the mean over sets), on speaker draws made elsewhere: ``draws [B, S]`` counts
    how often each of ``speakers`` is drawn (a profile's draws, shared by every figure it
    compares, so two models' replicates are paired). Every trial speaker must be among them."""
    trial_speakers, _, enrol, test = _speaker_index(table.trials)
    column = {s: i for i, s in enumerate(speakers)}
    missing = [s for s in trial_speakers if s not in column]
    if missing:
        raise TrialScoresError(
            f"the speaker draws do not cover the trial speakers {missing[:5]}; draw every "
            "speaker of the trials."
        )
    chosen = np.asarray(draws, dtype=np.float64)[:, [column[s] for s in trial_speakers]]
    observed = np.ones((1, len(trial_speakers)))
    out: dict[str, dict[str, tuple[float | None, np.ndarray]]] = {}
    for attacker, scores in table.scores.items():
        point, samples = (
            verification_replicates(
                scores,
                table.trials.target,
                enrol,
                test,
                table.sets,
                weights,
                operating_point=operating_point,
            )
            for weights in (observed, chosen)
        )
        out[attacker] = {m: (_value(point[m][0]), samples[m]) for m in ("eer", "min_dcf")}
    return out


def trials_digest(table: TrialScores) -> str:
    """SHA-256 of the trial list (sets, clips, target flags; not the scores): two models scored
    on equal digests were scored on the same trials, so their figures pair trial by trial."""
    digest = hashlib.sha256()
    t = table.trials
    columns = (table.sets, t.enrol, t.test, t.target.astype(int))
    for values in zip(*(c.tolist() for c in columns), strict=True):
        digest.update(("\t".join(map(str, values)) + "\n").encode("utf-8"))
    return digest.hexdigest()


def _value(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def _counts(target: np.ndarray) -> dict[str, int]:
    return {"target": int(target.sum()), "nontarget": int((~target).sum())}
