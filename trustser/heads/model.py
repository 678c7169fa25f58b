"""The paper's lightweight head over all encoder layers (with the hidden size it specifies).

softmax-weighted layer average → Conv1d(D→H, k=1) → ReLU → Conv1d(H→H, k=1) → pooling over the
real frames → Linear(H→H) → ReLU → Linear(H→C). The reference code ran it 256 wide by accident;
here ``hidden`` defaults to the paper's 128.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trustser._validation import check_choice, check_positive, check_probability

__all__ = ["POOLINGS", "LayerWeightedHead", "save_head", "load_head"]

POOLINGS = ("mean", "attention")


class LayerWeightedHead(nn.Module):
    """Classifier over every hidden state of a frozen encoder.

    Input ``hidden`` is ``[B, L, T, D]`` (the backbone's output layout) and ``mask`` ``[B, T]``
    marks real frames; padded frames never reach the pooled vector.
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
        self.layer_logits = nn.Parameter(torch.zeros(num_layers))  # equal weights at start
        self.frame_net = nn.Sequential(
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

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if hidden.dim() != 4 or hidden.shape[1] != self.num_layers or hidden.shape[3] != self.dim:
            raise ValueError(
                f"expected hidden states [B, {self.num_layers}, T, {self.dim}], got {tuple(hidden.shape)}"
            )
        weights = self.layer_weights.to(hidden.dtype)
        mixed = torch.einsum("bltd,l->btd", hidden, weights)  # [B, T, D]
        frames = self.frame_net(mixed.transpose(1, 2)).transpose(1, 2)  # [B, T, H]
        mask = mask.to(frames.dtype).unsqueeze(-1)  # [B, T, 1]
        if self.attention is None:
            pooled = (frames * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        else:
            scores = self.attention(frames).masked_fill(mask == 0, float("-inf"))
            pooled = (torch.softmax(scores, dim=1) * frames).sum(1)
        return self.classifier(pooled)

    def config(self) -> dict[str, Any]:
        return {
            "num_layers": self.num_layers,
            "dim": self.dim,
            "num_classes": self.num_classes,
            "hidden": self.hidden,
            "dropout": self.dropout_p,
            "pooling": self.pooling,
        }


def save_head(
    head: LayerWeightedHead, path: str | os.PathLike, metadata: dict[str, Any] | None = None
) -> Path:
    """Weights as safetensors at ``path`` plus ``<path>.json`` with the config and metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(path))
    sidecar = {"config": head.config(), **(metadata or {})}
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, sort_keys=True))
    return path


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
