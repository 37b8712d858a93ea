"""Training inputs: QA pairs (JSONL) and corpora (JSONL, text file, or folder of .txt/.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..jsonl import iter_objects

MIN_QA = 4


@dataclass
class QAPair:
    question: str
    answer: str
    line: int
    meta: dict


def load_qa(path: Path, question_field: str = "question", answer_field: str = "answer",
            min_rows: int = MIN_QA) -> list[QAPair]:
    """Read QA pairs; every bad row is reported with its line number, and too-small data is refused."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"QA file {path} does not exist.")
    rows, bad = [], []
    for i, row in iter_objects(path, errors=bad):
        q, a = row.get(question_field), row.get(answer_field)
        if not isinstance(q, str) or not q.strip():
            bad.append(f"line {i}: missing or empty {question_field!r}")
        elif not isinstance(a, str) or not a.strip():
            bad.append(f"line {i}: missing or empty {answer_field!r}")
        else:
            rows.append(QAPair(q.strip(), a.strip(), i, row))
    if bad:
        shown = "; ".join(bad[:5]) + (f"; … {len(bad) - 5} more" if len(bad) > 5 else "")
        raise DataError(f"{path} has {len(bad)} bad row(s): {shown}. Fix them (or the field names with "
                        "--question-field/--answer-field) and rerun.")
    if len(rows) < min_rows:
        raise DataError(f"{path} has {len(rows)} QA pairs; at least {min_rows} are needed to train a domain.")
    return rows


def load_corpus_texts(path: Path, text_field: str = "text") -> list[str]:
    """Corpus documents as plain strings (the same loader the RAG baselines use)."""
    from ..evaluation.retrieval import load_corpus

    docs = [d.text.strip() for d in load_corpus(path, text_field=text_field) if d.text.strip()]
    if not docs:
        raise DataError(f"Corpus {path} holds no text.")
    return docs
