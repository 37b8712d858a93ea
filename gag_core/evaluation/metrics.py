"""Answer metrics: containment (the paper's EM for general QA), exact match, token F1, STS, BERTScore.

All string metrics compare *normalised* answers (:func:`normalize_answer`) and accept the gold as one
string or a list of acceptable strings (the score is the max over them). Decisions worth knowing:

- Accents on Latin letters are folded ("Zürich" == "Zurich", "Ångström" == "angstrom"); marks on other
  scripts are kept, because there they change the letter (Cyrillic "й" is not "и", Japanese "が" is not "か").
- Punctuation (Unicode P*) and symbols (S*: "$", "%", "+", ...) become spaces, as SQuAD drops them;
  two exceptions are deleted outright instead: apostrophes ("don't" == "dont", "O'Brien" == "obrien")
  and digit-group commas between digits ("1,847" == "1847"). A decimal point becomes a space on both
  sides, so "3.14" == "3.14" but "3.14" != "314"; "1.847" (a European thousands point) != "1847".
- English articles "a", "an", "the" are dropped as whole words.
- Scripts written without spaces (CJK, kana, Thai, ...) are tokenised one character per token, so
  "東京" is found inside "首都は東京です" and token F1 is meaningful for them.
- An empty (after normalisation) gold never matches: it scores 0 / False. gag's data sets have no
  unanswerable questions, so an empty gold is a data defect, not a "no answer" label.
"""

from __future__ import annotations

import re
import statistics
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError, ModelLoadError

Gold = str | Sequence[str]

_ARTICLES = frozenset({"a", "an", "the"})
_APOSTROPHES = "'\u2019\u02bc\u2018`"
_DIGIT_GROUP = re.compile(r"(?<=\d)[,\u066c\u202f](?=\d{3}(?!\d))")
# Ranges of scripts written without spaces between words: each character is its own token.
_UNSPACED_RANGES = (
    (0x0E00, 0x0EFF),    # Thai, Lao
    (0x1000, 0x109F),    # Myanmar
    (0x1780, 0x17FF),    # Khmer
    (0x2E80, 0x2FDF),    # CJK radicals
    (0x3000, 0x30FF),    # CJK symbols, hiragana, katakana
    (0x3100, 0x31FF),    # bopomofo, katakana ext.
    (0x3400, 0x4DBF),    # CJK ext. A
    (0x4E00, 0x9FFF),    # CJK unified ideographs
    (0xF900, 0xFAFF),    # CJK compatibility ideographs
    (0xFF66, 0xFF9F),    # half-width katakana
    (0x20000, 0x2FA1F),  # CJK ext. B-F, compatibility supplement
)


def _is_unspaced(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _UNSPACED_RANGES)


def _fold_latin_accents(s: str) -> str:
    """Drop combining marks that sit on an ASCII letter; keep marks on every other script."""
    out: list[str] = []
    base_is_ascii = False
    for ch in unicodedata.normalize("NFKD", s):
        if unicodedata.category(ch) == "Mn":
            if base_is_ascii:
                continue
        else:
            base_is_ascii = ch.isascii() and ch.isalpha()
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


def normalize_answer(s: str) -> str:
    """SQuAD-style normalisation that works for any script (see the module docstring for the rules).

    >>> normalize_answer("The Ångström, (unit)!")
    'angstrom unit'
    """
    s = unicodedata.normalize("NFKC", s or "").casefold()
    s = _fold_latin_accents(s)
    s = _DIGIT_GROUP.sub("", s)
    s = "".join("" if ch in _APOSTROPHES else " " if unicodedata.category(ch)[0] in "PS" else ch for ch in s)
    return " ".join(w for w in s.split() if w not in _ARTICLES)


def answer_tokens(s: str) -> list[str]:
    """Tokens of a normalised answer: whitespace words, with unspaced-script characters split apart."""
    tokens: list[str] = []
    for word in normalize_answer(s).split():
        if not any(_is_unspaced(ch) for ch in word):
            tokens.append(word)
            continue
        run = ""
        for ch in word:
            if _is_unspaced(ch):
                if run:
                    tokens.append(run)
                    run = ""
                tokens.append(ch)
            else:
                run += ch
        if run:
            tokens.append(run)
    return tokens


def _golds(gold: Gold) -> list[str]:
    return [gold] if isinstance(gold, str) else list(gold)


def contains(pred: str, gold: Gold) -> bool:
    """The paper's general-QA "EM": a normalised gold occurs in the normalised prediction as whole tokens.

    Whole tokens means "1847" does not match inside "18470" and "art" not inside "the arts"; for
    unspaced scripts every character is a token, so this reduces to a plain substring test there.
    """
    pred_seq = " " + " ".join(answer_tokens(pred)) + " "
    for g in _golds(gold):
        toks = answer_tokens(g)
        if toks and (" " + " ".join(toks) + " ") in pred_seq:
            return True
    return False


def exact_match(pred: str, gold: Gold) -> bool:
    """True when the normalised prediction equals a normalised (non-empty) gold."""
    p = answer_tokens(pred)
    return any((toks := answer_tokens(g)) and p == toks for g in _golds(gold))


def token_f1(pred: str, gold: Gold) -> float:
    """SQuAD token-overlap F1 between prediction and gold (max over golds); 0.0 for an empty gold."""
    p = answer_tokens(pred)
    best = 0.0
    for g in _golds(gold):
        toks = answer_tokens(g)
        common = sum((Counter(p) & Counter(toks)).values())
        if not toks or common == 0:
            continue
        precision, recall = common / len(p), common / len(toks)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


# --- embedding-based scores ---------------------------------------------------------------------

