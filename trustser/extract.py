"""Run a frozen backbone once over a manifest and write every hidden layer into the store.

``extract(manifest, store, backbone)`` plans the store layout from the manifest's header facts,
then works unit by unit (docs/store-format.md): audio decodes in background threads while the
backbone computes, finished units are written by a background thread while the next one
computes, and each unit is marked done only after its data is durable. A writer claims each unit
before computing it, so two processes on one store never write one unit (a second one skips
claimed units and says so). Rerunning the same call resumes; ranks (:mod:`trustser.ranks`:
explicit arguments, torchrun or SLURM) split the units between processes. Progress reaches the
caller through a callback (:class:`ExtractProgress`). See docs/extract.md.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import torch

from trustser._validation import TrustSERError, check_choice, check_positive
from trustser._version import __version__
from trustser.audio import (
    DEFAULT_MAX_SECONDS,
    MIN_SECONDS,
    TARGET_SAMPLE_RATE,
    AudioError,
    audio_info,
    expected_num_samples,
    load_audio,
)
from trustser.batching import length_batches, length_mask
from trustser.manifest import Manifest, Utterance, merge_manifests, read_manifest, validate
from trustser.ranks import Ranks, rank_device, resolve_ranks
from trustser.store.claims import Claim, Owner
from trustser.store.format import CODECS, DTYPES, FORMAT_VERSION, utc_now
from trustser.store.plan import DEFAULT_SHARD_MB, ClipFacts
from trustser.store.quantize import quantize_torch
from trustser.store.reader import Part
from trustser.store.writer import StoreWriter, UnitBuffer, UnitClaimedError

__all__ = [
    "DEFAULT_BATCH_SECONDS",
    "DEFAULT_MAX_PADDING",
    "EXIT_OK",
    "EXIT_SKIPPED",
    "FLAG_MEANINGS",
    "FLAG_SILENT",
    "FLAG_TRUNCATED",
    "AudioTransform",
    "ExtractProgress",
    "ExtractionError",
    "ExtractionSummary",
    "extract",
    "library_versions",
    "plan_clips",
    "resolve_rank",
]

DEFAULT_BATCH_SECONDS = 60.0  # audio per forward batch
DEFAULT_MAX_PADDING = 0.05  # padded frames per batch, as a fraction of computed frames
EXIT_OK = 0
EXIT_SKIPPED = 3
_LOOKAHEAD_UNITS = 2  # units whose audio is decoding while the current one computes


class ExtractionError(TrustSERError, RuntimeError):
    """Extraction cannot go on (bad arguments, or a backbone that breaks its own contract)."""


@dataclass(frozen=True)
class ExtractProgress:
    """Progress of :func:`extract` for a progress bar: ``done`` of ``total`` clips of this run's
    units, with the rates so far; ``label`` names the group (and the rank)."""

    label: str
    done: int
    total: int
    clips_per_second: float = 0.0
    audio_seconds_per_second: float = 0.0


ProgressCallback = Callable[[ExtractProgress], None]
# What extraction computes features of, when not the decoded file itself: a deterministic
# function of the clip and its decoded waveform (1-D float32, 16 kHz) keeping its length, e.g.
# a corrupted copy (trustser.robustness). It runs in the decoder threads, so it must be
# thread-safe; an error it raises stops the extraction (the unit stays unwritten).
AudioTransform = Callable[[Utterance, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ExtractionSummary:
    """What one ``extract`` call did, and the state of the manifest's clips in the group after it."""

    store: str
    group: str
    backbone: str
    device: str
    rank: int
    world_size: int
    clips: int  # clips of the manifest(s)
    units_written: int  # by this call
    clips_written: int  # clips with features written by this call
    skipped_now: dict[str, str]  # clips this call could not extract, with reasons
    done: int  # clips of the manifest(s) with features in the group (any rank, any run)
    skipped: dict[str, str]  # clips of the manifest(s) recorded as skipped (any run)
    pending: int  # clips still without a unit record (other ranks' units, or interrupted)
    audio_seconds: float  # audio this call computed
    frames: int  # real frames this call computed
    padded_frames: int  # padding frames this call computed
    wall_seconds: float  # the whole call, model loading and planning included
    run_seconds: float  # the unit loop: decoding, compute and writing
    forward_seconds: float  # time inside backbone forward passes
    parts: list[str] = field(default_factory=list)
    flagged: dict[str, list[str]] = field(
        default_factory=dict
    )  # done clips with warnings (any run)
    flagged_now: dict[str, list[str]] = field(default_factory=dict)  # ... found by this call
    other_rank_units: int = 0  # unfinished units that belong to other ranks
    other_rank_clips: int = 0  # clips of those units
    claimed_elsewhere: dict[str, str] = field(default_factory=dict)  # "part/unit k" → holder
    claimed_by_other_hosts: bool = False  # some of those holders run on other hosts
    finished_elsewhere: int = 0  # units of this rank another writer finished during this call

    @property
    def padded_fraction(self) -> float:
        total = self.frames + self.padded_frames
        return self.padded_frames / total if total else 0.0

    @property
    def clips_per_second(self) -> float:
        return self.clips_written / self.run_seconds if self.run_seconds > 0 else 0.0

    @property
    def audio_seconds_per_second(self) -> float:
        return self.audio_seconds / self.run_seconds if self.run_seconds > 0 else 0.0

    @property
    def complete(self) -> bool:
        """Every clip of the manifest(s) is either extracted or skipped."""
        return self.pending == 0

    def notes(self) -> list[str]:
        """Plain sentences about work this call left to others, for the run summary."""
        lines = []
        if self.claimed_elsewhere:
            counts: dict[str, int] = {}
            for holder in self.claimed_elsewhere.values():
                counts[holder] = counts.get(holder, 0) + 1
            held = "; ".join(f"{h}: {n}" for h, n in sorted(counts.items()))
            line = (
                f"{len(self.claimed_elsewhere)} unit(s) were left to the writers that hold them "
                f"({held}); rerun the same command after they finish if they stop early."
            )
            if self.claimed_by_other_hosts:
                line += (
                    " Claims of other hosts are never taken over automatically: once no "
                    "writer of that job runs any more, rerun with --break-claims."
                )
            lines.append(line)
        if self.finished_elsewhere:
            lines.append(
                f"{self.finished_elsewhere} unit(s) of this rank were finished by another "
                "writer meanwhile."
            )
        if self.world_size > 1:
            lines.append(
                f"this is rank {self.rank} of {self.world_size}: {self.other_rank_units} unit(s) "
                f"({self.other_rank_clips} clips) belong to other ranks and are not finished yet; "
                f"`trustser store verify {self.store}` says when the store is complete."
            )
        return lines

    @property
    def exit_code(self) -> int:
        """0 when no clip of the manifest(s) is skipped, 3 when some are (listed in ``skipped``)."""
        return EXIT_SKIPPED if self.skipped else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data.update(
            padded_fraction=self.padded_fraction,
            clips_per_second=self.clips_per_second,
            audio_seconds_per_second=self.audio_seconds_per_second,
            complete=self.complete,
            exit_code=self.exit_code,
        )
        return data


