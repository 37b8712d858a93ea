"""Training inputs: QA pairs (JSONL) and corpora (JSONL with ``text`` (+ ``title``), a .txt/.md file, or a folder
of them). Long documents are cut into sentence-aligned passages; bad input is refused naming the file and line."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ..corpus import Document, has_sentences, load_corpus, passages
from ..errors import DataError
from ..jsonl import iter_objects

MIN_QA = 4
PASSAGE_WORDS = 256  # a longer corpus document is cut into passages of whole sentences up to this many words


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
    if not path.read_bytes().strip():
        raise DataError(f"QA file {path} is empty; put one JSON object with {question_field!r} and {answer_field!r} "
                        "fields on each line.")
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
    return [d.text for d in load_documents(path, text_field)]


def load_documents(path: Path, text_field: str = "text", max_words: int = PASSAGE_WORDS) -> list[Document]:
    """Corpus documents with their titles, stripped, the empty ones dropped, long ones cut into passages of whole
    sentences; a corpus without a single sentence is refused."""
    docs = load_corpus(path, text_field=text_field)
    kept = [Document(d.id, d.text.strip(), d.title) for d in docs if has_sentences(d.text)]
    if not kept:
        raise DataError(f"Corpus {path} holds no sentences ({len(docs)} document(s), none with a word in it); "
                        "give documents with text, or leave --corpus out.")
    return [piece for d in kept for piece in passages(d, max_words)]


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
    qa: Path | None  # None: documents only (the synthetic-qa augmenter writes the QA from the corpus)
    corpus: Path | None = None
    dev: Path | None = None
    expert_only_qa: list[Path] = field(default_factory=list)  # QA used in Stage I only (never aligned)
    description: str = ""
    general_questions: Path | None = None  # JSONL questions of the general route: the router calibration's negatives


@dataclass
class TrainData:
    """The loaded inputs, every row checked; the augment stage (``augment.augment_data``) adds to it."""

    qa: list[QAPair]  # aligned in Stage II (+ the synthetic QA pairs the augmenters wrote)
    dev: list[QAPair]
    expert_only: list[QAPair]  # Stage I only (+ augmenters' QA that is not for alignment)
    corpus: list[str] | None  # the documents' passages as plain text
    dev_eval: list[QAPair]  # the dev questions Stage II evaluates (the first stage2.dev_limit); only they get readouts
    documents: list[Document] = field(default_factory=list)  # the corpus passages with their titles
    augmented_texts: list[str] = field(default_factory=list)  # Stage I training texts the augmenters wrote

    @classmethod
    def load(cls, inputs: TrainInputs, question_field: str, answer_field: str, dev_limit: int) -> "TrainData":
        if inputs.qa is None and inputs.corpus is None:
            raise DataError("Nothing to train on: give QA pairs (--qa), documents (--corpus), or both.")
        names = (question_field, answer_field)
        qa = load_qa(inputs.qa, *names) if inputs.qa is not None else []
        dev = load_qa(inputs.dev, *names, min_rows=1) if inputs.dev else []
        expert_only = [p for path in inputs.expert_only_qa for p in load_qa(path, *names, min_rows=1)]
        documents = load_documents(inputs.corpus) if inputs.corpus else []
        corpus = [d.text for d in documents] or None
        return cls(qa, dev, expert_only, corpus, dev_eval=dev[:dev_limit], documents=documents)

    @property
    def questions(self) -> list[str]:
        return [p.question for p in self.qa]
