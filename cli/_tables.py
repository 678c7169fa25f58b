"""Tables that stay legible in a narrow terminal: identifiers and numbers are never truncated.

Columns that hold identifiers or numbers are declared ``no_wrap``; prose columns may wrap at
spaces. When the no-wrap columns cannot all be shown whole in the terminal's width, the table's
columns are folded: it is printed as several tables, each repeating the first ``keys`` columns
(the row labels, e.g. the backbone) beside as many of the others as fit.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

__all__ = ["fold_columns", "print_table"]


def _needed(console: Console, table: Table, index: int) -> int:
    """Width column ``index`` needs: its widest cell (longest word if it may wrap) + padding."""
    column = table.columns[index]
    cells = [column.header, *column.cells]
    measures = [console.measure(cell) for cell in cells]
    width = max((m.maximum if column.no_wrap else m.minimum) for m in measures)
    return width + 2 + 1  # padding either side, one border


def fold_columns(table: Table, width: int, *, keys: int = 1, console: Console) -> list[Table]:
    """``table`` as tables no wider than ``width`` (itself when it fits)."""
    count = len(table.columns)
    needs = [_needed(console, table, i) for i in range(count)]
    if sum(needs) + 1 <= width or count <= keys + 1:
        return [table]
    base = sum(needs[:keys]) + 1
    groups: list[list[int]] = [[]]
    for index in range(keys, count):
        used = base + sum(needs[i] for i in groups[-1])
        if groups[-1] and used + needs[index] > width:
            groups.append([])
        groups[-1].append(index)
    parts = []
    for number, group in enumerate(groups):
        part = Table(
            title=table.title if number == 0 else None,
            caption=table.caption if number == len(groups) - 1 else None,
            box=table.box,
            show_header=table.show_header,
            show_lines=table.show_lines,
        )
        for index in [*range(keys), *group]:
            column = table.columns[index]
            part.add_column(
                column.header,
                justify=column.justify,
                no_wrap=column.no_wrap,
                style=column.style,
                overflow=column.overflow,
            )
        for row_index, row in enumerate(table.rows):
            cells = [list(table.columns[i].cells)[row_index] for i in [*range(keys), *group]]
            part.add_row(*cells, style=row.style, end_section=row.end_section)
        parts.append(part)
    return parts


def print_table(table: Table, *, keys: int = 1, console: Console) -> None:
    """Print ``table`` whole: folded into several tables when the terminal is too narrow."""
    for part in fold_columns(table, console.width, keys=keys, console=console):
        console.print(part)