def resolve_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)``: :func:`trustser.ranks.resolve_ranks` as a pair."""
    ranks = resolve_ranks(rank, world_size)
    return ranks.rank, ranks.world_size


def device_kind(device: torch.device) -> str:
    """What computed the features, without the index: ``cpu`` or ``cuda (NVIDIA H200)``.

    Ranks on GPUs 0..N-1 of one model are one kind; a resume on other hardware is another.
    """
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the features (recorded in the group's provenance
    and in every unit record)."""
    versions = {"trustser": __version__}
    for name in (
        "torch",
        "transformers",
        "s3prl",
        "zarr",
        "numpy",
        "soundfile",
        "soxr",
        "torchaudio",
    ):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _as_manifests(
    manifest: Manifest | str | os.PathLike | Sequence[Any],
) -> tuple[list[Manifest], dict[str, Utterance]]:
    """The manifests, and their utterances merged by id (one id, one clip: an id two manifests
    record differently is an error naming both)."""
    items = list(manifest) if isinstance(manifest, (list, tuple)) else [manifest]
    if not items:
        raise ExtractionError("no manifest given; pass at least one.")
    out, names = [], []
    for position, item in enumerate(items, start=1):
        if isinstance(item, Manifest):
            out.append(validate(item, check_files=False))
            names.append(f"the {item.corpus} manifest (argument {position})")
        else:
            # Missing files are skipped per clip (and listed), not a reason to refuse the manifest.
            out.append(read_manifest(item, check_files=False))
            names.append(f"manifest {str(item)!r}")
    return out, merge_manifests(out, names=names)


# -- The skip policy: which clips get features, decided from header facts before any compute. --


def _planned_samples(
    utterance: Utterance, *, max_seconds: float | None, sample_rate: int
) -> tuple[int, str | None]:
    """Samples ``load_audio`` will return, from the manifest's header facts (or the file's).

    Returns ``(samples, None)``, or ``(0, reason)`` when the clip is certain to be unusable.
    """
    if utterance.num_frames is not None and utterance.sample_rate is not None:
        frames, rate = int(utterance.num_frames), int(utterance.sample_rate)
    else:
        try:
            info = audio_info(utterance.path)
        except AudioError as error:
            return 0, str(error)
        frames, rate = info.num_frames, info.sample_rate
    if frames <= 0 or rate <= 0:
        return 0, str(
            AudioError(utterance.path, "the header reports no samples", "re-export or remove it")
        )
    samples = expected_num_samples(frames, rate, sample_rate=sample_rate, max_seconds=max_seconds)
    if samples / sample_rate < MIN_SECONDS:
        reason = f"too short: {samples / sample_rate * 1000:.1f} ms < {MIN_SECONDS * 1000:.0f} ms"
        return 0, str(AudioError(utterance.path, reason, "drop the clip from the manifest"))
    return samples, None


