"""The text of a profile's cells, shared by the axes and the renderers: a figure with its
interval, a score with its interval, and HTML tables."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from trustser.formatting import MISSING, number, percent
from trustser.profile.model import BackboneProfile

__all__ = [
    "NOT_DEFINED",
    "NOT_MEASURABLE",
    "escape",
    "html_table",
    "interval_text",
    "score_text",
    "unmeasured",
]

NOT_DEFINED = "n/a"  # a fold-level figure no fold defines (e.g. every fold tests one gender)
NOT_MEASURABLE = "not measurable"  # an axis the row's corpus cannot measure (one gender ...)


def unmeasured(b: BackboneProfile, axis: str) -> str | None:
    """``"not measurable: <reason>"`` when the row's corpus cannot measure ``axis`` (one
    gender, no gender labels ...), else None."""
    reason = (b.not_measurable or {}).get(axis)
    return None if reason is None else f"{NOT_MEASURABLE}: {reason}"


def interval_text(
    b: BackboneProfile,
    key: str,
    value: float | None = None,
    *,
    spread: float | None = None,
    missing: str = MISSING,
    digits: int = 1,
    as_percent: bool = True,
) -> str:
    """``88.8 [85.4, 93.3]``: the figure with its 95 % interval (``intervals[key]``), or the
    figure alone (with ``± spread`` when given) where it has none."""
    found = (b.intervals or {}).get(key) or {}
    if value is None:
        value = found.get("value")

    def shown(x: float | None) -> str:
        if as_percent:
            return percent(x, digits=digits, missing=missing)
        return number(x, digits, missing=missing)

    low, high = found.get("low"), found.get("high")
    if value is None:
        return missing
    if low is None or high is None:
        if high is not None:  # latency from an older cost.json: median and p90 only
            return f"{shown(value)} (p90 {shown(high)})"
        return percent(value, spread, digits=digits) if as_percent else shown(value)
    if low == high == value:
        return shown(value)  # exact
    return f"{shown(value)} [{shown(low)}, {shown(high)}]"


def score_text(b: BackboneProfile, axis: str) -> str:
    """``0.83 [0.15, 1.00]``: an axis score with the scores of its raw interval's ends
    (``not measurable`` when the row's corpus cannot measure the axis)."""
    if axis in (b.not_measurable or {}) and b.scores.get(axis) is None:
        return NOT_MEASURABLE
    found = (b.score_intervals or {}).get(axis)
    text = number(b.scores.get(axis))
    if found and b.scores.get(axis) is not None and found[0] != found[1]:
        text += f" [{number(found[0])}, {number(found[1])}]"
    return text


def escape(value: Any) -> str:
    """``value`` as HTML text (quotes escaped too)."""
    return html.escape(str(value), quote=True)


def html_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, raw_last: bool = False
) -> str:
    """An HTML table of text cells; with ``raw_last`` each row's last cell is HTML already."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = [f"<td>{escape(c)}</td>" for c in row]
        if raw_last:
            cells[-1] = f'<td class="reasons">{row[-1]}</td>'
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
