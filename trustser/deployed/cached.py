"""A fold's deployed model run from the store's cached hidden states instead of the waveform.

The store holds every hidden state the frozen backbone computed, so whatever a deployed model
does *after* the backbone can run on them: the emotion head (:func:`head_on_cache`), a
variant's fine-tuned top blocks followed by its head, offsets added to the head's output. A
:class:`CachedPath` is that function for one fold, and says in words what it runs; what a
variant changes in it is the variant's (``trustser.variants.VariantKind.cached_path``). A
variant whose inference path needs the waveform (noise added before the backbone) has none
and runs end to end (:mod:`trustser.deployed.loading`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["HEAD_ON_CACHE", "CachedLogits", "CachedPath", "head_on_cache"]

# logits(hidden [B, L, T, D] float32, mask [B, T] bool, genders [B]) -> [B, C]
CachedLogits = Callable[[torch.Tensor, torch.Tensor, Sequence[str]], torch.Tensor]

HEAD_ON_CACHE = "the emotion head on the cached hidden states"


@dataclass(frozen=True)
class CachedPath:
    """How one fold of a deployed model classifies clips from their cached hidden states:
    ``logits(hidden, mask, genders)`` (the clips' genders, for a model that needs them at
    inference) and ``description``, what it runs."""

    logits: CachedLogits
    description: str

    def __call__(
        self, hidden: torch.Tensor, mask: torch.Tensor, genders: Sequence[str]
    ) -> torch.Tensor:
        with torch.no_grad():
            return self.logits(hidden, mask, genders)


def head_on_cache(head: nn.Module) -> CachedPath:
    """The emotion head alone on the cached hidden states: the deployed model of a backbone,
    and of every variant that changes only its head."""
    head.eval()
    return CachedPath(lambda hidden, mask, genders: head(hidden, mask), HEAD_ON_CACHE)
