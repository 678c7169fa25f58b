"""File-system primitives behind the store's durability rules (docs/store-format.md §8).

A unit record may only appear after the unit's data is on disk; metadata documents appear whole
or not at all. These helpers give exactly that on POSIX file systems: ``fsync`` of files and
directories, create-if-absent via ``link(2)``, replace via ``rename(2)``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import Any

__all__ = [
    "boot_id",
    "create_json_exclusive",
    "fsync_chain",
    "fsync_dir",
    "fsync_file",
    "hostname",
    "make_dirs",
    "pid_alive",
    "process_start_ticks",
    "remove_partials",
    "remove_tree",
    "write_bytes_atomic",
    "write_json_atomic",
]


def hostname() -> str:
    return socket.gethostname() or "localhost"


def boot_id() -> str | None:
    """This boot of this machine (Linux); tells a reboot from a live host of the same name."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def process_start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux), or None if unknown.

    A pid alive with another start time is a different process that reused the number.
    """
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after its ")"
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (used to clean stale temp files)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a file's data to stable storage; a missing file is fine (empty chunk)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Make renames and new entries in a directory durable."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories; data is still synced
        pass
    finally:
        os.close(fd)


def fsync_chain(leaf: str | os.PathLike, top: str | os.PathLike) -> None:
    """``fsync`` ``leaf`` and every directory above it up to and including ``top``.

    After a library (zarr) created nested directories for a file, this makes each new entry
    durable in its parent.
    """
    leaf, top = Path(leaf), Path(top)
    current = leaf
    while True:
        fsync_dir(current)
        if current == top or current.parent == current:
            return
        current = current.parent


def make_dirs(path: str | os.PathLike, *, durable: bool = True) -> Path:
    """``mkdir -p`` that ``fsync``-s the parent of every directory it creates."""
    path = Path(path)
    missing = []
    current = path
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue  # a concurrent writer made it (and syncs its parent)
        if durable:
            fsync_dir(directory.parent)
    return path


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def _write_temp(path: Path, data: bytes, durable: bool) -> Path:
    make_dirs(path.parent, durable=durable)
    tmp = _temp_name(path)
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        if durable:
            os.fsync(handle.fileno())
    return tmp


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> Path:
    """Replace ``path`` with ``data``: readers see the old or the new content, never a mix."""
    path = Path(path)
    tmp = _write_temp(path, data, durable)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def _dumps(document: Any) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")


def write_json_atomic(path: str | os.PathLike, document: Any, *, durable: bool = True) -> Path:
    return write_bytes_atomic(path, _dumps(document), durable=durable)


def create_json_exclusive(path: str | os.PathLike, document: Any, *, durable: bool = True) -> bool:
    """Create ``path`` with ``document`` unless it exists; True if this call created it.

    ``link(2)`` of a complete temporary file fails when the target exists, so of several
    concurrent writers exactly one wins and nobody sees a half-written document.
    """
    path = Path(path)
    tmp = _write_temp(path, _dumps(document), durable)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        fsync_dir(path.parent)
    return True


def remove_tree(path: str | os.PathLike) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)


def remove_partials(directory: str | os.PathLike) -> None:
    """Delete temporary files an interrupted writer left in ``directory`` (zarr's ``*.partial``)."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.name.endswith((".partial", ".tmp")) and entry.is_file():
            entry.unlink(missing_ok=True)
