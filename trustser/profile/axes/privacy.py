"""The privacy axis: how well gender is inferred from the model, lower is better.

The figure is the strongest gender attacker that was run (:func:`strongest_attacker`): the
trained gender head (the paper's attack) or a linear probe on time-averaged layers. The gender
and speaker heads' own figures are kept beside it, and so is linkability: the EER of speaker
verification on unseen speakers, per attacker (:mod:`.linkability`, the axis's ``figures``).
The option ``privacy_score = strongest`` (not on the paper scale, which keeps the paper's
definition) scores the stronger of gender inference and linkability instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trustser.formatting import MISSING, percent
from trustser.metrics import bootstrap as bs
from trustser.metrics.privacy import inference_report
from trustser.profile.axes import linkability
from trustser.profile.axis import AbsoluteEnds, Axis, Chance, Column, CsvColumns, Reading, Section
from trustser.profile.cells import NOT_MEASURABLE, html_table, interval_text, unmeasured
from trustser.profile.estimator import METHOD_FOLD, ClipFiles, RowBootstrap
from trustser.profile.model import BackboneProfile, Profile
from trustser.profile.results import Results, column, labels_of, noting
from trustser.runs import NOT_MEASURABLE_FILE

__all__ = ["ATTACKERS", "AXIS", "attacker", "strongest_attacker"]

_NAME = "privacy"
_TASKS = ("gender", "speaker")  # the heads whose inference the axis reads
GENDER_HEAD = "gender head"
ATTACKERS = {
    GENDER_HEAD: None,  # the paper's attack: the trained head, fold mean
    "linear probe (all layers)": "gender_test_accuracy_mean",
    "linear probe (layer chosen on dev)": "gender_dev_chosen_layer_test_accuracy_mean",
}
# The probe attackers (trustser.heads.probe.PROBE_ATTACKERS) -> their interval key.
_PROBE_KEYS = {
    "linear probe (all layers)": "gender_accuracy_probe",
    "linear probe (layer chosen on dev)": "gender_accuracy_probe_dev_layer",
}
_SPOKE_NAMES = {
    GENDER_HEAD: "head",
    "linear probe (all layers)": "probe",
    "linear probe (layer chosen on dev)": "probe, dev layer",
}


def strongest_attacker(
    head_accuracy: float | None, probe: dict[str, float] | None
) -> dict[str, Any] | None:
    """The privacy axis's figure: the highest gender-inference test accuracy (fold mean) among
    the attackers that were run — the gender head and the linear probes (all layers; the layer
    chosen on dev). ``None`` when none was run.

    The embeddings leak at least what the strongest attacker finds; the maximum over this fixed,
    short list errs towards less privacy, never more. The head's figure (the paper's attack) is
    kept beside it as ``head_accuracy``.
    """
    found = {GENDER_HEAD: head_accuracy} if head_accuracy is not None else {}
    for name, key in ATTACKERS.items():
        if key is not None and probe and probe.get(key) is not None:
            found[name] = float(probe[key])
    if not found:
        return None
    chosen = max(found, key=lambda name: (found[name], name == GENDER_HEAD))
    return {
        "attacker": chosen,
        "accuracy": found[chosen],
        "attackers": found,
        "head_accuracy": head_accuracy,
        "rule": "highest gender-inference test accuracy (fold mean) among the attackers run",
    }


def attacker(entry: BackboneProfile) -> str | None:
    """Whose figure the privacy axis holds: ``gender head`` or a ``linear probe (…)``."""
    if entry.reference:
        return GENDER_HEAD if entry.raw.get(_NAME) is not None else None
    return ((entry.privacy or {}).get("axis") or {}).get("attacker")


def _inference(metrics: dict[str, Any] | None, rows: list[dict[str, str]] | None) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if rows is not None:
        labels = labels_of(rows, metrics)
        pooled = inference_report(column(rows, "true"), column(rows, "pred"), labels=labels)
        result.update(
            accuracy=pooled.accuracy,
            uar=pooled.uar,
            leakage=pooled.leakage,
            chance_majority=pooled.chance.majority,
            chance_uniform=pooled.chance.uniform,
            majority_label=pooled.chance.majority_label,
            num_classes=pooled.chance.num_classes,
            num_utterances=pooled.num_utterances,
            source="predictions.csv (pooled)",
        )
    if metrics is not None:
        for ours, theirs in (
            ("accuracy", "test_accuracy_mean"),
            ("accuracy_std", "test_accuracy_std"),
            ("uar", "test_uar_mean"),
            ("uar_std", "test_uar_std"),
        ):
            if isinstance(metrics.get(theirs), (int, float)):
                result[ours] = float(metrics[theirs])
        if "chance_uniform" not in result and isinstance(metrics.get("labels"), list):
            result["chance_uniform"] = 1.0 / len(metrics["labels"])
            result["num_classes"] = len(metrics["labels"])
        result["source"] = "metrics.json (fold mean)"
    return result


def unmeasurable_tasks(results: Results) -> dict[str, str]:
    """Why each privacy task could not be measured on the corpus (one gender, too few
    speakers), as the heads (``<task>/not_measurable.json``) and the probes recorded it."""
    found: dict[str, str] = {}
    probe = results.json("probe/metrics.json") or {}
    for task in _TASKS:
        if results.metrics(task) is not None:
            continue  # measured, whatever an older record says
        record = results.json(f"{task}/{NOT_MEASURABLE_FILE}") or {}
        reason = record.get("reason") or (probe.get("not_measurable") or {}).get(task)
        if isinstance(reason, str):
            found[task] = reason
    return found


def _collect(results: Results) -> Reading:
    privacy: dict[str, Any] = {}
    reading = Reading()
    for task in _TASKS:
        metrics, rows = results.metrics(task), results.predictions(task)
        if metrics is not None or rows is not None:
            with noting(f"{_NAME} ({task})") as notes:
                privacy[task] = _inference(metrics, rows)
            reading.notes += notes
    unmeasurable = unmeasurable_tasks(results)
    if unmeasurable:
        privacy["not_measurable"] = unmeasurable
    gender = privacy.get("gender") or {}
    axis = strongest_attacker(gender.get("accuracy"), results.probe())
    verification = linkability.read(results)
    if verification is not None:
        privacy[linkability.DETAILS] = verification
    option = linkability.OPTION
    if results.options.get(option.name, option.default) == linkability.STRONGEST:
        axis, notes = linkability.strongest(axis, verification, gender.get("chance_majority"))
        reading.notes += notes
    if axis is not None:
        privacy["axis"] = axis
        reading.raw = axis["accuracy"]
        if gender.get("chance_majority") is not None:
            reading.context["gender_chance"] = gender["chance_majority"]
    elif "gender" in unmeasurable:
        reading.not_measurable = unmeasurable["gender"]
    reading.details = privacy or None
    return reading


def _clips(clips: ClipFiles) -> list[list[dict[str, str]]]:
    probe = clips.rows("probe/predictions-gender.csv")
    return [*clips.heads(*_TASKS), *([probe] if probe else []), *linkability.clips(clips)]


def _bootstrap(draws: RowBootstrap) -> None:
    entry, estimate = draws.entry, draws.estimator.interval
    chosen = attacker(entry)
    tables = draws.head_tables("gender", grouped=False)
    if tables is not None:
        head = estimate(bs.accuracy_from_counts, tables, METHOD_FOLD)
        draws.store("gender_accuracy_head", head, axis=chosen == GENDER_HEAD)
        draws.store("gender_uar_head", estimate(bs.uar_from_counts, tables, METHOD_FOLD))
    probe_rows = draws.clips.rows("probe/predictions-gender.csv") or []
    probes = {row["attacker"] for row in probe_rows}
    for name, key in _PROBE_KEYS.items():
        if name not in probes:
            continue
        rows = [row for row in probe_rows if row["attacker"] == name]
        tables = draws.estimator.confusion(rows, "true", "pred", grouped=False)
        draws.store(
            key, estimate(bs.accuracy_from_counts, tables, METHOD_FOLD), axis=chosen == name
        )
    linkability.bootstrap(draws, chosen)
    verifiers = {linkability.verifier(name) for name in linkability.ATTACKERS}
    if chosen not in (None, GENDER_HEAD) and chosen not in probes | verifiers:
        entry.notes.append(
            f"privacy: the axis holds the {chosen}, whose per-clip predictions were not found "
            "(probes written by an earlier version), so its figure has no interval; rerun "
            "`trustser heads probe` to get one."
        )
    rows = draws.clips.predictions("speaker")
    if rows is not None:
        # Speaker ID has one class per speaker: count (clips, hits) instead of a [C, C] table.
        hits = draws.estimator.rates(rows, [r["true"] == r["pred"] for r in rows])
        draws.store(
            "speaker_accuracy", estimate(bs.asr_from_counts, hits, METHOD_FOLD, cell_dims=1)
        )


def _combine(rows: Sequence[BackboneProfile]) -> Reading:
    """A mean over corpora names the attacker when every corpus has the same one, averages
    the gender chance levels and the speaker-verification figures (:func:`.linkability.combine`)."""
    reading = Reading()
    details: dict[str, Any] = {}
    attackers = {attacker(r) for r in rows}
    if len(attackers) == 1 and None not in attackers:
        details["axis"] = {"attacker": attackers.pop()}
    verification = linkability.combine(list(rows))
    if verification is not None:
        details[linkability.DETAILS] = verification
    reading.details = details or None
    chance = [r.context.get("gender_chance") for r in rows]
    if all(g is not None for g in chance):
        reading.context["gender_chance"] = float(np.mean(chance))
    return reading


def _spoke(entry: BackboneProfile, _attack: dict[str, Any]) -> str:
    link = ((entry.privacy or {}).get("axis") or {}).get("linkability") or {}
    if attacker(entry) == linkability.verifier(link.get("attacker", "")):
        return (
            f"≙ gender acc. {percent(entry.raw[_NAME], unit=True)}\n"
            f"(EER {percent(link['eer'], unit=True)}, {link['attacker']})"
        )
    by = _SPOKE_NAMES.get(attacker(entry) or "", "")
    return f"gender acc. {percent(entry.raw[_NAME], unit=True)}" + (f" ({by})" if by else "")


def _tasks(b: BackboneProfile) -> tuple[dict[str, Any], dict[str, Any]]:
    priv = b.privacy or {}
    return priv.get("gender") or {}, priv.get("speaker") or {}


def _probe_text(b: BackboneProfile) -> str:
    probe = b.probe or {}
    return (
        f"{percent(probe.get('gender_test_accuracy_mean'))} / "
        f"{percent(probe.get('gender_dev_chosen_layer_test_accuracy_mean'))}"
    )


def _csv(b: BackboneProfile) -> CsvColumns:
    gender, speaker = _tasks(b)
    eer_values, eer_bounds = linkability.csv_values(b)
    return CsvColumns(
        values={
            "gender_accuracy": b.raw.get(_NAME),
            "privacy_attacker": attacker(b),
            "gender_accuracy_head": gender.get("accuracy"),
            "gender_uar": gender.get("uar"),
            "gender_chance_majority": gender.get("chance_majority"),
            "gender_accuracy_probe": (b.probe or {}).get("gender_test_accuracy_mean"),
            "gender_accuracy_probe_dev_layer": (b.probe or {}).get(
                "gender_dev_chosen_layer_test_accuracy_mean"
            ),
            "speaker_id_accuracy": speaker.get("accuracy"),
            "speaker_id_chance_uniform": speaker.get("chance_uniform"),
            **eer_values,
        },
        bounds={
            "privacy": "gender_accuracy",
            "gender_accuracy_head": "gender_accuracy_head",
            "gender_uar_head": "gender_uar",
            "speaker_accuracy": "speaker_id_accuracy",
            **eer_bounds,
        },
    )


def _head_accuracy(b: BackboneProfile) -> str:
    if b.reference:
        return percent(b.raw.get(_NAME))
    gender = _tasks(b)[0]
    return interval_text(
        b, "gender_accuracy_head", gender.get("accuracy"), spread=gender.get("accuracy_std")
    )


def _axis_text(b: BackboneProfile) -> str:
    """The axis's figure with its interval, or why the corpus cannot measure it."""
    return interval_text(b, _NAME, b.raw.get(_NAME), missing=unmeasured(b, _NAME) or MISSING)


