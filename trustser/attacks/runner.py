"""`trustser attack`: reload backbone + trained emotion heads and attack the test waveforms.

For every fold with a trained emotion head: load the fold's test clips exactly as extraction did
(same crop, same sample rate), classify them with the end-to-end model, attack the correctly
classified ones in length-sorted padded batches, and record each clip's adversarial prediction
and measured SNR. One run can sweep several SNRs; each SNR writes
``runs/<backbone>/attack-<method>-<snr>/`` (``summary.json``, ``clips.csv``, optional ``audio/``)
and a sweep refreshes the backbone's ASR-vs-SNR table and plot (:mod:`.sweep`).

The parts: :mod:`.loading` (group, heads, backbone, identity checks), :mod:`.batched` (predict
and attack in padded batches), :mod:`.results` (outcomes and their files). Progress reaches the
caller as :class:`AttackProgress` events.

Scale-out (torchrun, SLURM or ``rank``/``world_size``; :mod:`trustser.ranks`): every rank runs
the fold's clean pass whole, so all agree on which clips are attacked and form the same batches
as one process would; the attack batches are then dealt round-robin, each seeded by its own
index. A rank writes its clips to ``ranks/rank-<r>-of-<W>.json`` in the attack directory, and
the rank that completes the set merges them into ``clips.csv`` and ``summary.json`` — the same
files one process writes (:func:`merge_attack` merges by hand).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustser.attacks.batched import attack_clips
from trustser.attacks.methods import EOT, Attack, AttackError, check_snr, make_attack
from trustser.attacks.results import (
    AttackResult,
    AttackRun,
    AudioPair,
    ClipOutcome,
    FoldOutcome,
    RankShare,
    merge_rank_files,
    write_rank_file,
    write_result,
)
from trustser.attacks.sweep import collect_rows, write_sweep
from trustser.batching import length_batches
from trustser.deployed.batches import predict_clips
from trustser.deployed.loading import (
    IDENTITY_KEYS,
    DeployedModelError,
    FoldPlan,
    deploy_plan,
    load_waveforms,
    open_deployed_group,
    plan_deployment,
)
from trustser.devices import derived_seed
from trustser.ranks import Ranks, rank_device, resolve_ranks
from trustser.runs import RunLayout
from trustser.variants import Variant, VariantError
from trustser.variants import parse as parse_variant

__all__ = ["DEFAULT_EOT_SAMPLES", "PLAIN_SUBDIR", "AttackProgress", "merge_attack", "run_attack"]

# Noise draws the adaptive attack averages each gradient over, on a smoothed variant.
DEFAULT_EOT_SAMPLES = 8
# A smoothed variant's plain (non-adaptive) attack is written beside the adaptive one, here.
PLAIN_SUBDIR = "plain"


@dataclass(frozen=True)
class AttackProgress:
    """Progress of :func:`run_attack`, for progress bars.

    ``done`` of ``total`` clip passes are finished: every test clip is passed once clean and
    once per SNR (clips the clean model gets wrong count as done without an attack). ``stage``
    is what runs now in ``fold``: ``"clean pass"`` or e.g. ``"fgsm @ 45 dB"``.
    """

    fold: str
    stage: str
    done: int
    total: int

    @property
    def description(self) -> str:
        return f"{self.fold}: {self.stage}"


class _Reporter:
    """Turns stage changes and finished clips into :class:`AttackProgress` events."""

    def __init__(self, callback: Callable[[AttackProgress], None] | None, total: int) -> None:
        self.callback, self.total = callback, total
        self.fold, self.stage, self.done = "", "", 0

    def start(self, fold: str, stage: str) -> None:
        self.fold, self.stage = fold, stage
        self._emit()

    def advance(self, count: int) -> None:
        self.done += count
        self._emit()

    def _emit(self) -> None:
        if self.callback is not None:
            self.callback(AttackProgress(self.fold, self.stage, self.done, self.total))


@dataclass
class _SNROutcome:
    """What one SNR collected over the folds so far."""

    clips: list[ClipOutcome] = field(default_factory=list)
    folds: list[FoldOutcome] = field(default_factory=list)
    audio: list[AudioPair] = field(default_factory=list)
    seconds: float = 0.0
    order: list[tuple[int, int]] = field(default_factory=list)  # (fold index, position) per clip
    num_test: list[tuple[str, int]] = field(default_factory=list)  # (fold, test clips) per fold
    audio_slots: int = 0  # clips chosen for audio so far, counted over every rank


def _configured_attacks(
    method: str,
    snr_db: float | Sequence[float],
    *,
    steps: int,
    step_size: float | None,
    random_start: bool,
) -> list[Attack]:
    """One configured attack per distinct SNR, in the order given."""
    snrs = [check_snr(s) for s in ([snr_db] if isinstance(snr_db, (int, float)) else snr_db)]
    if not snrs:
        raise AttackError("no SNR given; pass at least one, e.g. --snr 45.")
    return [
        make_attack(method, s, steps=steps, step_size=step_size, random_start=random_start)
        for s in dict.fromkeys(snrs)
    ]


def _check_counts(batch_size: int, save_audio: int) -> None:
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise AttackError(f"batch size must be a whole number >= 1 (got {batch_size!r}).")
    if isinstance(save_audio, bool) or int(save_audio) != save_audio or save_audio < 0:
        raise AttackError(f"--save-audio takes a number of clips >= 0 (got {save_audio!r}).")


def _attack_fold(
    plan: FoldPlan,
    fold_index: int,
    attacks: Sequence[Attack],
    outcomes: dict[float, _SNROutcome],
    provenance: dict,
    *,
    batch_size: int,
    identical_only: bool,
    device: torch.device,
    seed: int,
    save_audio: int,
    report: _Reporter,
    ranks: Ranks,
) -> None:
    """Classify the fold's clips, attack the correct ones at every SNR, add to ``outcomes``.

    The attack batches are those one process would form; this rank attacks batch ``b`` when
    ``b mod world_size == rank``, each batch with a generator seeded by its own index, so the
    clips' results do not depend on the number of ranks.
    """
    clean = _clean_pass(
        plan,
        provenance,
        batch_size=batch_size,
        identical_only=identical_only,
        device=device,
        seed=seed,
        report=report,
    )
    for attack in attacks:
        collected = outcomes[attack.snr_db]
        report.start(plan.fold, f"{attack.method} @ {attack.snr_db:g} dB")
        report.advance(len(plan.utterances) - len(clean.correct))  # not attacked
        keep = set(range(min(max(0, save_audio - collected.audio_slots), len(clean.correct))))
        collected.audio_slots += len(keep)
        started = time.perf_counter()
        attacked = _attack_batches(
            plan,
            attack,
            clean,
            keep=keep,
            identical_only=identical_only,
            device=device,
            seed=seed,
            report=report,
            ranks=ranks,
        )
        collected.seconds += time.perf_counter() - started
        _collect(collected, plan, fold_index, clean, attacked)


@dataclass(frozen=True)
class _CleanPass:
    """A fold's test clips as the model saw them clean, and the batches they are attacked in
    (lists of positions among ``correct``, the clips it classified correctly)."""

    waveforms: list[torch.Tensor]
    truth: np.ndarray  # class index per clip
    clean_pred: np.ndarray
    correct: np.ndarray  # indices of the correctly classified clips
    batches: list[list[int]]
    seeds: list[int]  # per clip: the draws a randomized model classifies it with


def _clean_pass(
    plan: FoldPlan,
    provenance: dict,
    *,
    batch_size: int,
    identical_only: bool,
    device: torch.device,
    seed: int,
    report: _Reporter,
) -> _CleanPass:
    """Load the fold's test clips as extraction did, classify them, and batch the correct ones
    longest first: only clips the model gets right are attacked. A randomized model classifies
    each clip with its draws fixed by the clip's seed, as the attacks then judge it."""
    waveforms = load_waveforms(plan.utterances, provenance)
    seeds = plan.clip_seeds(seed)
    index_of = {label: i for i, label in enumerate(plan.labels)}
    truth = np.array([index_of[u.emotion] for u in plan.utterances], dtype=np.int64)
    report.start(plan.fold, "clean pass")
    logits = predict_clips(
        plan.model,
        waveforms,
        batch_size=batch_size,
        identical_only=identical_only,
        device=device,
        advance=report.advance,
        clip_seeds=seeds,
    )
    clean_pred = logits.argmax(axis=1)
    correct = np.flatnonzero(clean_pred == truth)
    batches = length_batches(
        [int(waveforms[i].numel()) for i in correct],
        batch_size=batch_size,
        descending=True,
        identical_only=identical_only,
    )
    return _CleanPass(waveforms, truth, clean_pred, correct, batches, seeds)


