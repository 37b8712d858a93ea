"""Top-k retrieval over text chunks with BM25 or a dense encoder (corpora: :mod:`gag_core.corpus`): the passages a
grounded expert reads (:mod:`gag_core.grounding`) and the RAG baselines of the evaluation.

The paper's RAG baseline uses ColBERTv2 over 480-token chunks; here BM25 (``bm25s``) and a dense
bi-encoder (the embedded all-MiniLM-L6-v2 by default) stand in, both offline and CPU-friendly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError, DataError
from .models import load_sentence_encoder

Hit = tuple[str, float]  # (chunk text, score), best first


# --- prompts ---------------------------------------------------------------------------------------

def format_knowledge(chunks: Sequence[str | Hit]) -> str:
    """Numbered passages for a RAG prompt: ``[1] first chunk`` / ``[2] second chunk``, one per paragraph.

    Accepts plain chunk strings or the ``(chunk, score)`` hits a retriever returns.
    """
    texts = [c[0] if isinstance(c, tuple) else c for c in chunks]
    return "\n\n".join(f"[{i}] {t.strip()}" for i, t in enumerate(texts, start=1))


# --- retrievers -----------------------------------------------------------------------------------

def _check_chunks(chunks: Sequence[str]) -> list[str]:
    chunks = list(chunks)
    if not chunks:
        raise DataError("Cannot build a retriever over zero chunks; load a non-empty corpus first.")
    return chunks


def _check_k(k: int) -> None:
    if not isinstance(k, int) or k < 1:
        raise ConfigError(f"Top-k must be a positive integer; got k={k!r}.")


class _Retriever:
    """What both retrievers share: ``search``/``search_batch`` over ``chunks``, checked; ``_top`` ranks."""

    chunks: list[str]

    def search(self, query: str, k: int) -> list[Hit]:
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-min(k, n_chunks) hits per query, best first."""
        _check_k(k)
        if not queries:
            return []
        return self._top(list(queries), min(k, len(self.chunks)))


TOKEN_PATTERN = r"(?u)\b\w+\b"  # every word, one character included: "unit 3", "Model X" name their thing by it


class BM25Retriever(_Retriever):
    """Lexical top-k retrieval with ``bm25s`` (lower-cased words, single characters included, English stopwords
    removed); a query with no indexed word scores every chunk 0."""

    def __init__(self, chunks: Sequence[str]):
        import bm25s

        self.chunks = _check_chunks(chunks)
        self._bm25s = bm25s
        # A corpus made only of stop-words would leave an empty vocabulary (bm25s cannot index that):
        # keep the stop-words then; a corpus with no word at all is refused.
        self.stopwords = "en"
        corpus = bm25s.tokenize(self.chunks, stopwords="en", token_pattern=TOKEN_PATTERN, show_progress=False)
        if not corpus.vocab:
            self.stopwords = None
            corpus = bm25s.tokenize(self.chunks, stopwords=None, token_pattern=TOKEN_PATTERN, show_progress=False)
        if not corpus.vocab:
            raise DataError("The corpus has no words BM25 can index (only punctuation or whitespace); check the "
                            "corpus file or use the dense retriever.")
        self.index = bm25s.BM25()
        self.index.index(corpus, show_progress=False)

    def _top(self, queries: list[str], k: int) -> list[list[Hit]]:
        import numpy as np

        tokens = self._bm25s.tokenize(queries, stopwords=self.stopwords, token_pattern=TOKEN_PATTERN, return_ids=False,
                                      show_progress=False)
        results = []
        for words in tokens:
            ids = self.index.get_tokens_ids(words)
            scores = self.index.get_scores_from_ids(ids) if ids else np.zeros(len(self.chunks), dtype=np.float32)
            order = np.argsort(-scores, kind="stable")[:k]
            results.append([(self.chunks[i], float(scores[i])) for i in order])
        return results


class DenseRetriever(_Retriever):
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

    def _top(self, queries: list[str], k: int) -> list[list[Hit]]:
        import torch

        scores = self._encode(queries) @ self.embeddings.T
        top = torch.topk(scores, k=k, dim=-1)
        return [[(self.chunks[i], float(s)) for s, i in zip(row_s.tolist(), row_i.tolist())]
                for row_s, row_i in zip(top.values, top.indices)]
