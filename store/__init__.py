"""The embedding store: every hidden layer of a frozen backbone, computed once, read by every stage.

Format: docs/store-format.md. Reader API (docs/architecture.md, "Store contract")::

    from trustser.store import open_store
    group = open_store("cache.zarr").group("whisper_tiny_en_offline")
    group, name = open_group("cache.zarr")   # the only group, or a clear error listing them
    group.ids, group.skipped, group.manifest(), group.frames(id), group.means(ids)
    for batch in group.batches(ids, batch_size=64, shuffle=True, seed=0): ...
    features = group.load(ids)   # in RAM, same .batches(...)

Writing goes through :func:`trustser.extract.extract`, which drives :class:`StoreWriter`.
"""

from __future__ import annotations

import os

from trustser._validation import sole_name
from trustser.store.batching import Batch, pad_batch
from trustser.store.format import (
    CODECS,
    DTYPES,
    FORMAT,
    FORMAT_VERSION,
    MissingFeaturesError,
    MissingUnitDataError,
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
from trustser.store.writer import StoreWriter, UnitBuffer, UnitClaimedError

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
    "MissingUnitDataError",
    "Part",
    "PartPlan",
    "ProvenanceMismatchError",
    "Store",
    "StoreError",
    "StoreFormatError",
    "StoreGroup",
    "StoreWriter",
    "UnitBuffer",
    "UnitClaimedError",
    "VerifyReport",
    "open_group",
    "open_store",
    "pad_batch",
    "plan_part",
    "verify_store",
]


def open_group(
    path: str | os.PathLike,
    backbone: str | None = None,
    *,
    error: type[Exception] = StoreError,
) -> tuple[StoreGroup, str]:
    """Open the store at ``path`` read-only and return ``(group, name)`` of one backbone.

    ``backbone=None`` picks the store's only group; with several (or none) ``error`` lists them
    and asks for ``--backbone``. A ``backbone`` the store does not hold raises ``error`` listing
    the groups it does hold, and so does a group whose records cannot be read. Callers pass their
    own ``error`` class (e.g. ``AttackError``) so the message reads as theirs.
    """
    store = open_store(path)
    names = list(store.backbones)
    where = f"store {str(path)!r}"
    if backbone is None:
        backbone = sole_name(
            names, what="backbone groups", where=where, option="--backbone", error=error
        )
    elif backbone not in names and backbone not in store:  # neither a name nor a directory key
        listed = ", ".join(names) or "none"
        raise error(
            f"{where} has no features of backbone {backbone!r} (it holds: {listed}); "
            "extract them with `trustser extract` or pick another --backbone."
        )
    try:
        group = store.group(backbone)
    except StoreFormatError as broken:
        raise error(
            f"{where} group {backbone!r} is unreadable or has no usable provenance ({broken}); "
            "re-extract it with `trustser extract`."
        ) from None
    return group, backbone if backbone in names else group.name
