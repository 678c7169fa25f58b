"""Which backbone for which deployment: the paper's Table 5 as a ranking over profile scores.

A scenario gives each axis a priority (high / med / low, from the paper's Table 5) which becomes a
weight (3 / 2 / 1); weights are normalised to sum to 1 and each backbone is ranked by
:math:`\\sum_a w_a s_a` over its axis scores :math:`s_a \\in [0, 1]` (higher is more trustworthy).
A custom weight vector (``perf=3,safety=1,...``) replaces the scenario. An axis a scenario does not
name weighs nothing in it. Backbones missing an axis that carries weight are not ranked; the
result says which command would measure it.

An axis that is *not measurable* for a candidate (fairness and the gender attack on a corpus of
one gender) is never scored as 0: it is left out of the weighing for every candidate — its
weight shared out over the other weighted axes in proportion — so all are ranked on the same
axes, and the result names it with the reason (:attr:`Recommendation.unweighed`).

The ranking uses the test figures it shows. A choice among variants of one backbone that differ
only in a setting (the λ of ``privacy-l<λ>``) is not a ranking but a model selection, made as a
user would make it, on **dev** figures only: the variant's kind chooses one
(:meth:`~trustser.variants.VariantKind.choose_on_dev`, from each row's ``dev`` figures), and the
others are left out of the ranking with the reason (``dev_choices``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trustser._validation import TrustSERError
from trustser.metrics.bootstrap import DEFAULT_REPLICATES
from trustser.profile.axes import axis_names, get_axis, registered_axes
from trustser.profile.axis import Axis
from trustser.profile.collect import collect_profile
from trustser.profile.intervals import DEFAULT_SEED
from trustser.profile.model import MEAN_CORPUS, BackboneProfile, Profile, ProfileError, read_profile
from trustser.profile.scales import axis_score, scale_bounds, score_profile
from trustser.runs import ModelName
from trustser.variants import Variant
from trustser.variants import parse as parse_variant

__all__ = [
    "CONFIDENCE",
    "PRIORITY_WEIGHTS",
    "SCENARIOS",
    "Ranked",
    "RecommendError",
    "Recommendation",
    "dev_choices",
    "parse_weights",
    "recommend",
    "recommendation_to_markdown",
    "run_recommend",
    "saturated_text",
    "scenario_weights",
    "unweighed_text",
    "weights_text",
]

PRIORITY_WEIGHTS: dict[str, float] = {"high": 3.0, "med": 2.0, "low": 1.0}
CONFIDENCE = 0.95  # a top choice ranked first in fewer replicates than this is a tie

SCENARIOS: dict[str, dict[str, Any]] = {
    "edge": {
        "description": "on-device inference with little compute and energy",
        "priorities": {
            "performance": "med",
            "safety": "low",
            "privacy": "low",
            "sustainability": "high",
            "fairness": "med",
        },
        "paper_choice": "Whisper tiny",
    },
    "cloud": {
        "description": "a hosted service handling many users' speech",
        "priorities": {
            "performance": "high",
            "safety": "med",
            "privacy": "high",
            "sustainability": "low",
            "fairness": "high",
        },
        "paper_choice": "Whisper small",
    },
    "critical": {
        "description": "critical facilities where manipulated decisions are costly",
        "priorities": {
            "performance": "high",
            "safety": "high",
            "privacy": "low",
            "sustainability": "low",
            "fairness": "med",
        },
        "paper_choice": "WavLM Base+",
    },
}


class RecommendError(TrustSERError, ValueError):
    """A ranking that cannot be made as asked (unknown scenario, bad weights, nothing to rank)."""


@dataclass(frozen=True)
class Ranked:
    """One ranked backbone: its weighted score, per-axis contributions and the reasons."""

    rank: int
    backbone: str
    score: float
    contributions: dict[str, float]
    reasons: list[str]
    first_share: float | None = None  # share of bootstrap replicates where it ranks first


@dataclass(frozen=True)
class Recommendation:
    """A ranking of profiled backbones for one scenario or weight vector."""

    scenario: str
    description: str
    weights: dict[str, float]  # normalised to sum to 1
    priorities: dict[str, str]
    scale: str
    ranking: list[Ranked]
    excluded: dict[str, str] = field(default_factory=dict)  # backbone -> why not ranked
    paper_choice: str | None = None
    # The smallest set of candidates that rank first in >= CONFIDENCE of the bootstrap
    # replicates (most often first, first); one name = a winner, several = a tie.
    tied: list[str] = field(default_factory=list)
    replicates: int = 0
    # Weighted axes left out because some candidate cannot measure them: axis -> why.
    unweighed: dict[str, str] = field(default_factory=dict)
    # Per family of variants of one backbone, the one chosen on dev (``chosen``, ``rule``,
    # ``candidates``); the others appear in ``excluded`` with why.
    dev_choices: list[dict[str, Any]] = field(default_factory=list)
    # Weighted axes on which every candidate's raw figure lies past one end of the scale, so
    # all score the same end (0 or 1) and the axis cannot separate them: axis -> which end.
    saturated: dict[str, str] = field(default_factory=dict)

    @property
    def best(self) -> str | None:
        return self.ranking[0].backbone if self.ranking else None

    @property
    def is_tie(self) -> bool:
        return len(self.tied) > 1

    @property
    def verdict(self) -> str:
        """``"A"`` (ranked first in ≥ 95 % of the replicates), ``"tie: A, B"`` or the point
        ranking's top when there are no replicates."""
        if not self.ranking:
            return "nothing ranked"
        if not self.replicates:
            return f"{self.best} (no intervals: a point ranking)"
        shares = {r.backbone: r.first_share or 0.0 for r in self.ranking}
        if self.is_tie:
            return "tie: " + ", ".join(f"{n} (first in {shares[n]:.0%})" for n in self.tied)
        return f"{self.best} (first in {shares[self.best]:.0%} of {self.replicates} replicates)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_weights(text: str | Mapping[str, Any]) -> dict[str, float]:
    """``"perf=3,safety=1"`` or ``"perf=high,privacy=low"`` → weights per axis (others 0)."""
    if isinstance(text, Mapping):
        items = [(str(k), v) for k, v in text.items()]
    else:
        items = []
        for part in filter(None, (p.strip() for p in str(text).split(","))):
            if "=" not in part:
                raise RecommendError(
                    f"weight {part!r} is not AXIS=VALUE; write e.g. --weights perf=3,safety=2,sust=1."
                )
            key, value = part.split("=", 1)
            items.append((key.strip(), value.strip()))
    weights = dict.fromkeys(axis_names(), 0.0)
    for key, value in items:
        axis = _axis_named(key)
        if isinstance(value, str) and value.lower() in PRIORITY_WEIGHTS:
            number = PRIORITY_WEIGHTS[value.lower()]
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise RecommendError(
                    f"weight of {axis} must be a number or high/med/low, got {value!r}."
                ) from None
        if not number >= 0:
            raise RecommendError(f"weight of {axis} must be >= 0, got {value!r}.")
        weights[axis] = number
    if sum(weights.values()) <= 0:
        raise RecommendError("every weight is 0; give at least one axis a positive weight.")
    return weights


