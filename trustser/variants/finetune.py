"""Fine-tuned top blocks, ``top<K>``: the paper's case study as a model variant.

The store keeps every hidden state, so the input of the top K blocks is already on disk:
:class:`~trustser.heads.finetune.FineTuneClassifier` trains copies of those K blocks jointly with
the paper's head from the cache, and :data:`KIND` makes the result the variant
``<backbone>@top<K>``, a model of its own in the results layout (each fold's trained blocks
beside its emotion head).

The variant's hidden states — the frozen lower layers plus one fold's fine-tuned blocks, not
trained further — are what its privacy heads and probes are trained on
(:func:`variant_features`, :class:`VariantSource`, :func:`variant_means`): what an adversary
holding this deployed model's embeddings infers. Deployed, the base backbone is reloaded and the
fold's blocks swapped in (:func:`trustser.backbones.top_blocks.with_top_blocks`). docs/heads.md,
"Fine-tuning the top blocks".
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustser.backbones.top_blocks import (
    TopBlocks,
    TopBlocksError,
    check_top_blocks_k,
    with_top_blocks,
)
from trustser.deployed.cached import CachedPath
from trustser.deployed.loading import FoldHead
from trustser.heads.crossval import FoldVariant, TaskResult, cross_validate
from trustser.heads.data import FeatureSource, PackedFeatures, StoreGroupError
from trustser.heads.estimator import HeadClassifier
from trustser.heads.finetune import (
    DEFAULT_BLOCK_LR,
    FineTuneClassifier,
    FineTuneError,
    padded_batches,
    read_top_blocks,
    save_top_blocks,
    store_top_blocks,
)
from trustser.heads.tasks import Split, Task, plan_tasks, select_splits
from trustser.heads.training import open_features, store_info
from trustser.runs import ModelName, RunLayout, record_not_measurable
from trustser.store.batching import Batch
from trustser.variants.kind import (
    Exposed,
    FitRequest,
    Variant,
    VariantError,
    VariantFit,
    VariantKind,
    encoder_fold,
    fold_means,
)

__all__ = [
    "KIND",
    "FineTuneKind",
    "VariantSource",
    "cached_top_blocks",
    "finetuned",
    "fit_finetuned",
    "load_variant_blocks",
    "variant_features",
    "variant_means",
    "variant_probe_means",
]


def _lengths(source: Any, ids: Sequence[str]) -> np.ndarray:
    return np.asarray(source.num_frames(list(ids)), dtype=np.int64)


def load_variant_blocks(
    layout: RunLayout,
    variant: Variant,
    provenance: Mapping[str, Any],
    *,
    group: str,
) -> dict[str, TopBlocks]:
    """``{fold: TopBlocks}``: each emotion fold's fine-tuned blocks of ``variant`` (eval mode,
    no gradients), checked against the store group they must extend."""
    k = int(variant.params["k"])
    folds: dict[str, Path] = {}
    emotion_dir = layout.head_dir(variant.name, "emotion")
    if emotion_dir.is_dir():
        for sub in sorted(emotion_dir.iterdir()):
            path = sub / "top_blocks.safetensors"
            if path.is_file():
                folds[sub.name] = path
    if not folds:
        raise FineTuneError(
            f"no fine-tuned top blocks of {variant} under {str(emotion_dir)!r}: train the variant "
            f"first with `trustser heads fit --backbone {variant.base} --task emotion "
            f"--finetune-top {k}` (the same --runs)."
        )
    skeleton = store_top_blocks(provenance, k)
    loaded = {}
    for fold, path in folds.items():
        state, sidecar = read_top_blocks(path)
        expected = provenance.get("weights_sha256")
        if sidecar.get("base_weights_sha256") != expected or sidecar.get("k") != k:
            raise FineTuneError(
                f"{str(path)!r} was fine-tuned from other weights or another K (base "
                f"{sidecar.get('base_weights_sha256')!r}, K {sidecar.get('k')!r}) than the store "
                f"group {group!r} holds ({expected!r}, K {k}); retrain the variant on this store."
            )
        top = copy.deepcopy(skeleton)
        try:
            top.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise FineTuneError(f"{str(path)!r} does not fit {variant}'s blocks: {error}") from None
        loaded[fold] = top.requires_grad_(False).eval()
    return loaded


# ----------------------------------------------------------------------- variant features


def _variant_batches(
    source: Any,
    top: TopBlocks,
    ids: Sequence[str],
    *,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
) -> Iterator[Batch]:
    """Batches of the variant's hidden states ``[B, L, T, D]``: cached lower layers + ``top``."""
    lower = top.input_layer + 1
    top.eval()
    for batch in padded_batches(
        source, ids, layers=lower, batch_size=batch_size, shuffle=shuffle, seed=seed
    ):
        with torch.no_grad():  # never held across the yield: the caller may train on the batch
            upper = top(batch.hidden[:, -1], batch.mask).to("cpu", torch.float32)
        hidden = torch.cat([batch.hidden, upper], dim=1)
        yield Batch(ids=batch.ids, hidden=hidden, mask=batch.mask, lengths=batch.lengths)


