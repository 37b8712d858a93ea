"""Reading JSONL: one JSON object per line; a bad line is refused with its line number."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from .errors import DataError


def iter_objects(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for every non-blank line of a JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; pass a JSONL file with one JSON object per line.")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg}); fix or remove that line.") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, found {type(row).__name__}.")
            yield lineno, row
