"""``trustser run``'s configuration: the corpora, backbones and every stage's settings, built in
code, from the command line's options or from a TOML file (docs/reproducing-the-paper.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from trustser._toml import tomllib
from trustser._validation import TrustSERError, check_choice
from trustser.corruptions import CorruptionError, suite
from trustser.heads.estimator import DEFAULT_MAX_EPOCHS
from trustser.heads.precision import PRECISIONS
from trustser.metrics.bootstrap import DEFAULT_REPLICATES
from trustser.runs import ATTACK_METHODS, TASKS
from trustser.variants.erasure import CONCEPTS as ERASURE_CONCEPTS
from trustser.variants.fairness import FAIRNESS_METHODS
from trustser.verification.trials import DEFAULT_MAX_NONTARGETS

__all__ = [
    "STAGES",
    "AttackSettings",
    "CorpusSource",
    "ExtractSettings",
    "HeadSettings",
    "MitigateSettings",
    "PipelineConfig",
    "PipelineConfigError",
    "RobustnessSettings",
    "VariantSettings",
    "VerificationSettings",
    "config_from_options",
    "load_config",
]

STAGES = ("prepare", "extract", "heads", "verify", "attack", "cost", "profile")
PRIVACY_SCORES = ("gender", "strongest")  # [profile] privacy_score (the privacy axis's option)


class PipelineConfigError(TrustSERError, ValueError):
    """A run configuration that cannot work; names the key at fault."""


@dataclass(frozen=True)
class CorpusSource:
    """A corpus given either by name + root (official layout) or by a ready manifest file."""

    name: str
    root: str | None = None
    manifest: str | None = None


@dataclass(frozen=True)
class ExtractSettings:
    dtype: str = "float16"
    codec: str = "none"
    window: str | None = None  # Whisper: "trimmed" (default) or "30s"
    batch_seconds: float | None = None
    max_seconds: float = 6.0


@dataclass(frozen=True)
class HeadSettings:
    tasks: tuple[str, ...] = TASKS
    epochs: int | None = None  # None: each task's paper default (emotion 30, gender 10)
    min_steps: int | None = None  # None: DEFAULT_MIN_STEPS optimiser steps at least
    patience: int | None = None  # None: each task's default (gender, speaker 10; emotion 0)
    max_epochs: int = DEFAULT_MAX_EPOCHS  # the cap on epochs of a fit with patience
    hidden: int = 128
    lr: float = 5e-4
    batch_size: int = 64
    dropout: float = 0.0
    pooling: str = "mean"
    precision: str = "auto"  # auto | fp32 | bf16 (trustser.heads.precision)
    compile: bool = True  # compile the bf16 path's layer mix


@dataclass(frozen=True)
class AttackSettings:
    methods: tuple[str, ...] = ("fgsm", "pgd", "noise")
    snr: tuple[float, ...] = (45.0,)
    steps: int = 10
    batch_size: int = 8
    save_audio: int = 0


@dataclass(frozen=True)
class VariantSettings:
    """Fine-tuned variants run beside the backbones, each through every stage after extraction.

    ``finetune_top``: K values run for every backbone (``<backbone>@top<K>``); ``per_backbone``:
    ``{backbone: K values}`` replacing them for the backbones named; ``block_lr``: the blocks'
    learning rate (None: the heads' documented default).
    """

    finetune_top: tuple[int, ...] = ()
    per_backbone: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    block_lr: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "finetune_top", _top_blocks("variants.finetune_top", self.finetune_top)
        )
        per_backbone = {
            str(name): _top_blocks(f"variants.per_backbone.{name}", ks)
            for name, ks in dict(self.per_backbone).items()
        }
        object.__setattr__(self, "per_backbone", per_backbone)
        if self.block_lr is not None and not (
            isinstance(self.block_lr, (int, float)) and self.block_lr > 0
        ):
            raise PipelineConfigError(
                f"variants.block_lr must be a positive number, got {self.block_lr!r}."
            )

    def for_backbone(self, backbone: str) -> tuple[int, ...]:
        """The K values to fine-tune for ``backbone`` (as named in the config)."""
        return self.per_backbone.get(backbone, self.finetune_top)

    @property
    def any(self) -> bool:
        return bool(self.finetune_top) or any(self.per_backbone.values())


@dataclass(frozen=True)
class MitigateSettings:
    """``[mitigate]``: mitigations run as variants of every backbone (docs/mitigations.md).

    ``privacy``: adversary weights λ (``<backbone>@privacy-l<λ>``; the λ = 0 control is always
    fitted with them); ``erasure``: concepts erased by LEACE (``["gender"]``:
    ``<backbone>@erase-gender``); ``fairness``: ``post``
    and/or ``reweight`` (``@fair-post``, ``@fair-reweight``); ``smoothing_snr``: noise SNRs in
    dB, each with ``smoothing_samples`` copies (``@smooth-s<s>-n<N>``); ``uar_floor``: the
    post-processing's largest dev UAR drop; ``eot_samples``: the adaptive attack's draws.
    """

    privacy: tuple[float, ...] = ()
    fairness: tuple[str, ...] = ()
    smoothing_snr: tuple[float, ...] = ()
    smoothing_samples: int = 8
    uar_floor: float = 0.02
    eot_samples: int | None = None
    erasure: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key in ("privacy", "fairness", "smoothing_snr", "erasure"):
            value = getattr(self, key)
            object.__setattr__(
                self, key, tuple(value) if isinstance(value, (list, tuple)) else (value,)
            )
        for lam in self.privacy:
            if isinstance(lam, bool) or not isinstance(lam, (int, float)) or lam < 0:
                raise PipelineConfigError(f"mitigate.privacy: λ must be >= 0, got {lam!r}.")
        for concept in self.erasure:
            check_choice("mitigate.erasure", concept, ERASURE_CONCEPTS)
        for method in self.fairness:
            check_choice("mitigate.fairness", method, FAIRNESS_METHODS)
        for snr in self.smoothing_snr:
            if isinstance(snr, bool) or not isinstance(snr, (int, float)) or snr < 0:
                raise PipelineConfigError(
                    f"mitigate.smoothing_snr: an SNR in dB >= 0, got {snr!r}."
                )
        samples = self.smoothing_samples
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise PipelineConfigError(
                f"mitigate.smoothing_samples must be a whole number >= 1, got {samples!r}."
            )

    @property
    def any(self) -> bool:
        return bool(self.privacy or self.fairness or self.smoothing_snr or self.erasure)


@dataclass(frozen=True)
class VerificationSettings:
    """``[verification]``: speaker verification on unseen speakers (docs/verification.md), run
    from the cache for every backbone and variant, its EER shown beside the privacy axis.

    ``enabled``: run it; ``emotions``: also the trials of each of these emotion labels alone
    (``verification/<emotion>/``, e.g. ``["neutral"]``); ``max_nontargets`` non-target trials per
    gender and set; ``bootstrap`` speaker-bootstrap replicates of the run's own intervals.
    A corpus with too few test speakers per gender for any trial is noted, not failed.
    """

    enabled: bool = True
    emotions: tuple[str, ...] = ()
    max_nontargets: int = DEFAULT_MAX_NONTARGETS
    bootstrap: int = DEFAULT_REPLICATES

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise PipelineConfigError(
                f"verification.enabled must be true or false, got {self.enabled!r}."
            )
        emotions = (self.emotions,) if isinstance(self.emotions, str) else tuple(self.emotions)
        if not all(isinstance(e, str) and e for e in emotions):
            raise PipelineConfigError(
                f"verification.emotions lists emotion labels (e.g. ['neutral']), got {emotions!r}."
            )
        object.__setattr__(self, "emotions", tuple(dict.fromkeys(emotions)))
        for key in ("max_nontargets", "bootstrap"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PipelineConfigError(
                    f"verification.{key} must be a whole number >= 1, got {value!r}."
                )


@dataclass(frozen=True)
class RobustnessSettings:
    """``[robustness]``: every backbone's heads and variants on corrupted test clips
    (docs/robustness.md); the section's presence turns the stage on.

    ``corruptions`` / ``severities``: the suite's cases (empty: every one); ``seed``: the suite
    seed (None: the run's); ``bootstrap``: speaker-bootstrap replicates (0: no intervals);
    ``variants``: also the backbones' variants; ``batch_size``: clips per batch.
    """

    corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = ()
    seed: int | None = None
    bootstrap: int = 1000
    variants: bool = True
    batch_size: int = 16

    def __post_init__(self) -> None:
        for key in ("corruptions", "severities"):
            value = getattr(self, key)
            object.__setattr__(
                self, key, tuple(value) if isinstance(value, (list, tuple)) else (value,)
            )
        try:
            suite(self.corruptions or None, levels=self.severities or None)
        except CorruptionError as error:
            raise PipelineConfigError(f"robustness: {error}") from None
        for key, least in (("bootstrap", 0), ("batch_size", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise PipelineConfigError(
                    f"robustness.{key} must be a whole number >= {least}, got {value!r}."
                )
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise PipelineConfigError(f"robustness.seed must be a whole number, got {self.seed!r}.")


def _top_blocks(key: str, values: Any) -> tuple[int, ...]:
    values = (values,) if isinstance(values, int) else tuple(values or ())
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PipelineConfigError(
                f"{key}: a fine-tuned variant takes K >= 1 top blocks, got {value!r}."
            )
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class PipelineConfig:
    """Everything ``trustser run`` needs; build it in code or from a TOML file."""

    corpora: tuple[CorpusSource, ...]
    backbones: tuple[str, ...]
    out: Path = Path("runs")
    device: str = "auto"
    seed: int = 0
    extract: ExtractSettings = field(default_factory=ExtractSettings)
    heads: HeadSettings = field(default_factory=HeadSettings)
    attack: AttackSettings = field(default_factory=AttackSettings)
    scale: str = "paper"
    profile_attack: tuple[str, float] = ("fgsm", 45.0)
    variants: VariantSettings = field(default_factory=VariantSettings)
    mitigate: MitigateSettings = field(default_factory=MitigateSettings)
    verification: VerificationSettings = field(default_factory=VerificationSettings)
    privacy_score: str = "gender"  # [profile] privacy_score: what the privacy axis scores
    robustness: RobustnessSettings | None = None  # None: no [robustness] stage

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        check_choice("profile.privacy_score", self.privacy_score, PRIVACY_SCORES)
        if not self.corpora:
            raise PipelineConfigError(
                "no corpus given: pass --corpus NAME --root PATH (or --manifest)."
            )
        if not self.backbones:
            raise PipelineConfigError(
                "no backbone given: pass --backbone NAME (see `trustser backbones list`)."
            )
        for corpus in self.corpora:
            if (corpus.root is None) == (corpus.manifest is None):
                raise PipelineConfigError(
                    f"corpus {corpus.name!r}: give exactly one of root (the official layout) "
                    "or manifest (a prepared manifest file)."
                )
        names = [c.name for c in self.corpora]
        if len(set(names)) != len(names):
            raise PipelineConfigError(f"corpus names must be unique, got {names}")
        for task in self.heads.tasks:
            check_choice("heads.tasks", task, TASKS)
        check_choice("heads.precision", self.heads.precision, PRECISIONS)
        if not isinstance(self.heads.compile, bool):
            raise PipelineConfigError(
                f"heads.compile must be true or false, got {self.heads.compile!r}."
            )
        for method in self.attack.methods:
            check_choice("attack.methods", method, ATTACK_METHODS)
        if "emotion" not in self.heads.tasks and self.attack.methods:
            raise PipelineConfigError(
                "attacks need the emotion head: add 'emotion' to heads.tasks."
            )
        if "emotion" not in self.heads.tasks and self.variants.any:
            raise PipelineConfigError(
                "fine-tuned variants train with the emotion head: add 'emotion' to heads.tasks."
            )
        if "emotion" not in self.heads.tasks and self.mitigate.any:
            raise PipelineConfigError(
                "mitigations start from the emotion head: add 'emotion' to heads.tasks."
            )
        if "emotion" not in self.heads.tasks and self.robustness is not None:
            raise PipelineConfigError(
                "[robustness] evaluates the emotion heads: add 'emotion' to heads.tasks."
            )
        unknown = sorted(set(self.variants.per_backbone) - set(self.backbones))
        if unknown:
            raise PipelineConfigError(
                f"variants.per_backbone names {unknown}, which are not among the backbones "
                f"{list(self.backbones)}."
            )


def _section(data: Mapping[str, Any], key: str, cls: type, path: Path) -> Any:
    values = dict(data.get(key, {}))
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise PipelineConfigError(
            f"{path}: unknown key(s) {unknown} in [{key}]; known: {sorted(known)}"
        )
    for name, value in list(values.items()):
        if isinstance(value, list):
            values[name] = tuple(value)
    return cls(**values)


def load_config(path: str | os.PathLike, **overrides: Any) -> PipelineConfig:
    """Read a TOML run configuration (see docs/reproducing-the-paper.md for an example)."""
    path = Path(path)
    if not path.is_file():
        raise PipelineConfigError(f"config file {str(path)!r} does not exist.")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise PipelineConfigError(f"{path}: not valid TOML ({error}).") from None
    top = {
        "corpora",
        "backbones",
        "out",
        "device",
        "seed",
        "extract",
        "heads",
        "attack",
        "profile",
        "variants",
        "mitigate",
        "verification",
        "robustness",
    }
    unknown = sorted(set(data) - top)
    if unknown:
        raise PipelineConfigError(
            f"{path}: unknown top-level key(s) {unknown}; known: {sorted(top)}"
        )
    corpora = []
    for index, entry in enumerate(data.get("corpora", [])):
        extra = sorted(set(entry) - {"name", "root", "manifest"})
        if "name" not in entry or extra:
            raise PipelineConfigError(
                f"{path}: [[corpora]] entry {index + 1} needs 'name' and one of 'root'/'manifest'"
                + (f"; unknown key(s) {extra}" if extra else "")
            )
        root = entry.get("root")
        manifest = entry.get("manifest")
        base = path.resolve().parent  # relative paths in a config are relative to the config file
        corpora.append(
            CorpusSource(
                name=entry["name"],
                root=str(base / root) if root else None,
                manifest=str(base / manifest) if manifest else None,
            )
        )
    profile = dict(data.get("profile", {}))
    unknown = sorted(set(profile) - {"scale", "privacy_score"})
    if unknown:
        raise PipelineConfigError(
            f"{path}: unknown key(s) {unknown} in [profile]; known: ['privacy_score', 'scale']"
        )
    config = PipelineConfig(
        corpora=tuple(corpora),
        backbones=tuple(data.get("backbones", ())),
        out=Path(data.get("out", "runs")),
        device=str(data.get("device", "auto")),
        seed=int(data.get("seed", 0)),
        extract=_section(data, "extract", ExtractSettings, path),
        heads=_section(data, "heads", HeadSettings, path),
        attack=_section(data, "attack", AttackSettings, path),
        scale=str(profile.get("scale", "paper")),
        privacy_score=str(profile.get("privacy_score", "gender")),
        variants=_section(data, "variants", VariantSettings, path),
        mitigate=_section(data, "mitigate", MitigateSettings, path),
        verification=_section(data, "verification", VerificationSettings, path),
        robustness=(
            _section(data, "robustness", RobustnessSettings, path) if "robustness" in data else None
        ),
    )
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


def config_from_options(
    *,
    config: str | os.PathLike | None = None,
    corpora: Sequence[str] = (),
    roots: Sequence[str | os.PathLike] = (),
    manifest: str | os.PathLike | None = None,
    backbones: Sequence[str] = (),
    out: str | os.PathLike | None = None,
    device: str | None = None,
    seed: int | None = None,
    finetune_top: Sequence[int] = (),
    robustness: bool = False,
) -> PipelineConfig:
    """The run configuration of ``trustser run``'s options.

    With ``config``, the TOML file, with ``out``/``device``/``seed`` (and ``finetune_top``,
    replacing the file's ``variants.finetune_top``) overriding it when given. Otherwise a
    prepared ``manifest`` (its corpus name read from its header) and/or corpora by name, one
    root per name; unset options take the defaults (``runs``, ``auto``, seed 0, no variants).
    ``finetune_top`` lists K values: each backbone also runs its variant ``<backbone>@top<K>``.
    ``robustness`` turns the ``[robustness]`` stage on with its defaults (a config file's
    section keeps its settings).
    """
    if config is not None:
        loaded = load_config(config, out=out, device=device, seed=seed)
        if finetune_top:
            loaded = replace(
                loaded,
                variants=replace(loaded.variants, finetune_top=tuple(finetune_top)),
            )
        if robustness and loaded.robustness is None:
            loaded = replace(loaded, robustness=RobustnessSettings())
        return loaded
    sources = []
    if manifest is not None:
        from trustser.manifest import read_manifest

        name = read_manifest(manifest, check=False).corpus
        sources.append(CorpusSource(name=name, manifest=str(manifest)))
    names, paths = list(corpora), list(roots)
    if len(names) != len(paths):
        raise ValueError(
            f"give one --root per --corpus (got {len(names)} corpora, {len(paths)} roots)."
        )
    sources += [CorpusSource(name=n, root=str(r)) for n, r in zip(names, paths, strict=True)]
    return PipelineConfig(
        corpora=tuple(sources),
        backbones=tuple(backbones),
        out=Path(out) if out is not None else Path("runs"),
        device=device or "auto",
        seed=seed or 0,
        variants=VariantSettings(finetune_top=tuple(finetune_top)),
        robustness=RobustnessSettings() if robustness else None,
    )
