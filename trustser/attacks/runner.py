"""`trustser attack`: reload backbone + trained emotion heads and attack the test waveforms.

For every fold with a trained emotion head: load the fold's test clips exactly as extraction did
(same crop, same sample rate), classify them with the end-to-end model, attack the correctly
classified ones in length-sorted padded batches, and record each clip's adversarial prediction
and measured SNR. One run can sweep several SNRs; each SNR writes
``runs/<backbone>/attack-<method>-<snr>/`` (``summary.json``, ``clips.csv``, optional ``audio/``)
and a sweep refreshes the backbone's ASR-vs-SNR table and plot (:mod:`.sweep`).
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustser._validation import select_names, sole_name
from trustser._version import __version__
from trustser.attacks import functional as AF
from trustser.attacks.batching import iter_batches
from trustser.attacks.end_to_end import EndToEndClassifier
from trustser.attacks.methods import AttackError, check_snr, make_attack
from trustser.attacks.sweep import SweepFiles, collect_rows, write_sweep
from trustser.devices import resolve_device
from trustser.manifest import Fold, Manifest, Utterance
from trustser.runs import RunLayout, write_json

__all__ = [
    "CLIP_COLUMNS",
    "AttackResult",
    "AttackRun",
    "BatchedAttack",
    "ClipOutcome",
    "FoldOutcome",
    "attack_clips",
    "predict_clips",
    "run_attack",
]

CLIP_COLUMNS = (
    "id",
    "fold",
    "speaker",
    "gender",
    "true",
    "clean_pred",
    "adv_pred",
    "snr_db",
    "success",
)
# Provenance keys that, if they differ between the store and the head or the reloaded backbone,
# mean the attacked model is not the one whose features trained the head.
_IDENTITY_KEYS = ("backbone", "weights_sha256", "window")

Advance = Callable[[int], None]


# --------------------------------------------------------------------------- batched primitives


@dataclass(frozen=True)
class BatchedAttack:
    """Per-clip results of :func:`attack_clips`, in the caller's clip order."""

    adv_pred: np.ndarray  # [N] int64 class indices
    snr_db: np.ndarray  # [N] float64 measured SNR
    adversarial: dict[int, torch.Tensor]  # kept clips (CPU, real samples only)


def _no_advance(_: int) -> None:
    return None


def predict_clips(
    model: EndToEndClassifier | AF.Model,
    waveforms: Sequence[torch.Tensor],
    *,
    batch_size: int,
    identical_only: bool = False,
    device: torch.device | str = "cpu",
    advance: Advance = _no_advance,
) -> np.ndarray:
    """Logits ``[N, C]`` (float32, CPU) of 1-D ``waveforms`` in padded, length-sorted batches."""
    out: list[torch.Tensor | None] = [None] * len(waveforms)
    with torch.no_grad():
        for batch in iter_batches(waveforms, batch_size=batch_size, identical_only=identical_only):
            batch = batch.to(device)
            logits = model(batch.waveforms, batch.lengths).float().cpu()
            for row, index in enumerate(batch.indices):
                out[index] = logits[row]
            advance(len(batch))
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.stack(out).numpy()  # type: ignore[arg-type]


