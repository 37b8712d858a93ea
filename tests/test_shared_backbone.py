"""One backbone when the base model is also the expert backbone (the embedded profile): loaded once, the domain
adapters wrap it, and the base path still sees the plain base -- bit for bit."""

from __future__ import annotations

import pytest
import torch

from gag_core.models import canonical_model_id, load_causal_lm, load_tokenizer
from gag_core.module import DomainModule
from gag_core.pipeline import GENERAL, GagPipeline

QUESTIONS = ["What colour is Veltrasite?", "hi", "In which year was the hexagonal mineral discovered?"]


@pytest.fixture
def shared_module(make_module, tiny_paths):
    """A module whose expert backbone is the tiny base itself."""
    return DomainModule.open(make_module("selfdom", expert_key="base"))


def pipeline(tiny_paths, loads: list, **kwargs) -> GagPipeline:
    def loader(expert_id):
        loads.append(expert_id)
        return load_causal_lm(expert_id), load_tokenizer(expert_id)

    return GagPipeline(load_causal_lm(tiny_paths["base"]), load_tokenizer(tiny_paths["base"]), expert_loader=loader,
                       max_new_tokens=8, base_id=tiny_paths["base"], **kwargs)


def test_the_base_is_loaded_once_and_wrapped_by_the_adapters(tiny_paths, shared_module):
    loads: list[str] = []
    pipe = pipeline(tiny_paths, loads)
    pipe.add_domain(shared_module)
    assert loads == []  # the expert backbone is the base, not a second copy
    model, tok, key = pipe.expert_backbone(tiny_paths["base"])
    assert key == canonical_model_id(tiny_paths["base"]) and tok is pipe.tokenizer
    assert model.get_base_model() is pipe.base and "selfdom" in model.peft_config


def test_base_path_logits_equal_a_plain_base_after_an_adapter_is_attached(tiny_paths, shared_module):
    pipe = pipeline(tiny_paths, [])
    plain = load_causal_lm(tiny_paths["base"])
    pipe.add_domain(shared_module)
    pipe.memory("selfdom", QUESTIONS[:1])  # the adapter is active on the shared modules
    inputs, _ = pipe.inputs(QUESTIONS, GENERAL)
    with torch.no_grad():
        reference = plain(**inputs).logits
        assert not torch.equal(pipe.base(**inputs).logits, reference)  # the LoRA layers really are in the base
        with pipe.base_adapters_off():
            assert torch.equal(pipe.base(**inputs).logits, reference)
    alone = GagPipeline(plain, load_tokenizer(tiny_paths["base"]), max_new_tokens=8)
    for route in (GENERAL, "selfdom", GENERAL):  # a domain answer in between leaves the general path plain
        if route == GENERAL:
            assert [a.answer for a in pipe.answer_batch(QUESTIONS, route)] == \
                [a.answer for a in alone.answer_batch(QUESTIONS, route)]
        else:
            pipe.answer_batch(QUESTIONS, route)


def test_shared_and_separate_backbones_give_the_same_answers(tiny_paths, shared_module, monkeypatch):
    shared = pipeline(tiny_paths, [])
    shared.add_domain(shared_module)
    loads: list[str] = []
    monkeypatch.setenv("GAG_SHARE_BACKBONE", "0")
    separate = pipeline(tiny_paths, loads)
    separate.add_domain(shared_module)
    assert loads == [tiny_paths["base"]] and separate.experts[canonical_model_id(tiny_paths["base"])][0] \
        .get_base_model() is not separate.base
    routes = ["selfdom", GENERAL, "selfdom"]
    assert [a.answer for a in shared.answer_batch(QUESTIONS, routes)] == \
        [a.answer for a in separate.answer_batch(QUESTIONS, routes)]
    torch.testing.assert_close(shared.memory("selfdom", QUESTIONS), separate.memory("selfdom", QUESTIONS), rtol=0,
                               atol=0)
    assert "".join(shared.stream(QUESTIONS[0], GENERAL)).strip() == separate.answer(QUESTIONS[0], GENERAL).answer


def test_removing_the_last_domain_leaves_the_plain_base(tiny_paths, shared_module):
    pipe = pipeline(tiny_paths, [])
    plain = load_causal_lm(tiny_paths["base"])
    pipe.add_domain(shared_module)
    pipe.remove_domain("selfdom")
    inputs, _ = pipe.inputs(QUESTIONS, GENERAL)
    with torch.no_grad():
        assert torch.equal(pipe.base(**inputs).logits, plain(**inputs).logits)
