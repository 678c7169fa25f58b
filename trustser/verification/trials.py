"""Speaker-verification trials on the unseen (test) speakers of each fold, built from the manifest.

A trial pairs two clips, the *enrolment* (the earlier one in manifest order) and the *test*
clip; it is a *target* trial when both come from one speaker. Per trial set:

* **target trials**: every pair of distinct clips of each test speaker;
* **non-target trials**: a seeded sample of pairs of clips of two *different* test speakers of
  the **same gender** (as VoicePrivacy's trial lists: a cross-gender pair is told apart by gender
  alone), **balanced by gender**: the same number of female–female and male–male pairs, ``n =
  min(max_nontargets, pairs available in each gender)`` per gender, drawn uniformly without
  replacement from all such pairs of that gender (all of them when ``n`` is all there are).

**Sets and pooling.** Normally there is one set per fold: the fold's test speakers, scored by
an attacker that knows its training speakers and picks its layer on its dev speakers. A fold
whose test speakers hold fewer than two speakers of a gender (EmoDB and IEMOCAP test one woman
and one man per fold) has no same-gender non-target pair; then trials are **pooled across
folds**: one set per combination of ``m`` folds (the smallest ``m`` for which every combination
has two speakers of each gender), its test speakers the union of theirs. The set's attacker
takes the split of its first fold whose dev speakers are none of the set's test speakers (and
that keeps at least two training speakers), minus the set's test speakers: so **no trial ever
involves a speaker the attacker trained on or chose its layer on**. The design records the flag and the reason.

**Dev trials** (for the layer choice) are built the same way from the set's dev speakers: the
attacker fold's dev speakers, joined — while a gender has fewer than two of them (EmoDB's dev
fold holds one woman and one man: no same-gender pair to choose on) — by the dev speakers of
the next folds that are among its training speakers (they move from training to dev; at least
two training speakers stay). If still no gender has two dev speakers, the dev non-targets are
the cross-gender pairs, recorded as ``dev_nontargets = "any gender"``.

Formulas and the rationale: docs/metrics.md, "Speaker verification".
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from trustser._validation import TrustSERError
from trustser.manifest import GENDERS, Fold, Manifest, Utterance

__all__ = [
    "ANY_GENDER",
    "DEFAULT_MAX_NONTARGETS",
    "SAME_GENDER",
    "TrialDesign",
    "TrialDesignError",
    "TrialSet",
    "Trials",
    "build_trials",
]

DEFAULT_MAX_NONTARGETS = 5000  # per gender and set
SAME_GENDER = "same gender"
ANY_GENDER = "any gender"
MIXED = "mixed"  # the gender of a cross-gender trial
_MIN_SPEAKERS = 2  # per gender, for a same-gender different-speaker pair
_ENUMERATE_LIMIT = 8_000_000  # candidate pairs listed in full; beyond, drawn by rejection


class TrialDesignError(TrustSERError, ValueError):
    """A manifest whose folds cannot give verification trials (too few speakers, no folds)."""


@dataclass(frozen=True, eq=False)
class Trials:
    """Trials as parallel arrays, one entry per trial (ids, speakers and genders of both clips)."""

    enrol: np.ndarray
    test: np.ndarray
    enrol_speaker: np.ndarray
    test_speaker: np.ndarray
    enrol_gender: np.ndarray
    test_gender: np.ndarray
    target: np.ndarray

    def __len__(self) -> int:
        return int(self.target.size)

    @property
    def gender(self) -> np.ndarray:
        """Each trial's gender: both clips' when they agree, ``"mixed"`` otherwise."""
        return np.where(self.enrol_gender == self.test_gender, self.enrol_gender, MIXED)

    @property
    def ids(self) -> list[str]:
        """The clips the trials use, each once, in order of first use."""
        return list(dict.fromkeys(np.concatenate([self.enrol, self.test]).tolist()))

    def counts(self) -> dict[str, Any]:
        """Target and non-target trials, in all and per trial gender."""
        gender = self.gender
        out: dict[str, Any] = {
            "target": int(self.target.sum()),
            "nontarget": int((~self.target).sum()),
        }
        for value in sorted(set(gender.tolist())):
            member = gender == value
            out[value] = {
                "target": int((self.target & member).sum()),
                "nontarget": int((~self.target & member).sum()),
            }
        return out


@dataclass(frozen=True, eq=False)
class TrialSet:
    """One attacker's evaluation: its test trials, its dev trials and the speakers it knows."""

    name: str
    folds: tuple[str, ...]
    attacker_fold: str  # the fold whose split (and, for a variant, deployed model) is used
    test_speakers: tuple[str, ...]
    dev_speakers: tuple[str, ...]
    train_speakers: tuple[str, ...]
    train_ids: tuple[str, ...]
    train_labels: tuple[str, ...]  # the speaker of each training clip
    dev_ids: tuple[str, ...]  # every dev clip (all emotions): the informed attacker's refit
    dev_labels: tuple[str, ...]
    dev_folds: tuple[str, ...]  # the folds whose dev speakers are this set's
    trials: Trials
    dev_trials: Trials
    dev_nontargets: str

    def __post_init__(self) -> None:
        """The promise of the design, checked: the attacker never met a trial's speakers."""
        test, dev, train = set(self.test_speakers), set(self.dev_speakers), set(self.train_speakers)
        trial_speakers = set(self.trials.enrol_speaker.tolist()) | set(
            self.trials.test_speaker.tolist()
        )
        dev_trial_speakers = set(self.dev_trials.enrol_speaker.tolist()) | set(
            self.dev_trials.test_speaker.tolist()
        )
        problems = [
            f"{label}: {sorted(shared)[:5]}"
            for label, shared in (
                ("trial speakers outside the test speakers", trial_speakers - test),
                ("dev-trial speakers outside the dev speakers", dev_trial_speakers - dev),
                ("training clips of non-training speakers", set(self.train_labels) - train),
                ("dev clips of non-dev speakers", set(self.dev_labels) - dev),
                ("test speakers among the training speakers", test & train),
                ("test speakers among the dev speakers", test & dev),
                ("dev speakers among the training speakers", dev & train),
            )
            if shared
        ]
        if len(self.train_ids) != len(self.train_labels) or len(self.dev_ids) != len(
            self.dev_labels
        ):
            problems.append("clip ids and their speaker labels differ in length")
        if problems:
            raise TrialDesignError(f"trial set {self.name}: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "folds": list(self.folds),
            "attacker_fold": self.attacker_fold,
            "test_speakers": list(self.test_speakers),
            "dev_speakers": list(self.dev_speakers),
            "dev_folds": list(self.dev_folds),
            "train_speakers": list(self.train_speakers),
            "train_clips": len(self.train_ids),
            "trials": self.trials.counts(),
            "dev_trials": self.dev_trials.counts(),
            "dev_nontargets": self.dev_nontargets,
        }


