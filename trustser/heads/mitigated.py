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

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from numbers import Real
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from trustser.devices import resolve_device
from trustser.heads.data import DataError, FeatureSet, feature_statistics
from trustser.heads.estimator import EpochEnd, HeadClassifier, check_labelled, class_weights
from trustser.heads.model import LayerWeightedHead
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
        needs_gender = self.adversary_weight > 0 or self.cell_weight
        genders = dict(genders or {})
        if needs_gender:
            missing = [i for i in train.ids if genders.get(i) not in ("female", "male")]
            if missing:
                raise DataError(
                    f"{len(missing)} training clip(s) have no female/male gender (e.g. "
                    f"{missing[:3]}); the mitigation needs every training speaker's gender."
                )
        device = resolve_device(self.device)
        if self.cell_weight:
            sample_weight, cells = cell_weights(train.labels, [genders[i] for i in train.ids])
            self.cell_weights_ = {f"{g}/{c}": float(w) for (g, c), w in sorted(cells.items())}
        else:
            per_class = class_weights(train.labels, classes, self.class_weight)
            sample_weight = np.array([per_class[index[y]] for y in train.labels])
        weight_of = dict(zip(train.ids, sample_weight.tolist(), strict=True))
        target_of = dict(zip(train.ids, (index[y] for y in train.labels), strict=True))
        gender_of = {
            i: int(genders.get(i) == "male") for i in (*train.ids, *(dev.ids if dev else ()))
        }
        male = np.mean([gender_of[i] for i in train.ids]) if needs_gender else 0.5
        gender_balance = torch.tensor(
            [0.5 / max(1.0 - male, 1e-6), 0.5 / max(male, 1e-6)], dtype=torch.float32, device=device
        )
        dev_true = np.array([index[y] for y in dev.labels]) if dev is not None else None
        statistics = (
            feature_statistics(train.source, train.ids, batch_size=self.batch_size)
            if self.normalize
            else None
        )
        source, standardized = train.source, False
        if statistics is not None and hasattr(source, "standardized"):
            source, standardized = source.standardized(*statistics, ids=train.ids), True
        fork_devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(self.seed)
            head = self._new_head(source.num_layers, source.dim, len(classes), statistics).to(
                device
            )
            adversary = nn.Sequential(
                nn.Linear(self.hidden, self.hidden), nn.ReLU(), nn.Linear(self.hidden, 2)
            ).to(device)
            pooled: list[torch.Tensor] = []
            hook = head.classifier.register_forward_pre_hook(
                lambda _module, inputs: pooled.append(inputs[0])
            )
            others = [p for n, p in head.named_parameters() if n != "layer_logits"]
            layer_lr = self.layer_lr if self.layer_lr is not None else self.lr
            groups = [
                {"params": others},
                {"params": [head.layer_logits], "lr": layer_lr, "weight_decay": 0.0},
            ]
            if self.adversary_weight > 0:
                groups.append({"params": list(adversary.parameters())})
            optimizer = torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay)
            history: list[dict[str, Any]] = []
            best_state, best_epoch, best_score, best_adversary = None, 0, -np.inf, None
            epochs = self.epochs_for(len(train))
            try:
                for epoch in range(1, epochs + 1):
                    start = time.perf_counter()
                    total, count = 0.0, 0
                    epoch_seed = int(
                        np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0]
                    )
                    head.train()
                    adversary.train()
                    for batch in source.packed_batches(
                        train.ids, batch_size=self.batch_size, shuffle=True, seed=epoch_seed
                    ):
                        pooled.clear()
                        frames = batch.frames.to(device)
                        segments = batch.segments.to(device)
                        logits = head.forward_packed(
                            frames, segments, len(batch.ids), standardized=standardized
                        )
                        targets = torch.tensor([target_of[i] for i in batch.ids], device=device)
                        w = torch.tensor(
                            [weight_of[i] for i in batch.ids], dtype=torch.float32, device=device
                        )
                        per_clip = nn.functional.cross_entropy(logits, targets, reduction="none")
                        loss = (w * per_clip).sum() / w.sum()
                        if self.adversary_weight > 0:
                            reversed_pool = reverse_gradient(pooled[-1], self.adversary_weight)
                            gender = torch.tensor([gender_of[i] for i in batch.ids], device=device)
                            loss = loss + nn.functional.cross_entropy(
                                adversary(reversed_pool), gender, weight=gender_balance
                            )
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
                        total += float(loss.detach()) * len(batch.ids)
                        count += len(batch.ids)
                    if count == 0:
                        raise DataError("the training source yielded no batches.")
                    head.eval()
                    adversary.eval()
                    dev_uar, adversary_accuracy = None, None
                    if dev is not None:
                        proba, encoded = _dev_pass(head, dev, self.batch_size, device, pooled)
                        dev_uar = float(uar_score(dev_true, proba.argmax(1)))
                        if self.adversary_weight > 0:
                            with torch.no_grad():
                                guess = adversary(encoded.to(device)).argmax(1).cpu().numpy()
                            truth = np.array([gender_of[i] for i in dev.ids])
                            adversary_accuracy = float(np.mean(guess == truth))
                    score = dev_uar if dev_uar is not None else float(epoch)
                    if score > best_score:
                        best_score, best_epoch = score, epoch
                        best_state = copy.deepcopy(head.state_dict())
                        best_adversary = adversary_accuracy
                    seconds = time.perf_counter() - start
                    history.append(
                        {
                            "epoch": epoch,
                            "train_loss": total / count,
                            "dev_uar": dev_uar,
                            "adversary_dev_accuracy": adversary_accuracy,
                            "seconds": seconds,
                        }
                    )
                    if callback is not None:
                        callback(
                            EpochEnd(epoch, epochs, total / count, dev_uar, best_epoch, seconds)
                        )
            finally:
                hook.remove()
        head.load_state_dict(best_state)
        head.eval()
        self.head_ = head
        self.classes_ = np.array(classes, dtype=object)
        self.layer_weights_ = head.layer_weights.detach().to("cpu").numpy().astype(float)
        self.epochs_ = epochs
        self.best_epoch_ = best_epoch
        self.best_score_ = best_score if dev is not None else None
        self.history_ = history
        self.device_ = device
        self.adversary_dev_accuracy_ = best_adversary
        self.trainable_parameters_ = int(sum(p.numel() for p in head.parameters()))
        return self


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
