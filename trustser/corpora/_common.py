"""What every corpus module shares: manifest reuse, header probing, fold building, writing.

A corpus module declares the constants of :data:`trustser.corpora.CORPUS_API` (its name,
labels, folds, fold scheme, version and source), scans its official layout into *candidate* utterances (labels,
speakers, genders, paths) and builds its ``prepare`` with :func:`make_prepare`, which reuses an
existing manifest, scans, and hands the candidates to :func:`assemble`: that reads each file's
header, leaves out or reports unreadable files, builds the folds from the speakers that remain,
validates and writes. Modules therefore differ only in how they read their corpus.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from trustser._validation import TrustSERError, format_rows
from trustser.audio import AudioError, audio_info
from trustser.manifest import (
    Fold,
    Manifest,
    ManifestError,
    Utterance,
    read_manifest,
    validate,
    write_manifest,
)

__all__ = [
    "PLACEHOLDER_DURATION",
    "CorpusLayoutError",
    "ProgressCallback",
    "UnreadableAudioWarning",
    "assemble",
    "find_file",
    "make_prepare",
    "require_dir",
    "reuse_existing",
    "with_audio_headers",
]

# Candidates carry this until their header is read; it never reaches a written manifest.
PLACEHOLDER_DURATION = 0.0

# ``progress(done, total)``: called after each file, so a front end can draw a bar.
ProgressCallback = Callable[[int, int], None]

# A corpus's folds: fixed by the corpus (sessions, its own split), or built from the speakers
# of the utterances that could be read.
FoldSource = tuple[Fold, ...] | Callable[[list[Utterance]], tuple[Fold, ...]]


class CorpusLayoutError(TrustSERError, FileNotFoundError):
    """The corpus root does not look like the official distribution."""


class UnreadableAudioWarning(UserWarning):
    """Files were left out of a manifest because they could not be read (``skip_unreadable``)."""


def require_dir(root: Path, relative: str, corpus: str, hint: str) -> Path:
    """``root / relative`` if it is a directory; else a layout error naming it and the fix."""
    path = root / relative
    if not path.is_dir():
        raise CorpusLayoutError(
            f"{corpus}: expected the directory {str(path)!r} of the official distribution; {hint}"
        )
    return path


def find_file(root: Path, candidates: Sequence[str], corpus: str, hint: str) -> Path:
    """The first of ``candidates`` (relative to ``root``) that exists; else a layout error."""
    for relative in candidates:
        path = root / relative
        if path.is_file():
            return path
    names = " or ".join(repr(str(root / c)) for c in candidates)
    raise CorpusLayoutError(
        f"{corpus}: expected the file {names} of the official distribution; {hint}"
    )


def with_audio_headers(
    utterances: Iterable[Utterance],
    *,
    corpus: str,
    skip_unreadable: bool = False,
    progress: ProgressCallback | None = None,
) -> tuple[list[Utterance], list[tuple[str, str]]]:
    """Fill duration, sample rate and frame count from each file's header (no decoding).

    Returns ``(readable, skipped)``. Unreadable files raise one error listing them all, so a
    bad corpus fails before extraction, unless ``skip_unreadable`` is set: then they are
    returned as ``(id, reason)`` pairs and reported with an :class:`UnreadableAudioWarning`.
    Files whose data chunk is cut short are kept (their real length is used) and warned about.
    ``progress(done, total)`` is called after each header.
    """
    out: list[Utterance] = []
    bad: list[tuple[str, str]] = []
    truncated: list[str] = []
    items = list(utterances)
    for done, u in enumerate(items, start=1):
        try:
            info = audio_info(u.path)
        except AudioError as error:
            bad.append((u.id, f"{error.reason} ({u.path})"))
            continue
        finally:
            if progress is not None:
                progress(done, len(items))
        if info.truncated:
            truncated.append(f"{u.id}: {u.path}")
        out.append(
            replace(
                u,
                duration=round(info.duration, 6),
                sample_rate=info.sample_rate,
                num_frames=info.num_frames,
            )
        )
    rows = [f"{i}: {reason}" for i, reason in bad]
    if bad and not skip_unreadable:
        raise ManifestError(
            f"{corpus}: {len(bad)} audio file(s) cannot be read:\n{format_rows(rows)}\n"
            "Remove or repair them, or leave them out with skip_unreadable=True "
            "(`--skip-unreadable`)."
        )
    if bad:
        warnings.warn(
            f"{corpus}: left out {len(bad)} unreadable audio file(s):\n{format_rows(rows)}",
            UnreadableAudioWarning,
            stacklevel=3,
        )
    if truncated:
        warnings.warn(
            f"{corpus}: {len(truncated)} file(s) are truncated (data chunk cut short); only the "
            f"audio present is used:\n{format_rows(truncated)}",
            UserWarning,
            stacklevel=3,
        )
    return out, bad


def reuse_existing(
    out: str | os.PathLike | None,
    corpus: str,
    *,
    root: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Manifest | None:
    """The manifest already at ``out`` when it is a valid one of this corpus (and ``root``).

    ``None`` when there is nothing to reuse (no ``out``, no file, or ``overwrite``). A file that
    is invalid, of another corpus or prepared from another root is never silently replaced:
    that raises, asking for ``overwrite=True``. ``root=None`` skips the root comparison.
    """
    if out is None or overwrite or not Path(out).exists():
        return None
    fix = "pass overwrite=True (`--overwrite`) to rebuild it, or choose another output"
    try:
        manifest = read_manifest(out)
    except ManifestError as error:
        raise ManifestError(
            f"{str(out)!r} exists but cannot be reused; {fix}. What is wrong with it:\n{error}"
        ) from None
    if manifest.corpus != corpus:
        raise ManifestError(
            f"{str(out)!r} holds a manifest of corpus {manifest.corpus!r}, not {corpus!r}; {fix}."
        )
    wanted = str(Path(root).resolve()) if root is not None else ""
    if wanted and manifest.root and manifest.root != wanted:
        raise ManifestError(
            f"{str(out)!r} was prepared from {manifest.root!r}, not {wanted!r}; {fix}."
        )
    return manifest


def assemble(
    *,
    corpus: str,
    root: Path,
    candidates: Iterable[Utterance],
    folds: FoldSource,
    fold_scheme: str,
    version: str,
    out: str | os.PathLike | None,
    skip_unreadable: bool = False,
    progress: ProgressCallback | None = None,
) -> Manifest:
    """Headers → folds → validate → write: the end of every corpus's ``prepare``."""
    candidates = list(candidates)
    if not candidates:
        raise CorpusLayoutError(
            f"{corpus}: no usable utterances were found under {str(root)!r}; check that the root "
            "points at the corpus as distributed (see docs/corpora.md)."
        )
    readable, skipped = with_audio_headers(
        candidates, corpus=corpus, skip_unreadable=skip_unreadable, progress=progress
    )
    if not readable:
        raise CorpusLayoutError(f"{corpus}: none of the {len(candidates)} audio files can be read.")
    ordered = sorted(readable, key=lambda u: u.id)
    try:
        built = folds(ordered) if callable(folds) else tuple(folds)
    except ValueError as error:  # too few speakers/sessions left for the fold scheme
        raise ManifestError(f"{corpus}: cannot build the folds ({fold_scheme}): {error}.") from None
    manifest = Manifest(
        corpus=corpus,
        utterances=tuple(ordered),
        folds=built,
        fold_scheme=fold_scheme,
        version=version,
        root=str(root.resolve()),
        skipped=tuple(sorted(skipped)),
    )
    validate(manifest)
    if out is not None:
        write_manifest(manifest, out)
    return manifest


