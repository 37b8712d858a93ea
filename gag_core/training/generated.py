"""What the generator-based augmenters (``synthetic-qa``, ``paraphrase``) share: their settings check, the
generator LM (loaded on first use, freed after), and resumable generation.

Each item (a passage, a question) is generated once: its row -- ``{"key", <kept>: [...], "dropped": n, ...}`` --
is appended to ``work/augment/<name>.jsonl`` (fsync'd) as soon as its batch is done, so a rerun after
``kill -9`` reads the finished rows back and generates only the rest; a torn last line is cut off.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ConfigError
from ..generation import GenerationOptions, generate, left_pad, pad_id
from ..jsonl import append_objects, parse_line
from .augment import AugmentContext, check_options
from .loop import append_log


def read_done(path: Path) -> dict[str, dict]:
    """The finished items' rows by key; a torn last line (a kill mid-write) is cut off the file."""
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
    """Base of an augmenter whose generator LM writes one row per item (see the module doc).

    A subclass sets ``name``, ``DEFAULTS`` (with ``generator``, ``max_new_tokens`` and ``batch_size``),
    ``POSITIVE`` (integer settings that must be >= 1), ``KEPT`` (the row field listing what was kept) and
    ``PREFIX`` (what a generator without a chat template is prompted to continue with)."""

    name: ClassVar[str] = ""
    DEFAULTS: ClassVar[dict] = {}
    POSITIVE: ClassVar[tuple[str, ...]] = ("max_new_tokens", "batch_size")
    KEPT: ClassVar[str] = ""
    PREFIX: ClassVar[str] = ""
    _model = None

    def __init__(self, **options):
        opts = check_options(self.name, options, self.DEFAULTS)
        for key in self.POSITIVE:
            if not opts[key] >= 1:
                raise ConfigError(f"stage1.augment_options.{self.name}.{key} = {opts[key]!r} is not valid: expected "
                                  "an integer >= 1.")
        if opts["generator"] is not None and not (isinstance(opts["generator"], str) and opts["generator"].strip()):
            raise ConfigError(f"stage1.augment_options.{self.name}.generator must be a model id or folder "
                              "(--qa-generator), or unset for the profile's base model.")
        self.options = opts

    def generate_rows(self, context: AugmentContext, keys: list[str], items: Sequence[Any],
                      prompt: Callable[[Any], str], row: Callable[[str, Any, str], dict]) -> list[dict]:
        """Every item's row, in order: finished ones read back, the others generated in batches and appended."""
        generator = self.options["generator"] or context.generator
        path = context.work / "augment" / f"{self.name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        done = read_done(path)
        todo = [i for i, k in enumerate(keys) if k not in done]
        size = self.options["batch_size"]
        try:
            for start in range(0, len(todo), size):
                batch = todo[start:start + size]
                texts = self.complete(generator, [prompt(items[i]) for i in batch], context,
                                      self.options["max_new_tokens"], prefix=self.PREFIX)
                rows = [row(keys[i], items[i], text) for i, text in zip(batch, texts)]
                append_objects(path, rows)
                done.update((r["key"], r) for r in rows)
                self._report(context, [done[k] for k in keys if k in done], len(keys))
        finally:
            self.release()
        rows = [done[k] for k in keys]
        append_log(context.log_path, {"stage": f"augment-{self.name}", "event": "done", "generator": generator,
                                      "items": len(rows), "kept": sum(len(r[self.KEPT]) for r in rows),
                                      "dropped": sum(r["dropped"] for r in rows)})
        return rows

    def _report(self, context: AugmentContext, finished: list[dict], total: int) -> None:
        if context.progress:
            context.progress(f"augment-{self.name}", len(finished), total,
                             {"kept": sum(len(r[self.KEPT]) for r in finished),
                              "dropped": sum(r["dropped"] for r in finished)})

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
