"""Fine-tuning the top K encoder blocks from the cache: the paper's case study as a model variant.

The store keeps every hidden state, so the input of the top K blocks — store layer ``L − 1 − K``
— is already on disk. :class:`FineTuneClassifier` trains copies of those K blocks
(:class:`~trustser.backbones.top_blocks.TopBlocks`) jointly with the paper's head: each batch
reads the cached layers ``0 … L − 1 − K``, the blocks recompute layers ``L − K … L − 1`` with
gradients, and the head averages all ``L`` (lower ones from the cache, top ones recomputed). The
rest of the backbone is never run. The result is a *variant*, ``<backbone>@top<K>``
(:class:`trustser.runs.ModelName`), a model of its own in the results layout; per fold only
the trained tensors are saved (:func:`save_top_blocks`).

The variant's hidden states — the frozen lower layers plus one fold's fine-tuned blocks, not
trained further — are what its privacy heads and probes are trained on
(:func:`variant_features`, :class:`VariantSource`, :func:`variant_means`): what an adversary
holding this deployed model's embeddings infers. Attacks reload the base backbone and swap the
blocks in (:func:`trustser.backbones.top_blocks.with_top_blocks`). docs/heads.md, "Fine-tuning
the top blocks".
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from trustser._validation import TrustSERError, check_fitted, check_positive, check_probability
from trustser._version import __version__
from trustser.backbones.top_blocks import TopBlocks, check_top_blocks_k, top_blocks_for_store
from trustser.batching import length_batches, length_mask
from trustser.devices import resolve_device
from trustser.heads.data import (
    DataError,
    FeatureSet,
    PackedFeatures,
    ReplayBatches,
)
from trustser.heads.estimator import (
    EpochEnd,
    EpochSelection,
    HeadClassifier,
    check_labelled,
    dev_uar_scorer,
    head_optimizer,
    run_epochs,
    seeded_rng,
    train_pass,
)
from trustser.heads.model import LayerWeightedHead, save_module
from trustser.runs import FINETUNE_KIND, ModelName, RunLayout
from trustser.store.batching import Batch

__all__ = [
    "DEFAULT_BLOCK_LR",
    "FineTuneClassifier",
    "FineTuneError",
    "FineTunedModel",
    "VariantSource",
    "blocks_fold",
    "finetune_k",
    "load_variant_blocks",
    "padded_batches",
    "read_top_blocks",
    "save_top_blocks",
    "store_top_blocks",
    "variant_features",
    "variant_means",
    "variant_probe_means",
]

# Learning rate of the fine-tuned blocks (the head keeps its 5e-4). Chosen from the literature
# before any run, never tuned on a corpus: speech-encoder fine-tuning recipes use 1e-5 to 5e-5
# for the pretrained encoder — e.g. 1e-5 (head 1e-4) in SpeechBrain's wav2vec 2.0 emotion recipe
# for IEMOCAP, 3e-5 in its Whisper-tiny recipe — and 2e-5 sits inside that range without a
# warm-up, which this recipe does not have (docs/heads.md explains).
DEFAULT_BLOCK_LR = 2e-5


class FineTuneError(TrustSERError, ValueError):
    """Fine-tuning (or a variant's features) asked for in a way that cannot work."""


def finetune_k(backbone: str | None, finetune_top: int = 0) -> int:
    """K for a fit: ``finetune_top``, or the K of a ``<backbone>@top<K>`` name; both must agree."""
    if isinstance(finetune_top, bool) or not isinstance(finetune_top, int) or finetune_top < 0:
        raise FineTuneError(
            f"--finetune-top takes a number of top blocks >= 0 (0 = frozen), got {finetune_top!r}."
        )
    model = ModelName.parse(backbone) if backbone is not None else None
    if model is None or not model.is_variant:
        return finetune_top
    if model.kind != FINETUNE_KIND:
        raise FineTuneError(
            f"{backbone!r} is a variant of kind {model.kind!r}, not a fine-tuned one "
            f"({FINETUNE_KIND}<K>); heads for it are trained by the stage that made it."
        )
    if finetune_top not in (0, model.finetune_top):
        raise FineTuneError(
            f"--backbone {backbone} names the top {model.finetune_top} block(s) but "
            f"--finetune-top {finetune_top} was given; give one of them."
        )
    return model.finetune_top


# ----------------------------------------------------------------------------------- batches


def _lengths(source: Any, ids: Sequence[str]) -> np.ndarray:
    return np.asarray(source.num_frames(list(ids)), dtype=np.int64)


def padded_batches(
    source: Any,
    ids: Sequence[str],
    *,
    layers: int,
    batch_size: int = 64,
    shuffle: bool = False,
    seed: int = 0,
) -> Iterator[Batch]:
    """Zero-padded batches of the first ``layers`` cached layers: ``hidden [B, layers, T, D]``.

    Clips of similar length share a batch (:func:`trustser.batching.length_batches`, shuffled in
    pools by ``seed``), exactly as a store group cuts its own batches, so a store group and the
    same clips in RAM (:class:`PackedFeatures`) give the same batches. Only the layers asked for
    are copied.
    """
    ids = list(ids)
    if not isinstance(source, PackedFeatures):
        for batch in source.batches(ids, batch_size=batch_size, shuffle=shuffle, seed=seed):
            hidden = torch.as_tensor(batch.hidden, dtype=torch.float32)[:, :layers]
            yield Batch(
                ids=list(batch.ids),
                hidden=hidden,
                mask=torch.as_tensor(batch.mask, dtype=torch.bool),
                lengths=torch.as_tensor(batch.lengths),
            )
        return
    lengths = _lengths(source, ids)
    starts = source.offsets[np.asarray(source._rows(ids), dtype=np.int64)] if ids else []
    for chunk in length_batches(lengths, batch_size=batch_size, shuffle=shuffle, seed=seed):
        chosen = [ids[i] for i in chunk]
        counts = torch.from_numpy(lengths[chunk])
        steps = int(counts.max())
        # one gather of the clips' frames and one scatter into the padded batch
        within = torch.cat([torch.arange(int(n)) for n in counts])
        clip_of = torch.repeat_interleave(torch.arange(len(chunk)), counts)
        frames = torch.from_numpy(starts[chunk]).repeat_interleave(counts) + within
        hidden = torch.zeros(len(chosen), steps, layers, source.dim)
        hidden[clip_of, within] = source.gather(frames, layers).transpose(0, 1)
        yield Batch(
            ids=chosen,
            hidden=hidden.transpose(1, 2),
            mask=length_mask(counts, steps),
            lengths=counts,
        )


# ------------------------------------------------------------------------------------- model


class FineTunedModel(nn.Module):
    """Trainable top blocks + the head: ``forward(lower [B, L − K, T, D], mask) -> logits``.

    ``lower`` holds the cached layers ``0 … L − 1 − K``; its last one feeds the blocks, whose K
    outputs complete the ``L`` hidden states the head averages. :meth:`hidden_states` returns
    those ``[B, L, T, D]`` (the variant's features).
    """

    def __init__(self, top: TopBlocks, head: LayerWeightedHead) -> None:
        super().__init__()
        if head.num_layers != top.num_layers or head.dim != top.dim:
            raise FineTuneError(
                f"the head takes {head.num_layers} layers × {head.dim}, the top blocks belong to a "
                f"backbone of {top.num_layers} × {top.dim}."
            )
        self.top = top
        self.head = head

    @property
    def lower_layers(self) -> int:
        """How many cached layers the model reads: ``L − K``."""
        return self.top.input_layer + 1

    def hidden_states(self, lower: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if lower.dim() != 4 or lower.shape[1] != self.lower_layers:
            raise FineTuneError(
                f"expected the cached layers 0..{self.lower_layers - 1} as [B, {self.lower_layers}, "
                f"T, D], got {tuple(lower.shape)}."
            )
        top = self.top(lower[:, -1], mask)  # [B, K, T, D], zero past each length
        return torch.cat([lower.to(top.dtype), top], dim=1)

    def forward(self, lower: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden_states(lower, mask), mask)


def _check_block_features(blocks: TopBlocks, train: FeatureSet, dev: FeatureSet | None) -> None:
    """The features must be those of the blocks' backbone: all its ``L`` layers of width ``D``."""
    for name, part in (("train", train), ("dev", dev)):
        if part is None:
            continue
        shape = (getattr(part.source, "num_layers", None), getattr(part.source, "dim", None))
        if shape != (blocks.num_layers, blocks.dim):
            raise FineTuneError(
                f"the {name} features have L, D = {shape}, but the top blocks belong to "
                f"{blocks.backbone!r} with {blocks.num_layers} × {blocks.dim}; fine-tune from "
                "the store group of that backbone."
            )


def _replayed_dev_batches(
    dev: FeatureSet | None, lower: int, batch_size: int
) -> ReplayBatches | None:
    """Dev clips held in RAM, cut into the same padded batches every epoch and made anew each
    time (RAM keeps the stored dtype); None for other sources (batched when predicted)."""
    if dev is None or not isinstance(dev.source, PackedFeatures):
        return None
    return ReplayBatches(
        lambda: padded_batches(dev.source, dev.ids, layers=lower, batch_size=batch_size)
    )


class FineTuneClassifier(HeadClassifier):
    """:class:`HeadClassifier` whose backbone's top K blocks train with it, fed from the cache.

    Every head hyperparameter means what it does there (Adam 5e-4 for the head, batch 64, the
    step floor, best dev UAR epoch, class-weighted loss, per-layer standardisation with the
    training clips' cached statistics, kept fixed while the blocks change); ``block_lr`` is the
    blocks' own learning rate (:data:`DEFAULT_BLOCK_LR`) and ``block_dropout`` overrides their
    checkpoint's dropout (None keeps it: 0 for Whisper, ~0.1 for wav2vec2-style models).
    ``fit(train, dev, blocks=backbone.top_blocks(K))`` trains a copy of ``blocks`` (never the
    module given); the features must be the store's, all ``L`` layers (the lower ``L − K`` are
    read, the statistics use all). Batches are padded and length-bucketed (the blocks attend
    over frames, so the packed layout of the frozen heads does not apply). Deterministic for a
    seed on CPU.

    Learned state, beside :class:`HeadClassifier`'s: ``model_`` (:class:`FineTunedModel`, eval
    mode), ``top_blocks_`` (the best epoch's blocks), ``trainable_parameters_``.
    """

    _parameter_constraints: ClassVar[dict[str, str]] = {
        **HeadClassifier._parameter_constraints,
        "block_lr": "float > 0",
        "block_dropout": "float in [0, 1] or None (the checkpoint's)",
    }

    def __init__(
        self,
        *,
        block_lr: float = DEFAULT_BLOCK_LR,
        block_dropout: float | None = None,
        **head_parameters: Any,
    ) -> None:
        super().__init__(**head_parameters)
        self.block_lr = block_lr
        self.block_dropout = block_dropout

    def _validate_params(self) -> None:
        super()._validate_params()
        if isinstance(self.block_lr, bool) or not isinstance(self.block_lr, Real):
            raise ValueError(f"block_lr must be a number, got {self.block_lr!r}.")
        check_positive("block_lr", self.block_lr)
        if self.block_dropout is not None:
            check_probability("block_dropout", self.block_dropout)

    def fit(  # type: ignore[override]
        self,
        train: FeatureSet,
        dev: FeatureSet | None = None,
        *,
        blocks: TopBlocks,
        classes: Sequence[str] | None = None,
        callback: Callable[[EpochEnd], None] | None = None,
    ) -> FineTuneClassifier:
        """Train a copy of ``blocks`` with a fresh head on ``train``; keep the best dev epoch."""
        self._validate_params()
        if not isinstance(blocks, TopBlocks):
            raise FineTuneError(
                f"fit needs the backbone's top blocks (backbone.top_blocks(K)), got "
                f"{type(blocks).__name__}."
            )
        classes, index = check_labelled(train, dev, classes)
        _check_block_features(blocks, train, dev)
        device = resolve_device(self.device)
        loss_fn = self._class_weighted_loss(train, classes, device)
        target_of = dict(zip(train.ids, (index[y] for y in train.labels), strict=True))
        lower = blocks.input_layer + 1
        statistics = self._train_statistics(train)
        dev_batches = _replayed_dev_batches(dev, lower, self.batch_size)
        with seeded_rng(device, self.seed):
            model, optimizer = self._new_model(blocks, len(classes), statistics, device)

            def step(batch: Batch) -> torch.Tensor:
                targets = torch.tensor([target_of[i] for i in batch.ids], device=device)
                loss = loss_fn(model(batch.hidden.to(device), batch.mask.to(device)), targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                return loss

            def train_epoch(epoch_seed: int) -> tuple[FineTunedModel, float]:
                model.train()
                batches = padded_batches(
                    train.source,
                    train.ids,
                    layers=lower,
                    batch_size=self.batch_size,
                    shuffle=True,
                    seed=epoch_seed,
                )
                return model, train_pass(batches, step)

            selection = EpochSelection(self.epochs_for(len(train)), callback)
            run_epochs(
                selection,
                seed=self.seed,
                train=train_epoch,
                evaluate=dev_uar_scorer(
                    dev,
                    index,
                    lambda trained: _predict(
                        trained, dev, lower, self.batch_size, device, dev_batches
                    ),
                ),
            )
        selection.restore(model)
        self.model_ = model
        self.top_blocks_ = model.top
        self._record_fit(
            model.head, model, classes, selection, has_dev=dev is not None, device=device
        )
        return self

    def _new_model(
        self,
        blocks: TopBlocks,
        num_classes: int,
        statistics: tuple[torch.Tensor, torch.Tensor] | None,
        device: torch.device,
    ) -> tuple[FineTunedModel, torch.optim.Optimizer]:
        """A trainable copy of ``blocks`` under a fresh head, and their optimiser (the blocks at
        ``block_lr``); initialised from the current (seeded) RNG."""
        top = copy.deepcopy(blocks).requires_grad_(True)
        if self.block_dropout is not None:
            top.set_dropout(float(self.block_dropout))
        head = self._new_head(blocks.num_layers, blocks.dim, num_classes, statistics)
        model = FineTunedModel(top, head).to(device)
        optimizer = head_optimizer(
            head,
            lr=self.lr,
            layer_lr=self.layer_lr,
            weight_decay=self.weight_decay,
            extra_groups=[{"params": list(top.parameters()), "lr": self.block_lr}],
        )
        return model, optimizer

    def predict_proba(self, data: FeatureSet) -> np.ndarray:
        """Class probabilities ``[N, C]`` (rows in ``data.ids`` order) through blocks and head."""
        check_fitted(self, ["model_", "classes_"])
        lower = self.model_.lower_layers
        return _predict(self.model_, data, lower, self.batch_size, self.device_, None)


@torch.no_grad()
def _predict(
    model: FineTunedModel,
    data: FeatureSet,
    lower: int,
    batch_size: int,
    device: torch.device,
    batches: list[Batch] | None,
) -> np.ndarray:
    was_training = model.training
    model.eval()
    iterator = (
        iter(batches)
        if batches is not None
        else padded_batches(data.source, data.ids, layers=lower, batch_size=batch_size)
    )
    rows: dict[str, np.ndarray] = {}
    for batch in iterator:
        logits = model(batch.hidden.to(device), batch.mask.to(device))
        rows.update(zip(batch.ids, torch.softmax(logits.float(), 1).cpu().numpy(), strict=True))
    model.train(was_training)
    missing = [i for i in data.ids if i not in rows]
    if missing:
        raise DataError(
            f"the feature source returned no features for {len(missing)} id(s), e.g. {missing[:3]}."
        )
    return np.stack([rows[i] for i in data.ids])


# ------------------------------------------------------------------------- saved top blocks


def save_top_blocks(
    top: TopBlocks, path: str | os.PathLike, metadata: Mapping[str, Any] | None = None
) -> Path:
    """The trained tensors as safetensors at ``path`` plus ``<path>.json`` (``top.config()``,
    the tensors' checksum and ``metadata``); both written to temporary names, then renamed."""
    from trustser.backbones import weights_checksum

    sidecar = {
        "config": top.config(),
        "k": top.k,
        "trainable_parameters": top.num_trainable(),
        "weights_sha256": weights_checksum(top),
        "trustser_version": __version__,
        **dict(metadata or {}),
    }
    return save_module(top, path, sidecar)


def read_top_blocks(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, sidecar)`` saved by :func:`save_top_blocks` (safetensors: nothing unpickled)."""
    from safetensors.torch import load_file

    path = Path(path)
    sidecar_path = path.with_suffix(".json")
    if not path.is_file() or not sidecar_path.is_file():
        raise FineTuneError(
            f"no fine-tuned top blocks at {str(path)!r} (needs {path.name} and "
            f"{sidecar_path.name}); fine-tune them with `trustser heads fit --task emotion "
            "--finetune-top K`."
        )
    return load_file(str(path)), json.loads(sidecar_path.read_text())


def store_top_blocks(provenance: Mapping[str, Any], k: int) -> TopBlocks:
    """The pretrained top ``k`` blocks of the backbone a store group was extracted with.

    The backbone is loaded (never run) only to copy its top blocks; the group's provenance must
    match it (weights checksum, L, D) and must not come from Whisper's 30 s window.
    """
    from trustser.backbones import load_backbone

    name = str(provenance.get("backbone") or "")
    if not name:
        raise FineTuneError(
            "the store group records no backbone, so its top blocks cannot be loaded; "
            "re-extract it with `trustser extract`."
        )
    check_top_blocks_k(name, k, int(provenance["num_layers"]))
    backbone = load_backbone(name, device="cpu", window="trimmed")
    top = top_blocks_for_store(provenance, backbone, k)
    del backbone
    return top


def blocks_fold(fold: str, available: Sequence[str], *, task: str) -> str:
    """Which emotion fold's fine-tuned blocks a ``task`` fold's variant features use.

    The fold of the same name (gender heads and probes share the emotion folds, so the adversary
    is tested on speakers neither model saw); the speaker task has its own split, so a fold name
    the emotion run lacks takes the first emotion fold's blocks (one deployed model).
    """
    if fold in available:
        return fold
    if task == "speaker" and available:
        return available[0]
    raise FineTuneError(
        f"fold {fold!r} has no fine-tuned top blocks (the variant has: "
        f"{', '.join(available) or 'none'}); fine-tune that fold first with `trustser heads fit "
        "--task emotion --finetune-top K --folds ...`."
    )


def load_variant_blocks(
    layout: RunLayout,
    variant: str,
    provenance: Mapping[str, Any],
    *,
    group: str,
) -> dict[str, TopBlocks]:
    """``{fold: TopBlocks}``: each emotion fold's fine-tuned blocks of ``variant`` (eval mode,
    no gradients), checked against the store group they must extend."""
    model = ModelName.parse(variant)
    k = model.finetune_top
    if k < 1:
        raise FineTuneError(f"{variant!r} is not a fine-tuned variant (<backbone>@top<K>).")
    folds: dict[str, Path] = {}
    emotion_dir = layout.head_dir(variant, "emotion")
    if emotion_dir.is_dir():
        for sub in sorted(emotion_dir.iterdir()):
            path = sub / "top_blocks.safetensors"
            if path.is_file():
                folds[sub.name] = path
    if not folds:
        raise FineTuneError(
            f"no fine-tuned top blocks of {variant} under {str(emotion_dir)!r}: train the variant "
            f"first with `trustser heads fit --backbone {model.base} --task emotion "
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
    group: Any, layout: RunLayout, variant: str, ids: Sequence[str]
) -> Callable[..., np.ndarray]:
    """``means_of(split, task=...)``: the variant's time-means ``[N, L, D]`` of ``ids`` for one
    fold of ``task``, through the fine-tuned blocks :func:`blocks_fold` picks (computed once per
    blocks fold) — what a linear-probe adversary of this deployed model sees."""
    ids = list(ids)
    blocks = load_variant_blocks(layout, variant, group.provenance, group=group.name)
    available = list(blocks)
    cache: dict[str, np.ndarray] = {}

    def means_of(split: Any, *, task: str) -> np.ndarray:
        fold = blocks_fold(split.name, available, task=task)
        if fold not in cache:
            cache[fold] = variant_means(group, ids, blocks[fold])
        return cache[fold]

    return means_of