@dataclass
class _Attacked:
    """One attack's results on this rank's batches, by position among the correct clips."""

    adv_pred: dict[int, int] = field(default_factory=dict)
    snr_db: dict[int, float] = field(default_factory=dict)  # measured
    adversarial: dict[int, torch.Tensor] = field(default_factory=dict)  # clips kept for audio


def _attack_batches(
    plan: FoldPlan,
    attack: Attack,
    clean: _CleanPass,
    *,
    keep: set[int],
    identical_only: bool,
    device: torch.device,
    seed: int,
    report: _Reporter,
    ranks: Ranks,
) -> _Attacked:
    """Attack this rank's share of the batches (batch ``b`` when ``b mod world_size == rank``),
    each with a generator seeded by (``seed``, fold, method, SNR, ``b``); positions in ``keep``
    return their adversarial waveforms."""
    attacked = _Attacked()
    for number, batch in enumerate(clean.batches):
        if number % ranks.world_size != ranks.rank:
            report.advance(len(batch))  # another rank's batch
            continue
        generator = torch.Generator().manual_seed(
            derived_seed(seed, plan.fold, attack.method, attack.snr_db, number)
        )
        outcome = attack_clips(
            plan.model,
            [clean.waveforms[int(clean.correct[p])] for p in batch],
            attack=attack,
            labels=clean.truth[clean.correct[batch]].tolist(),
            batch_size=len(batch),
            identical_only=identical_only,
            device=device,
            generator=generator,
            keep=frozenset(j for j, p in enumerate(batch) if p in keep),
            advance=report.advance,
            clip_seeds=[clean.seeds[int(clean.correct[p])] for p in batch],
        )
        for j, position in enumerate(batch):
            attacked.adv_pred[position] = int(outcome.adv_pred[j])
            attacked.snr_db[position] = float(outcome.snr_db[j])
            if j in outcome.adversarial:
                attacked.adversarial[position] = outcome.adversarial[j]
    return attacked


