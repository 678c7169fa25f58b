"""The top K encoder blocks of a backbone as a trainable module fed from the embedding cache.

A store keeps every hidden state, so the input of the top K blocks is already on disk: store
layer ``L − 1 − K`` (``L`` = hidden states the backbone returns). :class:`TopBlocks` holds deep
copies of those K blocks (plus the family's final norm where the store's last layer has it) and
recomputes the K hidden states above its input exactly as the backbone's own forward does; the
blocks below are never run. Fine-tuning trains these copies, never the loaded backbone.

* ``backbone.top_blocks(k) -> TopBlocks``; ``top(hidden_in [B, T, D], mask [B, T]) ->
  [B, K, T, D]``: store layers ``L − K … L − 1`` (zero past each clip's length).
* ``top.state_dict()`` holds only the trained tensors (names relative to the module);
  ``backbone.load_top_blocks(state)`` writes them into a full backbone (in place) and
  :func:`with_top_blocks` returns a copy of a backbone with them swapped in, for end-to-end use
  (attacks). :func:`top_blocks_for_store` checks that a store group's features can feed them.

Per-family facts (trained tensors, final norms, WavLM's position bias, APC's GRUs, why Whisper's
30 s window is refused): docs/backbones.md, "Top blocks from the cache".
"""

from __future__ import annotations

import copy
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Protocol

import torch
from torch import nn

from trustser.backbones.errors import BackboneError

__all__ = [
    "TopBlocks",
    "TopBlocksError",
    "check_top_blocks_k",
    "copy_modules",
    "set_dropout",
    "top_blocks_for_store",
    "top_blocks_state_keys",
    "with_top_blocks",
]

_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")


class Backbone(Protocol):
    """What the functions here need of a :class:`trustser.backbones.base.Backbone`.

    Structural, so this module stays below ``base`` (which builds on it) in the import graph.
    """

    spec: Any
    num_layers: int

    def state_dict(self) -> dict[str, torch.Tensor]: ...

    def provenance(self) -> dict[str, Any]: ...

    def top_blocks(self, k: int) -> TopBlocks: ...

    def top_block_sources(self, k: int) -> dict[str, str]: ...

    def load_top_blocks(
        self, state: Mapping[str, torch.Tensor], *, k: int | None = None
    ) -> Backbone: ...


class TopBlocksError(BackboneError):
    """Top blocks that cannot be built, fed or loaded as asked (K, inputs, tensors, store)."""


def check_top_blocks_k(name: str, k: Any, num_layers: int) -> int:
    """``k`` as an int in ``[1, L − 1]`` (the store's input layer ``L − 1 − k`` must exist)."""
    if isinstance(k, bool) or not isinstance(k, int):
        raise TopBlocksError(f"{name}: the number of top blocks must be an integer, got {k!r}.")
    if not 1 <= k <= num_layers - 1:
        raise TopBlocksError(
            f"{name}: cannot take the top {k} blocks; this backbone returns {num_layers} hidden "
            f"states, so K must lie in [1, {num_layers - 1}] (the input is store layer L − 1 − K)."
        )
    return k


def copy_modules(*modules: Any) -> list[Any]:
    """Deep copies that share nothing with the originals (one memo, so shared configs stay shared).

    The copies train: every parameter requires gradients. transformers' output-capturing hooks
    are dropped from the copies (they only serve ``output_hidden_states`` of the full model).
    """
    copies = copy.deepcopy(list(modules))
    for item in copies:
        if isinstance(item, nn.Module):
            for module in item.modules():
                module._forward_hooks.clear()
            item.requires_grad_(True)
    return copies


