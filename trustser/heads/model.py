"""The paper's lightweight head over all encoder layers (with the hidden size it specifies).

softmax-weighted layer average → Conv1d(D→H, k=1) → ReLU → Conv1d(H→H, k=1) → pooling over the
real frames → Linear(H→H) → ReLU → Linear(H→C). The reference code ran it 256 wide by accident;
here ``hidden`` defaults to the paper's 128.

Optionally (``normalize=True``) each layer's features are standardised per dimension with
statistics of the training data (:meth:`LayerWeightedHead.set_normalization`) before they are
averaged. The statistics are buffers of the module, so the head still takes the backbone's raw
hidden states — for training from the cache and for attacks through the backbone alike.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from trustser._validation import check_choice, check_positive, check_probability
from trustser.runs import jsonable

__all__ = ["POOLINGS", "LayerWeightedHead", "load_head", "save_head", "save_module"]

POOLINGS = ("mean", "attention")


class LayerWeightedHead(nn.Module):
    """Classifier over every hidden state of a frozen encoder.

    Input ``hidden`` is ``[B, L, T, D]`` (the backbone's output layout) and ``mask`` ``[B, T]``
    marks real frames; padded frames never reach the pooled vector. :meth:`forward_packed`
    computes the same logits from frames packed without padding (``[L, F, D]`` plus the clip
    index of each frame), which is how training from the cache avoids work on padding.
    """

    def __init__(
        self,
        num_layers: int,
        dim: int,
        num_classes: int,
        *,
        hidden: int = 128,
        dropout: float = 0.0,
        pooling: str = "mean",
        normalize: bool = False,
    ) -> None:
        super().__init__()
        check_positive("num_layers", num_layers)
        check_positive("dim", dim)
        check_positive("num_classes", num_classes)
        check_positive("hidden", hidden)
        check_probability("dropout", dropout)
        check_choice("pooling", pooling, POOLINGS)
        self.num_layers, self.dim, self.num_classes = num_layers, dim, num_classes
        self.hidden, self.dropout_p, self.pooling = hidden, dropout, pooling
        self.normalize = bool(normalize)
        self.layer_logits = nn.Parameter(torch.zeros(num_layers))  # equal weights at start
        # Per-layer, per-dimension standardisation (identity until set_normalization).
        self.register_buffer("feature_mean", torch.zeros(num_layers, dim))
        self.register_buffer("feature_scale", torch.ones(num_layers, dim))
        self.frame_net = nn.Sequential(  # Conv1d with k=1, as the paper; applied as matmuls
            nn.Conv1d(dim, hidden, kernel_size=1),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Conv1d(hidden, hidden, kernel_size=1),
        )
        self.attention = nn.Linear(hidden, 1) if pooling == "attention" else None
        self.classifier = nn.Sequential(
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    @property
    def layer_weights(self) -> torch.Tensor:
        """Softmax weights over the L hidden states: which layers the task relies on."""
        return torch.softmax(self.layer_logits, dim=0)

    @torch.no_grad()
    def set_normalization(
        self, mean: torch.Tensor, std: torch.Tensor, *, eps: float = 1e-5
    ) -> None:
        """Standardise layer ``l``, dimension ``d`` as ``(h - mean[l, d]) / max(std[l, d], eps)``.

        Only used when the head was built with ``normalize=True``.
        """
        shape = (self.num_layers, self.dim)
        if tuple(mean.shape) != shape or tuple(std.shape) != shape:
            raise ValueError(
                f"normalisation statistics must be [L, D] = {list(shape)}, got mean "
                f"{list(mean.shape)} and std {list(std.shape)}."
            )
        self.feature_mean.copy_(mean.to(self.feature_mean))
        self.feature_scale.copy_(1.0 / std.to(self.feature_scale).clamp_min(eps))

    def _normalized(self, hidden: torch.Tensor, layer_axis: int) -> torch.Tensor:
        """Standardised features (a no-op unless ``normalize``); differentiable w.r.t. ``hidden``."""
        if not self.normalize:
            return hidden
        shape = [1] * hidden.dim()
        shape[layer_axis], shape[-1] = self.num_layers, self.dim
        mean = self.feature_mean.to(hidden.dtype).view(shape)
        return (hidden - mean) * self.feature_scale.to(hidden.dtype).view(shape)

    def _frame_net(self, mixed: torch.Tensor) -> torch.Tensor:
        """The two k=1 convolutions on ``[..., D]`` frames (as matmuls: same maths, faster)."""
        first, relu, dropout, second = self.frame_net
        x = F.linear(mixed, first.weight[..., 0], first.bias)
        return F.linear(dropout(relu(x)), second.weight[..., 0], second.bias)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if hidden.dim() != 4 or hidden.shape[1] != self.num_layers or hidden.shape[3] != self.dim:
            raise ValueError(
                f"expected hidden states [B, {self.num_layers}, T, {self.dim}], got {tuple(hidden.shape)}"
            )
        weights = self.layer_weights.to(hidden.dtype)
        mixed = (self._normalized(hidden, 1) * weights[None, :, None, None]).sum(1)  # [B, T, D]
        frames = self._frame_net(mixed)  # [B, T, H]
        mask = mask.to(frames.dtype).unsqueeze(-1)  # [B, T, 1]
        if self.attention is None:
            pooled = (frames * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        else:
            scores = self.attention(frames).masked_fill(mask == 0, float("-inf"))
            pooled = (torch.softmax(scores, dim=1) * frames).sum(1)
        return self.classifier(pooled)

    def forward_packed(
        self,
        frames: torch.Tensor,
        segments: torch.Tensor,
        num_segments: int,
        *,
        standardized: bool = False,
        compute_dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Logits ``[S, C]`` from the frames of ``S`` clips packed layer-major, ``[L, F, D]``,
        where ``segments[f]`` is the clip (0..S-1) of frame ``f``.

        Equal to :meth:`forward` on the padded batch, but with no work on padding, and the layer
        average is one matrix-vector product (its gradient another) on this layout.
        ``standardized=True`` says the frames were already standardised with this head's
        statistics (training standardises its data once instead of every batch).
        ``compute_dtype=torch.bfloat16`` runs the frame network's matrix products under
        bfloat16 autocast (the layer average, pooling and classifier stay float32); None is
        float32 throughout.
        """
        if frames.dim() != 3 or frames.shape[0] != self.num_layers or frames.shape[2] != self.dim:
            raise ValueError(
                f"expected packed frames [{self.num_layers}, F, {self.dim}], got {tuple(frames.shape)}"
            )
        x = (frames if standardized else self._normalized(frames, 0)).reshape(self.num_layers, -1)
        mixed = (self.layer_weights.to(x.dtype) @ x).view(-1, self.dim)  # [F, D]
        return self._logits_of_mixed(mixed, segments, num_segments, compute_dtype)

    def forward_stored(
        self,
        rows: torch.Tensor,
        index: torch.Tensor | None,
        segments: torch.Tensor,
        num_segments: int,
        *,
        mixer: Callable[..., torch.Tensor],
        scales: torch.Tensor | None = None,
        compute_dtype: torch.dtype | None = torch.bfloat16,
    ) -> torch.Tensor:
        """Logits ``[S, C]`` read straight from stored rows ``[N, L, D]`` (the store's dtype,
        raw: this head's statistics standardise them), frame ``f`` being row ``index[f]``
        (``index=None``: the rows are the batch's frames in order); ``scales [N, L]`` for int8
        codes. ``mixer`` computes the standardised layer average in one pass over the rows per
        direction (:func:`trustser.heads.mixing.compiled_mixer`); the rest is as
        :meth:`forward_packed`.
        """
        if rows.dim() != 3 or rows.shape[1] != self.num_layers or rows.shape[2] != self.dim:
            raise ValueError(
                f"expected stored rows [N, {self.num_layers}, {self.dim}], got {tuple(rows.shape)}"
            )
        mixed = mixer(
            self.layer_weights, rows, index, scales, self.feature_mean, self.feature_scale
        )
        return self._logits_of_mixed(mixed, segments, num_segments, compute_dtype)

    def _logits_of_mixed(
        self,
        mixed: torch.Tensor,
        segments: torch.Tensor,
        num_segments: int,
        compute_dtype: torch.dtype | None,
    ) -> torch.Tensor:
        """The frame network on the mixed frames ``[F, D]``, pooling per clip, classifier."""
        if compute_dtype is None:
            h = self._frame_net(mixed)  # [F, H]
        else:
            with torch.autocast(mixed.device.type, dtype=compute_dtype):
                h = self._frame_net(mixed)
            h = h.float()
        counts = torch.bincount(segments, minlength=num_segments).to(h.dtype).clamp_min(1.0)
        if self.attention is None:
            pooled = (
                h.new_zeros(num_segments, h.shape[1]).index_add_(0, segments, h) / counts[:, None]
            )
        else:
            scores = self.attention(h).squeeze(-1)  # [F]
            peak = scores.new_full((num_segments,), float("-inf")).scatter_reduce(
                0, segments, scores.detach(), reduce="amax", include_self=True
            )
            weights = torch.exp(scores - peak[segments])
            total = weights.new_zeros(num_segments).index_add_(0, segments, weights)
            weights = weights / total[segments]
            pooled = h.new_zeros(num_segments, h.shape[1]).index_add_(
                0, segments, weights[:, None] * h
            )
        return self.classifier(pooled)

    def config(self) -> dict[str, Any]:
        return {
            "num_layers": self.num_layers,
            "dim": self.dim,
            "num_classes": self.num_classes,
            "hidden": self.hidden,
            "dropout": self.dropout_p,
            "pooling": self.pooling,
            "normalize": self.normalize,
        }


def save_module(module: nn.Module, path: str | os.PathLike, sidecar: Mapping[str, Any]) -> Path:
    """``module``'s state as safetensors at ``path`` plus ``sidecar`` as ``<path>.json``.

    Both files are written to temporary names and renamed, so a crash never leaves half a
    module; heads and fine-tuned blocks are saved this way.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp))
    sidecar_path = path.with_suffix(".json")
    sidecar_tmp = sidecar_path.with_name(sidecar_path.name + ".tmp")
    sidecar_tmp.write_text(json.dumps(dict(sidecar), indent=2, sort_keys=True, default=jsonable))
    os.replace(tmp, path)
    os.replace(sidecar_tmp, sidecar_path)
    return path


def save_head(
    head: LayerWeightedHead, path: str | os.PathLike, metadata: dict[str, Any] | None = None
) -> Path:
    """Weights as safetensors at ``path`` plus ``<path>.json`` with the config and metadata."""
    return save_module(head, path, {"config": head.config(), **(metadata or {})})


def load_head(
    path: str | os.PathLike, *, device: str | torch.device = "cpu"
) -> tuple[LayerWeightedHead, dict[str, Any]]:
    """Rebuild a head saved by :func:`save_head` (safetensors only: nothing is unpickled)."""
    from safetensors.torch import load_file

    path = Path(path)
    sidecar_path = path.with_suffix(".json")
    if not path.is_file() or not sidecar_path.is_file():
        raise FileNotFoundError(
            f"no trained head at {str(path)!r} (needs {path.name} and {sidecar_path.name}); "
            "train one with `trustser heads fit`."
        )
    sidecar = json.loads(sidecar_path.read_text())
    config = dict(sidecar["config"])
    head = LayerWeightedHead(
        config.pop("num_layers"), config.pop("dim"), config.pop("num_classes"), **config
    )
    head.load_state_dict(load_file(str(path), device=str(device)))
    return head.to(device).eval(), sidecar
