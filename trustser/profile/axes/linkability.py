"""Linkability beside the privacy axis: the speaker-verification EER on unseen speakers.

Not an axis of its own: the privacy axis (:mod:`.privacy`) carries these figures. It reads
``runs/<model>/verification/`` (``trustser privacy verify``: ``metrics.json``, ``trials.csv``,
``det.svg``; ``verification/<emotion>/`` for the trials of one emotion), redraws each
attacker's EER interval on the profile's own speaker draws (so that two models' EERs are
compared pair by pair, replicate by replicate), and shows the figures in every table and the DET
curves in the report.

With the option ``privacy_score = strongest`` the privacy axis scores the stronger of gender
inference and linkability (:func:`strongest`): the EER of the stronger verification attacker is
mapped onto the axis's own scale as the gender accuracy that would leak as much
(:func:`equivalent_accuracy`; docs/metrics.md, "Privacy: the strongest of gender inference and
linkability").
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np

from trustser.formatting import MISSING, number, percent
from trustser.metrics import bootstrap as bs
from trustser.profile.axis import AxisOption, Column, Figure
from trustser.profile.cells import escape, html_table, interval_text
from trustser.profile.estimator import ClipFiles, RowBootstrap
from trustser.profile.model import BackboneProfile, Profile
from trustser.profile.results import Results
from trustser.verification.attackers import ATTACKERS
from trustser.verification.scores import read_trial_scores, replicates_on, trials_digest
from trustser.verification.table import verification_runs

__all__ = [
    "DETAILS",
    "FIGURES",
    "OPTION",
    "STRONGEST",
    "bootstrap",
    "clips",
    "combine",
    "csv_values",
    "eer_key",
    "equivalent_accuracy",
    "leak",
    "markdown_columns",
    "read",
    "section",
    "strongest",
    "verifier",
]

DETAILS = "verification"  # the key of the privacy details, and the results directory
STRONGEST = "strongest"
OPTION = AxisOption(
    name="privacy_score",
    choices=("gender", STRONGEST),
    default="gender",
    meaning={
        "gender": "the privacy axis scores gender inference (the paper's definition)",
        STRONGEST: "the privacy axis scores the stronger of gender inference and linkability "
        "(speaker verification on unseen speakers; the EER mapped to the gender accuracy that "
        "leaks as much, docs/metrics.md)",
    },
    scales={STRONGEST: ("absolute", "relative")},
)
METHOD_EER = (
    "speaker bootstrap of the verification trials (the profile's draws), per set then the mean "
    "over sets"
)
_LINK_KEY = "linkability_equivalent_accuracy"  # the axis's interval when linkability is chosen


def eer_key(attacker: str) -> str:
    """The interval key (and profile.csv column) of an attacker's EER: ``eer_informed``."""
    return f"eer_{attacker}"


def verifier(attacker: str) -> str:
    """The privacy axis's attacker name of a verification attacker."""
    return f"speaker verification ({attacker})"


def _interval(entry: dict[str, Any] | None) -> dict[str, Any]:
    entry = entry or {}
    return {k: entry.get(k) for k in ("value", "low", "high")}


def _figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """Per attacker: EER and minDCF (with the run's own intervals), per gender, layers."""
    out = {}
    for name, figures in (metrics.get("attackers") or {}).items():
        out[name] = {
            "eer": _interval(figures.get("eer")),
            "min_dcf": _interval(figures.get("min_dcf")),
            "by_gender": {
                gender: {"eer": _interval(g.get("eer")), "min_dcf": _interval(g.get("min_dcf"))}
                for gender, g in (figures.get("by_gender") or {}).items()
            },
            "layers": metrics.get(f"{name}_layers"),
            "description": figures.get("description"),
        }
    return out


def read(results: Results) -> dict[str, Any] | None:
    """What ``verification/`` holds for one model (None: not run): each attacker's figures,
    the design in brief, the trial list's digest, the DET chart, and each emotion's run."""
    metrics = results.json(f"{DETAILS}/metrics.json")
    if metrics is None:
        return None
    directory = results.directory / DETAILS
    trials = directory / "trials.csv"
    det = directory / "det.svg"
    design = metrics.get("design") or {}
    emotions = {
        emotion: _figures(results.json(f"{DETAILS}/{emotion}/metrics.json") or {})
        for emotion in verification_runs(directory)
        if emotion is not None
    }
    return {
        "attackers": _figures(metrics),
        "pooled_across_folds": bool(metrics.get("pooled_across_folds")),
        "pooled_reason": design.get("pooled_reason"),
        "sets": len(design.get("sets") or ()),
        "trials": metrics.get("trials"),
        "operating_point": metrics.get("operating_point"),
        "features": metrics.get("features"),
        "trials_digest": trials_digest(read_trial_scores(trials)) if trials.is_file() else None,
        "det_svg": str(det.resolve()) if det.is_file() else None,
        "emotions": emotions,
    }


