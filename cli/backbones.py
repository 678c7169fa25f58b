"""`trustser backbones ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="backbones commands", no_args_is_help=True)
