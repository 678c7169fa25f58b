"""The one results layout every stage after extraction shares.

::

    runs/                                  (--runs DIR)
      <backbone>/
        emotion/ | gender/ | speaker/      heads: config.json, metrics.json, predictions.csv,
          <fold>/head.safetensors (+ .json); or not_measurable.json: why the corpus cannot
          support the task (one gender, too few speakers), written when a bare command skips it
        probe/                             linear probes on time-means: metrics.json
        attack-<method>-<snr>/             summary.json (asr_mean ...), clips.csv, audio/
        verification/[<emotion>/]          speaker verification: metrics.json, trials.csv
        robustness/                        corrupted test clips: summary.json, clips.csv
        cost.json                          parameters, FLOPs/MACs, latency
      <backbone>@<tag>/                    a *variant* of the backbone: a model of its own with
                                           the same layout (e.g. ``@top1``: its top encoder block
                                           fine-tuned with the emotion head; emotion/<fold>/
                                           also holds top_blocks.safetensors + .json)

``attack`` finds the heads and ``profile`` finds everything through this module alone.

Variants: ``<base>@<tag>`` names a model derived from the backbone ``<base>`` (the store group
whose features it starts from). A tag is a *kind*'s word followed by its parameters, e.g.
``top1`` (kind ``top``: the top 1 block fine-tuned); :func:`variant_words` lists the words this
version knows, so ``hf:org/model@main`` (a revision, not a kind) stays a base name. Its directory
is ``safe_name(base) + "@" + tag``. :class:`ModelName` splits and builds these names; what a tag
means is its kind's, in :mod:`trustser.variants`.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustser._validation import safe_name
from trustser.metrics._common import mean_std

__all__ = [
    "ATTACK_METHODS",
    "DEFAULT_RUNS",
    "FOLD_STD",
    "NOT_MEASURABLE_FILE",
    "TASKS",
    "VARIANT_SEPARATOR",
    "ModelName",
    "RunLayout",
    "fold_means",
    "forget_variant_word",
    "format_snr",
    "inherit_privacy_runs",
    "jsonable",
    "read_json",
    "record_not_measurable",
    "register_variant_word",
    "safe_name",
    "task_metrics",
    "variant_words",
    "write_json",
    "write_predictions",
]

TASKS = ("emotion", "gender", "speaker")
ATTACK_METHODS = ("fgsm", "pgd", "noise")
DEFAULT_RUNS = "runs"


VARIANT_SEPARATOR = "@"
# The results layout's vocabulary of variant kinds: a tag's leading word. The layout needs only
# the word to split ``base@tag`` into a base and a tag without loading any model; everything
# else about a kind (its tag grammar, how it is fitted, deployed, attacked and costed) is its
# module in :mod:`trustser.variants`, whose registry must name the same words (a test checks).
_VARIANT_WORDS: list[str] = ["top", "privacy", "fair", "smooth", "erase"]
_TAG = re.compile(r"^(?P<kind>[a-z]+)(?P<rest>[A-Za-z0-9._-]*)$")


def variant_words() -> tuple[str, ...]:
    """The kind words the layout splits ``base@tag`` on."""
    return tuple(_VARIANT_WORDS)


def register_variant_word(word: str) -> None:
    """Teach the layout a new kind's word (:func:`trustser.variants.register` calls this)."""
    if not re.fullmatch(r"[a-z]+", word):
        raise ValueError(f"a variant kind's word is lower-case letters, got {word!r}.")
    if word not in _VARIANT_WORDS:
        _VARIANT_WORDS.append(word)


def forget_variant_word(word: str) -> None:
    """Undo :func:`register_variant_word` (a kind registered for a while, in a test)."""
    if word in _VARIANT_WORDS:
        _VARIANT_WORDS.remove(word)


