"""How figures are written for people: one percent format for tables, reports and summaries.

Every percentage the toolkit prints goes through :func:`percent`, so a table, the HTML report and
a command's summary never disagree on digits, the spread sign or how a missing value looks.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["MISSING", "number", "percent"]

MISSING = "–"  # a value that was not measured (or is undefined)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def percent(
    value: float | None,
    spread: float | None = None,
    *,
    digits: int = 1,
    unit: bool = False,
    missing: str = MISSING,
) -> str:
    """``0.888, 0.025`` → ``"88.8 ± 2.5"`` (``unit=True`` appends ``" %"``).

    ``value`` and ``spread`` are fractions; a missing value (None or NaN) prints ``missing``, a
    missing spread prints the value alone.
    """
    if _is_missing(value):
        return missing
    text = f"{100 * float(value):.{digits}f}"
    if not _is_missing(spread):
        text = f"{text} ± {100 * float(spread):.{digits}f}"
    return f"{text} %" if unit else text


def number(value: float | None, digits: int = 2, *, missing: str = MISSING) -> str:
    """A plain number with ``digits`` decimals, or ``missing``."""
    return missing if _is_missing(value) else f"{float(value):.{digits}f}"