def set_dropout(module: nn.Module, p: float) -> None:
    """Set every dropout probability inside ``module`` to ``p`` (``nn.Dropout`` modules and the
    float ``dropout`` / ``activation_dropout`` / ``attention_dropout`` attributes transformers'
    layers pass to functional dropout)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout must lie in [0, 1], got {p!r}.")
    for sub in module.modules():
        if isinstance(sub, nn.Dropout):
            sub.p = p
        for attr in ("dropout", "activation_dropout", "attention_dropout"):
            if isinstance(getattr(sub, attr, None), float):
                setattr(sub, attr, float(p))


class TopBlocks(nn.Module, ABC):
    """The top ``k`` blocks of a backbone: cached store layer ``L − 1 − k`` in, the ``k`` store
    layers above it out.

    Subclasses (one per family, next to the family's backbone) register the copied blocks as
    ``blocks`` (an ``nn.ModuleList``, bottom first) and, where the store's last layer has it,
    the final norm as ``final_norm``; ``sources`` maps those prefixes to the backbone's module
    names. Frozen helpers (WavLM's relative position embedding) are non-persistent buffers, so
    :meth:`state_dict` holds exactly the trained tensors. Built in eval mode; ``.train()`` turns
    on the checkpoint's own dropout (override with :meth:`set_dropout`). No LayerDrop, no
    SpecAugment.
    """

    family: str

    def __init__(
        self,
        *,
        k: int,
        num_layers: int,
        dim: int,
        backbone: str,
        sources: Mapping[str, str],
    ) -> None:
        super().__init__()
        self.k = k
        self.num_layers = num_layers  # L of the full backbone
        self.dim = dim
        self.backbone = backbone
        self.sources = dict(sources)

    @property
    def input_layer(self) -> int:
        """The store layer fed to :meth:`forward`: ``L − 1 − k``."""
        return self.num_layers - 1 - self.k

    @property
    def output_layers(self) -> range:
        """The store layers :meth:`forward` returns, in order: ``L − k … L − 1``."""
        return range(self.num_layers - self.k, self.num_layers)

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        return torch.device("cpu")

    def set_dropout(self, p: float) -> TopBlocks:
        """Use dropout probability ``p`` everywhere in the blocks (when in train mode)."""
        set_dropout(self, p)
        return self

    def num_trainable(self) -> int:
        """Trainable parameters (the tensors fine-tuning updates and saves)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def config(self) -> dict[str, Any]:
        """What a saved set of fine-tuned tensors needs beside them to be reloaded and checked."""
        return {
            "family": self.family,
            "backbone": self.backbone,
            "k": self.k,
            "num_layers": self.num_layers,
            "dim": self.dim,
            "input_layer": self.input_layer,
            "sources": dict(self.sources),
        }

    def extra_repr(self) -> str:
        return f"backbone={self.backbone!r}, k={self.k}, layers {self.input_layer} → {self.num_layers - 1}"

    def check_inputs(
        self, hidden_in: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Validate; return (float hidden on the module's device with zeros past each length,
        bool mask, int64 lengths on the CPU).

        The mask must mark a prefix of each row (real frames first, then padding), as every
        store batch does; padded input frames are zeroed so NaN or garbage there cannot leak.
        """
        name = self.backbone
        if not isinstance(hidden_in, torch.Tensor) or hidden_in.dim() != 3:
            shape = tuple(hidden_in.shape) if isinstance(hidden_in, torch.Tensor) else hidden_in
            raise TopBlocksError(
                f"{name} top {self.k} blocks: the input must be store layer {self.input_layer} "
                f"as a [B, T, D] tensor, got {shape!r}; take hidden[:, {self.input_layer}] of a "
                "[B, L, T, D] batch."
            )
        batch, steps, dim = hidden_in.shape
        if dim != self.dim:
            raise TopBlocksError(
                f"{name} top {self.k} blocks: the input has D = {dim}, the backbone {self.dim}."
            )
        if batch == 0 or steps == 0:
            raise TopBlocksError(
                f"{name} top {self.k} blocks: the batch is empty ({batch}×{steps})."
            )
        device = self.device
        if mask is None:
            mask = torch.ones(batch, steps, dtype=torch.bool, device=device)
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (batch, steps):
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else mask
            raise TopBlocksError(
                f"{name} top {self.k} blocks: the frame mask must be [B, T] = {[batch, steps]} "
                f"(True on real frames), got {shape!r}."
            )
        mask = mask.to(device=device).bool()
        lengths = mask.sum(dim=1)
        prefix = torch.arange(steps, device=device)[None, :] < lengths[:, None]
        if not bool(torch.equal(prefix, mask)):
            raise TopBlocksError(
                f"{name} top {self.k} blocks: the frame mask must mark each clip's real frames "
                "first and its padding after them (a prefix per row)."
            )
        if int(lengths.min()) < 1:
            raise TopBlocksError(f"{name} top {self.k} blocks: a clip in the batch has no frames.")
        dtype = next(self.parameters()).dtype
        hidden = hidden_in.to(device=device, dtype=dtype)
        hidden = torch.where(mask[:, :, None], hidden, torch.zeros((), dtype=dtype, device=device))
        return hidden, mask, lengths.to("cpu")

    def forward(self, hidden_in: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Store layers ``L − k … L − 1`` ``[B, k, T, D]`` from store layer ``L − 1 − k``
        ``[B, T, D]``; ``mask [B, T]`` is True on real frames (None: no padding)."""
        hidden, mask, lengths = self.check_inputs(hidden_in, mask)
        states = self.run_blocks(hidden, mask, lengths)
        out = torch.stack(states, dim=1)
        return torch.where(
            mask[:, None, :, None], out, torch.zeros((), dtype=out.dtype, device=out.device)
        )

    @abstractmethod
    def run_blocks(
        self, hidden: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor
    ) -> list[torch.Tensor]:
        """The k hidden states above ``hidden`` (``[B, T, D]`` each), as the backbone computes."""


def top_blocks_state_keys(
    backbone: Backbone, state: Mapping[str, torch.Tensor], *, k: int | None = None
) -> tuple[int, dict[str, torch.Tensor]]:
    """``(k, tensors)``: a :meth:`TopBlocks.state_dict` mapped onto the backbone's own tensor
    names, checked.

    ``k`` defaults to the number of ``blocks.<i>`` in ``state``; every trained tensor of the top
    ``k`` blocks must be present with the backbone's shape, and nothing else.
    """
    name = backbone.spec.name
    if not isinstance(state, Mapping) or not state:
        raise TopBlocksError(
            f"{name}: top-block tensors must be a non-empty name → tensor mapping."
        )
    indices = {int(m.group(1)) for key in state if (m := _BLOCK_KEY.match(key))}
    found = len(indices)
    if k is None:
        k = found
    if found != k or indices != set(range(found)):
        raise TopBlocksError(
            f"{name}: the tensors hold blocks {sorted(indices)} but K = {k} was asked; they were "
            "not saved from this backbone's top_blocks(K)."
        )
    sources = backbone.top_block_sources(check_top_blocks_k(name, k, backbone.num_layers))
    own = backbone.state_dict()
    expected: dict[str, str] = {}
    for local, target in sources.items():
        for key in own:
            if key.startswith(target + "."):
                expected[local + key[len(target) :]] = key
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise TopBlocksError(
            f"{name}: top-{k} tensors do not match this backbone: missing {missing[:5]}"
            f"{' …' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{' …' if len(unexpected) > 5 else ''}. Were they fine-tuned from another backbone?"
        )
    mapped = {}
    for local, key in expected.items():
        tensor = state[local]
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != tuple(own[key].shape):
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor)
            raise TopBlocksError(
                f"{name}: top-block tensor {local!r} has shape {shape}, the backbone's {key!r} "
                f"{tuple(own[key].shape)}."
            )
        mapped[key] = tensor
    return k, mapped


def with_top_blocks(
    backbone: Backbone,
    top_blocks: TopBlocks | Mapping[str, torch.Tensor],
    *,
    k: int | None = None,
) -> Backbone:
    """A frozen copy of ``backbone`` with fine-tuned top blocks swapped in (``backbone`` untouched).

    ``top_blocks`` is a :class:`TopBlocks` or its ``state_dict()``. The copy's forward from the
    waveform equals the cache path (store layers below + ``top_blocks``) on the same clip; its
    ``provenance()`` records ``top_blocks`` (K and the base weights' checksum), and its
    ``weights_sha256`` is that of the fine-tuned weights.
    """
    if isinstance(top_blocks, TopBlocks):
        if k is not None and k != top_blocks.k:
            raise TopBlocksError(f"k={k} was asked but the module holds {top_blocks.k} blocks.")
        k = top_blocks.k
        state: Mapping[str, torch.Tensor] = top_blocks.state_dict()
    else:
        state = top_blocks
    rebuilt = copy.deepcopy(backbone)
    return rebuilt.load_top_blocks(state, k=k)


def top_blocks_for_store(provenance: Mapping[str, Any], backbone: Backbone, k: int) -> TopBlocks:
    """Top ``k`` blocks of ``backbone`` to be fed from a store group with ``provenance``.

    Refuses features the blocks would not reproduce: another backbone or other weights, another
    L or D, and Whisper groups extracted with the 30 s window (their cache keeps only the clip's
    frames, while those blocks attend to the padded window too).
    """
    name = str(provenance.get("backbone"))
    window = provenance.get("window")
    if window is not None and window != "trimmed":
        raise TopBlocksError(
            f"store group of {name!r} was extracted with window={window!r}: its cache keeps only "
            "each clip's own frames, but in that window the encoder's blocks also attend to the "
            "padding up to 30 s, so top blocks fed from this cache would not be the same model. "
            f"Re-extract it with the trimmed window (`trustser extract --backbone {name} "
            "--window trimmed ...`, the default) into a new group to fine-tune from the cache."
        )
    mine = backbone.provenance()
    for key in ("backbone", "weights_sha256", "num_layers", "dim"):
        if key in provenance and provenance[key] != mine[key]:
            raise TopBlocksError(
                f"store group of {name!r} has {key}={provenance[key]!r} but the backbone loaded "
                f"now has {mine[key]!r}; its features did not come from these weights. Load the "
                "backbone the group was extracted with, or re-extract."
            )
    return backbone.top_blocks(k)