def _axis_named(word: str) -> str:
    """The axis ``word`` names in ``--weights`` (its name or an alias, any case)."""
    try:
        return get_axis(word.lower()).name
    except ProfileError:
        short = ", ".join(a.aliases[0] for a in registered_axes() if a.aliases)
        raise RecommendError(
            f"unknown axis {word!r} in --weights; use {', '.join(axis_names())} (or {short})."
        ) from None


def scenario_weights(scenario: str) -> dict[str, float]:
    """The paper's Table 5 priorities of ``scenario`` as weights (high 3, med 2, low 1)."""
    if scenario not in SCENARIOS:
        raise RecommendError(
            f"scenario {scenario!r} is not known; choose one of {', '.join(SCENARIOS)} or give "
            "--weights."
        )
    return {a: PRIORITY_WEIGHTS[p] for a, p in SCENARIOS[scenario]["priorities"].items()}


def _priority(weight: float, top: float) -> str:
    if weight <= 0:
        return "ignored"
    ratio = weight / top
    return "high" if ratio > 0.8 else "med" if ratio > 0.45 else "low"


def _reasons(
    scores: dict[str, float], weights: dict[str, float], priorities: dict[str, str]
) -> list[str]:
    names = list(weights)
    weighted = sorted((a for a in names if weights[a] > 0), key=lambda a: -weights[a] * scores[a])
    strong = [a for a in weighted if scores[a] >= 0.6][:2]
    weak = [a for a in names if weights[a] > 0 and scores[a] < 0.4]
    reasons = []
    if strong:
        reasons.append(
            "strong on "
            + ", ".join(f"{a} ({scores[a]:.2f}, {priorities[a]} priority)" for a in strong)
        )
    if weak:
        reasons.append(
            "weak on " + ", ".join(f"{a} ({scores[a]:.2f}, {priorities[a]} priority)" for a in weak)
        )
    if not strong and not weak:
        reasons.append("middling on every weighted axis (all scores between 0.4 and 0.6)")
    return reasons


