"""Rendering score rows as a rich table (rich is imported only when a table is asked for).

The score dataclasses' `to_table` methods choose the columns and rows; this module draws them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table


def format_value(value: Any) -> str:
    """Short text for a table cell: floats to 3 decimals, None as a dash (the JSON keeps full precision)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def class_label(class_id: int, names: Mapping[int, str]) -> str:
    """A class's row label: "2 ribosome" where the name is known, else "2"."""
    return f"{class_id} {names[class_id]}" if class_id in names else str(class_id)


def make_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]],
               caption: str | None = None) -> Table:
    """A rich Table with the first column left-aligned and the others right-aligned."""
    from rich import box
    from rich.table import Table

    # A light box and no wrapping keep 11 numeric columns within an 80-column terminal.
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, collapse_padding=True)
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(format_value(v) for v in row))
    return table
