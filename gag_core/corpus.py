"""Corpora: load documents (JSONL, a .txt/.md file, or a folder of them), split them into sentences, and cut
them into token windows or sentence-aligned passages.

Training (Stage I and its augmenters) and the RAG baselines read corpora through this one loader. Bad input is
refused naming the file (and line): not UTF-8, binary, empty, or without a single sentence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, DataError
from .jsonl import decode_line, iter_objects

DEFAULT_CHUNK_TOKENS = 480  # the paper's RAG chunk size
DEFAULT_CHUNK_OVERLAP = 48
TEXT_SUFFIXES = (".txt", ".md")
CORPUS_SUFFIXES = (*TEXT_SUFFIXES, ".jsonl")


@dataclass(frozen=True)
class Document:
    id: str    # JSONL "id" field, else "<file stem>:<line>"; for text files, the path relative to the root
    text: str
    title: str | None = None  # JSONL "title" field: what the document is about (augmenters name it)


# --- loading --------------------------------------------------------------------------------------

def load_corpus(path: str | Path, *, text_field: str = "text", id_field: str = "id") -> list[Document]:
    """Read a JSONL file (one object per line with ``text_field``, optional ``title``), a .txt/.md file, or a
    folder of them."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in CORPUS_SUFFIXES)
        if not files:
            raise DataError(f"No .txt or .md files (nor .jsonl) under {path}; put the corpus there or pass a file.")
        return [d for p in files for d in _load_file(p, p.relative_to(path).as_posix(), text_field, id_field)]
    if not path.is_file():
        raise DataError(f"Corpus not found: {path}; pass a .jsonl, .txt or .md file, or a folder of them.")
    if path.suffix.lower() not in CORPUS_SUFFIXES:
        raise DataError(f"Unsupported corpus file {path.name!r}: expected .jsonl, .txt or .md (or a folder of them).")
    return _load_file(path, path.name, text_field, id_field)


def _load_file(path: Path, name: str, text_field: str, id_field: str) -> list[Document]:
    if path.suffix.lower() == ".jsonl":
        return _load_jsonl(path, text_field, id_field)
    return [Document(name, _read_text(path))]


def _read_text(path: Path) -> str:
    """A text file's contents; not UTF-8 or binary is refused naming the file and line."""
    raw = path.read_bytes()
    nul = raw.find(b"\x00", 0, 8192)
    if nul >= 0:  # a binary file: report it as that, not as the first undecodable byte
        line = raw.count(b"\n", 0, nul) + 1
        raise DataError(f"{path}:{line}: binary data (a NUL byte), not text; pass UTF-8 text "
                        "files (.txt, .md, .jsonl).")
    for lineno, line in enumerate(raw.splitlines(), 1):
        text, why = decode_line(line, lineno)
        if why is not None:
            raise DataError(f"{path}:{lineno}: {why}.")
    return raw.decode("utf-8-sig")


def _load_jsonl(path: Path, text_field: str, id_field: str) -> list[Document]:
    docs, bad = [], []
    for lineno, row in iter_objects(path, errors=bad):
        title = row.get("title")
        if not isinstance(row.get(text_field), str):
            bad.append(f"line {lineno}: expected an object with a string {text_field!r} field, found {sorted(row)}")
            continue
        if title is not None and not isinstance(title, str):
            bad.append(f"line {lineno}: 'title' must be a string, found {type(title).__name__}")
            continue
        doc_id = row.get(id_field)
        docs.append(Document(str(doc_id) if doc_id is not None else f"{path.stem}:{lineno}", row[text_field],
                             title.strip() or None if title else None))
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


# --- sentences and passages -------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*\n")
_ABBREVIATION = re.compile(r"(?:^|\s)(?:Mr|Mrs|Ms|Dr|Prof|St|Mt|Jr|Sr|Inc|Ltd|Co|Corp|No|vs|e\.g|i\.e|[A-Z])\.$")
CHARS_PER_WORD = 12  # a passage's character limit is max_words times this (text without spaces is cut too)


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``: cut after . ! ? before a capital or digit (not after "Dr." or an initial), and at
    blank lines (a heading or list item is its own sentence). Pieces without a letter or digit are dropped."""
    out: list[str] = []
    for piece in _SENTENCE_END.split(text):
        piece = piece.strip()
        if out and _ABBREVIATION.search(out[-1]):
            out[-1] = f"{out[-1]} {piece}"
        elif piece:
            out.append(piece)
    return [s for s in out if has_sentences(s)]


def has_sentences(text: str) -> bool:
    """Whether ``text`` holds a word (a letter or digit), i.e. at least one sentence."""
    return re.search(r"[^\W_]", text) is not None


def passages(document: Document, max_words: int) -> list[Document]:
    """``document`` cut into passages of whole sentences of at most ``max_words`` words (a longer sentence is cut by
    words, a run without spaces by characters); ids ``<id>#<n>``, the title kept. A document that fits stays."""
    text, max_chars = document.text, max_words * CHARS_PER_WORD
    if len(text) <= max_chars and len(text.split()) <= max_words:
        return [document]
    out: list[str] = []
    current: list[str] = []
    size = 0
    for sentence in split_sentences(text):
        words = len(sentence.split())
        if current and (size + words > max_words or sum(map(len, current)) + len(sentence) > max_chars):
            out.append(" ".join(current))
            current, size = [], 0
        if words > max_words or len(sentence) > max_chars:
            out += [c[i:i + max_chars] for c in chunk_text(sentence, max_words, 0) for i in range(0, len(c), max_chars)]
            continue
        current.append(sentence)
        size += words
    if current:
        out.append(" ".join(current))
    return [Document(f"{document.id}#{i}", piece, document.title) for i, piece in enumerate(out)]
