"""The one generation path: left padding, the pad-id fallback, and decoding with per-row stops and streaming.

``generate`` runs one ``model.generate`` call for a left-padded batch and tracks every row on its own: the
row's new tokens, its text (cut before the first stop string), why it finished, and the text pieces handed to
``on_text`` as tokens arrive. The tracker is the call's stopping criterion, so it sees each step's token
before ``generate`` decides whether to go on: a row stops on the very step its text reaches a stop string or
its cancel event is seen, and the call ends when every row has stopped. A batch's prefill reads the prompt
prefix its rows share once and groups rows by length (gag_core.prefill); the answers are the same.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .errors import ConfigError
from .prefill import shared_prefill

PREFILL_ENV = "GAG_PREFILL"  # "plain" turns the shared-prefix prefill off (gag_core.prefill), e.g. to compare

FINISH_REASONS = ("stop", "length", "cancelled")


@dataclass
class GenerationOptions:
    max_new_tokens: int = 64  # answer budget in tokens
    temperature: float = 0.0  # 0 = greedy; > 0 samples from the softened distribution
    top_p: float = 1.0  # nucleus sampling: keep the smallest set of tokens holding this probability mass
    stop: tuple[str, ...] = ()  # stop strings: the text is cut before the first one, finish_reason "stop"
    seed: int | None = None  # sampling seed (None = fresh randomness); the same seed gives the same sample

    def __post_init__(self):
        self.stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be an integer >= 1; got {self.max_new_tokens!r}.")
        if not self.temperature >= 0:
            raise ConfigError(f"temperature must be >= 0 (0 = greedy); got {self.temperature!r}.")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1]; got {self.top_p!r}.")
        if not all(isinstance(s, str) and s for s in self.stop):
            raise ConfigError(f"stop strings must be non-empty strings; got {list(self.stop)!r}.")


@dataclass
class Generated:
    text: str  # the decoded completion (special tokens skipped, outer whitespace stripped), cut before a stop string
    completion_tokens: int  # tokens the row generated, its end-of-sequence token not counted
    finish_reason: str  # "stop" (eos or a stop string), "length" (budget spent) or "cancelled"
    token_ids: list[int] = field(default_factory=list)  # the completion's tokens (eos excluded)


def pad_id(tokenizer) -> int:
    """The id that fills padding: the tokenizer's pad token, else 0 (never eos: padding must not read as an end)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def left_pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into (ids [B, T], attention mask [B, T]); generation continues at the right edge."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        attn[i, width - len(s):] = 1
    return ids.to(device), attn.to(device)


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Where the settled part of a growing text ends: an incomplete UTF-8 tail ('\\ufffd'), trailing whitespace
    (a tokenizer may tidy it once the next token arrives) and a partial stop string wait for more tokens."""
    end = len(text.rstrip("\ufffd"))
    settled = min(end, len(text[:end].rstrip()))
    for stop in stops:
        for k in range(min(len(stop) - 1, end), 0, -1):
            if text.endswith(stop[:k], 0, end):
                settled = min(settled, end - k)
                break
    return settled


class _Rows:
    """Per-row state of one ``generate`` call; called by ``generate`` as its stopping criterion."""

    def __init__(self, tokenizer, n: int, options: GenerationOptions, cancel, on_text):
        self.tokenizer, self.options, self.on_text = tokenizer, options, on_text
        self.cancel = list(cancel) if cancel is not None else [None] * n
        self.eos = tokenizer.eos_token_id
        self.ids: list[list[int]] = [[] for _ in range(n)]
        self.text = [""] * n
        self.reason: list[str | None] = [None] * n  # None while the row is running
        self.sent = [0] * n  # characters of the text already handed to on_text

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        for row, token in enumerate(input_ids[:, -1].tolist()):
            if self.reason[row] is None:
                self._step(row, token)
        return torch.tensor([r is not None for r in self.reason], dtype=torch.bool, device=input_ids.device)

    def _step(self, row: int, token: int) -> None:
        if token == self.eos:
            return self._finish(row, "stop")
        self.ids[row].append(token)
        watched = self.options.stop or self.on_text is not None  # else the text is decoded once, at the end
        text = self._decode(row) if watched else ""
        cuts = [i for i in (text.find(s) for s in self.options.stop) if i >= 0]
        if cuts:
            return self._finish(row, "stop", text[:min(cuts)])
        event = self.cancel[row]
        if event is not None and event.is_set():
            return self._finish(row, "cancelled", text if watched else None)
        self.text[row] = text
        self._emit(row, _held_back(text, self.options.stop))

    def _decode(self, row: int) -> str:
        """The row's text so far, leading whitespace dropped (what a streamed answer and its final text share)."""
        return self.tokenizer.decode(self.ids[row], skip_special_tokens=True).lstrip()

    def _finish(self, row: int, reason: str, text: str | None = None) -> None:
        self.reason[row] = reason
        self.text[row] = (self._decode(row) if text is None else text).rstrip()
        self._emit(row, len(self.text[row]))

    def _emit(self, row: int, end: int) -> None:
        if self.on_text is not None and end > self.sent[row]:
            piece, self.sent[row] = self.text[row][self.sent[row]:end], end
            self.on_text(row, piece)

    def results(self) -> list[Generated]:
        for row, reason in enumerate(self.reason):
            if reason is None:  # still running when the budget ran out
                self._finish(row, "length")
        return [Generated(t, len(ids), r, ids) for t, ids, r in zip(self.text, self.ids, self.reason)]


