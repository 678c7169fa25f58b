"""Run a frozen backbone once over a manifest and write every hidden layer into the store.

``extract(manifest, store, backbone)`` plans the store layout from the manifest's header facts,
then works unit by unit (docs/store-format.md): audio decodes in background threads while the
backbone computes, finished units are written by a background thread while the next one
computes, and each unit is marked done only after its data is durable. Rerunning the same call
resumes; ranks (``RANK``/``WORLD_SIZE`` under torchrun, ``SLURM_PROCID``/``SLURM_NTASKS`` under
SLURM, or explicit arguments) split the units between processes. See docs/extract.md.
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
from trustser.devices import resolve_device
from trustser.manifest import Manifest, Utterance, read_manifest, validate
from trustser.store.format import CODECS, DTYPES, FORMAT_VERSION, utc_now
from trustser.store.plan import DEFAULT_SHARD_MB, ClipFacts
from trustser.store.reader import Part
from trustser.store.writer import StoreWriter, UnitBuffer

__all__ = [
    "DEFAULT_BATCH_SECONDS",
    "DEFAULT_MAX_PADDING",
    "EXIT_OK",
    "EXIT_SKIPPED",
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
    """``(rank, world_size)`` from the arguments, else torchrun's or SLURM's environment, else (0, 1)."""
    env = os.environ
    if world_size is None:
        world_size = int(env.get("WORLD_SIZE") or env.get("SLURM_NTASKS") or 1)
    if rank is None:
        rank = int(env.get("RANK") or env.get("SLURM_PROCID") or 0)
    if world_size < 1:
        raise ExtractionError(f"world size must be >= 1, got {world_size}.")
    if not 0 <= rank < world_size:
        raise ExtractionError(
            f"rank {rank} is outside [0, {world_size - 1}] for world size {world_size}."
        )
    return rank, world_size


def _extraction_device(device: str | torch.device, world_size: int) -> torch.device:
    """Like ``resolve_device``, but one GPU per local rank under torchrun/SLURM."""
    if (
        isinstance(device, str)
        and device == "auto"
        and world_size > 1
        and torch.cuda.is_available()
    ):
        local = os.environ.get("LOCAL_RANK") or os.environ.get("SLURM_LOCALID")
        if local is not None:
            return torch.device(f"cuda:{int(local) % torch.cuda.device_count()}")
    return resolve_device(device)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the features (recorded in the group's provenance)."""
    versions = {"trustser": __version__}
    for name in ("torch", "transformers", "s3prl", "zarr", "numpy", "soundfile", "torchaudio"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _as_manifests(manifest: Manifest | str | os.PathLike | Sequence[Any]) -> list[Manifest]:
    items = list(manifest) if isinstance(manifest, (list, tuple)) else [manifest]
    if not items:
        raise ExtractionError("no manifest given; pass at least one.")
    out = []
    for item in items:
        if isinstance(item, Manifest):
            out.append(validate(item, check_files=False))
        else:
            # Missing files are skipped per clip (and listed), not a reason to refuse the manifest.
            out.append(read_manifest(item, check_files=False))
    return out


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


def _decode(
    clip: _Clip, *, sample_rate: int, max_seconds: float | None
) -> tuple[torch.Tensor | None, str | None]:
    if clip.plan_reason is not None:
        return None, clip.plan_reason
    try:
        audio = load_audio(clip.utterance.path, sample_rate=sample_rate, max_seconds=max_seconds)
    except AudioError as error:
        return None, str(error)
    if audio.num_samples != clip.samples:
        return None, str(
            AudioError(
                clip.utterance.path,
                f"decoded {audio.num_samples} samples but the header plans {clip.samples}",
                "the file is truncated or its header is wrong; re-export it",
            )
        )
    return audio.waveform, None


class _Committer(threading.Thread):
    """Writes finished units in the background so disk I/O overlaps the next unit's compute."""

    def __init__(self, writer: StoreWriter, info: dict[str, Any]) -> None:
        super().__init__(name="trustser-commit", daemon=True)
        self.writer = writer
        self.info = info
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.records: list[dict[str, Any]] = []

    def run(self) -> None:
        while True:
            buffer = self.queue.get()
            if buffer is None:
                return
            try:
                self.records.append(self.writer.commit(buffer, info=self.info))
            except BaseException as error:  # handed to the main thread, which re-raises it
                self.error = error
                return

    def submit(self, buffer: UnitBuffer | None) -> None:
        while True:
            if self.error is not None:
                raise self.error
            if not self.is_alive():
                raise ExtractionError("the background writer stopped unexpectedly")
            try:
                self.queue.put(buffer, timeout=0.2)
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
                self.queue.get_nowait()
        except queue.Empty:
            pass
        if self.is_alive():
            self.queue.put(None)
            self.join()


def _progress(enabled: bool, total_clips: int, label: str):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("clips"),
        TextColumn("{task.fields[clips_rate]:.1f} clips/s"),
        TextColumn("{task.fields[audio_rate]:.1f} audio-s/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )
    task = progress.add_task(label, total=total_clips, clips_rate=0.0, audio_rate=0.0)
    return progress, task


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
    progress: bool = True,
) -> ExtractionSummary:
    """Extract every hidden layer of ``backbone`` for the manifest(s) into the store.

    ``backbone`` is a spec for ``trustser.backbones.load_backbone`` (``"whisper_tiny_en_offline"``,
    ``"tiny:whisper"``, ``"hf:/dir"``...) or a ready ``Backbone``. ``group`` names the store group
    (default: the backbone's name). Resumable: call again with the same arguments after an
    interruption. Returns an :class:`ExtractionSummary`; its ``exit_code`` is 3 when clips were
    skipped (bad audio), else 0.
    """
    started = time.perf_counter()
    check_choice("dtype", dtype, DTYPES)
    check_choice("codec", codec, CODECS)
    check_positive("batch_seconds", batch_seconds)
    check_positive("shard_mb", shard_mb)
    check_positive("num_workers", num_workers)
    if not 0.0 <= max_padding < 1.0:
        raise ValueError(f"max_padding must lie in [0, 1), got {max_padding!r}.")
    if max_seconds is not None:
        check_positive("max_seconds", max_seconds)
    manifests = _as_manifests(manifest)
    rank, world_size = resolve_rank(rank, world_size)
    target = _extraction_device(device, world_size)

    from trustser.backbones.base import Backbone

    if isinstance(backbone, Backbone):
        model = backbone.to(target).freeze()
    else:
        from trustser.backbones import load_backbone

        options = {} if window is None else {"window": window}
        model = load_backbone(str(backbone), device=target, **options)
    sample_rate = int(model.sample_rate)
    provenance = {
        **model.provenance(),
        "max_seconds": max_seconds,
        "dtype": dtype,
        "codec": codec,
        "store_format_version": FORMAT_VERSION,
        "versions": library_versions(),
        "created": utc_now(),
    }
    name = group or model.spec.name
    writer = StoreWriter(store_path, name, provenance=provenance)

    parts: dict[str, Part] = {}
    by_id: dict[str, Utterance] = {}
    for m in manifests:
        by_id.update(m.by_id)
        clips = plan_clips(
            m.utterances,
            frame_count=model.frame_count,
            max_seconds=max_seconds,
            sample_rate=sample_rate,
            max_samples=getattr(model, "max_samples", None),
        )
        for part in writer.add_manifest(m, clips=clips, shard_mb=shard_mb):
            parts[part.key] = part
    todo = writer.pending_units(
        list(parts.values()),
        rank=rank,
        world_size=world_size,
        retry_skipped=retry_skipped,
        ids=by_id,
    )
    if retry_skipped:
        for part, unit in todo:
            if unit in part.records:
                writer.clear_unit(part, unit)

    stats = _Stats()
    if todo:
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
            info={"rank": rank, "world_size": world_size},
            show=progress,
            label=f"{name} [rank {rank}/{world_size}]" if world_size > 1 else name,
        )

    final = writer.group()
    wanted = set(by_id)
    return ExtractionSummary(
        store=str(store_path),
        group=name,
        backbone=str(provenance["backbone"]),
        device=str(target),
        rank=rank,
        world_size=world_size,
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
    info: dict[str, Any],
    show: bool,
    label: str,
) -> None:
    store_dtype = getattr(torch, str(writer.provenance["dtype"]))
    units = [(part, unit, _unit_clips(part, unit, by_id, writer)) for part, unit in todo]
    total_clips = sum(len(c) for _, _, c in units)
    decoder = ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="trustser-decode")
    committer = _Committer(writer, info)
    committer.start()
    progress, task = _progress(show, total_clips, label)
    pending: deque[tuple[Part, int, list[_Clip], list[Future]]] = deque()
    upcoming = iter(units)

    def submit_next() -> None:
        item = next(upcoming, None)
        if item is not None:
            part, unit, clips = item
            futures = [
                decoder.submit(_decode, c, sample_rate=sample_rate, max_seconds=max_seconds)
                for c in clips
            ]
            pending.append((part, unit, clips, futures))

    started = time.perf_counter()
    finished = False
    try:
        with progress:
            for _ in range(_LOOKAHEAD_UNITS):
                submit_next()
            while pending:
                part, unit, clips, futures = pending.popleft()
                submit_next()
                buffer = writer.buffer(part, unit)
                # Batches are planned from the plan's lengths, so the first batch computes as
                # soon as its own clips are decoded; a clip that fails to decode drops out.
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
                    members = []
                    for index in (planned[b] for b in batch):
                        wave, reason = futures[index].result()
                        if wave is None:
                            _skip(buffer, stats, clips[index], reason or "unreadable")
                        else:
                            members.append((clips[index], wave))
                    if members:
                        _forward(model, members, buffer, stats, device=device, dtype=store_dtype)
                        stats.clips += len(members)
                        stats.audio_seconds += sum(c.samples for c, _ in members) / sample_rate
                    elapsed = max(time.perf_counter() - started, 1e-9)
                    progress.update(
                        task,
                        advance=len(batch),
                        clips_rate=stats.clips / elapsed,
                        audio_rate=stats.audio_seconds / elapsed,
                    )
                unplanned = len(clips) - len(planned)
                if unplanned:
                    progress.update(task, advance=unplanned)
                committer.submit(buffer)
                stats.units += 1
            committer.finish()
            finished = True
    finally:
        stats.run_seconds = time.perf_counter() - started
        decoder.shutdown(wait=False, cancel_futures=True)
        if not finished:
            committer.abandon()


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
        buffer.put_rows(clip.utterance.id, rows[row, : clip.frames], means[row], peak=peaks[row])
        stats.frames += clip.frames
        stats.padded += t_max - clip.frames
