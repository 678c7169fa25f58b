"""``HeadClassifier``: the paper's head as an sklearn-style estimator over cached features.

``fit(train, dev)`` trains :class:`~trustser.heads.model.LayerWeightedHead` with Adam and
class-weighted cross-entropy, evaluates dev UAR after every epoch and keeps the weights of the
best epoch (the paper's model selection). Training reads features only — streamed from a store
group, or from :class:`~trustser.heads.data.PackedFeatures` in RAM (unpadded batches) — so a fit
costs seconds, not backbone forwards. The same hyperparameters and ``seed`` give identical
weights on CPU.
"""

from __future__ import annotations

import contextlib
import copy
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from trustser._validation import check_choice, check_fitted, check_positive, check_probability
from trustser.devices import DEVICE_CHOICES, resolve_device
from trustser.heads.data import (
    DataError,
    FeatureSet,
    FrameBatch,
    ReplayBatches,
    feature_statistics,
)
from trustser.heads.mixing import CompileFailed, FrameMixer, compiled_mixer
from trustser.heads.model import POOLINGS, LayerWeightedHead
from trustser.heads.precision import PRECISIONS, TrainingPrecision, resolve_precision
from trustser.metrics.performance import uar_score

__all__ = [
    "CLASS_WEIGHTS",
    "DEFAULT_MAX_EPOCHS",
    "EpochEnd",
    "EpochSelection",
    "HeadClassifier",
    "check_labelled",
    "class_weight_policy",
    "class_weights",
    "dev_uar_scorer",
    "head_optimizer",
    "run_epochs",
    "seeded_rng",
    "stored_logits",
    "train_pass",
]

CLASS_WEIGHTS = ("balanced", "none")  # the policies a user can name
# The cap on epochs of a fit with patience: scikit-learn's MLPClassifier's ``max_iter`` (its
# ``n_iter_no_change`` = 10 is the attackers' patience, trustser.heads.tasks.DEFAULT_PATIENCE).
DEFAULT_MAX_EPOCHS = 200


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
    per-epoch history and callbacks; shared by the heads and the fine-tuned blocks.

    ``epochs`` is the budget every fit trains. With ``patience`` p > 0 training goes on after
    it until p epochs in a row bring no better dev score (an *early stop* on convergence, as
    scikit-learn's ``n_iter_no_change``), at most ``max_epochs`` epochs in all (the cap; never
    below ``epochs``). :attr:`stop_reason` says why the loop ended: ``"budget"`` (no patience:
    exactly ``epochs``), ``"patience"`` (dev stopped improving) or ``"cap"`` (the cap was hit
    while dev had improved within the last p epochs: the fit may not have converged).
    """

    def __init__(
        self,
        epochs: int,
        callback: Callable[[EpochEnd], None] | None = None,
        *,
        patience: int = 0,
        max_epochs: int | None = None,
    ) -> None:
        self.epochs, self.callback, self.patience = epochs, callback, patience
        self.limit = max(epochs, max_epochs or epochs) if patience > 0 else epochs
        self.history: list[dict[str, Any]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_epoch, self.best_score = 0, -np.inf
        self.stop_reason: str | None = None

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
                EpochEnd(
                    epoch,
                    max(self.epochs, epoch),
                    train_loss,
                    dev_uar,
                    self.best_epoch,
                    seconds,
                )
            )

    def finished(self, epoch: int) -> bool:
        """Whether training stops after ``epoch`` (sets :attr:`stop_reason` when it does)."""
        if self.patience > 0 and epoch >= self.epochs and epoch - self.best_epoch >= self.patience:
            self.stop_reason = "patience"
        elif epoch >= self.limit:
            self.stop_reason = "cap" if self.patience > 0 else "budget"
        return self.stop_reason is not None

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


@contextlib.contextmanager
def seeded_rng(device: torch.device, seed: int) -> Iterator[None]:
    """Torch's global RNG seeded with ``seed`` inside the block and restored after it (the CUDA
    one too on a GPU): a fit's initialisation and dropout depend on its seed alone, and the
    caller's random state is left as it was."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def train_pass(batches: Iterable[Any], step: Callable[[Any], torch.Tensor]) -> float:
    """One pass over the training batches; ``step(batch)`` trains on a batch (optimiser step
    included) and returns its mean loss. Returns the pass's mean loss per clip; a pass that saw
    no batch is an error (the training ids have no features in the source)."""
    total, count = 0.0, 0
    for batch in batches:
        loss = step(batch)
        total += float(loss.detach()) * len(batch.ids)
        count += len(batch.ids)
    if count == 0:
        raise DataError("the training source yielded no batches for the training ids.")
    return total / count