class _Sampler:
    """Temperature and top-p sampling as the last logits processor: it draws each row's token with the row's
    own seeded generator and leaves only that token finite, so greedy selection takes it. A row's draws do not
    depend on the rest of the batch, and the global random state is never touched."""

    def __init__(self, n: int, options: GenerationOptions):
        self.n, self.options = n, options
        self.generators: list[torch.Generator] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if not self.generators:
            seed = self.options.seed if self.options.seed is not None else torch.Generator().seed()
            self.generators = [torch.Generator(device=scores.device).manual_seed(seed) for _ in range(self.n)]
        probs = torch.softmax(scores.float() / self.options.temperature, dim=-1)
        if self.options.top_p < 1:
            ranked, order = probs.sort(dim=-1, descending=True)
            ranked[(ranked.cumsum(-1) - ranked) >= self.options.top_p] = 0  # the mass before a token already suffices
            probs = torch.zeros_like(probs).scatter(-1, order, ranked)
        picks = torch.stack([torch.multinomial(probs[b], 1, generator=g) for b, g in enumerate(self.generators)])
        return torch.full_like(scores, float("-inf")).scatter(-1, picks, 0.0)


def generate(model, tokenizer, inputs: dict, options: GenerationOptions | None = None, *,
             cancel: Sequence[threading.Event | None] | None = None,
             on_text: Callable[[int, str], None] | None = None) -> list[Generated]:
    """Complete a left-padded batch: ``inputs`` is {"input_ids" or "inputs_embeds", "attention_mask"}.

    ``cancel`` holds one event (or None) per row: a set event stops that row at its next token, the other
    rows go on unchanged. ``on_text(row, piece)`` receives each row's text as it settles; a row's pieces joined
    equal its final ``text``. Each row generates at least one token.
    """
    from transformers import LogitsProcessorList, StoppingCriteriaList

    options = options or GenerationOptions()
    n = int(inputs["attention_mask"].shape[0])
    if cancel is not None and len(cancel) != n:
        raise ConfigError(f"cancel has {len(cancel)} entries for a batch of {n} rows; give one event (or None) per row.")
    rows = _Rows(tokenizer, n, options, cancel, on_text)
    sampler = [_Sampler(n, options)] if options.temperature > 0 else []
    with torch.no_grad():
        prepared = shared_prefill(model, inputs) if os.environ.get(PREFILL_ENV, "shared") != "plain" else None
        model.generate(**(prepared or inputs), max_new_tokens=options.max_new_tokens, do_sample=False,
                       pad_token_id=pad_id(tokenizer), eos_token_id=tokenizer.eos_token_id,
                       logits_processor=LogitsProcessorList(sampler),
                       stopping_criteria=StoppingCriteriaList([rows]))
    return rows.results()
