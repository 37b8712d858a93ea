"""Augmenters: documents in, more Stage I training data out (texts to learn as text, and/or QA pairs).

Facts a model read only in documents become answerable when the documents are seen several times in different
forms (rewrites, shuffled sentences, full names instead of pronouns) and when QA pairs about them are trained
alongside (Allen-Zhu & Li, Physics of LMs 3.1; docs/training.md). An augmenter is a class registered by name
through the ``register_augmenters`` hook (gag's own ones through the same hook):

    class MyAugmenter:
        name = "my-augmenter"
        def __init__(self, **options): ...                  # ``stage1.augment_options[name]``
        def augment(self, documents, context) -> Iterator[str | AugmentedQA]: ...
        needs_documents = True                              # False: it works on context.qa alone

It yields a ``str`` for a training text (causal-LM loss, like the corpus) and an :class:`AugmentedQA` for a QA
pair (Stage I SFT; with ``align`` also Stage II alignment and the router's exemplars). An augmenter that is slow
keeps its results in ``context.work`` and resumes from them (``synthetic_qa.py``).
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ..corpus import Document, passages, split_sentences
from ..errors import ConfigError


@dataclass(frozen=True)
class AugmentedQA:
    question: str
    answer: str
    align: bool = True  # also a Stage II example (and a router exemplar); False: Stage I only
    source: str = ""  # the document or passage it was written from


@dataclass
class AugmentContext:
    """What an augmenter may use besides the documents."""

    work: Path  # the training's work folder: keep resumable results here
    seed: int
    generator: str  # the model id a generator-based augmenter defaults to (the profile's base)
    dtype: str
    device: Any
    log_path: Path | None = None  # train-log.jsonl (None on processes other than the main one)
    progress: Callable[[str, int, int, dict], None] | None = None  # (stage, done, total, info)
    qa: Sequence = ()  # the training QA pairs given (data.QAPair), before any augmenter ran


class Augmenter(Protocol):
    name: ClassVar[str]

    def augment(self, documents: Sequence[Document], context: AugmentContext) -> Iterator[str | AugmentedQA]: ...


def check_options(name: str, options: dict, defaults: dict) -> dict:
    """``defaults`` updated with ``options``; an unknown option or one of the wrong type is refused, named as
    ``stage1.augment_options.<name>.<option>``."""
    out = dict(defaults)
    for key, value in options.items():
        where = f"stage1.augment_options.{name}.{key}"
        if key not in defaults:
            raise ConfigError(f"Unknown setting {where}; {name} takes {', '.join(sorted(defaults))}.")
        default = defaults[key]
        if default is not None and not (type(value) is type(default) or (type(default) is float and
                                                                          type(value) is int)):
            raise ConfigError(f"{where} = {value!r} is not valid: expected a {type(default).__name__} like "
                              f"{default!r}. Fix it in the --config file.")
        out[key] = value
    return out


# --- names and grounding (shared by the built-in augmenters) ------------------------------------------------

_CONNECTORS = ("of", "de", "la", "van", "von", "der", "the", "and", "&")
_CAPITALISED = re.compile(r"\b[A-Z][\w'’-]*(?:\s+(?:(?:" + "|".join(_CONNECTORS) + r")\s+)?[A-Z][\w'’-]*)*")
_STARTERS = {"The", "A", "An", "This", "That", "These", "Those", "It", "Its", "In", "On", "At", "By", "For", "From",
             "He", "She", "They", "We", "Our", "Their", "His", "Her", "As", "After", "Before", "When", "While"}
PRONOUN_NOUNS = ("company", "mineral", "city", "town", "village", "firm", "organisation", "organization", "person",
                 "species", "substance", "material", "element", "compound", "product", "device", "river", "region",
                 "country", "building", "school", "university", "band", "group", "ship", "book", "site", "plant")
_PRONOUN_START = re.compile(r"^(?:It|She|He|They|(?:The|This) (?:" + "|".join(PRONOUN_NOUNS) + r"))\b")
_POSSESSIVE_START = re.compile(r"^(?:Its|Her|His|Their)\b")


def subject_name(document: Document, sentences: list[str] | None = None) -> str | None:
    """What a document is about: its title, else the capitalised name in its first sentence that is multi-token,
    then not just a capitalised sentence start, then the most frequent in the document, then the earliest."""
    if document.title:
        return document.title
    sentences = split_sentences(document.text) if sentences is None else sentences
    if not sentences:
        return None
    candidates = []
    for pos, match in enumerate(_CAPITALISED.finditer(sentences[0])):
        tokens = match.group().split()
        initial = match.start() == 0
        if initial and (tokens[0] in _STARTERS or (len(tokens) > 1 and tokens[1] in _CONNECTORS)):
            tokens = tokens[2:] if len(tokens) > 1 and tokens[1] in _CONNECTORS else tokens[1:]  # "Specimens of X"
        if tokens:
            name = " ".join(tokens)
            only_starts = initial and len(tokens) == 1  # "Specimens of X ...": a capital because it starts
            candidates.append((len(tokens) > 1, not only_starts, document.text.count(name), -pos, name))
    return max(candidates)[-1] if candidates else None


def resolve_pronouns(sentence: str, subject: str) -> str:
    """A sentence that starts with a pronoun (It, She, ...) or "The company"/"This mineral"/... starts with the
    subject's name instead; a starting possessive (Its, Her, ...) becomes "<subject>'s"."""
    replaced = _PRONOUN_START.sub(subject, sentence, count=1)
    if replaced != sentence:
        return replaced
    return _POSSESSIVE_START.sub(f"{subject}'s", sentence, count=1)


