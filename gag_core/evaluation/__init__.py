"""Evaluation: answer metrics, RAG baselines (BM25 / dense retrieval) and report writing.

Heavy libraries (sentence-transformers, bm25s, matplotlib) load only when first used; the rich tables of
these results are the CLI's (``gag_cli.tables``).
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
from .report import markdown_table, write_report
from ..retrieval import BM25Retriever, DenseRetriever, format_knowledge

__all__ = [
    "BM25Retriever", "BertScorer", "DenseRetriever", "StsScorer", "aggregate", "aggregate_by",
    "answer_tokens", "contains", "exact_match", "format_knowledge", "markdown_table",
    "normalize_answer", "summarize_latencies", "token_f1", "write_report",
]
