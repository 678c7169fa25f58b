"""The working directory's convention: where the manifest, the store and the results live.

Bare commands do the whole job in one directory::

    trustser data prepare emodb /data/emodb     # writes ./manifest.jsonl
    trustser extract --backbone whisper_small   # reads it, writes ./cache.zarr
    trustser heads fit                          # every task, every group of the store → ./runs
    trustser attack --snr 45                    # every backbone with emotion heads
    trustser profile                            # everything → ./report

Each path comes from, in this order: the command-line flag; the ``[workspace]`` table of a
``trustser.toml`` in the current directory (keys ``manifest``, ``store``, ``runs``; relative paths
are relative to that directory); the built-in default (``manifest.jsonl``, ``cache.zarr``,
``runs``). :func:`stage_backbones` and :func:`attack_backbones` say which backbones a bare
``heads fit`` / ``cost`` and ``attack`` work on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trustser._toml import tomllib
from trustser._validation import TrustSERError
from trustser.runs import DEFAULT_RUNS, RunLayout

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_MANIFEST",
    "DEFAULT_RUNS",
    "DEFAULT_STORE",
    "KEYS",
    "Workspace",
    "WorkspaceError",
    "attack_backbones",
    "load_workspace",
    "stage_backbones",
    "store_window",
]

CONFIG_FILE = "trustser.toml"
DEFAULT_MANIFEST = "manifest.jsonl"
DEFAULT_STORE = "cache.zarr"
KEYS = ("manifest", "store", "runs")
_DEFAULTS = {"manifest": DEFAULT_MANIFEST, "store": DEFAULT_STORE, "runs": DEFAULT_RUNS}


class WorkspaceError(TrustSERError, ValueError):
    """A workspace that cannot be used as asked: a bad trustser.toml, or nothing to work on."""


@dataclass(frozen=True)
class Workspace:
    """The three paths of one working directory and where each came from.

    ``origin[key]`` is ``"trustser.toml"`` or ``"default"``; :meth:`resolve` adds ``"flag"``.
    """

    directory: Path
    manifest: Path
    store: Path
    runs: Path
    config: Path | None = None
    origin: dict[str, str] = field(default_factory=dict)

    def resolve(self, key: str, flag: str | os.PathLike | None) -> Path:
        """``flag`` when given (flag > trustser.toml > default), else the workspace's path."""
        if key not in KEYS:
            raise ValueError(f"key={key!r} is not one of {', '.join(KEYS)}")
        return Path(flag) if flag is not None else getattr(self, key)

    def describe(self, key: str) -> str:
        """``'cache.zarr' (default)`` or ``'data/cache.zarr' (trustser.toml)``, for messages."""
        return f"{str(getattr(self, key))!r} ({self.origin.get(key, 'default')})"


def load_workspace(directory: str | os.PathLike | None = None) -> Workspace:
    """The workspace of ``directory`` (default: the current directory).

    Reads ``directory/trustser.toml`` when present; only its ``[workspace]`` table is read and an
    unknown key there is an error (a misspelt key would otherwise be ignored silently).
    """
    base = Path(directory) if directory is not None else Path()
    paths = {key: Path(value) for key, value in _DEFAULTS.items()}
    if directory is not None:
        paths = {key: base / value for key, value in paths.items()}
    origin = dict.fromkeys(KEYS, "default")
    config = base / CONFIG_FILE
    if not config.is_file():
        return Workspace(base, **paths, config=None, origin=origin)
    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise WorkspaceError(f"{config}: not valid TOML ({error}).") from None
    table = data.get("workspace", {})
    if not isinstance(table, dict):
        raise WorkspaceError(f"{config}: [workspace] must be a table of {', '.join(KEYS)}.")
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise WorkspaceError(
            f"{config}: unknown key(s) {unknown} in [workspace]; known: {', '.join(KEYS)}."
        )
    for key, value in table.items():
        if not isinstance(value, str) or not value:
            raise WorkspaceError(f"{config}: [workspace] {key} must be a path (a string).")
        path = Path(value).expanduser()
        paths[key] = path if path.is_absolute() or directory is None else base / path
        origin[key] = CONFIG_FILE
    return Workspace(base, **paths, config=config, origin=origin)


def _store_groups(store: Path) -> list[str]:
    from trustser.store import open_store

    if not store.exists():
        raise WorkspaceError(
            f"no embedding store at {str(store)!r}; run `trustser extract --backbone NAME` "
            "first, or pass --store."
        )
    names = list(open_store(store).backbones)
    if not names:
        raise WorkspaceError(
            f"store {str(store)!r} holds no backbone yet; run `trustser extract --backbone NAME`."
        )
    return names


def stage_backbones(store: str | os.PathLike, backbones: Sequence[str] | None) -> list[str]:
    """The backbones a stage works on: ``backbones`` when given, else every group of ``store``."""
    if backbones:
        return list(dict.fromkeys(backbones))
    return _store_groups(Path(store))


def attack_backbones(
    store: str | os.PathLike, runs: str | os.PathLike, backbones: Sequence[str] | None
) -> list[str]:
    """``backbones`` when given, else every group of ``store`` with trained emotion heads in
    ``runs`` (a fold directory holding ``head.safetensors``)."""
    if backbones:
        return list(dict.fromkeys(backbones))
    layout = RunLayout(Path(runs))
    groups = _store_groups(Path(store))
    ready = [g for g in groups if any(layout.head_dir(g, "emotion").glob("*/head.safetensors"))]
    if not ready:
        raise WorkspaceError(
            f"no backbone of store {str(store)!r} has trained emotion heads under {str(runs)!r} "
            f"(groups: {', '.join(groups)}); run `trustser heads fit` first."
        )
    return ready


def store_window(store: str | os.PathLike | None, backbone: str) -> str | None:
    """The Whisper window (``trimmed`` / ``30s``) ``backbone`` was extracted with in ``store``;
    ``None`` when there is no such store or group, or the backbone has no window."""
    from trustser.store import open_store

    if store is None or not Path(store).exists():
        return None
    opened = open_store(store)
    if backbone not in opened.backbones:
        return None
    window = opened.group(backbone).provenance.get("window")
    return str(window) if window else None