@dataclass(frozen=True)
class ModelName:
    """A model of the results layout: a base backbone, or a variant of one (``base@tag``).

    ``ModelName.parse("whisper_tiny_en_offline@top1")`` → base ``whisper_tiny_en_offline``,
    tag ``top1``; ``str()`` gives the name back. A name whose part after the last ``@`` does
    not start with a known kind's word (:func:`variant_words`) is a base name as a whole. What
    a tag's parameters mean is its kind's (:func:`trustser.variants.parse`).
    """

    base: str
    tag: str | None = None

    def __post_init__(self) -> None:
        if not self.base:
            raise ValueError("a model name needs a base backbone name.")
        if self.tag is not None:
            match = _TAG.match(self.tag)
            if match is None or match["kind"] not in _VARIANT_WORDS:
                raise ValueError(
                    f"variant tag {self.tag!r} is not of a known kind; tags start with one of: "
                    f"{', '.join(_VARIANT_WORDS)} (`trustser variants` lists them)."
                )

    @classmethod
    def parse(cls, name: str) -> ModelName:
        base, separator, tag = str(name).rpartition(VARIANT_SEPARATOR)
        match = _TAG.match(tag) if separator and base else None
        if match is None or match["kind"] not in _VARIANT_WORDS:
            return cls(str(name))
        return cls(base, tag)

    def __str__(self) -> str:
        return self.base if self.tag is None else f"{self.base}{VARIANT_SEPARATOR}{self.tag}"

    @property
    def is_variant(self) -> bool:
        return self.tag is not None

    @property
    def kind(self) -> str | None:
        """The tag's kind word (``top`` for ``top1``), None for a base backbone."""
        return None if self.tag is None else _TAG.match(self.tag)["kind"]

    @property
    def directory(self) -> str:
        """The directory name under the results root."""
        name = safe_name(self.base)
        return name if self.tag is None else f"{name}{VARIANT_SEPARATOR}{self.tag}"


def format_snr(snr: float) -> str:
    """``45.0`` → ``45``, ``37.5`` → ``37.5``: the SNR as written in directory names."""
    return f"{float(snr):g}"


@dataclass(frozen=True)
class RunLayout:
    root: Path = Path(DEFAULT_RUNS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def backbone_dir(self, backbone: str) -> Path:
        """``root/<safe name>``; a variant ``base@tag`` gets ``root/<safe base>@<tag>``."""
        return self.root / ModelName.parse(backbone).directory

    def backbones(self) -> list[str]:
        """Backbone directory names present under the root."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def variants(self, backbone: str) -> list[str]:
        """Directory names of the variants of ``backbone`` present under the root."""
        base = ModelName.parse(backbone)
        if base.is_variant:
            return []
        prefix = base.directory + VARIANT_SEPARATOR
        return [
            name
            for name in self.backbones()
            if name.startswith(prefix) and ModelName.parse(name).directory == name
        ]

    def head_dir(self, backbone: str, task: str) -> Path:
        if task not in TASKS:
            raise ValueError(f"task={task!r} is not one of {', '.join(TASKS)}")
        return self.backbone_dir(backbone) / task

    def head_path(self, backbone: str, task: str, fold: str) -> Path:
        return self.head_dir(backbone, task) / fold / "head.safetensors"

    def not_measurable_path(self, backbone: str, task: str) -> Path:
        """Why ``task`` cannot be measured on the corpus (written instead of its run)."""
        return self.head_dir(backbone, task) / NOT_MEASURABLE_FILE

    def task_done(self, backbone: str, task: str) -> Path:
        """The file that says ``task`` is done: its ``metrics.json``, or the record that the
        corpus cannot measure it (what a resumable stage checks for)."""
        marker = self.not_measurable_path(backbone, task)
        return marker if marker.is_file() else self.head_dir(backbone, task) / "metrics.json"

    def probe_dir(self, backbone: str) -> Path:
        return self.backbone_dir(backbone) / "probe"

    def attack_dir(self, backbone: str, method: str, snr: float) -> Path:
        if method not in ATTACK_METHODS:
            raise ValueError(f"method={method!r} is not one of {', '.join(ATTACK_METHODS)}")
        return self.backbone_dir(backbone) / f"attack-{method}-{format_snr(snr)}"

    def attack_dirs(self, backbone: str) -> list[Path]:
        base = self.backbone_dir(backbone)
        return sorted(base.glob("attack-*")) if base.is_dir() else []

    def cost_path(self, backbone: str) -> Path:
        return self.backbone_dir(backbone) / "cost.json"

    def verification_dir(self, backbone: str, emotion: str | None = None) -> Path:
        """Speaker verification on unseen speakers: ``<model>/verification/`` (every clip) or
        ``<model>/verification/<emotion>/`` (trials of one emotion label)."""
        base = self.backbone_dir(backbone) / "verification"
        return base if emotion is None else base / safe_name(emotion)

    def robustness_dir(self, backbone: str) -> Path:
        """Robustness to corrupted test clips (``trustser robustness``): ``<model>/robustness/``
        with ``summary.json`` and ``clips.csv``."""
        return self.backbone_dir(backbone) / "robustness"

    def top_blocks_path(self, backbone: str, fold: str) -> Path:
        """A fine-tuned variant's trained top blocks of ``fold`` (beside its emotion head)."""
        return self.head_dir(backbone, "emotion") / fold / "top_blocks.safetensors"


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON atomically (temp file + rename) so a crash never leaves half a result."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=jsonable) + "\n")
    os.replace(tmp, path)
    return path


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def jsonable(value: Any) -> Any:
    """``json.dumps(..., default=jsonable)``: numpy scalars and arrays, and paths, as JSON."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


NOT_MEASURABLE_FILE = "not_measurable.json"


def record_not_measurable(
    layout: RunLayout, model: str, task: str, reason: str | None
) -> Path | None:
    """Record why ``task`` cannot be measured for ``model`` (``reason``), or with ``None`` drop
    the record of an earlier run (the task was measured since); returns the record's path."""
    path = layout.not_measurable_path(model, task)
    if reason is None:
        path.unlink(missing_ok=True)
        return None
    return write_json(path, {"task": task, "model": model, "reason": reason})


FOLD_STD = "population standard deviation over folds (ddof=0)"
PREDICTION_COLUMNS = ("id", "fold", "speaker", "gender", "true", "pred")


def write_predictions(
    path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], labels: Sequence[str]
) -> Path:
    """``predictions.csv``: one row per test clip (id, fold, speaker, gender, true, pred,
    prob_<label>...), floats to 8 significant digits, written atomically. Every stage that
    classifies test clips writes this file; the profile's performance and fairness axes and
    their intervals read it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [*PREDICTION_COLUMNS, *(f"prob_{label}" for label in labels)]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (f"{v:.8g}" if isinstance(v, float) else v) for k, v in row.items()}
            )
    os.replace(tmp, path)
    return path


def fold_means(
    folds: Sequence[Mapping[str, Any]],
    roles: Sequence[str] = ("test",),
    keys: Sequence[str] = ("uar", "accuracy", "macro_f1"),
) -> dict[str, float | None]:
    """``<role>_<key>_mean`` / ``_std`` over the folds' ``<role>_<key>`` figures."""
    out: dict[str, float | None] = {}
    for role in roles:
        for key in keys:
            mean, std = mean_std([f[f"{role}_{key}"] for f in folds])
            out[f"{role}_{key}_mean"], out[f"{role}_{key}_std"] = mean, std
    return out


