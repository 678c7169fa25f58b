"""The one results layout every stage after extraction shares.

::

    runs/                                  (--runs DIR)
      <backbone>/
        emotion/ | gender/ | speaker/      heads: config.json, metrics.json, predictions.csv,
          <fold>/head.safetensors (+ .json)
        probe/                             linear probes on time-means: metrics.json
        attack-<method>-<snr>/             summary.json (asr_mean ...), clips.csv, audio/
        cost.json                          parameters, FLOPs/MACs, latency

``attack`` finds the heads and ``profile`` finds everything through this module alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustser._validation import safe_name

__all__ = [
    "ATTACK_METHODS",
    "DEFAULT_RUNS",
    "TASKS",
    "RunLayout",
    "format_snr",
    "jsonable",
    "read_json",
    "safe_name",
    "write_json",
]

TASKS = ("emotion", "gender", "speaker")
ATTACK_METHODS = ("fgsm", "pgd", "noise")
DEFAULT_RUNS = "runs"


def format_snr(snr: float) -> str:
    """``45.0`` → ``45``, ``37.5`` → ``37.5``: the SNR as written in directory names."""
    return f"{float(snr):g}"


@dataclass(frozen=True)
class RunLayout:
    root: Path = Path(DEFAULT_RUNS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def backbone_dir(self, backbone: str) -> Path:
        return self.root / safe_name(backbone)

    def backbones(self) -> list[str]:
        """Backbone directory names present under the root."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

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
