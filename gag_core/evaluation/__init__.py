"""Evaluation: answer metrics, RAG baselines (BM25 / dense retrieval) and report writing.

Heavy libraries (sentence-transformers, bm25s, matplotlib, rich) load only when first used.
"""

from .metrics import (
    BertScorer,
    StsScorer,
    aggregate,
    aggregate_by,
    answer_tokens,
    contains,
    exact_match,
    normalize_answer,
    summarize_latencies,
    token_f1,
)
from .report import markdown_table, render_rich_table, write_report
from .retrieval import (
    BM25Retriever,
    DenseRetriever,
    Document,
    chunk_documents,
    chunk_text,
    embedded_sentence_encoder_path,
    format_knowledge,
    load_corpus,
    load_sentence_encoder,
)

__all__ = [
    "BM25Retriever", "BertScorer", "DenseRetriever", "Document", "StsScorer", "aggregate", "aggregate_by",
    "answer_tokens", "chunk_documents", "chunk_text", "contains", "embedded_sentence_encoder_path",
    "exact_match", "format_knowledge", "load_corpus", "load_sentence_encoder", "markdown_table",
    "normalize_answer", "render_rich_table", "summarize_latencies", "token_f1", "write_report",
]
