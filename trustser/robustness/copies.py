"""Corrupted copies of the test clips, extracted once into the backbone's store group.

A corrupted clip is just another clip: :func:`corrupted_set` lists, for every test clip of the
chosen folds and every case of the suite, a clip of a *derived manifest* (corpus
``<corpus>+corrupted``) whose id names the source clip, the case and the suite seed
(:func:`corrupted_id`), and whose record says how to make it (source id, case, seed, babble
pool). :func:`extract_copies` runs the frozen backbone once over them into the same store group
as the clean clips (docs/store-format.md §4.1): the extraction machinery plans, claims, resumes
and never loses written units exactly as for clean clips; only the audio it computes features
of is the :class:`Corrupter`'s. Every head and variant of the backbone is then evaluated on the
copies from the cache (:mod:`trustser.robustness.run`).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from trustser._validation import TrustSERError
from trustser.audio import DEFAULT_MAX_SECONDS, TARGET_SAMPLE_RATE, load_audio
from trustser.corruptions import SAMPLE_RATE, SUITE_VERSION, CorruptionCase, get_case
from trustser.corruptions.babble import Talker
from trustser.corruptions.babble_pool import BabblePools
from trustser.extract import ExtractionSummary, ExtractProgress, extract
from trustser.manifest import Fold, Manifest, Utterance
from trustser.store.plan import DEFAULT_SHARD_MB

__all__ = [
    "COPIES_SUFFIX",
    "DERIVED_KIND",
    "ID_SEPARATOR",
    "CorruptedSet",
    "Corrupter",
    "RobustnessError",
    "copies_of",
    "corrupted_id",
    "corrupted_set",
    "extract_copies",
]

ID_SEPARATOR = "~"
COPIES_SUFFIX = "+corrupted"  # the derived manifest's corpus: "<corpus>+corrupted"
DERIVED_KIND = "corrupted copies"  # the store's `derived.kind` of these manifests
_TALKER_CACHE = 512  # decoded babble talkers kept in memory (about 200 MB of 6 s clips)


class RobustnessError(TrustSERError, ValueError):
    """A robustness run that cannot go as asked (no heads, a suite the store cannot hold)."""


def corrupted_id(clip_id: str, case: str, *, seed: int) -> str:
    """The store id of ``clip_id``'s copy under ``case`` (``babble-2``) and suite ``seed``:
    ``<clip id>~<case>~s<seed>v<suite version>``. One id is one audio clip (§4): the suite
    version and seed are part of it, because they change the audio."""
    return f"{clip_id}{ID_SEPARATOR}{case}{ID_SEPARATOR}s{int(seed)}v{SUITE_VERSION}"


@dataclass(frozen=True)
class CorruptedSet:
    """The corrupted copies of a set of test clips: the derived ``manifest`` of the copies,
    the clean ``source`` manifest, the ``cases`` and ``seed``, and ``ids[(clip id, case)]``
    (the copy's id; absent where a clip was not copied)."""

    manifest: Manifest
    source: Manifest
    cases: tuple[CorruptionCase, ...]
    seed: int
    folds: tuple[str, ...]
    ids: Mapping[tuple[str, str], str] = field(repr=False)

    def record(self) -> dict[str, Any]:
        """What the store records about the derived manifest (its ``derived`` key, §4.1)."""
        return {
            "kind": DERIVED_KIND,
            "from": self.source.checksum(),
            "corpus": self.source.corpus,
            "suite_version": SUITE_VERSION,
            "suite_seed": self.seed,
            "cases": [case.name for case in self.cases],
            "folds": list(self.folds),
            "id": f"<clip id>{ID_SEPARATOR}<case>{ID_SEPARATOR}s<suite seed>v<suite version>",
        }


def _test_clips(manifest: Manifest, folds: Sequence[Fold]) -> list[tuple[Fold, Utterance]]:
    """Each test clip of ``folds`` once, with the first of those folds that tests it."""
    seen: set[str] = set()
    out = []
    for fold in folds:
        for utterance in manifest.split(fold)["test"]:
            if utterance.id not in seen:
                seen.add(utterance.id)
                out.append((fold, utterance))
    return out


def corrupted_set(
    manifest: Manifest,
    cases: Sequence[CorruptionCase],
    *,
    folds: Sequence[Fold],
    seed: int = 0,
) -> CorruptedSet:
    """The copies of every test clip of ``folds`` under every case in ``cases``.

    Each copy is an utterance of a derived manifest (corpus ``<corpus>+corrupted``): the source
    clip's record with the copy's id (:func:`corrupted_id`) and ``custom`` saying how to make
    it: ``source`` (the clean id), ``case``, ``suite_seed``, ``suite_version``, ``fold`` and,
    for babble, ``babble_pool`` — the clips of other speakers it may mix, outside the fold's
    test speakers first (:class:`~trustser.corruptions.babble_pool.BabblePools`, seeded).
    """
    if not cases:
        raise RobustnessError("the corruption suite is empty; name at least one corruption.")
    if not folds:
        raise RobustnessError(f"no fold of {manifest.corpus} to take test clips from.")
    pools = {fold.name: BabblePools(manifest, fold=fold, seed=seed) for fold in folds}
    talkers_needed = any(case.corruption.needs_talkers for case in cases)
    utterances, ids = [], {}
    for fold, clip in _test_clips(manifest, folds):
        pool = [u.id for u in pools[fold.name].pool(clip.id)] if talkers_needed else []
        for case in cases:
            new_id = corrupted_id(clip.id, case.name, seed=seed)
            custom = {
                "source": clip.id,
                "case": case.name,
                "suite_seed": int(seed),
                "suite_version": SUITE_VERSION,
                "fold": fold.name,
            }
            if case.corruption.needs_talkers:
                custom["babble_pool"] = pool
            utterances.append(replace(clip, id=new_id, custom=custom))
            ids[(clip.id, case.name)] = new_id
    if not utterances:
        raise RobustnessError(
            f"the folds {', '.join(f.name for f in folds)} of {manifest.corpus} have no test clip "
            "with features in the store."
        )
    derived = Manifest(
        corpus=f"{manifest.corpus}{COPIES_SUFFIX}",
        utterances=tuple(utterances),
        version=manifest.version,
        labels=manifest.labels,
        root=manifest.root,
    )
    return CorruptedSet(
        derived, manifest, tuple(cases), int(seed), tuple(f.name for f in folds), ids
    )


class Corrupter:
    """Turns a decoded clean clip into its corrupted copy, exactly and thread-safely.

    ``source`` is the clean manifest (the babble talkers are its clips), ``seed`` the suite
    seed; talkers are decoded as extraction decodes clips (``max_seconds`` crop) and kept in a
    small cache. Called as an extraction :data:`~trustser.extract.AudioTransform` on the
    derived manifest's utterances, or through :meth:`corrupt` by the end-to-end path, it gives
    the same samples for the same (clip, case, seed).
    """

    def __init__(
        self,
        source: Manifest,
        *,
        seed: int = 0,
        max_seconds: float | None = DEFAULT_MAX_SECONDS,
        sample_rate: int = TARGET_SAMPLE_RATE,
    ) -> None:
        if int(sample_rate) != SAMPLE_RATE:
            raise RobustnessError(
                f"the corruption suite works at {SAMPLE_RATE} Hz, but these features were "
                f"extracted at {sample_rate} Hz."
            )
        self.source, self.seed = source, int(seed)
        self.max_seconds, self.sample_rate = max_seconds, int(sample_rate)
        self._talkers: OrderedDict[str, Talker] = OrderedDict()
        self._lock = threading.Lock()

    def _talker(self, clip_id: str) -> Talker:
        with self._lock:
            found = self._talkers.get(clip_id)
            if found is not None:
                self._talkers.move_to_end(clip_id)
                return found
        utterance = self.source[clip_id]
        audio = load_audio(
            utterance.path, sample_rate=self.sample_rate, max_seconds=self.max_seconds, warn=False
        )
        if audio.silent:
            raise RobustnessError(
                f"babble clip {clip_id!r} ({utterance.path}) is silent; leave it out of the "
                "manifest or drop babble from the suite."
            )
        talker = Talker(utterance.id, utterance.speaker, audio.waveform.numpy())
        with self._lock:
            self._talkers[clip_id] = talker
            while len(self._talkers) > _TALKER_CACHE:
                self._talkers.popitem(last=False)
        return talker

    def corrupt(
        self,
        clip: Utterance,
        case: CorruptionCase,
        waveform: np.ndarray,
        *,
        pool: Sequence[str] = (),
    ) -> np.ndarray:
        """``clip``'s decoded ``waveform`` under ``case`` (float32, same length); ``pool``: the
        clip ids babble may mix (the derived record's ``babble_pool``)."""
        talkers = None
        if case.corruption.needs_talkers:
            talkers = [self._talker(i) for i in pool]
        return case.apply(
            np.asarray(waveform, dtype=np.float32),
            case.clip_seed(self.seed, clip.id),
            speaker=clip.speaker,
            talkers=talkers,
        )

    def __call__(self, utterance: Utterance, waveform: torch.Tensor) -> torch.Tensor:
        info = utterance.custom
        if "source" not in info or "case" not in info:
            raise RobustnessError(
                f"{utterance.id!r} is not a corrupted copy (its record names no source clip "
                "and case)."
            )
        if int(info.get("suite_seed", -1)) != self.seed:
            raise RobustnessError(
                f"{utterance.id!r} was planned with suite seed {info.get('suite_seed')!r}, not "
                f"{self.seed}."
            )
        clip = self.source[str(info["source"])]
        corrupted = self.corrupt(
            clip,
            get_case(str(info["case"])),
            waveform.detach().cpu().numpy(),
            pool=info.get("babble_pool", ()),
        )
        return torch.from_numpy(corrupted)


def extract_copies(
    store: str | os.PathLike,
    group: Any,
    copies: CorruptedSet,
    *,
    device: str = "auto",
    num_workers: int = 2,
    shard_mb: float = DEFAULT_SHARD_MB,
    progress: Callable[[ExtractProgress], None] | None = None,
) -> ExtractionSummary:
    """Extract ``copies`` into the store group ``group`` (a ``StoreGroup``) with the backbone and
    settings its clean clips were extracted with (its provenance: backbone, window, crop,
    dtype, codec), resumably: units of copies already written are kept, a rerun (after an
    interruption or an error) writes the rest. ``shard_mb`` sizes the units (§6.3)."""
    provenance = dict(group.provenance)
    corrupter = Corrupter(
        copies.source,
        seed=copies.seed,
        max_seconds=provenance.get("max_seconds"),
        sample_rate=int(provenance.get("sample_rate") or TARGET_SAMPLE_RATE),
    )
    return extract(
        copies.manifest,
        store,
        str(provenance["backbone"]),
        group=group.name,
        device=device,
        window=provenance.get("window"),
        dtype=str(provenance["dtype"]),
        codec=str(provenance["codec"]),
        max_seconds=provenance.get("max_seconds"),
        num_workers=num_workers,
        shard_mb=shard_mb,
        progress=progress,
        transform=corrupter,
        derived=copies.record(),
    )


def copies_of(copies: CorruptedSet, clip_ids: Iterable[str], case: str) -> dict[str, str]:
    """``{clean id: copy id}`` of the clips of ``clip_ids`` that ``copies`` holds under ``case``."""
    return {c: copies.ids[(c, case)] for c in clip_ids if (c, case) in copies.ids}
