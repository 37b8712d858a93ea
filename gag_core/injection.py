"""Injection: the base prompt with K memory slots, and the one pure merge into ``inputs_embeds``.

Slot positions are recorded while the prompt is built (template text and user text are tokenised
separately and concatenated), never found by searching the user's text for a marker. A question that
contains the placeholder text, chat-template markers or special tokens is tokenised as literal text, so
it can neither move, add nor remove an injected vector. The base vocabulary is never resized.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .errors import InjectionError, InputError
from .generation import left_pad, pad_id
from .models import chat_template_kwargs

DEFAULT_INSTRUCTION = "You are a helpful assistant with access to expert knowledge."
KNOWLEDGE_TEMPLATE = (
    "{instruction}\nPlease answer the following question based on the knowledge provided.\n"
    "Question: {question}\nKnowledge: {slots}\n"
)
# Private-use sentinels used only inside our own template rendering; user text never passes through them.
_Q = "\ue000GAG_QUESTION\ue000"
_S = "\ue000GAG_SLOTS\ue000"
MAX_QUESTION_TOKENS = 2048


@dataclass
class BuiltPrompt:
    """Token ids of one base prompt and the positions reserved for injected vectors."""

    input_ids: list[int]
    slot_positions: list[int] = field(default_factory=list)
    background: str | None = None  # the expert's text whose readout fills the slots (set when the memory is read)

    @property
    def num_slots(self) -> int:
        return len(self.slot_positions)


@dataclass
class PromptBatch:
    input_ids: torch.Tensor  # [B, T] left-padded
    attention_mask: torch.Tensor  # [B, T]
    slot_mask: torch.Tensor  # [B, T] bool, True at injected positions


class InjectionHook:
    """Builds base prompts with K slot positions inside the base model's chat template."""

    def __init__(self, tokenizer, instruction: str = DEFAULT_INSTRUCTION, template: str = KNOWLEDGE_TEMPLATE,
                 max_question_tokens: int = MAX_QUESTION_TOKENS):
        q_at, s_at = template.find("{question}"), template.find("{slots}")
        if (template.count("{question}"), template.count("{slots}")) != (1, 1) or q_at > s_at:
            raise InjectionError(f"The prompt template must contain {{question}} once, followed by {{slots}} once; "
                                 f"got {template!r}. Fix the module's prompt.template.")
        try:
            template.format(instruction="", question="", slots="")
        except (KeyError, IndexError, ValueError) as exc:
            raise InjectionError(f"The prompt template {template!r} has a field other than {{instruction}}, "
                                 f"{{question}} and {{slots}} ({exc!r}); escape literal braces as {{{{ }}}}.") from None
        self.tokenizer = tokenizer
        self.instruction = instruction
        self.template = template
        self.max_question_tokens = max_question_tokens
        self.slot_token_id = pad_id(tokenizer)

    # -- text pieces --------------------------------------------------------------------------
    def _render(self, history: list[dict], content: str) -> str:
        messages = list(history) + [{"role": "user", "content": content}]
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True, **chat_template_kwargs(self.tokenizer))
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "

    def _template_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def _user_ids(self, text: str) -> list[int]:
        # split_special_tokens: "<|im_start|>" typed by a user stays literal text, never a control token.
        return self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"] if text else []

    def check_question(self, question: str) -> str:
        if not isinstance(question, str) or not question.strip():
            raise InputError("The question is empty; pass a non-empty question.")
        return question

    # -- prompts ------------------------------------------------------------------------------
    def _question_ids(self, question: str) -> list[int]:
        """The question's tokens (as the user's text), refused when empty or over ``max_question_tokens``."""
        self.check_question(question)
        q_ids = self._user_ids(question)
        if len(q_ids) > self.max_question_tokens:
            raise InputError(f"The question is {len(q_ids)} tokens long; the limit is {self.max_question_tokens}. "
                             "Shorten it or raise max_question_tokens.")
        return q_ids

    def _knowledge_parts(self, question: str, history: list[dict] | None) -> tuple[list[int], list[int]]:
        """The knowledge template's ids before the knowledge (the question included) and after it."""
        q_ids = self._question_ids(question)
        content = self.template.format(instruction=self.instruction, question=_Q, slots=_S)
        rendered = self._render(history or [], content)
        pre, rest = rendered.rsplit(_Q, 1)  # history text may contain the sentinels; ours is the last
        mid, post = rest.split(_S, 1)
        return self._template_ids(pre) + q_ids + self._template_ids(mid), self._template_ids(post)

    def build(self, question: str, num_slots: int, history: list[dict] | None = None,
              text: str | None = None) -> BuiltPrompt:
        """The knowledge prompt for ``question`` with ``num_slots`` reserved positions; ``text`` (gag+rag: retrieved
        passages) follows the slots as more knowledge."""
        ids, post = self._knowledge_parts(question, history)
        start = len(ids)
        extra = self._user_ids("\n" + text) if text else []
        return BuiltPrompt(ids + [self.slot_token_id] * num_slots + extra + post, list(range(start, start + num_slots)))

    def build_plain(self, question: str, history: list[dict] | None = None) -> BuiltPrompt:
        """The general route: the question as the user's turn, no knowledge slots."""
        q_ids = self._question_ids(question)
        pre, post = self._render(history or [], _Q).rsplit(_Q, 1)
        return BuiltPrompt(self._template_ids(pre) + q_ids + self._template_ids(post), [])

    def build_with_text(self, question: str, knowledge: str, history: list[dict] | None = None) -> BuiltPrompt:
        """The same instruction with knowledge as text (RAG and text-pasting baselines)."""
        ids, post = self._knowledge_parts(question, history)
        return BuiltPrompt(ids + self._user_ids(knowledge) + post, [])

    def collate(self, prompts: list[BuiltPrompt]) -> PromptBatch:
        """Left-pad a list of prompts into tensors (left padding keeps generation aligned at the end)."""
        ids, attn = left_pad([p.input_ids for p in prompts], pad_id(self.tokenizer), "cpu")
        slots = torch.zeros_like(ids, dtype=torch.bool)
        for i, p in enumerate(prompts):
            offset = ids.shape[1] - len(p.input_ids)
            slots[i, [offset + pos for pos in p.slot_positions]] = True
        return PromptBatch(ids, attn, slots)


