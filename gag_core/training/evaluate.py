"""Greedy evaluation helpers used during training and by the demo (answer containment)."""

from __future__ import annotations

import torch

from ..generation import GenerationOptions, generate
from ..injection import InjectionHook, merge_memory


@torch.no_grad()
def generate_with_memory(base, tokenizer, hook: InjectionHook, questions: list[str], projected: torch.Tensor | None,
                         max_new_tokens: int = 32, batch_size: int = 32) -> list[str]:
    """Greedy answers of the frozen base with projected memory [N, K, Hb] (None = plain base prompt)."""
    device = base.get_input_embeddings().weight.device
    options = GenerationOptions(max_new_tokens=max_new_tokens)
    out: list[str] = []
    for s in range(0, len(questions), batch_size):
        qs = questions[s:s + batch_size]
        if projected is None:
            prompts = [hook.build_plain(q) for q in qs]
        else:
            prompts = [hook.build(q, projected.shape[1]) for q in qs]
        batch = hook.collate(prompts)
        ids, attn = batch.input_ids.to(device), batch.attention_mask.to(device)
        if projected is None:
            inputs = {"input_ids": ids, "attention_mask": attn}
        else:
            embeds = merge_memory(base.get_input_embeddings()(ids), batch.slot_mask.to(device), projected[s:s + batch_size])
            inputs = {"inputs_embeds": embeds, "attention_mask": attn}
        out += [g.text.strip() for g in generate(base, tokenizer, inputs, options)]
    return out


def containment_accuracy(predictions: list[str], golds: list[str]) -> float:
    from ..evaluation.metrics import contains

    if not predictions:
        return 0.0
    return sum(bool(contains(p, g)) for p, g in zip(predictions, golds)) / len(predictions)
