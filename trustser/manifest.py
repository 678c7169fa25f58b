"""Manifests: the typed, validated list of utterances every stage consumes.

A manifest file is JSON Lines (optionally gzipped): one header object, then one utterance per
line. The schema is documented in ``docs/manifest.md`` so users can write their own for a private
corpus.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from trustser._validation import TrustSERError, format_rows
from trustser._version import __version__

__all__ = [
    "EMOTIONS",
    "GENDERS",
    "ROLES",
    "MANIFEST_FORMAT",
    "MANIFEST_FORMAT_VERSION",
    "ManifestError",
    "Utterance",
    "Fold",
    "Manifest",
    "validate",
    "read_manifest",
    "write_manifest",
    "merge_manifests",
    "speakers_by_gender",
]

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry")
GENDERS: tuple[str, ...] = ("female", "male")
ROLES: tuple[str, ...] = ("train", "dev", "test")
MANIFEST_FORMAT = "trustser-manifest"
MANIFEST_FORMAT_VERSION = 1

FoldKey = Literal["speaker", "session", "split"]


class ManifestError(TrustSERError, ValueError):
    """A manifest that breaks the schema; the message names the rows and fields at fault."""


@dataclass(frozen=True)
class Utterance:
    """One labelled clip. Every attribute a metric groups by is a typed field."""

    id: str
    path: str
    speaker: str
    gender: str  # "female" | "male"
    emotion: str  # one of the manifest's labels
    duration: float  # seconds, of the whole file (before any cropping)
    session: str | None = None
    split: str | None = None
    sample_rate: int | None = None  # of the file, from its header
    num_frames: int | None = None  # samples per channel in the file, from its header
    text: str | None = None
    custom: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not data["custom"]:
            del data["custom"]
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, line: int | None = None) -> Utterance:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        where = f" (line {line})" if line is not None else ""
        if unknown:
            raise ManifestError(
                f"utterance{where} has unknown field(s) {unknown}; put extra metadata under 'custom'."
            )
        missing = [n for n in ("id", "path", "speaker", "gender", "emotion", "duration") if n not in data]
        if missing:
            raise ManifestError(
                f"utterance {data.get('id', '?')!r}{where} lacks required field(s) {missing}."
            )
        return cls(**data)

    def with_path(self, path: str) -> Utterance:
        return replace(self, path=path)


@dataclass(frozen=True)
class Fold:
    """One speaker-independent train/dev/test partition, defined by values of one field.

    An utterance belongs to the role whose value list holds its ``by`` field; utterances whose
    value is in none of the lists take no part in this fold.
    """

    name: str
    by: FoldKey
    train: tuple[str, ...]
    dev: tuple[str, ...]
    test: tuple[str, ...]

    def role(self, utterance: Utterance) -> str | None:
        value = getattr(utterance, self.by)
        for role in ROLES:
            if value in getattr(self, role):
                return role
        return None

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fold:
        return cls(
            name=str(data["name"]),
            by=data["by"],
            train=tuple(data["train"]),
            dev=tuple(data["dev"]),
            test=tuple(data["test"]),
        )


@dataclass(frozen=True)
class Manifest:
    """A corpus's utterances plus its fold scheme; immutable, order-preserving."""

    corpus: str
    utterances: tuple[Utterance, ...]
    folds: tuple[Fold, ...] = ()
    fold_scheme: str = ""
    version: str = ""
    labels: tuple[str, ...] = EMOTIONS

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    @cached_property
    def by_id(self) -> dict[str, Utterance]:
        return {u.id: u for u in self.utterances}

    @property
    def ids(self) -> list[str]:
        return [u.id for u in self.utterances]

    def __getitem__(self, utterance_id: str) -> Utterance:
        try:
            return self.by_id[utterance_id]
        except KeyError:
            raise KeyError(f"utterance id {utterance_id!r} is not in the {self.corpus} manifest") from None

    def fold(self, name: str) -> Fold:
        for fold in self.folds:
            if fold.name == name:
                return fold
        names = ", ".join(f.name for f in self.folds) or "none"
        raise KeyError(f"{self.corpus} has no fold {name!r}; folds: {names}")

    def split(self, fold: Fold | str) -> dict[str, list[Utterance]]:
        """Utterances of each role (train/dev/test) in ``fold``."""
        fold = self.fold(fold) if isinstance(fold, str) else fold
        parts: dict[str, list[Utterance]] = {role: [] for role in ROLES}
        for utterance in self.utterances:
            role = fold.role(utterance)
            if role is not None:
                parts[role].append(utterance)
        return parts

    def filter(self, keep) -> Manifest:
        """A copy holding only utterances for which ``keep(utterance)`` is true."""
        return replace(self, utterances=tuple(u for u in self.utterances if keep(u)))

    def header(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "format_version": MANIFEST_FORMAT_VERSION,
            "corpus": self.corpus,
            "version": self.version,
            "fold_scheme": self.fold_scheme,
            "labels": list(self.labels),
            "folds": [f.to_dict() for f in self.folds],
            "num_utterances": len(self.utterances),
            "trustser_version": __version__,
        }

    def checksum(self) -> str:
        """SHA-256 over the header facts and every utterance record (not file contents)."""
        digest = hashlib.sha256()
        header = self.header()
        header.pop("trustser_version")
        digest.update(json.dumps(header, sort_keys=True).encode())
        for utterance in self.utterances:
            digest.update(json.dumps(utterance.to_dict(), sort_keys=True).encode())
        return digest.hexdigest()


