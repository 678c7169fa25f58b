"""Device and seeding helpers: CPU and CUDA alike, deterministic given a seed."""

from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import torch

from trustser._validation import TrustSERError, check_choice

__all__ = ["DEVICE_CHOICES", "DeviceError", "derived_seed", "resolve_device", "seed_everything"]

DEVICE_CHOICES = ("auto", "cpu", "cuda")


class DeviceError(TrustSERError, RuntimeError):
    """The requested device is not available on this machine."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda:1`` style names pass through."""
    if isinstance(device, torch.device):
        return device
    base = device.split(":")[0]
    check_choice("device", base, DEVICE_CHOICES)
    if base == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if base == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            "device 'cuda' was requested but no CUDA GPU is visible; use --device cpu or auto."
        )
    return torch.device(device)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator for explicit use."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def derived_seed(seed: int, *parts: object) -> int:
    """A stable 63-bit seed per (seed, parts...), e.g. (seed, fold, method, SNR): a result does
    not depend on the order in which folds or settings are run."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1