def _mean_of(values: list[Any]) -> float | None:
    return float(np.mean(values)) if values and all(v is not None for v in values) else None


def _mean_figures(figures: list[dict[str, Any]]) -> dict[str, Any]:
    """One attacker's figures averaged over corpora (values only: the mean's interval is the
    profile's, ``intervals[eer_key(...)]``); a gender every corpus has."""

    def mean(entries: list[dict[str, Any]], metric: str) -> dict[str, Any]:
        return {"value": _mean_of([(e.get(metric) or {}).get("value") for e in entries])}

    genders = set.intersection(*(set(f.get("by_gender") or {}) for f in figures))
    return {
        "eer": mean(figures, "eer"),
        "min_dcf": mean(figures, "min_dcf"),
        "by_gender": {
            g: {m: mean([f["by_gender"][g] for f in figures], m) for m in ("eer", "min_dcf")}
            for g in sorted(genders)
        },
        "layers": None,
        "description": figures[0].get("description"),
    }


def _mean_attackers(runs: list[dict[str, Any]]) -> dict[str, Any]:
    names = [n for n in ATTACKERS if all(n in (run or {}) for run in runs)]
    return {name: _mean_figures([run[name] for run in runs]) for name in names}


def combine(rows: list[BackboneProfile]) -> dict[str, Any] | None:
    """What a mean over corpora keeps of the verification details (None unless every corpus
    has them): each attacker's EER and minDCF averaged over corpora, in all, per gender and per
    emotion run every corpus has; the corpora's trial lists (``trials_digest``, a list: two means
    are paired when every corpus's trials are)."""
    details = [_details(r) for r in rows]
    if not details or not all(d.get("attackers") for d in details):
        return None
    emotions = set.intersection(*(set(d.get("emotions") or {}) for d in details))
    return {
        "attackers": _mean_attackers([d["attackers"] for d in details]),
        "pooled_across_folds": any(d.get("pooled_across_folds") for d in details),
        "trials_digest": [d.get("trials_digest") for d in details],
        "operating_point": details[0].get("operating_point"),
        "features": details[0].get("features"),
        "emotions": {
            e: _mean_attackers([d["emotions"][e] for d in details]) for e in sorted(emotions)
        },
        "corpora": len(details),
    }


def operating_points_text(profile: Profile) -> str:
    """The minDCF operating point(s) the profile's verification runs recorded, in words."""
    points = {
        (p.get("p_target"), p.get("c_miss", 1.0), p.get("c_fa", 1.0))
        for b in profile.backbones
        if isinstance(p := _details(b).get("operating_point"), dict) and p.get("p_target")
    }
    if not points:
        return "minDCF normalised (no operating point recorded)."
    said = "; ".join(f"P_target {t:g}, C_miss = {m:g}, C_fa = {f:g}" for t, m, f in sorted(points))
    if len(points) > 1:
        return f"minDCF normalised, at the operating points the runs differ in: {said}."
    return f"minDCF at {said}, normalised."


def _details(b: BackboneProfile) -> dict[str, Any]:
    return (b.privacy or {}).get(DETAILS) or {}


def _eer(b: BackboneProfile, attacker: str) -> float | None:
    return ((_details(b).get("attackers") or {}).get(attacker) or {}).get("eer", {}).get("value")


FIGURES = tuple(
    Figure(
        eer_key(name),
        f"EER ({name})",
        higher_is_better=True,  # a higher EER: the attacker links the speaker's clips less
        collected=lambda b, name=name: _eer(b, name),
        pairing=lambda b: _details(b).get("trials_digest"),
    )
    for name in ATTACKERS
)


# ------------------------------------------------------------------ the strongest-of rule


def leak(eer: float) -> float:
    """Linkability as a leak in [0, 1]: ``1 − 2·EER`` (0 at chance, EER 50 %; 1 at EER 0)."""
    return float(min(1.0, max(0.0, 1.0 - 2.0 * eer)))


