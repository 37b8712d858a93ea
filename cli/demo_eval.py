"""Helpers of ``gag demo``'s evaluation: the expert answering alone, and single-query latency."""

from __future__ import annotations

import time

import torch

from gag_core.readouts import _left_pad, expert_prompt_ids


@torch.no_grad()
def expert_alone_answers(pipe, domain: str, questions: list[str], max_new_tokens: int = 32) -> list[str]:
    """The expert (with its LoRA) answering directly, prompted as in its Stage I training."""
    d = pipe.domain(domain)
    model, tok = pipe.experts[d.expert_id]
    model.set_adapter(domain)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    device = model.get_input_embeddings().weight.device
    out = []
    for s in range(0, len(questions), 16):
        prompts = [expert_prompt_ids(tok, q, d.readout.config.background_prompt) for q in questions[s:s + 16]]
        ids, attn = _left_pad(prompts, pad, device)
        gen = model.generate(input_ids=ids, attention_mask=attn, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=pad, eos_token_id=tok.eos_token_id)
        out += [t.strip() for t in tok.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True)]
    return out


def timed_single(pipe, domain: str, method: str, questions: list[str]) -> list[float]:
    """Wall time of answering each question alone (batch 1), as a user would see it."""
    times = []
    for q in questions:
        start = time.perf_counter()
        if method == "base":
            pipe.answer(q, "general")
        elif method == "gag":
            pipe.answer(q, domain)
        else:
            expert_alone_answers(pipe, domain, [q])
        times.append(time.perf_counter() - start)
    return times
