"""The store's on-disk vocabulary (docs/store-format.md), its node documents and the checks
every reader applies.

Everything a reader refuses is decided here, in one place: unknown format versions, missing
required attributes, codecs outside the allow-list (no pickle), and object-like data types. The
root node is created here too (:func:`create_root`), since both the writer and a reader opened
with ``mode="a"`` create it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from trustser._validation import TrustSERError
from trustser._version import __version__
from trustser.store._fs import create_json_exclusive, make_dirs

__all__ = [
    "ALLOWED_CODECS",
    "ALLOWED_DATA_TYPES",
    "CODECS",
    "DERIVED_KEY",
    "DTYPES",
    "FORMAT",
    "FORMAT_VERSION",
    "GROUP_ATTR",
    "MANIFEST_ATTR",
    "MANIFEST_REF_ATTR",
    "PART_ARRAYS",
    "PART_ATTR",
    "PART_REQUIRED",
    "PROVENANCE_REQUIRED",
    "PROVENANCE_UNCOMPARED",
    "QUANTIZED_DTYPES",
    "QUANTIZED_UNIT_FILES",
    "READABLE_FORMAT_VERSIONS",
    "ROOT_ATTR",
    "SCALES",
    "UNIT_ATTR",
    "UNIT_FILES",
    "MissingFeaturesError",
    "MissingUnitDataError",
    "ProvenanceMismatchError",
    "StoreError",
    "StoreFormatError",
    "check_array_metadata",
    "create_root",
    "frame_row_bytes",
    "group_document",
    "provenance_differences",
    "read_node",
    "require_keys",
    "unit_files",
    "utc_now",
]

FORMAT = "trustser-store"
FORMAT_VERSION = 4
# Version 2 adds unit claims (§8) and the unit record's files, flags, device and versions (§7);
# version 3 adds int8 groups: 8-bit codes in ``emb`` and a float16 ``scales`` array (§6.5);
# version 4 adds derived manifests (corrupted copies of clips, §4.1): a manifest reference
# carrying ``derived`` is not one of the group's corpora.
# Older stores are read as they are and upgraded by the first writer of this version (§3).
READABLE_FORMAT_VERSIONS = (1, 2, 3, 4)

ROOT_ATTR = "trustser_store"
GROUP_ATTR = "trustser_group"
PART_ATTR = "trustser_part"
UNIT_ATTR = "trustser_unit"
MANIFEST_ATTR = "trustser_manifest"
MANIFEST_REF_ATTR = "trustser_manifest_ref"
# A manifest reference with this key names a derived manifest (§4.1, version 4): what the clips
# were derived from and how; it is none of the group's corpora.
DERIVED_KEY = "derived"

DTYPES = ("float16", "float32", "int8")  # choices for the frame array
QUANTIZED_DTYPES = frozenset({"int8"})  # frame dtypes stored as codes plus per-row scales
CODECS = ("none", "zstd")  # choices for the frame and mean arrays
ALLOWED_CODECS = frozenset({"bytes", "zstd", "crc32c", "sharding_indexed"})
ALLOWED_DATA_TYPES = frozenset({"uint8", "int8", "int32", "int64", "float16", "float32"})

PROVENANCE_REQUIRED = (
    "backbone",
    "weights_sha256",
    "num_layers",
    "dim",
    "sample_rate",
    "max_seconds",
    "dtype",
    "codec",
)
# Keys that describe the run, not the features: never part of the "same configuration" check.
# ``store_format_version`` is the container version the group was created under (§3).
PROVENANCE_UNCOMPARED = frozenset({"versions", "created", "store_format_version"})

PART_REQUIRED = (
    "manifest",
    "corpus",
    "num_clips",
    "clips_per_unit",
    "num_units",
    "unit_frames",
    "chunk_frames",
    "created",
    "plan_skipped",
)
PART_ARRAYS = ("ids", "offsets", "num_frames", "num_samples", "emb", "means")
UNIT_FILES = ("emb", "means")  # the arrays with one file per unit: shard k of emb, chunk k of means
SCALES = "scales"  # int8 groups: float16 [U·F, L], chunk k = unit k (§6.5)
QUANTIZED_UNIT_FILES = ("emb", SCALES, "means")


def unit_files(dtype: str) -> tuple[str, ...]:
    """The arrays with one file per unit in a group of frame dtype ``dtype``."""
    return QUANTIZED_UNIT_FILES if dtype in QUANTIZED_DTYPES else UNIT_FILES


def frame_row_bytes(dtype: str, num_layers: int, dim: int) -> int:
    """Bytes one frame row takes on disk: ``L·D·itemsize``, plus ``2·L`` of scales for int8."""
    row = int(num_layers) * int(dim) * np.dtype(dtype).itemsize
    return row + (2 * int(num_layers) if dtype in QUANTIZED_DTYPES else 0)


class StoreError(TrustSERError, ValueError):
    """A store that cannot serve the request; the message names the path and what to do."""


class StoreFormatError(StoreError):
    """The bytes on disk break docs/store-format.md (or come from an unknown format version)."""


class ProvenanceMismatchError(StoreError):
    """An existing group was written with a different backbone configuration."""


class MissingUnitDataError(StoreFormatError):
    """A unit recorded done whose data file is gone: an error, never zeros."""


class MissingFeaturesError(StoreError, KeyError):
    """Features were requested for a clip the group does not have (skipped or not extracted)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def group_document(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """A Zarr v3 group ``zarr.json`` carrying ``attributes``."""
    return {"zarr_format": 3, "node_type": "group", "attributes": dict(attributes)}


def create_root(path: str | os.PathLike, *, durable: bool = True) -> Path:
    """Create an empty store at ``path`` (no-op if one exists; concurrent callers are safe)."""
    path = make_dirs(path, durable=durable)
    root = {
        ROOT_ATTR: {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": utc_now(),
            "trustser_version": __version__,
        }
    }
    create_json_exclusive(path / "zarr.json", group_document(root), durable=durable)
    make_dirs(path / "manifests", durable=durable)
    create_json_exclusive(path / "manifests" / "zarr.json", group_document({}), durable=durable)
    return path


def read_node(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a ``zarr.json`` document; a missing or broken one is a format error naming the file."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreFormatError(
            f"{path} is missing; the store is incomplete or not a Zarr v3 store."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StoreFormatError(
            f"{path} is not valid JSON ({error}); the store is damaged — delete that node "
            "(for a unit record: its done/<k> directory) and run the extraction again to rewrite it."
        ) from None
    if not isinstance(document, dict) or document.get("zarr_format") != 3:
        raise StoreFormatError(f"{path} is not Zarr v3 metadata (zarr_format must be 3).")
    return document


def _codec_names(codecs: Iterable[Any]) -> Iterable[str]:
    for codec in codecs:
        name = (
            codec
            if isinstance(codec, str)
            else codec.get("name")
            if isinstance(codec, dict)
            else None
        )
        yield str(name)
        if isinstance(codec, dict) and name == "sharding_indexed":
            config = codec.get("configuration", {})
            yield from _codec_names(config.get("codecs", []))
            yield from _codec_names(config.get("index_codecs", []))


def check_array_metadata(path: str | os.PathLike, document: Mapping[str, Any]) -> None:
    """Refuse an array whose data type or codecs this reader does not allow (never unpickle)."""
    if document.get("node_type") != "array":
        raise StoreFormatError(
            f"{path}: expected an array, found node_type={document.get('node_type')!r}."
        )
    data_type = document.get("data_type")
    if not isinstance(data_type, str) or data_type not in ALLOWED_DATA_TYPES:
        raise StoreFormatError(
            f"{path}: data type {data_type!r} is refused (allowed: {', '.join(sorted(ALLOWED_DATA_TYPES))}); "
            "object, string and bytes types are never read."
        )
    for name in _codec_names(document.get("codecs", [])):
        if name not in ALLOWED_CODECS:
            raise StoreFormatError(
                f"{path}: codec {name!r} is refused (allowed: {', '.join(sorted(ALLOWED_CODECS))}); "
                "this store was not written by trustser, or with an unsafe codec such as pickle."
            )
    if document.get("storage_transformers"):
        raise StoreFormatError(f"{path}: storage transformers are not supported.")


def require_keys(where: str, mapping: Any, keys: Iterable[str]) -> dict[str, Any]:
    """Return ``mapping`` if it is a dict holding every key; otherwise a format error listing them."""
    if not isinstance(mapping, dict):
        raise StoreFormatError(f"{where}: required attributes are missing.")
    missing = [k for k in keys if k not in mapping]
    if missing:
        raise StoreFormatError(
            f"{where}: required attribute(s) {missing} are missing; the store was written by an "
            "incompatible tool or is damaged."
        )
    return mapping


def provenance_differences(stored: Mapping[str, Any], requested: Mapping[str, Any]) -> list[str]:
    """``key: stored → requested`` for every feature-relevant key that differs."""
    rows = []
    for key in sorted((set(stored) | set(requested)) - PROVENANCE_UNCOMPARED):
        a, b = stored.get(key, "<absent>"), requested.get(key, "<absent>")
        if _normalise(a) != _normalise(b):
            rows.append(f"{key}: {a!r} in the store, {b!r} requested")
    return rows


def _normalise(value: Any) -> Any:
    # JSON turns tuples into lists and may turn 6 into 6.0; compare what JSON would store.
    return json.loads(json.dumps(value, sort_keys=True, default=str))