def plan_clips(
    utterances: Iterable[Utterance],
    *,
    frame_count: Callable[[int], int],
    max_seconds: float | None,
    sample_rate: int = TARGET_SAMPLE_RATE,
    max_samples: int | None = None,
) -> dict[str, ClipFacts]:
    """What the store's planner is told about each clip: samples and frames, or why to skip it.

    Decided from header facts alone, without decoding: unreadable or empty files, clips shorter
    than ``MIN_SECONDS`` once cropped to ``max_seconds``, clips longer than the backbone accepts
    (``max_samples``; Whisper: 30 s — the reason says how to keep their start) and clips the
    backbone makes no frame of are skipped, with a reason naming the file.
    """
    facts: dict[str, ClipFacts] = {}
    for utterance in utterances:
        samples, reason = _planned_samples(
            utterance, max_seconds=max_seconds, sample_rate=sample_rate
        )
        frames = 0
        if reason is None and max_samples is not None and samples > max_samples:
            reason = str(
                AudioError(
                    utterance.path,
                    f"{samples / sample_rate:.1f} s is longer than the backbone accepts "
                    f"({max_samples / sample_rate:.1f} s)",
                    f"extract with --max-seconds {max_samples / sample_rate:g} to keep its start",
                )
            )
        if reason is None:
            frames = int(frame_count(samples))
            if frames <= 0:
                reason = str(
                    AudioError(
                        utterance.path,
                        f"too short for this backbone: {samples} samples give no frame",
                    )
                )
        facts[utterance.id] = ClipFacts(samples=samples, frames=frames, skip_reason=reason)
    return facts


@dataclass
class _Clip:
    utterance: Utterance
    samples: int
    frames: int
    plan_reason: str | None


@dataclass
class _Stats:
    units: int = 0
    clips: int = 0
    audio_seconds: float = 0.0
    frames: int = 0
    padded: int = 0
    forward_seconds: float = 0.0
    run_seconds: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)
    flagged: dict[str, list[str]] = field(default_factory=dict)
    claimed_elsewhere: dict[str, str] = field(default_factory=dict)
    foreign: bool = False
    finished_elsewhere: int = 0


# Clips that load but deserve a look ("allowed but flagged"): recorded per clip in the store.
FLAG_SILENT = "silent"
FLAG_TRUNCATED = "truncated"
FLAG_MEANINGS = {
    FLAG_SILENT: "every sample is zero",
    FLAG_TRUNCATED: "the file's data chunk is cut short; the samples present were used",
}


def _decode(
    clip: _Clip,
    *,
    sample_rate: int,
    max_seconds: float | None,
    transform: AudioTransform | None = None,
) -> tuple[torch.Tensor | None, str | None, tuple[str, ...]]:
    """``(waveform, None, flags)``, or ``(None, reason, ())`` for a clip to skip; with a
    ``transform``, the waveform is its output.

    Runs in decoder threads: warnings are not raised here (they would reach the user as raw
    source lines), the flags travel with the result into the unit record instead.
    """
    if clip.plan_reason is not None:
        return None, clip.plan_reason, ()
    try:
        audio = load_audio(
            clip.utterance.path, sample_rate=sample_rate, max_seconds=max_seconds, warn=False
        )
    except AudioError as error:
        return None, str(error), ()
    if audio.num_samples != clip.samples:
        return (
            None,
            str(
                AudioError(
                    clip.utterance.path,
                    f"decoded {audio.num_samples} samples but the header plans {clip.samples}",
                    "the file is truncated or its header is wrong; re-export it",
                )
            ),
            (),
        )
    flags = tuple(
        name for name, on in ((FLAG_SILENT, audio.silent), (FLAG_TRUNCATED, audio.truncated)) if on
    )
    if transform is None:
        return audio.waveform, None, flags
    waveform = transform(clip.utterance, audio.waveform)
    if tuple(waveform.shape) != tuple(audio.waveform.shape):
        raise ExtractionError(
            f"the audio transform changed the shape of {clip.utterance.id!r} from "
            f"{tuple(audio.waveform.shape)} to {tuple(waveform.shape)}; it must keep the length."
        )
    return waveform.to(torch.float32), None, flags


