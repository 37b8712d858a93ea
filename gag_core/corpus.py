"""Corpora: load documents (JSONL, a .txt/.md file, or a folder of them) and cut them into token windows.

Training (Stage I domain-adaptive pretraining) and the RAG baselines read corpora through this one loader.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, DataError
from .jsonl import iter_objects

DEFAULT_CHUNK_TOKENS = 480  # the paper's RAG chunk size
DEFAULT_CHUNK_OVERLAP = 48
TEXT_SUFFIXES = (".txt", ".md")


@dataclass(frozen=True)
class Document:
    id: str    # JSONL "id" field, else "<file stem>:<line>"; for text files, the path relative to the root
    text: str


# --- loading --------------------------------------------------------------------------------------

def load_corpus(path: str | Path, *, text_field: str = "text", id_field: str = "id") -> list[Document]:
    """Read a JSONL file (one object per line with ``text_field``), a .txt/.md file, or a folder of them."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise DataError(f"No .txt or .md files under {path}; put the corpus there or pass a .jsonl file.")
        return [Document(p.relative_to(path).as_posix(), _read_text(p)) for p in files]
    if not path.is_file():
        raise DataError(f"Corpus not found: {path}; pass a .jsonl, .txt or .md file, or a folder of .txt/.md files.")
    if path.suffix.lower() == ".jsonl":
        return _load_jsonl(path, text_field, id_field)
    if path.suffix.lower() in TEXT_SUFFIXES:
        return [Document(path.name, _read_text(path))]
    raise DataError(f"Unsupported corpus file {path.name!r}: expected .jsonl, .txt or .md (or a folder of .txt/.md).")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> DataError:
    return DataError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); re-save it as UTF-8.")


def _load_jsonl(path: Path, text_field: str, id_field: str) -> list[Document]:
    docs, bad = [], []
    try:
        rows = list(iter_objects(path, errors=bad))
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    for lineno, row in rows:
        if not isinstance(row.get(text_field), str):
            bad.append(f"line {lineno}: expected an object with a string {text_field!r} field, found {sorted(row)}")
            continue
        doc_id = row.get(id_field)
        docs.append(Document(str(doc_id) if doc_id is not None else f"{path.stem}:{lineno}", row[text_field]))
    if bad:
        shown = "; ".join(bad[:5]) + (f"; … {len(bad) - 5} more" if len(bad) > 5 else "")
        raise DataError(f"{path}, {shown}. Each line must be one JSON object with a string {text_field!r} field; "
                        "fix those lines or pass text_field=<the right field>.")
    if not docs:
        raise DataError(f"{path} holds no documents; add one JSON object per line.")
    return docs


# --- chunking -------------------------------------------------------------------------------------

def chunk_text(text: str, size_tokens: int = DEFAULT_CHUNK_TOKENS, overlap_tokens: int = DEFAULT_CHUNK_OVERLAP,
               tokenizer: Any = None) -> list[str]:
    """Cut ``text`` into windows of ``size_tokens`` tokens, consecutive windows sharing ``overlap_tokens``.

    Tokens are whitespace-separated words, or the given Hugging Face tokenizer's tokens. Chunks are
    slices of the original text (its spacing and newlines kept). The last window may be shorter; no
    window is emitted that only repeats the previous one's overlap.
    """
    if not isinstance(size_tokens, int) or not isinstance(overlap_tokens, int) or not size_tokens > overlap_tokens >= 0:
        raise ConfigError(f"Chunking needs size_tokens > overlap_tokens >= 0 (integers); "
                          f"got size_tokens={size_tokens!r}, overlap_tokens={overlap_tokens!r}.")
    spans = _token_spans(text, tokenizer)
    chunks, step = [], size_tokens - overlap_tokens
    for start in range(0, len(spans), step):
        window = spans[start:start + size_tokens]
        chunks.append(text[window[0][0]:window[-1][1]].strip())
        if start + size_tokens >= len(spans):
            break
    return [c for c in chunks if c]


def _token_spans(text: str, tokenizer: Any) -> list[tuple[int, int]]:
    """Character spans of the tokens of ``text``."""
    if tokenizer is None:
        return [m.span() for m in re.finditer(r"\S+", text)]
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("chunk_text needs a fast (Rust) Hugging Face tokenizer for character offsets; "
                          "load it with use_fast=True, or pass tokenizer=None to chunk by words.")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return [(s, e) for s, e in enc["offset_mapping"] if e > s]


def chunk_documents(documents: Sequence[Document], size_tokens: int = DEFAULT_CHUNK_TOKENS,
                    overlap_tokens: int = DEFAULT_CHUNK_OVERLAP, tokenizer: Any = None) -> list[str]:
    """Chunk every document (chunks never span two documents), in corpus order."""
    return [c for d in documents for c in chunk_text(d.text, size_tokens, overlap_tokens, tokenizer)]