def run_epochs(
    selection: EpochSelection,
    *,
    seed: int,
    train: Callable[[int], tuple[nn.Module, float]],
    evaluate: Callable[[nn.Module], float | None],
) -> None:
    """The epoch loop of the head fits: ``train(epoch_seed)`` runs one pass over the training
    clips and returns the module it trains with its mean loss, ``evaluate(module)`` gives its
    dev UAR (None without dev data), and ``selection`` records the epoch. The shuffling seed of
    an epoch derives from ``seed`` and the epoch number only. The loop ends when ``selection``
    says so (its budget, patience or cap)."""
    epoch = 0
    while epoch == 0 or not selection.finished(epoch):
        epoch += 1
        start = time.perf_counter()
        epoch_seed = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
        module, train_loss = train(epoch_seed)
        dev_uar = evaluate(module)
        selection.end(
            epoch,
            module,
            train_loss=train_loss,
            dev_uar=dev_uar,
            seconds=time.perf_counter() - start,
        )


def dev_uar_scorer(
    dev: FeatureSet | None,
    index: Mapping[str, int],
    predict_proba: Callable[[nn.Module], np.ndarray],
) -> Callable[[nn.Module], float | None]:
    """``evaluate`` for :func:`run_epochs`: a module's UAR on ``dev`` from the class
    probabilities ``predict_proba(module)`` gives for it; None without dev data."""
    if dev is None:
        return lambda module: None
    truth = np.array([index[y] for y in dev.labels])
    return lambda module: float(uar_score(truth, predict_proba(module).argmax(1)))


