"""What ``gag update-domain`` replays, and how a correction replaces what it corrects.

A module ships the data its expert was trained on (``module.TRAIN_QA``: every Stage I QA row, and
``module.CORPUS_SAMPLE``: a seeded sample of the corpus passages), so an update can rehearse old facts while it
learns new ones. A new QA row *corrects* an old one when both are about the same fact, i.e. the same question
up to case, punctuation and spacing, or the same ``entity`` + ``attribute`` when the rows have those fields
(a new row without them takes them from the old row with its question), and their answers differ (``value``
when both rows have one, else ``answer``, compared the same way). A corrected row leaves the replay set and
the module's data, so its old answer is never rehearsed again; in the passages a grounded expert reads, the
sentence that stated it is replaced by the new answer (``corrected_passages``).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..corpus import split_sentences
from ..errors import DataError
from ..jsonl import iter_objects
from ..module import CORPUS_SAMPLE, TRAIN_QA
from .data import QAPair, TrainData

CORPUS_SAMPLE_SIZE = 256  # corpus passages shipped in a module for replay
FACT_FIELDS = ("entity", "attribute", "value")  # kept with every shipped QA row: they identify a fact


def normalised(text: str) -> str:
    """Lower case, punctuation as spaces, single spaces: 'What colour is X?' == 'what colour is x'."""
    return " ".join(re.sub(r"[^\w\s]", " ", str(text).lower()).split())


def qa_row(pair: QAPair, split: str) -> dict:
    """The shipped form of a QA pair: question, answer, its fact fields, and ``split`` (qa: aligned and a router
    exemplar; expert_only: Stage I only)."""
    row = {"question": pair.question, "answer": pair.answer, "split": split}
    row.update({k: pair.meta[k] for k in FACT_FIELDS if isinstance(pair.meta.get(k), str)})
    return row


def module_data_files(data: TrainData, seed: int) -> dict[str, str]:
    """``{TRAIN_QA: JSONL, CORPUS_SAMPLE: JSONL}`` for a module trained on ``data`` (no sample without a corpus)."""
    rows = [qa_row(p, "qa") for p in data.qa] + [qa_row(p, "expert_only") for p in data.expert_only]
    return data_files(rows, data.corpus or [], seed)


def data_files(rows: list[dict], corpus: list[str], seed: int) -> dict[str, str]:
    """``TRAIN_QA`` holding ``rows``, and ``CORPUS_SAMPLE`` holding a seeded sample of ``corpus`` (if any)."""
    files = {TRAIN_QA: jsonl_text(rows)}
    if corpus:
        sample = random.Random(seed).sample(corpus, min(len(corpus), CORPUS_SAMPLE_SIZE))
        files[CORPUS_SAMPLE] = jsonl_text({"text": text} for text in sample)
    return files


def jsonl_text(rows) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


def read_rows(path: Path, required: str) -> list[dict]:
    """The objects of a shipped JSONL file; every one must have a string ``required`` field."""
    rows = []
    for line, row in iter_objects(path):
        if not isinstance(row.get(required), str):
            raise DataError(f"{path} line {line} has no {required!r} string; the module's data is damaged. "
                            "Retrain the module with `gag train-domain`, or update it with --replay 0.")
        rows.append(row)
    return rows


def _fact(row: dict) -> tuple[str, str] | None:
    entity, attribute = row.get("entity"), row.get("attribute")
    if isinstance(entity, str) and isinstance(attribute, str):
        return normalised(entity), normalised(attribute)
    return None


def _answer(row: dict, other: dict) -> str:
    both_valued = isinstance(row.get("value"), str) and isinstance(other.get("value"), str)
    return normalised(row["value"] if both_valued else row["answer"])


@dataclass
class ReplayPlan:
    """The old rows an update keeps (and samples its replay from) and what the new rows do to them."""

    kept: list[dict]  # old rows that stay in the module (corrected and repeated ones removed)
    replay: list[dict]  # the seeded sample of ``kept`` rehearsed by the update
    corrections: int = 0  # new rows that change the answer of a fact the module knew
    added: int = 0  # new rows about a question / fact the module did not have
    replaced: list[dict] = field(default_factory=list)  # old rows dropped because a new row corrects them


def plan_replay(old: list[dict], new: list[dict], fraction: float, seed: int) -> ReplayPlan:
    """Drop the old rows the new ones correct or repeat, and sample ``fraction`` of the rest for replay."""
    by_question: dict[str, list[dict]] = {}
    by_fact: dict[tuple[str, str], list[dict]] = {}
    for row in old:
        by_question.setdefault(normalised(row["question"]), []).append(row)
        if _fact(row):
            by_fact.setdefault(_fact(row), []).append(row)
    corrections, added, corrected, repeated = 0, 0, set(), set()
    for row in new:
        same_question = by_question.get(normalised(row["question"]), [])
        fact = _fact(row) or next((_fact(r) for r in same_question if _fact(r)), None)
        related = {id(r): r for r in same_question + by_fact.get(fact, [])}
        changed = {i for i, r in related.items() if _answer(r, row) != _answer(row, r)}
        corrections, added = corrections + bool(changed), added + (not related)
        corrected |= changed
        repeated |= {id(r) for r in same_question}
    kept = [r for r in old if id(r) not in corrected | repeated]
    count = round(fraction * len(kept))
    replay = random.Random(seed).sample(kept, count) if count else []
    return ReplayPlan(kept, replay, corrections, added, [r for r in old if id(r) in corrected])


def without_stale(texts: list[str], replaced: list[dict]) -> list[str]:
    """``texts`` without the passages that state a replaced answer: those naming a corrected row's entity and
    its old value (rows without both fields cannot be matched in free text and remove nothing)."""
    stale = [(normalised(r["entity"]), normalised(r["value"])) for r in replaced
             if isinstance(r.get("entity"), str) and isinstance(r.get("value"), str)]
    if not stale:
        return texts
    return [t for t in texts if not any(e in normalised(t) and v in normalised(t) for e, v in stale)]


def corrected_passages(texts: list[str], replaced: list[dict], new_rows: list[dict]) -> list[str]:
    """``texts`` with every replaced answer corrected in the passages naming the corrected row's entity: the old
    value is replaced by the new one where it stands (the sentence keeps the other facts it states: "X discovered
    it in 1805 near Y" keeps X and Y when the year changes); without a new ``value`` to put there, the sentence
    naming the old value becomes the correcting row's answer (once per passage)."""
    fixes = []
    for old in replaced:
        fix = next((n for n in new_rows if (_fact(n) and _fact(n) == _fact(old))
                    or normalised(n["question"]) == normalised(old["question"])), None)
        if fix is not None and isinstance(old.get("entity"), str) and isinstance(old.get("value"), str):
            fixes.append((old["entity"], old["value"], fix.get("value") if isinstance(fix.get("value"), str) else None,
                          fix["answer"].strip()))
    out = []
    for text in texts:
        for entity, old_value, new_value, answer in fixes:
            key = f" {normalised(old_value)} "
            if normalised(entity) not in normalised(text) or key not in f" {normalised(text)} ":
                continue
            in_place = re.compile(rf"(?<!\w){re.escape(old_value)}(?!\w)", re.IGNORECASE)
            if new_value and in_place.search(text):
                text = in_place.sub(lambda _: new_value, text)
                continue
            sentences = split_sentences(text)
            hit = [i for i, s in enumerate(sentences) if key in f" {normalised(s)} "]
            text = " ".join(answer if i == hit[0] else s for i, s in enumerate(sentences) if i not in hit[1:])
            if normalised(entity) not in normalised(text):  # the passage must still say what it is about
                text = f"{entity}: {text}"
        out.append(text)
    return out


def with_unstated_facts(passages: list[str], rows: list[dict]) -> list[str]:
    """``passages`` plus the new QA rows whose answer no passage states: a grounded expert trained for one epoch
    reads new facts rather than memorising them, so a fact that arrives without a document must be readable too.
    A row naming its ``entity`` joins the first passage about that entity (or one new passage per entity), so the
    expert's top passage for that entity holds all of its facts; a row without one becomes "question answer"."""
    texts = [f" {normalised(p)} " for p in passages]
    out, added = list(passages), {}
    for row in rows:
        value = f" {normalised(row['value'] if isinstance(row.get('value'), str) else row['answer'])} "
        entity = row.get("entity") if isinstance(row.get("entity"), str) else None
        named = f" {normalised(entity)} " if entity else " "
        if any(value in t and named in t for t in texts):
            continue
        answer = row["answer"].strip()
        if entity is None:
            out.append(f"{row['question'].strip()} {answer}")
            continue
        if entity not in added:
            own = next((i for i, t in enumerate(texts) if named in t), None)
            if own is None:
                out.append("" if normalised(entity) in normalised(answer) else f"{entity}:")
                own = len(out) - 1
            added[entity] = own
        out[added[entity]] = f"{out[added[entity]]} {answer}".strip()
    return out
