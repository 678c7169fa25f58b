"""The corpus registry: name → module with ``prepare(root, out=None, ...) -> Manifest``.

Modules are imported on first use, so listing corpora scans nothing and imports nothing heavy.
Names are matched case-insensitively with ``-`` and ``_`` alike (``CREMA-D`` → ``crema_d``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from trustser._validation import TrustSERError
from trustser.manifest import Manifest

__all__ = [
    "CORPORA",
    "CORPUS_API",
    "CorpusInfo",
    "UnknownCorpusError",
    "corpus_info",
    "corpus_module",
    "list_corpora",
    "prepare_corpus",
]

# What every corpus module exports: corpus_info reads the constants, and the module's prepare
# is built by trustser.corpora._common.make_prepare from NAME, FOLD_SCHEME and VERSION.
CORPUS_API: tuple[str, ...] = (
    "FOLD_SCHEME",
    "LABELS",
    "NAME",
    "NUM_FOLDS",
    "SOURCE",
    "VERSION",
    "prepare",
)
CORPORA: dict[str, str] = {
    "iemocap": "trustser.corpora.iemocap",
    "crema_d": "trustser.corpora.crema_d",
    "msp_improv": "trustser.corpora.msp_improv",
    "msp_podcast": "trustser.corpora.msp_podcast",
    "ravdess": "trustser.corpora.ravdess",
    "emodb": "trustser.corpora.emodb",
}
# Listed only when its module is installed (the synthetic espeak-ng demo corpus).
_OPTIONAL: dict[str, str] = {"synth": "trustser.corpora.synth"}
_ALIASES: dict[str, str] = {
    "cremad": "crema_d",
    "mspimprov": "msp_improv",
    "msppodcast": "msp_podcast",
}


class UnknownCorpusError(TrustSERError, KeyError):
    """A corpus name the registry does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _available() -> dict[str, str]:
    found = dict(CORPORA)
    for name, module in _OPTIONAL.items():
        if importlib.util.find_spec(module) is not None:
            found[name] = module
    return found


def list_corpora() -> list[str]:
    """Registered corpus names (``synth`` included when its module exists)."""
    return list(_available())


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    return _ALIASES.get(key.replace("_", ""), key)


def corpus_module(name: str) -> ModuleType:
    """The module of corpus ``name``; raises :class:`UnknownCorpusError` listing the choices."""
    available = _available()
    key = _canonical(name)
    if key not in available:
        raise UnknownCorpusError(
            f"unknown corpus {name!r}; choose one of {', '.join(available)} "
            "(or write a manifest by hand, see docs/manifest.md)."
        )
    return importlib.import_module(available[key])


@dataclass(frozen=True)
class CorpusInfo:
    """What ``trustser data corpora`` lists about one corpus."""

    name: str
    num_folds: int | None
    fold_scheme: str
    labels: tuple[str, ...]  # the manifest's emotion classes
    source: str


def corpus_info(name: str) -> CorpusInfo:
    """Facts about a corpus from its module's constants (no corpus files are read)."""
    module = corpus_module(name)
    labels = getattr(module, "LABELS", {})
    classes = tuple(dict.fromkeys(labels.values())) if isinstance(labels, dict) else tuple(labels)
    return CorpusInfo(
        name=getattr(module, "NAME", _canonical(name)),
        num_folds=getattr(module, "NUM_FOLDS", None),
        fold_scheme=getattr(module, "FOLD_SCHEME", ""),
        labels=classes,
        source=getattr(module, "SOURCE", ""),
    )


def prepare_corpus(
    name: str,
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    skip_unreadable: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Manifest:
    """Prepare corpus ``name`` from its official layout under ``root``; write ``out`` if given.

    An existing ``out`` of the same corpus and root is reused unless ``overwrite``; anything
    else already at ``out`` raises instead of being replaced. ``skip_unreadable`` leaves out
    files that cannot be read (listed in the manifest's ``skipped``) instead of failing.
    ``progress(done, total)`` is called after each file header read.
    """
    module = corpus_module(name)
    options = {
        "overwrite": overwrite,
        "skip_unreadable": skip_unreadable,
        "progress": progress,
    }
    accepted = inspect.signature(module.prepare).parameters
    kwargs = {k: v for k, v in options.items() if k in accepted}
    # progress is cosmetic and silently dropped; the others change the result.
    unsupported = [k for k, v in options.items() if k not in accepted and v and k != "progress"]
    if unsupported:
        raise TrustSERError(
            f"corpus {name!r} does not support {', '.join(unsupported)}; leave those options out."
        )
    return module.prepare(root, out, **kwargs)