def attack_clips(
    model: EndToEndClassifier | AF.Model,
    waveforms: Sequence[torch.Tensor],
    *,
    attack: Callable[..., torch.Tensor],
    labels: Sequence[int],
    batch_size: int,
    identical_only: bool = False,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    keep: frozenset[int] = frozenset(),
    advance: Advance = _no_advance,
) -> BatchedAttack:
    """Attack every clip (1-D ``waveforms`` with integer ``labels``) in padded batches.

    Returns each clip's prediction on its adversarial version and the measured SNR; the
    adversarial waveforms of clips in ``keep`` are returned too (to be written as audio).
    """
    if len(labels) != len(waveforms):
        raise ValueError(f"{len(waveforms)} waveforms but {len(labels)} labels")
    adv_pred = np.zeros(len(waveforms), dtype=np.int64)
    snr = np.zeros(len(waveforms), dtype=np.float64)
    kept: dict[int, torch.Tensor] = {}
    label_tensor = torch.as_tensor(list(labels), dtype=torch.long)
    for batch in iter_batches(waveforms, batch_size=batch_size, identical_only=identical_only):
        batch = batch.to(device)
        y = label_tensor[list(batch.indices)].to(device)
        adversarial = attack(model, batch.waveforms, labels=y, mask=batch.mask, generator=generator)
        with torch.no_grad():
            logits = model(adversarial, batch.lengths)
        predicted = logits.argmax(dim=1).cpu().numpy()
        measured = AF.measured_snr(batch.waveforms, adversarial, batch.mask).cpu().numpy()
        for row, index in enumerate(batch.indices):
            adv_pred[index] = predicted[row]
            snr[index] = measured[row]
            if index in keep:
                kept[index] = adversarial[row, : int(batch.lengths[row])].detach().cpu()
        advance(len(batch))
    return BatchedAttack(adv_pred, snr, kept)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ClipOutcome:
    """One attacked clip: a row of ``clips.csv``."""

    id: str
    fold: str
    speaker: str
    gender: str
    true: str
    clean_pred: str
    adv_pred: str
    snr_db: float
    success: bool

    def row(self) -> list[Any]:
        return [
            self.id,
            self.fold,
            self.speaker,
            self.gender,
            self.true,
            self.clean_pred,
            self.adv_pred,
            f"{self.snr_db:.4f}",
            int(self.success),
        ]


@dataclass(frozen=True)
class FoldOutcome:
    """A fold's counts; ``asr`` is None when the clean model got no test clip right."""

    fold: str
    num_test: int
    num_attacked: int
    num_flipped: int
    snr_db: tuple[float, ...]  # measured, one per attacked clip

    @property
    def asr(self) -> float | None:
        return self.num_flipped / self.num_attacked if self.num_attacked else None

    @property
    def clean_accuracy(self) -> float:
        return self.num_attacked / self.num_test if self.num_test else float("nan")

    def to_dict(self) -> dict[str, Any]:
        stats = _snr_stats(self.snr_db)
        return {
            "fold": self.fold,
            "num_test": self.num_test,
            "num_attacked": self.num_attacked,
            "num_flipped": self.num_flipped,
            "asr": self.asr,
            "clean_accuracy": self.clean_accuracy,
            "measured_snr_db": stats,
        }


def _snr_stats(values: Sequence[float]) -> dict[str, float | None]:
    finite = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if finite.size == 0:
        return {"mean": None, "min": None, "max": None}
    return {"mean": float(finite.mean()), "min": float(finite.min()), "max": float(finite.max())}


@dataclass(frozen=True)
class AttackResult:
    """One method at one SNR over the attacked folds."""

    backbone: str
    method: str
    snr_db: float
    settings: dict[str, Any]
    folds: tuple[FoldOutcome, ...]
    clips: tuple[ClipOutcome, ...]
    seconds: float
    out_dir: Path | None = None
    audio_files: tuple[Path, ...] = ()

    @property
    def num_attacked(self) -> int:
        return sum(f.num_attacked for f in self.folds)

    @property
    def num_flipped(self) -> int:
        return sum(f.num_flipped for f in self.folds)

    @property
    def num_test(self) -> int:
        return sum(f.num_test for f in self.folds)

    @property
    def fold_asrs(self) -> list[float]:
        return [f.asr for f in self.folds if f.asr is not None]

    @property
    def asr_mean(self) -> float | None:
        """Mean over folds with at least one attacked clip (folds without are left out)."""
        values = self.fold_asrs
        return float(np.mean(values)) if values else None

    @property
    def asr_std(self) -> float | None:
        """Population sd (ddof 0) over the same folds, as the heads report UAR."""
        values = self.fold_asrs
        return float(np.std(values)) if values else None

    @property
    def measured_snr(self) -> dict[str, float | None]:
        stats = _snr_stats([c.snr_db for c in self.clips])
        finite = [abs(c.snr_db - self.snr_db) for c in self.clips if math.isfinite(c.snr_db)]
        stats["max_abs_error"] = max(finite) if finite else None
        return stats

    def summary(self) -> dict[str, Any]:
        """What ``summary.json`` holds."""
        return {
            "backbone": self.backbone,
            "method": self.method,
            "snr_db": self.snr_db,
            "asr_mean": self.asr_mean,
            "asr_std": self.asr_std,
            "asr_pooled": self.num_flipped / self.num_attacked if self.num_attacked else None,
            "num_test": self.num_test,
            "num_attacked": self.num_attacked,
            "num_flipped": self.num_flipped,
            "clean_accuracy": self.num_attacked / self.num_test if self.num_test else None,
            "measured_snr_db": self.measured_snr,
            "undefined_folds": [f.fold for f in self.folds if f.asr is None],
            "folds": [f.to_dict() for f in self.folds],
            "settings": self.settings,
            "seconds": self.seconds,
            "clips_per_second": self.num_attacked / self.seconds if self.seconds > 0 else None,
            "trustser_version": __version__,
        }