def merge_memory(inputs_embeds: torch.Tensor, slot_mask: torch.Tensor, memory: torch.Tensor | None) -> torch.Tensor:
    """Place projected memory vectors at the slot positions of ``inputs_embeds`` (pure; returns a new tensor).

    ``inputs_embeds`` is [B, T, H], ``slot_mask`` [B, T] bool, ``memory`` [B, K, H] (or [K, H] for B = 1).
    Every row must have exactly K slots. Memory is cast to the embeddings' dtype and device.
    """
    if memory is None:
        if bool(slot_mask.any()):
            raise InjectionError(f"The prompt has {int(slot_mask.sum())} slot positions but no memory was given.")
        return inputs_embeds
    if memory.dim() == 2:
        memory = memory.unsqueeze(0)
    if memory.dim() != 3:
        raise InjectionError(f"Memory must be [batch, slots, hidden]; got shape {tuple(memory.shape)}.")
    batch, _, hidden = inputs_embeds.shape
    if memory.shape[0] != batch:
        raise InjectionError(f"Memory has {memory.shape[0]} rows but the prompt batch has {batch}.")
    if memory.shape[2] != hidden:
        raise InjectionError(
            f"Memory vectors have size {memory.shape[2]} but the base model's embeddings have size {hidden}; "
            "the projector was trained for a different base model.")
    per_row = slot_mask.sum(dim=1)
    if bool((per_row != memory.shape[1]).any()):
        raise InjectionError(
            f"The prompt has {per_row.tolist()} slot positions per row but {memory.shape[1]} memory vectors per row "
            "were given; build the prompt with num_slots equal to the projector's slot count.")
    mask = slot_mask.to(inputs_embeds.device).unsqueeze(-1).expand_as(inputs_embeds)
    memory = memory.to(device=inputs_embeds.device, dtype=inputs_embeds.dtype)
    return inputs_embeds.masked_scatter(mask, memory.reshape(-1))
