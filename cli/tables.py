"""Rich tables of evaluation results (the same tables as ``results.md``, for the terminal)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from gag_core.evaluation.report import format_cell, numeric_column


def render_rich_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], title: str | None = None) -> Table:
    """``rows`` as a ``rich.table.Table`` of ``columns`` (numeric columns right-aligned, cells as in results.md)."""
    table = Table(title=title)
    for c in columns:
        table.add_column(str(c), justify="right" if numeric_column(rows, c) else "left")
    for r in rows:
        table.add_row(*(format_cell(r.get(c)) for c in columns))
    return table
