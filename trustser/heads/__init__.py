"""Heads trained from the embedding cache: the paper's layer-weighted head, its estimator,
per-fold training of the emotion / gender / speaker tasks, and linear probes (docs/heads.md)."""

from trustser.heads.data import FeatureSet, PackedFeatures
from trustser.heads.estimator import HeadClassifier
from trustser.heads.model import LayerWeightedHead, load_head, save_head
from trustser.heads.probe import run_probes
from trustser.heads.tasks import TASKS, build_task
from trustser.heads.training import fit_heads

__all__ = [
    "TASKS",
    "FeatureSet",
    "HeadClassifier",
    "LayerWeightedHead",
    "PackedFeatures",
    "build_task",
    "fit_heads",
    "load_head",
    "run_probes",
    "save_head",
]