class _Committer(threading.Thread):
    """Writes finished units in the background so disk I/O overlaps the next unit's compute."""

    def __init__(self, writer: StoreWriter, info: dict[str, Any]) -> None:
        super().__init__(name="trustser-commit", daemon=True)
        self.writer = writer
        self.info = info
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.records: list[dict[str, Any]] = []
        self.lost: list[str] = []

    def run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            buffer, claim = item
            try:
                self.records.append(self.writer.commit(buffer, info=self.info, claim=claim))
            except UnitClaimedError as error:  # its claim was broken: the other writer has it
                self.lost.append(str(error))
            except BaseException as error:  # handed to the main thread, which re-raises it
                self.error = error
                return

    def submit(self, item: tuple[UnitBuffer, Claim] | None) -> None:
        while True:
            if self.error is not None:
                raise self.error
            if not self.is_alive():
                raise ExtractionError("the background writer stopped unexpectedly")
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        self.submit(None)
        self.join()
        if self.error is not None:
            raise self.error

    def abandon(self) -> None:
        """Drop the queued unit (it stays unrecorded, so a rerun redoes it) and stop."""
        try:
            while True:
                item = self.queue.get_nowait()
                if item is not None:
                    self.writer.release(item[1])
        except queue.Empty:
            pass
        if self.is_alive():
            self.queue.put(None)
            self.join()


def _progress_callback(progress: ProgressCallback | bool | None) -> ProgressCallback:
    """The caller's callback; ``True``/``False``/``None`` (no callback) report nothing."""
    if callable(progress):
        return progress
    return lambda event: None


def extract(
    manifest: Manifest | str | os.PathLike | Sequence[Manifest | str | os.PathLike],
    store_path: str | os.PathLike,
    backbone: Any,
    *,
    group: str | None = None,
    device: str | torch.device = "auto",
    window: str | None = None,
    batch_seconds: float = DEFAULT_BATCH_SECONDS,
    max_padding: float = DEFAULT_MAX_PADDING,
    dtype: str = "float16",
    codec: str = "none",
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    shard_mb: float = DEFAULT_SHARD_MB,
    rank: int | None = None,
    world_size: int | None = None,
    num_workers: int = 2,
    retry_skipped: bool = False,
    break_claims: bool = False,
    progress: ProgressCallback | bool | None = None,
    transform: AudioTransform | None = None,
    derived: dict[str, Any] | None = None,
) -> ExtractionSummary:
    """Extract every hidden layer of ``backbone`` for the manifest(s) into the store.

    ``backbone`` is a spec for ``trustser.backbones.load_backbone`` (``"whisper_tiny_en_offline"``,
    ``"tiny:whisper"``, ``"hf:/dir"``...) or a ready ``Backbone``. ``group`` names the store group
    (default: the backbone's name). ``rank`` and ``world_size`` go together (default: torchrun's
    or SLURM's variables, see :mod:`trustser.ranks`). Units another live writer has claimed are
    skipped and listed; ``break_claims`` also takes over claims of writers on other hosts (only
    when none of them runs any more; claims of dead processes on this host are taken over
    anyway). ``progress`` receives :class:`ExtractProgress` events. Resumable: call again with
    the same arguments after an interruption. Returns an :class:`ExtractionSummary`; its
    ``exit_code`` is 3 when clips were skipped (bad audio), else 0.

    ``transform`` and ``derived`` extract something other than the files themselves: each clip's
    features are computed from ``transform(utterance, waveform)`` (see :data:`AudioTransform`)
    and the manifests are registered as *derived* (docs/store-format.md §4.1: ``derived`` says
    what they were derived from and how), as ``trustser robustness`` does for corrupted copies.
    """
    started = time.perf_counter()
    _check_options(
        derived_by=(transform is not None, derived is not None),
        dtype=dtype,
        codec=codec,
        batch_seconds=batch_seconds,
        shard_mb=shard_mb,
        num_workers=num_workers,
        max_padding=max_padding,
        max_seconds=max_seconds,
    )
    manifests, by_id = _as_manifests(manifest)
    ranks = resolve_ranks(rank, world_size)
    target = rank_device(device, ranks)
    model = _load_model(backbone, target, window)
    sample_rate = int(model.sample_rate)
    versions = library_versions()
    writer, parts, todo = _plan_run(
        store_path,
        group or model.spec.name,
        manifests,
        by_id,
        model,
        ranks,
        provenance=_provenance(model, versions, max_seconds=max_seconds, dtype=dtype, codec=codec),
        max_seconds=max_seconds,
        shard_mb=shard_mb,
        retry_skipped=retry_skipped,
        break_claims=break_claims,
        derived=derived,
    )
    stats = _Stats()
    _run_units(
        model,
        writer,
        todo,
        by_id,
        stats,
        device=target,
        sample_rate=sample_rate,
        max_seconds=max_seconds,
        batch_samples=int(batch_seconds * sample_rate),
        max_padding=max_padding,
        num_workers=int(num_workers),
        retry_skipped=retry_skipped,
        info=_unit_info(ranks, target, versions),
        report=_progress_callback(progress),
        label=_run_label(writer.name, ranks),
        transform=transform,
    )
    return _summary(
        writer,
        parts,
        set(by_id),
        stats,
        store_path=store_path,
        device=target,
        ranks=ranks,
        started=started,
    )