def equivalent_accuracy(eer: Any, chance: float) -> Any:
    """The gender accuracy that leaks as much as a verification EER: ``c + (1 − c)·leak``
    (elementwise on arrays), ``c`` the gender majority chance."""
    linked = np.clip(1.0 - 2.0 * np.asarray(eer, dtype=np.float64), 0.0, 1.0)
    value = chance + (1.0 - chance) * linked
    return float(value) if np.ndim(value) == 0 else value


def strongest(
    axis: dict[str, Any] | None, verification: dict[str, Any] | None, chance: float | None
) -> tuple[dict[str, Any] | None, list[str]]:
    """The privacy axis under ``privacy_score = strongest``: the gender axis (``axis``, from
    :func:`~.privacy.strongest_attacker`) or, when it leaks more, the verification attacker with
    the lowest EER mapped by :func:`equivalent_accuracy`; notes when there is nothing to link."""
    c = 0.5 if chance is None else float(chance)
    eers = {
        name: f["eer"]["value"]
        for name, f in ((verification or {}).get("attackers") or {}).items()
        if f["eer"]["value"] is not None
    }
    if not eers:
        note = (
            "privacy: privacy_score = strongest, but no speaker verification was found; the axis "
            "holds gender inference alone (run `trustser privacy verify`)."
        )
        return (None if axis is None else {**axis, "score": STRONGEST}), [note]
    name = min(eers, key=lambda n: (eers[n], n))
    accuracy = equivalent_accuracy(eers[name], c)
    link = {
        "attacker": name,
        "eer": eers[name],
        "leak": leak(eers[name]),
        "chance": c,
        "equivalent_accuracy": accuracy,
    }
    out = {
        **(axis or {}),
        "score": STRONGEST,
        "linkability": link,
        "gender_attacker": (axis or {}).get("attacker"),
        "gender_accuracy": (axis or {}).get("accuracy"),
        "rule": "the stronger of gender inference (highest accuracy among the attackers run) and "
        "linkability (lowest verification EER, as the gender accuracy leaking as much: "
        "c + (1 − c)(1 − 2 EER))",
    }
    if axis is None or accuracy > axis["accuracy"]:
        out.update(attacker=verifier(name), accuracy=accuracy)
    return out, []


# ------------------------------------------------------------------------ bootstrap


def clips(files: ClipFiles) -> list[list[dict[str, str]]]:
    """The verification trials' speakers (with their genders) join the profile's draws."""
    rows = files.rows(f"{DETAILS}/trials.csv")
    if not rows:
        return []
    gender: dict[str, str] = {}
    for row in rows:
        gender.setdefault(row["enrol_speaker"], row["enrol_gender"])
        gender.setdefault(row["test_speaker"], row["test_gender"])
    return [[{"speaker": s, "gender": g} for s, g in sorted(gender.items())]]


def bootstrap(draws: RowBootstrap, chosen: str | None) -> None:
    """Each attacker's EER (replicates kept: compared) and minDCF on the profile's draws; the
    axis's interval when the axis holds linkability (``chosen``: the axis's attacker)."""
    path = draws.clips.directory / DETAILS / "trials.csv"
    if not path.is_file() or not _details(draws.entry):
        return
    table = read_trial_scores(path)
    estimator = draws.estimator
    figures = replicates_on(table, estimator.speakers, estimator.draws.weights)
    for name, metrics in figures.items():
        value, samples = metrics["eer"]
        eer = bs.interval(value, samples, level=draws.level, method=METHOD_EER)
        draws.store(eer_key(name), eer, replicates=True)
        value, samples = metrics["min_dcf"]
        draws.store(
            f"min_dcf_{name}", bs.interval(value, samples, level=draws.level, method=METHOD_EER)
        )
        if chosen == verifier(name):
            link = (draws.entry.privacy or {}).get("axis", {}).get("linkability") or {}
            chance = float(link.get("chance", 0.5))
            draws.store(
                _LINK_KEY,
                bs.interval(
                    equivalent_accuracy(value, chance) if value is not None else None,
                    equivalent_accuracy(eer.samples, chance),
                    level=draws.level,
                    method=f"{METHOD_EER}; mapped to the equivalent gender accuracy",
                ),
                axis=True,
            )


# --------------------------------------------------------------------------- showing