def _collect(
    collected: _SNROutcome,
    plan: FoldPlan,
    fold_index: int,
    clean: _CleanPass,
    attacked: _Attacked,
) -> None:
    """Add the clips this rank attacked, in the fold's order, and the fold's outcome."""
    rows = []
    for position, index in enumerate(clean.correct.tolist()):
        if position not in attacked.adv_pred:
            continue
        u = plan.utterances[index]
        adv = attacked.adv_pred[position]
        row = ClipOutcome(
            id=u.id,
            fold=plan.fold,
            speaker=u.speaker,
            gender=u.gender,
            true=plan.labels[int(clean.truth[index])],
            clean_pred=plan.labels[int(clean.clean_pred[index])],
            adv_pred=plan.labels[adv],
            snr_db=attacked.snr_db[position],
            success=adv != int(clean.clean_pred[index]),
        )
        rows.append(row)
        collected.order.append((fold_index, position))
        if position in attacked.adversarial:
            collected.audio.append((row, clean.waveforms[index], attacked.adversarial[position]))
    collected.clips.extend(rows)
    collected.num_test.append((plan.fold, len(plan.utterances)))
    collected.folds.append(
        FoldOutcome(
            fold=plan.fold,
            num_test=len(plan.utterances),
            num_attacked=len(rows),
            num_flipped=sum(r.success for r in rows),
            snr_db=tuple(r.snr_db for r in rows),
        )
    )


