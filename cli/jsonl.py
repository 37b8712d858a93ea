"""Resumable JSONL batch jobs: output lines follow input lines; a rerun continues after the last whole line."""

from __future__ import annotations

import json
from pathlib import Path

from gag_core.errors import DataError
from gag_core.jsonl import append_objects as append_rows  # noqa: F401  (the CLI's name)
from gag_core.jsonl import iter_objects


def read_questions(path: Path, field: str = "question", skipped: list[str] | None = None) -> list[str]:
    """The questions of a JSONL file. A bad line (not JSON, not UTF-8, no question) raises a DataError naming the
    file and line; with a ``skipped`` list it is recorded there ("PATH:N: why") and left out instead."""
    bad: list[str] = []
    out = []
    for lineno, row in iter_objects(path, errors=bad):
        q = row.get(field)
        if not isinstance(q, str) or not q.strip():
            bad.append(f"line {lineno}: expected a non-empty string field {field!r}")
        else:
            out.append(q)
    bad = [f"{path}:{b[5:]}" for b in sorted(bad, key=lambda b: int(b.split(":")[0][5:]))]
    if bad and skipped is None:
        raise DataError(f"{bad[0]}." + (f" ({len(bad) - 1} more bad lines)" if len(bad) > 1 else ""))
    if skipped is not None:
        skipped.extend(bad)
    if not out:
        raise DataError(f"{path} holds no questions; put one JSON object with a {field!r} field on each line.")
    return out


def completed_rows(path: Path, questions: list[str]) -> int:
    """How many leading output rows are complete and match the input; a torn last line is cut off."""
    path = Path(path)
    if not path.exists():
        return 0
    raw = path.read_bytes()
    keep, done = 0, 0
    for line in raw.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break  # torn write from a killed run
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break
        if done >= len(questions) or row.get("question") != questions[done]:
            raise DataError(f"{path} holds answers to other questions (line {done + 1}); use another --output "
                            "or delete it to start over.")
        keep += len(line)
        done += 1
    if keep != len(raw):
        with open(path, "r+b") as f:
            f.truncate(keep)
    return done
