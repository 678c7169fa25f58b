"""Shared input checks, so every error says what came in and what to do about it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "TrustSERError",
    "check_choice",
    "check_existing_dir",
    "check_fitted",
    "check_positive",
    "check_probability",
    "format_rows",
    "safe_name",
    "select_names",
    "sole_name",
]


class TrustSERError(Exception):
    """Base class for errors caused by bad input, shown to users without a traceback."""


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``; otherwise raise naming both."""
    allowed = tuple(allowed)
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name}={value!r} is not supported; choose one of {options}.")
    return value


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Reject non-positive numbers (and NaN) with the parameter's name."""
    ok = value >= 0 if allow_zero else value > 0
    if not ok or value != value:  # NaN fails every comparison
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}.")
    return value


def check_probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}.")
    return value


def check_fitted(estimator: Any, attributes: Sequence[str]) -> None:
    """Raise if ``fit`` has not set the learned ``*_`` attributes (sklearn's contract)."""
    missing = [a for a in attributes if not hasattr(estimator, a)]
    if missing:
        raise RuntimeError(
            f"This {type(estimator).__name__} is not fitted yet (missing {', '.join(missing)}); "
            "call fit() before using it."
        )


def check_existing_dir(name: str, path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{name}: directory {str(path)!r} does not exist.")
    return path


def safe_name(name: str) -> str:
    """A directory name for a backbone spec or label (``hf:/models/x`` → ``hf-models-x``).

    Store groups and the results layout both name directories after backbone specs, so both
    take the name from here.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    if not safe:
        raise ValueError(f"cannot make a directory name from backbone {name!r}")
    return safe


def format_rows(rows: Sequence[str], *, limit: int = 5) -> str:
    """The first ``limit`` offending rows, one per line, plus how many more there are."""
    shown = [f"  - {r}" for r in rows[:limit]]
    if len(rows) > limit:
        shown.append(f"  ... and {len(rows) - limit} more")
    return "\n".join(shown)


def select_names(
    requested: str | Sequence[Any] | None,
    names: Sequence[str],
    *,
    what: str = "fold",
    context: str = "",
    error: type[Exception] = ValueError,
) -> list[str]:
    """The ``names`` picked by ``requested``: names or 1-based indexes (``"1,fold3"`` or a list).

    Order of ``requested`` kept, repeats dropped. ``None``, or nothing but commas and blanks,
    picks nothing (``[]``): the caller's default applies, usually every name. An item that is
    neither raises ``error``: "``{what} '9' does not exist{context}; use a name ... or a 1-based
    index 1..N``".
    """
    if requested is None:
        return []
    items = requested.split(",") if isinstance(requested, str) else list(requested)
    chosen: list[str] = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        if item in names:
            name = item
        elif item.isdigit() and 1 <= int(item) <= len(names):
            name = names[int(item) - 1]
        else:
            raise error(
                f"{what} {item!r} does not exist{context}; use a name ({', '.join(names)}) or a "
                f"1-based index 1..{len(names)}."
            )
        if name not in chosen:
            chosen.append(name)
    return chosen


def sole_name(
    names: Sequence[str],
    *,
    what: str,
    where: str,
    option: str,
    error: type[Exception] = ValueError,
) -> str:
    """The only entry of ``names``, for an ``option`` left out; else ``error`` listing them all.

    ``what`` is the plural noun (``"backbones"``), ``where`` what holds them
    (``"store 'x.zarr'"``).
    """
    if len(names) != 1:
        listed = ", ".join(names) or "none"
        raise error(f"{where} holds {len(names)} {what} ({listed}); choose one with {option}.")
    return names[0]
