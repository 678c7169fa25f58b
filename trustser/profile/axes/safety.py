"""The safety axis: attack success rate of the profile's attack (FGSM at 45 dB by default),
lower is better.

Read from every ``attack-*/summary.json``; the axis holds the attack the profile names
(``--attack``, ``--snr``), the others and the noise baseline stay beside it. Bootstrapped over
the attacked clips (``clips.csv``), per fold then the fold mean.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from trustser.formatting import MISSING, percent
from trustser.metrics import bootstrap as bs
from trustser.metrics.safety import adversarial_excess
from trustser.profile.axis import AbsoluteEnds, Axis, Column, Commands, CsvColumns, Reading, Section
from trustser.profile.cells import html_table, interval_text
from trustser.profile.estimator import METHOD_ASR, ClipFiles, RowBootstrap
from trustser.profile.model import BackboneProfile, Profile
from trustser.profile.results import Results, maybe_json

__all__ = ["AXIS", "attack_key"]

_NAME = "safety"
_NOISE = "noise"  # the attack method whose ASR is the baseline of the others


def attack_key(method: str, snr_db: float) -> str:
    """The interval key (and profile.csv column) of one attack's ASR: ``asr_fgsm_45db``."""
    return f"asr_{method}_{snr_db:g}db"


def _attacks(base: Path) -> list[dict[str, Any]]:
    attacks = []
    for directory in sorted(base.glob("attack-*")) if base.is_dir() else []:
        summary = maybe_json(directory / "summary.json")
        if summary is None:
            continue
        if summary.get("asr_mean") is None or "method" not in summary or "snr_db" not in summary:
            continue
        attacks.append(
            {
                "method": str(summary["method"]),
                "snr_db": float(summary["snr_db"]),
                "asr_mean": float(summary["asr_mean"]),
                "asr_std": float(summary.get("asr_std") or 0.0),
                "asr_pooled": summary.get("asr_pooled"),
                "num_attacked": summary.get("num_attacked"),
                "clean_accuracy": summary.get("clean_accuracy"),
                "directory": directory.name,
            }
        )
    return sorted(attacks, key=lambda a: (a["method"], -a["snr_db"]))


def _find(attacks: list[dict[str, Any]], method: str, snr: float) -> dict[str, Any] | None:
    return next(
        (a for a in attacks if a["method"] == method and math.isclose(a["snr_db"], snr)), None
    )


def _collect(results: Results) -> Reading | None:
    attacks = _attacks(results.directory)
    if not attacks:
        reason = results.not_attackable()
        return None if reason is None else Reading(not_measurable=reason)
    method, snr = results.attack
    chosen, noise = _find(attacks, method, snr), _find(attacks, _NOISE, snr)
    details = {"attacks": attacks, "axis_attack": {"method": method, "snr_db": snr}}
    reading = Reading(details)
    if chosen is not None:
        reading.raw = chosen["asr_mean"]
        if noise is not None:
            details["noise_asr"] = noise["asr_mean"]
            details["adversarial_excess"] = adversarial_excess(
                chosen["asr_mean"], noise["asr_mean"]
            )
    else:
        done = ", ".join(f"{a['method']} at {a['snr_db']:g} dB" for a in attacks)
        reading.notes.append(f"safety: attacks found ({done}) but not {method} at {snr:g} dB.")
    return reading


def _command(c: Commands) -> str:
    method, snr = c.attack
    return (
        f"trustser attack --store {c.store_arg} --backbone {c.quoted_model} --method {method} "
        f"--snr {snr:g}{c.runs_arg}"
    )


def _clips(clips: ClipFiles) -> list[list[dict[str, str]]]:
    return list(clips.attacks().values())