def _run_label(name: str, ranks: Ranks) -> str:
    """What the progress events call this run: the group, and the rank when there are several."""
    return f"{name} [rank {ranks.rank}/{ranks.world_size}]" if ranks.world_size > 1 else name


def _check_options(
    *,
    derived_by: tuple[bool, bool] = (False, False),
    dtype: str,
    codec: str,
    batch_seconds: float,
    shard_mb: float,
    num_workers: int,
    max_padding: float,
    max_seconds: float | None,
) -> None:
    """Refuse bad :func:`extract` options before any model loads or store opens."""
    if derived_by[0] != derived_by[1]:
        raise ExtractionError(
            "transform and derived go together: features of transformed audio belong to a "
            "derived manifest, which says how the audio was transformed."
        )
    check_choice("dtype", dtype, DTYPES)
    check_choice("codec", codec, CODECS)
    check_positive("batch_seconds", batch_seconds)
    check_positive("shard_mb", shard_mb)
    check_positive("num_workers", num_workers)
    if not 0.0 <= max_padding < 1.0:
        raise ValueError(f"max_padding must lie in [0, 1), got {max_padding!r}.")
    if max_seconds is not None:
        check_positive("max_seconds", max_seconds)


def _provenance(
    model: Any,
    versions: dict[str, str],
    *,
    max_seconds: float | None,
    dtype: str,
    codec: str,
) -> dict[str, Any]:
    """The group's provenance: the backbone's own, plus how its features were cut and stored."""
    return {
        **model.provenance(),
        "max_seconds": max_seconds,
        "dtype": dtype,
        "codec": codec,
        "store_format_version": FORMAT_VERSION,
        "versions": versions,
        "created": utc_now(),
    }


def _unit_info(ranks: Ranks, device: torch.device, versions: dict[str, str]) -> dict[str, Any]:
    """What every unit record says about the writer that computed it."""
    return {
        "rank": ranks.rank,
        "world_size": ranks.world_size,
        "device": str(device),
        "device_kind": device_kind(device),
        "versions": versions,
    }


def _load_model(backbone: Any, target: torch.device, window: str | None) -> Any:
    """``backbone`` on ``target`` in inference mode: a ready ``Backbone`` moved and frozen, or
    a spec loaded (``window`` applies to a loaded spec only)."""
    from trustser.backbones.base import Backbone

    if isinstance(backbone, Backbone):
        return backbone.to(target).freeze()
    from trustser.backbones import load_backbone

    options = {} if window is None else {"window": window}
    return load_backbone(str(backbone), device=target, **options)


def _plan_run(
    store_path: str | os.PathLike,
    name: str,
    manifests: Sequence[Manifest],
    by_id: dict[str, Utterance],
    model: Any,
    ranks: Ranks,
    *,
    provenance: dict[str, Any],
    max_seconds: float | None,
    shard_mb: float,
    retry_skipped: bool,
    break_claims: bool,
    derived: dict[str, Any] | None = None,
) -> tuple[StoreWriter, dict[str, Part], list[tuple[Part, int]]]:
    """Open group ``name`` for writing, register every manifest with its clips planned from
    header facts alone, and list the units this rank still has to compute: the writer, the
    manifests' parts by key and the ``(part, unit)`` pairs to do."""
    writer = StoreWriter(
        store_path,
        name,
        provenance=provenance,
        owner=Owner.current(rank=ranks.rank, world_size=ranks.world_size),
        break_claims=break_claims,
    )
    parts: dict[str, Part] = {}
    for m in manifests:
        clips = plan_clips(
            m.utterances,
            frame_count=model.frame_count,
            max_seconds=max_seconds,
            sample_rate=int(model.sample_rate),
            max_samples=getattr(model, "max_samples", None),
        )
        for part in writer.add_manifest(m, clips=clips, shard_mb=shard_mb, derived=derived):
            parts[part.key] = part
    todo = writer.pending_units(
        list(parts.values()),
        rank=ranks.rank,
        world_size=ranks.world_size,
        retry_skipped=retry_skipped,
        ids=by_id,
    )
    return writer, parts, todo


