"""``trustser run``: prepare → extract → heads → probes → verify → attack → cost →
[robustness] → profile, resumable.

Each corpus gets its own directory under ``out``::

    out/<corpus>/manifest.jsonl      the validated manifest
    out/<corpus>/cache.zarr          the embedding store (one group per backbone)
    out/<corpus>/<backbone>/...      heads, speaker verification, attacks, cost (trustser.runs)
    out/<corpus>/<backbone>@top<K>/  the fine-tuned variants asked for (--finetune-top K), each
                                     with every stage of a backbone (trustser.runs, "variants")
    out/<corpus>/<backbone>@privacy-l<λ>/, @fair-post/, ...  the mitigations of [mitigate]
    out/<corpus>/<model>/robustness/ corrupted test clips, with a [robustness] section (the
                                     copies' features go to cache.zarr)
    out/<corpus>/report/             profile.json/csv/md, radar charts, report.html
    out/<corpus>/stages.json         what each finished stage was run with
    out/<corpus>/failures.log        each failed stage's error and traceback (when one failed)

A stage is skipped when its outputs exist and ``stages.json`` says they were made with the same
inputs (store provenance, settings); so re-running after an interruption resumes, and changing a
setting re-runs only what depends on it. Extraction resumes by itself at the shard level.
A stage that raises — a bad file, a missing checkpoint, CUDA running out of memory — is recorded
as failed (its traceback goes to ``failures.log``) and the other backbones go on; the run's exit
code then says that something failed.

A task the corpus cannot measure at all (the gender head on a corpus of one gender, speaker
identification with too few speakers) is not a failure: the heads and probes skip it with the
reason (``<task>/not_measurable.json``, which also counts as the task's output when the run
resumes), the profile shows its cells as not measurable, and a mitigation that needs it (the
gender adversary) is skipped with the reason too.
"""

from __future__ import annotations

import gc
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from trustser._validation import TrustSERError
from trustser.formatting import percent
from trustser.heads.precision import keyed_settings
from trustser.heads.tasks import NotMeasurableError
from trustser.heads.training import default_estimator
from trustser.pipeline.config import CorpusSource, PipelineConfig, RobustnessSettings
from trustser.pipeline.ledger import Ledger
from trustser.runs import TASKS, RunLayout
from trustser.variants import FitRequest, Variant, kinds
from trustser.variants.finetune import KIND as FINETUNED

__all__ = ["Notify", "PipelineResult", "StageEvent", "run_pipeline"]


