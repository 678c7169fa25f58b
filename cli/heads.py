"""`trustser heads ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="heads commands", no_args_is_help=True)