def _other_rank_work(
    group: Any, parts: dict[str, Part], wanted: set[str], *, rank: int, world_size: int
) -> tuple[int, int]:
    """``(units, clips)`` of the manifests' parts that belong to other ranks and have no unit
    record yet (units holding none of ``wanted`` do not count)."""
    units = clips = 0
    for part in group.parts:
        if part.key not in parts:
            continue
        for unit in range(part.num_units):
            if unit % world_size != rank and unit not in part.records:
                members = [i for i in part.unit_clips(unit) if part.ids[i] in wanted]
                if members:
                    units += 1
                    clips += len(members)
    return units, clips


def _summary(
    writer: StoreWriter,
    parts: dict[str, Part],
    wanted: set[str],
    stats: _Stats,
    *,
    store_path: str | os.PathLike,
    device: torch.device,
    ranks: Ranks,
    started: float,
) -> ExtractionSummary:
    """What this call did (``stats``) and the state of the ``wanted`` clips in the group now."""
    final = writer.group()
    other_units, other_clips = _other_rank_work(
        final, parts, wanted, rank=ranks.rank, world_size=ranks.world_size
    )
    return ExtractionSummary(
        store=str(store_path),
        group=writer.name,
        backbone=str(writer.provenance["backbone"]),
        device=str(device),
        rank=ranks.rank,
        world_size=ranks.world_size,
        clips=len(wanted),
        units_written=stats.units,
        clips_written=stats.clips,
        skipped_now=dict(stats.skipped),
        done=sum(1 for i in final.ids if i in wanted),
        skipped={i: r for i, r in final.skipped.items() if i in wanted},
        pending=sum(1 for i in final.pending if i in wanted),
        audio_seconds=stats.audio_seconds,
        frames=stats.frames,
        padded_frames=stats.padded,
        wall_seconds=time.perf_counter() - started,
        run_seconds=stats.run_seconds,
        forward_seconds=stats.forward_seconds,
        parts=sorted(parts),
        flagged={i: f for i, f in final.flags.items() if i in wanted},
        flagged_now=dict(stats.flagged),
        other_rank_units=other_units,
        other_rank_clips=other_clips,
        claimed_elsewhere=dict(stats.claimed_elsewhere),
        claimed_by_other_hosts=stats.foreign,
        finished_elsewhere=stats.finished_elsewhere,
    )


def _unit_clips(
    part: Part, unit: int, by_id: dict[str, Utterance], writer: StoreWriter
) -> list[_Clip]:
    clips = []
    fallback: Manifest | None = None
    for index in part.unit_clips(unit):
        utt_id = part.ids[index]
        utterance = by_id.get(utt_id)
        if utterance is None:  # planned by another manifest that overlaps this one
            if fallback is None:
                fallback = writer.store.manifest(str(part.attrs["manifest"]))
            utterance = fallback[utt_id]
        clips.append(
            _Clip(
                utterance=utterance,
                samples=int(part.num_samples[index]),
                frames=int(part.num_frames[index]),
                plan_reason=part.attrs["plan_skipped"].get(utt_id),
            )
        )
    return clips


def _run_units(
    model: Any,
    writer: StoreWriter,
    todo: list[tuple[Part, int]],
    by_id: dict[str, Utterance],
    stats: _Stats,
    *,
    device: torch.device,
    sample_rate: int,
    max_seconds: float | None,
    batch_samples: int,
    max_padding: float,
    num_workers: int,
    retry_skipped: bool,
    info: dict[str, Any],
    report: ProgressCallback,
    label: str,
    transform: AudioTransform | None = None,
) -> None:
    """Claim, decode, compute and commit each unit of ``todo`` in order.

    A unit is claimed when its audio is queued for decoding (two units ahead of the compute):
    a unit another writer holds is skipped and noted, and the progress total shrinks by it.
    """
    if not todo:
        return
    store_dtype = getattr(torch, str(writer.provenance["dtype"]))
    units = [(part, unit, _unit_clips(part, unit, by_id, writer)) for part, unit in todo]
    decoder = ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="trustser-decode")
    committer = _Committer(writer, info)
    committer.start()
    lookahead = _Lookahead(
        writer,
        units,
        stats,
        decoder,
        sample_rate=sample_rate,
        max_seconds=max_seconds,
        retry_skipped=retry_skipped,
        transform=transform,
    )
    progress = _Progress(report, label, stats, lookahead)
    finished = False
    try:
        for _ in range(_LOOKAHEAD_UNITS):
            lookahead.submit_next()
        progress.advance(0)
        while lookahead.pending:
            part, unit, clips, futures, claim = lookahead.pending.popleft()
            lookahead.submit_next()
            buffer = writer.buffer(part, unit)
            _compute_unit(
                model,
                buffer,
                clips,
                futures,
                stats,
                device=device,
                dtype=store_dtype,
                sample_rate=sample_rate,
                batch_samples=batch_samples,
                max_padding=max_padding,
                advance=progress.advance,
            )
            committer.submit((buffer, claim))
            lookahead.held.pop((part.key, unit), None)
            stats.units += 1
        committer.finish()
        finished = True
    finally:
        stats.run_seconds = time.perf_counter() - progress.started
        decoder.shutdown(wait=False, cancel_futures=True)
        if not finished:
            committer.abandon()
            for claim in lookahead.held.values():  # never handed over: give them up for a rerun
                writer.release(claim)
    if committer.lost:
        stats.units -= len(committer.lost)