@dataclass(frozen=True, eq=False)
class TrialDesign:
    """Every trial set of a manifest, with how they were made."""

    sets: tuple[TrialSet, ...]
    pooled: bool
    pooled_reason: str | None
    emotion: str | None
    seed: int
    max_nontargets: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pooled_across_folds": self.pooled,
            "pooled_reason": self.pooled_reason,
            "emotion": self.emotion,
            "seed": self.seed,
            "max_nontargets_per_gender": self.max_nontargets,
            "target_trials": "every pair of distinct clips of each test speaker",
            "nontarget_trials": (
                "a seeded uniform sample (without replacement) of pairs of clips of two different "
                "test speakers of the same gender; equal numbers per gender, "
                "min(max_nontargets_per_gender, pairs available in each gender)"
            ),
            "enrolment": "one clip; the earlier clip of a pair in manifest order is the enrolment",
            "notes": list(self.notes),
            "sets": [s.to_dict() for s in self.sets],
        }


def _check_arguments(manifest: Manifest, emotion: str | None, max_nontargets: int) -> None:
    """Refuse what no trial design can come from, naming the field and the fix."""
    if isinstance(max_nontargets, bool) or not isinstance(max_nontargets, int):
        raise TrialDesignError(f"max_nontargets must be an integer, got {max_nontargets!r}.")
    if max_nontargets < 1:
        raise TrialDesignError(f"max_nontargets must be at least 1, got {max_nontargets}.")
    if not manifest.folds:
        raise TrialDesignError(
            f"the {manifest.corpus} manifest defines no folds; verification trials are built "
            "on each fold's test speakers (see docs/manifest.md for folds)."
        )
    if emotion is not None and emotion not in manifest.labels:
        raise TrialDesignError(
            f"emotion {emotion!r} is not a label of the {manifest.corpus} manifest; "
            f"choose one of {list(manifest.labels)}."
        )


