"""``paraphrase``: a generator LM rewrites every training question in other words; the rewrites that keep the
question's names and numbers are trained with the same answer.

Users ask in phrasings a QA file never wrote. The generator (``stage1.augment_options.paraphrase.generator``,
``--qa-generator``; default the profile's base model) reads one question at a time and writes ``variants``
rewrites, one per line. A rewrite is kept when it is a question; differs from the original and from the other
kept ones; names every name and number of the original (``key_terms``); contains neither the answer nor the
original (a generator that repeats the question inside a sentence); keeps at least ``min_overlap`` (0.75) of the
original's content words (a small generator drifts: "Which colour does the mineral X have?" -> "Which mineral is
X?"; lower it for a strong generator); and is at most about twice as long. Kept and dropped counts go to
``train-log.jsonl``; results are appended per question to ``work/augment/paraphrase.jsonl`` (fsync'd), so a
rerun after ``kill -9`` generates no question twice.
Paraphrases are Stage I examples (``align = false``, the default) or also Stage II's (``align = true``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from typing import ClassVar

from ..corpus import Document
from ..errors import ConfigError
from ..lexical import terms
from .augment import AugmentContext, AugmentedQA, normalise
from .generated import GeneratorAugmenter

PROMPT = 'Write {n} other ways to ask: "{question}"'  # the wording SmolLM2-135M follows best of those tried
_NUMBERING = re.compile(r"^\s*(?:[-*•]|\d+[.):]|Q(?:uestion)?\s*\d*\s*[:.])\s*")
_KEY_TERM = re.compile(r"\b(?:[A-Z][\w'’-]*|\w*\d[\w.,-]*)")


def key_terms(question: str) -> set[str]:
    """What a rewrite must keep: the question's numbers and its capitalised words except the first word (names),
    normalised."""
    words = question.split()
    rest = " ".join(words[1:])  # the first word is capitalised because it starts the question
    return {normalise(m.group()) for m in _KEY_TERM.finditer(rest)} - {""}


def parse_lines(text: str) -> list[str]:
    """The generated text's lines as questions: numbering and bullets removed, blank lines dropped."""
    return [line for line in (_NUMBERING.sub("", raw).strip().strip('"') for raw in text.splitlines()) if line]


def content_words(text: str) -> set[str]:
    """The words of >= 3 letters that are not English stop words."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return {t for t in terms(text) if t not in ENGLISH_STOP_WORDS}


def keep_paraphrases(question: str, answer: str, candidates: list[str],
                     min_overlap: float = 0.75) -> tuple[list[str], int]:
    """(the usable rewrites of ``question``, how many candidates were dropped); see the module doc."""
    original, names, gold = normalise(question), key_terms(question), f" {normalise(answer)} "
    words = content_words(question)
    kept, seen = [], {original}
    for candidate in candidates:
        norm = normalise(candidate)
        padded = f" {norm} "
        if (candidate.endswith("?") and norm not in seen and f" {original} " not in padded
                and len(words & content_words(candidate)) >= min_overlap * len(words)
                and all(f" {t} " in padded for t in names)
                and (gold.strip() == "" or gold not in padded) and len(norm.split()) <= 2 * len(original.split()) + 4):
            seen.add(norm)
            kept.append(candidate)
    return kept, len(candidates) - len(kept)


class ParaphraseAugmenter(GeneratorAugmenter):
    """Rewrites of every training question by a generator LM, kept only when they keep its names and numbers."""

    name: ClassVar[str] = "paraphrase"
    needs_documents: ClassVar[bool] = False  # it rewrites the QA file's questions
    DEFAULTS: ClassVar[dict] = {"generator": None, "variants": 3, "max_new_tokens": 72, "batch_size": 16,
                                "align": False, "min_overlap": 0.75}
    POSITIVE: ClassVar[tuple[str, ...]] = ("variants", "max_new_tokens", "batch_size")
    KEPT: ClassVar[str] = "paraphrases"
    PREFIX: ClassVar[str] = "\n1."

    def __init__(self, **options):
        super().__init__(**options)
        if not 0 <= self.options["min_overlap"] <= 1:
            raise ConfigError(f"stage1.augment_options.paraphrase.min_overlap = {self.options['min_overlap']!r} is "
                              "not valid: expected a number from 0 to 1.")

    def prompt(self, pair) -> str:
        return PROMPT.format(n=self.options["variants"], question=pair.question)

    def key(self, generator: str, pair) -> str:
        spec = json.dumps([generator, self.options["max_new_tokens"], self.options["min_overlap"], self.prompt(pair)])
        return hashlib.sha256(spec.encode()).hexdigest()[:20]

    def augment(self, documents: Sequence[Document], context: AugmentContext) -> Iterator[AugmentedQA]:
        generator = self.options["generator"] or context.generator
        pairs = list({(p.question, p.answer): p for p in context.qa}.values())  # each distinct pair once
        rows = self.generate_rows(context, [self.key(generator, p) for p in pairs], pairs, self.prompt, self._row)
        for pair, row in zip(pairs, rows):
            for question in row["paraphrases"][:self.options["variants"]]:
                yield AugmentedQA(question, pair.answer, align=self.options["align"], source=pair.question)

    def _row(self, key: str, pair, text: str) -> dict:
        kept, dropped = keep_paraphrases(pair.question, pair.answer, parse_lines(text), self.options["min_overlap"])
        return {"key": key, "question": pair.question, "paraphrases": kept, "dropped": dropped}