def run_attack(
    store: str | os.PathLike,
    backbone: str | None = None,
    *,
    runs: str | os.PathLike = "runs",
    method: str = "fgsm",
    snr_db: float | Sequence[float] = 45.0,
    folds: str | Sequence[str] | None = None,
    device: str | torch.device = "auto",
    batch_size: int = 8,
    save_audio: int = 0,
    seed: int = 0,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = False,
    callback: Callable[[AttackProgress], None] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    eot_samples: int | None = None,
) -> AttackRun:
    """Attack the test clips of every fold with a trained emotion head; write the results.

    ``store`` is the embedding store whose provenance names the backbone (reloaded with the
    same window and checked against the recorded weight checksum); heads come from
    ``runs/<backbone>/emotion/<fold>/``. ``snr_db`` may list several SNRs (a sweep). ``folds``
    picks folds by name or 1-based index (default: all with a head). ``save_audio`` writes that
    many clean/adversarial WAV pairs per SNR. ``callback`` receives :class:`AttackProgress`
    events. Deterministic given ``seed``, ``batch_size`` and the device, whatever the number of
    ranks: ``rank``/``world_size`` (both or neither; default torchrun's or SLURM's variables)
    split each fold's attack batches, and the last rank to finish writes the merged files.

    A variant is attacked as it is deployed (:class:`trustser.variants.Variant`): its fine-tuned
    blocks swapped in, or behind its defence. A randomized one (``<backbone>@smooth-s<s>-n<N>``,
    docs/mitigations.md) is attacked twice on the same clips with the same ε: the adaptive attack
    (:class:`~.methods.EOT`, gradients averaged over ``eot_samples`` noise draws, default
    :data:`DEFAULT_EOT_SAMPLES`) writes ``attack-<method>-<snr>/`` — the safety axis — and the
    plain one ``.../plain/``. Both judge a clip by one verdict, the defence's prediction with the
    clip's draws fixed by its seed (:meth:`FoldPlan.clip_seeds`): in the clean pass, at every PGD
    iterate and in the adversarial prediction.
    """
    attacks = _configured_attacks(
        method, snr_db, steps=steps, step_size=step_size, random_start=random_start
    )
    _check_counts(batch_size, save_audio)
    ranks = resolve_ranks(rank, world_size)
    layout = RunLayout(Path(runs))
    target = _deploy(store, backbone, layout, folds, device, ranks, eot_samples=eot_samples)
    passes = _passes(attacks, method, target.randomized, eot_samples)
    notes = list(target.notes)
    total = sum(len(p.utterances) for p in target.plans) * sum(1 + len(a) for a, _ in passes)
    report = _Reporter(callback, total)
    all_outcomes = []
    for pass_attacks, _ in passes:
        outcomes = {attack.snr_db: _SNROutcome() for attack in pass_attacks}
        for fold_index, plan in enumerate(target.plans):
            if not plan.utterances:
                notes.append(f"fold {plan.fold}: no extracted test clips; skipped")
                continue
            _attack_fold(
                deploy_plan(plan, target.variant, seed),
                fold_index,
                pass_attacks,
                outcomes,
                target.provenance,
                batch_size=batch_size,
                identical_only=target.identical_only,
                device=target.device,
                seed=seed,
                save_audio=save_audio,
                report=report,
                ranks=ranks,
            )
        all_outcomes.append(outcomes)
    notes = list(dict.fromkeys(notes))

    common = target.provenance_record(store, batch_size=batch_size, seed=seed)
    plain_summaries: dict[float, dict] = {}
    results = []
    # the plain pass first, so the adaptive summary can name the plain ASR beside its own
    for (pass_attacks, subdir), outcomes in reversed(list(zip(passes, all_outcomes, strict=True))):
        results += _write_pass(
            pass_attacks,
            outcomes,
            subdir,
            name=target.name,
            common=common,
            plain=plain_summaries,
            layout=layout,
            save_audio=save_audio,
            sample_rate=target.sample_rate,
            ranks=ranks,
            plans=target.plans,
            notes=notes,
        )
    results = results[len(results) - len(attacks) :]  # what the axis reads: the adaptive pass
    complete = all(r.out_dir is not None for r in results)
    name = target.name
    sweep = write_sweep(layout, name) if complete and _has_several_snrs(layout, name) else None
    return AttackRun(backbone=name, results=tuple(results), sweep=sweep, warnings=tuple(notes))


