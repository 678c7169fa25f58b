"""What a kind of model variant is: its tag grammar, how it is fitted, deployed, attacked, costed.

A *variant* ``<base>@<tag>`` is a model derived from the backbone ``<base>`` and a row of its
own everywhere (heads, attack, cost, profile, recommend). Its *kind* — the tag's leading word —
is one :class:`VariantKind` in one module of :mod:`trustser.variants`, which owns everything
about it; the stages ask the kind (through the parsed :class:`Variant`) and never parse a
name or branch on a particular kind:

=====================  ===================================================================
tag grammar            :meth:`~VariantKind.parse` (tag → parameters), :meth:`~VariantKind.tag`
fitted from the cache  :meth:`~VariantKind.fit` (a :class:`FitRequest` configured once)
deployed               :meth:`~VariantKind.fold_encoder` and :meth:`~VariantKind.wrap`: what
                       it changes in a fold's end-to-end model (:mod:`trustser.deployed`)
from the cache         :meth:`~VariantKind.cached_path`: a fold run on cached hidden states;
                       :meth:`~VariantKind.end_to_end`: why it cannot be (it changes the
                       inference path before the backbone), so it runs end to end
attacked               :meth:`~VariantKind.not_attackable` (why not), :meth:`~VariantKind.randomized`
                       (attacked adaptively, with expectation over transformation)
privacy                :meth:`~VariantKind.exposes_base_representation`: it inherits its
                       base's privacy runs; :meth:`~VariantKind.exposed`: the embeddings its
                       deployed model exposes (what speaker verification attacks)
compared               :meth:`~VariantKind.control` (the variant its change is also reported
                       against), :meth:`~VariantKind.dev_figures` and
                       :meth:`~VariantKind.choose_on_dev` (which of several variants of one
                       backbone a user deploys, chosen on dev clips only)
cost                   :meth:`~VariantKind.inference_passes`: forward passes per clip
described              :attr:`~VariantKind.summary` (the kind), :meth:`~VariantKind.describe`
                       (a variant), :attr:`~VariantKind.mitigation` (the profile's
                       Mitigations section lists it)
=====================  ===================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from torch import nn

from trustser._validation import TrustSERError
from trustser.deployed.cached import CachedPath, head_on_cache
from trustser.deployed.loading import FoldHead
from trustser.heads.crossval import TaskResult, TrainingEvent
from trustser.heads.estimator import HeadClassifier
from trustser.runs import VARIANT_SEPARATOR, ModelName, RunLayout, inherit_privacy_runs

__all__ = [
    "DevChoice",
    "Exposed",
    "FitRequest",
    "Variant",
    "VariantError",
    "VariantFit",
    "VariantKind",
    "encoder_fold",
    "fold_means",
]


class VariantError(TrustSERError, ValueError):
    """A variant asked for in a way that cannot work (a malformed tag, a missing base run)."""


def encoder_fold(fold: str, available: Sequence[str], *, task: str) -> str:
    """Which emotion fold's deployed encoder a ``task`` fold of a variant is measured on.

    Gender heads and probes share the emotion folds, so gender fold k reads emotion fold k's
    encoder (the adversary is tested on speakers neither model saw). The speaker task has its
    own utterance split, whose fold names only happen to match the emotion folds' (``fold<k>``):
    every speaker fold reads **one** deployed encoder, the first emotion fold's of ``available``
    (in fold order), so the closed-set attack trains and tests on a single model's output.
    """
    if task == "speaker" and available:
        return available[0]
    if fold in available:
        return fold
    raise VariantError(
        f"fold {fold!r} has no trained encoder of this variant (it has: "
        f"{', '.join(available) or 'none'}); fit that fold's emotion model first (e.g. "
        "`trustser heads fit --task emotion --finetune-top K --folds ...`)."
    )


@dataclass(frozen=True)
class Exposed:
    """What a variant's deployed model exposes to someone holding its embeddings.

    ``source`` gives time-means ``[N, L, D]`` of clip ids: one function for every fold, or
    ``{fold: function}`` when each fold deploys a model of its own (the embedding sources of
    :mod:`trustser.verification.sources`); ``description`` says what they are, in words.
    """

    source: Any
    description: str


def fold_means(
    folds: Iterable[str], ids: Sequence[str], compute: Callable[[str], np.ndarray]
) -> dict[str, Callable[[Sequence[str]], np.ndarray]]:
    """``{fold: source}``: each fold's time-means of every clip of ``ids``, computed once by
    ``compute(fold)`` (rows in ``ids`` order) when first asked, then served by rows."""
    ids = list(ids)
    row = {utterance_id: i for i, utterance_id in enumerate(ids)}
    cache: dict[str, np.ndarray] = {}

    def of(fold: str) -> Callable[[Sequence[str]], np.ndarray]:
        def source(wanted: Sequence[str]) -> np.ndarray:
            if fold not in cache:
                cache[fold] = np.asarray(compute(fold))
            missing = [i for i in wanted if i not in row]
            if missing:
                raise VariantError(
                    f"{len(missing)} clip(s) have no features in the store group (e.g. "
                    f"{missing[:3]}); attack the clips the store holds."
                )
            return cache[fold][[row[i] for i in wanted]]

        return source

    return {fold: of(fold) for fold in folds}


@dataclass(frozen=True)
class FitRequest:
    """How variants are fitted, configured once by the command line or the pipeline.

    ``estimator`` is the base's head configuration (``trustser heads fit``'s), which every kind
    that trains a head starts from; ``options`` holds kind-specific settings by name
    (``uar_floor``, ``block_lr``, ``block_dropout``); ``batch_size`` is the clips per batch of an
    end-to-end evaluation; ``tasks`` the tasks a kind that trains privacy heads trains, and
    ``skip_unmeasurable`` whether it skips one the corpus cannot measure (None: when ``tasks``
    is ``("all",)``; :func:`trustser.heads.tasks.plan_tasks`).
    """

    store: Path
    runs: Path
    estimator: HeadClassifier
    folds: str | Sequence[str] | None = None
    device: str = "auto"
    seed: int = 0
    batch_size: int = 8
    data: str = "auto"
    tasks: tuple[str, ...] = ("emotion", "gender", "speaker")
    skip_unmeasurable: bool | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    callback: Callable[[TrainingEvent], None] | None = None
    resume: bool = True

    @property
    def layout(self) -> RunLayout:
        return RunLayout(Path(self.runs))


@dataclass(frozen=True)
class VariantFit:
    """What fitting a variant wrote: its task runs, probe metrics and inherited parts."""

    variant: str
    tasks: list[TaskResult] = field(default_factory=list)
    probe: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None  # the emotion metrics when no head was trained
    inherited: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)  # task -> why it is not measurable
    notes: list[str] = field(default_factory=list)  # what the user should know about this fit

    @property
    def emotion_metrics(self) -> dict[str, Any] | None:
        for run in self.tasks:
            if run.task == "emotion":
                return run.metrics
        return self.metrics


@dataclass(frozen=True)
class DevChoice:
    """Which of several variants of one backbone a kind would deploy, chosen on **dev** figures
    only (test figures are shown beside them, never used to choose): ``chosen`` (a variant
    name), the ``rule`` in words, and why each other candidate lost (``rejected``)."""

    chosen: str
    rule: str
    rejected: dict[str, str] = field(default_factory=dict)


class VariantKind:
    """One kind of variant; subclass it in a module of :mod:`trustser.variants` and register
    the instance (module docstring). Defaults describe a variant that changes nothing but its
    heads: attackable, deterministic, one forward pass, its own privacy runs."""

    word: ClassVar[str]  # the tag's leading word (``top`` in ``top1``)
    label: ClassVar[str]  # the kind in two or three words (``randomized smoothing``)
    summary: ClassVar[str]  # one line: what the kind does and its tag's form
    form: ClassVar[str]  # the tag's form, for error messages (``top<K> with K >= 1 ...``)
    mitigation: ClassVar[bool] = True  # listed in the profile's Mitigations section
    targets: ClassVar[str | None] = None  # the profile axis the mitigation aims to improve

    # ------------------------------------------------------------------ tag grammar
    def parse(self, tag: str) -> dict[str, Any] | None:
        """The parameters a tag of this kind spells, or None when it is not well formed."""
        raise NotImplementedError

    def tag(self, **params: Any) -> str:
        """The tag of a variant with ``params`` (checks them: :class:`VariantError`)."""
        raise NotImplementedError

    def variant(self, base: str, **params: Any) -> Variant:
        """The variant of backbone ``base`` (a variant name's base is used) with ``params``."""
        tag = self.tag(**params)
        return Variant(self, ModelName.parse(base).base, tag, self.parameters(tag))

    def parameters(self, tag: str) -> dict[str, Any]:
        """:meth:`parse`, refusing a malformed tag with the kind's form."""
        params = self.parse(tag)
        if params is None:
            raise VariantError(f"variant tag {tag!r}: a {self.word} variant is {self.form}.")
        return params

    # ------------------------------------------------------------------ questions
    def describe(self, params: Mapping[str, Any]) -> str:
        """What a variant does, in a few words (profile tables)."""
        raise NotImplementedError

    def description(self, variant: Variant, request: FitRequest) -> dict[str, Any]:
        """What the variant's runs record about it (``variant`` in config.json/metrics.json)."""
        return {"name": variant.name, "base_backbone": variant.base, "kind": self.word}

    def not_attackable(self, params: Mapping[str, Any]) -> str | None:
        """Why the waveform attack cannot measure this variant's safety (None: it can)."""
        return None

    def randomized(self, params: Mapping[str, Any]) -> bool:
        """A randomized model is attacked adaptively (expectation over transformation)."""
        return False

    def exposes_base_representation(self, params: Mapping[str, Any]) -> bool:
        """True when an adversary sees what it sees of the base: the base's gender, speaker
        and probe runs are the variant's too (inherited, marked as such)."""
        return False

    def exposed(self, variant: Variant, group: Any, layout: RunLayout) -> Exposed:
        """The embeddings the variant's deployed model exposes, for attackers trained afresh on
        them (speaker verification, ``trustser privacy verify``): by default, for a variant that
        exposes its base's representation, the store group's time-means."""
        if self.exposes_base_representation(variant.params):
            return Exposed(
                group.means,
                "time-mean of every hidden state of the base (the variant exposes its base's "
                "representation)",
            )
        raise VariantError(
            f"{variant.name}: the {self.label} kind does not say which embeddings its deployed "
            "model exposes (`VariantKind.exposed`), so it cannot be attacked on them."
        )

    def uses_base_heads(self, params: Mapping[str, Any]) -> bool:
        """True when the variant classifies with its base's emotion heads at inference."""
        return False

    def needs_gender_at_inference(self, params: Mapping[str, Any]) -> bool:
        return False

    def inference_passes(self, params: Mapping[str, Any]) -> int:
        """Forward passes of the base per classified clip (its cost factor)."""
        return 1

    def defence(self, params: Mapping[str, Any], base: str) -> dict[str, Any] | None:
        """What an attack's summary records about a defence at inference (None: none)."""
        return None

    def control(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The parameters of the variant of the same kind that this one's change is also
        reported against — the same model without the mitigation (a λ = 0 control) — or None
        when its base is its only reference."""
        return None

    def dev_figures(self, variant: Variant, layout: RunLayout) -> dict[str, Any] | None:
        """The variant's figures on **dev** clips, read from its runs, that
        :meth:`choose_on_dev` compares (None: none, or the kind makes no such choice)."""
        return None

    def choose_on_dev(
        self, candidates: Sequence[tuple[Variant, Mapping[str, Any]]]
    ) -> DevChoice | None:
        """Which of ``candidates`` (variants of one backbone with their :meth:`dev_figures`)
        this kind would deploy (None: it makes no such choice, every variant stands alone)."""
        return None

    def planned(self, base: str, settings: Mapping[str, Any]) -> list[Variant]:
        """The variants of ``base`` a ``[mitigate]`` section asks for (``trustser run``)."""
        return []

    # ------------------------------------------------------------------ behaviour
    def fit(self, variant: Variant, request: FitRequest) -> VariantFit:
        """Fit the variant from the cache (or evaluate it) and write its runs."""
        raise NotImplementedError

    def fold_encoder(self, variant: Variant, encoder: Any, head: FoldHead) -> Any:
        """The backbone as one fold of the variant deploys it (default: unchanged)."""
        return encoder

    def wrap(self, variant: Variant, model: nn.Module, *, fold: str, seed: int) -> nn.Module:
        """A fold's end-to-end model as the variant runs it (default: unchanged)."""
        return model

    def end_to_end(self, params: Mapping[str, Any]) -> str | None:
        """Why the variant's predictions need the backbone run on the waveform (its inference
        path changes what the backbone sees, which the cache does not hold); None when they
        come from the cached hidden states (:meth:`cached_path`). By default a kind that
        changes the deployed model (:meth:`wrap`, :meth:`fold_encoder`) without saying how to
        run it from the cache runs end to end."""
        kind = type(self)
        changes = (
            kind.wrap is not VariantKind.wrap or kind.fold_encoder is not VariantKind.fold_encoder
        )
        if changes and kind.cached_path is VariantKind.cached_path:
            return (
                f"a {self.label} changes the deployed model in a way the cached hidden states "
                "cannot stand in for"
            )
        return None

    def cached_path(
        self, variant: Variant, head: nn.Module, fold: FoldHead, layout: RunLayout
    ) -> CachedPath:
        """One fold of the variant run from the cached hidden states; ``head`` is the fold's
        emotion head (its base's when :meth:`uses_base_heads`), loaded from ``fold.path``.
        Default: the head alone (a variant that changes only its heads)."""
        return head_on_cache(head)

    def probe_means(
        self, variant: Variant, group: Any, layout: RunLayout, ids: Sequence[str]
    ) -> Callable[..., Any] | None:
        """``means_of(split, task=...)``: the per-fold time-means a linear-probe adversary of
        the variant reads, for ``trustser heads probe``; None when the kind's fit writes its
        probes itself or it inherits its base's."""
        return None

    def probe_description(self, variant: Variant, group: Any) -> dict[str, Any]:
        """What the variant's probe/metrics.json records about it."""
        return {"name": variant.name, "base_backbone": group.name}


@dataclass(frozen=True)
class Variant:
    """A parsed variant name: its kind, base backbone and parameters. It answers every
    question the stages ask (and is the :class:`trustser.deployed.Deployment` of its folds)."""

    kind: VariantKind
    base: str
    tag: str
    params: Mapping[str, Any]

    @property
    def name(self) -> str:
        return f"{self.base}{VARIANT_SEPARATOR}{self.tag}"

    def __str__(self) -> str:
        return self.name

    @property
    def model_name(self) -> ModelName:
        return ModelName(self.base, self.tag)

    @property
    def directory(self) -> str:
        return self.model_name.directory

    def describe(self) -> str:
        return self.kind.describe(self.params)

    @property
    def not_attackable(self) -> str | None:
        return self.kind.not_attackable(self.params)

    @property
    def randomized(self) -> bool:
        return self.kind.randomized(self.params)

    @property
    def exposes_base_representation(self) -> bool:
        return self.kind.exposes_base_representation(self.params)

    def exposed(self, group: Any, layout: RunLayout) -> Exposed:
        return self.kind.exposed(self, group, layout)

    @property
    def uses_base_heads(self) -> bool:
        return self.kind.uses_base_heads(self.params)

    @property
    def needs_gender_at_inference(self) -> bool:
        return self.kind.needs_gender_at_inference(self.params)

    @property
    def inference_passes(self) -> int:
        return self.kind.inference_passes(self.params)

    @property
    def defence(self) -> dict[str, Any] | None:
        return self.kind.defence(self.params, self.base)

    @property
    def control(self) -> Variant | None:
        """The variant of the same kind whose change this one's is also compared with."""
        params = self.kind.control(self.params)
        return None if params is None else self.kind.variant(self.base, **params)

    def dev_figures(self, layout: RunLayout) -> dict[str, Any] | None:
        return self.kind.dev_figures(self, layout)

    def fit(self, request: FitRequest) -> VariantFit:
        """Fit (or evaluate) the variant and write its runs; a variant that exposes its base's
        representation then inherits the base's privacy runs."""
        result = self.kind.fit(self, request)
        if self.exposes_base_representation:
            inherited = inherit_privacy_runs(request.layout, self.base, self.name)
            result = replace(result, inherited=inherited)
        return result

    def fold_encoder(self, encoder: Any, head: FoldHead) -> Any:
        return self.kind.fold_encoder(self, encoder, head)

    def wrap(self, model: nn.Module, *, fold: str, seed: int) -> nn.Module:
        return self.kind.wrap(self, model, fold=fold, seed=seed)

    @property
    def end_to_end(self) -> str | None:
        return self.kind.end_to_end(self.params)

    def cached_path(self, head: nn.Module, fold: FoldHead, layout: RunLayout) -> CachedPath:
        return self.kind.cached_path(self, head, fold, layout)
