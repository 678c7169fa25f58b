"""Writing a store: plan parts, fill units, mark them done — resumable and safe for many ranks.

The order of operations is the format's durability contract (docs/store-format.md §8): a part
appears by one ``rename`` of a complete directory; a unit's record is written only after the
unit's shard and mean chunk are ``fsync``-ed. ``StoreWriter`` knows nothing about backbones: it
takes features as arrays, which is what the state-machine tests drive directly.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec
from zarr.storage import LocalStore

from trustser._validation import format_rows, safe_name
from trustser.manifest import Manifest
from trustser.store._fs import (
    create_json_exclusive,
    fsync_chain,
    fsync_dir,
    fsync_file,
    hostname,
    make_dirs,
    pid_alive,
    remove_partials,
    remove_tree,
    write_json_atomic,
)
from trustser.store.claims import (
    CLAIMS_DIR,
    Claim,
    Owner,
    claim_unit,
    release_claim,
    still_owner,
)
from trustser.store.format import (
    CODECS,
    DERIVED_KEY,
    DTYPES,
    FORMAT_VERSION,
    GROUP_ATTR,
    MANIFEST_ATTR,
    MANIFEST_REF_ATTR,
    PART_ATTR,
    PROVENANCE_REQUIRED,
    QUANTIZED_DTYPES,
    ROOT_ATTR,
    SCALES,
    UNIT_ATTR,
    ProvenanceMismatchError,
    StoreError,
    create_root,
    frame_row_bytes,
    group_document,
    provenance_differences,
    read_node,
    utc_now,
)
from trustser.store.plan import DEFAULT_SHARD_MB, ClipFacts, PartPlan, plan_part
from trustser.store.quantize import MAX_ABS_INT8, quantize
from trustser.store.reader import Part, Store, StoreGroup

__all__ = [
    "ZSTD_LEVEL",
    "ClaimOutcome",
    "StoreWriter",
    "UnitBuffer",
    "UnitClaimedError",
]

ZSTD_LEVEL = 3
FLOAT16_MAX = 65504.0


class UnitClaimedError(StoreError):
    """Another live writer owns the unit (docs/store-format.md §8)."""


@dataclass(frozen=True)
class ClaimOutcome:
    """What :meth:`StoreWriter.claim` found: ``claim`` (ours), ``holder`` (another writer's
    live claim) or neither (the unit was finished by someone else meanwhile)."""

    claim: Claim | None = None
    holder: Claim | None = None

    @property
    def owned(self) -> bool:
        return self.claim is not None


def _upgrade_root(path: Path, durable: bool) -> None:
    """Rewrite an older root as the current version before writing current records into it (§3)."""
    node = path / "zarr.json"
    document = read_node(node)
    attrs = document.get("attributes", {}).get(ROOT_ATTR)
    version = attrs.get("format_version") if isinstance(attrs, dict) else None
    if isinstance(version, int) and 1 <= version < FORMAT_VERSION:
        attrs = {**attrs, "format_version": FORMAT_VERSION, "upgraded": utc_now()}
        document["attributes"][ROOT_ATTR] = attrs
        write_json_atomic(node, document, durable=durable)


def _temp_dir(parent: Path, label: str) -> Path:
    return parent / f".tmp-{label}-{hostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _clean_stale_temps(parent: Path) -> None:
    """Remove temporary directories of dead writers on this host (a killed run's leftovers)."""
    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        if not entry.name.startswith(".tmp-") or not entry.is_dir():
            continue
        try:
            head, pid, _ = entry.name.rsplit("-", 2)
            pid_number = int(pid)
        except ValueError:
            continue
        if head.endswith("-" + hostname()) and not pid_alive(pid_number):
            remove_tree(entry)


def _fsync_tree(path: Path) -> None:
    for dirpath, _, files in os.walk(path):
        for name in files:
            fsync_file(os.path.join(dirpath, name))
        fsync_dir(dirpath)


def _compressors(codec: str):
    return None if codec == "none" else ZstdCodec(level=ZSTD_LEVEL)


def _blob(data: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(data, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)


def _write_blob_array(
    zstore: LocalStore, name: str, blob: np.ndarray, attributes: dict | None = None
) -> None:
    array = zarr.create_array(
        store=zstore,
        name=name or None,
        shape=blob.shape,
        chunks=(max(1, blob.size),),
        dtype="uint8",
        compressors=None,
        fill_value=0,
        attributes=attributes or {},
    )
    array[:] = blob


def _write_small_array(zstore: LocalStore, name: str, values: np.ndarray) -> None:
    array = zarr.create_array(
        store=zstore,
        name=name,
        shape=values.shape,
        chunks=(max(1, values.size),),
        dtype=values.dtype,
        compressors=None,
        fill_value=0,
    )
    array[:] = values


class UnitBuffer:
    """One unit's features being assembled in memory before :meth:`StoreWriter.commit`.

    ``put(id, hidden [L, T, D])`` places a clip's frames (``T`` must equal the planned count) and
    its float32 time-mean; ``skip(id, reason)`` records why a clip has none. In an int8 group
    ``block`` holds the 8-bit codes and ``scales`` the float16 scale of every row (§6.5).
    """

    def __init__(self, part: Part, unit: int, *, dtype: str, num_layers: int, dim: int) -> None:
        self.part = part
        self.unit = unit
        self.clips = part.unit_clips(unit)
        self.base_row = unit * part.unit_frames
        self.dtype = str(dtype)
        self.block = np.zeros((part.unit_frames, num_layers, dim), dtype=np.dtype(dtype))
        self.scales = (
            np.zeros((part.unit_frames, num_layers), dtype=np.float16)
            if self.dtype in QUANTIZED_DTYPES
            else None
        )
        self.means = np.zeros((len(self.clips), num_layers, dim), dtype=np.float32)
        self.state: dict[str, str | None] = {}  # id → None (features stored) or skip reason
        self.flags: dict[str, list[str]] = {}  # id → warnings of a stored clip ("silent", ...)

    @property
    def ids(self) -> list[str]:
        return [self.part.ids[i] for i in self.clips]

    @property
    def missing(self) -> list[str]:
        """Clips of the unit that were neither put nor skipped."""
        return [i for i in self.ids if i not in self.state]

    def planned(self, utt_id: str) -> tuple[int, int, str | None]:
        """``(num_samples, num_frames, plan-time skip reason)`` of a clip of this unit."""
        index = self._index(utt_id)
        reason = self.part.attrs["plan_skipped"].get(utt_id)
        return int(self.part.num_samples[index]), int(self.part.num_frames[index]), reason

    def _index(self, utt_id: str) -> int:
        index = self.part.index.get(utt_id)
        if index is None or index not in self.clips:
            raise KeyError(
                f"utterance {utt_id!r} is not in unit {self.unit} of part {self.part.key}"
            )
        return index

    def put(self, utt_id: str, hidden: Any) -> None:
        """Store ``hidden`` (``[L, T, D]``, numpy or torch) as the clip's features.

        Checks the shape against the plan, refuses NaN/inf, and refuses values beyond the
        float16 range when the group stores float16; the time-mean is taken in float32.
        """
        if hasattr(hidden, "detach"):
            hidden = hidden.detach().to("cpu").float().numpy()
        hidden = np.asarray(hidden, dtype=np.float32)
        if hidden.ndim != 3:
            raise ValueError(f"features of {utt_id!r} must be [L, T, D], got shape {hidden.shape}")
        if not np.isfinite(hidden).all():
            raise ValueError(f"features of {utt_id!r} contain NaN or inf; skip the clip instead.")
        peak = float(np.abs(hidden).max()) if hidden.size else 0.0
        self.put_rows(utt_id, hidden.transpose(1, 0, 2), hidden.mean(axis=1), peak=peak)

    def put_rows(
        self,
        utt_id: str,
        rows: np.ndarray,
        mean: np.ndarray,
        *,
        peak: float,
        scales: np.ndarray | None = None,
    ) -> None:
        """Store frames already laid out as rows ``[T, L, D]`` plus their float32 time-mean.

        The fast path for extraction, which transposes, casts and averages on the device;
        ``peak`` is ``max |x|`` of the clip's real frames before any cast. In an int8 group,
        ``rows`` are either float values (quantised here) or codes with their ``scales [T, L]``
        (quantised on the device by :func:`trustser.store.quantize.quantize_torch`).
        """
        index = self._index(utt_id)
        frames = int(self.part.num_frames[index])
        expected = (frames, self.block.shape[1], self.block.shape[2])
        if tuple(rows.shape) != expected:
            raise ValueError(
                f"features of {utt_id!r} have shape {tuple(rows.shape)}, planned {expected} [T, L, D]; "
                "the backbone's frame_count() disagrees with its output."
            )
        if self.block.dtype == np.float16 and peak > FLOAT16_MAX:
            raise StoreError(
                f"features of {utt_id!r} reach |x| = {peak:.4g}, beyond the float16 range "
                f"({FLOAT16_MAX:g}); extract this backbone with --dtype float32."
            )
        start = int(self.part.offsets[index]) - self.base_row
        if self.scales is not None:
            if peak > MAX_ABS_INT8:
                raise StoreError(
                    f"features of {utt_id!r} reach |x| = {peak:.4g}, beyond what int8 codes with "
                    f"float16 scales hold ({MAX_ABS_INT8:.4g}); extract with --dtype float32."
                )
            if scales is None:
                rows, scales = quantize(rows)
            elif np.asarray(rows).dtype != np.int8 or tuple(scales.shape) != expected[:2]:
                raise ValueError(
                    f"int8 features of {utt_id!r} need int8 codes [T, L, D] and float16 scales "
                    f"[T, L]; got {np.asarray(rows).dtype} codes and scales {tuple(scales.shape)}."
                )
            self.scales[start : start + frames] = scales
        elif scales is not None:
            raise ValueError(f"scales are only stored in an int8 group, not {self.dtype}.")
        self.block[start : start + frames] = rows
        self.means[index - self.clips.start] = mean
        self.state[utt_id] = None

    def flag(self, utt_id: str, *flags: str) -> None:
        """Record warnings about a clip whose features are stored (e.g. ``"silent"``)."""
        self._index(utt_id)
        if flags:
            known = self.flags.setdefault(utt_id, [])
            known.extend(f for f in flags if f not in known)

    def skip(self, utt_id: str, reason: str) -> None:
        index = self._index(utt_id)
        self.flags.pop(utt_id, None)
        start = int(self.part.offsets[index]) - self.base_row
        self.block[start : start + int(self.part.num_frames[index])] = 0
        if self.scales is not None:
            self.scales[start : start + int(self.part.num_frames[index])] = 0
        self.means[index - self.clips.start] = 0
        self.state[utt_id] = str(reason)


class StoreWriter:
    """Writes the group ``name`` of the store at ``path`` for one backbone configuration.

    ``provenance`` must hold the keys of ``PROVENANCE_REQUIRED``; an existing group with a
    different configuration is refused (:class:`ProvenanceMismatchError`).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        name: str,
        *,
        provenance: Mapping[str, Any],
        durable: bool = True,
        owner: Owner | None = None,
        break_claims: bool = False,
    ) -> None:
        missing = [k for k in PROVENANCE_REQUIRED if k not in provenance]
        if missing:
            raise ValueError(f"provenance lacks required key(s) {missing}")
        if provenance["dtype"] not in DTYPES:
            raise ValueError(
                f"dtype={provenance['dtype']!r} is not supported; choose one of {', '.join(DTYPES)}."
            )
        if provenance["codec"] not in CODECS:
            raise ValueError(
                f"codec={provenance['codec']!r} is not supported; choose one of {', '.join(CODECS)}."
            )
        self.path = Path(path)
        self.name = name
        self.durable = durable
        self.owner = owner or Owner.current()
        self.break_claims = bool(break_claims)
        create_root(self.path, durable=durable)  # idempotent; completes a root a killed run began
        _upgrade_root(self.path, durable)
        self.store = Store(self.path, mode="a")
        self.key = safe_name(name)
        self.group_path = make_dirs(self.path / self.key, durable=durable)
        requested = json.loads(json.dumps(dict(provenance), default=str))
        document = group_document({GROUP_ATTR: {"name": name, "provenance": requested}})
        if not create_json_exclusive(self.group_path / "zarr.json", document, durable=durable):
            existing = (
                read_node(self.group_path / "zarr.json").get("attributes", {}).get(GROUP_ATTR, {})
            )
            if existing.get("name") != name:
                raise ProvenanceMismatchError(
                    f"{self.group_path} already holds group {existing.get('name')!r}, whose directory "
                    f"name collides with {name!r}; choose another group name."
                )
            rows = provenance_differences(existing.get("provenance", {}), requested)
            if rows:
                raise ProvenanceMismatchError(
                    f"group {name!r} in {self.path} was extracted with a different configuration:\n"
                    + "\n".join(f"  - {r}" for r in rows)
                    + "\nNever mixing two configurations in one array: pass another group name "
                    "(--group) or another store."
                )
        make_dirs(self.group_path / "manifests", durable=durable)
        create_json_exclusive(
            self.group_path / "manifests" / "zarr.json", group_document({}), durable=durable
        )
        _clean_stale_temps(self.group_path)
        _clean_stale_temps(self.path / "manifests")
        self.provenance = dict(requested)
        self._zstore = LocalStore(self.path)
        self._arrays: dict[tuple[str, str], zarr.Array] = {}

    # -- reading back ---------------------------------------------------------------------
    def group(self) -> StoreGroup:
        """A fresh reader of this group (sees every unit recorded so far)."""
        return StoreGroup(self.store, self.key)

    # -- manifests and planning -------------------------------------------------------------
    def _store_manifest(self, manifest: Manifest, checksum: str) -> None:
        base = self.path / "manifests"
        if (base / checksum / "zarr.json").is_file():
            return
        tmp = _temp_dir(base, checksum[:16])
        try:
            data = {
                "header": manifest.header(),
                "utterances": [u.to_dict() for u in manifest.utterances],
            }
            attributes = {
                MANIFEST_ATTR: {
                    "checksum": checksum,
                    "corpus": manifest.corpus,
                    "num_utterances": len(manifest),
                }
            }
            _write_blob_array(LocalStore(tmp), "", _blob(data), attributes)
            self._publish(tmp, base / checksum)
        finally:
            remove_tree(tmp)

    def _publish(self, tmp: Path, final: Path) -> None:
        """Rename a complete temporary directory into place; a concurrent twin may win."""
        if self.durable:
            _fsync_tree(tmp)
        try:
            os.rename(tmp, final)
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            return  # another writer published the same content first
        if self.durable:
            fsync_dir(final.parent)

    def _register(
        self, manifest: Manifest, checksum: str, derived: Mapping[str, Any] | None = None
    ) -> None:
        ref: dict[str, Any] = {
            "checksum": checksum,
            "corpus": manifest.corpus,
            "registered": utc_now(),
        }
        if derived is not None:
            ref[DERIVED_KEY] = json.loads(json.dumps(dict(derived), default=str))
        ref = {MANIFEST_REF_ATTR: ref}
        write_json_atomic(
            self.group_path / "manifests" / checksum / "zarr.json",
            group_document(ref),
            durable=self.durable,
        )

    def add_manifest(
        self,
        manifest: Manifest,
        *,
        clips: Mapping[str, ClipFacts],
        shard_mb: float = DEFAULT_SHARD_MB,
        derived: Mapping[str, Any] | None = None,
    ) -> list[Part]:
        """Plan the manifest's new clips as a part (if any) and return every part it touches.

        ``clips`` gives the facts of every clip of the manifest (extraction decides them, see
        :class:`~trustser.store.plan.ClipFacts`). Clips the group already planned are reused; a
        clip planned without samples whose audio now has some is planned again; if a planned
        clip's audio now decodes to a different sample count, the manifest is refused (the
        stored features would be wrong for it). ``derived`` (a JSON object saying what the
        clips were derived from and how) registers a derived manifest (§4.1): its clips are
        none of the group's corpora. A corpus name is either derived or not, never both.
        """
        missing = [u.id for u in manifest.utterances if u.id not in clips]
        if missing:
            raise ValueError(f"clips lacks the facts of {len(missing)} clip(s): {missing[:5]}")
        checksum = manifest.checksum()
        group = self.group()
        other = group.corpora if derived is not None else group.derived_manifests()
        if manifest.corpus in {r if isinstance(r, str) else r["corpus"] for r in other}:
            what = "a corpus" if derived is not None else "a derived manifest (corrupted copies)"
            raise StoreError(
                f"group {self.name!r} already holds {what} named {manifest.corpus!r}; a "
                f"{'derived' if derived is not None else 'corpus'} manifest needs another name."
            )
        planned: dict[str, tuple[Part, int]] = {}
        for part in group.parts:
            for index, utt in enumerate(part.ids):
                planned[utt] = (part, index)
        new, changed = [], []
        for utterance in manifest.utterances:
            facts = clips[utterance.id]
            samples = int(facts.samples)
            if utterance.id not in planned:
                new.append(utterance.id)
                continue
            part, index = planned[utterance.id]
            before = int(part.num_samples[index])
            if before == 0:
                # Skipped when planned: plan it again only if it is usable now. A clip still
                # skipped (too long, no frames, unreadable) stays where it is: no new part.
                if facts.skip_reason is None:
                    new.append(utterance.id)
            elif samples > 0 and samples != before:
                changed.append(
                    f"{utterance.id}: planned {before} samples, the audio now gives {samples}"
                )
        if changed:
            raise StoreError(
                f"{len(changed)} clip(s) of manifest {manifest.corpus!r} differ from the audio already "
                f"extracted into group {self.name!r}:\n{format_rows(changed)}\n"
                "Their stored features would be wrong; extract into a new store or group."
            )
        self._store_manifest(manifest, checksum)
        if new:
            plan = plan_part(
                {utt_id: clips[utt_id] for utt_id in new},
                bytes_per_frame=frame_row_bytes(
                    str(self.provenance["dtype"]),
                    int(self.provenance["num_layers"]),
                    int(self.provenance["dim"]),
                ),
                shard_mb=shard_mb,
            )
            self._create_part(plan, manifest, checksum)
        self._register(manifest, checksum, derived)
        wanted = set(manifest.ids)
        return [p for p in self.group().parts if wanted.intersection(p.ids)]

    def _create_part(self, plan: PartPlan, manifest: Manifest, checksum: str) -> str:
        settings = {k: self.provenance[k] for k in ("dtype", "codec", "num_layers", "dim")}
        key = f"part-{plan.digest(manifest_checksum=checksum, settings=settings)}"
        final = self.group_path / key
        if (final / "zarr.json").is_file():
            return key
        tmp = _temp_dir(self.group_path, key)
        try:
            zstore = LocalStore(tmp)
            num_layers, dim = int(self.provenance["num_layers"]), int(self.provenance["dim"])
            F, C, S = plan.unit_frames, plan.chunk_frames, plan.clips_per_unit
            compressors = _compressors(self.provenance["codec"])
            zarr.create_array(
                store=zstore,
                name="emb",
                shape=(plan.num_units * F, num_layers, dim),
                chunks=(C, num_layers, dim),
                shards=(F, num_layers, dim),
                dtype=self.provenance["dtype"],
                compressors=compressors,
                fill_value=0,
                config={"write_empty_chunks": False},
            )
            if self.provenance["dtype"] in QUANTIZED_DTYPES:  # unit k is chunk k (§6.5)
                zarr.create_array(
                    store=zstore,
                    name=SCALES,
                    shape=(plan.num_units * F, num_layers),
                    chunks=(F, num_layers),
                    dtype="float16",
                    compressors=compressors,
                    fill_value=0,
                    config={"write_empty_chunks": False},
                )
            zarr.create_array(
                store=zstore,
                name="means",
                shape=(plan.num_clips, num_layers, dim),
                chunks=(S, num_layers, dim),
                dtype="float32",
                compressors=compressors,
                fill_value=0,
                config={"write_empty_chunks": False},
            )
            _write_blob_array(zstore, "ids", _blob(list(plan.ids)))
            _write_small_array(zstore, "offsets", plan.offsets.astype(np.int64))
            _write_small_array(zstore, "num_frames", plan.num_frames.astype(np.int32))
            _write_small_array(zstore, "num_samples", plan.num_samples.astype(np.int64))
            attributes = {
                PART_ATTR: {
                    "manifest": checksum,
                    "corpus": manifest.corpus,
                    "num_clips": plan.num_clips,
                    "clips_per_unit": S,
                    "num_units": plan.num_units,
                    "unit_frames": F,
                    "chunk_frames": C,
                    "created": utc_now(),
                    "plan_skipped": dict(plan.plan_skipped),
                }
            }
            write_json_atomic(tmp / "zarr.json", group_document(attributes), durable=False)
            write_json_atomic(tmp / "done" / "zarr.json", group_document({}), durable=False)
            (tmp / CLAIMS_DIR).mkdir()
            self._publish(tmp, final)
        finally:
            remove_tree(tmp)
        return key

    # -- units ------------------------------------------------------------------------------
    def pending_units(
        self,
        parts: Iterable[Part],
        *,
        rank: int = 0,
        world_size: int = 1,
        retry_skipped: bool = False,
        ids: Iterable[str] | None = None,
    ) -> list[tuple[Part, int]]:
        """Units this rank must (re)write: ``k mod world_size == rank`` and no record yet.

        With ``ids``, only units holding at least one of them; with ``retry_skipped``, also
        finished units that recorded skipped clips.
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size={world_size}), got {rank}")
        wanted = None if ids is None else set(ids)
        todo = []
        for part in parts:
            for unit in range(part.num_units):
                if unit % world_size != rank:
                    continue
                record = part.records.get(unit)
                if record is not None and not (retry_skipped and record["skipped"]):
                    continue
                clips = part.unit_clips(unit)
                if wanted is not None and not any(part.ids[i] in wanted for i in clips):
                    continue
                todo.append((part, unit))
        return todo

    def buffer(self, part: Part, unit: int) -> UnitBuffer:
        """An empty in-memory unit to fill with ``put``/``skip`` and pass to :meth:`commit`."""
        return UnitBuffer(
            part,
            unit,
            dtype=self.provenance["dtype"],
            num_layers=int(self.provenance["num_layers"]),
            dim=int(self.provenance["dim"]),
        )

    def _array(self, part: Part, name: str) -> zarr.Array:
        key = (part.key, name)
        if key not in self._arrays:
            self._arrays[key] = zarr.open_array(
                store=self._zstore, path=f"{self.key}/{part.key}/{name}", mode="r+"
            )
        return self._arrays[key]

    def _unit_files(self, part: Part, unit: int) -> list[Path]:
        return [part.unit_file(unit, name) for name in part.unit_arrays]

    # -- ownership ----------------------------------------------------------------------------
    def claim(
        self, part: Part, unit: int, *, retry_skipped: bool = False, rewrite: bool = False
    ) -> ClaimOutcome:
        """Own ``unit`` before computing it (§8): a claim of ours, or who holds it.

        After the claim is won, the unit's record is read again: a unit another writer finished
        meanwhile is given back (``ClaimOutcome()``), unless ``retry_skipped`` asks to redo a
        finished unit that still records skipped clips, or ``rewrite`` any finished unit.
        """
        claim, holder = claim_unit(
            part.path,
            unit,
            self.owner,
            break_foreign=self.break_claims,
            durable=self.durable,
        )
        if claim is None:
            return ClaimOutcome(holder=holder)
        record = self._read_record(part, unit)
        if record is not None and not rewrite and not (retry_skipped and record.get("skipped")):
            release_claim(claim, durable=self.durable)
            part.records[unit] = record
            return ClaimOutcome()
        return ClaimOutcome(claim=claim)

    def release(self, claim: Claim) -> None:
        """Give a unit up without writing it (an interrupted run): a rerun redoes it at once."""
        release_claim(claim, durable=self.durable)

    def _read_record(self, part: Part, unit: int) -> dict[str, Any] | None:
        node = part.path / "done" / str(unit) / "zarr.json"
        if not node.is_file():
            return None
        return read_node(node).get("attributes", {}).get(UNIT_ATTR)

    def _require_ownership(self, claim: Claim, part: Part, unit: int) -> None:
        if not still_owner(claim):
            raise UnitClaimedError(
                f"unit {unit} of {part.key} in group {self.name!r} was claimed by another writer "
                "while this one computed it (its claim was broken with --break-claims while it "
                "still ran); this writer leaves the unit to the other one."
            )

    def clear_unit(self, part: Part, unit: int) -> None:
        """Forget a unit: its record first (so readers stop seeing it), then its data files.

        Only the unit's owner may call this (``commit`` does, under its claim).
        """
        record_dir = part.path / "done" / str(unit)
        record = record_dir / "zarr.json"
        if record.exists():
            record.unlink()
            if self.durable:
                fsync_dir(record_dir)
        remove_partials(record_dir)
        for path in self._unit_files(part, unit):
            path.unlink(missing_ok=True)
            remove_partials(path.parent)
        part.records.pop(unit, None)

    def commit(
        self,
        buffer: UnitBuffer,
        *,
        info: Mapping[str, Any] | None = None,
        claim: Claim | None = None,
    ) -> dict[str, Any]:
        """Write the unit's shard and mean chunk, make them durable, then record the unit done.

        ``claim`` is this writer's claim of the unit (:meth:`claim`); without one, the unit is
        claimed here (:class:`UnitClaimedError` if another writer holds it). The claim is
        checked again before the unit is cleared and before it is recorded, and released after.
        """
        missing = buffer.missing
        if missing:
            raise ValueError(
                f"unit {buffer.unit} of {buffer.part.key} lacks clips {missing[:5]}; put or skip each one."
            )
        part, unit = buffer.part, buffer.unit
        if claim is None:
            outcome = self.claim(part, unit, rewrite=True)
            if outcome.claim is None:
                holder = outcome.holder.describe() if outcome.holder else "another writer"
                raise UnitClaimedError(
                    f"unit {unit} of {part.key} in group {self.name!r} is being written by "
                    f"{holder}; two writers must never write one unit."
                )
            claim = outcome.claim
        try:
            self._require_ownership(claim, part, unit)
            self.clear_unit(part, unit)
            rows = slice(unit * part.unit_frames, (unit + 1) * part.unit_frames)
            self._array(part, "emb")[rows] = buffer.block
            if buffer.scales is not None:
                self._array(part, SCALES)[rows] = buffer.scales
            start = unit * part.clips_per_unit
            self._array(part, "means")[start : start + len(buffer.clips)] = buffer.means
            files = []
            for name, path in zip(part.unit_arrays, self._unit_files(part, unit), strict=True):
                if path.is_file():  # an all-zero shard or chunk is not stored (fill value)
                    files.append(name)
                    if self.durable:
                        fsync_file(path)
                if self.durable and path.parent.is_dir():  # the directories zarr created
                    fsync_chain(path.parent, part.path / name)
            skipped = {utt: reason for utt, reason in buffer.state.items() if reason is not None}
            done_clips = [part.index[u] for u, reason in buffer.state.items() if reason is None]
            flags = {u: list(f) for u, f in sorted(buffer.flags.items()) if u not in skipped}
            record = {
                "unit": unit,
                "clips": len(buffer.clips),
                "frames": int(sum(int(part.num_frames[i]) for i in done_clips)),
                "audio_seconds": float(sum(int(part.num_samples[i]) for i in done_clips))
                / float(self.provenance["sample_rate"]),
                "skipped": skipped,
                "flags": flags,
                "files": files,
                "host": hostname(),
                "pid": os.getpid(),
                "finished": utc_now(),
                **dict(info or {}),
            }
            self._require_ownership(claim, part, unit)
            write_json_atomic(
                part.path / "done" / str(unit) / "zarr.json",
                group_document({UNIT_ATTR: record}),
                durable=self.durable,
            )
        except UnitClaimedError:
            raise
        except BaseException:
            self.release(claim)  # the unit stays unrecorded: any writer may redo it at once
            raise
        release_claim(claim, durable=self.durable)
        part.records[unit] = record
        return record
