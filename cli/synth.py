"""`trustser data synth`: the synthetic espeak-ng demo corpus."""

from __future__ import annotations

import typer

app = typer.Typer()