def _replicate_scores(
    profile: Profile, entries: Sequence[BackboneProfile], axis: Axis
) -> np.ndarray | None:
    """``[B, N]`` scores of ``entries`` on ``axis`` in every bootstrap replicate (the point score
    where a row has no replicates: exact figures, the paper's rows); None without replicates."""
    name = axis.name
    lengths = {len(e.replicates[name]) for e in entries if (e.replicates or {}).get(name)}
    if not lengths:
        return None
    count = max(lengths)
    raw = np.empty((count, len(entries)))
    for j, entry in enumerate(entries):
        values = (entry.replicates or {}).get(name)
        if values and len(values) == count:
            raw[:, j] = [entry.raw[name] if v is None else v for v in values]
        else:
            raw[:, j] = entry.raw[name]
    scores = np.empty_like(raw)
    for j, entry in enumerate(entries):
        if profile.scale == "relative":  # the compared set's ends move with each replicate
            higher = axis.higher_is_better
            for b in range(count):
                row = raw[b]
                best, worst = (row.max(), row.min()) if higher else (row.min(), row.max())
                scores[b, j] = (
                    1.0 if best == worst else axis_score(row[j], worst, best, log=axis.log)[0]
                )
            continue
        worst, best, log = scale_bounds(profile.scale, axis, entry, list(entries))
        scores[:, j] = [axis_score(v, worst, best, log=log)[0] for v in raw[:, j]]
    return scores


def _first_shares(
    profile: Profile, entries: Sequence[BackboneProfile], weights: Mapping[str, float]
) -> tuple[np.ndarray, int]:
    """Per candidate, the share of replicates in which its weighted score is the highest (ties
    within a replicate split the win)."""
    axes = [a for a in registered_axes() if weights[a.name] > 0]
    point = {a.name: np.array([float(e.scores.get(a.name) or 0.0) for e in entries]) for a in axes}
    per_axis = {a.name: _replicate_scores(profile, entries, a) for a in axes}
    count = max((v.shape[0] for v in per_axis.values() if v is not None), default=0)
    if count == 0:
        return np.zeros(len(entries)), 0
    totals = np.zeros((count, len(entries)))
    for name, values in per_axis.items():
        totals += weights[name] * (values if values is not None else point[name][None, :])
    best = totals.max(axis=1, keepdims=True)
    winners = np.isclose(totals, best, rtol=0, atol=1e-12)
    shares = (winners / winners.sum(axis=1, keepdims=True)).mean(axis=0)
    return shares, count


def _confidence_set(names: Sequence[str], shares: np.ndarray, level: float) -> list[str]:
    order = sorted(range(len(names)), key=lambda i: (-shares[i], names[i]))
    chosen, total = [], 0.0
    for i in order:
        chosen.append(names[i])
        total += shares[i]
        if total >= level - 1e-9:
            break
    return chosen


@dataclass(frozen=True)
class _Weighing:
    """What a ranking weighs: the scenario (or custom weights) and its normalised weights."""

    name: str
    description: str
    paper_choice: str | None
    priorities: dict[str, str]
    weights: dict[str, float]  # every registered axis, normalised to sum to 1


def _weighing(scenario: str | None, weights: str | Mapping[str, Any] | None) -> _Weighing:
    if (scenario is None) == (weights is None):
        raise RecommendError("give exactly one of --scenario or --weights.")
    names = axis_names()
    if scenario is not None:
        raw = scenario_weights(scenario)
        info = SCENARIOS[scenario]
        priorities = dict(info["priorities"])
        priorities.update({a: "ignored" for a in names if a not in priorities})
        chosen = (scenario, info["description"], info["paper_choice"])
    else:
        raw = parse_weights(weights)  # type: ignore[arg-type]
        top = max(raw.values())
        priorities = {a: _priority(w, top) for a, w in raw.items()}
        chosen = ("custom", "custom weights", None)
    total = sum(raw.values())
    return _Weighing(*chosen, priorities, {a: raw.get(a, 0.0) / total for a in names})


def _check_on_scale(profile: Profile, weights: Mapping[str, float]) -> None:
    off = [
        a.name for a in registered_axes() if weights[a.name] > 0 and not a.on_scale(profile.scale)
    ]
    if off:
        raise RecommendError(
            f"{', '.join(off)} is weighed but not on the {profile.scale} scale, so it has no "
            "score; rank on --scale absolute or relative, or give it weight 0."
        )


