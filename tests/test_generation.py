"""gag_core.generation, the one generation path: greedy equals HF generate, stop strings, per-row cancel,
streamed pieces, sampling, padding."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
import torch

from gag_core.errors import ConfigError
from gag_core.generation import GenerationOptions, _held_back, generate, left_pad, pad_id
from gag_core.models import default_device, load_causal_lm, load_tokenizer

PROMPTS = ["What colour is Veltrasite?", "hi", "In which year was the hexagonal mineral discovered, and by whom?"]


@pytest.fixture(scope="module")
def model_tok(tiny_paths):
    return load_causal_lm(tiny_paths["base"]), load_tokenizer(tiny_paths["base"])


@pytest.fixture(scope="module")
def eos_model(tiny_paths):
    """The tiny base with its end-of-sequence logit raised, so rows end on eos at different steps."""
    model, tok = load_causal_lm(tiny_paths["base"]), load_tokenizer(tiny_paths["base"])
    with torch.no_grad():
        model.lm_head.weight[tok.eos_token_id] *= 3
    return model, tok


def batch(tok, prompts=PROMPTS):
    ids, attn = left_pad([tok(p)["input_ids"] for p in prompts], pad_id(tok), default_device())  # where the models load
    return {"input_ids": ids, "attention_mask": attn}


def hf_greedy(model, tok, inputs, max_new_tokens):
    """Reference: transformers' own greedy generate, cut at eos and decoded per row."""
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id(tok),
                         eos_token_id=tok.eos_token_id)
    new = out[:, inputs["input_ids"].shape[1]:].tolist()
    rows = [r[:r.index(tok.eos_token_id)] if tok.eos_token_id in r else r for r in new]
    return rows, [tok.decode(r, skip_special_tokens=True) for r in rows]


@pytest.mark.parametrize("which", ["model_tok", "eos_model"])
def test_greedy_equals_hf_generate_per_row(which, request):
    model, tok = request.getfixturevalue(which)
    inputs = batch(tok)
    rows, texts = hf_greedy(model, tok, inputs, 10)
    got = generate(model, tok, inputs, GenerationOptions(max_new_tokens=10))
    assert [g.text for g in got] == texts
    assert [g.token_ids for g in got] == rows
    assert [g.completion_tokens for g in got] == [len(r) for r in rows]
    assert [g.finish_reason for g in got] == ["length" if len(r) == 10 else "stop" for r in rows]
    if which == "eos_model":
        assert {g.finish_reason for g in got} == {"stop", "length"}  # one row ends on eos mid-batch


def test_inputs_embeds_generate_like_input_ids(model_tok):
    model, tok = model_tok
    inputs = batch(tok)
    embeds = {"inputs_embeds": model.get_input_embeddings()(inputs["input_ids"]),
              "attention_mask": inputs["attention_mask"]}
    options = GenerationOptions(max_new_tokens=8)
    assert generate(model, tok, embeds, options) == generate(model, tok, inputs, options)


def test_stop_string_cuts_the_text_and_finishes_the_row(model_tok):
    model, tok = model_tok
    inputs = batch(tok)
    full = generate(model, tok, inputs, GenerationOptions(max_new_tokens=12))
    text = full[2].text
    stop = next(text[i:i + 2] for i in range(2, len(text)) if "\ufffd" not in text[i:i + 2])
    cut = generate(model, tok, inputs, GenerationOptions(max_new_tokens=12, stop=(stop, "never-in-text")))
    assert cut[2].text == text[:text.find(stop)]
    assert cut[2].finish_reason == "stop" and cut[2].completion_tokens < full[2].completion_tokens
    for before, after in zip(full[:2], cut[:2]):  # rows without the stop string are untouched
        if stop not in before.text:
            assert after == before


def test_cancelling_one_row_leaves_the_others_identical(model_tok):
    model, tok = model_tok
    inputs = batch(tok)
    options = GenerationOptions(max_new_tokens=10)
    plain = generate(model, tok, inputs, options)
    cancel = [None, threading.Event(), None]
    cancel[1].set()
    got = generate(model, tok, inputs, options, cancel=cancel)
    assert got[1].finish_reason == "cancelled" and got[1].completion_tokens == 1  # seen after its first token
    assert got[1].token_ids == plain[1].token_ids[:1]
    assert got[0] == plain[0] and got[2] == plain[2]