def build_trials(
    manifest: Manifest,
    *,
    emotion: str | None = None,
    seed: int = 0,
    max_nontargets: int = DEFAULT_MAX_NONTARGETS,
) -> TrialDesign:
    """The trial sets of ``manifest`` (see the module docstring for the design).

    ``emotion`` keeps only clips of that label in the test and dev trials (the attacker still
    trains on every clip of its training speakers). ``max_nontargets`` caps the non-target
    trials per gender and set. The same arguments always give the same trials.
    """
    _check_arguments(manifest, emotion, max_nontargets)
    known = [u for u in manifest.utterances if u.speaker_known and u.gender in GENDERS]
    position = {u.id: i for i, u in enumerate(known)}
    roles = {fold.name: _roles(fold, known) for fold in manifest.folds}

    def trial_clips(fold: str, role: str) -> list[Utterance]:
        return [u for u in roles[fold][role] if emotion is None or u.emotion == emotion]

    test_clips = {fold.name: trial_clips(fold.name, "test") for fold in manifest.folds}
    genders = sorted({u.gender for clips in test_clips.values() for u in clips})
    if not genders:
        raise TrialDesignError(
            "no test clip of a known speaker and gender"
            + (f" with emotion {emotion!r}" if emotion else "")
            + f" in the {manifest.corpus} manifest's folds."
        )
    folds = [fold.name for fold in manifest.folds]
    short = [f for f in folds if not _enough(test_clips[f], genders)]
    size, pooled_reason = 1, None
    if short:
        size = _pool_size(folds, test_clips, genders, manifest.corpus)
        pooled_reason = (
            f"{_speaker_counts(test_clips[short[0]], genders)} among the test speakers of "
            f"{short[0]}"
            + (f" (and {len(short) - 1} other fold(s))" if len(short) > 1 else "")
            + f"; same-gender different-speaker trials need at least {_MIN_SPEAKERS} speakers of "
            f"each gender, so trials are pooled over every combination of {size} folds"
        )
    sets, notes = [], []
    for combo in combinations(folds, size):
        name = "+".join(combo)
        test_utts = [u for f in combo for u in test_clips[f]]
        test_speakers = sorted({u.speaker for f in combo for u in roles[f]["test"]})
        attacker_fold = _attacker_fold(combo, roles, set(test_speakers))
        if attacker_fold is None:
            notes.append(
                f"set {name} left out: every fold in it has a dev speaker among the set's test "
                f"speakers or fewer than {_MIN_SPEAKERS} training speakers apart from them"
            )
            continue
        split = roles[attacker_fold]
        dev_folds = _dev_folds(folds, attacker_fold, roles, set(test_speakers), genders, emotion)
        dev_speakers = sorted(
            {u.speaker for f in dev_folds for u in roles[f]["dev"]} - set(test_speakers)
        )
        known = [u for u in (*split["train"], *split["dev"]) if u.speaker not in test_speakers]
        train_utts = [u for u in known if u.speaker not in dev_speakers]
        dev_all = [u for u in known if u.speaker in dev_speakers]
        dev_utts = [u for u in dev_all if emotion is None or u.emotion == emotion]
        dev_mode = SAME_GENDER if _has_same_gender_pair(dev_utts) else ANY_GENDER
        sets.append(
            TrialSet(
                name=name,
                folds=combo,
                attacker_fold=attacker_fold,
                test_speakers=tuple(test_speakers),
                dev_speakers=tuple(dev_speakers),
                train_speakers=tuple(sorted({u.speaker for u in train_utts})),
                train_ids=tuple(u.id for u in train_utts),
                train_labels=tuple(u.speaker for u in train_utts),
                dev_ids=tuple(u.id for u in dev_all),
                dev_labels=tuple(u.speaker for u in dev_all),
                dev_folds=dev_folds,
                trials=_make_trials(
                    test_utts, position, SAME_GENDER, max_nontargets, (seed, name, "test")
                ),
                dev_trials=_make_trials(
                    dev_utts, position, dev_mode, max_nontargets, (seed, name, "dev")
                ),
                dev_nontargets=dev_mode,
            )
        )
    if not sets:
        raise TrialDesignError(
            f"no trial set of the {manifest.corpus} manifest leaves dev and training speakers "
            f"apart from its test speakers ({'; '.join(notes)}); verification on unseen "
            "speakers needs more speakers or more folds."
        )
    return TrialDesign(
        sets=tuple(sets),
        pooled=size > 1,
        pooled_reason=pooled_reason,
        emotion=emotion,
        seed=seed,
        max_nontargets=max_nontargets,
        notes=tuple(notes),
    )


