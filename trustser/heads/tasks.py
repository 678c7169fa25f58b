"""What a head predicts, from which labels, on which splits.

Three tasks share one head and one training loop:

* ``emotion`` — the manifest's emotion labels (four classes for the paper's corpora) on the
  manifest's speaker-independent folds; 30 epochs as the paper.
* ``gender`` — female / male on the same speaker-independent folds: a privacy attack that infers
  the speaker's gender from embeddings of speakers it never saw; 10 epochs as the paper.
* ``speaker`` — closed-set speaker identification, a second privacy attack. A closed set needs
  every speaker in train, dev and test, so this task cannot use speaker-independent folds; it
  uses its own split (see :func:`speaker_splits`).

Some corpora cannot support a privacy task at all: one gender (TESS), no gender labels, or too
few speakers. Such a task raises :class:`NotMeasurableError`; :func:`plan_tasks` lets a bare
command skip it with the reason (an explicitly named task still fails), so the emotion head and
every other axis are still measured and the profile shows the cell as not measurable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from trustser._validation import TrustSERError, select_names
from trustser.manifest import GENDERS, UNKNOWN_GENDER, Manifest, Utterance
from trustser.runs import TASKS

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_MIN_STEPS",
    "DEFAULT_PATIENCE",
    "SPEAKER_FOLDS",
    "TASKS",
    "NotMeasurableError",
    "Split",
    "Task",
    "TaskError",
    "TaskPlan",
    "build_task",
    "ids_checksum",
    "parse_tasks",
    "plan_tasks",
    "select_splits",
    "speaker_splits",
]

# The paper: 30 epochs for emotion, 10 for the gender head. Speaker identification has no paper
# setting; it gets the emotion head's budget.
DEFAULT_EPOCHS: dict[str, int] = {"emotion": 30, "gender": 10, "speaker": 30}
# Floor on optimiser steps per fold. The paper's epochs were set for folds of thousands of clips
# (IEMOCAP: ~3,300 training clips, ~52 batches per epoch, so 30 epochs ≈ 1,560 steps and the
# gender head's 10 ≈ 520); on EmoDB (4 batches per epoch) they give 120 steps for emotion and 40
# for gender, far from converged (docs/heads.md). The floor binds only below 30 batches per epoch
# for gender and 10 for emotion, so it leaves the paper's corpora untouched.
DEFAULT_MIN_STEPS = 300
# Epochs without a better dev score after which a fit stops (once its budget above is trained),
# at most DEFAULT_MAX_EPOCHS (trustser.heads.estimator) in all. The gender and speaker heads are
# privacy *attackers*: one stopped while it still improves under-states what leaks, so they train
# to convergence (patience 10: scikit-learn's MLPClassifier ``n_iter_no_change``). The emotion
# head keeps the paper's fixed budget.
DEFAULT_PATIENCE: dict[str, int] = {"emotion": 0, "gender": 10, "speaker": 10}
SPEAKER_FOLDS = 5


class TaskError(TrustSERError, ValueError):
    """A task that cannot be built from the data at hand (too few labels, unknown fold...)."""


class NotMeasurableError(TaskError):
    """A privacy task the corpus cannot support at all (one gender, no gender labels, too few
    speakers): no rerun would help. A bare command skips it and records ``reason``
    (:func:`plan_tasks`); a command that names the task fails with it."""

    def __init__(self, task: str, reason: str) -> None:
        self.task, self.reason = task, reason
        super().__init__(
            f"task {task!r} cannot be measured on this corpus: {reason}. Ask for every task "
            "instead (leave out --task, or task='all') to fit the others; the profile then shows "
            f"the {task} task as not measurable."
        )


@dataclass(frozen=True)
class TaskPlan:
    """The tasks to fit and, for each task skipped, why the corpus cannot measure it."""

    tasks: tuple[Task, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)  # task -> reason


@dataclass(frozen=True)
class Split:
    """One train/dev/test partition of utterance ids (a fold)."""

    name: str
    train: tuple[str, ...]
    dev: tuple[str, ...]
    test: tuple[str, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        return self.train + self.dev + self.test

    def checksum(self) -> str:
        """SHA-256 of the three id lists: identifies exactly which data a head saw."""
        return ids_checksum({"train": self.train, "dev": self.dev, "test": self.test})


@dataclass(frozen=True)
class Task:
    """A classification task: labels in class-index order, a label per id, and its splits."""

    name: str
    labels: tuple[str, ...]
    label_of: Mapping[str, str]
    splits: tuple[Split, ...]
    scheme: str
    excluded: Mapping[str, str] = field(default_factory=dict)  # id -> why it takes no part

    @property
    def default_epochs(self) -> int:
        return DEFAULT_EPOCHS[self.name]

    @property
    def ids(self) -> list[str]:
        """Every id some split uses, in first-seen order."""
        seen: dict[str, None] = {}
        for split in self.splits:
            for utterance_id in split.ids:
                seen.setdefault(utterance_id, None)
        return list(seen)

    def split(self, name: str) -> Split:
        for split in self.splits:
            if split.name == name:
                return split
        raise TaskError(
            f"task {self.name!r} has no fold {name!r}; folds: {', '.join(s.name for s in self.splits)}"
        )


def ids_checksum(parts: Mapping[str, Sequence[str]]) -> str:
    digest = hashlib.sha256()
    for role in sorted(parts):
        digest.update(role.encode())
        for utterance_id in parts[role]:
            digest.update(b"\x00" + utterance_id.encode())
        digest.update(b"\x01")
    return digest.hexdigest()


def parse_tasks(spec: str) -> list[str]:
    """``"emotion"`` → ``["emotion"]``; ``"all"`` → every task; ``"emotion,gender"`` works too."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if names == ["all"]:
        return list(TASKS)
    unknown = [n for n in names if n not in TASKS]
    if unknown or not names:
        raise TaskError(
            f"task {spec!r} is not supported; choose {', '.join(TASKS)} or all (comma-separated works)."
        )
    return list(dict.fromkeys(names))