def task_metrics(
    task: str,
    backbone: str,
    labels: Sequence[str],
    folds: Sequence[Mapping[str, Any]],
    *,
    roles: Sequence[str] = ("test",),
) -> dict[str, Any]:
    """The common part of a task's ``metrics.json``: what was classified, the per-fold records
    and their means (:func:`fold_means`); stages add what is theirs (history, variant, ...)."""
    return {
        "task": task,
        "backbone": backbone,
        "labels": list(labels),
        "num_folds": len(folds),
        "std": FOLD_STD,
        **fold_means(folds, roles),
        "folds": list(folds),
    }


def inherit_privacy_runs(layout: RunLayout, base: str, variant: str) -> list[str]:
    """Copy the base's gender, speaker and probe runs into ``variant`` (a variant that exposes
    its base's representation): every result file of each part — ``metrics.json``,
    ``config.json``, the per-clip ``predictions.csv`` and the probes' ``predictions-<task>.csv``
    (the privacy axis's interval is bootstrapped from them) — each ``metrics.json`` marked
    ``inherited_from``; files of an earlier copy the base no longer has are removed. Returns the
    parts copied."""
    copied = []
    for part in ("gender", "speaker", "probe"):
        source = layout.backbone_dir(base) / part
        target = layout.backbone_dir(variant) / part
        if (
            source / NOT_MEASURABLE_FILE
        ).is_file():  # the corpus cannot measure it: nor can the variant
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / NOT_MEASURABLE_FILE, target / NOT_MEASURABLE_FILE)
            copied.append(part)
            continue
        if not (source / "metrics.json").is_file():
            continue
        target.mkdir(parents=True, exist_ok=True)
        wanted = {p.name for p in source.iterdir() if p.is_file() and _is_result_file(p.name)}
        for stale in target.iterdir():
            if stale.is_file() and _is_result_file(stale.name) and stale.name not in wanted:
                stale.unlink()
        for name in sorted(wanted):
            shutil.copyfile(source / name, target / name)
        metrics = read_json(target / "metrics.json")
        metrics["inherited_from"] = base
        metrics["inherited_why"] = "the variant exposes the same representation as its base"
        write_json(target / "metrics.json", metrics)
        copied.append(part)
    return copied


def _is_result_file(name: str) -> bool:
    """A stage's result file of a task or probe directory (not a temporary or a fold's folder)."""
    return name.endswith((".json", ".csv")) and not name.endswith(".tmp")
