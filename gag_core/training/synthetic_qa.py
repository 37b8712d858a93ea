"""``synthetic-qa``: a generator LM writes QA pairs from each passage of the corpus; only grounded pairs are kept.

The generator (``stage1.augment_options.synthetic-qa.generator``, ``--qa-generator``; default the profile's base
model) reads one passage at a time and writes ``Q: ... / A: ...`` lines. A pair is kept when its normalised
answer appears in the passage and not in the question (``augment.grounded``); kept and dropped counts go to
``train-log.jsonl``. Results are appended per passage to ``work/augment/synthetic-qa.jsonl`` (fsync'd), so a
rerun after ``kill -9`` skips every passage already written and generates each passage once.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from typing import ClassVar

from ..corpus import Document, passages
from .augment import AugmentContext, AugmentedQA, grounded, normalise
from .generated import GeneratorAugmenter

PROMPT = ("Read the passage, then write {n} questions about facts it states. After each question write its answer: "
          "a few words copied exactly from the passage. Use this format:\nQ: <question>\nA: <answer>\n\n"
          "Passage: {passage}")
_PAIR = re.compile(r"^\s*(?:\d+[.)]\s*)?Q(?:uestion)?\s*\d*\s*[:.]\s*(?P<q>.+?)\s*\n+"
                   r"\s*A(?:nswer)?\s*\d*\s*[:.]\s*(?P<a>.+?)\s*$", re.MULTILINE)


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """The ``Q: ... / A: ...`` pairs of a generated text, in order."""
    return [(m["q"], m["a"].rstrip(".")) for m in _PAIR.finditer(text)]


def keep_grounded(pairs: list[tuple[str, str]], passage: str) -> tuple[list[tuple[str, str]], int]:
    """(the grounded pairs with distinct questions, how many were dropped)."""
    kept, seen = [], set()
    for q, a in pairs:
        key = normalise(q)
        if key and key not in seen and grounded(q, a, passage):
            seen.add(key)
            kept.append((q, a))
    return kept, len(pairs) - len(kept)


class SyntheticQAAugmenter(GeneratorAugmenter):
    """QA pairs written from every passage by a generator LM, kept only when grounded in the passage."""

    name: ClassVar[str] = "synthetic-qa"
    DEFAULTS: ClassVar[dict] = {"generator": None, "pairs_per_passage": 4, "passage_words": 120,
                                "max_new_tokens": 160, "batch_size": 8}
    POSITIVE: ClassVar[tuple[str, ...]] = ("pairs_per_passage", "passage_words", "max_new_tokens", "batch_size")
    KEPT: ClassVar[str] = "pairs"
    PREFIX: ClassVar[str] = "\nQ:"

    def prompt(self, passage: Document) -> str:
        return PROMPT.format(n=self.options["pairs_per_passage"], passage=passage.text)

    def key(self, generator: str, passage: Document) -> str:
        spec = json.dumps([generator, self.options["pairs_per_passage"], self.options["max_new_tokens"],
                           self.prompt(passage)])
        return hashlib.sha256(spec.encode()).hexdigest()[:20]

    def augment(self, documents: Sequence[Document], context: AugmentContext) -> Iterator[AugmentedQA]:
        generator = self.options["generator"] or context.generator
        pieces = [p for d in documents for p in passages(d, self.options["passage_words"])]
        rows = self.generate_rows(context, [self.key(generator, p) for p in pieces], pieces, self.prompt, self._row)
        for piece, row in zip(pieces, rows):
            for q, a in row["pairs"]:
                yield AugmentedQA(q, a, align=True, source=piece.id)

    def _row(self, key: str, passage: Document, text: str) -> dict:
        kept, dropped = keep_grounded(parse_pairs(text), passage.text)
        return {"key": key, "passage": passage.id, "pairs": kept, "dropped": dropped}
