"""Frozen speech encoders returning every hidden state, differentiable from the waveform.

``load_backbone(name_or_spec)`` is the entry point; ``list_backbones()`` feeds the CLI table.
See docs/backbones.md for the families, layer conventions and padding behaviour.
"""

from trustser.backbones.base import Backbone, BackboneSpec, weights_checksum
from trustser.backbones.errors import (
    BackboneError,
    BackboneInputError,
    CT2FormatError,
    UnknownBackboneError,
    WeightsChecksumError,
    WeightsNotFoundError,
)
from trustser.backbones.ge2e import GE2EBackbone
from trustser.backbones.loading import build_random_backbone, describe_backbone, load_backbone
from trustser.backbones.registry import REGISTRY, count_parameters, list_backbones, resolve_spec
from trustser.backbones.rnn import run_rnn
from trustser.backbones.tiny import TINY_FAMILIES

__all__ = [
    "REGISTRY",
    "TINY_FAMILIES",
    "Backbone",
    "BackboneError",
    "BackboneInputError",
    "BackboneSpec",
    "CT2FormatError",
    "GE2EBackbone",
    "UnknownBackboneError",
    "WeightsChecksumError",
    "WeightsNotFoundError",
    "build_random_backbone",
    "count_parameters",
    "describe_backbone",
    "list_backbones",
    "load_backbone",
    "resolve_spec",
    "run_rnn",
    "weights_checksum",
]
