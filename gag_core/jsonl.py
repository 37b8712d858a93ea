"""Reading JSONL: one JSON object per line; a bad line is refused with its line number.

Lines are decoded one by one, so a file that is not UTF-8 (or holds binary data) is reported at the line where
it goes wrong instead of crashing the reader with a ``UnicodeDecodeError``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import DataError


def decode_line(raw: bytes, lineno: int) -> tuple[str | None, str | None]:
    """(text, None) for a UTF-8 line, or (None, why) for binary data or bytes that are not UTF-8."""
    if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # a UTF-8 byte-order mark (Windows editors write one)
    if b"\x00" in raw:
        return None, "binary data (a NUL byte), not text; pass a UTF-8 text file"
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text ({exc.reason} at byte {exc.start} of the line); re-save the file as UTF-8"


def parse_line(raw: bytes, lineno: int) -> tuple[dict | None, str | None]:
    """(object, None) for a line holding one JSON object, (None, why) otherwise; (None, None) for a blank line."""
    text, why = decode_line(raw, lineno)
    if why is not None:
        return None, why
    if not text.strip():
        return None, None
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg}); fix or remove that line"
    if not isinstance(row, dict):
        return None, f"expected an object {{...}}, found {type(row).__name__}"
    return row, None


def iter_objects(path: str | Path, errors: list[str] | None = None) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for every non-blank line of a JSONL file.

    A bad line (not JSON, not an object, not UTF-8, binary) raises :class:`DataError` naming the file and line;
    with an ``errors`` list it is recorded there ("line N: why") and skipped instead, so a caller can report every
    bad line at once."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; pass a JSONL file with one JSON object per line.")
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            row, why = parse_line(raw, lineno)
            if row is not None:
                yield lineno, row
            elif why is None:
                continue
            elif errors is None:
                raise DataError(f"{path}:{lineno}: {why}.")
            else:
                errors.append(f"line {lineno}: {why}")


def append_objects(path: str | Path, rows: Iterable[dict]) -> None:
    """Append one JSON line per row and fsync, so a kill leaves whole lines (and at most one torn last line)."""
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
