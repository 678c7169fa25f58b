"""Top-level `trustser` commands of the attack area."""

from __future__ import annotations

import typer

app = typer.Typer()
