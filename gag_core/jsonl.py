"""Reading JSONL: one JSON object per line; a bad line is refused with its line number."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from .errors import DataError


def iter_objects(path: str | Path, errors: list[str] | None = None) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for every non-blank line of a JSONL file.

    A bad line raises :class:`DataError`; with an ``errors`` list it is recorded there ("line N: why") and
    skipped instead, so a caller can report every bad line at once."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; pass a JSONL file with one JSON object per line.")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                why = None if isinstance(row, dict) else f"expected an object {{...}}, found {type(row).__name__}"
            except json.JSONDecodeError as exc:
                why = f"not valid JSON ({exc.msg}); fix or remove that line"
            if why is None:
                yield lineno, row
            elif errors is None:
                raise DataError(f"{path}:{lineno}: {why}.")
            else:
                errors.append(f"line {lineno}: {why}")