def build_task(
    name: str,
    manifest: Manifest,
    *,
    seed: int = 0,
    speaker_folds: int = SPEAKER_FOLDS,
) -> Task:
    """The task ``name`` over ``manifest`` (typically ``group.manifest()``: the extracted ids)."""
    if name not in TASKS:
        raise TaskError(f"task {name!r} is not supported; choose one of {', '.join(TASKS)}.")
    if not manifest.utterances:
        raise TaskError(f"the {manifest.corpus} manifest has no utterances; extract some first.")
    if name == "speaker":
        return speaker_splits(manifest, num_folds=speaker_folds, seed=seed)
    if name == "gender":
        _check_genders(manifest)
    attribute = name  # "emotion" or "gender": a typed Utterance field
    allowed = manifest.labels if name == "emotion" else GENDERS
    present = {getattr(u, attribute) for u in manifest.utterances}
    labels = tuple(label for label in allowed if label in present)
    if len(labels) < 2:
        raise TaskError(
            f"task {name!r} needs at least two {attribute} classes in the {manifest.corpus} "
            f"manifest; found {sorted(present)}."
        )
    if not manifest.folds:
        raise TaskError(
            f"the {manifest.corpus} manifest defines no folds; the {name} task needs its "
            "speaker-independent folds (prepare the corpus with `trustser data prepare`)."
        )
    # The gender task leaves out clips whose gender is unknown; emotion uses every clip.
    label_of = {u.id: getattr(u, attribute) for u in manifest.utterances}
    excluded = {i: "gender unknown" for i, label in label_of.items() if label not in labels}
    for utterance_id in excluded:
        del label_of[utterance_id]
    splits = []
    for fold in manifest.folds:
        parts = manifest.split(fold)
        split = Split(
            fold.name,
            *(tuple(u.id for u in parts[r] if u.id in label_of) for r in ("train", "dev", "test")),
        )
        for role in ("train", "dev", "test"):
            if not getattr(split, role):
                raise TaskError(
                    f"fold {fold.name!r} of {manifest.corpus} has no extracted utterances in {role}; "
                    "finish extraction or choose other folds."
                )
        if name == "gender":
            _check_fold_genders(manifest, split, label_of)
        splits.append(split)
    return Task(
        name=name,
        labels=labels,
        label_of=label_of,
        splits=tuple(splits),
        scheme=f"speaker-independent folds of the manifest: {manifest.fold_scheme or 'as defined'}",
        excluded=excluded,
    )


def _check_genders(manifest: Manifest) -> None:
    """Raise :class:`NotMeasurableError` unless both genders are labelled in ``manifest``."""
    speakers: dict[str, set[str]] = {}
    for u in manifest.utterances:
        speakers.setdefault(u.gender, set()).add(u.speaker)
    known = [g for g in GENDERS if g in speakers]
    if not known:
        raise NotMeasurableError(
            "gender",
            f"no gender labels (every clip of the {manifest.corpus} manifest is "
            f"{UNKNOWN_GENDER!r})",
        )
    if len(known) < 2:
        (only,) = known
        count = len(speakers[only])
        raise NotMeasurableError(
            "gender",
            f"one gender only ({count} {only} speaker{'s' if count != 1 else ''} in the "
            f"{manifest.corpus} manifest)",
        )


def _check_fold_genders(manifest: Manifest, split: Split, label_of: Mapping[str, str]) -> None:
    """A gender head cannot learn from a fold whose training clips are all of one gender."""
    trained = {label_of[i] for i in split.train}
    if len(trained) < 2:
        raise NotMeasurableError(
            "gender",
            f"fold {split.name} of {manifest.corpus} trains on {', '.join(sorted(trained))} "
            "speakers only (too few speakers of the other gender for the folds)",
        )