@dataclass(frozen=True)
class AttackRun:
    """Everything one ``trustser attack`` call did: one result per SNR, plus the sweep files."""

    backbone: str
    results: tuple[AttackResult, ...]
    sweep: SweepFiles | None = None
    warnings: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- loading


def _open_group(store_path: str | os.PathLike, backbone: str | None):
    from trustser.store import open_store

    store = open_store(store_path)
    names = list(store.backbones)
    if backbone is None:
        backbone = sole_name(
            names,
            what="backbones",
            where=f"store {str(store_path)!r}",
            option="--backbone",
            error=AttackError,
        )
    elif backbone not in names:
        listed = ", ".join(names) or "none"
        raise AttackError(
            f"store {str(store_path)!r} has no features of backbone {backbone!r} (it holds: "
            f"{listed}); extract them with `trustser extract` or pick another --backbone."
        )
    from trustser.store import StoreFormatError

    try:
        group = store.group(backbone)
    except StoreFormatError as error:
        raise AttackError(
            f"store {str(store_path)!r} group {backbone!r} has no usable provenance ({error}); "
            "the attack reloads the backbone from it, so re-extract with `trustser extract`."
        ) from None
    provenance = dict(group.provenance or {})
    if not provenance.get("backbone"):
        raise AttackError(
            f"store {str(store_path)!r} group {backbone!r} records no backbone provenance, so the "
            "extraction cannot be reproduced end to end; re-extract it with `trustser extract`."
        )
    return backbone, group, provenance


def _available_heads(layout: RunLayout, backbone: str) -> dict[str, Path]:
    head_dir = layout.head_dir(backbone, "emotion")
    found = {}
    if head_dir.is_dir():
        for sub in sorted(head_dir.iterdir()):
            path = sub / "head.safetensors"
            if path.is_file() and path.with_suffix(".json").is_file():
                found[sub.name] = path
    if not found:
        raise AttackError(
            f"no trained emotion head for backbone {backbone!r} under {str(head_dir)!r}; "
            f"train them first with `trustser heads fit --backbone {backbone}` "
            "(or point --runs at the directory that holds them)."
        )
    return found


def _select_folds(
    manifest: Manifest, heads: dict[str, Path], requested: str | Sequence[str] | None
) -> list[Fold]:
    """Manifest folds that have a head, filtered by name or 1-based index."""
    with_head = [f for f in manifest.folds if f.name in heads]
    if not with_head:
        raise AttackError(
            f"none of the trained emotion heads ({', '.join(heads)}) matches a fold of the store's "
            f"{manifest.corpus} manifest ({', '.join(f.name for f in manifest.folds) or 'no folds'})."
        )
    chosen = select_names(requested, [f.name for f in manifest.folds], error=AttackError)
    if not chosen:
        return with_head
    for name in chosen:
        if name not in heads:
            raise AttackError(
                f"fold {name!r} has no trained emotion head; train it with `trustser heads fit` "
                f"(folds with heads: {', '.join(heads)})."
            )
    return [manifest.fold(name) for name in chosen]


