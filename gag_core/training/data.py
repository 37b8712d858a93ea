"""Training inputs: QA pairs (JSONL) and corpora (JSONL, text file, or folder of .txt/.md)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ..corpus import load_corpus
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
    docs = [d.text.strip() for d in load_corpus(path, text_field=text_field) if d.text.strip()]
    if not docs:
        raise DataError(f"Corpus {path} holds no text.")
    return docs


def file_digest(path: Path | None) -> str:
    """sha256 of a file, or of a folder's files (names and bytes, in sorted order); "" for None."""
    if path is None:
        return ""
    p = Path(path)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(p.rglob("*")):
            if f.is_file():
                h.update(f.name.encode() + f.read_bytes())
        return h.hexdigest()
    return hashlib.sha256(p.read_bytes()).hexdigest()


@dataclass
class TrainInputs:
    """What a domain is trained from: its name and the data files."""

    name: str
    qa: Path
    corpus: Path | None = None
    dev: Path | None = None
    expert_only_qa: list[Path] = field(default_factory=list)  # QA used in Stage I only (never aligned)
    description: str = ""


@dataclass
class TrainData:
    """The loaded inputs, every row checked."""

    qa: list[QAPair]
    dev: list[QAPair]
    expert_only: list[QAPair]
    corpus: list[str] | None
    dev_eval: list[QAPair]  # the dev questions Stage II evaluates (the first stage2.dev_limit); only they get readouts

    @classmethod
    def load(cls, inputs: TrainInputs, question_field: str, answer_field: str, dev_limit: int) -> "TrainData":
        names = (question_field, answer_field)
        qa = load_qa(inputs.qa, *names)
        dev = load_qa(inputs.dev, *names, min_rows=1) if inputs.dev else []
        expert_only = [p for path in inputs.expert_only_qa for p in load_qa(path, *names, min_rows=1)]
        corpus = load_corpus_texts(inputs.corpus) if inputs.corpus else None
        return cls(qa, dev, expert_only, corpus, dev_eval=dev[:dev_limit])

    @property
    def questions(self) -> list[str]:
        return [p.question for p in self.qa]