def _flatten_pairs(preds: Sequence[str], golds: Sequence[Gold]) -> tuple[list[str], list[str], list[int]]:
    """Pair every prediction with each of its golds; ``owner[i]`` says which prediction pair i belongs to."""
    if len(preds) != len(golds):
        raise DataError(f"Got {len(preds)} predictions but {len(golds)} golds; pass one gold (or list) per prediction.")
    p_flat, g_flat, owner = [], [], []
    for i, (p, gold) in enumerate(zip(preds, golds)):
        for g in _golds(gold):
            p_flat.append(p)
            g_flat.append(g)
            owner.append(i)
    return p_flat, g_flat, owner


def _max_per_owner(values: Iterable[float], owner: list[int], n: int) -> list[float]:
    best = [0.0] * n
    seen = [False] * n
    for v, i in zip(values, owner):
        best[i] = v if not seen[i] else max(best[i], v)
        seen[i] = True
    return best


class StsScorer:
    """Semantic textual similarity: cosine between sentence embeddings (default: the embedded MiniLM).

    ``encoder`` lets callers share one loaded ``SentenceTransformer`` (e.g. with a ``DenseRetriever``).
    """

    def __init__(self, encoder_path: str | Path | None = None, *, encoder: Any = None, batch_size: int = 64):
        from ..models import load_sentence_encoder

        self.encoder = encoder if encoder is not None else load_sentence_encoder(encoder_path)
        self.batch_size = batch_size

    def score(self, preds: Sequence[str], golds: Sequence[Gold]) -> list[float]:
        """Cosine similarity per (prediction, gold) pair, max over a list of golds; empty gold scores 0."""
        p_flat, g_flat, owner = _flatten_pairs(preds, golds)
        if not p_flat:
            return [0.0] * len(preds)
        emb = self.encoder.encode(p_flat + g_flat, batch_size=self.batch_size, convert_to_tensor=True,
                                  normalize_embeddings=True, show_progress_bar=False)
        cos = (emb[: len(p_flat)] * emb[len(p_flat):]).sum(-1).tolist()
        cos = [c if g.strip() else 0.0 for c, g in zip(cos, g_flat)]
        return _max_per_owner(cos, owner, len(preds))


class BertScorer:
    """BERTScore-style F1: greedy cosine matching of contextual token embeddings (no idf, no rescaling).

    ``model`` is a transformers encoder id or folder (the original uses e.g. ``roberta-large`` layer 17);
    ``layer`` picks the hidden layer (default: the last). Scores are not comparable to published
    BERTScore numbers unless model, layer and baseline rescaling match.
    """

    def __init__(self, model: str | Path, *, layer: int = -1, batch_size: int = 32, device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(model))
            self.model = AutoModel.from_pretrained(str(model)).to(device).eval()
        except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear message
            raise ModelLoadError(
                f"Could not load the BERTScore model {str(model)!r} ({type(exc).__name__}: {exc}). "
                "Pass a local folder or a Hub id of a transformers encoder, e.g. roberta-large."
            ) from exc
        self.layer, self.batch_size, self.device = layer, batch_size, device

    def _embed(self, texts: list[str]) -> list[Any]:
        import torch

        out = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[start:start + self.batch_size], padding=True, truncation=True,
                                 return_tensors="pt", return_special_tokens_mask=True)
            keep = enc["attention_mask"].bool() & ~enc.pop("special_tokens_mask").bool()
            with torch.no_grad():
                hidden = self.model(**enc.to(self.device), output_hidden_states=True)
            states = torch.nn.functional.normalize(hidden.hidden_states[self.layer].float(), dim=-1)
            out.extend(states[i][keep[i].to(states.device)] for i in range(states.shape[0]))
        return out

    def score(self, preds: Sequence[str], golds: Sequence[Gold]) -> list[float]:
        """BERTScore F1 per prediction, max over a list of golds; empty text on either side scores 0."""
        p_flat, g_flat, owner = _flatten_pairs(preds, golds)
        p_emb, g_emb = self._embed(p_flat), self._embed(g_flat)
        f1 = []
        for p, g in zip(p_emb, g_emb):
            if len(p) == 0 or len(g) == 0:
                f1.append(0.0)
                continue
            sim = p @ g.T
            precision, recall = sim.max(1).values.mean().item(), sim.max(0).values.mean().item()
            f1.append(2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0)
        return _max_per_owner(f1, owner, len(preds))


# --- summaries ----------------------------------------------------------------------------------

def summarize_latencies(seconds: Sequence[float]) -> dict[str, float | None]:
    """Median and 95th percentile (linear interpolation) of latencies; ``None`` values when empty."""
    xs = sorted(float(x) for x in seconds)
    if not xs:
        return {"median": None, "p95": None}
    pos = 0.95 * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return {"median": statistics.median(xs), "p95": xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)}


def aggregate(rows: Iterable[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, float | None]:
    """Mean of each key over rows (bools count as 0/1); rows missing a key or holding ``None`` are skipped.

    A key with no values maps to ``None``.
    """
    rows = list(rows)
    means: dict[str, float | None] = {}
    for key in keys:
        vals = [float(r[key]) for r in rows if r.get(key) is not None]
        means[key] = sum(vals) / len(vals) if vals else None
    return means


def aggregate_by(rows: Iterable[Mapping[str, Any]], by: str, keys: Sequence[str]) -> list[dict[str, Any]]:
    """Group rows by ``row[by]`` (first-seen order) and give each group ``{by, "n", **means}``."""
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r.get(by), []).append(r)
    return [{by: name, "n": len(group), **aggregate(group, keys)} for name, group in groups.items()]
