"""Write evaluation results: ``results.json``, ``results.md`` (a Markdown table) and PNG plots.

Plots are given as ``{name: (x_label, y_label, series)}``; the shape of ``series`` picks the chart:

- ``{label: number}`` -> a bar chart, one bar per label (e.g. accuracy per method);
- ``{label: [(x, y), ...]}`` -> a line plot, one line per label (e.g. accuracy vs. slots per method).

Matplotlib is driven through ``Figure`` objects (Agg canvas), never pyplot, so writing a report never
changes the process's global backend or leaks figures.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

from ..errors import DataError

Series = Mapping[str, float] | Mapping[str, Sequence[tuple[float, float]]]
PlotSpec = tuple[str, str, Series]


def format_cell(value: Any) -> str:
    """How a value reads in a table: floats to 3 decimals, ``None``/NaN as an en dash, bools as yes/no."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _json_safe(value: Any) -> Any:
    """NaN/inf become null so the file is strict JSON; paths and other objects become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub-flavoured Markdown table of ``columns``; missing cells read as an en dash."""
    def cell(v: Any) -> str:
        return format_cell(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in columns) + " |",
             "|" + "|".join("---:" if numeric_column(rows, c) else "---" for c in columns) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def numeric_column(rows: Sequence[Mapping[str, Any]], column: str) -> bool:
    """True when every value of ``column`` present in ``rows`` is a number (such columns align right)."""
    vals = [r.get(column) for r in rows if r.get(column) is not None]
    return bool(vals) and all(isinstance(v, Real) and not isinstance(v, bool) for v in vals)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "plot"


def _plot(path: Path, name: str, spec: PlotSpec) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    try:
        x_label, y_label, series = spec
    except (TypeError, ValueError):
        raise DataError(f"Plot {name!r} must be (x_label, y_label, series); got {spec!r}.") from None
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    values = list(series.values())
    if values and all(isinstance(v, Real) for v in values):
        labels = list(series.keys())
        bars = ax.bar(range(len(labels)), [float(v) for v in values], color="tab:blue")
        crowded = len(labels) > 4
        ax.set_xticks(range(len(labels)), labels, rotation=20 if crowded else 0, ha="right" if crowded else "center")
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
    else:
        for label, points in series.items():
            if not isinstance(points, Sequence) or isinstance(points, (str, bytes)) or not all(
                    isinstance(pt, Sequence) and len(pt) == 2 and all(isinstance(v, Real) for v in pt)
                    for pt in points):
                raise DataError(f"Plot {name!r}, series {label!r}: expected a number (bar) or a list of "
                                f"(x, y) number pairs (line); got {points!r}.")
            xs, ys = [pt[0] for pt in points], [pt[1] for pt in points]
            ax.plot(xs, ys, marker="o", label=str(label))
        if series:
            ax.legend(fontsize=8)
    ax.set_title(name)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=120)


def write_report(out_dir: str | Path, title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
                 plots: Mapping[str, PlotSpec] | None = None) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and one ``<plot name>.png`` per plot; return ``{name: path}``.

    ``results.json`` holds ``{"title", "columns", "rows", "plots"}`` with every row complete (all its
    keys, not only ``columns``); ``results.md`` shows ``columns`` as a table followed by the plots.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, plots = list(rows), dict(plots or {})
    written: dict[str, Path] = {}
    for name, spec in plots.items():
        path = out / f"{_slug(name)}.png"
        _plot(path, name, spec)
        written[name] = path
    payload = {"title": title, "columns": list(columns), "rows": rows,
               "plots": {name: {"file": p.name, "x_label": plots[name][0], "y_label": plots[name][1],
                                "series": plots[name][2]} for name, p in written.items()}}
    written["results.json"] = out / "results.json"
    written["results.json"].write_text(json.dumps(_json_safe(payload), indent=2, ensure_ascii=False,
                                                  allow_nan=False) + "\n", encoding="utf-8")
    md = [f"# {title}", "", markdown_table(rows, columns), ""]
    md += [f"![{name}]({p.name})\n" for name, p in written.items() if p.suffix == ".png"]
    written["results.md"] = out / "results.md"
    written["results.md"].write_text("\n".join(md), encoding="utf-8")
    return written

