"""``tomllib`` on every Python this package supports: the standard library's from 3.11,
``tomli`` (the same API, a dependency on 3.10) before."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["tomllib"]