class _Lookahead:
    """The units of a run, claimed in order a few ahead of the compute so that their audio
    decodes meanwhile. A unit another writer holds, or has finished, is passed over and noted
    in ``stats``, and ``total_clips`` (what the progress counts towards) drops its clips.
    ``held`` keeps the claims not yet handed to the committer, to give up on failure."""

    def __init__(
        self,
        writer: StoreWriter,
        units: list[tuple[Part, int, list[_Clip]]],
        stats: _Stats,
        decoder: ThreadPoolExecutor,
        *,
        sample_rate: int,
        max_seconds: float | None,
        retry_skipped: bool,
        transform: AudioTransform | None = None,
    ) -> None:
        self.writer, self.stats, self.decoder = writer, stats, decoder
        self.sample_rate, self.max_seconds = sample_rate, max_seconds
        self.transform = transform
        self.retry_skipped = retry_skipped
        self.total_clips = sum(len(c) for _, _, c in units)
        self.pending: deque[tuple[Part, int, list[_Clip], list[Future], Claim]] = deque()
        self.held: dict[tuple[str, int], Claim] = {}
        self._upcoming = iter(units)

    def submit_next(self) -> None:
        """Claim the next unit nobody else holds and queue its clips for decoding."""
        for part, unit, clips in self._upcoming:
            outcome = self.writer.claim(part, unit, retry_skipped=self.retry_skipped)
            if outcome.claim is None:
                self.total_clips -= len(clips)
                if outcome.holder is not None:
                    self.stats.claimed_elsewhere[f"{part.key}/unit {unit}"] = outcome.holder.owner()
                    self.stats.foreign |= outcome.holder.foreign()
                else:
                    self.stats.finished_elsewhere += 1
                continue
            self.held[(part.key, unit)] = outcome.claim
            futures = [
                self.decoder.submit(
                    _decode,
                    c,
                    sample_rate=self.sample_rate,
                    max_seconds=self.max_seconds,
                    transform=self.transform,
                )
                for c in clips
            ]
            self.pending.append((part, unit, clips, futures, outcome.claim))
            return


class _Progress:
    """:class:`ExtractProgress` events of a run: clips done of the clips still to do, with the
    rates since the run started."""

    def __init__(
        self, report: ProgressCallback, label: str, stats: _Stats, lookahead: _Lookahead
    ) -> None:
        self.report, self.label, self.stats, self.lookahead = report, label, stats, lookahead
        self.started = time.perf_counter()
        self.done = 0

    def advance(self, clips: int) -> None:
        """Count ``clips`` more as done and report."""
        self.done += clips
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.report(
            ExtractProgress(
                label=self.label,
                done=self.done,
                total=max(self.lookahead.total_clips, self.done),
                clips_per_second=self.stats.clips / elapsed,
                audio_seconds_per_second=self.stats.audio_seconds / elapsed,
            )
        )


def _compute_unit(
    model: Any,
    buffer: UnitBuffer,
    clips: list[_Clip],
    futures: list[Future],
    stats: _Stats,
    *,
    device: torch.device,
    dtype: torch.dtype,
    sample_rate: int,
    batch_samples: int,
    max_padding: float,
    advance: Callable[[int], None],
) -> None:
    """Put one unit's features (or skip reasons) into ``buffer``; ``advance(n)`` reports n more
    clips done.

    Batches are planned from the plan's lengths, so the first batch computes as soon as its own
    clips are decoded; a clip that fails to decode drops out of its batch.
    """
    planned = [i for i, c in enumerate(clips) if c.plan_reason is None]
    batches = length_batches(
        [clips[i].samples for i in planned],
        budget=batch_samples,
        max_padding=max_padding,
        padding_lengths=[clips[i].frames for i in planned],
        identical_only=not model.masks_padding,
    )
    for index, clip in enumerate(clips):
        if clip.plan_reason is not None:
            _skip(buffer, stats, clip, futures[index].result()[1] or clip.plan_reason)
    for batch in batches:
        members = _decoded([planned[b] for b in batch], clips, futures, buffer, stats)
        if members:
            _forward(
                model, [(c, w) for c, w, _ in members], buffer, stats, device=device, dtype=dtype
            )
            _flag(buffer, stats, members)
            stats.clips += len(members)
            stats.audio_seconds += sum(c.samples for c, _, _ in members) / sample_rate
        advance(len(batch))
    advance(len(clips) - len(planned))


