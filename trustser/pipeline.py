"""``trustser run``: prepare → extract → heads → probes → attack → cost → profile, resumable.

Each corpus gets its own directory under ``out``::

    out/<corpus>/manifest.jsonl      the validated manifest
    out/<corpus>/cache.zarr          the embedding store (one group per backbone)
    out/<corpus>/<backbone>/...      heads, attacks, cost (trustser.runs layout)
    out/<corpus>/<backbone>@top<K>/  the fine-tuned variants asked for (--finetune-top K), each
                                     with every stage of a backbone (trustser.runs, "variants")
    out/<corpus>/<backbone>@privacy-l<λ>/, @fair-post/, ...  the mitigations of [mitigate]
    out/<corpus>/report/             profile.json/csv/md, radar charts, report.html
    out/<corpus>/stages.json         what each finished stage was run with
    out/<corpus>/failures.log        each failed stage's error and traceback (when one failed)

A stage is skipped when its outputs exist and ``stages.json`` says they were made with the same
inputs (store provenance, settings); so re-running after an interruption resumes, and changing a
setting re-runs only what depends on it. Extraction resumes by itself at the shard level.
A stage that raises — a bad file, a missing checkpoint, CUDA running out of memory — is recorded
as failed (its traceback goes to ``failures.log``) and the other backbones go on; the run's exit
code then says that something failed.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from trustser._validation import TrustSERError, check_choice
from trustser.formatting import percent
from trustser.runs import (
    ATTACK_METHODS,
    FAIRNESS_METHODS,
    TASKS,
    ModelName,
    RunLayout,
    fairness_variant,
    finetune_variant,
    privacy_variant,
    read_json,
    smoothing_variant,
    write_json,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "AttackSettings",
    "CorpusSource",
    "ExtractSettings",
    "HeadSettings",
    "MitigateSettings",
    "Notify",
    "PipelineConfig",
    "PipelineConfigError",
    "PipelineResult",
    "StageEvent",
    "VariantSettings",
    "config_from_options",
    "load_config",
    "run_pipeline",
]

STAGES = ("prepare", "extract", "heads", "attack", "cost", "profile")


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
    hidden: int = 128
    lr: float = 5e-4
    batch_size: int = 64
    dropout: float = 0.0
    pooling: str = "mean"


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

    ``privacy``: adversary weights λ (``<backbone>@privacy-l<λ>``); ``fairness``: ``post``
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

    def __post_init__(self) -> None:
        for key in ("privacy", "fairness", "smoothing_snr"):
            value = getattr(self, key)
            object.__setattr__(
                self, key, tuple(value) if isinstance(value, (list, tuple)) else (value,)
            )
        for lam in self.privacy:
            if isinstance(lam, bool) or not isinstance(lam, (int, float)) or lam < 0:
                raise PipelineConfigError(f"mitigate.privacy: λ must be >= 0, got {lam!r}.")
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
        return bool(self.privacy or self.fairness or self.smoothing_snr)


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
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
        variants=_section(data, "variants", VariantSettings, path),
        mitigate=_section(data, "mitigate", MitigateSettings, path),
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
) -> PipelineConfig:
    """The run configuration of ``trustser run``'s options.

    With ``config``, the TOML file, with ``out``/``device``/``seed`` (and ``finetune_top``,
    replacing the file's ``variants.finetune_top``) overriding it when given. Otherwise a
    prepared ``manifest`` (its corpus name read from its header) and/or corpora by name, one
    root per name; unset options take the defaults (``runs``, ``auto``, seed 0, no variants).
    ``finetune_top`` lists K values: each backbone also runs its variant ``<backbone>@top<K>``.
    """
    if config is not None:
        loaded = load_config(config, out=out, device=device, seed=seed)
        if finetune_top:
            loaded = replace(
                loaded,
                variants=replace(loaded.variants, finetune_top=tuple(finetune_top)),
            )
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
    )


@dataclass(frozen=True)
class StageEvent:
    """One stage's outcome, for progress display and the run summary."""

    corpus: str
    stage: str
    status: str  # "start" | "done" | "skipped" | "failed"
    backbone: str | None = None
    seconds: float = 0.0
    detail: str = ""


@dataclass
class PipelineResult:
    config: PipelineConfig
    events: list[StageEvent] = field(default_factory=list)
    reports: dict[str, Path] = field(default_factory=dict)  # corpus → report.html
    radars: dict[str, Path] = field(default_factory=dict)  # corpus → overlay radar PNG
    seconds: float = 0.0

    @property
    def failures(self) -> list[StageEvent]:
        return [e for e in self.events if e.status == "failed"]

    @property
    def exit_code(self) -> int:
        """0 all stages fine; 3 some stage failed (the others still ran)."""
        return 3 if self.failures else 0


class _Ledger:
    """``stages.json``: the inputs each finished stage was run with."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, Any] = read_json(path) if path.is_file() else {}

    @staticmethod
    def key(inputs: Mapping[str, Any]) -> str:
        text = json.dumps(inputs, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def is_done(self, stage_id: str, inputs: Mapping[str, Any], outputs: Sequence[Path]) -> bool:
        entry = self.entries.get(stage_id)
        return bool(
            entry and entry.get("key") == self.key(inputs) and all(p.exists() for p in outputs)
        )

    def mark(self, stage_id: str, inputs: Mapping[str, Any]) -> None:
        self.entries[stage_id] = {
            "key": self.key(inputs),
            "inputs": inputs,
            "finished": time.time(),
        }
        write_json(self.path, self.entries)


Notify = Callable[[StageEvent], None]


def _manifest_for(source: CorpusSource, corpus_dir: Path):
    from trustser.corpora import prepare_corpus
    from trustser.manifest import read_manifest, write_manifest

    target = corpus_dir / "manifest.jsonl"
    if source.manifest is not None:
        manifest = read_manifest(source.manifest)
        write_manifest(manifest, target)
        return manifest, target
    return prepare_corpus(source.name, source.root, target), target


def _group_provenance(store: Path, backbone: str) -> dict[str, Any]:
    from trustser.store import open_store

    group = open_store(store).group(backbone)
    return {
        "provenance": {
            k: v for k, v in group.provenance.items() if k not in ("created", "versions")
        },
        "num_done": len(group.ids),
    }


def run_pipeline(
    config: PipelineConfig,
    *,
    notify: Notify | None = None,
    progress: bool = True,
    attack_progress: Callable[[Any], None] | None = None,
) -> PipelineResult:
    """Run every stage for every corpus and backbone; a failing backbone does not stop the rest.

    ``notify`` receives a :class:`StageEvent` as each stage starts and ends; ``progress`` turns
    extraction's own bar on or off; ``attack_progress`` receives the attack stages'
    :class:`~trustser.attacks.runner.AttackProgress` events (clip passes, for a progress bar).
    """
    result = PipelineResult(config=config)
    started = time.perf_counter()
    for source in config.corpora:
        _CorpusRun(
            config, source, result, notify or (lambda event: None), progress, attack_progress
        ).run()
    result.seconds = time.perf_counter() - started
    return result


class _CorpusRun:
    """All stages of one corpus: its manifest, store, runs and report live in one directory."""

    def __init__(
        self,
        config: PipelineConfig,
        source: CorpusSource,
        result: PipelineResult,
        notify: Notify,
        progress: bool,
        attack_progress: Callable[[Any], None] | None = None,
    ) -> None:
        self.config, self.source, self.result = config, source, result
        self.notify, self.progress, self.attack_progress = notify, progress, attack_progress
        self.directory = config.out / source.name
        self.directory.mkdir(parents=True, exist_ok=True)
        self.layout = RunLayout(self.directory)
        self.store = self.directory / "cache.zarr"
        self.ledger = _Ledger(self.directory / "stages.json")
        self.failure_log = self.directory / "failures.log"
        self.manifest = None

    def run(self) -> None:
        if not self._stage("prepare", None, self.prepare):
            return
        ready = [
            backbone
            for backbone in self.config.backbones
            if self._stage("extract", backbone, partial(self.extract, backbone))
        ]
        for backbone in ready:
            group = _group_name(self.store, backbone)
            inputs = {
                **_group_provenance(self.store, group),
                "heads": asdict(self.config.heads),
                "seed": self.config.seed,
            }
            if not self._stage("heads", group, partial(self.heads, group, inputs)):
                continue
            self._stage("probe", group, partial(self.probe, group, inputs))
            for method in self.config.attack.methods:
                self._stage(f"attack-{method}", group, partial(self.attack, group, method, inputs))
            self._stage("cost", group, partial(self.cost, group, inputs))
            for k in self.config.variants.for_backbone(backbone):
                self._variant(finetune_variant(group, k), inputs)
            self._mitigations(group, inputs)
        if ready:
            self._stage("profile", None, self.profile)

    def _variant(self, variant: str, base_inputs: dict[str, Any]) -> None:
        """Every stage after extraction for one fine-tuned variant (``<group>@top<K>``)."""
        inputs = {
            **base_inputs,
            "variant": {"name": variant, "block_lr": self.config.variants.block_lr},
        }
        if not self._stage("heads", variant, partial(self.heads, variant, inputs)):
            return
        self._stage("probe", variant, partial(self.probe, variant, inputs))
        for method in self.config.attack.methods:
            self._stage(f"attack-{method}", variant, partial(self.attack, variant, method, inputs))
        self._stage("cost", variant, partial(self.cost, variant, inputs))

    def _mitigations(self, group: str, base_inputs: dict[str, Any]) -> None:
        """``[mitigate]``: each mitigation a variant of ``group``, trained (or evaluated), then
        attacked and costed like a backbone; each stage skipped when done with the same inputs."""
        from trustser.attacks.smoothing import evaluate_smoothed
        from trustser.mitigate.fairness import (
            fit_fair_post,
            fit_fair_reweight,
            inherit_privacy_runs,
        )
        from trustser.mitigate.privacy import fit_privacy

        settings = self.config.mitigate
        heads = self.config.heads
        train = {
            "epochs": heads.epochs,
            "hidden": heads.hidden,
            "lr": heads.lr,
            "batch_size": heads.batch_size,
            "device": self.config.device,
            "seed": self.config.seed,
        }
        planned: list[tuple[str, Callable[[], Any], list[Path], bool]] = []
        for lam in settings.privacy:
            variant = privacy_variant(group, float(lam))
            planned.append(
                (
                    variant,
                    partial(fit_privacy, self.store, group, lambdas=[float(lam)], **train),
                    [self.layout.head_dir(variant, t) / "metrics.json" for t in TASKS],
                    True,
                )
            )
        for method in settings.fairness:
            variant = fairness_variant(group, method)
            if method == "post":
                action = partial(
                    fit_fair_post,
                    self.store,
                    group,
                    uar_floor=settings.uar_floor,
                )
            else:
                action = partial(fit_fair_reweight, self.store, group, **train)
            outputs = [self.layout.head_dir(variant, "emotion") / "metrics.json"]
            planned.append((variant, action, outputs, method != "post"))
        for snr in settings.smoothing_snr:
            variant = smoothing_variant(group, float(snr), settings.smoothing_samples)
            planned.append(
                (
                    variant,
                    partial(
                        evaluate_smoothed,
                        self.store,
                        variant,
                        device=self.config.device,
                        batch_size=self.config.attack.batch_size,
                        seed=self.config.seed,
                    ),
                    [self.layout.head_dir(variant, "emotion") / "metrics.json"],
                    True,
                )
            )
        for variant, action, outputs, attackable in planned:
            inputs = {**base_inputs, "variant": {"name": variant, **asdict(settings)}}

            def fit(action=action, outputs=outputs, inputs=inputs, variant=variant) -> str:
                if self.ledger.is_done(f"mitigate:{variant}", inputs, outputs):
                    return "up to date"
                action(runs=self.directory)
                if ModelName.parse(variant).smoothing is not None:
                    inherit_privacy_runs(self.layout, group, variant)
                self.ledger.mark(f"mitigate:{variant}", inputs)
                return f"→ {self.layout.backbone_dir(variant)}"

            if not self._stage("mitigate", variant, fit):
                continue
            for method in self.config.attack.methods if attackable else ():
                self._stage(
                    f"attack-{method}", variant, partial(self.attack, variant, method, inputs)
                )
            self._stage("cost", variant, partial(self.cost, variant, inputs))

    def _stage(self, stage: str, backbone: str | None, action: Callable[[], str]) -> bool:
        """Run one stage, recording success or failure without stopping the other backbones."""
        corpus = self.source.name
        start = time.perf_counter()
        self.notify(StageEvent(corpus, stage, "start", backbone))
        try:
            detail = action()
        except Exception as error:  # any failure of one stage: record it, let the others run
            status, detail = "failed", self._record_failure(stage, backbone, error)
        else:
            status = "skipped" if detail.startswith("up to date") else "done"
        event = StageEvent(corpus, stage, status, backbone, time.perf_counter() - start, detail)
        self.result.events.append(event)
        self.notify(event)
        return status != "failed"

    def _record_failure(self, stage: str, backbone: str | None, error: Exception) -> str:
        """Append the error and its traceback to ``failures.log``; the one-line detail."""
        what = f"{stage} {backbone}" if backbone else stage
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        with open(self.failure_log, "a", encoding="utf-8") as log:
            log.write(f"=== {stamp} {self.source.name} · {what} failed\n{text}\n")
        _release_memory()
        message = (
            str(error) if isinstance(error, TrustSERError) else f"{type(error).__name__}: {error}"
        )
        return f"{message} (traceback in {self.failure_log})"

    def prepare(self) -> str:
        self.manifest, path = _manifest_for(self.source, self.directory)
        return f"{len(self.manifest)} utterances, {len(self.manifest.folds)} folds → {path}"

    def extract(self, backbone: str) -> str:
        from trustser.extract import extract

        options = {k: v for k, v in asdict(self.config.extract).items() if v is not None}
        summary = extract(
            self.manifest,
            self.store,
            backbone,
            device=self.config.device,
            progress=self.progress,
            **options,
        )
        if summary.pending:
            raise _StageError(f"{summary.pending} clips still pending after extraction")
        skipped = f", {len(summary.skipped)} skipped (bad audio)" if summary.skipped else ""
        if summary.clips_written == 0:
            return f"up to date: {summary.done} clips in the store{skipped}"
        return f"{summary.clips_written} clips extracted in {summary.wall_seconds:.0f} s{skipped}"

    def heads(self, group: str, inputs: dict[str, Any]) -> str:
        from trustser.heads.training import fit_heads

        settings = self.config.heads
        outputs = [self.layout.head_dir(group, t) / "metrics.json" for t in settings.tasks]
        if self.ledger.is_done(f"heads:{group}", inputs, outputs):
            return "up to date"
        variant = inputs.get("variant") or {}
        fit = fit_heads(
            self.store,
            group,
            task=",".join(settings.tasks),
            runs=self.directory,
            epochs=settings.epochs,
            min_steps=settings.min_steps,
            hidden=settings.hidden,
            lr=settings.lr,
            batch_size=settings.batch_size,
            dropout=settings.dropout,
            pooling=settings.pooling,
            device=self.config.device,
            seed=self.config.seed,
            **({"block_lr": variant["block_lr"]} if variant.get("block_lr") else {}),
        )
        self.ledger.mark(f"heads:{group}", inputs)
        return ", ".join(_task_summary(t) for t in fit.tasks)

    def probe(self, group: str, heads_inputs: dict[str, Any]) -> str:
        """Linear probes beside the heads: the stronger privacy attacker on small corpora."""
        from trustser.heads.probe import run_probes

        tasks = self.config.heads.tasks
        inputs = {
            "provenance": heads_inputs["provenance"],
            "tasks": list(tasks),
            "seed": self.config.seed,
            **({"variant": heads_inputs["variant"]} if "variant" in heads_inputs else {}),
        }
        output = self.layout.probe_dir(group) / "metrics.json"
        if self.ledger.is_done(f"probe:{group}", inputs, [output]):
            return "up to date"
        result = run_probes(
            self.store, group, task=",".join(tasks), runs=self.directory, seed=self.config.seed
        )
        self.ledger.mark(f"probe:{group}", inputs)
        return "test UAR " + ", ".join(
            f"{t.task} {percent(t.all_layers['test_uar_mean'], unit=True, missing='n/a')}"
            for t in result.tasks
        )

    def attack(self, group: str, method: str, heads_inputs: dict[str, Any]) -> str:
        from trustser.attacks.runner import run_attack

        settings = self.config.attack
        inputs = {**heads_inputs, "attack": {**asdict(settings), "methods": [method]}}
        outputs = [
            self.layout.attack_dir(group, method, snr) / "summary.json" for snr in settings.snr
        ]
        if self.ledger.is_done(f"attack-{method}:{group}", inputs, outputs):
            return "up to date"
        run = run_attack(
            self.store,
            group,
            runs=self.directory,
            method=method,
            snr_db=list(settings.snr),
            device=self.config.device,
            batch_size=settings.batch_size,
            steps=settings.steps,
            save_audio=settings.save_audio,
            seed=self.config.seed,
            callback=self.attack_progress,
            **(
                {"eot_samples": self.config.mitigate.eot_samples}
                if ModelName.parse(group).smoothing and self.config.mitigate.eot_samples
                else {}
            ),
        )
        self.ledger.mark(f"attack-{method}:{group}", inputs)
        return ", ".join(
            f"{r.snr_db:g} dB ASR {percent(r.asr_mean, unit=True, missing='n/a')}"
            for r in run.results
        )

    def cost(self, group: str, heads_inputs: dict[str, Any]) -> str:
        from trustser.cost import run_cost

        # The head settings (its width) change the counted MACs; the window changes the backbone's.
        window = heads_inputs["provenance"].get("window") or "trimmed"
        inputs = {
            "provenance": heads_inputs["provenance"],
            "heads": heads_inputs["heads"],
            "device": self.config.device,
            "window": window,
        }
        if "variant" in heads_inputs:  # a variant's cost is its base's (trustser.cost)
            inputs["variant"] = heads_inputs["variant"]["name"]
        if self.ledger.is_done(f"cost:{group}", inputs, [self.layout.cost_path(group)]):
            return "up to date"
        report, _ = run_cost(group, runs=self.directory, device=self.config.device, window=window)
        self.ledger.mark(f"cost:{group}", inputs)
        return _cost_summary(report)

    def profile(self) -> str:
        from trustser.profile import run_profile

        report_dir = self.directory / "report"
        profile, files = run_profile(
            self.directory,
            report_dir,
            store=str(self.store),
            scale=self.config.scale,
            attack=self.config.profile_attack,
        )
        if files.get("report") is not None:
            self.result.reports[self.source.name] = Path(files["report"])
        if files.get("overlay_png") is not None:
            self.result.radars[self.source.name] = Path(files["overlay_png"])
        return f"{len(profile.backbones)} backbone(s) → {report_dir}"


def _release_memory() -> None:
    """After a failed stage (CUDA out of memory, say), give the next backbone the memory back."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class _StageError(TrustSERError, RuntimeError):
    """A stage finished but left its outputs incomplete."""


def _group_name(store: Path, backbone: str) -> str:
    """The store group a backbone spec was extracted into (its registry name)."""
    from trustser.store import open_store

    names = list(open_store(store).backbones)
    if backbone in names:
        return backbone
    from trustser.backbones import resolve_spec

    name = resolve_spec(backbone).name
    if name in names:
        return name
    raise _StageError(f"store {store} has no group for backbone {backbone!r} (groups: {names})")


def _task_summary(task_result: Any) -> str:
    metrics = task_result.metrics
    key = "test_uar_mean" if "test_uar_mean" in metrics else "test_accuracy_mean"
    return f"{task_result.task} {key.split('_')[1].upper()} {metrics[key]:.3f}"


def _cost_summary(report: Any) -> str:
    latency = f", {report.latency_ms:.0f} ms per clip" if report.latency_ms is not None else ""
    return (
        f"{report.backbone_params / 1e6:.1f} M params, "
        f"{report.total_macs / 1e9:.2f} GMACs per {report.seconds:g} s clip{latency}"
    )
