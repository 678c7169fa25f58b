"""Imports go one way (docs/architecture.md, "Layers"): read by AST, nothing is imported or run.

Every ``import`` counts, at module level or inside a function or an ``if TYPE_CHECKING`` block:
a lazy import that hides a cycle is still a cycle. ``store/`` is ``trustser.store`` and ``cli/``
is ``trustser.cli``, as installed. The layer table is read from docs/architecture.md, so the
document is the rule and this test its enforcement.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"trustser": "trustser", "store": "trustser.store", "cli": "trustser.cli"}
LIBRARY_ROOTS = ("trustser", "store")  # where rich must not be imported
DOC = REPO / "docs" / "architecture.md"


@dataclass(frozen=True)
class Layer:
    rank: int
    label: str
    names: tuple[str, ...]  # exact module names
    packages: tuple[str, ...]  # ``name.*``: every submodule of name


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # project module it reaches
    path: str  # file, relative to the repository
    line: int
    text: str  # the statement as written

    def where(self) -> str:
        return f"{self.path}:{self.line} `{self.text}`"


@cache
def modules() -> dict[str, Path]:
    """Module name → file, for every module of the three roots."""
    found = {}
    for root, prefix in ROOTS.items():
        for path in sorted((REPO / root).rglob("*.py")):
            parts = [p for p in path.relative_to(REPO / root).with_suffix("").parts]
            parts = [p for p in parts if p != "__init__"]
            found[".".join([prefix, *parts])] = path
    return found


def _targets(module: str, node: ast.Import | ast.ImportFrom, is_package: bool) -> list[str]:
    """Dotted names an import statement reaches: ``from pkg import sub`` gives ``pkg.sub``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    return [f"{base}.{alias.name}" for alias in node.names]


@cache
def imports() -> tuple[Import, ...]:
    """Every import of a project module by a project module (self-imports left out).

    A name is resolved to the longest module it names: ``from trustser.attacks import
    functional`` reaches ``trustser.attacks.functional``; ``from trustser.store import
    open_store`` reaches the package ``trustser.store``, whose ``__init__`` runs.
    """
    names = set(modules())
    found = []
    for module, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            reached = set()
            for target in _targets(module, node, path.name == "__init__.py"):
                while target and target not in names:
                    target = target.rpartition(".")[0]
                if target and target != module:
                    reached.add(target)
            for target in sorted(reached):
                found.append(
                    Import(
                        module,
                        target,
                        str(path.relative_to(REPO)),
                        node.lineno,
                        ast.unparse(node),
                    )
                )
    return tuple(found)


@cache
def layers() -> tuple[Layer, ...]:
    """The rows of the layer table in docs/architecture.md, bottom layer first."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    out = []
    for row in rows[1:]:  # rows[0] is the header; the separator starts with "|-"
        cells = [c.strip() for c in row.strip("|").split("|")]
        patterns = [p for p in re.findall(r"`([^`]+)`", cells[1]) if p.startswith("trustser")]
        out.append(
            Layer(
                rank=len(out),
                label=cells[0],
                names=tuple(p for p in patterns if not p.endswith(".*")),
                packages=tuple(p[:-2] for p in patterns if p.endswith(".*")),
            )
        )
    return tuple(out)


def layer_of(module: str) -> Layer | None:
    """The row naming ``module`` exactly, else the row of its closest ``package.*``."""
    for layer in layers():
        if module in layer.names:
            return layer
    best, depth = None, -1
    for layer in layers():
        for package in layer.packages:
            if module.startswith(package + ".") and package.count(".") > depth:
                best, depth = layer, package.count(".")
    return best


def test_the_layer_table_is_read():
    labels = [layer.label for layer in layers()]
    assert labels[0].startswith("0 ") and labels[-1].startswith("8 ") and len(labels) >= 9
    for module in ("trustser.audio", "trustser.store.plan", "trustser.extract", "trustser.cli"):
        assert layer_of(module) is not None, module
    assert layer_of("trustser.store.plan").rank < layer_of("trustser.extract").rank
    # Modules being written elsewhere are placed before they exist.
    assert layer_of("trustser.batching").label.startswith("0 ")
    assert layer_of("trustser.end_to_end").label.startswith("4 ")
    assert layer_of("trustser.profile.model").rank < layer_of("trustser.profile.collect").rank


def test_every_module_is_placed_in_a_layer():
    unplaced = sorted(m for m in modules() if layer_of(m) is None)
    assert not unplaced, (
        "modules without a layer (add them to the table in docs/architecture.md): "
        + ", ".join(unplaced)
    )


def test_no_import_goes_up_a_layer():
    upward = []
    for imp in imports():
        source, target = layer_of(imp.source), layer_of(imp.target)
        if source is None or target is None:
            continue  # reported by test_every_module_is_placed_in_a_layer
        if target.rank > source.rank:
            upward.append(
                f"{imp.source} (layer {source.label}) imports {imp.target} "
                f"(layer {target.label}): {imp.where()}"
            )
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    edges: dict[str, set[str]] = {}
    for imp in imports():
        edges.setdefault(imp.source, set()).add(imp.target)
    reports = []
    for component in _cycles(edges):
        members = set(component)
        inside = [i for i in imports() if i.source in members and i.target in members]
        reports.append(
            "cycle: "
            + " <-> ".join(component)
            + "".join(f"\n  {i.source} imports {i.target}: {i.where()}" for i in inside)
        )
    assert not reports, "\n".join(reports)


def test_the_cycle_finder_sees_a_circle_and_a_lazy_import():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]
    lazy = ast.parse("def f():\n    from trustser.store import reader\n")
    (node,) = [n for n in ast.walk(lazy) if isinstance(n, ast.ImportFrom)]
    assert _targets("trustser.store.writer", node, False) == ["trustser.store.reader"]
    relative = ast.parse("from .format import read_node\n").body[0]
    assert _targets("trustser.store.reader", relative, False) == ["trustser.store.format.read_node"]


def test_library_code_never_imports_rich():
    offenders = []
    for root in LIBRARY_ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    names = [node.module or ""]
                else:
                    continue
                if any(n == "rich" or n.startswith("rich.") for n in names):
                    offenders.append(
                        f"{path.relative_to(REPO)}:{node.lineno} `{ast.unparse(node)}`"
                    )
    assert not offenders, (
        "rich belongs in cli/; report progress through a callback instead:\n" + "\n".join(offenders)
    )
