"""The embedding store: every hidden layer of a frozen backbone, computed once, read by every stage.

Format: docs/store-format.md. Reader API (docs/architecture.md, "Store contract")::

    from trustser.store import open_store
    group = open_store("cache.zarr").group("whisper_tiny_en_offline")
    group.ids, group.skipped, group.manifest(), group.frames(id), group.means(ids)
    for batch in group.batches(ids, batch_size=64, shuffle=True, seed=0): ...
    features = group.load(ids)   # in RAM, same .batches(...)

Writing goes through :func:`trustser.extract.extract`, which drives :class:`StoreWriter`.
"""

from trustser.store.batching import Batch, bucket_batches, pad_batch
from trustser.store.format import (
    CODECS,
    DTYPES,
    FORMAT,
    FORMAT_VERSION,
    MissingFeaturesError,
    ProvenanceMismatchError,
    StoreError,
    StoreFormatError,
)
from trustser.store.plan import DEFAULT_SHARD_MB, PartPlan, plan_part
from trustser.store.reader import (
    BatchIterable,
    InMemoryFeatures,
    Part,
    Store,
    StoreGroup,
    open_store,
)
from trustser.store.verify import GroupReport, VerifyReport, verify_store
from trustser.store.writer import StoreWriter, UnitBuffer

__all__ = [
    "CODECS",
    "DEFAULT_SHARD_MB",
    "DTYPES",
    "FORMAT",
    "FORMAT_VERSION",
    "Batch",
    "BatchIterable",
    "GroupReport",
    "InMemoryFeatures",
    "MissingFeaturesError",
    "Part",
    "PartPlan",
    "ProvenanceMismatchError",
    "Store",
    "StoreError",
    "StoreFormatError",
    "StoreGroup",
    "StoreWriter",
    "UnitBuffer",
    "VerifyReport",
    "bucket_batches",
    "open_store",
    "pad_batch",
    "plan_part",
    "verify_store",
]
