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

__all__ = ["DEFAULT_POOL_SIZE", "babble_pool", "load_talkers"]

DEFAULT_POOL_SIZE = 8  # a few more than MAX_TALKERS, so the clip's seed still chooses


def babble_pool(
    manifest: Manifest,
    clip_id: str,
    *,
    fold: Fold | str | None = None,
    seed: int = 0,
    size: int = DEFAULT_POOL_SIZE,
) -> tuple[Utterance, ...]:
    """Up to ``size`` clips of speakers other than ``clip_id``'s, chosen from ``seed``.

    Candidates are the manifest's clips whose speaker is known and differs from the clip's.
    With a ``fold``, speakers with no clip in its test set come first; test-set speakers (other
    than the clip's) are used only when those run out. Within each group the speakers are
    shuffled from a seed derived from (``seed``, ``clip_id``), each speaker's clips too, and the
    pool takes one clip per speaker in that order, then a second per speaker, and so on.

    A clip whose own speaker is unknown (MSP-Podcast's ``unknown``) can only be guarded by the
    fold: it must be a test clip of ``fold`` (required), and its pool comes from speakers with no
    clip in that test set (the corpus's splits share no speaker).
    Raises :class:`CorruptionError` when fewer than 3 clips qualify.
    """
    if size < MIN_TALKERS:
        raise CorruptionError(
            f"size must be at least {MIN_TALKERS} (babble mixes {MIN_TALKERS} to "
            f"{MAX_TALKERS} talkers), got {size!r}."
        )
    try:
        clip = manifest[clip_id]
    except KeyError as error:
        raise CorruptionError(str(error.args[0])) from None
    if isinstance(fold, str):
        try:
            fold = manifest.fold(fold)
        except KeyError as error:
            raise CorruptionError(str(error.args[0])) from None
    test_speakers = set()
    if fold is not None:
        test_speakers = {u.speaker for u in manifest if fold.role(u) == "test"}
    if not clip.speaker_known and (fold is None or fold.role(clip) != "test"):
        raise CorruptionError(
            f"clip {clip_id!r} has an unknown speaker, so only a fold whose test set holds it "
            "can keep its voice out of the babble; pass that fold= (the pool then comes from "
            "speakers outside the test set)."
        )
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for utterance in manifest:
        if utterance.speaker_known and utterance.speaker != clip.speaker:
            by_speaker[utterance.speaker].append(utterance)
    outside = sorted(s for s in by_speaker if s not in test_speakers)
    inside = [] if not clip.speaker_known else sorted(s for s in by_speaker if s in test_speakers)
    rng = np.random.default_rng(derive_seed("trustser.babble_pool", seed, clip_id))
    speakers = [outside[i] for i in rng.permutation(len(outside))]
    speakers += [inside[i] for i in rng.permutation(len(inside))]
    queues = []
    for speaker in speakers:
        clips = sorted(by_speaker[speaker], key=lambda u: u.id)
        queues.append([clips[i] for i in rng.permutation(len(clips))])
    pool: list[Utterance] = []
    for depth in range(max((len(q) for q in queues), default=0)):
        pool.extend(q[depth] for q in queues if depth < len(q))
        if len(pool) >= size:
            break
    if len(pool) < MIN_TALKERS:
        raise CorruptionError(
            f"only {len(pool)} clip(s) of other known speakers are available for babble over "
            f"{clip_id!r} in {manifest.corpus}; babble needs at least {MIN_TALKERS}."
        )
    return tuple(pool[:size])


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
