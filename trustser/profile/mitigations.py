"""The profile's "Mitigations" section: each mitigation variant against its baseline, per axis.

For every variant of a mitigation kind (``@privacy-l<λ>``, ``@fair-post``, ``@fair-reweight``,
``@smooth-s<s>-n<N>``, any kind :mod:`trustser.variants` marks a mitigation;
docs/mitigations.md) whose base is in the profile, the change of each
axis's raw figure (UAR, gender-inference accuracy, ASR, EO gap, GMACs) and of its score (higher
is more trustworthy on every axis), plus what the mitigation requires at inference (gender, for
the post-processing) and, for smoothing, the plain attack's ASR beside the adaptive one the
safety axis holds. A variant with a control (``privacy-l<λ>``: ``privacy-l0``) is also compared
with it, and every attacker of a privacy mitigation is listed with whether it is defeated. The radar overlay of a base with its variants is drawn with the others
(:mod:`trustser.profile.radar`).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from trustser._validation import TrustSERError
from trustser.formatting import number, percent
from trustser.profile.axes import registered_axes
from trustser.profile.model import BackboneProfile, Profile
from trustser.runs import ModelName, RunLayout, read_json
from trustser.variants import Variant
from trustser.variants import parse as parse_variant

__all__ = [
    "attacker_rows",
    "describe_mitigation",
    "mitigation_rows",
    "mitigations_html",
    "mitigations_markdown",
]


def _variant(b: BackboneProfile) -> Variant | None:
    """The row's variant when it is a mitigation of a kind this version knows."""
    if b.variant is None or b.base is None:
        return None
    try:
        parsed = parse_variant(ModelName(b.base, b.variant))
    except (ValueError, TrustSERError):
        return None
    return parsed if parsed is not None and parsed.kind.mitigation else None


def describe_mitigation(b: BackboneProfile) -> str | None:
    """What a mitigation variant does, in a few words (None for other rows)."""
    variant = _variant(b)
    return None if variant is None else variant.describe()


def _plain_asr(profile: Profile, b: BackboneProfile) -> float | None:
    """The plain (non-adaptive) attack's ASR of a smoothed variant, from its summary."""
    attack = (b.safety or {}).get("axis_attack") or profile.attack
    if profile.runs is None or not attack:
        return None
    directory = RunLayout(Path(profile.runs)).attack_dir(
        str(ModelName(b.base or b.name, b.variant)), attack["method"], attack["snr_db"]
    )
    path = directory / "plain" / "summary.json"
    return read_json(path).get("asr_mean") if path.is_file() else None


def _changes(b: BackboneProfile, other: BackboneProfile) -> dict[str, dict[str, Any]]:
    """Per axis, ``b``'s raw figure and score against ``other``'s."""
    changes = {}
    for axis in (a.name for a in registered_axes()):
        raw, other_raw = b.raw.get(axis), other.raw.get(axis)
        score, other_score = b.scores.get(axis), other.scores.get(axis)
        changes[axis] = {
            "raw": raw,
            "base_raw": other_raw,
            "delta_raw": None if raw is None or other_raw is None else raw - other_raw,
            "delta_score": None if score is None or other_score is None else score - other_score,
        }
    return changes


def mitigation_rows(profile: Profile) -> list[dict[str, Any]]:
    """One dict per mitigation variant whose base is profiled: ``variant``, ``base``,
    ``mitigation``, ``gender_at_inference``, and per axis ``raw``/``base_raw``/``delta_raw``/
    ``delta_score`` (None where either side is unmeasured), ``plain_asr`` for smoothing; a
    variant with a control (the same model without the mitigation: ``privacy-l0``) profiled
    beside it has ``control`` (its name) and ``against_control``, the same per-axis changes
    against it (None otherwise)."""
    by_name = {b.name: b for b in profile.backbones}
    rows = []
    for b in profile.backbones:
        what = describe_mitigation(b)
        base = by_name.get(b.base or "")
        if what is None or base is None:
            continue
        variant = _variant(b)
        control = variant.control
        control_row = by_name.get(f"{base.name}@{control.tag}") if control is not None else None
        rows.append(
            {
                "variant": b.name,
                "base": base.name,
                "mitigation": what,
                "gender_at_inference": variant.needs_gender_at_inference,
                "plain_asr": _plain_asr(profile, b) if variant.randomized else None,
                "axes": _changes(b, base),
                "control": None if control_row is None else control_row.name,
                "against_control": None if control_row is None else _changes(b, control_row),
            }
        )
    return rows


def _delta_cells(changes: dict[str, dict[str, Any]]) -> list[str]:
    return [
        f"{axis.change(changes[axis.name]['delta_raw'])} "
        f"({number(changes[axis.name]['delta_score'], missing='—')})"
        for axis in registered_axes()
    ]


def _cells(row: dict[str, Any]) -> list[str]:
    cells = [row["variant"], row["mitigation"], "yes" if row["gender_at_inference"] else "no"]
    return [*cells, *_delta_cells(row["axes"]), percent(row["plain_asr"], missing="—")]


def _axis_headers() -> list[str]:
    return [f"{a.title}: Δ {a.change_label or a.short} (Δ score)" for a in registered_axes()]


