"""Top-level `trustser` commands of the extract area."""

from __future__ import annotations

import typer

app = typer.Typer()
