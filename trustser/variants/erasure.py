"""Concept erasure, ``erase-gender``: gender removed from every hidden state in closed form.

LEACE (least-squares concept erasure; Belrose et al., 2023, "LEACE: Perfect linear concept
erasure in closed form", implemented by the ``concept-erasure`` package) gives, from the
covariance of features :math:`X` and their cross-covariance with a concept :math:`Z`, the affine
map that changes :math:`X` least (in the Mahalanobis sense) among those after which
:math:`\\operatorname{Cov}(X', Z) = 0` — and a representation with zero cross-covariance with
:math:`Z` leaves **no linear classifier** better than a constant at predicting :math:`Z`
(docs/mitigations.md gives the formula). The guarantee holds on the data the eraser is fitted
on, for linear classifiers only: a non-linear attacker may still read what the erasure leaves
(a variance, say), which is why this variant is judged, as every privacy kind, by fresh linear
*and* non-linear attackers (:mod:`trustser.variants.attackers`).

Per emotion fold, one eraser per hidden state ``l`` is fitted on the time-means of the fold's
**training** clips (``[N, D]`` per layer, gender as a 0/1 concept; clips of unknown gender left
out). The time-mean commutes with an affine map, so the erased frames' time-means are the erased
means: the guarantee covers any linear function of the time-mean of any set of layers (the
layers' cross-covariances with gender are each zero, so their concatenation's is too) — the
linear probes. It does not cover the head, which applies a non-linear frame network before
pooling. The deployed model is backbone → eraser → emotion head (:class:`ErasedEncoder`; a rank-1
update per layer, ``2·L·D`` multiply-adds per frame, not counted in the cost), whose heads are
trained on the erased features with the base's head configuration. Files: the eraser of each
fold beside its emotion head (``emotion/<fold>/eraser.safetensors``).
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trustser.heads.crossval import FoldVariant, cross_validate
from trustser.heads.data import DataError, FeatureSource, PackedBatch, Standardizable
from trustser.heads.tasks import Split
from trustser.heads.training import open_features
from trustser.manifest import GENDERS
from trustser.runs import RunLayout
from trustser.variants.attackers import PrivacyFitData, privacy_figures
from trustser.variants.kind import (
    Exposed,
    FitRequest,
    Variant,
    VariantError,
    VariantFit,
    VariantKind,
    fold_means,
)

__all__ = [
    "CONCEPTS",
    "ERASER_FILE",
    "KIND",
    "ErasedEncoder",
    "ErasedRepresentation",
    "ErasureKind",
    "LayerEraser",
    "erased",
    "fit_erasure",
]

CONCEPTS = ("gender",)  # what can be erased: a manifest attribute with a label per clip
ERASER_FILE = "eraser.safetensors"


@dataclass(frozen=True)
class LayerEraser:
    """One LEACE eraser per hidden state: :math:`x' = x - \\big((x - b_l) R_l^\\top\\big) L_l^\\top`
    with ``left`` :math:`L_l` ``[L, D, k]``, ``right`` :math:`R_l` ``[L, k, D]`` (``L_l R_l`` is
    the oblique projection :math:`W^{+} P_{W\\Sigma_{XZ}} W`) and ``bias`` :math:`b_l` ``[L, D]``
    (the fitted clips' mean); ``k`` is the concept's dimension (1 for gender)."""

    left: torch.Tensor
    right: torch.Tensor
    bias: torch.Tensor

    @classmethod
    def fit(cls, means: np.ndarray, concept: Sequence[float]) -> LayerEraser:
        """Fit on time-means ``[N, L, D]`` and a 0/1 ``concept`` per row (float64 statistics;
        the package's covariance shrinkage; the trace constraint off, since it mixes in a
        projection that would break the zero cross-covariance)."""
        # concept_erasure scripts two helpers with torch.jit when imported; torch's deprecation
        # notice about that is not the user's to act on.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", FutureWarning)
            from concept_erasure import LeaceFitter

        x = torch.as_tensor(np.asarray(means), dtype=torch.float64)
        z = torch.as_tensor(np.asarray(concept, dtype=np.float64)).reshape(-1, 1)
        if x.dim() != 3 or x.shape[0] != z.shape[0]:
            raise DataError(
                f"an eraser fits time-means [N, L, D] with one concept value per clip; got "
                f"{tuple(x.shape)} and {z.shape[0]} values."
            )
        lefts, rights, biases = [], [], []
        for layer in range(x.shape[1]):
            fitter = LeaceFitter(
                x.shape[2], 1, dtype=torch.float64, constrain_cov_trace=False, shrinkage=True
            )
            eraser = fitter.update(x[:, layer], z).eraser
            lefts.append(eraser.proj_left)
            rights.append(eraser.proj_right)
            biases.append(eraser.bias)
        return cls(
            torch.stack(lefts).float(), torch.stack(rights).float(), torch.stack(biases).float()
        )

    @property
    def num_layers(self) -> int:
        return int(self.bias.shape[0])

    @property
    def dim(self) -> int:
        return int(self.bias.shape[1])

    def to(self, device: torch.device | str) -> LayerEraser:
        return LayerEraser(self.left.to(device), self.right.to(device), self.bias.to(device))

    def erase_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Erase ``x [..., L, T, D]`` (packed frames ``[L, F, D]`` or padded ``[B, L, T, D]``)."""
        coefficients = (x - self.bias[:, None, :]) @ self.right.transpose(-1, -2)  # [..., L, T, k]
        return x - coefficients @ self.left.transpose(-1, -2)

    def erase_means(self, means: np.ndarray) -> np.ndarray:
        """Erase time-means ``[N, L, D]`` (equal to the time-means of the erased frames)."""
        x = torch.as_tensor(np.asarray(means), dtype=torch.float32)[:, :, None, :]
        return self.erase_frames(x)[:, :, 0, :].numpy()

    def digest(self) -> str:
        """SHA-256 of the eraser's values: what a fold's features are computed from."""
        h = hashlib.sha256()
        for tensor in (self.left, self.right, self.bias):
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def save(self, path: Path, metadata: Mapping[str, Any]) -> Path:
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"left": self.left, "right": self.right, "bias": self.bias}
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
            str(path),
            metadata={"trustser": json.dumps(dict(metadata), sort_keys=True, default=str)},
        )
        return path

    @classmethod
    def load(cls, path: Path) -> tuple[LayerEraser, dict[str, Any]]:
        """The eraser saved at ``path`` and its metadata (safetensors: nothing is unpickled)."""
        from safetensors import safe_open

        if not Path(path).is_file():
            raise VariantError(
                f"no eraser at {str(path)!r}; fit the variant first (`trustser mitigate erasure`)."
            )
        with safe_open(str(path), framework="pt") as handle:
            tensors = {k: handle.get_tensor(k) for k in ("left", "right", "bias")}
            info = json.loads((handle.metadata() or {}).get("trustser", "{}"))
        return cls(**tensors), info


