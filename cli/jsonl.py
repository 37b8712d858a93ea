"""Resumable JSONL batch jobs: output lines follow input lines; a rerun continues after the last whole line."""

from __future__ import annotations

import json
import os
from pathlib import Path

from gag_core.errors import DataError
from gag_core.jsonl import iter_objects


def read_questions(path: Path, field: str = "question") -> list[str]:
    out = []
    for lineno, row in iter_objects(path):
        q = row.get(field)
        if not isinstance(q, str) or not q.strip():
            raise DataError(f"{path}:{lineno}: expected a non-empty string field {field!r}.")
        out.append(q)
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


def append_rows(path: Path, rows: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