def test_cancel_mid_generation_from_the_stream(model_tok):
    model, tok = model_tok
    event = threading.Event()
    pieces: list[str] = []

    def on_text(row, piece):
        pieces.append(piece)
        event.set()  # the reader hangs up after the first piece

    got = generate(model, tok, batch(tok, PROMPTS[2:]), GenerationOptions(max_new_tokens=30), cancel=[event],
                   on_text=on_text)
    assert got[0].finish_reason == "cancelled" and got[0].completion_tokens < 30
    assert "".join(pieces) == got[0].text


@pytest.mark.parametrize("stop", [(), ("ab", "\n\n")])
def test_on_text_pieces_join_to_the_final_text(model_tok, eos_model, stop):
    for model, tok in (model_tok, eos_model):
        inputs = batch(tok)
        pieces: dict[int, list[str]] = {0: [], 1: [], 2: []}
        got = generate(model, tok, inputs, GenerationOptions(max_new_tokens=16, stop=stop),
                       on_text=lambda row, piece: pieces[row].append(piece))
        for row, g in enumerate(got):
            assert "".join(pieces[row]) == g.text
            assert all(pieces[row]) and all(not p.endswith("\ufffd") for p in pieces[row][:-1])


def test_held_back_waits_for_incomplete_characters_and_partial_stops():
    assert _held_back("hello", ()) == 5
    assert _held_back("hello \ufffd", ()) == 5
    assert _held_back("hello wo", ("world",)) == 6
    assert _held_back("hello w", ("xyz", "wor")) == 6
    assert _held_back("ab", ("abc",)) == 0


def test_pad_id_falls_back_to_zero_not_eos():
    assert pad_id(SimpleNamespace(pad_token_id=None, eos_token_id=7)) == 0
    assert pad_id(SimpleNamespace(pad_token_id=3, eos_token_id=7)) == 3


def test_left_pad_aligns_rows_at_the_right_edge():
    ids, attn = left_pad([[5, 6, 7], [8]], 0, "cpu")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and attn.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_sampling_is_seeded_per_row_and_leaves_the_global_rng(model_tok):
    model, tok = model_tok
    inputs = batch(tok)
    options = GenerationOptions(max_new_tokens=10, temperature=1.5, top_p=0.95, seed=7)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    first = generate(model, tok, inputs, options)
    assert torch.equal(torch.get_rng_state(), state)
    assert generate(model, tok, inputs, options) == first
    alone = generate(model, tok, batch(tok, PROMPTS[2:]), options)
    assert alone[0] == first[2]  # a row's sample does not depend on the rest of the batch
    greedy = generate(model, tok, inputs, GenerationOptions(max_new_tokens=10))
    assert [g.token_ids for g in first] != [g.token_ids for g in greedy]
    other = generate(model, tok, inputs, GenerationOptions(max_new_tokens=10, temperature=1.5, seed=8))
    assert [g.token_ids for g in other] != [g.token_ids for g in first]


def test_tiny_top_p_is_greedy(model_tok):
    model, tok = model_tok
    inputs = batch(tok)
    nucleus = generate(model, tok, inputs, GenerationOptions(max_new_tokens=8, temperature=1.0, top_p=1e-6, seed=1))
    assert nucleus == generate(model, tok, inputs, GenerationOptions(max_new_tokens=8))


@pytest.mark.parametrize("bad", [dict(max_new_tokens=0), dict(temperature=-1.0), dict(top_p=0.0), dict(stop=("",))])
def test_options_are_validated(bad):
    with pytest.raises(ConfigError):
        GenerationOptions(**bad)
    assert GenerationOptions(stop="###").stop == ("###",)


def test_cancel_needs_one_entry_per_row(model_tok):
    model, tok = model_tok
    with pytest.raises(ConfigError, match="one event"):
        generate(model, tok, batch(tok), GenerationOptions(max_new_tokens=2), cancel=[None])