def validate(manifest: Manifest, *, check_files: bool = True) -> Manifest:
    """Check the schema before any heavy work; raise one :class:`ManifestError` listing all faults.

    Checks: duplicate ids, missing files, labels outside ``manifest.labels``, missing or unknown
    gender, missing speaker, non-positive duration, folds that mix speakers across roles.
    """
    problems: dict[str, list[str]] = {}

    def add(kind: str, row: str) -> None:
        problems.setdefault(kind, []).append(row)

    counts = Counter(u.id for u in manifest.utterances)
    for utterance_id, n in counts.items():
        if n > 1:
            add("duplicate id", f"{utterance_id!r} appears {n} times")
    labels = set(manifest.labels)
    for u in manifest.utterances:
        if not u.id:
            add("empty id", f"path {u.path!r}")
        if u.emotion not in labels:
            add("unknown emotion label", f"{u.id}: emotion={u.emotion!r}, expected one of {sorted(labels)}")
        if not u.gender:
            add("missing gender", f"{u.id}: gender is empty; expected 'female' or 'male'")
        elif u.gender not in GENDERS:
            add("unknown gender", f"{u.id}: gender={u.gender!r}, expected 'female' or 'male'")
        if not u.speaker:
            add("missing speaker", f"{u.id}: speaker is empty")
        if not (u.duration > 0):
            add("bad duration", f"{u.id}: duration={u.duration!r}, expected seconds > 0")
        if check_files and not os.path.isfile(u.path):
            add("missing file", f"{u.id}: {u.path}")
    for fold in manifest.folds:
        speakers: dict[str, set[str]] = {role: set() for role in ROLES}
        for u in manifest.utterances:
            role = fold.role(u)
            if role is not None:
                speakers[role].add(u.speaker)
        for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
            shared = sorted(speakers[a] & speakers[b] - {"unknown", "Unknown"})
            if shared:
                add("speaker-dependent fold", f"{fold.name}: speakers {shared[:5]} are in both {a} and {b}")
        for role in ROLES:
            if not speakers[role]:
                add("empty fold role", f"{fold.name}: no utterances in {role}")
    if problems:
        total = sum(len(v) for v in problems.values())
        lines = [f"{manifest.corpus} manifest has {total} problem(s):"]
        for kind, rows in problems.items():
            lines.append(f"{kind} ({len(rows)}):")
            lines.append(format_rows(rows))
        lines.append("Fix the corpus or the manifest rows above, then run again.")
        raise ManifestError("\n".join(lines))
    return manifest


def _open_text(path: Path, mode: str):
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def write_manifest(manifest: Manifest, path: str | os.PathLike) -> Path:
    """Write JSONL (``.jsonl`` or ``.jsonl.gz``) atomically: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with _open_text(tmp, "w") as out:
        out.write(json.dumps(manifest.header(), sort_keys=True) + "\n")
        for utterance in manifest.utterances:
            out.write(json.dumps(utterance.to_dict(), ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def read_manifest(
    path: str | os.PathLike, *, check: bool = True, check_files: bool = True
) -> Manifest:
    """Read a manifest written by :func:`write_manifest` or by hand; validate it by default.

    Relative utterance paths are resolved against the manifest file's directory.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {str(path)!r} does not exist; create it with `trustser data prepare`.")
    base = path.resolve().parent
    utterances: list[Utterance] = []
    header: dict[str, Any] | None = None
    with _open_text(path, "r") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ManifestError(f"{path}: line {number} is not valid JSON ({error.msg}).") from None
            if header is None:
                if record.get("format") != MANIFEST_FORMAT:
                    raise ManifestError(
                        f"{path}: the first line must be a header with format={MANIFEST_FORMAT!r}; "
                        "see docs/manifest.md."
                    )
                if record.get("format_version") != MANIFEST_FORMAT_VERSION:
                    raise ManifestError(
                        f"{path}: manifest format_version {record.get('format_version')!r} is not "
                        f"supported (this trustser reads version {MANIFEST_FORMAT_VERSION})."
                    )
                header = record
                continue
            utterance = Utterance.from_dict(record, line=number)
            if not os.path.isabs(utterance.path):
                utterance = utterance.with_path(str(base / utterance.path))
            utterances.append(utterance)
    if header is None:
        raise ManifestError(f"{path}: the file is empty; expected a header line and utterances.")
    manifest = Manifest(
        corpus=str(header.get("corpus", "custom")),
        utterances=tuple(utterances),
        folds=tuple(Fold.from_dict(f) for f in header.get("folds", [])),
        fold_scheme=str(header.get("fold_scheme", "")),
        version=str(header.get("version", "")),
        labels=tuple(header.get("labels", EMOTIONS)),
    )
    if check:
        validate(manifest, check_files=check_files)
    return manifest


def merge_manifests(manifests: Sequence[Manifest]) -> dict[str, Utterance]:
    """Utterances of several manifests keyed by id; ids must not collide across corpora."""
    merged: dict[str, Utterance] = {}
    for manifest in manifests:
        for u in manifest.utterances:
            if u.id in merged and merged[u.id] != u:
                raise ManifestError(
                    f"utterance id {u.id!r} occurs in two manifests with different records; "
                    "prefix ids with the corpus name."
                )
            merged[u.id] = u
    return merged


def speakers_by_gender(utterances: Iterable[Utterance]) -> dict[str, list[str]]:
    """Sorted speaker ids per gender (a speaker listed under two genders is an error)."""
    gender_of: dict[str, str] = {}
    for u in utterances:
        previous = gender_of.setdefault(u.speaker, u.gender)
        if previous != u.gender:
            raise ManifestError(
                f"speaker {u.speaker!r} is labelled both {previous!r} and {u.gender!r} (utterance {u.id})."
            )
    out: dict[str, list[str]] = {g: [] for g in GENDERS}
    for speaker, gender in gender_of.items():
        out.setdefault(gender, []).append(speaker)
    return {g: sorted(s) for g, s in out.items()}