def variant_features(
    source: Any, ids: Sequence[str], top: TopBlocks, *, batch_size: int = 64
) -> PackedFeatures:
    """The variant's hidden states of ``ids`` computed once from the cache, in RAM (packed)."""
    ids = list(dict.fromkeys(ids))
    lengths = _lengths(source, ids)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    frames = torch.empty(top.num_layers, int(offsets[-1]), top.dim, dtype=torch.float32)
    row_of = {utterance_id: i for i, utterance_id in enumerate(ids)}
    for batch in _variant_batches(source, top, ids, batch_size=batch_size):
        for row, (utterance_id, length) in enumerate(
            zip(batch.ids, batch.lengths.tolist(), strict=True)
        ):
            start = int(offsets[row_of[utterance_id]])
            frames[:, start : start + length] = batch.hidden[row, :, :length]
    return PackedFeatures(ids, frames, offsets)


class VariantSource:
    """The variant's hidden states computed on the fly from a store group (``--data stream``):
    the store group's ``batches(...)`` API with the top layers recomputed by ``top``."""

    def __init__(self, source: Any, top: TopBlocks) -> None:
        self.source, self.top = source, top
        self.num_layers, self.dim = top.num_layers, top.dim

    def num_frames(self, ids: Sequence[str]) -> np.ndarray:
        return _lengths(self.source, ids)

    def batches(
        self, ids: Sequence[str], batch_size: int = 64, *, shuffle: bool = True, seed: int = 0
    ) -> Iterator[Batch]:
        return _variant_batches(
            self.source, self.top, list(ids), batch_size=batch_size, shuffle=shuffle, seed=seed
        )


def variant_means(
    source: Any, ids: Sequence[str], top: TopBlocks, *, batch_size: int = 64
) -> np.ndarray:
    """Time-means ``[N, L, D]`` of the variant's hidden states (rows in ``ids`` order): the
    source's own means for the cached lower layers, the mean over real frames for the top K."""
    ids = list(ids)
    means = np.array(source.means(ids), dtype=np.float64)
    row_of = {utterance_id: i for i, utterance_id in enumerate(ids)}
    lower = top.input_layer + 1
    for batch in _variant_batches(source, top, ids, batch_size=batch_size):
        mask = batch.mask[:, None, :, None].to(torch.float64)
        upper = batch.hidden[:, lower:].double()
        pooled = (upper * mask).sum(2) / mask.sum(2)
        for row, utterance_id in enumerate(batch.ids):
            means[row_of[utterance_id], lower:] = pooled[row].numpy()
    return means


def variant_probe_means(
    group: Any, layout: RunLayout, variant: Variant, ids: Sequence[str]
) -> Callable[..., np.ndarray]:
    """``means_of(split, task=...)``: the variant's time-means ``[N, L, D]`` of ``ids`` for one
    fold of ``task``, through the fine-tuned blocks :func:`encoder_fold` picks (computed once per
    blocks fold) — what a linear-probe adversary of this deployed model sees."""
    ids = list(ids)
    blocks = load_variant_blocks(layout, variant, group.provenance, group=group.name)
    available = list(blocks)
    cache: dict[str, np.ndarray] = {}

    def means_of(split: Any, *, task: str) -> np.ndarray:
        fold = encoder_fold(split.name, available, task=task)
        if fold not in cache:
            cache[fold] = variant_means(group, ids, blocks[fold])
        return cache[fold]

    return means_of


# --------------------------------------------------------------------------------- fitting