def _decoded(
    indices: Iterable[int],
    clips: list[_Clip],
    futures: list[Future],
    buffer: UnitBuffer,
    stats: _Stats,
) -> list[tuple[_Clip, torch.Tensor, tuple[str, ...]]]:
    """The clips at ``indices`` whose audio decoded, with waveform and flags (waiting for each
    decode); the others are recorded as skipped."""
    members = []
    for index in indices:
        wave, reason, flags = futures[index].result()
        if wave is None:
            _skip(buffer, stats, clips[index], reason or "unreadable")
        else:
            members.append((clips[index], wave, flags))
    return members


def _flag(
    buffer: UnitBuffer, stats: _Stats, members: list[tuple[_Clip, torch.Tensor, tuple[str, ...]]]
) -> None:
    """Record the flags (silent, truncated) of the clips whose features were written."""
    for clip, _, flags in members:
        utt_id = clip.utterance.id
        if flags and utt_id in buffer.state and buffer.state[utt_id] is None:
            buffer.flag(utt_id, *flags)
            stats.flagged[utt_id] = list(flags)


def _skip(buffer: UnitBuffer, stats: _Stats, clip: _Clip, reason: str) -> None:
    buffer.skip(clip.utterance.id, reason)
    stats.skipped[clip.utterance.id] = reason


def _forward(
    model: Any,
    members: list[tuple[_Clip, torch.Tensor]],
    buffer: UnitBuffer,
    stats: _Stats,
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> None:
    lengths = torch.tensor([c.samples for c, _ in members], dtype=torch.long)
    waves = torch.zeros(len(members), int(lengths.max()), dtype=torch.float32)
    for row, (_, wave) in enumerate(members):
        waves[row, : wave.shape[-1]] = wave
    start = time.perf_counter()
    with torch.inference_mode():
        hidden, frame_lengths = model(waves.to(device), lengths.to(device))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stats.forward_seconds += time.perf_counter() - start
        # On the device: mask the padding, take float32 means and peaks, lay frames out as
        # [B, T, L, D] rows in the store dtype — the host then only copies contiguous rows.
        hidden = hidden.float()
        frames = frame_lengths.to(device=hidden.device, dtype=torch.long)
        t_max = int(hidden.shape[2])
        valid = length_mask(frames, t_max)[:, None, :, None]
        real = torch.where(valid, hidden, torch.zeros((), device=hidden.device))
        low, high = real.flatten(1).aminmax(dim=1)  # NaN propagates: a NaN clip has a NaN peak
        peak = torch.maximum(low.abs(), high.abs())
        finite = torch.isfinite(peak)
        if not bool(finite.all()):
            real = torch.nan_to_num(real, nan=0.0, posinf=0.0, neginf=0.0)
        means = (real.sum(2) / frames.clamp_min(1)[:, None, None].float()).to("cpu").numpy()
        finite, peaks = finite.to("cpu").tolist(), peak.to("cpu").tolist()
        scales = None
        if dtype == torch.int8:  # per-row codes and float16 scales, made on the device (§6.5)
            codes, row_scales = quantize_torch(real.transpose(1, 2))
            rows = codes.contiguous().to("cpu").numpy()  # [B, T, L, D]
            scales = row_scales.contiguous().to("cpu").numpy()  # [B, T, L]
        else:
            rows = real.to(dtype).transpose(1, 2).contiguous().to("cpu").numpy()  # [B, T, L, D]
    frame_lengths = frame_lengths.to("cpu").tolist()
    for row, (clip, _) in enumerate(members):
        if int(frame_lengths[row]) != clip.frames:
            raise ExtractionError(
                f"backbone {model.spec.name!r} returned {frame_lengths[row]} frames for "
                f"{clip.utterance.id!r} ({clip.samples} samples) but its frame_count() planned "
                f"{clip.frames}; the backbone breaks its contract (report it)."
            )
        if not finite[row]:
            reason = "the backbone produced NaN or inf features for this clip"
            buffer.skip(clip.utterance.id, reason)
            stats.skipped[clip.utterance.id] = reason
            continue
        buffer.put_rows(
            clip.utterance.id,
            rows[row, : clip.frames],
            means[row],
            peak=peaks[row],
            scales=None if scales is None else scales[row, : clip.frames],
        )
        stats.frames += clip.frames
        stats.padded += t_max - clip.frames