@dataclass(frozen=True)
class _Target:
    """The deployed model under attack: its name, variant, encoder and per-fold plans."""

    name: str
    provenance: dict
    variant: Variant | None
    plans: list[FoldPlan]
    device: torch.device
    identical_only: bool
    sample_rate: int

    @property
    def randomized(self) -> bool:
        return self.variant is not None and self.variant.randomized

    @property
    def notes(self) -> list[str]:
        return [
            f"fold {p.fold}: {p.skipped_labels} test clips have labels the head does not predict"
            for p in self.plans
            if p.skipped_labels
        ]

    def provenance_record(self, store: str | os.PathLike, *, batch_size: int, seed: int) -> dict:
        """What every summary.json of this run records about the model and the run."""
        record = {
            "store": str(store),
            "backbone_provenance": {k: self.provenance.get(k) for k in IDENTITY_KEYS},
            "max_seconds": self.provenance.get("max_seconds"),
            "sample_rate": self.sample_rate,
            "batch_size": int(batch_size),
            "identical_length_batches": self.identical_only,
            "seed": int(seed),
            "device": str(self.device),
            "loss": "cross-entropy against the true label",
            "clipping": "none (perturbed waveforms may exceed [-1, 1])",
            "heads": {p.fold: str(p.head_path) for p in self.plans},
        }
        if self.variant is not None and self.variant.defence is not None:
            record["defence"] = self.variant.defence
        if self.randomized:
            record["verdict"] = (
                "the defence's own prediction over its draws, fixed per clip by (seed, fold, "
                "clip id): it picks the clips to attack, judges every PGD iterate and gives the "
                "adversarial prediction"
            )
        return record


def _deploy(
    store: str | os.PathLike,
    backbone: str | None,
    layout: RunLayout,
    folds: str | Sequence[str] | None,
    device: str | torch.device,
    ranks: Ranks,
    *,
    eot_samples: int | None,
) -> _Target:
    """Open the model to attack, its heads and backbone, and plan its folds."""
    name, group, provenance, variant = _open_model(store, backbone)
    if eot_samples is not None and not (variant is not None and variant.randomized):
        raise AttackError(
            "--eot applies to randomized defences only (e.g. a <backbone>@smooth-s<s>-n<N> "
            f"variant); {name!r} is deterministic."
        )
    try:
        try:
            torch_device = rank_device(device, ranks)
        except RuntimeError as error:  # CUDA requested but not visible
            raise AttackError(str(error)) from None
        plans, encoder = plan_deployment(
            layout, name, group, provenance, variant, folds, torch_device
        )
    except (DeployedModelError, VariantError) as error:
        raise AttackError(str(error)) from None
    return _Target(
        name=name,
        provenance=provenance,
        variant=variant,
        plans=plans,
        device=torch_device,
        identical_only=not bool(encoder.masks_padding),
        sample_rate=int(provenance.get("sample_rate") or encoder.sample_rate),
    )


def _passes(
    attacks: list[Attack], method: str, randomized: bool, eot_samples: int | None
) -> list[tuple[list[Attack], Path | None]]:
    """The attack passes to run: one, or for a randomized defence the adaptive (EOT) pass and
    the plain one written under :data:`PLAIN_SUBDIR`."""
    if not randomized or method == "noise":
        return [(attacks, None)]
    samples = DEFAULT_EOT_SAMPLES if eot_samples is None else eot_samples
    adaptive = [EOT(a, samples) for a in attacks]  # type: ignore[arg-type]
    return [(adaptive, None), (attacks, Path(PLAIN_SUBDIR))]


def _open_model(
    store: str | os.PathLike, backbone: str | None
) -> tuple[str, Any, dict, Variant | None]:
    """The store group of the model to attack, its provenance and its variant (None for a base
    backbone); a variant the waveform attack cannot measure is refused with its reason."""
    try:
        name, group, provenance = open_deployed_group(store, backbone)
        variant = parse_variant(name)
    except (DeployedModelError, VariantError) as error:
        raise AttackError(str(error)) from None
    if variant is not None and variant.not_attackable is not None:
        raise AttackError(f"{backbone!r}: {variant.not_attackable}")
    return name, group, provenance, variant


