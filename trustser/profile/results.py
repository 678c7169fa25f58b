"""One model's results directory as the axes read it: each file read once, rows checked.

The stages write under ``runs/<model>/`` (:mod:`trustser.runs`): the heads' ``metrics.json`` and
``predictions.csv`` per task, the probe's ``metrics.json``, ``attack-*/summary.json``,
``cost.json``. An axis's collector reads what it needs through :class:`Results`; a file two
axes read (the emotion head's predictions: performance and fairness) is read once.
"""

from __future__ import annotations

import contextlib
import csv
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trustser.metrics._common import MetricWarning
from trustser.profile.model import ProfileError
from trustser.runs import read_json

__all__ = ["PROBE_FIGURES", "Results", "column", "labels_of", "maybe_json", "noting"]

# The probe's figures a profile keeps (``BackboneProfile.probe``): test figures, fold means.
PROBE_FIGURES = (
    "emotion_test_uar_mean",
    "gender_test_accuracy_mean",
    "speaker_test_accuracy_mean",
    "emotion_dev_chosen_layer_test_uar_mean",
    "gender_dev_chosen_layer_test_accuracy_mean",
    "speaker_dev_chosen_layer_test_accuracy_mean",
)


def maybe_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at ``path``, None when there is no file."""
    if not path.is_file():
        return None
    data = read_json(path)
    if not isinstance(data, dict):
        raise ProfileError(f"{str(path)!r} is not a JSON object; rerun the stage that wrote it.")
    return data


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ProfileError(f"{str(path)!r} has no rows; rerun the stage that wrote it.")
    required = {"fold", "speaker", "gender", "true", "pred"}
    missing = required - set(rows[0])
    if missing:
        raise ProfileError(
            f"{str(path)!r} lacks column(s) {sorted(missing)}; expected id, fold, speaker, gender, "
            "true, pred, prob_<label>... (rerun `trustser heads fit`)."
        )
    return rows


def column(rows: list[dict[str, str]], key: str) -> np.ndarray:
    return np.array([row[key] for row in rows])


def labels_of(rows: list[dict[str, str]], metrics: dict[str, Any] | None) -> list[str]:
    """The class labels of a head's predictions: its metrics' list, else the probability
    columns, else every label seen."""
    if metrics and isinstance(metrics.get("labels"), list):
        return [str(x) for x in metrics["labels"]]
    probs = [k[len("prob_") :] for k in rows[0] if k.startswith("prob_")]
    if probs:
        return probs
    return sorted(set(column(rows, "true").tolist()) | set(column(rows, "pred").tolist()))


class Results:
    """The results directory of one model, for the axes' collectors (files read once).

    ``attack`` is the attack behind the safety axis, ``(method, SNR in dB)``; ``options`` the
    profile's axis options by name (``{"privacy_score": "strongest"}``; an axis reads its own,
    ``Axis.options``, with their defaults filled in); ``model`` the model's name
    (``<backbone>@<tag>`` for a variant), for what its kind rules out (:meth:`not_attackable`).
    """

    def __init__(
        self,
        directory: Path,
        *,
        attack: tuple[str, float],
        options: Mapping[str, str] | None = None,
        model: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.model = model
        self.attack = attack
        self.options: dict[str, str] = dict(options or {})
        self._json: dict[str, dict[str, Any] | None] = {}
        self._rows: dict[str, list[dict[str, str]] | None] = {}

    def json(self, relative: str) -> dict[str, Any] | None:
        """The JSON object at ``directory/relative`` (None: no such file)."""
        if relative not in self._json:
            self._json[relative] = maybe_json(self.directory / relative)
        return self._json[relative]

    def metrics(self, task: str) -> dict[str, Any] | None:
        """The ``metrics.json`` of the head of ``task``."""
        return self.json(f"{task}/metrics.json")

    def predictions(self, task: str) -> list[dict[str, str]] | None:
        """The checked rows of the ``predictions.csv`` of the head of ``task``."""
        if task not in self._rows:
            path = self.directory / task / "predictions.csv"
            self._rows[task] = _read_rows(path) if path.is_file() else None
        return self._rows[task]

    def not_attackable(self) -> str | None:
        """Why no waveform attack can run on this model (a variant that needs each clip's
        gender at inference, say), None when one can."""
        from trustser.variants import VariantError, parse

        if self.model is None:
            return None
        try:
            variant = parse(self.model)
        except VariantError:  # a tag this version does not know: nothing ruled out
            return None
        return None if variant is None else variant.not_attackable

    def probe(self) -> dict[str, float] | None:
        """The linear probes' test figures (:data:`PROBE_FIGURES`), None when not run."""
        probe = self.json("probe/metrics.json")
        if probe is None:
            return None
        found = {
            k: float(probe[k]) for k in PROBE_FIGURES if isinstance(probe.get(k), (int, float))
        }
        return found or None


@contextlib.contextmanager
def noting(what: str) -> Iterator[list[str]]:
    """Keep metric warnings (undefined classes) as notes ``"<what>: <warning>"`` instead of
    stderr noise; other warnings pass through."""
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetricWarning)
        yield notes
    for w in caught:
        if issubclass(w.category, MetricWarning):
            note = f"{what}: {w.message}"
            if note not in notes:
                notes.append(note)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