class _FineTunedEmotion(FoldVariant):
    """The emotion task: the top blocks trained with the head, saved beside each fold's head."""

    def __init__(
        self,
        variant: Variant,
        layout: RunLayout,
        provenance: Mapping[str, Any],
        info: Mapping[str, Any],
        blocks: TopBlocks,
        description: Mapping[str, Any],
    ) -> None:
        self.variant, self.layout, self.provenance, self.info = variant, layout, provenance, info
        self.blocks = blocks
        self.description = dict(description)

    def fit_options(self) -> Mapping[str, Any]:
        return {"blocks": self.blocks}

    def after_fold(self, split: Split, model: Any, fold_dir: Path) -> Mapping[str, Any]:
        path = save_top_blocks(
            model.top_blocks_,
            self.layout.top_blocks_path(self.variant.name, split.name),
            metadata={
                "variant": self.variant.name,
                "base_backbone": self.variant.base,
                "base_weights_sha256": self.provenance.get("weights_sha256"),
                "store": {"path": self.info.get("path"), "group": self.variant.base},
                "fold": split.name,
                "block_lr": self.description.get("block_lr"),
            },
        )
        return {"variant": {**self.description, "top_blocks": path.name, "blocks_fold": split.name}}


class _FineTunedFeatures(FoldVariant):
    """A privacy task: a fresh head on the variant's hidden states (each fold through the
    emotion fold's blocks chosen by :func:`~trustser.variants.kind.encoder_fold`)."""

    def __init__(
        self,
        task: Task,
        splits: Sequence[Split],
        blocks: Mapping[str, TopBlocks],
        description: Mapping[str, Any],
        data_mode: str,
        identity: Mapping[str, str],
    ) -> None:
        self.task, self.blocks, self.data_mode, self.identity = task, blocks, data_mode, identity
        self.available = list(blocks)
        for split in splits:  # refuse before any training when a fold lacks its blocks
            encoder_fold(split.name, self.available, task=task.name)
        self.base_description = dict(description)
        self.description = {
            **description,
            "blocks_folds": {s.name: self._fold(s) for s in splits},
        }

    def _fold(self, split: Split) -> str:
        return encoder_fold(split.name, self.available, task=self.task.name)

    def features(self, split: Split, source: FeatureSource) -> FeatureSource:
        top = self.blocks[self._fold(split)]
        if self.data_mode == "memory":
            return variant_features(source, split.ids, top)
        return VariantSource(source, top)

    def after_fold(self, split: Split, model: Any, fold_dir: Path) -> Mapping[str, Any]:
        return {"variant": {**self.base_description, "blocks_fold": self._fold(split)}}

    def fold_identity(self, split: Split) -> Any:
        return self.identity.get(self._fold(split))


def fit_finetuned(variant: Variant, request: FitRequest) -> VariantFit:
    """Fit ``<group>@top<K>``'s tasks (``request.tasks``, emotion first so its blocks exist):
    emotion trains the top K blocks with the head (learning rate ``options["block_lr"]``,
    ``options["block_dropout"]`` overriding the checkpoint's dropout); gender and speaker train
    fresh heads on the variant's hidden states (which need the variant's emotion run first)."""
    from trustser.store import open_group

    start = time.perf_counter()
    k = int(variant.params["k"])
    group, name = open_group(request.store, variant.base, error=StoreGroupError)
    check_top_blocks_k(name, k, group.num_layers)
    manifest = group.manifest()
    plan = plan_tasks(
        ",".join(request.tasks),
        manifest,
        seed=request.seed,
        skip_unmeasurable=request.skip_unmeasurable,
    )
    tasks = sorted(plan.tasks, key=lambda t: t.name != "emotion")
    for skipped, reason in plan.skipped.items():
        record_not_measurable(request.layout, variant.name, skipped, reason)
    chosen = {t.name: select_splits(t, request.folds) for t in tasks}
    needed = list(dict.fromkeys(i for splits in chosen.values() for s in splits for i in s.ids))
    source, mode = open_features(group, needed, data=request.data)
    info = store_info(request.store, group, name)
    description = KIND.description(variant, request)
    results: list[TaskResult] = []
    for task in tasks:
        if task.name == "emotion":
            blocks = store_top_blocks(info["provenance"], k)
            estimator: HeadClassifier = FineTuneClassifier(
                **request.estimator.get_params(),
                block_lr=description["block_lr"],
                block_dropout=description["block_dropout"],
            )
            emotion = {
                **description,
                "trained": "top blocks + head",
                "block_parameters": blocks.num_trainable(),
                "blocks_config": blocks.config(),
            }
            hooks: FoldVariant = _FineTunedEmotion(
                variant, request.layout, info["provenance"], info, blocks, emotion
            )
        else:
            estimator = request.estimator
            hooks = _privacy_hooks(variant, request, task, chosen[task.name], info, mode)
        results.append(
            cross_validate(
                estimator,
                task,
                chosen[task.name],
                source,
                manifest=manifest,
                layout=request.layout,
                model=variant.name,
                store_info=info,
                data_mode=mode,
                variant=hooks,
                callback=request.callback,
                resume=request.resume,
            )
        )
    return VariantFit(
        variant.name,
        tasks=results,
        seconds=time.perf_counter() - start,
        skipped=dict(plan.skipped),
    )