def _roles(fold: Fold, utterances: Sequence[Utterance]) -> dict[str, list[Utterance]]:
    out: dict[str, list[Utterance]] = {"train": [], "dev": [], "test": []}
    for u in utterances:
        role = fold.role(u)
        if role is not None:
            out[role].append(u)
    return out


def _speakers_per_gender(utterances: Sequence[Utterance]) -> Counter:
    return Counter(gender for _, gender in {(u.speaker, u.gender) for u in utterances})


def _enough(utterances: Sequence[Utterance], genders: Sequence[str]) -> bool:
    counts = _speakers_per_gender(utterances)
    return all(counts[g] >= _MIN_SPEAKERS for g in genders)


def _speaker_counts(utterances: Sequence[Utterance], genders: Sequence[str]) -> str:
    counts = _speakers_per_gender(utterances)
    return " and ".join(f"{counts[g]} {g}" for g in genders) + " speaker(s)"


def _has_same_gender_pair(utterances: Sequence[Utterance]) -> bool:
    return any(n >= _MIN_SPEAKERS for n in _speakers_per_gender(utterances).values())


def _pool_size(
    folds: Sequence[str],
    test_clips: dict[str, list[Utterance]],
    genders: Sequence[str],
    corpus: str,
) -> int:
    """The smallest number of folds whose every combination has enough speakers per gender."""
    for size in range(2, len(folds)):
        if all(
            _enough([u for f in combo for u in test_clips[f]], genders)
            for combo in combinations(folds, size)
        ):
            return size
    counts = "; ".join(f"{f}: {_speaker_counts(test_clips[f], genders)}" for f in folds)
    raise TrialDesignError(
        f"the {corpus} manifest's folds cannot give same-gender different-speaker trials on "
        f"unseen speakers ({counts}); every gender needs at least {_MIN_SPEAKERS} test speakers "
        f"in a set of fewer than all {len(folds)} folds, so that an attacker remains to be "
        "trained on the others."
    )


def _attacker_fold(
    combo: Sequence[str], roles: dict[str, dict[str, list[Utterance]]], test: set[str]
) -> str | None:
    """The first fold of ``combo`` whose dev speakers are none of the set's test speakers and
    whose training speakers, less the set's, are still at least two (to train an attacker)."""
    for fold in combo:
        dev = {u.speaker for u in roles[fold]["dev"]}
        train = {u.speaker for u in roles[fold]["train"]} - test - dev
        if not dev & test and len(train) >= _MIN_SPEAKERS:
            return fold
    return None


def _dev_folds(
    folds: Sequence[str],
    attacker_fold: str,
    roles: dict[str, dict[str, list[Utterance]]],
    test: set[str],
    genders: Sequence[str],
    emotion: str | None,
) -> tuple[str, ...]:
    """The folds whose dev speakers choose the layer: the attacker fold's, then — while a gender
    has fewer than two dev speakers (no same-gender non-target pair to choose on) — the next
    folds' dev speakers (in fold order, cyclically) that are training speakers of the attacker
    fold and not test speakers of the set, as long as two training speakers remain."""
    chosen = [attacker_fold]
    train = {u.speaker for u in roles[attacker_fold]["train"]} - test

    def clips(names: Sequence[str]) -> list[Utterance]:
        return [
            u
            for f in names
            for u in roles[f]["dev"]
            if u.speaker not in test and (emotion is None or u.emotion == emotion)
        ]

    start = list(folds).index(attacker_fold)
    for other in [*folds[start + 1 :], *folds[:start]]:
        if _enough(clips(chosen), genders):
            break
        moved = {u.speaker for u in roles[other]["dev"]}
        if not moved or not moved <= train or len(train - moved) < _MIN_SPEAKERS:
            continue
        chosen.append(other)
        train -= moved
    return tuple(chosen)


