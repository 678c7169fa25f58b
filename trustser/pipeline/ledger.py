"""``stages.json``: the inputs each finished stage of a run was made with, so a re-run skips
what is done and re-runs only what a changed setting affects."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trustser.runs import read_json, write_json

__all__ = ["Ledger"]


class Ledger:
    """``stages.json``: the inputs each finished stage was run with."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, Any] = read_json(path) if path.is_file() else {}

    @staticmethod
    def key(inputs: Mapping[str, Any]) -> str:
        text = json.dumps(inputs, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def is_done(self, stage_id: str, inputs: Mapping[str, Any], outputs: Sequence[Path]) -> bool:
        entry = self.entries.get(stage_id)
        return bool(
            entry and entry.get("key") == self.key(inputs) and all(p.exists() for p in outputs)
        )

    def mark(self, stage_id: str, inputs: Mapping[str, Any]) -> None:
        self.entries[stage_id] = {
            "key": self.key(inputs),
            "inputs": inputs,
            "finished": time.time(),
        }
        write_json(self.path, self.entries)