def _privacy_hooks(
    variant: Variant,
    request: FitRequest,
    task: Task,
    splits: Sequence[Split],
    info: Mapping[str, Any],
    mode: str,
) -> _FineTunedFeatures:
    blocks = load_variant_blocks(request.layout, variant, info["provenance"], group=variant.base)
    identity = {
        fold: _file_digest(request.layout.top_blocks_path(variant.name, fold)) for fold in blocks
    }
    description = {
        **_common_description(variant, info["provenance"]),
        "trained": "head only, on the variant's hidden states (blocks frozen)",
    }
    return _FineTunedFeatures(task, splits, blocks, description, mode, identity)


def _common_description(variant: Variant, provenance: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": variant.name,
        "base_backbone": variant.base,
        "kind": "finetune",
        "k": int(variant.params["k"]),
        "base_weights_sha256": provenance.get("weights_sha256"),
        "store_group": variant.base,
    }


def _file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _fold_blocks(head: FoldHead) -> tuple[Path, dict[str, torch.Tensor], int]:
    """``(path, tensors, K)`` of one fold's fine-tuned top blocks, read from beside the fold's
    emotion head and checked to extend the store's backbone (same weights checksum, the
    head's K)."""
    info = head.sidecar.get("variant") or {}
    path = head.path.parent / str(info.get("top_blocks") or "top_blocks.safetensors")
    try:
        state, blocks = read_top_blocks(path)
    except FineTuneError as error:
        raise VariantError(str(error)) from None
    expected = head.provenance.get("weights_sha256")
    if blocks.get("base_weights_sha256") != expected or blocks.get("k") != info.get("k"):
        raise VariantError(
            f"the fine-tuned blocks {str(path)!r} extend weights {blocks.get('base_weights_sha256')!r} "
            f"with K={blocks.get('k')!r}, but the store's backbone has {expected!r} and the head "
            f"K={info.get('k')!r}; retrain the variant on this store."
        )
    return path, state, int(blocks["k"])


def variant_encoder(variant: Variant, encoder: Any, head: FoldHead) -> Any:
    """A copy of the (identity-checked) base ``encoder`` with one fold's fine-tuned top blocks
    swapped in (:func:`_fold_blocks`)."""
    path, state, k = _fold_blocks(head)
    try:
        return with_top_blocks(encoder, state, k=k).to(head.device)
    except TopBlocksError as error:
        raise VariantError(f"{str(path)!r}: {error}") from None


def cached_top_blocks(head_module: torch.nn.Module, head: FoldHead) -> CachedPath:
    """One fold of ``<backbone>@top<K>`` run from the cache: its fine-tuned top K blocks on
    the cached input of block L − K (store layer L − 1 − K), then its emotion head on the
    cached lower layers and the blocks' outputs — the backbone's lower layers are not rerun."""
    path, state, k = _fold_blocks(head)
    top = store_top_blocks(head.provenance, k)
    try:
        top.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise VariantError(f"{str(path)!r} does not fit the top {k} blocks: {error}") from None
    top = top.requires_grad_(False).eval().to(head.device)
    head_module.eval()
    lower = top.input_layer + 1

    def logits(hidden: torch.Tensor, mask: torch.Tensor, genders: Sequence[str]) -> torch.Tensor:
        upper = top(hidden[:, lower - 1], mask).to(hidden.dtype)
        return head_module(torch.cat([hidden[:, :lower], upper], dim=1), mask)

    blocks = f"block{'s' if k > 1 else ''}"
    return CachedPath(
        logits,
        f"the fine-tuned top {k} {blocks} on the cached store layer {lower - 1}, then the "
        "emotion head (the lower layers are read from the cache)",
    )


