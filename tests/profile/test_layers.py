"""The profile package's parts depend one way (read from the source, nothing imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import trustser.profile

PACKAGE = Path(trustser.profile.__file__).parent

# Each part may import only parts of a lower rank: the model knows no other part, renderers and
# recommend read a profile but nothing reads them back, and recommend draws nothing.
RANKS = {
    "model": 0,
    "results": 1,  # reading a results directory, the bootstrap's tables, cell text
    "estimator": 1,
    "cells": 1,
    "axis": 2,  # what an axis is
    "axes": 3,  # the registry and one module per axis
    "paper": 4,
    "scales": 5,
    "intervals": 5,
    "collect": 6,
    "mitigations": 6,  # reads a profile (and plain-attack summaries); tables and report show it
    "tables": 7,
    "radar": 7,
    "recommend": 7,
    "report": 8,
    "det": 8,  # DET charts of speaker verification: the radar's style and figure saving
    "run": 9,
}


def _profile_imports(path: Path) -> set[str]:
    """``trustser.profile`` modules imported anywhere in ``path`` (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            found.add("trustser.profile" + (f".{node.module}" if node.module else ""))
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[:2] == ["trustser", "profile"]}


def test_every_part_is_ranked():
    parts = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    parts |= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert parts == set(RANKS)


def _files(part: str) -> list[Path]:
    """A part's module, or every module of a part that is a package (``axes``)."""
    single = PACKAGE / f"{part}.py"
    return [single] if single.is_file() else sorted((PACKAGE / part).glob("*.py"))


def test_parts_import_only_lower_layers():
    for part, rank in RANKS.items():
        for path in _files(part):
            for name in _profile_imports(path):
                assert name != "trustser.profile", f"{path.name} imports the package root (a cycle)"
                other = name.split(".")[2]
                if other == part:  # a package's modules (an axis, the registry) import each other
                    continue
                assert RANKS[other] < rank, f"{part} (rank {rank}) imports {other} ({RANKS[other]})"


def test_every_part_declares_its_public_names():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = [
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        ]
        assert "__all__" in names, f"{path.name} has no __all__"
