"""gag_core.prefill: the shared-prefix, length-grouped prefill gives the plain batch's answers (float32, tiny
Qwen3 and Llama), from token ids and from input embeddings, and steps aside where it cannot help."""

from __future__ import annotations

import pytest
import torch

from gag_core.generation import GenerationOptions, generate, left_pad, pad_id
from gag_core.models import load_causal_lm, load_tokenizer
from gag_core.prefill import length_groups, shared_prefill, shared_prefix

SYSTEM = "<|im_start|>system\nYou are a helpful assistant with access to expert knowledge.<|im_end|>\n"
PROMPTS = [SYSTEM + "<|im_start|>user\nWhat colour is Veltrasite?<|im_end|>\n<|im_start|>assistant\n",
           SYSTEM + "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
           SYSTEM + "<|im_start|>user\nIn which year was the hexagonal mineral discovered, and by whom? Please answer "
                    "the following question based on the knowledge provided.<|im_end|>\n<|im_start|>assistant\n",
           SYSTEM + "<|im_start|>user\nThe quick brown fox<|im_end|>\n<|im_start|>assistant\n"]


@pytest.fixture(scope="module", params=["base", "llama_base"])
def sharp(request, tiny_paths):
    """A tiny model (Qwen3, Llama) with a sharpened output layer, so greedy choices are far from ties."""
    model, tok = load_causal_lm(tiny_paths[request.param]), load_tokenizer(tiny_paths[request.param])
    with torch.no_grad():
        model.lm_head.weight *= 20
    return model, tok


def batch(model, tok, prompts=PROMPTS, embeds=False):
    ids, attn = left_pad([tok(p)["input_ids"] for p in prompts], pad_id(tok), model.device)
    if embeds:
        return {"inputs_embeds": model.get_input_embeddings()(ids), "attention_mask": attn}
    return {"input_ids": ids, "attention_mask": attn}


def hf(model, tok, inputs, steps=8):
    out = model.generate(**inputs, max_new_tokens=steps, do_sample=False, pad_token_id=pad_id(tok),
                         eos_token_id=None, output_scores=True, return_dict_in_generate=True)
    return out.sequences[:, -steps:], torch.stack(out.scores, 1)


@pytest.mark.parametrize("embeds", [False, True], ids=["ids", "embeds"])
def test_same_tokens_and_scores_as_the_plain_batch(sharp, embeds):
    model, tok = sharp
    inputs = batch(model, tok, embeds=embeds)
    prepared = shared_prefill(model, inputs)
    assert prepared is not None
    cache = next(v for k, v in prepared.items() if k in ("cache", "past_key_values"))
    assert cache.get_seq_length() == inputs["attention_mask"].shape[1] - 1  # all but the last token are read
    plain_tokens, plain_scores = hf(model, tok, inputs)
    tokens, scores = hf(model, tok, prepared)
    assert torch.equal(tokens, plain_tokens)
    torch.testing.assert_close(scores, plain_scores, atol=2e-3, rtol=1e-4)


def test_generate_uses_it_and_answers_alike(sharp, monkeypatch):
    model, tok = sharp
    inputs = batch(model, tok)
    shared = generate(model, tok, inputs, GenerationOptions(max_new_tokens=6))
    monkeypatch.setenv("GAG_PREFILL", "plain")
    plain = generate(model, tok, inputs, GenerationOptions(max_new_tokens=6))
    assert [g.token_ids for g in shared] == [g.token_ids for g in plain]


def test_steps_aside_where_it_cannot_help(sharp):
    model, tok = sharp
    assert shared_prefill(model, batch(model, tok, PROMPTS[:1])) is None  # one row
    assert shared_prefill(model, batch(model, tok, ["The quick brown fox", "Veltrasite is teal."])) is None
    # rows that share nothing but differ in length are still grouped
    prepared = shared_prefill(model, batch(model, tok, ["hi", "The quick brown fox jumps over the lazy dog. " * 3]))
    assert prepared is not None and prepared["attention_mask"][0].sum() == len(tok("hi")["input_ids"])


def test_the_original_prefix_cache_is_not_touched(sharp):
    model, tok = sharp
    inputs = batch(model, tok)
    first = shared_prefill(model, inputs)
    second = shared_prefill(model, inputs)
    a, b = (next(v for k, v in p.items() if k in ("cache", "past_key_values")) for p in (first, second))
    assert all(torch.equal(x.keys, y.keys) for x, y in zip(a.layers, b.layers))


def test_shared_prefix_and_groups():
    x = torch.tensor([[0, 0, 5, 6, 7, 8], [5, 6, 7, 9, 9, 9], [0, 5, 6, 1, 2, 3]])
    assert shared_prefix(x, [2, 0, 1], [4, 6, 5]) == 2
    assert shared_prefix(x[:2], [2, 0], [4, 6]) == 3
    assert length_groups([60, 20, 62, 18, 59]) == [[2, 0, 4], [1, 3]]
    assert length_groups([96, 31, 95, 37, 97, 33]) == [[4, 0, 2], [3, 5, 1]]
    assert length_groups([5, 5, 5]) == [[0, 1, 2]]


def test_the_output_head_gets_dense_inputs(tiny_paths):
    """load_causal_lm's output-layer hook: a strided last-position slice is copied dense; logits do not change."""
    from gag_core.models import _dense_input

    model = load_causal_lm(tiny_paths["base"])
    assert model.get_output_embeddings()._gag_dense_input
    states = torch.randn(3, 7, 64)
    last = states[:, -1:, :]
    (dense,) = _dense_input(None, (last,))
    assert dense.stride() == (64, 64, 1) and torch.equal(dense, last)
    assert _dense_input(None, (states,)) is None  # already dense: untouched
    with torch.no_grad():
        torch.testing.assert_close(model.lm_head(last), torch.nn.functional.linear(dense, model.lm_head.weight))