def _head_labels(sidecar: dict[str, Any], manifest: Manifest, path: Path) -> tuple[str, ...]:
    labels = sidecar.get("labels") or sidecar.get("classes")
    if not labels:
        raise AttackError(
            f"head {str(path)!r} does not record its class labels in {path.with_suffix('.json').name}; "
            "retrain it with `trustser heads fit`."
        )
    labels = tuple(str(label) for label in labels)
    unknown = sorted(set(labels) - set(manifest.labels))
    if unknown:
        raise AttackError(
            f"head {str(path)!r} predicts labels {unknown} that the store's {manifest.corpus} "
            "manifest does not use; it was trained on another corpus."
        )
    return labels


def _head_test_clips(
    sidecar: dict[str, Any], manifest: Manifest, fallback: list[Utterance]
) -> list[Utterance]:
    """The clips the head was tested on (recorded in its sidecar), else the fold's test role.

    Ids the store no longer holds are dropped: only extracted clips have known features.
    """
    recorded = sidecar.get("test_ids")
    if not recorded:
        return fallback
    return [manifest.by_id[i] for i in recorded if i in manifest.by_id]


def _check_identity(
    expected: dict[str, Any], found: dict[str, Any] | None, *, what: str, fix: str
) -> None:
    if not found:
        return
    for key in _IDENTITY_KEYS:
        if key in expected and key in found and expected[key] != found[key]:
            raise AttackError(
                f"{what} has {key}={found[key]!r} but the store's features have "
                f"{key}={expected[key]!r}; {fix}"
            )


def _load_backbone(provenance: dict[str, Any], device: torch.device):
    from trustser.backbones import load_backbone

    kwargs: dict[str, Any] = {"device": device}
    if provenance.get("window") is not None:
        kwargs["window"] = provenance["window"]
    backbone = load_backbone(provenance["backbone"], **kwargs)
    _check_identity(
        provenance,
        backbone.provenance(),
        what=f"the backbone {provenance['backbone']!r} loaded now",
        fix="the weights or settings changed since extraction; re-extract the store.",
    )
    return backbone