def make_prepare(
    scan: Callable[[Path], Iterable[Utterance]],
    folds: FoldSource,
    *,
    doc: str,
) -> Callable[..., Manifest]:
    """The ``prepare(root, out=None, ...)`` of a corpus read from its official layout.

    ``scan(root)`` is all a corpus module writes itself: it checks the layout and returns the
    candidate utterances (duration :data:`PLACEHOLDER_DURATION`). The corpus name, fold scheme
    and version are the ``NAME``, ``FOLD_SCHEME`` and ``VERSION`` of ``scan``'s module (the
    constants of :data:`trustser.corpora.CORPUS_API`, defined above the call). The function returned reuses an
    existing ``out`` (:func:`reuse_existing`) before scanning anything, then hands the
    candidates to :func:`assemble` with ``folds``.
    """
    module = sys.modules[scan.__module__]
    corpus, fold_scheme, version = module.NAME, module.FOLD_SCHEME, module.VERSION

    def prepare(
        root: str | os.PathLike,
        out: str | os.PathLike | None = None,
        *,
        overwrite: bool = False,
        skip_unreadable: bool = False,
        progress: ProgressCallback | None = None,
    ) -> Manifest:
        root = Path(root)
        existing = reuse_existing(out, corpus, root=root, overwrite=overwrite)
        if existing is not None:
            return existing
        return assemble(
            corpus=corpus,
            root=root,
            candidates=scan(root),
            folds=folds,
            fold_scheme=fold_scheme,
            version=version,
            out=out,
            skip_unreadable=skip_unreadable,
            progress=progress,
        )

    # help() and repr() then show the corpus module's own prepare, with its own summary.
    prepare.__doc__ = doc
    prepare.__module__ = scan.__module__
    prepare.__qualname__ = "prepare"
    return prepare