@dataclass(frozen=True)
class StageEvent:
    """One stage's outcome, for progress display and the run summary."""

    corpus: str
    stage: str
    status: str  # "start" | "done" | "skipped" (up to date, or not measurable) | "failed"
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
        "num_done": len(group.ids) - len(group.derived_ids),  # corrupted copies left out
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
        self.ledger = Ledger(self.directory / "stages.json")
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
                "heads": keyed_settings(
                    asdict(self.config.heads), self._request().estimator.training_path()
                ),
                "seed": self.config.seed,
            }
            if not self._stage("heads", group, partial(self.heads, group, inputs)):
                continue
            self._stage("probe", group, partial(self.probe, group, inputs))
            self._verify(group, inputs)
            for method in self.config.attack.methods:
                self._stage(f"attack-{method}", group, partial(self.attack, group, method, inputs))
            self._stage("cost", group, partial(self.cost, group, inputs))
            for k in self.config.variants.for_backbone(backbone):
                self._variant(FINETUNED.variant(group, k=k), inputs)
            self._mitigations(group, inputs)
            if self.config.robustness is not None:
                robustness = partial(self.robustness, group, inputs, self.config.robustness)
                self._stage("robustness", group, robustness)
        if ready:
            self._stage("profile", None, self.profile)

    def _variant(self, variant: Variant, base_inputs: dict[str, Any]) -> None:
        """Every stage after extraction for one fine-tuned variant (``<group>@top<K>``)."""
        name = variant.name
        inputs = {
            **base_inputs,
            "variant": {"name": name, "block_lr": self.config.variants.block_lr},
        }
        if not self._stage("heads", name, partial(self.variant_heads, variant, inputs)):
            return
        self._stage("probe", name, partial(self.probe, name, inputs))
        self._verify(name, inputs)
        for method in self.config.attack.methods:
            self._stage(f"attack-{method}", name, partial(self.attack, name, method, inputs))
        self._stage("cost", name, partial(self.cost, name, inputs))

    def _verify(self, model: str, inputs: dict[str, Any]) -> None:
        """``[verification]``: the stage of ``model`` (a backbone or a variant), when enabled."""
        if self.config.verification.enabled:
            self._stage("verify", model, partial(self.verify, model, inputs))

    def _request(self, **changes: Any) -> FitRequest:
        """How this run fits variants: the configured heads, device, seed and store."""
        heads = self.config.heads
        estimator = default_estimator(
            hidden=heads.hidden,
            lr=heads.lr,
            batch_size=heads.batch_size,
            dropout=heads.dropout,
            pooling=heads.pooling,
            epochs=heads.epochs,
            min_steps=heads.min_steps,
            patience=heads.patience,
            max_epochs=heads.max_epochs,
            device=self.config.device,
            seed=self.config.seed,
            precision=heads.precision,
            compile=heads.compile,
        )
        return FitRequest(
            store=self.store,
            runs=self.directory,
            estimator=estimator,
            device=self.config.device,
            seed=self.config.seed,
            batch_size=self.config.attack.batch_size,
            tasks=tuple(heads.tasks),
            skip_unmeasurable=True,
            **changes,
        )

    def _mitigations(self, group: str, base_inputs: dict[str, Any]) -> None:
        """``[mitigate]``: each mitigation a variant of ``group`` (each kind plans its own from
        the section), fitted or evaluated, then attacked when it can be and costed like a
        backbone; each stage skipped when done with the same inputs."""
        settings = self.config.mitigate
        request = self._request(options={"uar_floor": settings.uar_floor})
        planned = [v for kind in kinds() for v in kind.planned(group, asdict(settings))]
        for variant in planned:
            name = variant.name
            inputs = {**base_inputs, "variant": {"name": name, **asdict(settings)}}
            # what the fit writes itself (a variant exposing its base's representation copies
            # the base's privacy runs, which need not exist)
            tasks = ("emotion",) if variant.exposes_base_representation else TASKS
            outputs = [self.layout.head_dir(name, t) / "metrics.json" for t in tasks]

            def fit(
                variant: Variant = variant, inputs: dict = inputs, outputs: list = outputs
            ) -> str:
                if self.ledger.is_done(f"mitigate:{variant.name}", inputs, outputs):
                    return "up to date"
                try:
                    fitted = variant.fit(request)
                except NotMeasurableError as error:  # e.g. a gender adversary on one gender
                    return f"{_NOT_MEASURABLE}: needs the {error.task} task: {error.reason}"
                self.ledger.mark(f"mitigate:{variant.name}", inputs)
                return "; ".join([f"→ {self.layout.backbone_dir(variant.name)}", *fitted.notes])

            if not self._stage("mitigate", name, fit) or self._unmeasured(name):
                continue
            self._verify(name, inputs)
            for method in self.config.attack.methods if variant.not_attackable is None else ():
                self._stage(f"attack-{method}", name, partial(self.attack, name, method, inputs))
            self._stage("cost", name, partial(self.cost, name, inputs))

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
            skipped = detail.startswith(("up to date", _NOT_MEASURABLE))
            status = "skipped" if skipped else "done"
        event = StageEvent(corpus, stage, status, backbone, time.perf_counter() - start, detail)
        self.result.events.append(event)
        self.notify(event)
        return status != "failed"

    def _unmeasured(self, backbone: str) -> bool:
        """Whether the last stage of ``backbone`` was skipped as not measurable."""
        last = next((e for e in reversed(self.result.events) if e.backbone == backbone), None)
        return last is not None and last.detail.startswith(_NOT_MEASURABLE)

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
        outputs = [self.layout.task_done(group, t) for t in settings.tasks]
        if self.ledger.is_done(f"heads:{group}", inputs, outputs):
            return "up to date"
        fit = fit_heads(
            self.store,
            group,
            self._request().estimator,
            task=",".join(settings.tasks),
            runs=self.directory,
            skip_unmeasurable=True,
        )
        self.ledger.mark(f"heads:{group}", inputs)
        return _fit_summary(fit.tasks, fit.skipped)

    def variant_heads(self, variant: Variant, inputs: dict[str, Any]) -> str:
        """A fine-tuned variant's heads: its kind fits them (blocks + emotion head first)."""
        settings = self.config.heads
        outputs = [self.layout.task_done(variant.name, t) for t in settings.tasks]
        if self.ledger.is_done(f"heads:{variant.name}", inputs, outputs):
            return "up to date"
        block_lr = self.config.variants.block_lr
        fit = variant.fit(self._request(options={"block_lr": block_lr} if block_lr else {}))
        self.ledger.mark(f"heads:{variant.name}", inputs)
        return _fit_summary(fit.tasks, fit.skipped)

    def probe(self, group: str, heads_inputs: dict[str, Any]) -> str:
        """Linear probes beside the heads: the stronger privacy attacker on small corpora."""
        from trustser.variants import run_probes

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
            self.store,
            group,
            task=",".join(tasks),
            runs=self.directory,
            seed=self.config.seed,
            skip_unmeasurable=True,
        )
        self.ledger.mark(f"probe:{group}", inputs)
        return "test UAR " + ", ".join(
            [
                f"{t.task} {percent(t.all_layers['test_uar_mean'], unit=True, missing='n/a')}"
                for t in result.tasks
            ]
            + _skipped_notes(result.skipped)
        )

    def verify(self, model: str, heads_inputs: dict[str, Any]) -> str:
        """Speaker verification on unseen speakers, from the cache: the embeddings the model
        exposes (a variant's through its kind), both attackers, the DET chart; a corpus (or an
        emotion) with too few speakers or clips for the trials is noted, not failed."""
        from trustser.profile.det import write_det_chart
        from trustser.variants import verify_model
        from trustser.verification.attackers import VerificationAttackError
        from trustser.verification.trials import TrialDesignError

        settings = self.config.verification
        inputs = {
            "provenance": heads_inputs["provenance"],
            "verification": asdict(settings),
            "seed": self.config.seed,
        }
        if "variant" in heads_inputs:  # what a variant exposes depends on how it was fitted
            inputs.update(heads=heads_inputs["heads"], variant=heads_inputs["variant"])
        output = self.layout.verification_dir(model) / "metrics.json"
        if self.ledger.is_done(f"verify:{model}", inputs, [output]):
            return "up to date"
        parts = []
        for emotion in (None, *settings.emotions):
            try:
                result = verify_model(
                    self.store,
                    model,
                    runs=self.directory,
                    emotion=emotion,
                    seed=self.config.seed,
                    max_nontargets=settings.max_nontargets,
                    replicates=settings.bootstrap,
                )
            except (TrialDesignError, VerificationAttackError) as error:  # too few speakers, clips
                if emotion is None:
                    return f"not measurable on this corpus: {error}"
                parts.append(f"{emotion}: not measurable ({error})")
                continue
            write_det_chart(result.directory)
            eers = ", ".join(
                f"{name} {percent(result.metrics[f'{name}_eer'], unit=True, missing='n/a')}"
                for name in result.metrics["attackers"]
            )
            parts.append(f"{emotion or 'all'}: EER {eers}")
        self.ledger.mark(f"verify:{model}", inputs)
        return "; ".join(parts)

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
                if _randomized(group) and self.config.mitigate.eot_samples
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

    def robustness(
        self, group: str, heads_inputs: dict[str, Any], settings: RobustnessSettings
    ) -> str:
        """``[robustness]``: the backbone's corrupted copies extracted once, every model of it
        (its heads and the variants this run fitted) evaluated; skipped when done with the
        same settings and the same fitted models (their stages' ledger keys)."""
        from trustser.robustness import robustness_models, run_robustness

        models = robustness_models(self.layout, group, variants=settings.variants)
        fitted = {
            m: (
                self.ledger.entries.get(f"heads:{m}")
                or self.ledger.entries.get(f"mitigate:{m}")
                or {}
            ).get("key")
            for m in models
        }
        inputs = {
            "provenance": heads_inputs["provenance"],
            "robustness": asdict(settings),
            "seed": self.config.seed,
            "models": fitted,
        }
        outputs = [self.layout.robustness_dir(m) / "summary.json" for m in models]
        if self.ledger.is_done(f"robustness:{group}", inputs, outputs):
            return "up to date"
        (run,) = run_robustness(
            self.store,
            runs=self.directory,
            backbones=[group],
            corruptions=settings.corruptions or None,
            severities=settings.severities or None,
            variants=settings.variants,
            seed=self.config.seed if settings.seed is None else settings.seed,
            device=self.config.device,
            batch_size=settings.batch_size,
            replicates=settings.bootstrap,
        )
        self.ledger.mark(f"robustness:{group}", inputs)
        return ", ".join(
            f"{m.model} unchanged "
            f"{percent(m.summary['suite_mean'].get('unchanged'), unit=True, missing='n/a')}"
            for m in run.models
        )

    def profile(self) -> str:
        from trustser.profile import run_profile

        report_dir = self.directory / "report"
        profile, files = run_profile(
            self.directory,
            report_dir,
            store=str(self.store),
            scale=self.config.scale,
            attack=self.config.profile_attack,
            options={"privacy_score": self.config.privacy_score},
        )
        if files.get("report") is not None:
            self.result.reports[self.source.name] = Path(files["report"])
        if files.get("overlay_png") is not None:
            self.result.radars[self.source.name] = Path(files["overlay_png"])
        return f"{len(profile.backbones)} backbone(s) → {report_dir}"


def _randomized(model: str) -> bool:
    """Whether ``model`` is a randomized variant (attacked with expectation over transformation)."""
    from trustser.variants import parse

    variant = parse(model)
    return variant is not None and variant.randomized


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


_NOT_MEASURABLE = "not measurable"  # a stage detail saying the corpus cannot measure it


def _skipped_notes(skipped: dict[str, str]) -> list[str]:
    return [f"{task} {_NOT_MEASURABLE}: {reason}" for task, reason in skipped.items()]


def _fit_summary(tasks: list[Any], skipped: dict[str, str]) -> str:
    """The heads stage's detail: each task's test figure, then each task skipped and why."""
    return ", ".join([_task_summary(t) for t in tasks] + _skipped_notes(skipped))


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
