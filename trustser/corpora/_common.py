"""What every corpus module shares: header probing, manifest reuse, validation, writing."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from rich.progress import track

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

__all__ = ["CorpusLayoutError", "with_audio_headers", "finish", "reuse_existing", "require_dir"]


class CorpusLayoutError(TrustSERError, FileNotFoundError):
    """The corpus root does not look like the official distribution."""


def require_dir(root: Path, relative: str, corpus: str, hint: str) -> Path:
    path = root / relative
    if not path.is_dir():
        raise CorpusLayoutError(
            f"{corpus}: expected the directory {str(path)!r} of the official distribution; {hint}"
        )
    return path


def with_audio_headers(
    utterances: Iterable[Utterance], *, corpus: str, show_progress: bool = False
) -> list[Utterance]:
    """Fill duration, sample rate and frame count from each file's header (no decoding).

    Unreadable files raise one error listing them all, so a bad corpus fails before extraction.
    """
    out: list[Utterance] = []
    bad: list[str] = []
    items = list(utterances)
    iterator = track(items, description=f"{corpus}: reading headers") if show_progress else items
    for u in iterator:
        try:
            info = audio_info(u.path)
        except AudioError as error:
            bad.append(f"{u.id}: {error.reason} ({u.path})")
            continue
        out.append(
            replace(
                u,
                duration=round(info.duration, 6),
                sample_rate=info.sample_rate,
                num_frames=info.num_frames,
            )
        )
    if bad:
        raise ManifestError(
            f"{corpus}: {len(bad)} audio file(s) cannot be read:\n{format_rows(bad)}\n"
            "Remove or repair them (or pass --skip-unreadable to leave them out)."
        )
    return out


def reuse_existing(out: str | os.PathLike | None, corpus: str) -> Manifest | None:
    """An already-written manifest for the same corpus at ``out``, else ``None`` (lhotse-style)."""
    if out is None or not Path(out).is_file():
        return None
    try:
        manifest = read_manifest(out)
    except ManifestError:
        return None
    return manifest if manifest.corpus == corpus else None


def finish(
    *,
    corpus: str,
    utterances: Iterable[Utterance],
    folds: tuple[Fold, ...],
    fold_scheme: str,
    version: str,
    out: str | os.PathLike | None,
) -> Manifest:
    """Sort, validate and (optionally) write a prepared manifest."""
    ordered = tuple(sorted(utterances, key=lambda u: u.id))
    if not ordered:
        raise CorpusLayoutError(
            f"{corpus}: no usable utterances were found; check that the root points at the corpus."
        )
    manifest = Manifest(
        corpus=corpus,
        utterances=ordered,
        folds=folds,
        fold_scheme=fold_scheme,
        version=version,
    )
    validate(manifest)
    if out is not None:
        write_manifest(manifest, out)
    return manifest