def _derived_seed(seed: int, *parts: object) -> int:
    """A stable 63-bit seed per (seed, fold, method, SNR): results do not depend on fold order."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def _load_waveforms(
    utterances: Sequence[Utterance], provenance: dict[str, Any]
) -> list[torch.Tensor]:
    from trustser.audio import DEFAULT_MAX_SECONDS, TARGET_SAMPLE_RATE, load_audio

    sample_rate = int(provenance.get("sample_rate") or TARGET_SAMPLE_RATE)
    max_seconds = provenance.get("max_seconds", DEFAULT_MAX_SECONDS)
    return [
        load_audio(u.path, sample_rate=sample_rate, max_seconds=max_seconds).waveform
        for u in utterances
    ]


# --------------------------------------------------------------------------- outputs


def _write_clips(path: Path, clips: Sequence[ClipOutcome]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CLIP_COLUMNS)
        for clip in clips:
            writer.writerow(clip.row())
    os.replace(tmp, path)


def _safe_file_stem(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)


def _write_audio(
    directory: Path,
    pairs: Sequence[tuple[ClipOutcome, torch.Tensor, torch.Tensor]],
    sample_rate: int,
) -> list[Path]:
    """Clean/adversarial pairs as 32-bit float WAV: no clipping, no requantisation of δ."""
    import soundfile as sf

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for clip, clean, adversarial in pairs:
        stem = _safe_file_stem(clip.id)
        for kind, audio in (("clean", clean), ("adv", adversarial)):
            path = directory / f"{stem}.{kind}.wav"
            sf.write(str(path), audio.numpy().astype(np.float32), sample_rate, subtype="FLOAT")
            written.append(path)
    return written


# --------------------------------------------------------------------------- the run


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("clips"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


@dataclass
class _FoldPlan:
    """A fold ready to attack: its head, class labels and test clips."""

    fold: str
    model: EndToEndClassifier
    labels: tuple[str, ...]
    utterances: list[Utterance]
    head_path: Path
    skipped_labels: int = 0


def _plan_folds(
    chosen: Sequence[Fold],
    heads: dict[str, Path],
    manifest: Manifest,
    provenance: dict[str, Any],
    encoder: Any,
    device: torch.device,
) -> list[_FoldPlan]:
    from trustser.heads.model import load_head

    plans = []
    for fold in chosen:
        head, sidecar = load_head(heads[fold.name], device=device)
        _check_identity(
            provenance,
            (sidecar.get("store") or {}).get("provenance"),
            what=f"the emotion head of fold {fold.name}",
            fix="retrain the heads on this store with `trustser heads fit`.",
        )
        labels = _head_labels(sidecar, manifest, heads[fold.name])
        clips = _head_test_clips(sidecar, manifest, manifest.split(fold)["test"])
        known = [u for u in clips if u.emotion in labels]
        plans.append(
            _FoldPlan(
                fold=fold.name,
                model=EndToEndClassifier(encoder, head),
                labels=labels,
                utterances=known,
                head_path=heads[fold.name],
                skipped_labels=len(clips) - len(known),
            )
        )
    return plans


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
    progress: bool = False,
) -> AttackRun:
    """Attack the test clips of every fold with a trained emotion head; write the results.

    ``store`` is the embedding store whose provenance names the backbone (reloaded with the
    same window and checked against the recorded weight checksum); heads come from
    ``runs/<backbone>/emotion/<fold>/``. ``snr_db`` may list several SNRs (a sweep). ``folds``
    picks folds by name or 1-based index (default: all with a head). ``save_audio`` writes that
    many clean/adversarial WAV pairs per SNR. Deterministic given ``seed``, ``batch_size`` and
    the device.
    """
    snrs = [check_snr(s) for s in ([snr_db] if isinstance(snr_db, (int, float)) else snr_db)]
    if not snrs:
        raise AttackError("no SNR given; pass at least one, e.g. --snr 45.")
    snrs = list(dict.fromkeys(snrs))
    attacks = [
        make_attack(method, s, steps=steps, step_size=step_size, random_start=random_start)
        for s in snrs
    ]
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise AttackError(f"batch size must be a whole number >= 1 (got {batch_size!r}).")
    if isinstance(save_audio, bool) or int(save_audio) != save_audio or save_audio < 0:
        raise AttackError(f"--save-audio takes a number of clips >= 0 (got {save_audio!r}).")

    name, group, provenance = _open_group(store, backbone)
    layout = RunLayout(Path(runs))
    heads = _available_heads(layout, name)
    manifest = group.manifest()
    chosen = _select_folds(manifest, heads, folds)
    try:
        torch_device = resolve_device(device)
    except RuntimeError as error:  # CUDA requested but not visible
        raise AttackError(str(error)) from None
    encoder = _load_backbone(provenance, torch_device)
    identical_only = not bool(encoder.masks_padding)
    sample_rate = int(provenance.get("sample_rate") or encoder.sample_rate)
    plans = _plan_folds(chosen, heads, manifest, provenance, encoder, torch_device)

    clips: dict[float, list[ClipOutcome]] = {s: [] for s in snrs}
    fold_outcomes: dict[float, list[FoldOutcome]] = {s: [] for s in snrs}
    pairs: dict[float, list[tuple[ClipOutcome, torch.Tensor, torch.Tensor]]] = {s: [] for s in snrs}
    seconds: dict[float, float] = dict.fromkeys(snrs, 0.0)
    notes = [
        f"fold {p.fold}: {p.skipped_labels} test clips have labels the head does not predict"
        for p in plans
        if p.skipped_labels
    ]
    total = sum(len(p.utterances) for p in plans) * (1 + len(snrs))

    with _progress(progress) as bar:
        task = bar.add_task("attack", total=total)

        def advance(n: int) -> None:
            bar.advance(task, n)

        for plan in plans:
            if not plan.utterances:
                notes.append(f"fold {plan.fold}: no extracted test clips; skipped")
                continue
            waveforms = _load_waveforms(plan.utterances, provenance)
            index_of = {label: i for i, label in enumerate(plan.labels)}
            truth = np.array([index_of[u.emotion] for u in plan.utterances], dtype=np.int64)
            bar.update(task, description=f"{plan.fold}: clean pass")
            logits = predict_clips(
                plan.model,
                waveforms,
                batch_size=batch_size,
                identical_only=identical_only,
                device=torch_device,
                advance=advance,
            )
            clean_pred = logits.argmax(axis=1)
            correct = np.flatnonzero(clean_pred == truth)
            for attack in attacks:
                snr = attack.snr_db
                bar.update(task, description=f"{plan.fold}: {attack.method} @ {snr:g} dB")
                advance(len(plan.utterances) - len(correct))  # not attacked
                room = max(0, save_audio - len(pairs[snr]))
                generator = torch.Generator().manual_seed(
                    _derived_seed(seed, plan.fold, attack.method, snr)
                )
                started = time.perf_counter()
                outcome = attack_clips(
                    plan.model,
                    [waveforms[i] for i in correct],
                    attack=attack,
                    labels=truth[correct].tolist(),
                    batch_size=batch_size,
                    identical_only=identical_only,
                    device=torch_device,
                    generator=generator,
                    keep=frozenset(range(min(room, len(correct)))),
                    advance=advance,
                )
                seconds[snr] += time.perf_counter() - started
                rows = []
                for position, index in enumerate(correct.tolist()):
                    u = plan.utterances[index]
                    adv = int(outcome.adv_pred[position])
                    row = ClipOutcome(
                        id=u.id,
                        fold=plan.fold,
                        speaker=u.speaker,
                        gender=u.gender,
                        true=plan.labels[int(truth[index])],
                        clean_pred=plan.labels[int(clean_pred[index])],
                        adv_pred=plan.labels[adv],
                        snr_db=float(outcome.snr_db[position]),
                        success=adv != int(clean_pred[index]),
                    )
                    rows.append(row)
                    if position in outcome.adversarial:
                        pairs[snr].append((row, waveforms[index], outcome.adversarial[position]))
                clips[snr].extend(rows)
                fold_outcomes[snr].append(
                    FoldOutcome(
                        fold=plan.fold,
                        num_test=len(plan.utterances),
                        num_attacked=len(rows),
                        num_flipped=sum(r.success for r in rows),
                        snr_db=tuple(r.snr_db for r in rows),
                    )
                )
            del waveforms

    common = {
        "store": str(store),
        "backbone_provenance": {k: provenance.get(k) for k in _IDENTITY_KEYS},
        "max_seconds": provenance.get("max_seconds"),
        "sample_rate": sample_rate,
        "batch_size": int(batch_size),
        "identical_length_batches": identical_only,
        "seed": int(seed),
        "device": str(torch_device),
        "loss": "cross-entropy against the true label",
        "clipping": "none (perturbed waveforms may exceed [-1, 1])",
        "heads": {p.fold: str(p.head_path) for p in plans},
    }
    results = []
    for attack in attacks:
        snr = attack.snr_db
        out_dir = layout.attack_dir(name, attack.method, snr)
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_clips(out_dir / "clips.csv", clips[snr])
        audio_files = _write_audio(out_dir / "audio", pairs[snr], sample_rate) if save_audio else []
        result = AttackResult(
            backbone=name,
            method=attack.method,
            snr_db=snr,
            settings={**attack.settings(), **common},
            folds=tuple(fold_outcomes[snr]),
            clips=tuple(clips[snr]),
            seconds=seconds[snr],
            out_dir=out_dir,
            audio_files=tuple(audio_files),
        )
        write_json(out_dir / "summary.json", result.summary())
        results.append(result)
    sweep = write_sweep(layout, name) if _has_several_snrs(layout, name) else None
    return AttackRun(backbone=name, results=tuple(results), sweep=sweep, warnings=tuple(notes))


def _has_several_snrs(layout: RunLayout, backbone: str) -> bool:
    return len({row.snr_db for row in collect_rows(layout, backbone)}) > 1
