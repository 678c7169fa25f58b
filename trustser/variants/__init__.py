"""Model variants, one module per kind, and the registry the stages ask (docs/architecture.md).

* ``top<K>`` (:mod:`.finetune`): the top K encoder blocks fine-tuned with the emotion head;
* ``privacy-l<λ>`` (:mod:`.privacy`): the emotion head trained against a gender adversary,
  judged by fresh attackers on the encoder's output;
* ``fair-post`` / ``fair-reweight`` (:mod:`.fairness`): per-gender logit offsets fitted on dev,
  or gender × class reweighting of the loss;
* ``smooth-s<s>-n<N>`` (:mod:`.smoothing`): randomized smoothing at inference;
* ``erase-gender`` (:mod:`.erasure`): gender erased from every hidden state by LEACE, judged
  by fresh attackers like ``privacy-l<λ>`` (:mod:`.attackers`).

``parse("whisper_tiny_en_offline@top1")`` gives the :class:`~.kind.Variant` (None for a base
backbone); every stage asks it what it needs. A new kind is a module with a
:class:`~.kind.VariantKind` and one line in :data:`_BUILT_IN` (or :func:`register` at run time).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustser.heads.estimator import HeadClassifier
from trustser.heads.probe import ProbeResult
from trustser.runs import ModelName, RunLayout, forget_variant_word, register_variant_word
from trustser.variants import erasure, fairness, finetune, privacy, smoothing
from trustser.variants import kind as _kind_module
from trustser.variants.kind import (
    DevChoice as DevChoice,
)
from trustser.variants.kind import (
    Exposed as Exposed,
)
from trustser.variants.kind import (
    FitRequest,
    Variant,
    VariantError,
    VariantFit,
    VariantKind,
)
from trustser.variants.kind import (
    encoder_fold as encoder_fold,
)
from trustser.variants.kind import (
    fold_means as fold_means,
)

if TYPE_CHECKING:
    from trustser.verification.run import VerificationResult

__all__ = [
    *_kind_module.__all__,
    "fit_variant",
    "kind",
    "kinds",
    "parse",
    "register",
    "run_probes",
    "unregister",
    "verify_model",
]

_BUILT_IN: tuple[VariantKind, ...] = (
    finetune.KIND,
    privacy.KIND,
    fairness.KIND,
    smoothing.KIND,
    erasure.KIND,
)
_KINDS: dict[str, VariantKind] = {k.word: k for k in _BUILT_IN}


def kinds() -> tuple[VariantKind, ...]:
    """Every registered kind, built-in ones first."""
    return tuple(_KINDS.values())


def kind(word: str) -> VariantKind:
    """The kind whose tags start with ``word``."""
    try:
        return _KINDS[word]
    except KeyError:
        known = ", ".join(_KINDS)
        raise VariantError(f"no variant kind {word!r}; the kinds are: {known}.") from None


def register(new: VariantKind) -> VariantKind:
    """Add a kind at run time (a plug-in, or a test's toy kind): its word becomes part of the
    results layout's vocabulary (:func:`trustser.runs.variant_words`)."""
    if new.word in _KINDS and _KINDS[new.word] is not new:
        raise VariantError(f"a variant kind {new.word!r} is registered already.")
    register_variant_word(new.word)
    _KINDS[new.word] = new
    return new


def unregister(word: str) -> None:
    """Remove a kind added by :func:`register` (built-in kinds stay)."""
    if any(k.word == word for k in _BUILT_IN):
        raise VariantError(f"{word!r} is a built-in variant kind.")
    _KINDS.pop(word, None)
    forget_variant_word(word)


def parse(name: str | ModelName) -> Variant | None:
    """The variant a model name names, or None for a base backbone; a malformed tag of a
    known kind is a :class:`VariantError` naming the kind's form."""
    model = name if isinstance(name, ModelName) else ModelName.parse(str(name))
    if not model.is_variant:
        return None
    found = kind(model.kind)
    return Variant(found, model.base, model.tag, found.parameters(model.tag))


def run_probes(store: str | os.PathLike, model: str | None = None, **options: Any) -> ProbeResult:
    """``trustser heads probe`` for a backbone or a variant: a variant's probes read what it
    exposes (:meth:`~.kind.VariantKind.probe_means`); options as
    :func:`trustser.heads.probe.run_probes`."""
    from trustser.heads import probe

    variant = parse(model) if model is not None else None
    if variant is None:
        return probe.run_probes(store, model, **options)

    def representation(group: Any, layout: Any, ids: Any) -> Any:
        means = variant.kind.probe_means(variant, group, layout, ids)
        if means is None:
            raise VariantError(
                f"{variant.name}: a {variant.kind.label} variant's probes are written when it is "
                "fitted (`trustser mitigate ...`), not by `trustser heads probe`."
            )
        return means

    from trustser.store import open_group

    group, _ = open_group(store, variant.base, error=VariantError)
    return probe.run_probes(
        store,
        variant.base,
        model=variant.name,
        representation=representation,
        description=variant.kind.probe_description(variant, group),
        **options,
    )


def verify_model(
    store: str | os.PathLike,
    model: str | None = None,
    *,
    runs: str | os.PathLike = "runs",
    **options: Any,
) -> VerificationResult:
    """``trustser privacy verify`` for a backbone or a variant: speaker verification on the
    embeddings the model exposes, by attackers trained afresh on them. A backbone's are the
    store's time-means; a variant's are what its kind says its deployed model exposes
    (:meth:`~.kind.VariantKind.exposed`: a fine-tuned variant's hidden states, a privacy
    mitigation's encoder output), never the mitigation's own adversary. Options as
    :func:`trustser.verification.run_verification`."""
    from trustser.verification import run_verification

    variant = parse(model) if model is not None else None
    if variant is None:
        return run_verification(store, model, runs=runs, **options)
    from trustser.store import open_group

    group, _ = open_group(store, variant.base, error=VariantError)
    exposed = variant.exposed(group, RunLayout(Path(runs)))
    return run_verification(
        store,
        variant.name,
        runs=runs,
        source=exposed.source,
        features=exposed.description,
        **options,
    )


def fit_variant(
    store: str | os.PathLike,
    model: str,
    estimator: HeadClassifier | None = None,
    *,
    runs: str | os.PathLike = "runs",
    **request: Any,
) -> VariantFit:
    """Fit the variant ``model`` names (``"whisper_tiny_en_offline@top1"``) from ``store`` into
    ``runs``: the library's one-call form of what ``trustser heads fit --finetune-top`` and
    ``trustser mitigate`` do. ``estimator`` is the base's head configuration (default the heads'
    own, :func:`~trustser.heads.training.default_estimator`); other :class:`FitRequest` fields
    by name (``folds``, ``tasks``, ``options``, ``callback`` ...; ``device`` and ``seed`` default
    to the estimator's)."""
    from trustser.heads.training import default_estimator

    variant = parse(model)
    if variant is None:
        raise VariantError(
            f"{model!r} is a backbone, not a variant (<backbone>@<tag>); fit its heads with "
            "`trustser heads fit` (trustser.heads.training.fit_heads)."
        )
    estimator = estimator if estimator is not None else default_estimator()
    request.setdefault("device", estimator.device)
    request.setdefault("seed", estimator.seed)
    return variant.fit(
        FitRequest(store=Path(store), runs=Path(runs), estimator=estimator, **request)
    )
