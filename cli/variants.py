"""`trustser variants`: the kinds of model variant this version knows (`<backbone>@<tag>`)."""

from __future__ import annotations

import typer
from rich.table import Table

from trustser.cli._common import console
from trustser.cli._tables import print_table
from trustser.variants import kinds

__all__ = ["app"]

app = typer.Typer()


@app.command("variants")
def variants() -> None:
    """List the kinds of variant: each tag's form and what the variant does."""
    table = Table(title="Variant kinds: <backbone>@<tag>")
    for column in ("kind", "tag", "what it is"):
        table.add_column(column, overflow="fold", no_wrap=column == "kind")
    for kind in kinds():
        role = "mitigation" if kind.mitigation else "model variant"
        table.add_row(kind.label, kind.form, f"{kind.summary} [{role}]")
    print_table(table, console=console)
    console.print(
        "Fit one with `trustser heads fit --finetune-top K` or `trustser mitigate`; every stage "
        "after extraction then takes its name (docs/architecture.md, Variants)."
    )
