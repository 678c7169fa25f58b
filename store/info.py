"""What a store holds, per backbone group: counts, sizes, provenance and skipped clips."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trustser.store.format import StoreError
from trustser.store.reader import open_store

__all__ = ["GroupInfo", "store_info"]


@dataclass(frozen=True)
class GroupInfo:
    """One group's summary (``summary``), full provenance, skipped clips with reasons and
    flagged clips with their flags."""

    summary: dict[str, Any]
    provenance: dict[str, Any]
    skipped: dict[str, str]
    flagged: dict[str, list[str]]


def store_info(
    path: str | os.PathLike, *, backbones: Sequence[str] | None = None
) -> list[GroupInfo]:
    """Summaries of the named groups (default: every group in the store)."""
    store = open_store(path)
    names = list(backbones) if backbones else store.backbones
    if not names:
        raise StoreError(f"store {path} has no backbone groups yet; run `trustser extract` first.")
    out = []
    for name in names:
        group = store.group(name)
        out.append(
            GroupInfo(
                summary=group.summary(),
                provenance=dict(group.provenance),
                skipped=group.skipped,
                flagged=group.flags,
            )
        )
    return out
