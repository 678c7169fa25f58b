"""How a head trains: float32 eagerly (the reference path, unchanged) or bfloat16.

The heads' estimators take ``precision`` (``auto``, ``fp32``, ``bf16``) and ``compile`` (a
bool). :func:`resolve_precision` turns them into a :class:`TrainingPrecision` for one *stage*
(the estimator that trains) on one device:

- ``fp32`` — the eager float32 step, bit for bit what the heads computed before a faster path
  existed (``tests/test_heads_precision.py`` checks it against a recorded fit);
- ``bf16`` — the layer mix read straight from the stored frames in one fused pass per
  direction (:mod:`trustser.heads.mixing`, compiled with ``torch.compile`` when ``compile``),
  the frame network's matrix products under bfloat16 autocast, pooling, classifier, loss and
  optimiser in float32. Predictions (dev selection and test) stay float32 eager: the saved head
  is an ordinary float32 head;
- ``auto`` — bfloat16 only on a device with fast bfloat16 matrix units (:func:`fast_bf16`) and
  only for a stage listed in :data:`AUTO_BF16`, the stages shown not to move results; float32
  everywhere else.

A stage without a bfloat16 path (fine-tuned blocks), or features streamed from disk (the
bfloat16 path reads features held in RAM), train in float32 whatever was asked; features
computed on the fly (erased ones, say) rather than stored rows train in bfloat16 without the
compiled mix. Each says so: every fit
records the requested and resolved precision, whether the mix was compiled and whether the
device has fast bfloat16 (:meth:`TrainingPrecision.record`), in ``head.json``, the task's
``config.json`` and ``metrics.json``; the profile shows it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from trustser._validation import check_choice

__all__ = [
    "AUTO_BF16",
    "BF16_STAGES",
    "PRECISIONS",
    "TrainingPrecision",
    "fast_bf16",
    "keyed_settings",
    "precision_label",
    "resolve_precision",
]

PRECISIONS = ("auto", "fp32", "bf16")

#: The stages that have a bfloat16 path, and what each trains.
BF16_STAGES: Mapping[str, str] = {
    "heads": "the head trained from features held in RAM (HeadClassifier)",
    "mitigated": "the emotion head trained with a mitigation in its loss (MitigatedHeadClassifier)",
}

#: The stages where ``auto`` trains in bfloat16 (on a device with fast bfloat16), each with the
#: evidence that bfloat16 leaves its results unchanged. Empty until the EmoDB equivalence
#: evidence is in, so ``auto`` is float32 everywhere; after it, one entry switches a stage on,
#: e.g. ``"heads": "EmoDB, 5 folds: test UAR within ... of float32 (docs/benchmarks.md)"``.
AUTO_BF16: dict[str, str] = {}

# CPU feature flags (Linux /proc/cpuinfo) that give bfloat16 matrix products in hardware.
_CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@dataclass(frozen=True)
class TrainingPrecision:
    """What one fit trains with, and why."""

    stage: str
    requested: str  # "auto", "fp32" or "bf16"
    precision: str  # resolved: "fp32" or "bf16"
    compile_requested: bool
    compiled: bool  # the bf16 path's layer mix compiled (False after a failed compile)
    fast_bf16: bool  # the device has bfloat16 matrix units
    device: str
    reason: str

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"

    @property
    def key(self) -> str | None:
        """What the training path adds to a fold's resume key: None for the float32 path (so
        ``auto`` and ``fp32`` resolving to it share the results they both compute)."""
        if not self.bf16:
            return None
        return f"bf16{'+compile' if self.compile_requested else ''}@{self.device}"

    def fell_back(self, why: str) -> TrainingPrecision:
        """The same, its layer mix run eagerly because compiling failed (``why``)."""
        return replace(self, compiled=False, reason=f"{self.reason}; compile failed: {why}")

    def record(self) -> dict[str, Any]:
        """The provenance entry (JSON-ready)."""
        return asdict(self)


def keyed_settings(settings: Mapping[str, Any], training_path: str | None) -> dict[str, Any]:
    """``settings`` as a resume key sees them: ``precision`` and ``compile`` replaced by the
    training path they resolve to (:attr:`TrainingPrecision.key`), and by nothing for float32 —
    ``auto`` and ``fp32`` compute the same, and runs made before these settings existed resume."""
    kept = {k: v for k, v in settings.items() if k not in ("precision", "compile")}
    return kept if training_path is None else {**kept, "training_path": training_path}


def precision_label(record: Mapping[str, Any] | None) -> str | None:
    """A short text of a recorded precision: ``fp32``, ``bf16 (compiled)`` or ``bf16 (eager)``."""
    if not record:
        return None
    if record.get("precision") != "bf16":
        return "fp32"
    return f"bf16 ({'compiled' if record.get('compiled') else 'eager'})"


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.split(":")[0].strip() in ("flags", "Features"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices in hardware: a CUDA GPU with native
    bfloat16 (compute capability 8.0 and up), a CPU with AVX512-BF16, AMX or Arm BF16."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type == "cpu":
        return bool(_cpu_flags() & _CPU_BF16_FLAGS)
    return False


def resolve_precision(
    requested: str,
    device: torch.device,
    stage: str,
    *,
    compile: bool = True,
    in_memory: bool = True,
    stored_rows: bool = True,
) -> TrainingPrecision:
    """The precision ``stage`` trains with on ``device`` for ``requested`` (module docstring).

    ``in_memory``: the training features are held in RAM in unpadded batches (the bfloat16
    path's input); ``stored_rows``: as stored rows the compiled mix can read through an index.
    """
    check_choice("precision", requested, PRECISIONS)
    fast = fast_bf16(device)
    if requested == "fp32":
        precision, reason = "fp32", "requested"
    elif stage not in BF16_STAGES:
        precision, reason = "fp32", f"the {stage} stage has no bfloat16 path"
    elif not in_memory:
        precision = "fp32"
        reason = "features streamed from disk (the bfloat16 path reads features held in RAM)"
    elif requested == "bf16":
        precision = "bf16"
        reason = "requested" if fast else "requested (no bfloat16 units: slower than float32)"
    elif stage not in AUTO_BF16:
        precision = "fp32"
        reason = f"auto: bfloat16 not yet shown to leave the {stage} stage's results unchanged"
    elif not fast:
        precision, reason = "fp32", f"auto: no fast bfloat16 on {device.type}"
    else:
        precision, reason = "bf16", f"auto: {AUTO_BF16[stage]}"
    compiled = precision == "bf16" and bool(compile)
    if compiled and not stored_rows:
        compiled = False
        reason += "; features computed on the fly, not stored rows: the layer mix runs eagerly"
    return TrainingPrecision(
        stage=stage,
        requested=requested,
        precision=precision,
        compile_requested=bool(compile),
        compiled=compiled,
        fast_bf16=fast,
        device=device.type,
        reason=reason,
    )