def _speaker_text(b: BackboneProfile) -> str:
    """Speaker-ID accuracy with its interval, or why the corpus cannot measure it."""
    reason = ((b.privacy or {}).get("not_measurable") or {}).get("speaker")
    missing = f"{NOT_MEASURABLE}: {reason}" if reason else MISSING
    return interval_text(b, "speaker_accuracy", _tasks(b)[1].get("accuracy"), missing=missing)


def _markdown(_profile: Profile) -> list[Column]:
    return [
        Column("gender acc. % (strongest attacker)", _axis_text),
        Column("attacker", lambda b: attacker(b) or MISSING),
        Column("gender acc., head % (the paper's)", _head_accuracy),
        Column(
            "gender chance % (majority class)",
            lambda b: percent(_tasks(b)[0].get("chance_majority")),
        ),
        Column("gender acc., linear probe % (all layers / layer chosen on dev)", _probe_text),
        Column("speaker-ID acc. %", _speaker_text),
        Column("speaker chance % (1/K)", lambda b: percent(_tasks(b)[1].get("chance_uniform"))),
        *linkability.markdown_columns(),
    ]


def _section_row(b: BackboneProfile) -> list[str]:
    g, s = _tasks(b)
    head = g.get("accuracy") if not b.reference else b.raw.get(_NAME)
    return [
        b.name,
        _axis_text(b),
        attacker(b) or MISSING,
        interval_text(b, "gender_accuracy_head", head, spread=g.get("accuracy_std")),
        interval_text(b, "gender_uar_head", g.get("uar")),
        f"{percent(g.get('chance_majority'))} / {percent(g.get('chance_uniform'))}",
        _probe_text(b),
        _speaker_text(b),
        f"{percent(s.get('chance_majority'))} / {percent(s.get('chance_uniform'))}",
    ]


