"""Fine-tuning the top K encoder blocks from the cache: the estimator and the saved blocks.

The store keeps every hidden state, so the input of the top K blocks — store layer ``L − 1 − K``
— is already on disk. :class:`FineTuneClassifier` trains copies of those K blocks
(:class:`~trustser.backbones.top_blocks.TopBlocks`) jointly with the paper's head: each batch
reads the cached layers ``0 … L − 1 − K``, the blocks recompute layers ``L − K … L − 1`` with
gradients, and the head averages all ``L`` (lower ones from the cache, top ones recomputed). The
rest of the backbone is never run. Per fold only the trained tensors are saved
(:func:`save_top_blocks`). The model it trains is the variant ``<backbone>@top<K>``
(:mod:`trustser.variants.finetune`: its features for the privacy heads and probes, and its
deployment). docs/heads.md, "Fine-tuning the top blocks".
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
    HeadClassifier,
    check_labelled,
    dev_uar_scorer,
    head_optimizer,
    run_epochs,
    seeded_rng,
    train_pass,
)
from trustser.heads.model import LayerWeightedHead, save_module
from trustser.store.batching import Batch

__all__ = [
    "DEFAULT_BLOCK_LR",
    "FineTuneClassifier",
    "FineTuneError",
    "FineTunedModel",
    "padded_batches",
    "read_top_blocks",
    "save_top_blocks",
    "store_top_blocks",
]

# Learning rate of the fine-tuned blocks (the head keeps its 5e-4). Chosen from the literature
# before any run, never tuned on a corpus: speech-encoder fine-tuning recipes use 1e-5 to 5e-5
# for the pretrained encoder — e.g. 1e-5 (head 1e-4) in SpeechBrain's wav2vec 2.0 emotion recipe
# for IEMOCAP, 3e-5 in its Whisper-tiny recipe — and 2e-5 sits inside that range without a
# warm-up, which this recipe does not have (docs/heads.md explains).
DEFAULT_BLOCK_LR = 2e-5


class FineTuneError(TrustSERError, ValueError):
    """Fine-tuning (or a variant's features) asked for in a way that cannot work."""


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

    precision_stage: ClassVar[str] = "finetune"  # no bfloat16 path: trains in float32

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

            selection = self.epoch_selection(len(train), callback, has_dev=dev is not None)
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
        self.model_ = model
        self.top_blocks_ = model.top
        self._record_fit(
            model.head,
            classes,
            selection,
            dev=dev,
            device=device,
            precision=self.training_precision(device, train.source),
            trained=model,
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