_EXPLAIN = (
    "Change against the variant's baseline backbone. Raw changes are percentage points (GMACs "
    "for sustainability); a score change above 0 is more trustworthy on that axis. Privacy is "
    "the strongest fresh attacker's gender accuracy; for smoothing the safety axis holds the "
    "adaptive (EOT) attack and the plain attack's ASR is shown beside it. Post-processing needs "
    "each speaker's gender at inference — information a privacy-minded deployment may not have."
)
_EXPLAIN_CONTROL = (
    "Change against the control: the same model without the mitigation (privacy-l0, the "
    "narrow encoder trained for emotion alone from the same seed). Against the base, a "
    "privacy-l<λ> variant's change mixes the adversary with the switch to a narrow encoder; "
    "against the control it is the adversary's alone."
)
_EXPLAIN_ATTACKERS = (
    "Every attacker of each privacy mitigation and its base, trained afresh on what the model "
    "exposes, tested on held-out clips (test accuracy, fold mean, with its 95 % speaker-bootstrap "
    "interval). An attacker is defeated when that interval reaches the majority-class chance "
    "(it reads no more than guessing); without an interval no verdict is given. Concept "
    "erasure (LEACE) guarantees only against linear attackers, on the clips it was fitted on; "
    "gradient reversal guarantees nothing: it fools the adversary it trained against."
)

# The attackers of the privacy axis: (name, linear?, the figure's interval key, task, reader).
_ATTACKERS = (
    ("gender head", "non-linear", "gender_accuracy_head", "gender"),
    ("linear probe (all layers)", "linear", "gender_accuracy_probe", "gender"),
    ("linear probe (layer chosen on dev)", "linear", "gender_accuracy_probe_dev_layer", "gender"),
    ("speaker-ID head", "non-linear", "speaker_accuracy", "speaker"),
)
_PROBE_KEYS = {
    "linear probe (all layers)": "gender_test_accuracy_mean",
    "linear probe (layer chosen on dev)": "gender_dev_chosen_layer_test_accuracy_mean",
}


def attacker_rows(profile: Profile) -> list[dict[str, Any]]:
    """Per model of a privacy mitigation (the variants of kinds targeting privacy and their
    bases), per attacker: ``accuracy`` (test, fold mean), ``low``/``high`` (its 95 % interval,
    None without one), ``chance`` (majority class) and ``defeated`` (True: the interval
    reaches chance; False: it does not; None: no interval or no chance level)."""
    by_name = {b.name: b for b in profile.backbones}
    models: dict[str, BackboneProfile] = {}
    for b in profile.backbones:
        variant = _variant(b)
        if variant is None or variant.kind.targets != "privacy" or b.base not in by_name:
            continue
        models.setdefault(b.base, by_name[b.base])
        models[b.name] = b
    rows = []
    for b in models.values():
        privacy = b.privacy or {}
        for name, linear, key, task in _ATTACKERS:
            details = privacy.get(task) or {}
            accuracy = (
                (b.probe or {}).get(_PROBE_KEYS[name])
                if name in _PROBE_KEYS
                else details.get("accuracy")
            )
            if accuracy is None:
                continue
            found = (b.intervals or {}).get(key) or {}
            low, high = found.get("low"), found.get("high")
            chance = (privacy.get(task) or {}).get("chance_majority")
            defeated = None if low is None or chance is None else bool(low <= chance)
            rows.append(
                {
                    "model": b.name,
                    "attacker": name,
                    "kind": linear,
                    "accuracy": accuracy,
                    "low": low,
                    "high": high,
                    "chance": chance,
                    "defeated": defeated,
                }
            )
    return rows


def _verdict(defeated: bool | None) -> str:
    return {True: "defeated (at chance)", False: "not defeated", None: "no interval"}[defeated]


def _tables(profile: Profile) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """The section's tables: (title, explanation, header, rows), empty when nothing applies."""
    rows = mitigation_rows(profile)
    if not rows:
        return []
    tables = [
        (
            "",
            _EXPLAIN,
            ["variant", "mitigation", "gender at inference", *_axis_headers(), "plain ASR %"],
            [_cells(row) for row in rows],
        )
    ]
    controlled = [row for row in rows if row["against_control"] is not None]
    if controlled:
        tables.append(
            (
                "Against the control",
                _EXPLAIN_CONTROL,
                ["variant", "control", *_axis_headers()],
                [
                    [row["variant"], row["control"], *_delta_cells(row["against_control"])]
                    for row in controlled
                ],
            )
        )
    attackers = attacker_rows(profile)
    if attackers:
        tables.append(
            (
                "Which attackers each privacy mitigation defeats",
                _EXPLAIN_ATTACKERS,
                ["model", "attacker", "kind", "test acc. % [95 % CI]", "chance %", "verdict"],
                [
                    [
                        a["model"],
                        a["attacker"],
                        a["kind"],
                        _accuracy_text(a),
                        percent(a["chance"], missing="—"),
                        _verdict(a["defeated"]),
                    ]
                    for a in attackers
                ],
            )
        )
    return tables


def _accuracy_text(a: dict[str, Any]) -> str:
    if a["low"] is None or a["high"] is None:
        return percent(a["accuracy"])
    return f"{percent(a['accuracy'])} [{percent(a['low'])}, {percent(a['high'])}]"


def mitigations_markdown(profile: Profile) -> list[str]:
    """The section as Markdown lines (empty without mitigation variants)."""
    tables = _tables(profile)
    if not tables:
        return []
    out = ["## Mitigations", ""]
    for title, explain, header, rows in tables:
        if title:
            out += [f"### {title}", ""]
        out += [explain, ""]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        out += ["| " + " | ".join(cells) + " |" for cells in rows]
        out.append("")
    return out


def mitigations_html(profile: Profile) -> str:
    """The section as HTML (empty string without mitigation variants)."""
    tables = _tables(profile)
    if not tables:
        return ""
    parts = ["<h2>Mitigations</h2>"]
    for title, explain, header, rows in tables:
        if title:
            parts.append(f"<h3>{html.escape(title)}</h3>")
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
            for cells in rows
        )
        parts.append(
            f"<p>{html.escape(explain)}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )
    return "".join(parts)