def plan_tasks(
    spec: str | None,
    manifest: Manifest,
    *,
    seed: int = 0,
    skip_unmeasurable: bool | None = None,
    speaker_folds: int = SPEAKER_FOLDS,
) -> TaskPlan:
    """The tasks of ``spec`` (``None`` or ``"all"``: every task; a name or a comma list) built
    over ``manifest``, skipping those the corpus cannot measure (:class:`NotMeasurableError`)
    when ``skip_unmeasurable`` — by default when ``spec`` asks for every task, so a bare command
    fits what it can while a task named on purpose fails with the reason. The emotion task is
    never skipped, and a plan left with no task at all is an error."""
    spec = spec or "all"
    if skip_unmeasurable is None:
        skip_unmeasurable = spec.strip() == "all"
    tasks: list[Task] = []
    skipped: dict[str, str] = {}
    for name in parse_tasks(spec):
        try:
            tasks.append(build_task(name, manifest, seed=seed, speaker_folds=speaker_folds))
        except NotMeasurableError as error:
            if not skip_unmeasurable:
                raise
            skipped[name] = error.reason
    if not tasks:
        reasons = "; ".join(f"{t}: {why}" for t, why in skipped.items())
        raise TaskError(f"no task of {spec!r} can be measured on this corpus ({reasons}).")
    return TaskPlan(tuple(tasks), skipped)


def speaker_splits(manifest: Manifest, *, num_folds: int = SPEAKER_FOLDS, seed: int = 0) -> Task:
    """Closed-set speaker identification: every speaker's utterances spread over every role.

    Each speaker's utterances are ordered by emotion (then randomly within an emotion, from
    ``seed``) and dealt round-robin into ``num_folds`` groups from a random start, so every
    group holds about ``1/num_folds`` of each speaker's utterances and of each speaker's
    emotions (stratified by speaker, then emotion). Fold ``k`` tests on group ``k``, selects
    the epoch on group ``k+1`` and trains on the rest — the same rotation as the corpus folds.
    Speakers with fewer than ``num_folds`` utterances cannot appear in every group and are
    excluded (listed in :attr:`Task.excluded`), as are clips of an ``unknown`` speaker.
    Fewer than two speakers left: :class:`NotMeasurableError`.
    """
    if num_folds < 3:
        raise TaskError(f"speaker folds must be >= 3 (train, dev and test), got {num_folds}.")
    by_speaker: dict[str, list[Utterance]] = {}
    excluded: dict[str, str] = {}
    for u in manifest.utterances:
        if u.speaker_known:
            by_speaker.setdefault(u.speaker, []).append(u)
        else:  # an unknown speaker is no class of a closed set
            excluded[u.id] = "speaker unknown"
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EA4]))
    groups: list[list[str]] = [[] for _ in range(num_folds)]
    kept: list[str] = []
    for speaker in sorted(by_speaker):
        utterances = by_speaker[speaker]
        if len(utterances) < num_folds:
            for u in utterances:
                excluded[u.id] = (
                    f"speaker {speaker!r} has {len(utterances)} utterance(s); "
                    f"needs >= {num_folds} to appear in every speaker fold"
                )
            continue
        kept.append(speaker)
        keys = rng.random(len(utterances))
        order = sorted(range(len(utterances)), key=lambda i: (utterances[i].emotion, keys[i]))
        start = int(rng.integers(num_folds))
        for position, index in enumerate(order):
            groups[(start + position) % num_folds].append(utterances[index].id)
    if len(kept) < 2:
        raise NotMeasurableError(
            "speaker",
            f"too few speakers ({len(kept)} known speaker(s) of the {manifest.corpus} manifest "
            f"with >= {num_folds} clips; speaker identification needs two)",
        )
    position_of = {u.id: i for i, u in enumerate(manifest.utterances)}
    groups = [sorted(g, key=position_of.__getitem__) for g in groups]  # manifest order
    splits = []
    for k in range(num_folds):
        dev = (k + 1) % num_folds
        train = tuple(i for j, g in enumerate(groups) if j not in (k, dev) for i in g)
        splits.append(Split(f"fold{k + 1}", train, tuple(groups[dev]), tuple(groups[k])))
    keep = set(kept)
    return Task(
        name="speaker",
        labels=tuple(kept),
        label_of={u.id: u.speaker for u in manifest.utterances if u.speaker in keep},
        splits=tuple(splits),
        scheme=(
            f"{num_folds} utterance folds stratified by speaker then emotion (seed {seed}); "
            "fold k: test = group k, dev = group k+1, train = rest"
        ),
        excluded=excluded,
    )


def select_splits(task: Task, folds: str | Sequence[str] | None) -> list[Split]:
    """Splits chosen by name or 1-based index (``"1,3"``, ``"fold2"``, ``["1", "fold3"]``).

    ``None`` or an empty string selects all folds.
    """
    names = [s.name for s in task.splits]
    chosen = select_names(
        folds, names, what="fold", context=f" for task {task.name!r}", error=TaskError
    )
    if not chosen:
        return list(task.splits)
    return [task.split(n) for n in chosen]
