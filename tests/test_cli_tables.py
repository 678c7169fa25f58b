"""Tables legible at 80 columns: identifiers and numbers appear whole, columns fold instead."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from trustser.cli._tables import fold_columns, print_table

LONG = "hf:facebook/wav2vec2-base-960h"


def test_wide_tables_fold_their_columns_and_keep_every_cell_whole():
    table = Table(title="t")
    table.add_column("backbone", no_wrap=True)
    for name in ("Performance", "Privacy", "Safety", "Fairness", "Sustainability"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_row(LONG + "@0123456789abcdef", "1.00*", "0.03", "0.88", "0.62", "0.79")
    console = Console(width=80, record=True)
    parts = fold_columns(table, 80, console=console)
    assert len(parts) >= 2 and all(p.columns[0].header == "backbone" for p in parts)
    print_table(table, console=console)
    text = console.export_text()
    assert LONG + "@0123456789abcdef" in text and "…" not in text
    assert all(len(line) <= 80 for line in text.splitlines())
    narrow = Table()
    narrow.add_column("a", no_wrap=True)
    narrow.add_column("b")
    narrow.add_row("x", "y")
    assert fold_columns(narrow, 80, console=console) == [narrow]  # fits: left alone
