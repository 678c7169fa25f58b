"""The sustainability axis: GMACs of the backbone and head on one 6 s clip, lower is better,
scored in log10.

Read from ``cost.json`` (``trustser cost``). MACs and parameters are counted from the model,
not estimated on test clips: exact, and the same on every corpus. Latency is measured, and its
interval is the spread of the repeated timings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trustser.formatting import MISSING, number
from trustser.profile.axis import AbsoluteEnds, Axis, Column, Commands, CsvColumns, Reading, Section
from trustser.profile.cells import html_table, interval_text
from trustser.profile.estimator import RowBootstrap
from trustser.profile.model import BackboneProfile, Profile
from trustser.profile.results import Results

__all__ = ["AXIS", "inference_gmacs", "inference_params"]

_NAME = "sustainability"
_KEPT = (
    "gmacs",
    "total_macs",
    "backbone_macs",
    "head_macs",
    "attention_macs",
    "torch_flops",
    "backbone_params",
    "head_params",
    "total_params",
    "latency_ms",
    "latency_ms_p90",
    "latency_ms_runs",
    "throughput_clips_per_s",
    "throughput_batch_size",
    "real_time_factor",
    "device",
    "seconds",
    "window",
    "torch_threads",
)


def _collect(results: Results) -> Reading | None:
    from trustser.cost import read_cost  # the cost module loads torch: only when there is a file

    path = results.directory / "cost.json"
    if not path.is_file():
        return None
    cost = read_cost(path)
    reading = Reading({k: cost.get(k) for k in _KEPT}, float(cost["gmacs"]))
    if cost.get("seconds") not in (None, 6.0):
        reading.notes.append(
            f"sustainability: cost.json was measured for a {cost['seconds']} s clip, not 6 s."
        )
    return reading


def _command(c: Commands) -> str:
    return f"trustser cost --backbone {c.quoted_model}{c.runs_arg}"


def _latency(cost: dict[str, Any], level: float) -> dict[str, Any] | None:
    """The spread of the repeated timings: their central ``level`` range (all timings recorded)
    or, from an older cost.json, the median with the 90th percentile as the upper end."""
    median = cost.get("latency_ms")
    if median is None:
        return None
    runs = cost.get("latency_ms_runs")
    if isinstance(runs, list) and len(runs) >= 2:
        tail = 100.0 * (1.0 - level) / 2.0
        low, high = (float(x) for x in np.percentile(runs, [tail, 100.0 - tail]))
        return {
            "value": median,
            "low": min(low, median),
            "high": max(high, median),
            "method": f"spread of {len(runs)} repeated timings (central {level:.0%})",
        }
    return {
        "value": median,
        "low": None,
        "high": cost.get("latency_ms_p90"),
        "method": "median to 90th percentile of the repeated timings (rerun `trustser cost` to "
        "record every timing)",
    }


def _bootstrap(draws: RowBootstrap) -> None:
    entry = draws.entry
    cost = entry.sustainability or {}
    draws.exact(_NAME, entry.raw.get(_NAME), "counted MACs")
    if _NAME in entry.intervals:
        entry.intervals["gmacs"] = entry.intervals[_NAME]
    for key in ("backbone_params", "head_params"):
        draws.exact(key, cost.get(key), "counted parameters")
    latency = _latency(cost, draws.level)
    if latency is not None:
        entry.intervals["latency_ms"] = latency


def _combine(rows: Sequence[BackboneProfile]) -> Reading:
    """Counted from the model: a mean over corpora keeps the first corpus's cost."""
    return Reading(details=rows[0].sustainability)


def _params(b: BackboneProfile, head_digits: int) -> str:
    cost = b.sustainability or {}
    if cost.get("backbone_params") is None:
        return MISSING
    return f"{cost['backbone_params'] / 1e6:.2f} M + {cost['head_params'] / 1e3:.{head_digits}f} k"


def inference_gmacs(b: BackboneProfile) -> str:
    """GMACs of one clip through the model (a variant's are its base's)."""
    return number(b.raw.get(_NAME))


def inference_params(b: BackboneProfile) -> str:
    """Parameters the model runs at inference (backbone + head), in millions."""
    cost = b.sustainability or {}
    if cost.get("backbone_params") is None:
        return MISSING
    return f"{(cost['backbone_params'] + cost['head_params']) / 1e6:.2f} M"


def _csv(b: BackboneProfile) -> CsvColumns:
    cost = b.sustainability or {}
    return CsvColumns(
        values={
            "gmacs": b.raw.get(_NAME),
            "backbone_params": cost.get("backbone_params"),
            "head_params": cost.get("head_params"),
            "latency_ms": cost.get("latency_ms"),
            "throughput_clips_per_s": cost.get("throughput_clips_per_s"),
        },
        bounds={"latency_ms": "latency_ms"},
    )


def _latency_text(b: BackboneProfile) -> str:
    return interval_text(
        b, "latency_ms", (b.sustainability or {}).get("latency_ms"), as_percent=False
    )


def _markdown(_profile: Profile) -> list[Column]:
    return [
        Column("GMAC", inference_gmacs),
        Column("params (backbone + head)", lambda b: _params(b, 0)),
        Column("latency ms", _latency_text),
    ]


def _giga(value: float | None, digits: int = 2) -> str:
    return number(value / 1e9 if value is not None else None, digits)


def _section_row(b: BackboneProfile) -> list[str]:
    c = b.sustainability or {}
    return [
        b.name,
        _params(b, 1),
        number(b.raw.get(_NAME)),
        _giga(c.get("attention_macs"), 3),
        _giga(c.get("torch_flops")),
        _latency_text(b),
        number(c.get("throughput_clips_per_s"), 1),
        str(c.get("device") or MISSING),
    ]


def _section(profile: Profile) -> str:
    header = [
        "backbone",
        "params (backbone + head)",
        "GMAC / 6 s",
        "attention GMAC",
        "GFLOPs (torch)",
        "latency ms (batch 1)",
        "throughput clips/s",
        "device",
    ]
    return html_table(header, [_section_row(b) for b in profile.backbones]) + (
        '<p class="note">MACs counted by fvcore with eager attention (1 MAC = one multiply–add, '
        "≈ 2 FLOPs); GFLOPs by torch's FlopCounterMode on the same model. Latency and throughput "
        "are measured with the default attention kernel on the device named.</p>"
    )


AXIS = Axis(
    name=_NAME,
    title="Sustainability",
    metric="GMACs per clip",
    short="GMACs",
    higher_is_better=False,
    collect=_collect,
    command=_command,
    unit="GMAC",
    log=True,
    counted=True,
    paper_key="gmacs",
    absolute=AbsoluteEnds(1000.0, 0.1, "log10 GMAC 1000 → 0.1"),
    own_field=True,
    bootstrap=_bootstrap,
    combine=_combine,
    csv=_csv,
    markdown=_markdown,
    section=Section("Sustainability", _section),
    aliases=("sust", "cost", "efficiency"),
)
