"""Top-level `trustser` commands of the profile area."""

from __future__ import annotations

import typer

app = typer.Typer()
