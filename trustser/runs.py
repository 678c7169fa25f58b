"""The one results layout every stage after extraction shares.

::

    runs/                                  (--runs DIR)
      <backbone>/
        emotion/ | gender/ | speaker/      heads: config.json, metrics.json, predictions.csv,
          <fold>/head.safetensors (+ .json)
        probe/                             linear probes on time-means: metrics.json
        attack-<method>-<snr>/             summary.json (asr_mean ...), clips.csv, audio/
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
    "FINETUNE_KIND",
    "TASKS",
    "VARIANT_KINDS",
    "VARIANT_SEPARATOR",
    "ModelName",
    "RunLayout",
    "finetune_variant",
    "format_snr",
    "jsonable",
    "read_json",
    "safe_name",
    "write_json",
]

TASKS = ("emotion", "gender", "speaker")
ATTACK_METHODS = ("fgsm", "pgd", "noise")
DEFAULT_RUNS = "runs"


VARIANT_SEPARATOR = "@"
FINETUNE_KIND = "top"
# Variant kinds: what a tag's leading word means. A new kind of variant (a mitigation, say
# ``privacy-l0.3``) registers its word here so that names carrying it parse as variants.
VARIANT_KINDS: dict[str, str] = {
    FINETUNE_KIND: "top K encoder blocks fine-tuned jointly with the emotion head (topK)",
}
_TAG = re.compile(r"^(?P<kind>[a-z]+)(?P<rest>[A-Za-z0-9._-]*)$")
_FINETUNE_TAG = re.compile(rf"^{FINETUNE_KIND}(?P<k>[1-9][0-9]*)$")


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
            if match["kind"] == FINETUNE_KIND and not _FINETUNE_TAG.match(self.tag):
                raise ValueError(
                    f"variant tag {self.tag!r}: a fine-tuned variant is {FINETUNE_KIND}<K> with "
                    f"K >= 1 top blocks (e.g. {FINETUNE_KIND}1)."
                )

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
    def directory(self) -> str:
        """The directory name under the results root."""
        name = safe_name(self.base)
        return name if self.tag is None else f"{name}{VARIANT_SEPARATOR}{self.tag}"


def finetune_variant(base: str, k: int) -> str:
    """The name of ``base`` with its top ``k`` blocks fine-tuned: ``base@top<k>``."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"a fine-tuned variant needs K >= 1 top blocks, got {k!r}.")
    return str(ModelName(str(ModelName.parse(base).base), f"{FINETUNE_KIND}{k}"))


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
