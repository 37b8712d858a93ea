"""Grounding: the expert reads its domain's own passages before it writes the background.

A LoRA expert stores what it was trained on as QA; facts that live only in documents it barely extracts at a
small model's training budget (docs/training.md). A grounded expert is given the top-k passages of its domain's
documents (BM25 over the passages the module ships, ``knowledge/passages.jsonl``) in its prompt, ahead of the
question, in Stage I and at readout time alike, so it learns to answer *from* them as well as from its weights.

The base model never sees the passages: it still receives the K memory slots of what the expert wrote, so its
prompt stays the same size however many passages the expert read (the expert, not the base, pays for the text).
``readout.context_passages`` (k) switches it on; 0 is the plain expert.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from .errors import ModuleFormatError
from .jsonl import iter_objects
from .module import PASSAGES, DomainModule
from .retrieval import BM25Retriever, format_knowledge


def expert_input(question: str, passages: Sequence[str]) -> str:
    """The expert's user message: the numbered passages, then the question (the question alone without passages)."""
    if not passages:
        return question
    return f"Notes:\n{format_knowledge(list(passages))}\n\nQuestion: {question}"


class Grounding:
    """A domain's passages and the expert prompts that put the top-``k`` of them before each question."""

    def __init__(self, passages: Sequence[str], k: int):
        self.passages = [p for p in passages if p.strip()]
        self.k = int(k)
        self._retriever: BM25Retriever | None = None  # built on first use

    def top(self, questions: Sequence[str], k: int | None = None) -> list[list[str]]:
        """The top-``k`` (default: the expert's k) passages of each question, best first; [] each without
        passages."""
        k = self.k if k is None else k
        if not self.passages or k < 1:
            return [[] for _ in questions]
        if self._retriever is None:
            self._retriever = BM25Retriever(self.passages)
        return [[text for text, _ in hits] for hits in self._retriever.search_batch(list(questions), k)]

    def expert_inputs(self, questions: Sequence[str]) -> list[str]:
        """What the expert reads for each question: its top-k passages, then the question."""
        return [expert_input(q, hits) for q, hits in zip(questions, self.top(questions))]

    def digest(self) -> str:
        """sha256 of the passages and k (what a readout cache of this expert depends on)."""
        return hashlib.sha256(json.dumps([self.k, self.passages]).encode()).hexdigest()

    def to_jsonl(self) -> str:
        return "".join(json.dumps({"text": p}, ensure_ascii=False) + "\n" for p in self.passages)

    @classmethod
    def of_module(cls, module: DomainModule) -> "Grounding":
        """The grounding a module's expert was trained with (none when its readout reads no passages)."""
        k = module.manifest.readout.context_passages
        return cls.load(module.path / PASSAGES, k) if k else cls([], 0)

    @classmethod
    def load(cls, path: Path, k: int) -> "Grounding":
        """The passages of a module's ``knowledge/passages.jsonl`` (one ``{"text": ...}`` per line)."""
        texts = []
        for line, row in iter_objects(path):
            if not isinstance(row.get("text"), str):
                raise ModuleFormatError(f"{path.name} line {line}: expected a string field 'text'.")
            texts.append(row["text"])
        if not texts:
            raise ModuleFormatError(f"{path.name} holds no passages, but the module's expert reads {k} per question; "
                                    "re-export the module.")
        return cls(texts, k)

