"""``synthetic-qa``: a generator LM writes QA pairs from each passage of the corpus; only grounded pairs are kept.

The generator (``stage1.augment_options.synthetic-qa.generator``, ``--qa-generator``; default the profile's base
model) reads one passage at a time and writes ``Q: ... / A: ...`` lines. A pair is kept when its normalised
answer appears in the passage and not in the question (``augment.grounded``); kept and dropped counts go to
``train-log.jsonl``. Results are appended per passage to ``work/augment/synthetic-qa.jsonl`` (fsync'd), so a
rerun after ``kill -9`` skips every passage already written and generates each passage once.
"""

from __future__ import annotations

import gc
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

from ..corpus import Document, passages
from ..errors import ConfigError
from ..generation import GenerationOptions, generate, left_pad, pad_id
from ..jsonl import append_objects, parse_line
from .augment import AugmentContext, AugmentedQA, check_options, grounded, normalise
from .loop import append_log

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


def read_done(path: Path) -> dict[str, dict]:
    """The finished passages' rows by key; a torn last line (a kill mid-write) is cut off the file."""
    if not path.exists():
        return {}
    raw = path.read_bytes()
    done, keep = {}, 0
    for line in raw.splitlines(keepends=True):
        row, _ = parse_line(line, 2)
        if not line.endswith(b"\n") or row is None or "key" not in row:
            break
        done[row["key"]] = row
        keep += len(line)
    if keep != len(raw):
        with open(path, "r+b") as f:
            f.truncate(keep)
    return done


class GeneratorAugmenter:
    """What a generator-based augmenter shares: the generator LM, loaded on first use and freed after."""

    _model = None

    def complete(self, generator: str, prompts: list[str], context: AugmentContext, max_new_tokens: int,
                 prefix: str = "") -> list[str]:
        """The generator's greedy completions of ``prompts`` (inside its chat template; a model without one
        continues ``prompt + prefix``, and its completions are returned after ``prefix``)."""
        from ..models import chat_template_kwargs, load_causal_lm, load_tokenizer

        if self._model is None:
            self._model = (load_causal_lm(generator, dtype=context.dtype, device=context.device),
                           load_tokenizer(generator))
        model, tokenizer = self._model
        if tokenizer.chat_template:
            ids = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=True, return_dict=False,
                                                 add_generation_prompt=True, **chat_template_kwargs(tokenizer))
                   for p in prompts]
        else:
            ids = [tokenizer(p + prefix, add_special_tokens=False)["input_ids"] for p in prompts]
        input_ids, attn = left_pad(ids, pad_id(tokenizer), context.device)
        out = generate(model, tokenizer, {"input_ids": input_ids, "attention_mask": attn},
                       GenerationOptions(max_new_tokens=max_new_tokens))
        return [g.text if tokenizer.chat_template else prefix + g.text for g in out]

    def release(self) -> None:
        """Free the generator (Stage I loads the expert next)."""
        self._model = None
        gc.collect()


class SyntheticQAAugmenter(GeneratorAugmenter):
    """QA pairs written from every passage by a generator LM, kept only when grounded in the passage."""

    name: ClassVar[str] = "synthetic-qa"
    DEFAULTS: ClassVar[dict] = {"generator": None, "pairs_per_passage": 4, "passage_words": 120,
                                "max_new_tokens": 160, "batch_size": 8}

    def __init__(self, **options):
        opts = check_options(self.name, options, self.DEFAULTS)
        for key in ("pairs_per_passage", "passage_words", "max_new_tokens", "batch_size"):
            if not opts[key] >= 1:
                raise ConfigError(f"stage1.augment_options.synthetic-qa.{key} = {opts[key]!r} is not valid: expected "
                                  "an integer >= 1.")
        if opts["generator"] is not None and not (isinstance(opts["generator"], str) and opts["generator"].strip()):
            raise ConfigError("stage1.augment_options.synthetic-qa.generator must be a model id or folder "
                              "(--qa-generator), or unset for the profile's base model.")
        self.options = opts

    def prompt(self, passage: str) -> str:
        return PROMPT.format(n=self.options["pairs_per_passage"], passage=passage)

    def key(self, generator: str, passage: Document) -> str:
        spec = json.dumps([generator, self.options["pairs_per_passage"], self.options["max_new_tokens"],
                           self.prompt(passage.text)])
        return hashlib.sha256(spec.encode()).hexdigest()[:20]

    def augment(self, documents: Sequence[Document], context: AugmentContext) -> Iterator[AugmentedQA]:
        generator = self.options["generator"] or context.generator
        pieces = [p for d in documents for p in passages(d, self.options["passage_words"])]
        path = context.work / "augment" / "synthetic-qa.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        done = read_done(path)
        keys = [self.key(generator, p) for p in pieces]
        todo = [i for i, k in enumerate(keys) if k not in done]
        size = self.options["batch_size"]
        try:
            for start in range(0, len(todo), size):
                batch = [pieces[i] for i in todo[start:start + size]]
                texts = self.complete(generator, [self.prompt(p.text) for p in batch], context,
                                      self.options["max_new_tokens"], prefix="\nQ:")
                rows = [self._row(keys[i], p, text) for i, p, text in zip(todo[start:start + size], batch, texts)]
                append_objects(path, rows)
                done.update((row["key"], row) for row in rows)
                self._report(context, pieces, keys, done)
        finally:
            self.release()
        rows = [done[k] for k in keys]
        self._log(context, generator, rows)
        for piece, row in zip(pieces, rows):
            for q, a in row["pairs"]:
                yield AugmentedQA(q, a, align=True, source=piece.id)

    def _row(self, key: str, passage: Document, text: str) -> dict:
        kept, dropped = keep_grounded(parse_pairs(text), passage.text)
        return {"key": key, "passage": passage.id, "pairs": kept, "dropped": dropped}

    def _report(self, context: AugmentContext, pieces, keys, done) -> None:
        if context.progress:
            finished = [done[k] for k in keys if k in done]
            context.progress(f"augment-{self.name}", len(finished), len(pieces),
                             {"kept": sum(len(r["pairs"]) for r in finished),
                              "dropped": sum(r["dropped"] for r in finished)})

    def _log(self, context: AugmentContext, generator: str, rows: list[dict]) -> None:
        kept, dropped = sum(len(r["pairs"]) for r in rows), sum(r["dropped"] for r in rows)
        append_log(context.log_path, {"stage": f"augment-{self.name}", "event": "done", "generator": generator,
                                      "passages": len(rows), "kept": kept, "dropped": dropped})