def dev_choices(profile: Profile) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The variants chosen on dev among each family of variants of one backbone (rows of one
    base and kind with dev figures; two at least), and why each other member is left out."""
    families: dict[tuple[Any, ...], list[tuple[Variant, BackboneProfile]]] = {}
    for entry in profile.backbones:
        if not entry.is_variant or not entry.dev:
            continue
        if profile.corpora and entry.corpus not in (None, MEAN_CORPUS):
            continue
        try:
            variant = parse_variant(ModelName(entry.base or entry.name, entry.variant))
        except (ValueError, TrustSERError):
            continue
        if variant is not None:
            families.setdefault((entry.base, variant.kind.word), []).append((variant, entry))
    choices, left_out = [], {}
    for (base, _), members in families.items():
        if len(members) < 2:
            continue
        kind = members[0][0].kind
        choice = kind.choose_on_dev([(v, e.dev) for v, e in members])
        if choice is None:
            continue
        row_of = {v.name: e.name for v, e in members}
        chosen = row_of[choice.chosen]
        choices.append(
            {
                "base": base,
                "kind": kind.word,
                "chosen": chosen,
                "rule": choice.rule,
                "candidates": [e.name for _, e in members],
            }
        )
        for name, why in choice.rejected.items():
            left_out[row_of[name]] = f"not chosen on dev among the {kind.label} variants ({why})"
    return choices, left_out


def _unmeasurable(entry: BackboneProfile, axis: str) -> bool:
    return entry.scores.get(axis) is None and axis in (entry.not_measurable or {})


def _rankable(
    profile: Profile, weights: Mapping[str, float], left_out: Mapping[str, str]
) -> tuple[list[BackboneProfile], dict[str, str]]:
    """The rows that can be ranked, and why each other row is not: a variant not chosen on dev
    (``left_out``), a row lacking a weighted axis that was not run, or a row that cannot
    measure a weighted axis other rows did measure (a variant that cannot be attacked, say:
    ranking it without that axis would favour it). An axis no row can measure excludes no row:
    it is left out of the weights (:func:`_unweighed`)."""
    rows, excluded = [], {}
    weighed = [a for a in weights if weights[a] > 0]
    measured = {a for a in weighed for e in profile.backbones if e.scores.get(a) is not None}
    for entry in profile.backbones:
        if profile.corpora and entry.corpus not in (None, MEAN_CORPUS):
            continue  # across corpora, the means over corpora are ranked
        if entry.name in left_out:
            excluded[entry.name] = left_out[entry.name]
            continue
        lacking = [a for a in weighed if entry.scores.get(a) is None]
        unmeasurable = [a for a in lacking if _unmeasurable(entry, a)]
        if unmeasurable and set(unmeasurable) & measured:
            excluded[entry.name] = "; ".join(
                f"{a} not measurable: {entry.not_measurable[a]}"
                for a in unmeasurable
                if a in measured
            )
            continue
        lacking = [a for a in lacking if a not in unmeasurable]
        if lacking:
            hints = "; ".join(
                f"{a}: run `{entry.missing[a]}`" if a in entry.missing else f"{a}: not measured"
                for a in lacking
            )
            excluded[entry.name] = f"missing {', '.join(lacking)} ({hints})"
            continue
        rows.append(entry)
    return rows, excluded


def _unweighed(
    rows: Sequence[BackboneProfile], weights: Mapping[str, float]
) -> tuple[dict[str, float], dict[str, str]]:
    """``weights`` without the weighted axes some row cannot measure (the rest renormalised to
    sum to 1), and why each was left out."""
    left: dict[str, str] = {}
    for axis in (a for a in weights if weights[a] > 0):
        for entry in rows:
            if _unmeasurable(entry, axis):
                left[axis] = f"not measurable on {entry.name}: {entry.not_measurable[axis]}"
                break
    kept = {a: (0.0 if a in left else w) for a, w in weights.items()}
    total = sum(kept.values())
    if left and total <= 0:
        reasons = "; ".join(f"{a}: {why}" for a, why in left.items())
        raise RecommendError(f"no weighted axis can be measured on every candidate ({reasons}).")
    return ({a: w / total for a, w in kept.items()} if left else dict(weights)), left


def _candidates(
    rows: Sequence[BackboneProfile], weights: Mapping[str, float], excluded: Mapping[str, str]
) -> list[tuple[float, BackboneProfile, dict[str, float], dict[str, float]]]:
    """``(weighted score, row, scores, contributions)`` of every rankable row, best first."""
    candidates = []
    for entry in rows:
        scores = {a: float(entry.scores.get(a) or 0.0) for a in weights if weights[a] > 0}
        contributions = {a: weights[a] * scores[a] for a in scores}
        candidates.append((sum(contributions.values()), entry, scores, contributions))
    if not candidates:
        detail = "; ".join(f"{k}: {v}" for k, v in excluded.items()) or "the profile is empty"
        raise RecommendError(f"no backbone has every weighted axis measured ({detail}).")
    candidates.sort(key=lambda c: (-c[0], c[1].name))
    return candidates


def _ahead(
    score: float,
    contributions: dict[str, float],
    other: tuple[float, BackboneProfile, dict[str, float], dict[str, float]],
    weights: Mapping[str, float],
) -> str:
    """Why a row ranks above the next one: the axes that gain and lose it the most."""
    deltas = {a: contributions[a] - other[3][a] for a in weights if weights[a] > 0}
    gains = sorted((a for a in deltas if deltas[a] > 1e-9), key=lambda a: -deltas[a])
    losses = sorted((a for a in deltas if deltas[a] < -1e-9), key=lambda a: deltas[a])
    text = f"ahead of {other[1].name} by {score - other[0]:.3f}"
    if gains:
        text += " thanks to " + ", ".join(f"{a} (+{deltas[a]:.3f})" for a in gains[:2])
    if losses:
        text += " despite " + ", ".join(f"{a} ({deltas[a]:.3f})" for a in losses[:2])
    return text


def _saturated(
    candidates: Sequence[tuple[float, BackboneProfile, dict[str, float], dict[str, float]]],
) -> dict[str, str]:
    """The weighted axes on which two or more candidates with different raw figures all score
    exactly 0 or exactly 1: each lies past the same end of the scale (the paper scale's ends
    are the paper's Table 4 extremes, which an easy corpus can pass), so the axis adds the
    same to every weighted score and ranks nothing."""
    found: dict[str, str] = {}
    if len(candidates) < 2:
        return found
    for axis in candidates[0][2]:
        scores = {c[2][axis] for c in candidates}
        raws = {c[1].raw.get(axis) for c in candidates}
        if len(scores) == 1 and scores & {0.0, 1.0} and len(raws) > 1:
            found[axis] = "best" if scores == {1.0} else "worst"
    return found


def recommend(
    profile: Profile,
    *,
    scenario: str | None = None,
    weights: str | Mapping[str, Any] | None = None,
) -> Recommendation:
    """Rank the backbones of ``profile`` for ``scenario`` (edge, cloud, critical) or ``weights``."""
    weighing = _weighing(scenario, weights)
    _check_on_scale(profile, weighing.weights)
    choices, left_out = dev_choices(profile)
    rows, excluded = _rankable(profile, weighing.weights, left_out)
    normalised, unweighed = _unweighed(rows, weighing.weights)
    candidates = _candidates(rows, normalised, excluded)
    entries = [c[1] for c in candidates]
    shares, replicates = _first_shares(profile, entries, normalised)
    tied = _confidence_set([e.name for e in entries], shares, CONFIDENCE) if replicates else []
    variants = {b.name: b for b in profile.backbones if b.is_variant}
    ranking = []
    for index, (score, row, scores, contributions) in enumerate(candidates):
        backbone = row.name
        reasons = _reasons(scores, normalised, weighing.priorities)
        if backbone in variants:  # say what the row is: a variant is ranked as a model of its own
            entry = variants[backbone]
            reasons.insert(0, f"variant of {entry.base}: {entry.variant_description}")
        if index + 1 < len(candidates):
            reasons.append(_ahead(score, contributions, candidates[index + 1], normalised))
        if replicates:
            reasons.append(f"ranked first in {shares[index]:.0%} of {replicates} replicates")
        ranking.append(
            Ranked(
                rank=index + 1,
                backbone=backbone,
                score=float(score),
                contributions=contributions,
                reasons=reasons,
                first_share=float(shares[index]) if replicates else None,
            )
        )
    return Recommendation(
        scenario=weighing.name,
        description=weighing.description,
        weights=normalised,
        priorities={
            a: ("not measurable" if a in unweighed else p) for a, p in weighing.priorities.items()
        },
        scale=profile.scale,
        ranking=ranking,
        excluded=excluded,
        paper_choice=weighing.paper_choice,
        tied=tied,
        replicates=replicates,
        unweighed=unweighed,
        dev_choices=choices,
        saturated=_saturated(candidates),
    )


def unweighed_text(result: Recommendation, *, reasons: bool = True) -> str | None:
    """One line naming the weighted axes left out of a ranking because some candidate cannot
    measure them (with ``reasons``, why); None when none was."""
    if not result.unweighed:
        return None
    if reasons:
        named = "; ".join(f"{axis} ({why})" for axis, why in result.unweighed.items())
    else:
        named = ", ".join(result.unweighed) + " (not measurable)"
    return f"not weighed: {named}; their weight is shared out over the other axes"


def saturated_text(result: Recommendation) -> str | None:
    """One line naming the weighted axes that cannot separate the candidates on this scale
    (:attr:`Recommendation.saturated`); None when every weighted axis can."""
    if not result.saturated:
        return None
    named = ", ".join(f"{axis} (all at its {end} end)" for axis, end in result.saturated.items())
    return (
        f"cannot separate the candidates: {named}; every candidate's figure lies past that end "
        f"of the {result.scale} scale, so the axis adds the same to each score (another "
        "--scale ranks on it)"
    )


def weights_text(result: Recommendation) -> str:
    """``Performance 0.25 (high), …``: a ranking's weight per axis and its priority."""
    return ", ".join(
        f"{a.title} {result.weights[a.name]:.2f} ({result.priorities[a.name]})"
        for a in registered_axes()
    )


def recommendation_to_markdown(result: Recommendation) -> str:
    """A ranking as Markdown: weights, ranked table with reasons, and what was left out."""
    lines = [
        f"### Scenario: {result.scenario} — {result.description}",
        "",
        f"Weights: {weights_text(result)}; scores on the {result.scale} scale.",
        "",
        "| rank | backbone | weighted score | reasons |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r.rank} | {r.backbone} | {r.score:.3f} | {'; '.join(r.reasons)} |"
        for r in result.ranking
    ]
    lines += ["", f"Choice: **{result.verdict}**.", ""]
    if result.paper_choice:
        lines += [f"The paper's Table 5 recommends {result.paper_choice} for this scenario.", ""]
    for choice in result.dev_choices:
        lines += [
            f"- chosen on dev among {', '.join(choice['candidates'])}: **{choice['chosen']}** "
            f"({choice['rule']})"
        ]
    lines += [f"- not ranked: **{k}** — {v}" for k, v in result.excluded.items()]
    lines += [f"- {text}" for text in [unweighed_text(result), saturated_text(result)] if text]
    return "\n".join(lines).rstrip() + "\n"


def run_recommend(
    *,
    profile: str | Path | None = None,
    runs: str | Path = "runs",
    store: str | None = None,
    backbones: Sequence[str] | None = None,
    scale: str = "paper",
    scenarios: Sequence[str] | None = None,
    weights: str | None = None,
    paper: Sequence[str] | None = None,
    bootstrap: int = DEFAULT_REPLICATES,
    seed: int = DEFAULT_SEED,
    options: Mapping[str, str] | None = None,
) -> list[Recommendation]:
    """``trustser recommend``: rank from a saved ``profile.json`` (or collect one from ``runs``).

    With neither ``scenarios`` nor ``weights``, every Table 5 scenario is ranked. A saved profile
    is re-scored when ``scale`` differs from the one it was written with. ``options`` chooses how
    axes are measured while collecting (``{"privacy_score": "strongest"}``, as ``trustser
    profile --privacy-score``); a saved profile keeps the choices it was collected with.
    """
    if profile is not None:
        for flag, given in (("--paper", paper), ("--privacy-score", options)):
            if given:
                raise RecommendError(
                    f"{flag} applies when collecting; it cannot be used with --profile (a saved "
                    "profile keeps what it was collected with: collect it again with "
                    f"`trustser profile {flag} ...`, or rank from --runs)."
                )
        loaded = read_profile(profile)
        loaded = loaded if loaded.scale == scale else score_profile(loaded, scale)
    else:
        loaded = collect_profile(
            runs,
            store=store,
            backbones=backbones,
            scale=scale,
            paper=paper,
            bootstrap=bootstrap,
            seed=seed,
            options=options,
        )
    if weights is not None:
        if scenarios:
            raise RecommendError("give --scenario or --weights, not both.")
        return [recommend(loaded, weights=weights)]
    return [recommend(loaded, scenario=s) for s in (scenarios or list(SCENARIOS))]
