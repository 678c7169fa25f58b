"""Babble: other people talking at once, mixed under the clip at a set SNR.

The caller supplies the candidate talkers (clips with their speaker ids; see
:func:`trustser.corruptions.babble_pool.babble_pool` for picking them from a manifest) and the
clip's own speaker. :func:`choose_talkers` draws 3 to 5 of them from the seed, one per speaker
as far as the pool allows, and refuses a pool that holds the clip's own speaker: babble must
never contain the voice it is masking.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trustser.corruptions.functional import CorruptionError, add_at_snr, as_signal, to_output

__all__ = ["MAX_TALKERS", "MIN_TALKERS", "Talker", "babble", "babble_signal", "choose_talkers"]

MIN_TALKERS = 3
MAX_TALKERS = 5


@dataclass(frozen=True, eq=False)
class Talker:
    """One candidate babble clip: its utterance id, speaker id and 16 kHz mono waveform."""

    clip_id: str
    speaker: str
    waveform: np.ndarray


def choose_talkers(
    talkers: Sequence[Talker],
    *,
    speaker: str,
    seed: int,
    min_talkers: int = MIN_TALKERS,
    max_talkers: int = MAX_TALKERS,
) -> tuple[Talker, ...]:
    """The talkers :func:`babble` mixes for a clip of ``speaker``, drawn from ``seed``.

    The count k is uniform in [min_talkers, max_talkers] (at most the pool's size); the pool is
    shuffled and the first clip of each not yet chosen speaker is taken before any second clip
    of a speaker. Raises if the pool holds a clip of ``speaker`` or fewer than ``min_talkers``
    clips.
    """
    if not 1 <= min_talkers <= max_talkers:
        raise CorruptionError(
            f"need 1 <= min_talkers <= max_talkers, got {min_talkers!r}, {max_talkers!r}."
        )
    if not isinstance(speaker, str) or not speaker:
        raise CorruptionError(
            "babble needs the clip's speaker id (speaker=...) to keep that voice out of the mix."
        )
    own = sorted(t.clip_id for t in talkers if t.speaker == speaker)
    if own:
        raise CorruptionError(
            f"the babble pool holds {len(own)} clip(s) of the clip's own speaker {speaker!r} "
            f"({', '.join(own[:3])}); build the pool from other speakers "
            "(trustser.corruptions.babble_pool.babble_pool does)."
        )
    if len(talkers) < min_talkers:
        raise CorruptionError(
            f"babble needs at least {min_talkers} talker clips, the pool has {len(talkers)}; "
            "give a larger pool."
        )
    rng = np.random.default_rng([seed, 0])
    count = int(rng.integers(min_talkers, min(max_talkers, len(talkers)) + 1))
    order = [int(i) for i in rng.permutation(len(talkers))]
    firsts: list[int] = []
    seen: set[str] = set()
    for i in order:  # one clip per speaker first
        if talkers[i].speaker not in seen:
            firsts.append(i)
            seen.add(talkers[i].speaker)
    repeats = [i for i in order if i not in firsts]  # then more of a speaker, if the pool is short
    return tuple(talkers[i] for i in (firsts + repeats)[:count])


def babble_signal(talkers: Sequence[Talker], num_samples: int, *, seed: int) -> np.ndarray:
    """The sum of ``talkers``, each looped to ``num_samples`` from a seeded start and at unit RMS.

    Every talker contributes the same power, so no one voice dominates; a talker is read
    circularly from a random offset, so short clips fill the length and the voices do not all
    start together.
    """
    rng = np.random.default_rng([seed, 1])
    mix = np.zeros(num_samples)
    for talker in talkers:
        voice = as_signal(talker.waveform, f"talker {talker.clip_id!r}")
        rms = math.sqrt(float(np.mean(voice**2)))
        if rms == 0.0:
            raise CorruptionError(
                f"talker {talker.clip_id!r} is silent; leave silent clips out of the pool."
            )
        start = int(rng.integers(voice.shape[0]))
        mix += np.resize(np.roll(voice, -start), num_samples) / rms
    return mix


def babble(
    waveform: np.ndarray,
    *,
    snr_db: float,
    seed: int,
    speaker: str,
    talkers: Sequence[Talker],
    min_talkers: int = MIN_TALKERS,
    max_talkers: int = MAX_TALKERS,
) -> np.ndarray:
    """Add the babble of :func:`choose_talkers` / :func:`babble_signal` at exactly ``snr_db``."""
    x = as_signal(waveform)
    chosen = choose_talkers(
        talkers, speaker=speaker, seed=seed, min_talkers=min_talkers, max_talkers=max_talkers
    )
    return to_output(add_at_snr(x, babble_signal(chosen, x.shape[0], seed=seed), snr_db), len(x))
