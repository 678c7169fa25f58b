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
    "scales": 1,
    "intervals": 1,
    "collect": 2,
    "mitigations": 2,  # reads a profile (and plain-attack summaries); tables and report show it
    "tables": 3,
    "radar": 3,
    "recommend": 3,
    "report": 4,
    "run": 5,
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
    assert parts == set(RANKS)


def test_parts_import_only_lower_layers():
    for part, rank in RANKS.items():
        for name in _profile_imports(PACKAGE / f"{part}.py"):
            assert name != "trustser.profile", f"{part} imports the package root (a cycle)"
            other = name.split(".")[2]
            assert RANKS[other] < rank, f"{part} (rank {rank}) imports {other} ({RANKS[other]})"


def test_every_part_declares_its_public_names():
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = [
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        ]
        assert "__all__" in names, f"{path.name} has no __all__"
