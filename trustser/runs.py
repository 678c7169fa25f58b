"""The one results layout every stage after extraction shares.

::

    runs/                                  (--runs DIR)
      <backbone>/
        emotion/ | gender/ | speaker/      heads: config.json, metrics.json, predictions.csv,
          <fold>/head.safetensors (+ .json)
        probe/                             linear probes on time-means: metrics.json
        attack-<method>-<snr>/             summary.json (asr_mean ...), clips.csv, audio/
        verification/[<emotion>/]          speaker verification: metrics.json, trials.csv
        cost.json                          parameters, FLOPs/MACs, latency
      <backbone>@<tag>/                    a *variant* of the backbone: a model of its own with
                                           the same layout (e.g. ``@top1``: its top encoder block
                                           fine-tuned with the emotion head; emotion/<fold>/
                                           also holds top_blocks.safetensors + .json)

``attack`` finds the heads and ``profile`` finds everything through this module alone.

Variants: ``<base>@<tag>`` names a model derived from the backbone ``<base>`` (the store group
whose features it starts from). A tag is a *kind* followed by its parameters, e.g. ``top1``
(kind ``top``: the top 1 block fine-tuned); :data:`VARIANT_KINDS` lists the kinds this version
knows, so ``hf:org/model@main`` (a revision, not a kind) stays a base name. Its directory is
``safe_name(base) + "@" + tag``. :class:`ModelName` parses and builds these names.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustser._validation import safe_name

__all__ = [
    "ATTACK_METHODS",
    "DEFAULT_RUNS",
    "FAIRNESS_KIND",
    "FAIRNESS_METHODS",
    "FINETUNE_KIND",
    "PRIVACY_KIND",
    "SMOOTHING_KIND",
    "TASKS",
    "VARIANT_KINDS",
    "VARIANT_SEPARATOR",
    "ModelName",
    "RunLayout",
    "fairness_variant",
    "finetune_variant",
    "format_snr",
    "jsonable",
    "privacy_variant",
    "read_json",
    "safe_name",
    "smoothing_variant",
    "write_json",
]

TASKS = ("emotion", "gender", "speaker")
ATTACK_METHODS = ("fgsm", "pgd", "noise")
DEFAULT_RUNS = "runs"


VARIANT_SEPARATOR = "@"
FINETUNE_KIND = "top"
PRIVACY_KIND = "privacy"
FAIRNESS_KIND = "fair"
SMOOTHING_KIND = "smooth"
FAIRNESS_METHODS = ("post", "reweight")
# Variant kinds: what a tag's leading word means. A new kind of variant registers its word here
# so that names carrying it parse as variants (the mitigations: docs/mitigations.md).
VARIANT_KINDS: dict[str, str] = {
    FINETUNE_KIND: "top K encoder blocks fine-tuned jointly with the emotion head (topK)",
    PRIVACY_KIND: "emotion head trained against a gender adversary with weight λ (privacy-l<λ>)",
    FAIRNESS_KIND: "per-gender logit offsets (fair-post) or gender × class reweighting "
    "(fair-reweight)",
    SMOOTHING_KIND: "randomized smoothing over N noisy copies at SNR s (smooth-s<s>-n<N>)",
}
_TAG = re.compile(r"^(?P<kind>[a-z]+)(?P<rest>[A-Za-z0-9._-]*)$")
_FINETUNE_TAG = re.compile(rf"^{FINETUNE_KIND}(?P<k>[1-9][0-9]*)$")
_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
_PRIVACY_TAG = re.compile(rf"^{PRIVACY_KIND}-l(?P<lam>{_NUMBER})$")
_FAIRNESS_TAG = re.compile(rf"^{FAIRNESS_KIND}-(?P<method>{'|'.join(FAIRNESS_METHODS)})$")
_SMOOTHING_TAG = re.compile(rf"^{SMOOTHING_KIND}-s(?P<snr>{_NUMBER})-n(?P<n>[1-9][0-9]*)$")
_TAG_FORMS = {
    FINETUNE_KIND: (_FINETUNE_TAG, f"{FINETUNE_KIND}<K> with K >= 1 top blocks (e.g. top1)"),
    PRIVACY_KIND: (_PRIVACY_TAG, "privacy-l<λ> with λ >= 0 (e.g. privacy-l0.3)"),
    FAIRNESS_KIND: (_FAIRNESS_TAG, "fair-post or fair-reweight"),
    SMOOTHING_KIND: (_SMOOTHING_TAG, "smooth-s<SNR dB>-n<N copies> (e.g. smooth-s30-n8)"),
}


@dataclass(frozen=True)
class ModelName:
    """A model of the results layout: a base backbone, or a variant of one (``base@tag``).

    ``ModelName.parse("whisper_tiny_en_offline@top1")`` → base ``whisper_tiny_en_offline``,
    tag ``top1``; ``str()`` gives the name back. A name whose part after the last ``@`` is not
    a tag of a known kind (:data:`VARIANT_KINDS`) is a base name as a whole.
    """

    base: str
    tag: str | None = None

    def __post_init__(self) -> None:
        if not self.base:
            raise ValueError("a model name needs a base backbone name.")
        if self.tag is not None:
            match = _TAG.match(self.tag)
            if match is None or match["kind"] not in VARIANT_KINDS:
                kinds = ", ".join(f"{k} ({v})" for k, v in VARIANT_KINDS.items())
                raise ValueError(
                    f"variant tag {self.tag!r} is not of a known kind; tags start with one of: "
                    f"{kinds}."
                )
            pattern, form = _TAG_FORMS[match["kind"]]
            if not pattern.match(self.tag):
                raise ValueError(f"variant tag {self.tag!r}: a {match['kind']} variant is {form}.")

    @classmethod
    def parse(cls, name: str) -> ModelName:
        base, separator, tag = str(name).rpartition(VARIANT_SEPARATOR)
        match = _TAG.match(tag) if separator and base else None
        if match is None or match["kind"] not in VARIANT_KINDS:
            return cls(str(name))
        return cls(base, tag)

    def __str__(self) -> str:
        return self.base if self.tag is None else f"{self.base}{VARIANT_SEPARATOR}{self.tag}"

    @property
    def is_variant(self) -> bool:
        return self.tag is not None

    @property
    def kind(self) -> str | None:
        """The tag's kind (``top`` for ``top1``), None for a base backbone."""
        return None if self.tag is None else _TAG.match(self.tag)["kind"]

    @property
    def finetune_top(self) -> int:
        """K of a fine-tuned ``topK`` variant; 0 for a base backbone or another kind."""
        match = _FINETUNE_TAG.match(self.tag or "")
        return int(match["k"]) if match else 0

    @property
    def privacy_lambda(self) -> float | None:
        """λ of a ``privacy-l<λ>`` variant (the adversary's weight); None otherwise."""
        match = _PRIVACY_TAG.match(self.tag or "")
        return float(match["lam"]) if match else None

    @property
    def fairness_method(self) -> str | None:
        """``post`` or ``reweight`` for a ``fair-<method>`` variant; None otherwise."""
        match = _FAIRNESS_TAG.match(self.tag or "")
        return match["method"] if match else None

    @property
    def smoothing(self) -> tuple[float, int] | None:
        """``(snr_db, samples)`` of a ``smooth-s<snr>-n<N>`` variant; None otherwise."""
        match = _SMOOTHING_TAG.match(self.tag or "")
        return (float(match["snr"]), int(match["n"])) if match else None

    @property
    def directory(self) -> str:
        """The directory name under the results root."""
        name = safe_name(self.base)
        return name if self.tag is None else f"{name}{VARIANT_SEPARATOR}{self.tag}"


