"""Babble pools from a manifest: which other speakers' clips may talk over a given clip.

:func:`babble_pool` picks, for one clip, clips of other speakers, deterministically from a
seed, preferring speakers outside the fold's test set (so the babble voices are not the
voices the model is being tested on) and one clip per speaker before a second of any;
:func:`load_talkers` reads them into :class:`~trustser.corruptions.babble.Talker` records for
:func:`~trustser.corruptions.babble.babble`. This module reads manifests, so it sits a layer
above the signal processing in the rest of the package (docs/architecture.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from trustser.audio import DEFAULT_MAX_SECONDS, load_audio
from trustser.corruptions.babble import MAX_TALKERS, MIN_TALKERS, Talker
from trustser.corruptions.functional import CorruptionError
from trustser.corruptions.suite import derive_seed
from trustser.manifest import Fold, Manifest, Utterance

__all__ = ["DEFAULT_POOL_SIZE", "BabblePools", "babble_pool", "load_talkers"]

DEFAULT_POOL_SIZE = 8  # a few more than MAX_TALKERS, so the clip's seed still chooses


class BabblePools:
    """The babble pools of one manifest and fold: built once, then asked clip by clip.

    Grouping the clips by speaker and finding the test set's speakers reads the whole manifest,
    so it happens here once; :meth:`pool` then costs a shuffle of the speakers per clip.
    """

    def __init__(
        self,
        manifest: Manifest,
        *,
        fold: Fold | str | None = None,
        seed: int = 0,
        size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < MIN_TALKERS:
            raise CorruptionError(
                f"size must be an integer of at least {MIN_TALKERS} (babble mixes "
                f"{MIN_TALKERS} to {MAX_TALKERS} talkers), got {size!r}."
            )
        if isinstance(fold, str):
            try:
                fold = manifest.fold(fold)
            except KeyError as error:
                raise CorruptionError(str(error.args[0])) from None
        self.manifest = manifest
        self.fold = fold
        self.seed = seed
        self.size = size
        by_speaker: dict[str, list[Utterance]] = defaultdict(list)
        for utterance in manifest:
            if utterance.speaker_known:
                by_speaker[utterance.speaker].append(utterance)
        self._clips = {k: sorted(v, key=lambda u: u.id) for k, v in by_speaker.items()}
        tested = set()
        if fold is not None:
            tested = {u.speaker for u in manifest if fold.role(u) == "test"}
        self._outside = sorted(s for s in self._clips if s not in tested)
        self._inside = sorted(s for s in self._clips if s in tested)

    def pool(self, clip_id: str) -> tuple[Utterance, ...]:
        """Up to ``size`` clips of speakers other than ``clip_id``'s, chosen from ``seed``.

        Candidates are the manifest's clips whose speaker is known and differs from the
        clip's. With a ``fold``, clips of speakers with no clip in its test set fill the pool
        first; test-set speakers (other than the clip's) are used only when those run out.
        Within each of the two groups the speakers are shuffled from a seed derived from
        (``seed``, ``clip_id``), and the group gives one clip per speaker in that order (drawn
        from the same seed), then a second per speaker, and so on, so the pool holds as many
        different voices as it can.

        A clip whose own speaker is unknown (MSP-Podcast's ``unknown``) can only be guarded by
        the fold: it must be a test clip of ``fold``, and its pool comes from speakers with no
        clip in that test set (the corpus's splits share no speaker). Raises
        :class:`CorruptionError` when fewer than 3 clips qualify.
        """
        try:
            clip = self.manifest[clip_id]
        except KeyError as error:
            raise CorruptionError(str(error.args[0])) from None
        groups = [self._outside, self._inside]
        if not clip.speaker_known:
            if self.fold is None or self.fold.role(clip) != "test":
                raise CorruptionError(
                    f"clip {clip_id!r} has an unknown speaker, so only a fold whose test set "
                    "holds it can keep its voice out of the babble; pass that fold (the pool "
                    "then comes from speakers outside the test set)."
                )
            groups = [self._outside]
        rng = np.random.default_rng(derive_seed("trustser.babble_pool", self.seed, clip_id))
        pool: list[Utterance] = []
        for group in groups:
            speakers = [group[k] for k in rng.permutation(len(group)) if group[k] != clip.speaker]
            orders: dict[str, np.ndarray] = {}  # each speaker's clips, shuffled when first used
            depth = 0
            while len(pool) < self.size and any(len(self._clips[s]) > depth for s in speakers):
                for speaker in speakers:
                    clips = self._clips[speaker]
                    if len(pool) == self.size or depth >= len(clips):
                        continue
                    if speaker not in orders:
                        orders[speaker] = rng.permutation(len(clips))
                    pool.append(clips[orders[speaker][depth]])
                depth += 1
        if len(pool) < MIN_TALKERS:
            raise CorruptionError(
                f"only {len(pool)} clip(s) of other known speakers are available for babble "
                f"over {clip_id!r} in {self.manifest.corpus}; babble needs at least {MIN_TALKERS}."
            )
        return tuple(pool)


def babble_pool(
    manifest: Manifest,
    clip_id: str,
    *,
    fold: Fold | str | None = None,
    seed: int = 0,
    size: int = DEFAULT_POOL_SIZE,
) -> tuple[Utterance, ...]:
    """One clip's pool: ``BabblePools(manifest, fold=..., seed=..., size=...).pool(clip_id)``.

    Build a :class:`BabblePools` once when asking for many clips of the same manifest.
    """
    return BabblePools(manifest, fold=fold, seed=seed, size=size).pool(clip_id)


def load_talkers(
    utterances: Iterable[Utterance], *, max_seconds: float | None = DEFAULT_MAX_SECONDS
) -> tuple[Talker, ...]:
    """Decode each clip (16 kHz mono, first ``max_seconds``) into a :class:`Talker`."""
    talkers = []
    for utterance in utterances:
        audio = load_audio(utterance.path, max_seconds=max_seconds, warn=False)
        if audio.silent:
            raise CorruptionError(
                f"babble clip {utterance.id!r} ({utterance.path}) is silent; "
                "leave it out of the pool."
            )
        talkers.append(Talker(utterance.id, utterance.speaker, audio.waveform.numpy()))
    return tuple(talkers)
