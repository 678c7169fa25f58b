"""Declared dependencies match what was tested."""

from __future__ import annotations

import re
import sys
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
TESTED_TRANSFORMERS = {"pass": ("5.4.0", "5.5.0", "5.12.0", "5.24.0"), "fail": ("5.0.0", "5.2.0")}


def test_transformers_floor_is_the_tested_one():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (spec,) = [Requirement(r) for r in project["dependencies"] if r.startswith("transformers")]
    assert all(Version(v) in spec.specifier for v in TESTED_TRANSFORMERS["pass"])
    assert not any(Version(v) in spec.specifier for v in TESTED_TRANSFORMERS["fail"])
    assert Version(version("transformers")) in spec.specifier
    notes = (REPO / "docs" / "backbones.md").read_text()
    for tested in (*TESTED_TRANSFORMERS["pass"], *TESTED_TRANSFORMERS["fail"]):
        assert re.search(rf"\b{re.escape(tested)}\b", notes), tested


def test_every_package_is_installed():
    """pyproject.toml lists the packages a wheel holds: a package missing there would be left out
    of an installed trustser while the editable checkout still imports it."""
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    roots = {"trustser": "trustser", "store": "trustser.store", "cli": "trustser.cli"}
    found = set()
    for root, name in roots.items():
        for init in (REPO / root).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / root).parts
            found.add(".".join([name, *parts]))
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