def _write_pass(
    attacks: Sequence[Attack],
    outcomes: dict[float, _SNROutcome],
    subdir: Path | None,
    *,
    name: str,
    common: dict,
    plain: dict[float, dict],
    layout: RunLayout,
    save_audio: int,
    sample_rate: int,
    ranks: Ranks,
    plans: Sequence[FoldPlan],
    notes: list[str],
) -> list[AttackResult]:
    results = []
    for attack in attacks:
        collected = outcomes[attack.snr_db]
        extra: dict = {}
        if subdir is not None:
            extra["attack_role"] = "plain (not adaptive): the defence's noise is not averaged over"
        elif attack.snr_db in plain:
            extra["plain_attack"] = plain[attack.snr_db]
        result = AttackResult(
            backbone=name,
            method=attack.method,
            snr_db=attack.snr_db,
            settings={**attack.settings(), **common, **extra},
            folds=tuple(collected.folds),
            clips=tuple(collected.clips),
            seconds=collected.seconds,
        )
        out_dir = layout.attack_dir(name, attack.method, attack.snr_db)
        if subdir is not None:
            out_dir = out_dir / subdir
            plain[attack.snr_db] = {
                "asr_mean": result.asr_mean,
                "asr_std": result.asr_std,
                "summary": str(Path(out_dir.name) / "summary.json"),
            }
        audio = collected.audio if save_audio else None
        if not ranks.distributed:
            results.append(write_result(result, out_dir, audio=audio, sample_rate=sample_rate))
            continue
        share = RankShare(
            rank=ranks.rank,
            world_size=ranks.world_size,
            order=tuple(collected.order),
            num_test=tuple(collected.num_test),
            fingerprint=_fingerprint(result, plans),
        )
        written = write_rank_file(result, share, out_dir, audio=audio, sample_rate=sample_rate)
        merged = merge_rank_files(out_dir, fingerprint=share.fingerprint)
        if merged is None:
            notes.append(
                f"{attack.method} @ {attack.snr_db:g} dB: {ranks.describe()} wrote "
                f"{written.relative_to(out_dir.parent)}; the summary is merged when every rank has "
                "finished (or run the same command with --merge)."
            )
            results.append(result)
        else:
            results.append(merged)
    return results


def _fingerprint(result: AttackResult, plans: Sequence[FoldPlan]) -> str:
    """What every rank of one run shares: the settings (without the device index), the folds and
    the heads' bytes. Rank files of another run (other heads, other settings) never merge in."""
    settings = dict(result.settings)
    settings["device"] = str(settings.get("device", "")).split(":")[0]
    digest = hashlib.sha256()
    digest.update(repr(sorted((k, repr(v)) for k, v in settings.items())).encode())
    digest.update(repr((result.method, result.snr_db, [f.num_test for f in result.folds])).encode())
    for plan in plans:
        digest.update(plan.fold.encode())
        digest.update(hashlib.sha256(Path(plan.head_path).read_bytes()).digest())
        digest.update(repr([u.id for u in plan.utterances]).encode())
    return digest.hexdigest()[:32]


def merge_attack(
    store: str | os.PathLike,
    backbone: str | None = None,
    *,
    runs: str | os.PathLike = "runs",
    method: str = "fgsm",
    snr_db: float | Sequence[float] = 45.0,
) -> AttackRun:
    """Merge the rank files of a scaled-out attack into ``clips.csv`` and ``summary.json``.

    The last rank does this by itself; call it when that rank could not (it was killed after
    writing its file, say). A missing rank is an :class:`AttackError` naming it.
    """
    attacks = _configured_attacks(method, snr_db, steps=1, step_size=None, random_start=False)
    name, _, _, _ = _open_model(store, backbone)
    layout = RunLayout(Path(runs))
    results = []
    for attack in attacks:
        out_dir = layout.attack_dir(name, attack.method, attack.snr_db)
        merged = merge_rank_files(out_dir, required=True)
        results.append(merged)
    sweep = write_sweep(layout, name) if _has_several_snrs(layout, name) else None
    return AttackRun(backbone=name, results=tuple(results), sweep=sweep)


def _has_several_snrs(layout: RunLayout, backbone: str) -> bool:
    return len({row.snr_db for row in collect_rows(layout, backbone)}) > 1
