"""Greedy evaluation helpers used during training and by the demo (answer containment)."""

from __future__ import annotations

import torch

from ..injection import InjectionHook, merge_memory


@torch.no_grad()
def generate_with_memory(base, tokenizer, hook: InjectionHook, questions: list[str], projected: torch.Tensor | None,
                         max_new_tokens: int = 32, batch_size: int = 32) -> list[str]:
    """Greedy answers of the frozen base with projected memory [N, K, Hb] (None = plain base prompt)."""
    device = base.get_input_embeddings().weight.device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[str] = []
    for s in range(0, len(questions), batch_size):
        qs = questions[s:s + batch_size]
        if projected is None:
            prompts = [hook.build_plain(q) for q in qs]
        else:
            prompts = [hook.build(q, projected.shape[1]) for q in qs]
        batch = hook.collate(prompts)
        ids, attn = batch.input_ids.to(device), batch.attention_mask.to(device)
        kwargs = dict(attention_mask=attn, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad,
                      eos_token_id=tokenizer.eos_token_id)
        if projected is None:
            gen = base.generate(input_ids=ids, **kwargs)[:, ids.shape[1]:]
        else:
            embeds = merge_memory(base.get_input_embeddings()(ids), batch.slot_mask.to(device), projected[s:s + batch_size])
            gen = base.generate(inputs_embeds=embeds, **kwargs)
        out += [t.strip() for t in tokenizer.batch_decode(gen, skip_special_tokens=True)]
    return out


def containment_accuracy(predictions: list[str], golds: list[str]) -> float:
    from ..evaluation.metrics import contains

    if not predictions:
        return 0.0
    return sum(bool(contains(p, g)) for p, g in zip(predictions, golds)) / len(predictions)
