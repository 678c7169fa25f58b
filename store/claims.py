"""Unit ownership: a writer claims a unit, atomically, before it computes or clears it.

Zarr rewrites a shard whole, so two writers on one unit can delete each other's data (the same
command started twice, an overlapping requeue, two processes given one rank). A claim makes
ownership explicit (docs/store-format.md §8):

- ``part-<hash>/claims/<k>-<g>.json`` names the owner of unit ``k``: host, boot id, pid, the
  pid's start time, when the writer started and when it claimed, and a random token.
- A writer claims by creating the file of the next generation ``g`` exclusively (``link(2)`` of
  a complete temporary file: it fails when the file exists, like ``O_EXCL``, and nobody ever
  reads half a claim). Of several writers exactly one creates it.
- The highest generation owns the unit. A stale owner is replaced by creating generation
  ``g + 1``, never by deleting its file, so two writers breaking one stale claim cannot both win.
- The owner writes the unit, records it done, then removes its claim files.

When is a claim stale? On the same host (same name and boot id) when its pid is gone or now
belongs to a process with another start time; a claim of the same host name under another boot
id is stale too (the machine rebooted). A claim from another host is never judged stale
automatically: a pid cannot be checked across machines, and file ages on shared file systems
depend on clocks and attribute caches the writer does not control; it is broken only when the
caller asks (``trustser extract --break-claims``), after making sure its owner no longer runs.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustser.store._fs import (
    boot_id,
    create_json_exclusive,
    fsync_dir,
    hostname,
    make_dirs,
    pid_alive,
    process_start_ticks,
)
from trustser.store.format import utc_now

__all__ = [
    "CLAIMS_DIR",
    "Claim",
    "Owner",
    "claim_unit",
    "read_claims",
    "release_claim",
    "still_owner",
]

CLAIMS_DIR = "claims"
_CLAIM_FILE = re.compile(r"^(\d+)-(\d+)\.json$")


@dataclass(frozen=True)
class Owner:
    """Who this writer is, as its claims record it."""

    host: str
    boot_id: str | None
    pid: int
    pid_start: int | None
    started: str
    rank: int = 0
    world_size: int = 1

    @classmethod
    def current(cls, *, rank: int = 0, world_size: int = 1) -> Owner:
        pid = os.getpid()
        return cls(
            host=hostname(),
            boot_id=boot_id(),
            pid=pid,
            pid_start=process_start_ticks(pid),
            started=utc_now(),
            rank=int(rank),
            world_size=int(world_size),
        )


@dataclass(frozen=True)
class Claim:
    """One claim file of a unit, as read back."""

    path: Path
    unit: int
    generation: int
    document: dict[str, Any]

    @property
    def token(self) -> str | None:
        return self.document.get("token")

    def owner(self) -> str:
        """``host pid N``: who holds the claim."""
        d = self.document
        return f"{d.get('host', '?')} pid {d.get('pid', '?')}" if d else "an unreadable claim"

    def foreign(self) -> bool:
        """Whether the claim comes from another host (or cannot be read)."""
        return self.document.get("host") != hostname()

    def describe(self) -> str:
        d = self.document
        if not d:
            return f"an unreadable claim ({self.path.name})"
        return f"{d.get('host', '?')} pid {d.get('pid', '?')} since {d.get('claimed', '?')}"

    def stale(self, *, break_foreign: bool = False) -> bool:
        """Whether this claim's owner is certainly gone (see the module docstring)."""
        d = self.document
        if d.get("host") != hostname():
            return break_foreign
        mine = boot_id()
        if d.get("boot_id") and mine and d["boot_id"] != mine:
            return True  # the same machine, rebooted since: every process of that boot is gone
        try:
            pid = int(d["pid"])
        except (KeyError, TypeError, ValueError):
            return break_foreign
        if not pid_alive(pid):
            return True
        recorded = d.get("pid_start")
        now = process_start_ticks(pid)
        return recorded is not None and now is not None and int(recorded) != now


def _claims_dir(part_path: Path) -> Path:
    return Path(part_path) / CLAIMS_DIR


def _read(path: Path, unit: int, generation: int) -> Claim:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError):
        document = {}
    if not isinstance(document, dict):
        document = {}
    return Claim(path=path, unit=unit, generation=generation, document=document)


def read_claims(part_path: str | os.PathLike, unit: int | None = None) -> dict[int, list[Claim]]:
    """``{unit: [claims, lowest generation first]}`` of a part (or of one ``unit``)."""
    directory = _claims_dir(Path(part_path))
    found: dict[int, list[Claim]] = {}
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return found
    for name in names:
        match = _CLAIM_FILE.match(name)
        if match is None:
            continue
        k, generation = int(match[1]), int(match[2])
        if unit is not None and k != unit:
            continue
        try:
            found.setdefault(k, []).append(_read(directory / name, k, generation))
        except FileNotFoundError:  # released while we listed
            continue
    for claims in found.values():
        claims.sort(key=lambda c: c.generation)
    return found


def claim_unit(
    part_path: str | os.PathLike,
    unit: int,
    owner: Owner,
    *,
    break_foreign: bool = False,
    durable: bool = True,
) -> tuple[Claim | None, Claim | None]:
    """Try to own ``unit``: ``(my claim, None)`` on success, ``(None, the owner's claim)`` if a
    live writer (or one this call may not judge) holds it."""
    part_path = Path(part_path)
    directory = make_dirs(_claims_dir(part_path), durable=durable)
    for _ in range(8):  # only lost races repeat
        claims = read_claims(part_path, unit).get(unit, [])
        top = claims[-1] if claims else None
        if top is not None and not top.stale(break_foreign=break_foreign):
            return None, top
        generation = top.generation + 1 if top is not None else 1
        document = {
            "unit": int(unit),
            "generation": generation,
            "host": owner.host,
            "boot_id": owner.boot_id,
            "pid": owner.pid,
            "pid_start": owner.pid_start,
            "started": owner.started,
            "claimed": utc_now(),
            "rank": owner.rank,
            "world_size": owner.world_size,
            "token": uuid.uuid4().hex,
            "replaces": top.describe() if top is not None else None,
        }
        path = directory / f"{unit}-{generation}.json"
        if create_json_exclusive(path, document, durable=durable):
            return Claim(path=path, unit=int(unit), generation=generation, document=document), None
        # Another writer created this generation first; look again (it is probably alive).
    claims = read_claims(part_path, unit).get(unit, [])
    return None, (claims[-1] if claims else None)


def still_owner(claim: Claim) -> bool:
    """True while ``claim`` is the unit's highest generation and still holds our token."""
    claims = read_claims(claim.path.parent.parent, claim.unit).get(claim.unit, [])
    return bool(claims) and claims[-1].path == claim.path and claims[-1].token == claim.token


def release_claim(claim: Claim, *, durable: bool = True) -> None:
    """Remove ``claim`` and the stale generations below it (after the unit's record is written,
    or when the writer gives the unit up)."""
    for other in read_claims(claim.path.parent.parent, claim.unit).get(claim.unit, []):
        if other.generation <= claim.generation:
            other.path.unlink(missing_ok=True)
    if durable:
        fsync_dir(claim.path.parent)
