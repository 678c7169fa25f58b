"""Top-level `trustser` commands of the pipeline area."""

from __future__ import annotations

import typer

app = typer.Typer()