def _bootstrap(draws: RowBootstrap) -> None:
    entry, estimator = draws.entry, draws.estimator
    method, snr = draws.attack
    asr = {
        folder: estimator.interval(
            bs.asr_from_counts, estimator.attack(rows), METHOD_ASR, cell_dims=1
        )
        for folder, rows in draws.clips.attacks().items()
    }
    attacks = (entry.safety or {}).get("attacks", [])
    for item in attacks:
        result = asr.get(item["directory"])
        if result is None:
            continue
        chosen = item["method"] == method and math.isclose(item["snr_db"], snr)
        draws.store(
            attack_key(item["method"], item["snr_db"]),
            result,
            axis=chosen and entry.raw.get(_NAME) is not None,
        )
    baseline = _find(attacks, _NOISE, snr)
    noise = asr.get(baseline["directory"]) if baseline is not None else None
    axis_interval = entry.intervals.get(_NAME)
    if noise is not None and axis_interval is not None and _NAME in entry.replicates:
        samples = np.array(
            [np.nan if x is None else x for x in entry.replicates[_NAME]], dtype=float
        )
        value = axis_interval["value"] - noise.value if noise.value is not None else None
        draws.store(
            "adversarial_excess",
            bs.interval(
                value,
                samples - noise.samples,
                level=draws.level,
                method="paired speaker bootstrap of attack − noise ASR",
            ),
        )


def _csv(b: BackboneProfile) -> CsvColumns:
    safety = b.safety or {}
    later: dict[str, Any] = {"adversarial_excess": safety.get("adversarial_excess")}
    for attack in safety.get("attacks", []):
        later[attack_key(attack["method"], attack["snr_db"])] = attack["asr_mean"]
    return CsvColumns(
        values={"asr": b.raw.get(_NAME), "noise_asr": safety.get("noise_asr")},
        later=later,
        bounds={"safety": "asr", "adversarial_excess": "adversarial_excess"},
        later_bounds={key: key for key in b.intervals or {} if key.startswith("asr_")},
    )


def _other_attacks(b: BackboneProfile, axis: dict[str, Any]) -> str:
    return (
        ", ".join(
            f"{a['method'].upper()} {a['snr_db']:g} dB "
            f"{interval_text(b, attack_key(a['method'], a['snr_db']), a['asr_mean'])}"
            for a in (b.safety or {}).get("attacks", [])
            if a["method"] != _NOISE
            and (a["method"], a["snr_db"]) != (axis["method"], axis["snr_db"])
        )
        or MISSING
    )


def _markdown(profile: Profile) -> list[Column]:
    axis = profile.attack
    return [
        Column(
            f"{axis['method'].upper()} {axis['snr_db']:g} dB ASR %",
            lambda b: interval_text(b, _NAME, b.raw.get(_NAME)),
        ),
        Column(
            "noise ASR %",
            lambda b: interval_text(
                b, attack_key(_NOISE, axis["snr_db"]), (b.safety or {}).get("noise_asr")
            ),
        ),
        Column("other attacks: ASR %", lambda b: _other_attacks(b, axis)),
    ]


def _section_rows(b: BackboneProfile, axis: dict[str, Any]) -> list[list[str]]:
    rows = [
        [
            b.name,
            a["method"].upper(),
            f"{a['snr_db']:g}",
            interval_text(
                b, attack_key(a["method"], a["snr_db"]), a["asr_mean"], spread=a.get("asr_std")
            ),
            str(a.get("num_attacked", MISSING)),
            percent(a.get("clean_accuracy")),
        ]
        for a in (b.safety or {}).get("attacks", [])
    ]
    if not rows and b.raw.get(_NAME) is not None:
        rows.append(
            [
                b.name,
                axis["method"].upper(),
                f"{axis['snr_db']:g}",
                percent(b.raw[_NAME]),
                MISSING,
                MISSING,
            ]
        )
    return rows


def _section(profile: Profile) -> str:
    rows = [row for b in profile.backbones for row in _section_rows(b, profile.attack)]
    if not rows:
        return '<p class="missing">No attack results.</p>'
    return html_table(
        ["backbone", "method", "SNR dB", "ASR %", "clips attacked", "clean accuracy %"], rows
    )


def _spoke(entry: BackboneProfile, attack: dict[str, Any]) -> str:
    value = percent(entry.raw[_NAME], unit=True)
    return f"{attack['method'].upper()} {attack['snr_db']:g} dB ASR {value}"


AXIS = Axis(
    name=_NAME,
    title="Safety",
    metric="attack success rate",
    short="ASR",
    higher_is_better=False,
    collect=_collect,
    command=_command,
    paper_key="asr",
    absolute=AbsoluteEnds(1.0, 0.0, "ASR 100 % → 0 %"),
    own_field=True,
    clips=_clips,
    bootstrap=_bootstrap,
    spoke=_spoke,
    csv=_csv,
    markdown=_markdown,
    section=Section("Safety", _section),
    aliases=("safe",),
)
