"""The profile's "Mitigations" section: each mitigation variant against its baseline, per axis.

For every variant of a mitigation kind (``@privacy-l<λ>``, ``@fair-post``, ``@fair-reweight``,
``@smooth-s<s>-n<N>``, any kind :mod:`trustser.variants` marks a mitigation;
docs/mitigations.md) whose base is in the profile, the change of each
axis's raw figure (UAR, gender-inference accuracy, ASR, EO gap, GMACs) and of its score (higher
is more trustworthy on every axis), plus what the mitigation requires at inference (gender, for
the post-processing) and, for smoothing, the plain attack's ASR beside the adaptive one the
safety axis holds. The radar overlay of a base with its variants is drawn with the others
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


def mitigation_rows(profile: Profile) -> list[dict[str, Any]]:
    """One dict per mitigation variant whose base is profiled: ``variant``, ``base``,
    ``mitigation``, ``gender_at_inference``, and per axis ``raw``/``base_raw``/``delta_raw``/
    ``delta_score`` (None where either side is unmeasured), ``plain_asr`` for smoothing."""
    by_name = {b.name: b for b in profile.backbones}
    rows = []
    for b in profile.backbones:
        what = describe_mitigation(b)
        base = by_name.get(b.base or "")
        if what is None or base is None:
            continue
        variant = _variant(b)
        row: dict[str, Any] = {
            "variant": b.name,
            "base": base.name,
            "mitigation": what,
            "gender_at_inference": variant.needs_gender_at_inference,
            "plain_asr": _plain_asr(profile, b) if variant.randomized else None,
            "axes": {},
        }
        for axis in (a.name for a in registered_axes()):
            raw, base_raw = b.raw.get(axis), base.raw.get(axis)
            score, base_score = b.scores.get(axis), base.scores.get(axis)
            row["axes"][axis] = {
                "raw": raw,
                "base_raw": base_raw,
                "delta_raw": None if raw is None or base_raw is None else raw - base_raw,
                "delta_score": None if score is None or base_score is None else score - base_score,
            }
        rows.append(row)
    return rows


def _cells(row: dict[str, Any]) -> list[str]:
    cells = [row["variant"], row["mitigation"], "yes" if row["gender_at_inference"] else "no"]
    for axis in registered_axes():
        a = row["axes"][axis.name]
        cells.append(f"{axis.change(a['delta_raw'])} ({number(a['delta_score'], missing='—')})")
    cells.append(percent(row["plain_asr"], missing="—"))
    return cells


def _header() -> list[str]:
    return [
        "variant",
        "mitigation",
        "gender at inference",
        *(f"{a.title}: Δ {a.change_label or a.short} (Δ score)" for a in registered_axes()),
        "plain ASR %",
    ]


_EXPLAIN = (
    "Change against the variant's baseline backbone. Raw changes are percentage points (GMACs "
    "for sustainability); a score change above 0 is more trustworthy on that axis. Privacy is "
    "the strongest fresh attacker's gender accuracy; for smoothing the safety axis holds the "
    "adaptive (EOT) attack and the plain attack's ASR is shown beside it. Post-processing needs "
    "each speaker's gender at inference — information a privacy-minded deployment may not have."
)


def mitigations_markdown(profile: Profile) -> list[str]:
    """The section as Markdown lines (empty without mitigation variants)."""
    rows = mitigation_rows(profile)
    if not rows:
        return []
    header = _header()
    out = ["## Mitigations", "", _EXPLAIN, ""]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "---|" * len(header))
    out += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    return [*out, ""]


def mitigations_html(profile: Profile) -> str:
    """The section as HTML (empty string without mitigation variants)."""
    rows = mitigation_rows(profile)
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _header())
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(row)) + "</tr>"
        for row in rows
    )
    return (
        f"<h2>Mitigations</h2><p>{html.escape(_EXPLAIN)}</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )
