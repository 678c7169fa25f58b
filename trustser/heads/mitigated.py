"""The emotion head trained with a mitigation in its loss, from the cache (docs/mitigations.md).

:class:`MitigatedHeadClassifier` is :class:`~trustser.heads.estimator.HeadClassifier` (same
head, optimiser, best-dev-UAR epoch selection and saved artefact) with two additions, each off
by default:

* ``adversary_weight`` λ > 0 — a gender adversary (Linear → ReLU → Linear) reads the head's
  pooled encoder output through a gradient-reversal layer: the adversary minimises its
  cross-entropy while the encoder (layer weights and the 1×1 conv stack) receives −λ times its
  gradient, i.e. learns to remove what the adversary uses (Ganin & Lempitsky, 2015);
* ``cell_weight=True`` — every (gender, class) cell of the training set carries the same total
  weight in the emotion loss (:func:`cell_weights`), instead of every class.

Both need each training clip's gender, passed to :meth:`MitigatedHeadClassifier.fit` as
``genders``. The trained model is a plain :class:`~trustser.heads.model.LayerWeightedHead`, so the
emotion head attacks, costs and profiles like any other; the adversary is dropped after
training (it is never used to judge privacy).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from numbers import Real
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from trustser.devices import resolve_device
from trustser.heads.data import DataError, FeatureSet
from trustser.heads.estimator import (
    EpochEnd,
    HeadClassifier,
    check_labelled,
    class_weights,
    head_optimizer,
    run_epochs,
    seeded_rng,
    stored_logits,
    train_pass,
)
from trustser.heads.mixing import FrameMixer
from trustser.heads.model import LayerWeightedHead
from trustser.heads.precision import TrainingPrecision
from trustser.metrics.performance import uar_score

__all__ = ["GradientReversal", "MitigatedHeadClassifier", "cell_weights", "reverse_gradient"]


class GradientReversal(torch.autograd.Function):
    """Identity forward; the gradient multiplied by ``-scale`` backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = float(scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    return GradientReversal.apply(x, scale)


def cell_weights(
    labels: Sequence[str], genders: Sequence[str]
) -> tuple[np.ndarray, dict[tuple[str, str], float]]:
    """Per-sample weights ``w_i = N / (K · n_{g_i, y_i})`` over the K non-empty (gender, class)
    cells, and the weight of each cell: every cell weighs the same in the loss."""
    cells = list(zip(genders, labels, strict=True))
    counts: dict[tuple[str, str], int] = {}
    for cell in cells:
        counts[cell] = counts.get(cell, 0) + 1
    weight = {cell: len(cells) / (len(counts) * n) for cell, n in counts.items()}
    return np.array([weight[c] for c in cells], dtype=np.float64), weight


class MitigatedHeadClassifier(HeadClassifier):
    """The paper's head with an adversarial gender term (λ) and/or gender × class reweighting.

    Extra learned state: ``adversary_dev_accuracy_`` — the *training* adversary's gender
    accuracy on the dev clips at the selected epoch (recorded for reference only: privacy is
    judged by fresh attackers), ``cell_weights_`` (``"gender/class" → weight``) when reweighting.
    """

    precision_stage: ClassVar[str] = "mitigated"

    _parameter_constraints: ClassVar[dict[str, str]] = {
        **HeadClassifier._parameter_constraints,
        "adversary_weight": "float >= 0 (λ; 0 = no adversary)",
        "cell_weight": "bool",
    }

    def __init__(
        self, *, adversary_weight: float = 0.0, cell_weight: bool = False, **options: Any
    ) -> None:
        super().__init__(**options)
        self.adversary_weight = adversary_weight
        self.cell_weight = cell_weight

    def _validate_params(self) -> None:
        super()._validate_params()
        if isinstance(self.adversary_weight, bool) or not isinstance(self.adversary_weight, Real):
            raise ValueError(f"adversary_weight must be a number, got {self.adversary_weight!r}.")
        if not self.adversary_weight >= 0:
            raise ValueError(f"adversary_weight λ must be >= 0, got {self.adversary_weight!r}.")
        if not isinstance(self.cell_weight, bool):
            raise ValueError(f"cell_weight must be True or False, got {self.cell_weight!r}.")

    def fit(  # type: ignore[override]
        self,
        train: FeatureSet,
        dev: FeatureSet | None = None,
        *,
        classes: Sequence[str] | None = None,
        callback: Callable[[EpochEnd], None] | None = None,
        genders: Mapping[str, str] | None = None,
    ) -> MitigatedHeadClassifier:
        """Train from packed features in RAM (:class:`~trustser.heads.data.PackedFeatures`);
        ``genders`` maps every training (and dev) id to its speaker's gender."""
        self._validate_params()
        classes, index = check_labelled(train, dev, classes)
        if not hasattr(train.source, "packed_batches"):
            raise DataError(
                "mitigated heads train from features held in RAM; the training clips do not fit "
                "(pass data='memory' or free memory)."
            )
        genders = self._checked_genders(train, genders)
        device = resolve_device(self.device)
        sample_weight = self._sample_weights(train, classes, index, genders)
        statistics = self._train_statistics(train)
        source, standardized = train.source, False
        if statistics is not None and hasattr(source, "standardized"):
            source, standardized = source.standardized(*statistics, ids=train.ids), True
        plan, mixer = self._training_path(train.source, device)
        with seeded_rng(device, self.seed):
            training = _AdversarialTraining(
                self,
                train,
                dev,
                source=source,
                standardized=standardized,
                index=index,
                sample_weight=sample_weight,
                genders=genders,
                statistics=statistics,
                device=device,
                plan=plan,
                mixer=mixer,
            )
            selection = self.epoch_selection(len(train), callback, has_dev=dev is not None)
            try:
                run_epochs(
                    selection, seed=self.seed, train=training.epoch, evaluate=training.evaluate
                )
            finally:
                training.close()
        self._record_fit(training.head, classes, selection, dev=dev, device=device, precision=plan)
        self.history_ = _with_adversary(selection.history, training.accuracies)
        self.adversary_dev_accuracy_ = training.accuracies[selection.best_epoch - 1]
        return self

    def _checked_genders(
        self, train: FeatureSet, genders: Mapping[str, str] | None
    ) -> dict[str, str]:
        """``genders`` as a dict; a mitigation needs every training clip's female/male gender."""
        genders = dict(genders or {})
        if self.adversary_weight > 0 or self.cell_weight:
            missing = [i for i in train.ids if genders.get(i) not in ("female", "male")]
            if missing:
                raise DataError(
                    f"{len(missing)} training clip(s) have no female/male gender (e.g. "
                    f"{missing[:3]}); the mitigation needs every training speaker's gender."
                )
        return genders

    def _sample_weights(
        self,
        train: FeatureSet,
        classes: Sequence[str],
        index: Mapping[str, int],
        genders: Mapping[str, str],
    ) -> np.ndarray:
        """Each training clip's weight in the emotion loss: its (gender, class) cell's with
        ``cell_weight`` (recorded in ``cell_weights_``), else its class's."""
        if self.cell_weight:
            sample_weight, cells = cell_weights(train.labels, [genders[i] for i in train.ids])
            self.cell_weights_ = {f"{g}/{c}": float(w) for (g, c), w in sorted(cells.items())}
            return sample_weight
        per_class = class_weights(train.labels, classes, self.class_weight)
        return np.array([per_class[index[y]] for y in train.labels])


class _AdversarialTraining:
    """The trained parts of a mitigated fit — the head, the gender adversary reading the head's
    pooled encoder output (a forward hook on its classifier collects it) and their optimiser —
    with the weighted, adversarial loss of a batch and the dev evaluation. The head, then the
    adversary, are initialised from the current (seeded) RNG. ``accuracies`` holds the
    adversary's dev accuracy per epoch (None without dev data or adversary). ``plan`` and
    ``mixer``: the fit's precision, as :class:`~trustser.heads.estimator.HeadClassifier`'s
    (the adversary, on the float32 pooled output, trains in float32)."""

    def __init__(
        self,
        estimator: MitigatedHeadClassifier,
        train: FeatureSet,
        dev: FeatureSet | None,
        *,
        source: Any,
        standardized: bool,
        index: Mapping[str, int],
        sample_weight: np.ndarray,
        genders: Mapping[str, str],
        statistics: tuple[torch.Tensor, torch.Tensor] | None,
        device: torch.device,
        plan: TrainingPrecision,
        mixer: FrameMixer | None = None,
    ) -> None:
        self.estimator, self.train, self.dev, self.device = estimator, train, dev, device
        self.compute_dtype = torch.bfloat16 if plan.bf16 else None
        self.mixer = mixer
        self.source, self.standardized = source, standardized  # the training clips' source
        self.weight_of = dict(zip(train.ids, sample_weight.tolist(), strict=True))
        self.target_of = dict(zip(train.ids, (index[y] for y in train.labels), strict=True))
        self.gender_of = {
            i: int(genders.get(i) == "male") for i in (*train.ids, *(dev.ids if dev else ()))
        }
        needs_gender = estimator.adversary_weight > 0 or estimator.cell_weight
        male = np.mean([self.gender_of[i] for i in train.ids]) if needs_gender else 0.5
        self.gender_balance = torch.tensor(
            [0.5 / max(1.0 - male, 1e-6), 0.5 / max(male, 1e-6)], dtype=torch.float32, device=device
        )
        self.dev_true = np.array([index[y] for y in dev.labels]) if dev is not None else None
        self.head = estimator._new_head(source.num_layers, source.dim, len(index), statistics).to(
            device
        )
        hidden = estimator.hidden
        self.adversary = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2)
        ).to(device)
        self.pooled: list[torch.Tensor] = []
        self._hook = self.head.classifier.register_forward_pre_hook(
            lambda _module, inputs: self.pooled.append(inputs[0])
        )
        adversary_group = [{"params": list(self.adversary.parameters())}]
        self.optimizer = head_optimizer(
            self.head,
            lr=estimator.lr,
            layer_lr=estimator.layer_lr,
            weight_decay=estimator.weight_decay,
            extra_groups=adversary_group if estimator.adversary_weight > 0 else (),
        )
        self.accuracies: list[float | None] = []

    def close(self) -> None:
        """Remove the hook: the head leaves the fit as a plain head."""
        self._hook.remove()

    def epoch(self, epoch_seed: int) -> tuple[LayerWeightedHead, float]:
        """One pass over the training clips: the head and its mean loss."""
        self.head.train()
        self.adversary.train()
        batches = (
            self.train.source.frame_batches
            if self.mixer is not None
            else self.source.packed_batches
        )
        loss = train_pass(
            batches(
                self.train.ids,
                batch_size=self.estimator.batch_size,
                shuffle=True,
                seed=epoch_seed,
            ),
            self.step,
        )
        self.head.eval()
        self.adversary.eval()
        return self.head, loss

    def step(self, batch: Any) -> torch.Tensor:
        """The weighted emotion loss, plus the adversary's loss through the gradient reversal."""
        device, weight = self.device, self.estimator.adversary_weight
        self.pooled.clear()
        if self.mixer is not None:
            logits = stored_logits(self.head, self.train.source, batch, device, self.mixer)
        else:
            logits = self.head.forward_packed(
                batch.frames.to(device),
                batch.segments.to(device),
                len(batch.ids),
                standardized=self.standardized,
                compute_dtype=self.compute_dtype,
            )
        targets = torch.tensor([self.target_of[i] for i in batch.ids], device=device)
        w = torch.tensor([self.weight_of[i] for i in batch.ids], dtype=torch.float32, device=device)
        per_clip = nn.functional.cross_entropy(logits, targets, reduction="none")
        loss = (w * per_clip).sum() / w.sum()
        if weight > 0:
            reversed_pool = reverse_gradient(self.pooled[-1], weight)
            gender = torch.tensor([self.gender_of[i] for i in batch.ids], device=device)
            loss = loss + nn.functional.cross_entropy(
                self.adversary(reversed_pool), gender, weight=self.gender_balance
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss

    def evaluate(self, head: LayerWeightedHead) -> float | None:
        """The dev UAR; the adversary's dev accuracy goes to ``accuracies``."""
        dev, accuracy = self.dev, None
        if dev is None:
            self.accuracies.append(accuracy)
            return None
        proba, encoded = _dev_pass(head, dev, self.estimator.batch_size, self.device, self.pooled)
        dev_uar = float(uar_score(self.dev_true, proba.argmax(1)))
        if self.estimator.adversary_weight > 0:
            with torch.no_grad():
                guess = self.adversary(encoded.to(self.device)).argmax(1).cpu().numpy()
            truth = np.array([self.gender_of[i] for i in dev.ids])
            accuracy = float(np.mean(guess == truth))
        self.accuracies.append(accuracy)
        return dev_uar


def _with_adversary(
    history: Sequence[Mapping[str, Any]], accuracies: Sequence[float | None]
) -> list[dict[str, Any]]:
    """The epoch history with each epoch's ``adversary_dev_accuracy`` (after its dev UAR)."""
    return [
        {
            "epoch": entry["epoch"],
            "train_loss": entry["train_loss"],
            "dev_uar": entry["dev_uar"],
            "adversary_dev_accuracy": accuracy,
            "seconds": entry["seconds"],
        }
        for entry, accuracy in zip(history, accuracies, strict=True)
    ]


@torch.no_grad()
def _dev_pass(
    head: LayerWeightedHead,
    data: FeatureSet,
    batch_size: int,
    device: torch.device,
    pooled: list[torch.Tensor],
) -> tuple[np.ndarray, torch.Tensor]:
    """Dev probabilities ``[N, C]`` and pooled encoder outputs ``[N, H]`` in ``data.ids`` order."""
    rows: dict[str, tuple[np.ndarray, torch.Tensor]] = {}
    for batch in data.source.packed_batches(data.ids, batch_size=batch_size, shuffle=False):
        pooled.clear()
        logits = head.forward_packed(
            batch.frames.to(device), batch.segments.to(device), len(batch.ids)
        )
        proba = torch.softmax(logits.float(), dim=1).cpu().numpy()
        for row, utterance_id in enumerate(batch.ids):
            rows[utterance_id] = (proba[row], pooled[-1][row].cpu())
    return (
        np.stack([rows[i][0] for i in data.ids]),
        torch.stack([rows[i][1] for i in data.ids]),
    )