def _eer_text(b: BackboneProfile, name: str) -> str:
    return interval_text(b, eer_key(name), _eer(b, name))


def markdown_columns() -> list[Column]:
    """profile.md's raw metrics: the EER of every attacker, one column."""
    names = " / ".join(ATTACKERS)
    return [
        Column(
            f"speaker-verification EER % ({names})",
            lambda b: " / ".join(_eer_text(b, n) for n in ATTACKERS) if _details(b) else MISSING,
        )
    ]


def csv_values(b: BackboneProfile) -> tuple[dict[str, Any], dict[str, str]]:
    """profile.csv: EER and minDCF per attacker, and the bounds of each."""
    attackers = _details(b).get("attackers") or {}
    values: dict[str, Any] = {}
    bounds: dict[str, str] = {}
    for name in ATTACKERS:
        figures = attackers.get(name) or {}
        values[eer_key(name)] = (figures.get("eer") or {}).get("value")
        values[f"min_dcf_{name}"] = (figures.get("min_dcf") or {}).get("value")
        bounds[eer_key(name)] = eer_key(name)
        bounds[f"min_dcf_{name}"] = f"min_dcf_{name}"
    return values, bounds


def _own(entry: dict[str, Any]) -> str:
    """A figure with the verification run's own interval: ``27.1 [20.3, 33.0]``."""
    value, low, high = entry.get("value"), entry.get("low"), entry.get("high")
    if value is None:
        return MISSING
    if low is None or high is None:
        return percent(value)
    return f"{percent(value)} [{percent(low)}, {percent(high)}]"


def _section_rows(b: BackboneProfile) -> list[list[str]]:
    details = _details(b)
    runs = [("all emotions", details.get("attackers") or {})]
    runs += [(f"{e} only", a) for e, a in (details.get("emotions") or {}).items()]
    rows = []
    for clips_used, attackers in runs:
        for name, f in attackers.items():
            genders = f.get("by_gender") or {}
            layers = f.get("layers") or []
            rows.append(
                [
                    b.name,
                    clips_used,
                    name,
                    _own(f.get("eer") or {}),
                    _own(genders.get("female", {}).get("eer") or {}),
                    _own(genders.get("male", {}).get("eer") or {}),
                    number((f.get("min_dcf") or {}).get("value"), 3),
                    ", ".join(str(x) for x in sorted(set(layers))) or MISSING,
                ]
            )
    return rows


def _det(b: BackboneProfile) -> str:
    path = _details(b).get("det_svg")
    if not path or not Path(path).is_file():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    title = f"DET curves: {b.name}"
    return (
        f'<figure><img alt="{escape(title)}" src="data:image/svg+xml;base64,{data}">'
        f'<figcaption class="note">{escape(title)}</figcaption></figure>'
    )


def section(profile: Profile) -> str:
    """The report's linkability part: EER and minDCF per attacker (all emotions and each
    emotion run), per gender, the layers chosen, and the DET curves."""
    rows = [row for b in profile.backbones for row in _section_rows(b)]
    if not rows:
        return (
            '<h3>Linkability (speaker verification)</h3><p class="missing">No speaker '
            "verification results (<code>trustser privacy verify</code>).</p>"
        )
    header = [
        "backbone",
        "clips",
        "attacker",
        "EER % (higher: more private)",
        "EER % female",
        "EER % male",
        "minDCF",
        "layers chosen on dev",
    ]
    charts = "".join(_det(b) for b in profile.backbones)
    pooled = any(_details(b).get("pooled_across_folds") for b in profile.backbones)
    return (
        "<h3>Linkability (speaker verification)</h3>"
        + html_table(header, rows)
        + '<p class="note">Trials pair clips of test speakers no attacker trained on; an EER of '
        "50 % is chance (nothing linkable), 0 % links every pair. The <i>ignorant</i> attacker "
        "compares one layer's time-means by cosine; the <i>informed</i> one first learns the "
        "representation's within-speaker variation from other speakers. Intervals here are the "
        "verification run's own speaker bootstrap; profile.md, profile.csv and the paired "
        "comparisons redraw them on the profile's draws. "
        + operating_points_text(profile)
        + (
            " Some trials were pooled across folds (too few test speakers per fold)."
            if pooled
            else ""
        )
        + "</p>"
        + (f'<div class="charts">{charts}</div>' if charts else "")
    )