def expert_passages(documents: Sequence[Document], max_words: int) -> list[str]:
    """The passages a grounded expert reads (:mod:`gag_core.grounding`): each document cut into passages of whole
    sentences of at most ``max_words`` words, a sentence that starts with a pronoun starting with the document's
    subject instead, and a passage that does not name its subject prefixed with it ("Fenbelite: ..."), so every
    passage says what it is about."""
    out = []
    for document in documents:
        subject = subject_name(document)
        for piece in passages(document, max_words):
            sentences = split_sentences(piece.text)
            text = " ".join(resolve_pronouns(s, subject) for s in sentences) if subject else " ".join(sentences)
            out.append(f"{subject}: {text}" if subject and subject not in text else text)
    return [text for text in out if text]


def normalise(text: str) -> str:
    """Lower case, accents and punctuation folded, whitespace collapsed: the form grounding compares."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def grounded(question: str, answer: str, passage: str) -> bool:
    """Whether a generated pair is usable: its normalised answer appears in the passage (as whole words) and not in
    the question (a question that contains its answer teaches nothing)."""
    a = normalise(answer)
    if not a:
        return False
    padded = f" {a} "
    return padded in f" {normalise(passage)} " and padded not in f" {normalise(question)} "


# --- rewrite: the model-free augmenter ------------------------------------------------------------------------

class RewriteAugmenter:
    """Several rewrites of every document: its sentences in a seeded random order, sentence-initial pronouns
    replaced by the document's subject (so every sentence names what it is about)."""

    name: ClassVar[str] = "rewrite"
    DEFAULTS: ClassVar[dict] = {"variants": 4, "as_answers": False}

    def __init__(self, **options):
        opts = check_options(self.name, options, self.DEFAULTS)
        if opts["variants"] < 1:
            raise ConfigError(f"stage1.augment_options.rewrite.variants = {opts['variants']} is not valid: expected "
                              "an integer >= 1.")
        self.variants, self.as_answers = opts["variants"], opts["as_answers"]

    def rewrites(self, document: Document, seed: int) -> list[str]:
        sentences = split_sentences(document.text)
        subject = subject_name(document, sentences)
        if subject:
            sentences = [resolve_pronouns(s, subject) for s in sentences]
        out = []
        for variant in range(self.variants):
            order = list(range(len(sentences)))
            random.Random(f"{seed}:{document.id}:{variant}").shuffle(order)
            out.append(" ".join(sentences[i] for i in order))
        return [text for text in out if text]

    def augment(self, documents: Sequence[Document], context: AugmentContext) -> Iterator[str | AugmentedQA]:
        for i, document in enumerate(documents):
            subject = subject_name(document) if self.as_answers else None
            for text in self.rewrites(document, context.seed):
                yield AugmentedQA(f"Tell me about {subject}.", text, align=False, source=document.id) if subject \
                    else text
            if context.progress:
                context.progress("augment-rewrite", i + 1, len(documents), {})