class FineTuneKind(VariantKind):
    """``top<K>``: the top K encoder blocks fine-tuned jointly with the emotion head."""

    word = "top"
    label = "fine-tuned top blocks"
    summary = "top K encoder blocks fine-tuned jointly with the emotion head"
    form = "top<K> with K >= 1 top blocks (e.g. top1)"
    mitigation = False
    _TAG = re.compile(r"^top(?P<k>[1-9][0-9]*)$")

    def parse(self, tag: str) -> dict[str, Any] | None:
        match = self._TAG.match(tag)
        return {"k": int(match["k"])} if match else None

    def tag(self, *, k: int) -> str:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise VariantError(f"a fine-tuned variant needs K >= 1 top blocks, got {k!r}.")
        return f"top{k}"

    def describe(self, params: Mapping[str, Any]) -> str:
        k = int(params["k"])
        return f"top {k} block{'s' if k > 1 else ''} fine-tuned"

    def description(self, variant: Variant, request: FitRequest) -> dict[str, Any]:
        from trustser.store import open_group

        group, _ = open_group(request.store, variant.base, error=StoreGroupError)
        options = request.options
        return {
            **_common_description(variant, group.provenance),
            "block_lr": float(options.get("block_lr") or DEFAULT_BLOCK_LR),
            "block_dropout": options.get("block_dropout"),
        }

    def fit(self, variant: Variant, request: FitRequest) -> VariantFit:
        return fit_finetuned(variant, request)

    def fold_encoder(self, variant: Variant, encoder: Any, head: FoldHead) -> Any:
        return variant_encoder(variant, encoder, head)

    def cached_path(
        self, variant: Variant, head: torch.nn.Module, fold: FoldHead, layout: RunLayout
    ) -> CachedPath:
        return cached_top_blocks(head, fold)

    def probe_means(
        self, variant: Variant, group: Any, layout: RunLayout, ids: Sequence[str]
    ) -> Callable[..., np.ndarray]:
        """What a linear-probe adversary of this variant reads (:func:`variant_probe_means`)."""
        return variant_probe_means(group, layout, variant, ids)

    def exposed(self, variant: Variant, group: Any, layout: RunLayout) -> Exposed:
        """Each fold's hidden states through its fine-tuned blocks (:func:`variant_means`): what
        the deployed model of that fold exposes."""
        blocks = load_variant_blocks(layout, variant, group.provenance, group=group.name)
        ids = list(group.ids)
        return Exposed(
            fold_means(blocks, ids, lambda fold: variant_means(group, ids, blocks[fold])),
            "time-mean of every hidden state: the store's lower layers + each fold's fine-tuned "
            f"top {int(variant.params['k'])} block(s)",
        )

    def probe_description(self, variant: Variant, group: Any) -> dict[str, Any]:
        return {
            "name": variant.name,
            "base_backbone": group.name,
            "k": int(variant.params["k"]),
            "features": "the store's lower layers + each fold's fine-tuned top blocks (frozen)",
        }


KIND = FineTuneKind()


def finetuned(model: str, finetune_top: int = 0) -> Variant | None:
    """The fine-tuned variant a ``trustser heads fit`` is asked for: ``--finetune-top K`` on a
    backbone, or a ``<backbone>@top<K>`` name (both must agree); None for the frozen backbone."""
    if isinstance(finetune_top, bool) or not isinstance(finetune_top, int) or finetune_top < 0:
        raise VariantError(
            f"--finetune-top takes a number of top blocks >= 0 (0 = frozen), got {finetune_top!r}."
        )
    name = ModelName.parse(model)
    if not name.is_variant:
        return KIND.variant(model, k=finetune_top) if finetune_top else None
    if name.kind != KIND.word:
        raise VariantError(
            f"{model!r} is a variant of kind {name.kind!r}, not a fine-tuned one ({KIND.form}); "
            "heads for it are trained by the command that made it (`trustser mitigate ...`)."
        )
    named = Variant(KIND, name.base, name.tag, KIND.parameters(name.tag))
    if finetune_top not in (0, named.params["k"]):
        raise VariantError(
            f"--backbone {model} names the top {named.params['k']} block(s) but "
            f"--finetune-top {finetune_top} was given; give one of them."
        )
    return named