def _rng(key: tuple[Any, ...]) -> np.random.Generator:
    """A generator seeded by the seed and stable hashes of the other key parts (not ``hash``)."""
    seed, *names = key
    return np.random.default_rng([int(seed), *(zlib.crc32(str(n).encode()) for n in names)])


def _make_trials(
    utterances: Sequence[Utterance],
    position: dict[str, int],
    mode: str,
    max_nontargets: int,
    key: tuple[Any, ...],
) -> Trials:
    order = sorted(utterances, key=lambda u: position[u.id])
    speakers = np.array([u.speaker for u in order], dtype=object)
    genders = np.array([u.gender for u in order], dtype=object)
    first: list[np.ndarray] = []
    second: list[np.ndarray] = []
    for speaker in dict.fromkeys(speakers.tolist()):
        members = np.flatnonzero(speakers == speaker)
        i, j = np.triu_indices(members.size, k=1)
        first.append(members[i])
        second.append(members[j])
    if mode == SAME_GENDER:
        pools = {
            g: np.flatnonzero(genders == g)
            for g in sorted(set(genders.tolist()))
            if len(set(speakers[genders == g].tolist())) >= _MIN_SPEAKERS
        }
    else:
        pools = {ANY_GENDER: np.arange(len(order))} if len(set(speakers.tolist())) > 1 else {}
    available = {g: _pair_count(speakers[members]) for g, members in pools.items()}
    count = min([max_nontargets, *available.values()])
    for name, members in pools.items():
        i, j = _different_speaker_pairs(speakers[members], count, _rng((*key, name)))
        first.append(members[i])
        second.append(members[j])
    a = np.concatenate(first) if first else np.zeros(0, dtype=np.int64)
    b = np.concatenate(second) if second else np.zeros(0, dtype=np.int64)
    sort = np.lexsort((b, a))
    a, b = a[sort], b[sort]
    ids = np.array([u.id for u in order], dtype=object)
    return Trials(
        enrol=ids[a],
        test=ids[b],
        enrol_speaker=speakers[a],
        test_speaker=speakers[b],
        enrol_gender=genders[a],
        test_gender=genders[b],
        target=speakers[a] == speakers[b],
    )


def _pair_count(speakers: np.ndarray) -> int:
    """Unordered pairs of clips of different speakers."""
    sizes = np.array(list(Counter(speakers.tolist()).values()), dtype=np.int64)
    return int((sizes.sum() ** 2 - (sizes**2).sum()) // 2)


def _different_speaker_pairs(
    speakers: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` distinct pairs ``(i < j)`` of clips of different speakers, uniformly drawn
    without replacement (all of them when ``count`` is all there are), sorted."""
    n = speakers.size
    codes = np.unique(speakers, return_inverse=True)[1]
    if n * (n - 1) // 2 <= _ENUMERATE_LIMIT:
        i, j = np.triu_indices(n, k=1)
        keep = codes[i] != codes[j]
        i, j = i[keep], j[keep]
        if count < i.size:
            chosen = np.sort(rng.choice(i.size, size=count, replace=False))
            i, j = i[chosen], j[chosen]
        return i, j
    chosen: set[int] = set()  # too many to list: draw pairs, keep new different-speaker ones
    while len(chosen) < count:
        x = rng.integers(0, n, size=2 * (count - len(chosen)) + 16)
        y = rng.integers(0, n, size=x.size)
        for p, q in zip(np.minimum(x, y).tolist(), np.maximum(x, y).tolist(), strict=True):
            if codes[p] != codes[q] and len(chosen) < count:
                chosen.add(p * n + q)
    flat = np.array(sorted(chosen), dtype=np.int64)
    return flat // n, flat % n
