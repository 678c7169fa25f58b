"""Reading a store: ``open_store(path).group(backbone)`` and everything the heads need from it.

Only clips whose unit has a record are visible (docs/store-format.md §7), so a reader running
next to a writer never sees half-written features. Every array's metadata is checked against
the allow-list before its bytes are read.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from trustser._validation import check_choice, format_rows, safe_name
from trustser.batching import length_batches
from trustser.manifest import Fold, Manifest, Utterance
from trustser.store.batching import Batch, pad_batch
from trustser.store.format import (
    DERIVED_KEY,
    FORMAT,
    GROUP_ATTR,
    MANIFEST_ATTR,
    MANIFEST_REF_ATTR,
    PART_ARRAYS,
    PART_ATTR,
    PART_REQUIRED,
    PROVENANCE_REQUIRED,
    QUANTIZED_DTYPES,
    READABLE_FORMAT_VERSIONS,
    ROOT_ATTR,
    SCALES,
    UNIT_ATTR,
    UNIT_FILES,
    MissingFeaturesError,
    MissingUnitDataError,
    StoreError,
    StoreFormatError,
    check_array_metadata,
    create_root,
    read_node,
    require_keys,
    unit_files,
)
from trustser.store.quantize import dequantize, quantize
from trustser.store.shards import RawChunkReader, RawShardReader

__all__ = [
    "OPEN_MODES",
    "BatchIterable",
    "InMemoryFeatures",
    "Part",
    "Store",
    "StoreGroup",
    "manifest_from_json",
    "open_store",
]

OPEN_MODES = ("r", "a")
ALLOWED_LOAD_DTYPES = ("float16", "float32", "int8")  # what group.load(dtype=...) converts to
READ_THREADS = 4  # parallel unit reads in load()
PREFETCH_BATCHES = 2  # batches read ahead by BatchIterable


def manifest_from_json(data: dict[str, Any]) -> Manifest:
    """Rebuild a :class:`Manifest` from the ``{"header", "utterances"}`` document of §4."""
    header = data["header"]
    return Manifest(
        corpus=str(header.get("corpus", "custom")),
        utterances=tuple(Utterance.from_dict(u) for u in data["utterances"]),
        folds=tuple(Fold.from_dict(f) for f in header.get("folds", [])),
        fold_scheme=str(header.get("fold_scheme", "")),
        version=str(header.get("version", "")),
        labels=tuple(header.get("labels", ())),
    )


def _read_blob(array: zarr.Array) -> Any:
    return json.loads(np.asarray(array[:], dtype=np.uint8).tobytes().decode("utf-8"))


class Part:
    """One part of a group: its plan (ids, offsets, frame counts) and its unit records.

    An ``emb`` of data type int8 holds 8-bit codes; the part then has a ``scales`` array too
    (§6.5), and :meth:`read_rows` returns the dequantised float32 values.
    """

    def __init__(self, store: Store, group_key: str, key: str) -> None:
        self.key = key
        self.path = store.path / group_key / key
        self._zstore = store._zstore
        self._prefix = f"{group_key}/{key}"
        where = str(self.path / "zarr.json")
        self.attrs = require_keys(
            where,
            read_node(self.path / "zarr.json").get("attributes", {}).get(PART_ATTR),
            PART_REQUIRED,
        )
        metadata = {}
        for name in PART_ARRAYS:
            metadata[name] = read_node(self.path / name / "zarr.json")
            check_array_metadata(self.path / name, metadata[name])
        emb = metadata["emb"]
        self.dtype = str(emb.get("data_type"))
        self.quantized = self.dtype in QUANTIZED_DTYPES
        self.unit_arrays: tuple[str, ...] = unit_files(self.dtype)
        self._raw_scales: RawChunkReader | None = None
        if self.quantized:
            metadata[SCALES] = read_node(self.path / SCALES / "zarr.json")
            check_array_metadata(self.path / SCALES, metadata[SCALES])
            scales = metadata[SCALES]
            if scales.get("data_type") != "float16" or list(scales.get("shape", [])) != list(
                emb["shape"][:2]
            ):
                raise StoreFormatError(
                    f"{self.path / SCALES}: an int8 emb needs float16 scales of shape "
                    f"{emb['shape'][:2]}, found {scales.get('data_type')} {scales.get('shape')}."
                )
            if RawChunkReader.supports(scales):
                self._raw_scales = RawChunkReader(self.path / SCALES, scales)
        self._ndim = {name: len(doc.get("shape", [])) for name, doc in metadata.items()}
        self._raw = RawShardReader(self.path / "emb", emb) if RawShardReader.supports(emb) else None
        self.ids: list[str] = list(_read_blob(self._array("ids")))
        self.offsets = np.asarray(self._array("offsets")[:], dtype=np.int64)
        self.num_frames = np.asarray(self._array("num_frames")[:], dtype=np.int64)
        self.num_samples = np.asarray(self._array("num_samples")[:], dtype=np.int64)
        self.clips_per_unit = int(self.attrs["clips_per_unit"])
        self.unit_frames = int(self.attrs["unit_frames"])
        self.num_units = int(self.attrs["num_units"])
        n = len(self.ids)
        if not (
            n == int(self.attrs["num_clips"]) == self.num_frames.size == self.num_samples.size
            and self.offsets.size == n + 1
        ):
            raise StoreFormatError(
                f"{self.path}: ids, offsets, num_frames and num_samples disagree on the clip count."
            )
        self.index = {utt: i for i, utt in enumerate(self.ids)}
        self.records = self._read_records()

    def _array(self, name: str) -> zarr.Array:
        return zarr.open_array(store=self._zstore, path=f"{self._prefix}/{name}", mode="r")

    @cached_property
    def emb(self) -> zarr.Array:
        return self._array("emb")

    @cached_property
    def means_array(self) -> zarr.Array:
        return self._array("means")

    @cached_property
    def scales_array(self) -> zarr.Array:
        return self._array(SCALES)

    def _read_records(self) -> dict[int, dict[str, Any]]:
        records: dict[int, dict[str, Any]] = {}
        done = self.path / "done"
        if not done.is_dir():
            return records
        for entry in os.listdir(done):
            if not entry.isdigit() or not (done / entry / "zarr.json").is_file():
                continue  # temporary files, or a record that was never completed
            node = done / entry / "zarr.json"
            record = require_keys(
                str(node), read_node(node).get("attributes", {}).get(UNIT_ATTR), ("unit", "skipped")
            )
            unit = int(entry)
            if unit >= self.num_units or int(record["unit"]) != unit:
                raise StoreFormatError(
                    f"{node}: unit record {record['unit']!r} does not belong at done/{entry}."
                )
            records[unit] = record
        return records

    def unit_of(self, index: int) -> int:
        return index // self.clips_per_unit

    def unit_file(self, unit: int, name: str) -> Path:
        """Shard ``unit`` of ``emb``, chunk ``unit`` of ``means`` or of ``scales`` (default chunk
        key encoding)."""
        zeros = ("0",) * (self._ndim.get(name, 3) - 1)
        return self.path.joinpath(name, "c", str(int(unit)), *zeros)

    def expected_files(self, unit: int) -> tuple[str, ...]:
        """Data files a done unit must have (§7): the record's ``files``; a version-1 record
        without that list expects both whenever it stores frames."""
        record = self.records.get(unit)
        if record is None:
            return ()
        if "files" in record:
            return tuple(str(n) for n in record["files"] if n in self.unit_arrays)
        done = [i for i in self.unit_clips(unit) if self.ids[i] not in record["skipped"]]
        frames = record.get("frames", int(sum(int(self.num_frames[i]) for i in done)))
        return UNIT_FILES if int(frames) > 0 else ()

    def missing_files(self, unit: int) -> list[str]:
        """Expected data files of a done unit that are not on disk."""
        return [n for n in self.expected_files(unit) if not self.unit_file(unit, n).is_file()]

    def damage(self, unit: int, missing: Sequence[str], group_name: str) -> str:
        """The one message for a done unit whose data is gone: which unit, and how to redo it."""
        record = self.records.get(unit, {})
        files = ", ".join(str(self.unit_file(unit, n).relative_to(self.path)) for n in missing)
        return (
            f"group {group_name!r}: unit {unit} of {self.key} is recorded done "
            f"({record.get('frames', '?')} frames) but its data is missing ({files}); its "
            "features cannot be read. Re-extract it: delete the record "
            f"{self.path / 'done' / str(unit)} and rerun the same `trustser extract` command "
            "(`trustser store verify --deep` lists every damaged unit)."
        )

    def check_unit_data(
        self, unit: int, group_name: str = "?", names: Sequence[str] | None = None
    ) -> None:
        """Raise :class:`MissingUnitDataError` if a done unit's data files (``names``, default:
        all of the unit's arrays) are gone."""
        names = self.unit_arrays if names is None else names
        missing = [n for n in self.missing_files(unit) if n in names]
        if missing:
            raise MissingUnitDataError(self.damage(unit, missing, group_name))

    def unit_clips(self, unit: int) -> range:
        start = unit * self.clips_per_unit
        return range(start, min(start + self.clips_per_unit, len(self.ids)))

    def read_stored(
        self,
        start: int,
        count: int,
        group_name: str = "?",
        *,
        out: np.ndarray | None = None,
        scales_out: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows ``[start, start + count)`` (within one unit) exactly as stored: ``(emb rows
        [count, L, D] in the stored dtype, scales [count, L] float16 or None)``.

        ``out`` / ``scales_out`` receive the rows in place (the in-RAM load reads straight into
        its arrays). A done unit whose files are missing raises :class:`MissingUnitDataError`.
        """
        names = self.unit_arrays[:-1]  # emb (and scales), not means
        if count:
            self.check_unit_data(start // self.unit_frames, group_name, names)
        if self._raw is not None:
            rows = self._raw.read(start, count, out=out)
        else:
            rows = np.asarray(self.emb[start : start + count])
            if out is not None:
                out[...] = rows
                rows = out
        if not self.quantized:
            return rows, None
        if self._raw_scales is not None:
            scales = self._raw_scales.read(start, count, out=scales_out)
        else:
            scales = np.asarray(self.scales_array[start : start + count])
            if scales_out is not None:
                scales_out[...] = scales
                scales = scales_out
        return rows, scales

    def read_rows(self, start: int, count: int, group_name: str = "?") -> np.ndarray:
        """Rows ``[start, start + count)`` of ``emb`` (within one unit), uncompressed fast path
        first, as values: the stored float dtype, or float32 dequantised from int8 codes.

        A done unit whose shard is missing raises :class:`MissingUnitDataError` (never zeros).
        """
        rows, scales = self.read_stored(start, count, group_name)
        return rows if scales is None else dequantize(rows, scales)

    def rows(self, index: int, group_name: str = "?") -> np.ndarray:
        """Clip ``index``'s frames ``[T, L, D]``: the group's float dtype, float32 for int8."""
        return self.read_rows(int(self.offsets[index]), int(self.num_frames[index]), group_name)


class _Features:
    """What the group on disk and its in-memory copy share: lookups and length-bucketed batches."""

    provenance: dict[str, Any]
    name: str

    @property
    def num_layers(self) -> int:
        return int(self.provenance["num_layers"])

    @property
    def dim(self) -> int:
        return int(self.provenance["dim"])

    def _length(self, utt_id: str) -> int:
        raise NotImplementedError

    def _rows(self, utt_id: str) -> np.ndarray:
        raise NotImplementedError

    def _check_ids(self, ids: Sequence[str] | None) -> list[str]:
        raise NotImplementedError

    def num_frames(self, ids: Sequence[str] | None = None) -> np.ndarray:
        """Frame counts ``T_i`` of ``ids`` (default: every done clip), int64."""
        return np.array([self._length(i) for i in self._check_ids(ids)], dtype=np.int64)

    def frames(self, utt_id: str) -> np.ndarray:
        """One clip's hidden states, ``[L, T, D]`` float32."""
        (utt_id,) = self._check_ids([utt_id])
        return np.ascontiguousarray(
            np.asarray(self._rows(utt_id)).transpose(1, 0, 2), dtype=np.float32
        )

    def batches(
        self,
        ids: Sequence[str] | None = None,
        batch_size: int = 64,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
    ) -> BatchIterable:
        """Length-bucketed minibatches over ``ids`` (default: every done clip); see ``Batch``."""
        ids = self._check_ids(ids)
        lengths = [self._length(i) for i in ids]
        order = length_batches(
            lengths, batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
        return BatchIterable(self, [[ids[i] for i in batch] for batch in order])


class BatchIterable:
    """Batches planned up front (so ``len()`` works); rows are read while the caller computes."""

    def __init__(self, source: _Features, plan: list[list[str]]) -> None:
        self._source = source
        self.plan = plan

    def __len__(self) -> int:
        return len(self.plan)

    def _make(self, ids: list[str]) -> Batch:
        return pad_batch(ids, [self._source._rows(i) for i in ids])

    def __iter__(self) -> Iterator[Batch]:
        if isinstance(self._source, InMemoryFeatures):
            for ids in self.plan:
                yield self._make(ids)
            return
        # From disk: one background thread reads and pads the next batch while the caller
        # computes on the current one (many small tasks would cost more than they hide).
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trustser-read")
        try:
            pending: deque = deque(
                pool.submit(self._make, ids) for ids in self.plan[:PREFETCH_BATCHES]
            )
            upcoming = iter(self.plan[PREFETCH_BATCHES:])
            while pending:
                batch = pending.popleft().result()
                following = next(upcoming, None)
                if following is not None:
                    pending.append(pool.submit(self._make, following))
                yield batch
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class InMemoryFeatures(_Features):
    """A set of clips loaded into RAM (``group.load``): the same lookups and batches, no disk.

    ``rows`` keep the dtype they were loaded in; int8 codes come with their ``scales [ΣT, L]``
    and are dequantised clip by clip as batches are cut, so RAM holds the store's own bytes.
    """

    def __init__(
        self,
        *,
        name: str,
        provenance: dict[str, Any],
        ids: Sequence[str],
        rows: np.ndarray,
        offsets: np.ndarray,
        means: np.ndarray,
        scales: np.ndarray | None = None,
    ) -> None:
        self.name = name
        self.provenance = provenance
        self.ids = list(ids)
        self.rows = rows  # [ΣT, L, D], gap-free
        self.scales = scales  # [ΣT, L] float16 for int8 rows, else None
        self.offsets = offsets  # [N+1]
        self._means = means  # [N, L, D] float32
        self._index = {utt: i for i, utt in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"InMemoryFeatures({self.name!r}, {len(self.ids)} clips, {self.nbytes / 1e6:.1f} MB)"

    @property
    def nbytes(self) -> int:
        scales = 0 if self.scales is None else self.scales.nbytes
        return int(self.rows.nbytes + scales + self._means.nbytes)

    @property
    def dtype(self) -> str:
        """The dtype the rows are held in (``int8``: codes plus ``scales``)."""
        return str(self.rows.dtype)

    def _check_ids(self, ids: Sequence[str] | None) -> list[str]:
        if ids is None:
            return list(self.ids)
        ids = list(ids)
        missing = [i for i in ids if i not in self._index]
        if missing:
            raise MissingFeaturesError(
                f"{len(missing)} id(s) were not loaded into memory:\n{format_rows(missing)}\n"
                "Pass them to group.load(ids) or use the group itself."
            )
        return ids

    def _length(self, utt_id: str) -> int:
        i = self._index[utt_id]
        return int(self.offsets[i + 1] - self.offsets[i])

    def _rows(self, utt_id: str) -> np.ndarray:
        i = self._index[utt_id]
        rows = self.rows[self.offsets[i] : self.offsets[i + 1]]
        if self.scales is None:
            return rows
        return dequantize(rows, self.scales[self.offsets[i] : self.offsets[i + 1]])

    def means(self, ids: Sequence[str] | None = None) -> np.ndarray:
        """Time-means ``[N, L, D]`` float32."""
        ids = self._check_ids(ids)
        return self._means[[self._index[i] for i in ids]]


class StoreGroup(_Features):
    """The features of one backbone configuration (docs/architecture.md, "Store contract")."""

    def __init__(self, store: Store, key: str) -> None:
        self.store = store
        self.key = key
        self.path = store.path / key
        node = self.path / "zarr.json"
        attrs = require_keys(
            str(node), read_node(node).get("attributes", {}).get(GROUP_ATTR), ("name", "provenance")
        )
        self.name: str = str(attrs["name"])
        self.provenance: dict[str, Any] = require_keys(
            f"{node} provenance", attrs["provenance"], PROVENANCE_REQUIRED
        )
        self._manifest_cache: dict[str, Manifest] = {}
        self.refresh()

    def __repr__(self) -> str:
        return (
            f"StoreGroup({self.name!r}, {len(self._done)} clips done, {len(self._skipped)} skipped, "
            f"{len(self._pending)} pending, L={self.num_layers}, D={self.dim})"
        )

    def refresh(self) -> StoreGroup:
        """Re-read parts and unit records (to see units finished since the group was opened)."""
        entries = sorted(
            p
            for p in os.listdir(self.path)
            if p.startswith("part-") and (self.path / p / "zarr.json").is_file()
        )
        parts = [Part(self.store, self.key, p) for p in entries]
        parts.sort(key=lambda p: (str(p.attrs["created"]), p.key))
        self.parts = parts
        self._done: dict[str, tuple[Part, int]] = {}
        self._skipped: dict[str, str] = {}
        self._pending: dict[str, tuple[Part, int]] = {}
        for part in parts:  # a later part's plan of an id supersedes an earlier one (§4)
            for index, utt in enumerate(part.ids):
                self._done.pop(utt, None)
                self._skipped.pop(utt, None)
                self._pending.pop(utt, None)
                record = part.records.get(part.unit_of(index))
                if record is None:
                    self._pending[utt] = (part, index)
                elif utt in record["skipped"]:
                    self._skipped[utt] = str(record["skipped"][utt])
                else:
                    self._done[utt] = (part, index)
        return self

    @property
    def flags(self) -> dict[str, list[str]]:
        """``{id: flags}`` of done clips extracted with a warning (``silent``, ``truncated``, §7)."""
        out: dict[str, list[str]] = {}
        for utt, (part, index) in self._done.items():
            record = part.records.get(part.unit_of(index)) or {}
            flags = (record.get("flags") or {}).get(utt)
            if flags:
                out[utt] = [str(f) for f in flags]
        return out

    def unit_origins(self) -> dict[str, dict[str, int]]:
        """How many unit records name each device kind and library version (§7).

        ``{"device": {"cpu": 12, "cuda (NVIDIA H200)": 3}, "torch": {"2.14.1": 15}, ...}``;
        records written before version 2 count as ``"unrecorded"``.
        """
        counts: dict[str, dict[str, int]] = {}
        records = [r for part in self.parts for r in part.records.values()]
        keys = sorted({k for r in records for k in (r.get("versions") or {})})
        for record in records:
            versions = record.get("versions") or {}
            values = {"device": str(record.get("device_kind") or "unrecorded")}
            values.update({k: str(versions.get(k, "unrecorded")) for k in keys})
            for key, value in values.items():
                bucket = counts.setdefault(key, {})
                bucket[value] = bucket.get(value, 0) + 1
        return counts

    def mixed_origins(self) -> list[str]:
        """One line per device kind or library whose version differs between the group's units:
        features of one group computed under different software or hardware (a resumed run)."""
        lines = []
        for key, values in self.unit_origins().items():
            if len(values) > 1:
                spread = ", ".join(f"{v} ({n} units)" for v, n in sorted(values.items()))
                what = "device" if key == "device" else f"{key} version"
                lines.append(f"{what} differs between units: {spread}")
        return lines

    # -- what is in the group -------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        """Utterance ids with complete features (part order, then plan order)."""
        return list(self._done)

    @property
    def derived_ids(self) -> list[str]:
        """The done clips of derived manifests (corrupted copies, §4.1), part order: ``ids``
        holds them too, ``ids`` less these are the corpora's clips."""
        derived = {str(r["checksum"]) for r in self._manifest_refs(derived=True)}
        if not derived:
            return []
        return [u for u, (p, _) in self._done.items() if str(p.attrs["manifest"]) in derived]

    @property
    def skipped(self) -> dict[str, str]:
        """``{id: reason}`` for clips that could not be extracted."""
        return dict(self._skipped)

    @property
    def pending(self) -> list[str]:
        """Planned clips whose unit is not written yet (an unfinished or running extraction)."""
        return list(self._pending)

    @property
    def dtype(self) -> str:
        return str(self.provenance["dtype"])

    @property
    def codec(self) -> str:
        return str(self.provenance["codec"])

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self._done

    def __len__(self) -> int:
        return len(self._done)

    # -- manifests ------------------------------------------------------------------------
    def _manifest_refs(self, *, derived: bool = False) -> list[dict[str, Any]]:
        """The group's manifest references: the corpora's (``derived=False``) or the derived
        manifests' (``derived=True``, §4.1)."""
        base = self.path / "manifests"
        refs = []
        if base.is_dir():
            for entry in sorted(os.listdir(base)):
                node = base / entry / "zarr.json"
                if node.is_file():
                    ref = read_node(node).get("attributes", {}).get(MANIFEST_REF_ATTR)
                    ref = require_keys(str(node), ref, ("checksum", "corpus", "registered"))
                    if (DERIVED_KEY in ref) == derived:
                        refs.append(ref)
        return refs

    @property
    def corpora(self) -> list[str]:
        """Corpus names of the manifests extracted into this group (derived ones left out)."""
        return sorted({str(r["corpus"]) for r in self._manifest_refs()})

    def derived_manifests(self) -> list[dict[str, Any]]:
        """The references of the derived manifests extracted into this group (corrupted copies
        of its clips, §4.1): ``checksum``, ``corpus``, ``registered`` and ``derived`` (what they
        were derived from and how), oldest first. Their clips are none of the corpora's."""
        refs = self._manifest_refs(derived=True)
        return sorted(refs, key=lambda r: (str(r["registered"]), str(r["checksum"])))

    def manifest(self, corpus: str | None = None) -> Manifest:
        """The corpus's latest manifest (folds included), restricted to the done clips."""
        refs = self._manifest_refs()
        corpora = sorted({str(r["corpus"]) for r in refs})
        if not corpora:
            raise StoreError(
                f"group {self.name!r} of {self.store.path} records no manifest; run `trustser extract`."
            )
        if corpus is None:
            if len(corpora) > 1:
                raise StoreError(
                    f"group {self.name!r} holds clips of several corpora ({', '.join(corpora)}); "
                    "name the one you want (corpus=... / --corpus)."
                )
            corpus = corpora[0]
        mine = [r for r in refs if r["corpus"] == corpus]
        if not mine:
            raise StoreError(
                f"group {self.name!r} has no manifest of corpus {corpus!r}; it has: {', '.join(corpora)}."
            )
        latest = max(mine, key=lambda r: (str(r["registered"]), str(r["checksum"])))
        full = self.store.manifest(str(latest["checksum"]))
        return full.filter(lambda u: u.id in self._done)

    # -- features ---------------------------------------------------------------------------
    def _check_ids(self, ids: Sequence[str] | None) -> list[str]:
        if ids is None:
            return self.ids
        if isinstance(ids, str):
            raise TypeError("pass a list of utterance ids, not a single string")
        ids = list(ids)
        missing = [i for i in ids if i not in self._done]
        if missing:
            rows = []
            for i in missing:
                if i in self._skipped:
                    rows.append(f"{i}: skipped at extraction ({self._skipped[i]})")
                elif i in self._pending:
                    rows.append(
                        f"{i}: not extracted yet (its unit is unfinished; rerun `trustser extract`)"
                    )
                else:
                    rows.append(f"{i}: not in this group (extract its manifest with this backbone)")
            raise MissingFeaturesError(
                f"group {self.name!r} in {self.store.path} has no features for {len(missing)} id(s):\n"
                + format_rows(rows)
            )
        return ids

    def _length(self, utt_id: str) -> int:
        part, index = self._done[utt_id]
        return int(part.num_frames[index])

    def _rows(self, utt_id: str) -> np.ndarray:
        part, index = self._done[utt_id]
        return part.rows(index, self.name)

    def num_samples(self, ids: Sequence[str] | None = None) -> np.ndarray:
        """16 kHz samples each clip was extracted from (after the crop), int64."""
        located = [self._done[i] for i in self._check_ids(ids)]
        return np.array([int(p.num_samples[i]) for p, i in located], dtype=np.int64)

    def means(self, ids: Sequence[str] | None = None) -> np.ndarray:
        """Time-means ``[N, L, D]`` float32, for fast linear probes."""
        ids = self._check_ids(ids)
        out = np.empty((len(ids), self.num_layers, self.dim), dtype=np.float32)
        wanted: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for row, utt in enumerate(ids):
            part, index = self._done[utt]
            wanted.setdefault((id(part), part.unit_of(index)), []).append((row, index))
        parts = {id(p): p for p in self.parts}
        for (part_id, unit), rows in wanted.items():
            part = parts[part_id]
            part.check_unit_data(unit, self.name, ("means",))
            start = unit * part.clips_per_unit
            chunk = part.means_array[start : start + part.clips_per_unit]
            for row, index in rows:
                out[row] = chunk[index - start]
        return out

    def nbytes(self, ids: Sequence[str] | None = None, *, dtype: str | None = None) -> int:
        """Bytes ``load(ids)`` would take in memory (frames, int8 scales, float32 means)."""
        ids = self._check_ids(ids)
        target = str(dtype or self.dtype)
        frames = int(sum(self._length(i) for i in ids))
        per_frame = self.num_layers * self.dim
        scales = frames * self.num_layers * 2 if target in QUANTIZED_DTYPES else 0
        return frames * per_frame * np.dtype(target).itemsize + scales + len(ids) * per_frame * 4

    def load(
        self, ids: Sequence[str] | None = None, *, dtype: str | None = None
    ) -> InMemoryFeatures:
        """Read ``ids`` (default: all done clips) into RAM; ``dtype`` defaults to the group's.

        In the group's own dtype the clips are read straight into the result (an int8 group
        keeps its codes and scales: RAM holds what the disk holds); another ``dtype`` converts
        each clip as it is read (dequantised from int8, quantised to int8).
        """
        ids = self._check_ids(ids)
        target = str(dtype or self.dtype)
        if target not in (*ALLOWED_LOAD_DTYPES, self.dtype):
            raise StoreError(
                f"cannot load group {self.name!r} as {target!r}; choose one of "
                f"{', '.join(ALLOWED_LOAD_DTYPES)}."
            )
        quantized = target in QUANTIZED_DTYPES
        lengths = np.array([self._length(i) for i in ids], dtype=np.int64)
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])
        rows = np.empty((total, self.num_layers, self.dim), dtype=np.dtype(target))
        scales = np.empty((total, self.num_layers), dtype=np.float16) if quantized else None
        by_unit: dict[tuple[int, int], list[tuple[int, int]]] = {}
        parts = {id(p): p for p in self.parts}
        for row, utt in enumerate(ids):
            part, index = self._done[utt]
            by_unit.setdefault((id(part), part.unit_of(index)), []).append((row, index))

        def place(row: int, stored: np.ndarray, stored_scales: np.ndarray | None) -> None:
            here = slice(int(offsets[row]), int(offsets[row + 1]))
            if quantized and stored_scales is None:
                rows[here], scales[here] = quantize(stored)
            elif quantized:
                rows[here], scales[here] = stored, stored_scales
            elif stored_scales is not None:
                rows[here] = dequantize(stored, stored_scales)
            else:
                rows[here] = stored

        def read_unit(key: tuple[int, int]) -> None:
            part = parts[key[0]]
            members = by_unit[key]
            if part._raw is not None and part.dtype == target:
                for row, index in members:  # straight into the result: no copy of the unit
                    here = slice(int(offsets[row]), int(offsets[row + 1]))
                    part.read_stored(
                        int(part.offsets[index]),
                        int(part.num_frames[index]),
                        self.name,
                        out=rows[here],
                        scales_out=None if scales is None else scales[here],
                    )
                return
            first = min(int(part.offsets[i]) for _, i in members)
            last = max(int(part.offsets[i] + part.num_frames[i]) for _, i in members)
            span, span_scales = part.read_stored(first, last - first, self.name)  # one read
            for row, index in members:
                start = int(part.offsets[index]) - first
                clip = slice(start, start + int(part.num_frames[index]))
                place(row, span[clip], None if span_scales is None else span_scales[clip])

        with ThreadPoolExecutor(
            max_workers=READ_THREADS, thread_name_prefix="trustser-load"
        ) as pool:
            list(pool.map(read_unit, list(by_unit)))
        return InMemoryFeatures(
            name=self.name,
            provenance=dict(self.provenance),
            ids=ids,
            rows=rows,
            offsets=offsets,
            means=self.means(ids),
            scales=scales,
        )

    def summary(self) -> dict[str, Any]:
        """Counts and sizes for ``trustser store info``."""
        done = [self._done[i] for i in self._done]
        seconds = sum(int(p.num_samples[i]) for p, i in done) / float(
            self.provenance["sample_rate"]
        )
        frames = sum(int(p.num_frames[i]) for p, i in done)
        copies = len(self.derived_ids)
        disk = 0
        for part in self.parts:
            for dirpath, _, files in os.walk(part.path):
                disk += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
        return {
            "name": self.name,
            "backbone": self.provenance.get("backbone"),
            "num_layers": self.num_layers,
            "dim": self.dim,
            "dtype": self.dtype,
            "codec": self.codec,
            "max_seconds": self.provenance.get("max_seconds"),
            "window": self.provenance.get("window"),
            "corpora": self.corpora,
            "parts": len(self.parts),
            "clips_done": len(self._done) - copies,
            "copies_done": copies,  # clips of derived manifests: corrupted copies (§4.1)
            "clips_skipped": len(self._skipped),
            "clips_flagged": len(self.flags),
            "clips_pending": len(self._pending),
            "audio_seconds": seconds,
            "frames": frames,
            "disk_bytes": disk,
            "mixed_origins": self.mixed_origins(),
        }


class Store:
    """An embedding store on disk; ``group(name)`` gives one backbone's features."""

    def __init__(self, path: str | os.PathLike, *, mode: str = "r") -> None:
        check_choice("mode", mode, OPEN_MODES)
        self.path = Path(path)
        self.mode = mode
        root = self.path / "zarr.json"
        if mode == "a" and not root.is_file():
            create_root(self.path)
        if not self.path.is_dir():
            raise StoreError(
                f"no embedding store at {str(self.path)!r}; create one with `trustser extract`."
            )
        if not root.is_file():
            raise StoreFormatError(
                f"{self.path} is not a Zarr v3 store (no zarr.json); is this the right path?"
            )
        attrs = read_node(root).get("attributes", {}).get(ROOT_ATTR)
        if not isinstance(attrs, dict) or attrs.get("format") != FORMAT:
            raise StoreFormatError(
                f"{self.path} is a Zarr store but not a trustser embedding store (no {ROOT_ATTR!r} attribute)."
            )
        version = attrs.get("format_version")
        if version not in READABLE_FORMAT_VERSIONS:
            known = ", ".join(str(v) for v in READABLE_FORMAT_VERSIONS)
            raise StoreFormatError(
                f"{self.path} has store format_version {version!r}; this trustser reads versions "
                f"{known}. Use the trustser version that wrote it, or extract again."
            )
        self.attrs = attrs
        self._zstore = LocalStore(self.path, read_only=(mode == "r"))
        self._groups: dict[str, StoreGroup] = {}
        self._manifests: dict[str, Manifest] = {}

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, backbones={self.backbones})"

    def _group_keys(self) -> dict[str, str]:
        """``{group name: key}`` for every backbone group."""
        keys = {}
        for entry in sorted(os.listdir(self.path)):
            node = self.path / entry / "zarr.json"
            if entry == "manifests" or entry.startswith(".") or not node.is_file():
                continue
            attrs = read_node(node).get("attributes", {}).get(GROUP_ATTR)
            if isinstance(attrs, dict) and "name" in attrs:
                keys[str(attrs["name"])] = entry
        return keys

    @property
    def backbones(self) -> list[str]:
        """Names of the backbone groups in the store."""
        return sorted(self._group_keys())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (
            name in self._group_keys() or safe_name(name) in self._group_keys().values()
        )

    def group(self, name: str) -> StoreGroup:
        """The group of backbone ``name`` (the spec given to extract, or its directory key)."""
        keys = self._group_keys()
        key = keys.get(name)
        if key is None and name in keys.values():
            key = name
        if key is None:
            candidate = safe_name(name)
            key = candidate if candidate in keys.values() else None
        if key is None:
            have = ", ".join(sorted(keys)) or "none"
            raise StoreError(
                f"store {self.path} has no group {name!r} (groups: {have}); "
                f"extract it with `trustser extract --backbone {name} --store {self.path} ...`."
            )
        if key not in self._groups:
            self._groups[key] = StoreGroup(self, key)
        return self._groups[key]

    def manifest(self, checksum: str) -> Manifest:
        """The complete manifest stored under ``checksum`` (§4)."""
        if checksum not in self._manifests:
            path = self.path / "manifests" / checksum
            if not (path / "zarr.json").is_file():
                raise StoreFormatError(
                    f"{self.path}: manifest {checksum} is referenced but missing."
                )
            node = read_node(path / "zarr.json")
            check_array_metadata(path, node)
            require_keys(
                str(path / "zarr.json"),
                node.get("attributes", {}).get(MANIFEST_ATTR),
                ("checksum", "corpus"),
            )
            array = zarr.open_array(store=self._zstore, path=f"manifests/{checksum}", mode="r")
            self._manifests[checksum] = manifest_from_json(_read_blob(array))
        return self._manifests[checksum]


def open_store(path: str | os.PathLike, mode: str = "r") -> Store:
    """Open the embedding store at ``path``: ``"r"`` read-only, ``"a"`` create it if absent."""
    return Store(path, mode=mode)
