"""Speaker-independent fold schemes shared by the corpus modules.

Every scheme here follows one rule: fold ``k`` tests on group ``k``, validates (picks the best
epoch) on group ``k+1`` (cyclically) and trains on the rest, so train, dev and test never share a
speaker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from trustser.manifest import Fold, FoldKey, Utterance, speakers_by_gender

__all__ = [
    "block_speaker_folds",
    "block_speaker_groups",
    "gender_balanced_speaker_folds",
    "gender_balanced_speaker_groups",
    "rotating_folds",
    "session_folds",
]


def rotating_folds(
    groups: Sequence[Sequence[str]], *, by: FoldKey, prefix: str = "fold"
) -> tuple[Fold, ...]:
    """Fold k: test = group k, dev = group k+1 (mod K), train = every other group."""
    k = len(groups)
    if k < 3:
        raise ValueError(f"need at least 3 groups for train/dev/test folds, got {k}")
    folds = []
    for index in range(k):
        dev_index = (index + 1) % k
        train = [v for j, g in enumerate(groups) if j not in (index, dev_index) for v in g]
        folds.append(
            Fold(
                name=f"{prefix}{index + 1}",
                by=by,
                train=tuple(train),
                dev=tuple(groups[dev_index]),
                test=tuple(groups[index]),
            )
        )
    return tuple(folds)


def gender_balanced_speaker_groups(
    speakers_by_gender: Mapping[str, Sequence[str]], num_groups: int
) -> list[list[str]]:
    """Deal each gender's sorted speakers round-robin so every group mixes genders evenly.

    Genders are dealt in name order, each continuing where the previous one stopped, so group
    sizes differ by at most one and each gender's share per group by at most one.
    """
    _check_num_groups(num_groups)
    groups: list[list[str]] = [[] for _ in range(num_groups)]
    offset = 0
    for gender in sorted(speakers_by_gender):
        speakers = sorted(speakers_by_gender[gender])
        for i, speaker in enumerate(speakers):
            groups[(i + offset) % num_groups].append(speaker)
        offset += len(speakers)
    if any(not g for g in groups):
        raise ValueError(
            f"cannot form {num_groups} speaker groups from "
            f"{sum(len(s) for s in speakers_by_gender.values())} speakers"
        )
    return [sorted(g) for g in groups]


def block_speaker_groups(speakers: Sequence[str], num_groups: int) -> list[list[str]]:
    """Consecutive blocks of the sorted speaker list (CREMA-D's 20 %-of-speakers folds)."""
    _check_num_groups(num_groups)
    ordered = sorted(speakers)
    if len(ordered) < num_groups:
        raise ValueError(f"cannot form {num_groups} blocks from {len(ordered)} speakers")
    size, extra = divmod(len(ordered), num_groups)
    groups, start = [], 0
    for index in range(num_groups):
        stop = start + size + (1 if index < extra else 0)
        groups.append(ordered[start:stop])
        start = stop
    return groups


def session_folds(sessions: Sequence[str]) -> tuple[Fold, ...]:
    """One fold per recording session, in the given order (IEMOCAP, MSP-Improv)."""
    return rotating_folds([[s] for s in sessions], by="session")


def gender_balanced_speaker_folds(
    utterances: Iterable[Utterance], num_folds: int
) -> tuple[Fold, ...]:
    """Speaker folds whose groups mix the genders evenly (EmoDB, RAVDESS)."""
    groups = gender_balanced_speaker_groups(speakers_by_gender(utterances), num_folds)
    return rotating_folds(groups, by="speaker")


def block_speaker_folds(utterances: Iterable[Utterance], num_folds: int) -> tuple[Fold, ...]:
    """Speaker folds of consecutive blocks of the sorted speakers (CREMA-D)."""
    speakers = sorted({u.speaker for u in utterances})
    return rotating_folds(block_speaker_groups(speakers, num_folds), by="speaker")


def _check_num_groups(num_groups: int) -> None:
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < 1:
        raise ValueError(f"num_groups must be a positive integer, got {num_groups!r}")
