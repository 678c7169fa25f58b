"""Direct reads of uncompressed ``emb`` shards, following the Zarr v3 ``sharding_indexed`` spec.

With ``--codec none`` (the default) an inner chunk is the raw little-endian bytes of a C-order
``[C, L, D]`` block, and the shard index at the end of the file gives each chunk's offset and
length. A clip's frames are then one ``pread`` per inner chunk they touch, straight into the
output array — several times faster than a general-purpose chunk pipeline for the many small
reads of random minibatches. Anything other than that exact layout is read through zarr.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np

from trustser.store.format import StoreFormatError

__all__ = ["EMPTY", "RawChunkReader", "RawShardReader"]

EMPTY = 2**64 - 1  # index entry of a chunk that was never written (reads as the fill value 0)


def _is_plain_bytes(codecs: Any) -> bool:
    return (
        isinstance(codecs, list)
        and len(codecs) == 1
        and codecs[0].get("name") == "bytes"
        and codecs[0].get("configuration", {}).get("endian", "little") == "little"
    )


class RawShardReader:
    """Rows of a sharded ``[rows, L, D]`` array whose inner chunks are uncompressed."""

    def __init__(self, array_path: Path, metadata: dict[str, Any]) -> None:
        self.path = Path(array_path)
        shape = metadata["chunk_grid"]["configuration"]["chunk_shape"]
        config = metadata["codecs"][0]["configuration"]
        self.shard_rows = int(shape[0])
        self.chunk_rows = int(config["chunk_shape"][0])
        self.tail = tuple(int(s) for s in metadata["shape"][1:])
        self.dtype = np.dtype(metadata["data_type"]).newbyteorder("<")
        self.row_bytes = int(np.prod(self.tail)) * self.dtype.itemsize
        self.chunks_per_shard = self.shard_rows // self.chunk_rows
        self.index_bytes = self.chunks_per_shard * 16 + 4
        self._indexes: dict[int, tuple[tuple[int, int, int], np.ndarray]] = {}

    @staticmethod
    def supports(metadata: dict[str, Any]) -> bool:
        """True for a 3-D sharded array with raw inner chunks spanning whole rows."""
        codecs = metadata.get("codecs", [])
        if len(codecs) != 1 or codecs[0].get("name") != "sharding_indexed":
            return False
        config = codecs[0].get("configuration", {})
        shard = metadata["chunk_grid"]["configuration"]["chunk_shape"]
        inner = config.get("chunk_shape", [])
        index_codecs = config.get("index_codecs", [])
        return (
            len(shard) == 3
            and len(inner) == 3
            and list(inner[1:]) == list(metadata["shape"][1:]) == list(shard[1:])
            and shard[0] % inner[0] == 0
            and _is_plain_bytes(config.get("codecs"))
            and config.get("index_location", "end") == "end"
            and len(index_codecs) == 2
            and _is_plain_bytes(index_codecs[:1])
            and index_codecs[1].get("name") == "crc32c"
        )

    def _shard_file(self, shard: int) -> Path:
        return self.path / "c" / str(shard) / "0" / "0"

    def _index(self, shard: int, fd: int) -> np.ndarray:
        stat = os.fstat(fd)
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        cached = self._indexes.get(shard)
        if cached is not None and cached[0] == key:
            return cached[1]
        if stat.st_size < self.index_bytes:
            raise StoreFormatError(
                f"{self._shard_file(shard)} is shorter than its shard index; the unit is damaged."
            )
        raw = os.pread(fd, self.index_bytes, stat.st_size - self.index_bytes)
        body, checksum = raw[:-4], int.from_bytes(raw[-4:], "little")
        if google_crc32c.value(body) != checksum:
            raise StoreFormatError(
                f"{self._shard_file(shard)}: the shard index fails its CRC32C check; the unit is damaged."
            )
        index = np.frombuffer(body, dtype="<u8").reshape(self.chunks_per_shard, 2)
        self._indexes[shard] = (key, index)
        return index

    def read(self, start: int, count: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``[start, start + count)`` (all inside one shard) as ``[count, *tail]``.

        ``out`` (C-contiguous, of that shape and dtype) receives them instead of a new array.
        """
        out = _output(out, (count, *self.tail), self.dtype)
        if count == 0:
            return out
        shard, local = divmod(start, self.shard_rows)
        if local + count > self.shard_rows:
            raise ValueError("a read may not cross a shard boundary")
        try:
            fd = os.open(self._shard_file(shard), os.O_RDONLY)
        except FileNotFoundError:
            out[...] = 0
            return out  # nothing was stored: every chunk is the fill value
        try:
            index = self._index(shard, fd)
            flat = out.reshape(count, -1).view(np.uint8).reshape(count, self.row_bytes)
            first, last = local // self.chunk_rows, (local + count - 1) // self.chunk_rows
            for chunk in range(first, last + 1):
                offset, nbytes = (int(v) for v in index[chunk])
                if offset == EMPTY:
                    lo = max(local, chunk * self.chunk_rows)
                    hi = min(local + count, (chunk + 1) * self.chunk_rows)
                    flat[lo - local : hi - local] = 0
                    continue
                if nbytes != self.chunk_rows * self.row_bytes:
                    raise StoreFormatError(
                        f"{self._shard_file(shard)}: inner chunk {chunk} has {nbytes} bytes, expected {self.chunk_rows * self.row_bytes}."
                    )
                lo = max(local, chunk * self.chunk_rows)
                hi = min(local + count, (chunk + 1) * self.chunk_rows)
                target = memoryview(flat[lo - local : hi - local]).cast("B")
                got = os.preadv(
                    fd, [target], offset + (lo - chunk * self.chunk_rows) * self.row_bytes
                )
                if got != len(target):
                    raise StoreFormatError(
                        f"{self._shard_file(shard)} is truncated; the unit is damaged."
                    )
        finally:
            os.close(fd)
        return out