class _ErasedSource:
    """A feature source read through an eraser: every batch erased as it is read (a rank-k
    update per layer, so nothing is copied); ``affine`` standardises after the erasure."""

    def __init__(
        self,
        inner: FeatureSource,
        eraser: LayerEraser,
        affine: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        self.inner, self.eraser, self._affine = inner, eraser, affine
        self.num_layers, self.dim = eraser.num_layers, eraser.dim

    def num_frames(self, ids: Sequence[str]) -> np.ndarray:
        return self.inner.num_frames(ids)

    def means(self, ids: Sequence[str]) -> np.ndarray:
        return self.eraser.erase_means(self.inner.means(list(ids)))

    def batches(
        self, ids: Sequence[str], batch_size: int = 64, *, shuffle: bool = True, seed: int = 0
    ) -> Iterator[Any]:
        for batch in self.inner.batches(ids, batch_size, shuffle=shuffle, seed=seed):
            hidden = self.eraser.erase_frames(torch.as_tensor(batch.hidden, dtype=torch.float32))
            yield replace(batch, hidden=hidden)


class _ErasedPacked(_ErasedSource, Standardizable):
    """:class:`_ErasedSource` over features in RAM: packed batches and a standardised copy, as
    :class:`~trustser.heads.data.PackedFeatures` offers them to the heads."""

    def packed_batches(
        self, ids: Sequence[str], *args: Any, **kwargs: Any
    ) -> Iterator[PackedBatch]:
        """The inner source's packed batches (its arguments, passed through), erased."""
        for batch in self.inner.packed_batches(ids, *args, **kwargs):
            frames = self.eraser.erase_frames(batch.frames)
            if self._affine is not None:
                mean, inverse = self._affine
                frames = (frames - mean[:, None, :]) * inverse[:, None, :]
            yield replace(batch, frames=frames)

    def _with_affine(
        self, ids: Sequence[str] | None, affine: tuple[torch.Tensor, torch.Tensor]
    ) -> _ErasedPacked:
        return _ErasedPacked(self.inner, self.eraser, affine)

    def statistics(self, ids: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation ``[L, D]`` of the erased frames of ``ids``."""
        total = torch.zeros(self.num_layers, self.dim, dtype=torch.float64)
        squares = torch.zeros_like(total)
        count = 0
        for batch in self.packed_batches(ids, shuffle=False):
            frames = batch.frames.double()
            total += frames.sum(1)
            squares += (frames * frames).sum(1)
            count += frames.shape[1]
        if count == 0:
            raise DataError("cannot compute feature statistics from zero frames.")
        mean = total / count
        return mean.float(), (squares / count - mean * mean).clamp_min(0.0).sqrt().float()


def erased(source: FeatureSource, eraser: LayerEraser) -> FeatureSource:
    """``source`` read through ``eraser`` (packed batches too when it holds them in RAM)."""
    if hasattr(source, "packed_batches"):
        return _ErasedPacked(source, eraser)
    return _ErasedSource(source, eraser)


class ErasedRepresentation:
    """What the fresh attackers read: the store's features of each emotion fold through that
    fold's eraser (:class:`~trustser.variants.attackers.Representation`)."""

    summary = "time-mean of every hidden state after the fold's LEACE eraser"

    def __init__(self, source: FeatureSource, erasers: Mapping[str, LayerEraser]) -> None:
        self.source, self.erasers = source, dict(erasers)
        self.folds = list(self.erasers)
        self._base: tuple[tuple[str, ...], np.ndarray] | None = None  # the last ids' means

    def features(self, fold: str) -> FeatureSource:
        return erased(self.source, self.erasers[fold])

    def means(self, fold: str, ids: Sequence[str]) -> np.ndarray:
        key = tuple(ids)
        if self._base is None or self._base[0] != key:
            self._base = (key, np.asarray(self.source.means(list(ids)), dtype=np.float32))
        return np.asarray(self.erasers[fold].erase_means(self._base[1]), dtype=np.float64)

    def identity(self, fold: str) -> str:
        return self.erasers[fold].digest()


class ErasedEncoder(nn.Module):
    """A backbone whose hidden states pass through a fold's eraser: the deployed encoder of an
    ``erase-gender`` fold (attributes other than ``forward`` are the backbone's)."""

    def __init__(self, backbone: nn.Module, eraser: LayerEraser) -> None:
        super().__init__()
        self.inner = backbone
        self.register_buffer("left", eraser.left.clone())
        self.register_buffer("right", eraser.right.clone())
        self.register_buffer("bias", eraser.bias.clone())

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("_modules", {}).get("inner")
            if inner is None:
                raise
            return getattr(inner, name)

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, frame_lengths = self.inner(waveforms, lengths)
        eraser = LayerEraser(self.left, self.right, self.bias)
        return eraser.erase_frames(hidden), frame_lengths


def _concept_of(variant: Variant, manifest: Any) -> dict[str, float]:
    """Each clip's concept value (male = 1, female = 0); clips of unknown gender are absent."""
    concept = str(variant.params["concept"])
    if concept != "gender":  # the grammar admits CONCEPTS only
        raise VariantError(f"cannot erase {concept!r}; the concepts are {', '.join(CONCEPTS)}.")
    return {u.id: float(u.gender == "male") for u in manifest.utterances if u.gender in GENDERS}


def fit_erasers(
    means: np.ndarray, ids: Sequence[str], splits: Sequence[Split], concept: Mapping[str, float]
) -> dict[str, LayerEraser]:
    """One eraser per split, fitted on the time-means (rows of ``means`` follow ``ids``) of its
    training clips with a known concept value; both values must be present."""
    row = {utterance_id: i for i, utterance_id in enumerate(ids)}
    erasers = {}
    for split in splits:
        train = [i for i in split.train if i in concept]
        values = [concept[i] for i in train]
        if len(set(values)) < 2:
            raise VariantError(
                f"fold {split.name!r}: the eraser needs training clips of both genders, found "
                f"{len(train)} clip(s) of {len(set(values))} gender(s); erasure needs a corpus "
                "whose training speakers include women and men."
            )
        erasers[split.name] = LayerEraser.fit(means[[row[i] for i in train]], values)
    return erasers


class _ErasedEmotion(FoldVariant):
    """The emotion task on a fold's erased features; the eraser saved beside the head."""

    def __init__(
        self,
        erasers: Mapping[str, LayerEraser],
        description: Mapping[str, Any],
        concept: Mapping[str, float],
    ) -> None:
        self.erasers, self.concept = dict(erasers), concept
        self.mitigation = dict(description)
        self.description = {**description, "trained": "emotion head on the erased features"}

    def features(self, split: Split, source: FeatureSource) -> FeatureSource:
        return erased(source, self.erasers[split.name])

    def fold_identity(self, split: Split) -> str:
        return self.erasers[split.name].digest()

    def after_fold(self, split: Split, model: Any, fold_dir: Path) -> Mapping[str, Any]:
        fitted_on = [i for i in split.train if i in self.concept]
        info = {
            **self.mitigation,
            "fold": split.name,
            "fitted_on": f"time-means of the fold's {len(fitted_on)} training clips of known gender",
            "eraser_sha256": self.erasers[split.name].digest(),
        }
        self.erasers[split.name].save(fold_dir / ERASER_FILE, info)
        return {"mitigation": {**info, "eraser": ERASER_FILE}}


def fit_erasure(variant: Variant, request: FitRequest) -> VariantFit:
    """Fit ``<backbone>@erase-gender``: per emotion fold an eraser on its training clips, the
    emotion heads on the erased features, then the fresh attackers (module docstring)."""
    data = PrivacyFitData.open(variant, request)
    source, mode = open_features(data.group, data.needed, data=request.data)
    concept = _concept_of(variant, data.manifest)
    erasers = fit_erasers(source.means(data.needed), data.needed, data.emotion_splits, concept)
    description = KIND.description(variant, request)
    emotion_run = cross_validate(
        request.estimator,
        data.emotion,
        data.emotion_splits,
        source,
        manifest=data.manifest,
        layout=request.layout,
        model=variant.name,
        store_info=data.store_info,
        data_mode=mode,
        variant=_ErasedEmotion(erasers, description, concept),
        callback=request.callback,
        resume=request.resume,
    )
    representation = ErasedRepresentation(source, erasers)
    return data.judged(variant, request, representation, emotion_run, description)


def load_erasers(layout: RunLayout, variant: Variant) -> dict[str, LayerEraser]:
    """The erasers of the variant's fitted emotion folds, in fold order."""
    head_dir = layout.head_dir(variant.name, "emotion")
    found = {}
    for fold_dir in sorted(head_dir.iterdir()) if head_dir.is_dir() else ():
        if (fold_dir / ERASER_FILE).is_file():
            found[fold_dir.name] = LayerEraser.load(fold_dir / ERASER_FILE)[0]
    if not found:
        raise VariantError(
            f"{variant.name} has no fitted eraser under {str(head_dir)!r}; fit it first with "
            f"`trustser mitigate erasure --backbone {variant.base}`."
        )
    return found


class ErasureKind(VariantKind):
    """``erase-<concept>``: the concept erased from every hidden state by LEACE, per fold."""

    word = "erase"
    targets = "privacy"
    label = "concept erasure"
    summary = "LEACE: gender erased from every hidden state in closed form (no linear attacker)"
    form = "erase-gender"
    _TAG = re.compile(r"^erase-(?P<concept>[a-z]+)$")

    def parse(self, tag: str) -> dict[str, Any] | None:
        match = self._TAG.match(tag)
        return {"concept": match["concept"]} if match and match["concept"] in CONCEPTS else None

    def tag(self, *, concept: str = "gender") -> str:
        if concept not in CONCEPTS:
            raise VariantError(f"cannot erase {concept!r}; the concepts are {', '.join(CONCEPTS)}.")
        return f"erase-{concept}"

    def describe(self, params: Mapping[str, Any]) -> str:
        return f"LEACE concept erasure of {params['concept']} (closed form, every hidden state)"

    def description(self, variant: Variant, request: FitRequest) -> dict[str, Any]:
        return {
            "name": variant.name,
            "base_backbone": variant.base,
            "kind": self.word,
            "concept": variant.params["concept"],
            "method": "LEACE (concept-erasure), one eraser per hidden state, fitted per fold on "
            "the training clips' time-means; covariance shrinkage on, trace constraint off",
            "shared_representation": "every hidden state after the fold's eraser, [L, T, D]",
            "privacy_judged_by": "fresh gender head, speaker-ID head and linear probes",
        }

    def planned(self, base: str, settings: Mapping[str, Any]) -> list[Variant]:
        return [self.variant(base, concept=c) for c in settings.get("erasure", ())]

    def fit(self, variant: Variant, request: FitRequest) -> VariantFit:
        return fit_erasure(variant, request)

    def fold_encoder(self, variant: Variant, encoder: Any, head: Any) -> Any:
        eraser, info = LayerEraser.load(Path(head.path).parent / ERASER_FILE)
        if info.get("fold") != head.sidecar.get("fold"):
            raise VariantError(
                f"the eraser beside {str(head.path)!r} belongs to fold {info.get('fold')!r}, the "
                f"head to {head.sidecar.get('fold')!r}; refit the variant."
            )
        return ErasedEncoder(encoder, eraser).to(head.device)

    def exposed(self, variant: Variant, group: Any, layout: RunLayout) -> Exposed:
        """Each fold's deployed model exposes every hidden state after that fold's eraser."""
        representation = ErasedRepresentation(group, load_erasers(layout, variant))
        ids = list(group.ids)
        return Exposed(
            fold_means(representation.folds, ids, lambda fold: representation.means(fold, ids)),
            ErasedRepresentation.summary + " (each fold's deployed model)",
        )

    def dev_figures(self, variant: Variant, layout: RunLayout) -> dict[str, Any] | None:
        figures = privacy_figures(layout, variant.name, "dev")
        return figures if figures["attacker_accuracy"] is not None else None

    def probe_means(
        self, variant: Variant, group: Any, layout: RunLayout, ids: Sequence[str]
    ) -> Callable[..., np.ndarray]:
        """``trustser heads probe`` on the variant: the time-means through each fold's eraser."""
        from trustser.variants.kind import encoder_fold

        representation = ErasedRepresentation(group, load_erasers(layout, variant))
        ids = list(ids)

        def means_of(split: Any, *, task: str) -> np.ndarray:
            fold = encoder_fold(split.name, representation.folds, task=task)
            return representation.means(fold, ids)

        return means_of

    def probe_description(self, variant: Variant, group: Any) -> dict[str, Any]:
        return {
            "name": variant.name,
            "base_backbone": group.name,
            "features": ErasedRepresentation.summary,
        }


KIND = ErasureKind()