class HeadClassifier:
    """Layer-weighted head trained from cached hidden states.

    Defaults are the paper's (hidden 128, Adam lr 5e-4, batch 64, class-weighted loss, best dev
    UAR epoch) plus ``normalize=True``: each layer standardised with training statistics before
    the layer average (docs/heads.md explains why; ``normalize=False`` is the paper's head as
    written). ``min_steps`` sets a floor on optimiser steps: the paper's epoch counts were made
    for folds of thousands of clips, and on a small corpus (EmoDB: 4 batches per epoch) they
    stop training long before the head converges; :meth:`epochs_for` says how many epochs a
    training set gets. ``patience`` p > 0 goes on training after that budget until p epochs in
    a row bring no better dev UAR, at most ``max_epochs`` epochs in all (:class:`EpochSelection`;
    the privacy attackers' default, so an attacker is trained to convergence; 0, the default
    here, trains the budget exactly). ``layer_lr`` gives the layer logits their own learning
    rate; ``weight_decay`` switches Adam to AdamW (never applied to the layer logits).
    ``precision`` (``auto``, ``fp32``, ``bf16``) and ``compile`` choose the training step
    (:mod:`trustser.heads.precision`): float32 eagerly, exactly the reference step, or the
    frame network in bfloat16 with the layer mix read from the stored frames by a compiled
    kernel; predictions are float32 either way.

    Parameters are stored exactly as given and checked in :meth:`fit`. Learned state:
    ``head_`` (the best-epoch :class:`LayerWeightedHead`, eval mode), ``classes_``,
    ``layer_weights_`` (softmax weights over the L hidden states), ``epochs_`` (epochs trained),
    ``stop_reason_`` (``"budget"``, ``"patience"`` or ``"cap"``: :class:`EpochSelection`),
    ``hit_cap_`` (the cap ended a fit that was still improving), ``best_epoch_`` (1-based), ``best_score_`` (dev UAR at that epoch, or None without dev
    data), ``history_`` (one dict per epoch: ``epoch``, ``train_loss``, ``dev_uar``,
    ``seconds``), ``device_``, ``trainable_parameters_`` (the head's) and ``precision_`` (what
    the fit trained with: :meth:`~trustser.heads.precision.TrainingPrecision.record`).
    """

    #: the stage this estimator trains, as :func:`~trustser.heads.precision.resolve_precision`
    #: knows it (which stages have a bfloat16 path, and where ``auto`` picks it)
    precision_stage: ClassVar[str] = "heads"

    _parameter_constraints: ClassVar[dict[str, str]] = {
        "hidden": "int >= 1",
        "lr": "float > 0",
        "layer_lr": "float > 0 or None (= lr)",
        "weight_decay": "float >= 0",
        "epochs": "int >= 1 (None: the task's default, filled in by cross_validate)",
        "min_steps": "int >= 0 (None: the task's default floor, filled in by cross_validate)",
        "patience": "int >= 0 (0: no early stop; None: the task's default, filled in by "
        "cross_validate)",
        "max_epochs": "int >= 1: the cap on epochs when patience > 0",
        "batch_size": "int >= 1",
        "dropout": "float in [0, 1]",
        "pooling": f"one of {POOLINGS}",
        "class_weight": "'balanced', None or {class: weight}",
        "normalize": "bool",
        "device": f"one of {DEVICE_CHOICES} (or 'cuda:N')",
        "seed": "int",
        "precision": f"one of {PRECISIONS} (trustser.heads.precision)",
        "compile": "bool: compile the bfloat16 path's layer mix (float32 is always eager)",
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
        patience: int | None = 0,
        max_epochs: int = DEFAULT_MAX_EPOCHS,
        batch_size: int = 64,
        dropout: float = 0.0,
        pooling: str = "mean",
        class_weight: str | Mapping[str, float] | None = "balanced",
        normalize: bool = True,
        device: str = "auto",
        seed: int = 0,
        precision: str = "auto",
        compile: bool = True,
    ) -> None:
        self.hidden = hidden
        self.lr = lr
        self.layer_lr = layer_lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.min_steps = min_steps
        self.patience = patience
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.dropout = dropout
        self.pooling = pooling
        self.class_weight = class_weight
        self.normalize = normalize
        self.device = device
        self.seed = seed
        self.precision = precision
        self.compile = compile

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._parameter_constraints}

    def __repr__(self) -> str:
        changed = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({changed})"

    def epochs_for(self, num_train: int) -> int:
        """Epochs trained on ``num_train`` clips: ``max(epochs, ceil(min_steps / batches))``."""
        batches = max(1, -(-num_train // self.batch_size))
        return max(self.epochs, -(-self.min_steps // batches))

    def epoch_selection(
        self,
        num_train: int,
        callback: Callable[[EpochEnd], None] | None = None,
        *,
        has_dev: bool = True,
    ) -> EpochSelection:
        """The epoch loop's budget, patience and cap for ``num_train`` training clips (no
        patience without dev data: nothing to stop on)."""
        return EpochSelection(
            self.epochs_for(num_train),
            callback,
            patience=self.patience if has_dev else 0,
            max_epochs=self.max_epochs,
        )

    def _validate_params(self) -> None:
        for name in ("epochs", "min_steps", "patience"):
            if getattr(self, name) is None:
                raise ValueError(
                    f"{name}=None means the task's default, which only a cross-validation "
                    "knows (trustser.heads.crossval.task_estimator fills it in); give a number "
                    "to fit this estimator on its own."
                )
        for name in ("hidden", "epochs", "batch_size", "max_epochs"):
            value = getattr(self, name)
            if not isinstance(value, Integral) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, got {value!r}.")
            check_positive(name, value)
        if not isinstance(self.min_steps, Integral) or isinstance(self.min_steps, bool):
            raise ValueError(f"min_steps must be an integer, got {self.min_steps!r}.")
        check_positive("min_steps", self.min_steps, allow_zero=True)
        if not isinstance(self.patience, Integral) or isinstance(self.patience, bool):
            raise ValueError(
                f"patience must be an integer (0: no early stop), got {self.patience!r}."
            )
        check_positive("patience", self.patience, allow_zero=True)
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
        check_choice("precision", self.precision, PRECISIONS)
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be True or False, got {self.compile!r}.")

    def training_precision(self, device: torch.device, source: Any = None) -> TrainingPrecision:
        """How a fit on features from ``source`` trains on ``device``, before compiling (a
        compile that fails is recorded by the fit); ``source=None``: features held in RAM as
        stored rows, the usual case."""
        return resolve_precision(
            self.precision,
            device,
            self.precision_stage,
            compile=self.compile,
            in_memory=source is None or hasattr(source, "packed_batches"),
            stored_rows=source is None or hasattr(source, "frame_batches"),
        )

    def training_path(self) -> str | None:
        """The training path this estimator's fits take on its device, as resume keys record it
        (:attr:`~trustser.heads.precision.TrainingPrecision.key`; None: float32)."""
        return self.training_precision(resolve_device(self.device)).key

    def _training_path(
        self, source: Any, device: torch.device
    ) -> tuple[TrainingPrecision, FrameMixer | None]:
        """The resolved precision of a fit on ``source`` and, for the compiled bfloat16 path,
        its layer mixer (None: the eager path, float32 or bfloat16). A compile that fails
        warns in one line and leaves the fit on the eager bfloat16 path."""
        plan = self.training_precision(device, source)
        if not plan.compiled:
            return plan, None
        try:
            mixer = compiled_mixer(source.rows, source.scales, device, indexed=device.type == "cpu")
        except CompileFailed as error:
            warnings.warn(
                f"torch.compile failed for the heads' layer mix ({error}); training on the "
                "eager bfloat16 path.",
                RuntimeWarning,
                stacklevel=3,
            )
            return plan.fell_back(str(error)), None
        return plan, mixer

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
        loss_fn = self._class_weighted_loss(train, classes, device)
        statistics = self._train_statistics(train)
        plan, mixer = self._training_path(train.source, device)
        feed = _HeadFeed.prepare(
            train, dev, statistics, batch_size=self.batch_size, stored=mixer is not None
        )
        training = _HeadTraining(self, feed, index, statistics, loss_fn, device, plan, mixer)
        with seeded_rng(device, self.seed):
            selection = self.epoch_selection(len(train), callback, has_dev=dev is not None)
            run_epochs(
                selection,
                seed=self.seed,
                train=training.epoch,
                evaluate=dev_uar_scorer(dev, index, lambda head: feed.dev_proba(head, device)),
            )
        self._record_fit(training.head, classes, selection, dev=dev, device=device, precision=plan)
        return self

    def _class_weighted_loss(
        self, train: FeatureSet, classes: Sequence[str], device: torch.device
    ) -> nn.CrossEntropyLoss:
        """Cross-entropy weighted per class by ``class_weight`` over the training labels."""
        weights = class_weights(train.labels, classes, self.class_weight)
        return nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32, device=device))

    def _train_statistics(self, train: FeatureSet) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The training clips' per-layer mean and std when the head standardises its input
        (``normalize``), else None."""
        if not self.normalize:
            return None
        return feature_statistics(train.source, train.ids, batch_size=self.batch_size)

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
        classes: Sequence[str],
        selection: EpochSelection,
        *,
        dev: FeatureSet | None,
        device: torch.device,
        precision: TrainingPrecision,
        trained: nn.Module | None = None,
    ) -> None:
        """Restore the kept epoch's weights into ``trained`` (what was trained, whose trainable
        parameters are counted; default the head) and set the fitted attributes from it
        (``dev``: the data that chose the epoch, if any; ``precision``: what it trained with)."""
        trained = head if trained is None else trained
        selection.restore(trained)
        has_dev = dev is not None
        self.head_ = head
        self.classes_ = np.array(classes, dtype=object)
        self.layer_weights_ = head.layer_weights.detach().to("cpu").numpy().astype(float)
        self.epochs_ = len(selection.history)
        self.stop_reason_ = selection.stop_reason
        self.hit_cap_ = selection.stop_reason == "cap"
        self.best_epoch_ = selection.best_epoch
        self.best_score_ = selection.best_score if has_dev else None
        self.history_ = selection.history
        self.device_ = device
        self.trainable_parameters_ = int(
            sum(p.numel() for p in trained.parameters() if p.requires_grad)
        )
        self.precision_ = precision.record()

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


@dataclass(frozen=True)
class _HeadFeed:
    """Where a head fit reads its batches. Packed training clips in RAM are standardised once
    (not every batch of every epoch) and read into one reused buffer; packed dev clips are cut
    into the same batches every epoch and widened anew each time (RAM keeps the stored dtype).
    Any other source streams padded batches. ``stored``: the compiled bfloat16 path, whose
    training batches are row indices into the stored values (:class:`FrameBatch`), read by the
    head itself."""

    train: FeatureSet
    dev: FeatureSet | None
    batch_size: int
    source: Any  # the training clips' source, standardised when ``standardized``
    packed: bool
    standardized: bool
    dev_batches: ReplayBatches | None
    dev_standardized: bool
    stored: bool = False

    @classmethod
    def prepare(
        cls,
        train: FeatureSet,
        dev: FeatureSet | None,
        statistics: tuple[torch.Tensor, torch.Tensor] | None,
        *,
        batch_size: int,
        stored: bool = False,
    ) -> _HeadFeed:
        packed = hasattr(train.source, "packed_batches")
        source, standardized = train.source, False
        if packed and statistics is not None and hasattr(train.source, "standardized"):
            source, standardized = train.source.standardized(*statistics, ids=train.ids), True
        dev_batches, dev_standardized = None, False
        if dev is not None and hasattr(dev.source, "packed_batches"):
            dev_source = dev.source
            dev_standardized = standardized and hasattr(dev.source, "standardized")
            if dev_standardized:
                dev_source = dev.source.standardized(*statistics, ids=dev.ids)
            dev_batches = ReplayBatches(
                lambda: dev_source.packed_batches(
                    dev.ids, batch_size=batch_size, shuffle=False, reuse=True
                )
            )
        return cls(
            train,
            dev,
            batch_size,
            source,
            packed,
            standardized,
            dev_batches,
            dev_standardized,
            stored,
        )

    def train_batches(self, seed: int) -> Iterator[Any]:
        """The training clips in batches shuffled by ``seed``."""
        if self.stored:  # the same clips per batch as packed_batches, as row indices
            return self.train.source.frame_batches(
                self.train.ids, batch_size=self.batch_size, shuffle=True, seed=seed
            )
        if self.packed:  # each batch is consumed before the next: reuse one buffer
            return self.source.packed_batches(
                self.train.ids, batch_size=self.batch_size, shuffle=True, seed=seed, reuse=True
            )
        return self.train.source.batches(
            self.train.ids, batch_size=self.batch_size, shuffle=True, seed=seed
        )

    def shape(self, batch: Any) -> tuple[int, int]:
        """``(L, D)`` of the features in a training batch."""
        if isinstance(batch, FrameBatch):
            return self.train.source.num_layers, self.train.source.dim
        shape = (
            batch.frames.shape[::2] if self.packed else torch.as_tensor(batch.hidden).shape[1::2]
        )
        return int(shape[0]), int(shape[1])

    def dev_proba(self, head: LayerWeightedHead, device: torch.device) -> np.ndarray:
        """Class probabilities of the dev clips, read as the training clips are."""
        return _predict_proba(
            head,
            self.dev,
            self.batch_size,
            device,
            batches=self.dev_batches,
            standardized=self.dev_standardized,
        )


class _HeadTraining:
    """The trained parts of one head fit and its step on a batch. The head and its optimiser
    are made at the first batch, whose shapes they take, from the seeded RNG. ``plan`` is the
    fit's precision; ``mixer`` the compiled layer mix of the stored bfloat16 path (None: the
    eager path, float32 or bfloat16)."""

    def __init__(
        self,
        estimator: HeadClassifier,
        feed: _HeadFeed,
        index: Mapping[str, int],
        statistics: tuple[torch.Tensor, torch.Tensor] | None,
        loss_fn: nn.Module,
        device: torch.device,
        plan: TrainingPrecision,
        mixer: FrameMixer | None = None,
    ) -> None:
        self.estimator, self.feed, self.device = estimator, feed, device
        self.compute_dtype = torch.bfloat16 if plan.bf16 else None
        self.mixer = mixer
        self.num_classes, self.statistics, self.loss_fn = len(index), statistics, loss_fn
        self.target_of = dict(
            zip(feed.train.ids, (index[y] for y in feed.train.labels), strict=True)
        )
        self.head: LayerWeightedHead | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    def epoch(self, epoch_seed: int) -> tuple[LayerWeightedHead, float]:
        """One pass over the training clips: the head and its mean loss."""
        loss = train_pass(self.feed.train_batches(epoch_seed), self.step)
        return self.head, loss

    def step(self, batch: Any) -> torch.Tensor:
        """One optimiser step on ``batch``; its class-weighted loss."""
        if self.head is None:
            estimator = self.estimator
            self.head = estimator._new_head(
                *self.feed.shape(batch), self.num_classes, self.statistics
            ).to(self.device)
            self.optimizer = head_optimizer(
                self.head,
                lr=estimator.lr,
                layer_lr=estimator.layer_lr,
                weight_decay=estimator.weight_decay,
            )
        self.head.train()
        targets = torch.tensor([self.target_of[i] for i in batch.ids], device=self.device)
        if self.mixer is not None:
            logits = stored_logits(
                self.head, self.feed.train.source, batch, self.device, self.mixer
            )
        else:
            logits = _logits(
                self.head,
                batch,
                self.device,
                self.feed.packed,
                self.feed.standardized,
                compute_dtype=self.compute_dtype,
            )
        loss = self.loss_fn(logits, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss


def stored_logits(
    head: LayerWeightedHead,
    source: Any,
    batch: FrameBatch,
    device: torch.device,
    mixer: FrameMixer,
) -> torch.Tensor:
    """Logits of a :class:`FrameBatch` read from ``source``'s stored rows by the compiled
    ``mixer`` (bfloat16 frame network). On CPU the kernel reads the rows where they lie; on
    another device the batch's rows are gathered in the stored dtype and moved first."""
    rows, scales, index = source.rows, source.scales, batch.index
    if device.type != "cpu":
        rows = rows.index_select(0, index).to(device, non_blocking=True)
        scales = None if scales is None else scales.index_select(0, index).to(device)
        index = None
    segments = batch.segments.to(device, non_blocking=True)
    return head.forward_stored(rows, index, segments, len(batch.ids), mixer=mixer, scales=scales)


def _logits(
    head: LayerWeightedHead,
    batch: Any,
    device: torch.device,
    packed: bool,
    standardized: bool = False,
    *,
    compute_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    if packed:
        frames = batch.frames.to(device, non_blocking=True)
        segments = batch.segments.to(device, non_blocking=True)
        return head.forward_packed(
            frames,
            segments,
            len(batch.ids),
            standardized=standardized,
            compute_dtype=compute_dtype,
        )
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
