"""``HeadClassifier``: the paper's head as an sklearn-style estimator over cached features.

``fit(train, dev)`` trains :class:`~trustser.heads.model.LayerWeightedHead` with Adam and
class-weighted cross-entropy, evaluates dev UAR after every epoch and keeps the weights of the
best epoch (the paper's model selection). Training reads features only — streamed from a store
group, or from :class:`~trustser.heads.data.PackedFeatures` in RAM (unpadded batches) — so a fit
costs seconds, not backbone forwards. The same hyperparameters and ``seed`` give identical
weights on CPU.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from trustser._validation import check_choice, check_fitted, check_positive, check_probability
from trustser.devices import DEVICE_CHOICES, resolve_device
from trustser.heads.data import DataError, FeatureSet, ReplayBatches, feature_statistics
from trustser.heads.model import POOLINGS, LayerWeightedHead
from trustser.metrics.performance import uar_score

__all__ = [
    "CLASS_WEIGHTS",
    "EpochEnd",
    "EpochSelection",
    "HeadClassifier",
    "check_labelled",
    "class_weight_policy",
    "class_weights",
    "head_optimizer",
]

CLASS_WEIGHTS = ("balanced", "none")  # the policies a user can name


@dataclass(frozen=True)
class EpochEnd:
    """Reported to ``fit``'s callback after each epoch (drives progress bars)."""

    epoch: int  # 1-based
    epochs: int
    train_loss: float
    dev_uar: float | None
    best_epoch: int
    seconds: float