def finetune_variant(base: str, k: int) -> str:
    """The name of ``base`` with its top ``k`` blocks fine-tuned: ``base@top<k>``."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"a fine-tuned variant needs K >= 1 top blocks, got {k!r}.")
    return str(ModelName(str(ModelName.parse(base).base), f"{FINETUNE_KIND}{k}"))


def privacy_variant(base: str, lam: float) -> str:
    """``base@privacy-l<λ>``: the head trained against a gender adversary of weight ``lam``."""
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0:
        raise ValueError(f"the adversary weight λ must be a number >= 0, got {lam!r}.")
    return str(ModelName(str(ModelName.parse(base).base), f"{PRIVACY_KIND}-l{float(lam):g}"))


def fairness_variant(base: str, method: str) -> str:
    """``base@fair-post`` or ``base@fair-reweight``."""
    if method not in FAIRNESS_METHODS:
        raise ValueError(f"fairness method {method!r} is not one of {', '.join(FAIRNESS_METHODS)}.")
    return str(ModelName(str(ModelName.parse(base).base), f"{FAIRNESS_KIND}-{method}"))


def smoothing_variant(base: str, snr_db: float, samples: int) -> str:
    """``base@smooth-s<snr>-n<samples>``: randomized smoothing of the base's emotion heads."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"smoothing needs samples >= 1 noisy copies, got {samples!r}.")
    if isinstance(snr_db, bool) or not isinstance(snr_db, (int, float)) or not snr_db >= 0:
        raise ValueError(f"the smoothing noise SNR must be a number >= 0 dB, got {snr_db!r}.")
    tag = f"{SMOOTHING_KIND}-s{float(snr_db):g}-n{samples}"
    return str(ModelName(str(ModelName.parse(base).base), tag))


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