def _output(out: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if out is None:
        return np.zeros(shape, dtype=dtype)
    if out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous {dtype} array of shape {shape}")
    return out


class RawChunkReader:
    """Rows of an unsharded ``[rows, *tail]`` array whose chunks are ``(F, *tail)`` raw bytes.

    The int8 groups' ``scales`` (§6.5): chunk ``k`` is unit ``k``'s ``F`` rows, stored as plain
    little-endian bytes, so a clip's scales are one ``pread``.
    """

    def __init__(self, array_path: Path, metadata: dict[str, Any]) -> None:
        self.path = Path(array_path)
        self.chunk_rows = int(metadata["chunk_grid"]["configuration"]["chunk_shape"][0])
        self.tail = tuple(int(s) for s in metadata["shape"][1:])
        self.dtype = np.dtype(metadata["data_type"]).newbyteorder("<")
        self.row_bytes = int(np.prod(self.tail)) * self.dtype.itemsize

    @staticmethod
    def supports(metadata: dict[str, Any]) -> bool:
        """True for an array chunked along rows only, with plain little-endian bytes."""
        grid = metadata.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape", [])
        shape = metadata.get("shape", [])
        return (
            len(shape) >= 1
            and len(grid) == len(shape)
            and list(grid[1:]) == list(shape[1:])
            and _is_plain_bytes(metadata.get("codecs"))
            and metadata.get("chunk_key_encoding", {}).get("name", "default") == "default"
        )

    def _chunk_file(self, chunk: int) -> Path:
        return self.path.joinpath("c", str(chunk), *("0" for _ in self.tail))

    def read(self, start: int, count: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``[start, start + count)`` (all inside one chunk) as ``[count, *tail]``."""
        out = _output(out, (count, *self.tail), self.dtype)
        if count == 0:
            return out
        chunk, local = divmod(start, self.chunk_rows)
        if local + count > self.chunk_rows:
            raise ValueError("a read may not cross a chunk boundary")
        try:
            fd = os.open(self._chunk_file(chunk), os.O_RDONLY)
        except FileNotFoundError:
            out[...] = 0
            return out  # never stored: the fill value
        try:
            target = memoryview(out.reshape(-1).view(np.uint8)).cast("B")
            got = os.preadv(fd, [target], local * self.row_bytes)
            if got != len(target):
                raise StoreFormatError(
                    f"{self._chunk_file(chunk)} is truncated; the unit is damaged."
                )
        finally:
            os.close(fd)
        return out