class EpochSelection:
    """The epoch a fit keeps — the best dev UAR, or the last epoch without dev data — and the
    per-epoch history and callbacks; shared by the heads and the fine-tuned blocks."""

    def __init__(self, epochs: int, callback: Callable[[EpochEnd], None] | None = None) -> None:
        self.epochs, self.callback = epochs, callback
        self.history: list[dict[str, Any]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_epoch, self.best_score = 0, -np.inf

    def end(
        self,
        epoch: int,
        module: nn.Module,
        *,
        train_loss: float,
        dev_uar: float | None,
        seconds: float,
    ) -> None:
        """Record ``epoch``; keep a copy of ``module``'s state when it is the best so far."""
        score = dev_uar if dev_uar is not None else float(epoch)
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            self.best_state = copy.deepcopy(module.state_dict())
        self.history.append(
            {"epoch": epoch, "train_loss": train_loss, "dev_uar": dev_uar, "seconds": seconds}
        )
        if self.callback is not None:
            self.callback(
                EpochEnd(epoch, self.epochs, train_loss, dev_uar, self.best_epoch, seconds)
            )

    def restore(self, module: nn.Module) -> None:
        """Load the kept state into ``module`` and switch it to eval mode."""
        module.load_state_dict(self.best_state)
        module.eval()


def head_optimizer(
    head: LayerWeightedHead,
    *,
    lr: float,
    layer_lr: float | None,
    weight_decay: float,
    extra_groups: Sequence[dict[str, Any]] = (),
) -> torch.optim.AdamW:
    """AdamW over ``head``: the layer weights at ``layer_lr`` (default ``lr``) without decay,
    the rest at ``lr`` with ``weight_decay``; ``extra_groups`` (fine-tuned blocks) follow."""
    others = [p for n, p in head.named_parameters() if n != "layer_logits"]
    return torch.optim.AdamW(
        [
            {"params": others},
            {
                "params": [head.layer_logits],
                "lr": layer_lr if layer_lr is not None else lr,
                "weight_decay": 0.0,
            },
            *extra_groups,
        ],
        lr=lr,
        weight_decay=weight_decay,
    )


def class_weight_policy(
    value: str | Mapping[str, float] | None,
) -> str | Mapping[str, float] | None:
    """The estimator's ``class_weight`` for a policy as a user names it: ``"none"`` is ``None``.

    ``"balanced"``, ``None`` and explicit ``{class: weight}`` mappings pass through unchanged, so
    the recorded hyperparameters are the same whichever way "no weighting" was asked for.
    """
    if value is None or isinstance(value, Mapping):
        return value
    if value not in CLASS_WEIGHTS:
        raise ValueError(
            f"--class-weight {value!r} is not supported; use {' or '.join(CLASS_WEIGHTS)}."
        )
    return None if value == "none" else value


def class_weights(
    labels: Sequence[str], classes: Sequence[str], policy: str | Mapping[str, float] | None
) -> np.ndarray:
    """Per-class loss weights. ``"balanced"``: :math:`w_c = N / (C \\cdot n_c)` over the training
    labels (sklearn's rule), so every class contributes equally to the loss; ``None``: all 1;
    a mapping gives each class's weight explicitly (missing classes get 1).
    """
    if policy is None:
        return np.ones(len(classes))
    if isinstance(policy, Mapping):
        unknown = sorted(set(policy) - set(classes))
        if unknown:
            raise ValueError(
                f"class_weight names unknown classes {unknown}; classes are {list(classes)}."
            )
        return np.array([float(policy.get(c, 1.0)) for c in classes])
    check_choice("class_weight", policy, ("balanced",))
    counts = np.array([sum(1 for y in labels if y == c) for c in classes], dtype=float)
    empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if empty:
        raise DataError(
            f"class(es) {empty} have no training utterances, so 'balanced' weights are undefined; "
            "choose folds whose training part holds every class."
        )
    return counts.sum() / (len(classes) * counts)


def check_labelled(
    train: FeatureSet, dev: FeatureSet | None, classes: Sequence[str] | None
) -> tuple[tuple[str, ...], dict[str, int]]:
    """``(classes, {class: index})`` for a fit: labelled, non-empty parts whose labels are all
    among ``classes`` (default: the sorted training labels), at least two classes."""
    if train.labels is None or len(train) == 0:
        raise DataError("fit needs a labelled, non-empty training FeatureSet.")
    if dev is not None and (dev.labels is None or len(dev) == 0):
        raise DataError("the dev FeatureSet must be labelled and non-empty (or pass dev=None).")
    classes = tuple(classes) if classes is not None else tuple(sorted(set(train.labels)))
    if len(classes) < 2:
        raise DataError(f"a classifier needs at least two classes, got {list(classes)}.")
    index = {c: i for i, c in enumerate(classes)}
    for name, part in (("train", train), ("dev", dev)):
        if part is None:
            continue
        unknown = sorted({y for y in part.labels if y not in index})
        if unknown:
            raise DataError(f"{name} labels {unknown} are not among classes {list(classes)}.")
    return classes, index


class HeadClassifier:
    """Layer-weighted head trained from cached hidden states.

    Defaults are the paper's (hidden 128, Adam lr 5e-4, batch 64, class-weighted loss, best dev
    UAR epoch) plus ``normalize=True``: each layer standardised with training statistics before
    the layer average (docs/heads.md explains why; ``normalize=False`` is the paper's head as
    written). ``min_steps`` sets a floor on optimiser steps: the paper's epoch counts were made
    for folds of thousands of clips, and on a small corpus (EmoDB: 4 batches per epoch) they
    stop training long before the head converges; :meth:`epochs_for` says how many epochs a
    training set gets. ``layer_lr`` gives the layer logits their own learning rate; ``weight_decay``
    switches Adam to AdamW (never applied to the layer logits).

    Parameters are stored exactly as given and checked in :meth:`fit`. Learned state:
    ``head_`` (the best-epoch :class:`LayerWeightedHead`, eval mode), ``classes_``,
    ``layer_weights_`` (softmax weights over the L hidden states), ``epochs_`` (epochs trained),
    ``best_epoch_`` (1-based), ``best_score_`` (dev UAR at that epoch, or None without dev
    data), ``history_`` (one dict per epoch: ``epoch``, ``train_loss``, ``dev_uar``,
    ``seconds``), ``device_`` and ``trainable_parameters_`` (the head's).
    """

    _parameter_constraints: ClassVar[dict[str, str]] = {
        "hidden": "int >= 1",
        "lr": "float > 0",
        "layer_lr": "float > 0 or None (= lr)",
        "weight_decay": "float >= 0",
        "epochs": "int >= 1 (None: the task's default, filled in by cross_validate)",
        "min_steps": "int >= 0 (None: the task's default floor, filled in by cross_validate)",
        "batch_size": "int >= 1",
        "dropout": "float in [0, 1]",
        "pooling": f"one of {POOLINGS}",
        "class_weight": "'balanced', None or {class: weight}",
        "normalize": "bool",
        "device": f"one of {DEVICE_CHOICES} (or 'cuda:N')",
        "seed": "int",
    }

    def __init__(
        self,
        *,
        hidden: int = 128,
        lr: float = 5e-4,
        layer_lr: float | None = None,
        weight_decay: float = 0.0,
        epochs: int | None = 30,
        min_steps: int | None = 0,
        batch_size: int = 64,
        dropout: float = 0.0,
        pooling: str = "mean",
        class_weight: str | Mapping[str, float] | None = "balanced",
        normalize: bool = True,
        device: str = "auto",
        seed: int = 0,
    ) -> None:
        self.hidden = hidden
        self.lr = lr
        self.layer_lr = layer_lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.min_steps = min_steps
        self.batch_size = batch_size
        self.dropout = dropout
        self.pooling = pooling
        self.class_weight = class_weight
        self.normalize = normalize
        self.device = device
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._parameter_constraints}

    def __repr__(self) -> str:
        changed = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({changed})"

    def epochs_for(self, num_train: int) -> int:
        """Epochs trained on ``num_train`` clips: ``max(epochs, ceil(min_steps / batches))``."""
        batches = max(1, -(-num_train // self.batch_size))
        return max(self.epochs, -(-self.min_steps // batches))

    def _validate_params(self) -> None:
        for name in ("epochs", "min_steps"):
            if getattr(self, name) is None:
                raise ValueError(
                    f"{name}=None means the task's default, which only a cross-validation "
                    "knows (trustser.heads.crossval.task_estimator fills it in); give a number "
                    "to fit this estimator on its own."
                )
        for name in ("hidden", "epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, Integral) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, got {value!r}.")
            check_positive(name, value)
        if not isinstance(self.min_steps, Integral) or isinstance(self.min_steps, bool):
            raise ValueError(f"min_steps must be an integer, got {self.min_steps!r}.")
        check_positive("min_steps", self.min_steps, allow_zero=True)
        if not isinstance(self.lr, Real):
            raise ValueError(f"lr must be a number, got {self.lr!r}.")
        check_positive("lr", self.lr)
        if self.layer_lr is not None:
            if not isinstance(self.layer_lr, Real):
                raise ValueError(f"layer_lr must be a number or None, got {self.layer_lr!r}.")
            check_positive("layer_lr", self.layer_lr)
        if not isinstance(self.weight_decay, Real):
            raise ValueError(f"weight_decay must be a number, got {self.weight_decay!r}.")
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_probability("dropout", self.dropout)
        check_choice("pooling", self.pooling, POOLINGS)
        if not isinstance(self.normalize, bool):
            raise ValueError(f"normalize must be True or False, got {self.normalize!r}.")
        if not isinstance(self.seed, Integral):
            raise ValueError(f"seed must be an integer, got {self.seed!r}.")
        if self.class_weight is not None and not isinstance(self.class_weight, Mapping):
            check_choice("class_weight", self.class_weight, ("balanced",))

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        train: FeatureSet,
        dev: FeatureSet | None = None,
        *,
        classes: Sequence[str] | None = None,
        callback: Callable[[EpochEnd], None] | None = None,
    ) -> HeadClassifier:
        """Train on ``train``; keep the epoch with the best ``dev`` UAR (the last without dev).

        ``classes`` fixes the class order (default: sorted training labels); labels in ``dev``
        outside it are an error. Ties in dev UAR keep the earlier epoch.
        """
        self._validate_params()
        classes, index = check_labelled(train, dev, classes)
        device = resolve_device(self.device)
        weights = torch.tensor(
            class_weights(train.labels, classes, self.class_weight),
            dtype=torch.float32,
            device=device,
        )
        target_of = dict(zip(train.ids, (index[y] for y in train.labels), strict=True))
        dev_true = np.array([index[y] for y in dev.labels]) if dev is not None else None

        packed = hasattr(train.source, "packed_batches")
        statistics = (
            feature_statistics(train.source, train.ids, batch_size=self.batch_size)
            if self.normalize
            else None
        )
        train_source, standardized = train.source, False
        if packed and statistics is not None and hasattr(train.source, "standardized"):
            # standardise the training clips once, not every batch of every epoch
            train_source = train.source.standardized(*statistics, ids=train.ids)
            standardized = True
        dev_batches = None
        if dev is not None and hasattr(dev.source, "packed_batches"):  # same batches every epoch
            dev_source = dev.source
            dev_standardized = standardized and hasattr(dev.source, "standardized")
            if dev_standardized:
                dev_source = dev.source.standardized(*statistics, ids=dev.ids)
            dev_batches = ReplayBatches(  # widened anew each epoch: RAM keeps the stored dtype
                lambda: dev_source.packed_batches(
                    dev.ids, batch_size=self.batch_size, shuffle=False, reuse=True
                )
            )
        else:
            dev_standardized = False
        fork_devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(self.seed)
            head: LayerWeightedHead | None = None
            optimizer: torch.optim.Optimizer | None = None
            loss_fn = nn.CrossEntropyLoss(weight=weights)
            epochs = self.epochs_for(len(train))
            selection = EpochSelection(epochs, callback)
            for epoch in range(1, epochs + 1):
                start = time.perf_counter()
                total, count = 0.0, 0
                epoch_seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
                if packed:  # each batch is consumed before the next: reuse one buffer
                    iterator = train_source.packed_batches(
                        train.ids,
                        batch_size=self.batch_size,
                        shuffle=True,
                        seed=epoch_seed,
                        reuse=True,
                    )
                else:
                    iterator = train.source.batches(
                        train.ids, batch_size=self.batch_size, shuffle=True, seed=epoch_seed
                    )
                for batch in iterator:
                    if head is None:  # shapes come from the data; init from the seeded RNG
                        shape = (
                            batch.frames.shape[::2]
                            if packed
                            else torch.as_tensor(batch.hidden).shape[1::2]
                        )
                        head = self._new_head(
                            int(shape[0]), int(shape[1]), len(classes), statistics
                        ).to(device)
                        optimizer = head_optimizer(
                            head, lr=self.lr, layer_lr=self.layer_lr, weight_decay=self.weight_decay
                        )
                    head.train()
                    targets = torch.tensor([target_of[i] for i in batch.ids], device=device)
                    loss = loss_fn(_logits(head, batch, device, packed, standardized), targets)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach()) * len(batch.ids)
                    count += len(batch.ids)
                batch = iterator = None  # one widened batch in RAM at a time, not two
                if head is None or count == 0:
                    raise DataError("the training source yielded no batches for the training ids.")
                dev_uar = None
                if dev is not None:
                    proba = _predict_proba(
                        head,
                        dev,
                        self.batch_size,
                        device,
                        batches=dev_batches,
                        standardized=dev_standardized,
                    )
                    dev_uar = float(uar_score(dev_true, proba.argmax(1)))
                selection.end(
                    epoch,
                    head,
                    train_loss=total / count,
                    dev_uar=dev_uar,
                    seconds=time.perf_counter() - start,
                )
        selection.restore(head)
        self._record_fit(head, head, classes, selection, has_dev=dev is not None, device=device)
        return self

    def _new_head(
        self,
        num_layers: int,
        dim: int,
        num_classes: int,
        statistics: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> LayerWeightedHead:
        """A freshly initialised head with this estimator's options (and the training part's
        feature statistics, when standardising)."""
        head = LayerWeightedHead(
            num_layers,
            dim,
            num_classes,
            hidden=self.hidden,
            dropout=self.dropout,
            pooling=self.pooling,
            normalize=self.normalize,
        )
        if statistics is not None:
            head.set_normalization(*statistics)
        return head

    def _record_fit(
        self,
        head: LayerWeightedHead,
        trained: nn.Module,
        classes: Sequence[str],
        selection: EpochSelection,
        *,
        has_dev: bool,
        device: torch.device,
    ) -> None:
        """Set the fitted attributes from the kept epoch (``trained``: what was trained, whose
        trainable parameters are counted)."""
        self.head_ = head
        self.classes_ = np.array(classes, dtype=object)
        self.layer_weights_ = head.layer_weights.detach().to("cpu").numpy().astype(float)
        self.epochs_ = selection.epochs
        self.best_epoch_ = selection.best_epoch
        self.best_score_ = selection.best_score if has_dev else None
        self.history_ = selection.history
        self.device_ = device
        self.trainable_parameters_ = int(
            sum(p.numel() for p in trained.parameters() if p.requires_grad)
        )

    # --------------------------------------------------------------- prediction
    def predict_proba(self, data: FeatureSet) -> np.ndarray:
        """Class probabilities ``[N, C]``, rows in ``data.ids`` order, columns in ``classes_``."""
        check_fitted(self, ["head_", "classes_"])
        return _predict_proba(self.head_, data, self.batch_size, self.device_)

    def predict(self, data: FeatureSet) -> np.ndarray:
        """The most probable class name per id of ``data``."""
        check_fitted(self, ["head_", "classes_"])
        return self.classes_[self.predict_proba(data).argmax(axis=1)]

    def score(self, data: FeatureSet) -> float:
        """Unweighted average recall (UAR) on labelled ``data``."""
        if data.labels is None:
            raise DataError("score needs a labelled FeatureSet.")
        return float(uar_score(np.array(data.labels, dtype=object), self.predict(data)))


def _logits(
    head: LayerWeightedHead,
    batch: Any,
    device: torch.device,
    packed: bool,
    standardized: bool = False,
) -> torch.Tensor:
    if packed:
        frames = batch.frames.to(device, non_blocking=True)
        segments = batch.segments.to(device, non_blocking=True)
        return head.forward_packed(frames, segments, len(batch.ids), standardized=standardized)
    hidden = torch.as_tensor(batch.hidden, dtype=torch.float32).to(device, non_blocking=True)
    mask = torch.as_tensor(batch.mask, dtype=torch.bool).to(device, non_blocking=True)
    return head(hidden, mask)


@torch.no_grad()
def _predict_proba(
    head: LayerWeightedHead,
    data: FeatureSet,
    batch_size: int,
    device: torch.device,
    *,
    batches: list[Any] | None = None,
    standardized: bool = False,
) -> np.ndarray:
    was_training = head.training
    head.eval()
    packed = hasattr(data.source, "packed_batches")
    if batches is not None:
        iterator = iter(batches)
    elif packed:
        iterator = data.source.packed_batches(
            data.ids, batch_size=batch_size, shuffle=False, reuse=True
        )
    else:
        iterator = data.source.batches(data.ids, batch_size=batch_size, shuffle=False, seed=0)
    rows: dict[str, np.ndarray] = {}
    for batch in iterator:
        logits = _logits(head, batch, device, packed, standardized and batches is not None)
        proba = torch.softmax(logits.float(), dim=1).to("cpu").numpy()
        rows.update(zip(batch.ids, proba, strict=True))
    head.train(was_training)
    missing = [i for i in data.ids if i not in rows]
    if missing:
        raise DataError(
            f"the feature source returned no features for {len(missing)} id(s), e.g. {missing[:3]}."
        )
    return np.stack([rows[i] for i in data.ids])
