"""Manifests: the typed, validated list of utterances every stage consumes.

A manifest file is JSON Lines (optionally gzipped): one header object, then one utterance per
line. The schema is documented in ``docs/manifest.md`` so users can write their own for a private
corpus. :func:`validate` runs on every read and at the end of every ``prepare``, so a broken
corpus fails here, with the rows at fault listed, before any encoder runs.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from trustser._validation import TrustSERError, format_rows
from trustser._version import __version__

__all__ = [
    "EMOTIONS",
    "FOLD_KEYS",
    "GENDERS",
    "MANIFEST_FORMAT",
    "MANIFEST_FORMAT_VERSION",
    "ROLES",
    "UNKNOWN_GENDER",
    "UNKNOWN_SPEAKER",
    "AudioCheck",
    "Fold",
    "FoldKey",
    "FoldSummary",
    "Manifest",
    "ManifestCheck",
    "ManifestError",
    "ManifestSummary",
    "Utterance",
    "check_audio_files",
    "check_manifest",
    "merge_manifests",
    "read_manifest",
    "speakers_by_gender",
    "summarize",
    "validate",
    "write_manifest",
]

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry")
GENDERS: tuple[str, ...] = ("female", "male")
# Gender of clips whose speaker's gender the corpus does not record. Such clips take part in
# every emotion measurement but in no gender measurement (the gender attack, fairness).
UNKNOWN_GENDER = "unknown"
ROLES: tuple[str, ...] = ("train", "dev", "test")
FOLD_KEYS: tuple[str, ...] = ("speaker", "session", "split")
# Speaker id for clips whose speaker the corpus does not know (MSP-Podcast). Such clips are
# exempt from the speaker-disjointness and one-gender-per-speaker checks.
UNKNOWN_SPEAKER = "unknown"
MANIFEST_FORMAT = "trustser-manifest"
MANIFEST_FORMAT_VERSION = 1

FoldKey = Literal["speaker", "session", "split"]

# (field, accepted types, required) in schema order; bool is rejected where numbers are expected.
_SCHEMA: tuple[tuple[str, tuple[type, ...], bool], ...] = (
    ("id", (str,), True),
    ("path", (str,), True),
    ("speaker", (str,), True),
    ("gender", (str,), True),
    ("emotion", (str,), True),
    ("duration", (int, float), True),
    ("session", (str,), False),
    ("split", (str,), False),
    ("sample_rate", (int,), False),
    ("num_frames", (int,), False),
    ("text", (str,), False),
    ("custom", (dict,), False),
)
_REQUIRED = tuple(name for name, _, required in _SCHEMA if required)
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", dict: "an object"}


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

    @property
    def speaker_known(self) -> bool:
        """False for :data:`UNKNOWN_SPEAKER` clips (speaker tasks should leave them out)."""
        return self.speaker != UNKNOWN_SPEAKER

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not data["custom"]:
            del data["custom"]
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, line: int | None = None) -> Utterance:
        """Build from a JSON object, checking field names and types (no coercion)."""
        where = f" (line {line})" if line is not None else ""
        if not isinstance(data, dict):
            raise ManifestError(
                f"utterance{where} must be a JSON object, got {type(data).__name__}."
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ManifestError(
                f"utterance{where} has unknown field(s) {unknown}; put extra metadata under 'custom'."
            )
        missing = [n for n in _REQUIRED if n not in data or data[n] is None]
        if missing:
            raise ManifestError(
                f"utterance {data.get('id', '?')!r}{where} lacks required field(s) {missing}; "
                "see docs/manifest.md."
            )
        for name, types, _ in _SCHEMA:
            value = data.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, types):
                expected = " or ".join(_TYPE_NAMES[t] for t in types)
                raise ManifestError(
                    f"utterance {data.get('id', '?')!r}{where}: field {name!r} must be {expected}, "
                    f"got {type(value).__name__} {value!r}."
                )
        values = {k: v for k, v in data.items() if not (k == "custom" and v is None)}
        values["duration"] = float(values["duration"])
        return cls(**values)

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
        if not isinstance(data, dict):
            raise ManifestError(f"a fold must be a JSON object, got {type(data).__name__}.")
        name = data.get("name", "?")
        missing = [k for k in ("name", "by", *ROLES) if k not in data]
        if missing:
            raise ManifestError(f"fold {name!r} lacks field(s) {missing}; see docs/manifest.md.")
        if data["by"] not in FOLD_KEYS:
            raise ManifestError(
                f"fold {name!r}: by={data['by']!r} is not supported; choose one of {list(FOLD_KEYS)}."
            )
        for role in ROLES:
            values = data[role]
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ManifestError(
                    f"fold {name!r}: {role!r} must be a list of {data['by']} strings, got {values!r}."
                )
        return cls(
            name=str(data["name"]),
            by=data["by"],
            train=tuple(data["train"]),
            dev=tuple(data["dev"]),
            test=tuple(data["test"]),
        )


@dataclass(frozen=True)
class Manifest:
    """A corpus's utterances plus its fold scheme; immutable, order-preserving.

    ``root`` is the corpus directory it was prepared from (provenance; empty for hand-written
    manifests) and ``skipped`` the ``(id, reason)`` pairs of files left out as unreadable.
    """

    corpus: str
    utterances: tuple[Utterance, ...]
    folds: tuple[Fold, ...] = ()
    fold_scheme: str = ""
    version: str = ""
    labels: tuple[str, ...] = EMOTIONS
    root: str = ""
    skipped: tuple[tuple[str, str], ...] = ()

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
            raise KeyError(
                f"utterance id {utterance_id!r} is not in the {self.corpus} manifest"
            ) from None

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

    def filter(self, keep: Callable[[Utterance], bool]) -> Manifest:
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
            "root": self.root,
            "skipped": [{"id": i, "reason": r} for i, r in self.skipped],
            "trustser_version": __version__,
        }

    def checksum(self) -> str:
        """SHA-256 over what defines the data: corpus, version, labels, folds and every record.

        Provenance (``root``, ``skipped``, the trustser version) is left out, so the same
        utterances and folds always hash alike. Audio file contents are not hashed.
        """
        digest = hashlib.sha256()
        facts = {
            "corpus": self.corpus,
            "version": self.version,
            "fold_scheme": self.fold_scheme,
            "labels": list(self.labels),
            "folds": [f.to_dict() for f in self.folds],
        }
        digest.update(json.dumps(facts, sort_keys=True).encode())
        for utterance in self.utterances:
            digest.update(json.dumps(utterance.to_dict(), sort_keys=True).encode())
        return digest.hexdigest()


def validate(manifest: Manifest, *, check_files: bool = True) -> Manifest:
    """Check the schema before any heavy work; raise one :class:`ManifestError` listing all faults.

    Checks: an empty manifest, malformed labels, duplicate ids, missing files, emotion labels
    outside ``manifest.labels``, missing or unknown gender, missing speaker, a speaker with two
    genders, non-positive duration, and folds that are malformed, share values between roles,
    leave a role empty or put one (known) speaker in two roles.
    """
    problems: dict[str, list[str]] = {}

    def add(kind: str, row: str) -> None:
        problems.setdefault(kind, []).append(row)

    if not manifest.utterances:
        add("no utterances", f"the manifest of {manifest.corpus!r} lists no utterances")
    if not manifest.labels or len(set(manifest.labels)) != len(manifest.labels):
        add("bad labels", f"labels={list(manifest.labels)!r}, expected distinct class names")
    counts = Counter(u.id for u in manifest.utterances)
    for utterance_id, n in counts.items():
        if n > 1:
            add("duplicate id", f"{utterance_id!r} appears {n} times")
    labels = set(manifest.labels)
    gender_of: dict[str, str] = {}
    for u in manifest.utterances:
        if not u.id:
            add("empty id", f"path {u.path!r}")
        if u.emotion not in labels:
            add(
                "unknown emotion label",
                f"{u.id}: emotion={u.emotion!r}, expected one of {sorted(labels)}",
            )
        if not u.gender:
            add(
                "missing gender",
                f"{u.id}: gender is empty; expected 'female', 'male' or {UNKNOWN_GENDER!r}",
            )
        elif u.gender not in (*GENDERS, UNKNOWN_GENDER):
            add(
                "unrecognised gender",
                f"{u.id}: gender={u.gender!r}, expected 'female', 'male' or {UNKNOWN_GENDER!r}",
            )
        if not u.speaker:
            add("missing speaker", f"{u.id}: speaker is empty")
        elif u.speaker_known and u.gender in GENDERS:
            first = gender_of.setdefault(u.speaker, u.gender)
            if first != u.gender:
                add(
                    "speaker with two genders",
                    f"{u.id}: speaker {u.speaker!r} is {u.gender!r} here but {first!r} elsewhere",
                )
        if not (
            isinstance(u.duration, (int, float)) and math.isfinite(u.duration) and u.duration > 0
        ):
            add("bad duration", f"{u.id}: duration={u.duration!r}, expected seconds > 0")
        if check_files and not os.path.isfile(u.path):
            add("missing file", f"{u.id}: {u.path}")
    _validate_folds(manifest, add)
    if problems:
        total = sum(len(v) for v in problems.values())
        lines = [f"{manifest.corpus} manifest has {total} problem(s):"]
        for kind, rows in problems.items():
            lines.append(f"{kind} ({len(rows)}):")
            lines.append(format_rows(rows))
            if kind in _WAYS_OUT:
                lines.append(_WAYS_OUT[kind])
        lines.append("Fix the corpus or the manifest rows above, then run again.")
        raise ManifestError("\n".join(lines))
    return manifest


# What to do about a kind of problem whose fix is not obvious from its rows.
_WAYS_OUT = {
    "speaker-dependent fold": (
        "  Folds must be speaker-independent: a fold puts each known speaker in one role only. "
        'Accepted fold schemes: by "speaker" (speaker ids per role), by "session" or by "split" '
        "(values of the clips' session or split field), as long as no speaker's clips fall in "
        "two roles. A corpus with too few speakers for such folds (train, dev and test each need "
        f"one) can mark its speakers {UNKNOWN_SPEAKER!r}: their clips are then exempt from this "
        "check, but every result becomes speaker-dependent (the test speakers were heard in "
        "training), speaker identification leaves them out, and the profile's speaker bootstrap "
        "resamples them as one speaker. See docs/manifest.md."
    ),
}


def _validate_folds(manifest: Manifest, add: Callable[[str, str], None]) -> None:
    names = Counter(f.name for f in manifest.folds)
    for name, n in names.items():
        if n > 1:
            add("duplicate fold name", f"fold {name!r} is defined {n} times")
    for fold in manifest.folds:
        if fold.by not in FOLD_KEYS:
            add("bad fold", f"{fold.name}: by={fold.by!r}, expected one of {list(FOLD_KEYS)}")
            continue
        for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
            both = sorted(set(getattr(fold, a)) & set(getattr(fold, b)))
            if both:
                add(
                    "overlapping fold roles",
                    f"{fold.name}: {fold.by} {both[:5]} listed in both {a} and {b}",
                )
        speakers: dict[str, set[str]] = {role: set() for role in ROLES}
        for u in manifest.utterances:
            role = fold.role(u)
            if role is not None:
                speakers[role].add(u.speaker)
        for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
            shared = sorted(speakers[a] & speakers[b] - {UNKNOWN_SPEAKER})
            if shared:
                add(
                    "speaker-dependent fold",
                    f"{fold.name}: {len(shared)} speaker(s) {shared[:5]} are in both {a} and {b}",
                )
        for role in ROLES:
            if not speakers[role]:
                add("empty fold role", f"{fold.name}: no utterances in {role}")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def write_manifest(manifest: Manifest, path: str | os.PathLike) -> Path:
    """Write JSONL (gzipped when the name ends in ``.gz``) atomically, byte-for-byte reproducibly.

    The file appears only once complete and durable: a temporary file with a name of its own
    (so two processes writing one manifest never share it), ``fsync``, ``rename``, ``fsync`` of
    the directory. A reader never sees half of it, and a crash never leaves an empty one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    lines = [json.dumps(manifest.header(), sort_keys=True)]
    lines.extend(json.dumps(u.to_dict(), ensure_ascii=False) for u in manifest.utterances)
    payload = ("\n".join(lines) + "\n").encode("utf-8")
    try:
        with open(tmp, "wb") as raw:
            if path.suffix == ".gz":
                # mtime=0 and no file name in the gzip header: same manifest, same bytes.
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped:
                    zipped.write(payload)
            else:
                raw.write(payload)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (where the file system allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def read_manifest(
    path: str | os.PathLike, *, check: bool = True, check_files: bool = True
) -> Manifest:
    """Read a manifest written by :func:`write_manifest` or by hand; validate it by default.

    Gzip is detected from the content, not the name. Relative utterance paths are resolved
    against the manifest file's directory.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(
            f"manifest {str(path)!r} does not exist; create it with `trustser data prepare`."
        )
    base = path.resolve().parent
    utterances: list[Utterance] = []
    header: dict[str, Any] | None = None
    opener = gzip.open if _is_gzip(path) else open
    try:
        with opener(path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ManifestError(
                        f"{path}: line {number} is not valid JSON ({error.msg})."
                    ) from None
                if header is None:
                    header = _check_header(path, record)
                    continue
                utterance = Utterance.from_dict(record, line=number)
                resolved = os.path.expanduser(utterance.path)
                if not os.path.isabs(resolved):
                    resolved = str(base / resolved)
                if resolved != utterance.path:
                    utterance = utterance.with_path(resolved)
                utterances.append(utterance)
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile) as error:
        raise ManifestError(f"{path}: not a UTF-8 JSONL manifest ({error}).") from None
    if header is None:
        raise ManifestError(f"{path}: the file is empty; expected a header line and utterances.")
    labels = header.get("labels", list(EMOTIONS))
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ManifestError(f"{path}: header 'labels' must be a list of strings, got {labels!r}.")
    folds = header.get("folds", [])
    if not isinstance(folds, list):
        raise ManifestError(f"{path}: header 'folds' must be a list, got {type(folds).__name__}.")
    skipped = header.get("skipped", [])
    if not isinstance(skipped, list) or not all(
        isinstance(s, dict) and isinstance(s.get("id"), str) for s in skipped
    ):
        raise ManifestError(
            f"{path}: header 'skipped' must be a list of {{'id', 'reason'}} objects, got {skipped!r}."
        )
    manifest = Manifest(
        corpus=str(header.get("corpus", "custom")),
        utterances=tuple(utterances),
        folds=tuple(Fold.from_dict(f) for f in folds),
        fold_scheme=str(header.get("fold_scheme", "")),
        version=str(header.get("version", "")),
        labels=tuple(labels),
        root=str(header.get("root", "")),
        skipped=tuple((s["id"], str(s.get("reason", ""))) for s in skipped),
    )
    if check:
        validate(manifest, check_files=check_files)
    return manifest


def _check_header(path: Path, record: Any) -> dict[str, Any]:
    if not isinstance(record, dict) or record.get("format") != MANIFEST_FORMAT:
        raise ManifestError(
            f"{path}: the first line must be a header object with format={MANIFEST_FORMAT!r}; "
            "see docs/manifest.md."
        )
    version = record.get("format_version")
    if version != MANIFEST_FORMAT_VERSION:
        raise ManifestError(
            f"{path}: manifest format_version {version!r} is not supported (this trustser "
            f"{__version__} reads version {MANIFEST_FORMAT_VERSION}); re-create the manifest "
            "with `trustser data prepare` or upgrade trustser."
        )
    return record


def merge_manifests(
    manifests: Sequence[Manifest], *, names: Sequence[str] | None = None
) -> dict[str, Utterance]:
    """Utterances of several manifests keyed by id; an id two manifests record differently is an
    error naming both manifests (``names``, e.g. their files; default: corpus and position)."""
    if names is not None and len(names) != len(manifests):
        raise ValueError(f"{len(manifests)} manifests but {len(names)} names")
    labels = (
        list(names)
        if names is not None
        else [f"manifest {i + 1} ({m.corpus})" for i, m in enumerate(manifests)]
    )
    merged: dict[str, Utterance] = {}
    source: dict[str, int] = {}
    for position, manifest in enumerate(manifests):
        for u in manifest.utterances:
            if u.id in merged and merged[u.id] != u:
                first = merged[u.id]
                fields_differ = [
                    f.name
                    for f in fields(Utterance)
                    if f.compare and getattr(first, f.name) != getattr(u, f.name)
                ]
                raise ManifestError(
                    f"utterance id {u.id!r} is in {labels[source[u.id]]} and in "
                    f"{labels[position]} with different records ({', '.join(fields_differ)} "
                    "differ); one id must name one clip: prefix ids with the corpus name or fix "
                    "one of the manifests."
                )
            if u.id not in merged:
                merged[u.id] = u
                source[u.id] = position
    return merged


def speakers_by_gender(utterances: Iterable[Utterance]) -> dict[str, list[str]]:
    """Sorted known speaker ids per gender (a speaker listed under two genders is an error)."""
    gender_of: dict[str, str] = {}
    for u in utterances:
        if not u.speaker_known:
            continue
        previous = gender_of.setdefault(u.speaker, u.gender)
        if previous != u.gender:
            raise ManifestError(
                f"speaker {u.speaker!r} is labelled both {previous!r} and {u.gender!r} (utterance {u.id})."
            )
    out: dict[str, list[str]] = {g: [] for g in GENDERS}
    for speaker, gender in gender_of.items():
        out.setdefault(gender, []).append(speaker)
    return {g: sorted(s) for g, s in out.items()}


@dataclass(frozen=True)
class FoldSummary:
    """Counts of one fold: utterances, speakers and emotions per role."""

    name: str
    by: str
    utterances: dict[str, int]
    speakers: dict[str, int]
    emotions: dict[str, dict[str, int]]  # role → label → count
    unassigned: int  # utterances in no role of this fold


@dataclass(frozen=True)
class ManifestSummary:
    """What ``trustser data info`` shows: counts per emotion, gender and fold."""

    corpus: str
    version: str
    fold_scheme: str
    labels: tuple[str, ...]
    num_utterances: int
    num_speakers: int  # known speakers
    unknown_speaker_utterances: int
    total_seconds: float
    emotions: dict[str, int]
    genders: dict[str, int]
    emotion_by_gender: dict[str, dict[str, int]]  # gender → label → count
    speakers_per_gender: dict[str, int]
    folds: tuple[FoldSummary, ...]
    skipped: tuple[tuple[str, str], ...]


def summarize(manifest: Manifest) -> ManifestSummary:
    """Counts per emotion, gender (and both), speaker and fold role; no file access."""
    labels = tuple(manifest.labels)
    emotions = {label: 0 for label in labels}
    genders = {g: 0 for g in GENDERS}
    by_gender: dict[str, dict[str, int]] = {g: dict.fromkeys(labels, 0) for g in GENDERS}
    speakers: dict[str, set[str]] = {g: set() for g in GENDERS}
    for u in manifest.utterances:
        emotions[u.emotion] = emotions.get(u.emotion, 0) + 1
        genders[u.gender] = genders.get(u.gender, 0) + 1
        row = by_gender.setdefault(u.gender, dict.fromkeys(labels, 0))
        row[u.emotion] = row.get(u.emotion, 0) + 1
        if u.speaker_known:
            speakers.setdefault(u.gender, set()).add(u.speaker)
    fold_summaries = []
    for fold in manifest.folds:
        parts = manifest.split(fold)
        assigned = sum(len(p) for p in parts.values())
        fold_summaries.append(
            FoldSummary(
                name=fold.name,
                by=fold.by,
                utterances={role: len(parts[role]) for role in ROLES},
                speakers={
                    role: len({u.speaker for u in parts[role] if u.speaker_known}) for role in ROLES
                },
                emotions={
                    role: {label: sum(u.emotion == label for u in parts[role]) for label in labels}
                    for role in ROLES
                },
                unassigned=len(manifest.utterances) - assigned,
            )
        )
    return ManifestSummary(
        corpus=manifest.corpus,
        version=manifest.version,
        fold_scheme=manifest.fold_scheme,
        labels=labels,
        num_utterances=len(manifest.utterances),
        num_speakers=len(set().union(*speakers.values())),
        unknown_speaker_utterances=sum(not u.speaker_known for u in manifest.utterances),
        total_seconds=float(sum(u.duration for u in manifest.utterances)),
        emotions=emotions,
        genders=genders,
        emotion_by_gender=by_gender,
        speakers_per_gender={g: len(s) for g, s in speakers.items()},
        folds=tuple(fold_summaries),
        skipped=manifest.skipped,
    )


@dataclass(frozen=True)
class AudioCheck:
    """What :func:`check_audio_files` found, keyed by utterance id."""

    checked: int
    errors: dict[str, str] = field(default_factory=dict)  # unusable: id → reason
    changed: dict[str, str] = field(default_factory=dict)  # header differs from the manifest
    truncated: list[str] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.changed


def check_audio_files(
    utterances: Iterable[Utterance],
    *,
    mode: Literal["headers", "decode"] = "headers",
    progress: Callable[[int, int], None] | None = None,
) -> AudioCheck:
    """Open every utterance's file and report problems instead of raising on the first one.

    ``headers`` reads each header (fast) and compares sample rate and frame count with the
    values the manifest recorded, since extraction plans the store's offsets from them.
    ``decode`` also runs :func:`~trustser.audio.load_audio` on each file, catching NaN/inf,
    too-short and silent clips. ``progress(done, total)`` is called after each file.
    """
    if mode not in ("headers", "decode"):
        raise ValueError(f"mode={mode!r} is not supported; choose 'headers' or 'decode'.")
    # Imported here, not at the top: reading a manifest must not pull in torch.
    from trustser.audio import (
        AudioError,
        SilentAudioWarning,
        TruncatedAudioWarning,
        audio_info,
        load_audio,
    )

    items = list(utterances)
    errors: dict[str, str] = {}
    changed: dict[str, str] = {}
    truncated: list[str] = []
    silent: list[str] = []
    for done, u in enumerate(items, start=1):
        try:
            info = audio_info(u.path)
            if mode == "decode":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", SilentAudioWarning)
                    warnings.simplefilter("ignore", TruncatedAudioWarning)
                    audio = load_audio(u.path)
                if audio.silent:
                    silent.append(u.id)
        except AudioError as error:
            errors[u.id] = f"{error.reason} ({u.path})"
            continue
        finally:
            if progress is not None:
                progress(done, len(items))
        if info.truncated:
            truncated.append(u.id)
        if u.sample_rate is not None and u.sample_rate != info.sample_rate:
            changed[u.id] = f"sample rate {info.sample_rate} Hz, manifest says {u.sample_rate} Hz"
        elif u.num_frames is not None and u.num_frames != info.num_frames:
            changed[u.id] = f"{info.num_frames} frames, manifest says {u.num_frames}"
    return AudioCheck(
        checked=len(items), errors=errors, changed=changed, truncated=truncated, silent=silent
    )


@dataclass(frozen=True)
class ManifestCheck:
    """The outcome of :func:`check_manifest`: the manifest, its summary and any audio check."""

    manifest: Manifest
    summary: ManifestSummary
    audio: AudioCheck | None = None


def check_manifest(
    path: str | os.PathLike,
    *,
    check_files: bool = True,
    audio: Literal["none", "headers", "decode"] = "none",
    progress: Callable[[int, int], None] | None = None,
) -> ManifestCheck:
    """Read and validate a manifest; optionally open (``headers``) or decode every file.

    Unreadable files, or files whose header no longer matches the recorded sample rate and
    frame count, raise one :class:`ManifestError` listing them. Truncated and silent clips are
    returned in ``.audio`` as warnings: they load, but deserve a look. ``progress(done, total)``
    is called after each file opened.
    """
    if audio not in ("none", "headers", "decode"):
        raise ValueError(f"audio={audio!r} is not supported; choose 'none', 'headers' or 'decode'.")
    manifest = read_manifest(path, check=True, check_files=check_files)
    result = None
    if audio != "none":
        result = check_audio_files(manifest.utterances, mode=audio, progress=progress)
        if not result.ok:
            lines = [f"{path}: {len(result.errors) + len(result.changed)} audio problem(s):"]
            if result.errors:
                lines.append(f"unreadable audio ({len(result.errors)}):")
                lines.append(format_rows([f"{k}: {v}" for k, v in result.errors.items()]))
            if result.changed:
                lines.append(
                    f"file changed since the manifest was written ({len(result.changed)}):"
                )
                lines.append(format_rows([f"{k}: {v}" for k, v in result.changed.items()]))
            lines.append(
                "Repair the files, or re-create the manifest with `trustser data prepare`."
            )
            raise ManifestError("\n".join(lines))
    return ManifestCheck(manifest=manifest, summary=summarize(manifest), audio=result)