def _section(profile: Profile) -> str:
    header = [
        "backbone",
        "gender acc. % (privacy axis)",
        "strongest attacker",
        "gender head acc. % (the paper's)",
        "gender head UAR %",
        "gender chance % (majority / 1/K)",
        "linear probe acc. % (all layers / layer chosen on dev)",
        "speaker-ID acc. %",
        "speaker chance % (majority / 1/K)",
    ]
    return html_table(header, [_section_row(b) for b in profile.backbones]) + (
        '<p class="note">The privacy axis holds the <b>strongest</b> gender attacker that was run: '
        "the highest test accuracy (fold mean) of the trained gender head (the paper's attack) "
        "and the linear probes on time-averaged layers (<code>trustser heads probe</code>: all "
        "layers, and the layer chosen on dev). The embeddings leak at least what the strongest "
        "attacker finds; the head's own figure stays beside it.</p>" + linkability.section(profile)
    )


AXIS = Axis(
    name=_NAME,
    title="Privacy",
    metric="gender accuracy (strongest attacker)",
    short="gender acc.",
    higher_is_better=False,
    collect=_collect,
    command=lambda c: c.heads("gender"),
    paper_key="gender_accuracy",
    absolute=AbsoluteEnds(
        1.0,
        Chance("gender_chance", 0.5, "majority-class chance"),
        "gender-inference accuracy 100 % → majority-class chance",
    ),
    own_field=True,
    clips=_clips,
    bootstrap=_bootstrap,
    combine=_combine,
    spoke=_spoke,
    csv=_csv,
    markdown=_markdown,
    section=Section("Privacy", _section),
    figures=linkability.FIGURES,
    aliases=("priv",),
    options=(linkability.OPTION,),
)
