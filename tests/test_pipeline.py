"""GagPipeline on tiny models: batching, KV cache, streaming, and a base model that never changes."""

from __future__ import annotations

import hashlib
import threading

import pytest
import torch

from gag_core.errors import DomainNotFoundError, IncompatibleModuleError, InputError
from gag_core.generation import pad_id
from gag_core.models import load_causal_lm, load_tokenizer
from gag_core.module import DomainModule
from gag_core.pipeline import GagPipeline
from gag_core.routes import GENERAL
from gag_core.readouts import ReadoutConfig

QUESTIONS = ["What colour is Veltrasite?", "hi",
             "In which year was the hexagonal mineral discovered, and by whom was the crystal system described?"]


def _loader(expert_id):
    return load_causal_lm(expert_id), load_tokenizer(expert_id)


def _pipeline_with(folder, tiny_paths) -> GagPipeline:
    pipeline = GagPipeline(load_causal_lm(tiny_paths["base"]), load_tokenizer(tiny_paths["base"]),
                           expert_loader=_loader, max_new_tokens=6)
    pipeline.add_domain(DomainModule.open(folder))
    return pipeline


@pytest.fixture(scope="module")
def shared_pipe(tiny_paths, tmp_path_factory):
    """One pipeline for the tests that only read from it (they never add or replace domains)."""
    from tests.factories import build_tiny_module

    folder = build_tiny_module(tmp_path_factory.mktemp("pipe") / "tinydom", name="tinydom", paths=tiny_paths)
    return _pipeline_with(folder, tiny_paths)


@pytest.fixture
def pipe(shared_pipe):
    return shared_pipe


@pytest.fixture
def own_pipe(tiny_paths, make_module):
    """A pipeline of the test's own, for tests that add domains."""
    return _pipeline_with(make_module("tinydom"), tiny_paths)


def param_hashes(model) -> dict[str, str]:
    return {name: hashlib.sha256(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()
            for name, p in model.named_parameters()}


@pytest.mark.parametrize("route", ["tinydom", GENERAL])
def test_left_padded_batch_answers_like_one_at_a_time(pipe, route):
    together = pipe.answer_batch(QUESTIONS, route)
    alone = [pipe.answer(q, route) for q in QUESTIONS]
    assert [a.answer for a in together] == [a.answer for a in alone]
    assert [a.prompt_tokens for a in together] == [a.prompt_tokens for a in alone]
    assert len({a.prompt_tokens for a in alone}) == 3
    assert all(a.route == route and a.latency_s > 0 for a in together)


def test_memory_of_a_batch_equals_memory_one_at_a_time(pipe):
    together = pipe.memory("tinydom", QUESTIONS)
    assert together.shape == (3, 2, 64)
    alone = torch.cat([pipe.memory("tinydom", [q]) for q in QUESTIONS])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)


@pytest.mark.parametrize("route", ["tinydom", GENERAL])
def test_generation_with_and_without_kv_cache_agrees(pipe, route):
    with torch.no_grad():
        inputs, _ = pipe.inputs(QUESTIONS[:2], route, None)
        kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": pad_id(pipe.tokenizer),
                  "eos_token_id": pipe.tokenizer.eos_token_id, "return_dict_in_generate": True, "output_scores": True}
        cached = pipe.base.generate(**inputs, **kwargs)
        uncached = pipe.base.generate(**inputs, use_cache=False, **kwargs)
    assert torch.equal(cached.sequences, uncached.sequences)
    for a, b in zip(cached.scores, uncached.scores):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)


@pytest.mark.parametrize("route", ["tinydom", GENERAL])
def test_stream_joined_equals_answer(pipe, route):
    for q in QUESTIONS[:2]:
        assert "".join(pipe.stream(q, route)).strip() == pipe.answer(q, route).answer


def test_stream_stops_when_asked(pipe):
    stop = threading.Event()
    stop.set()
    text = "".join(pipe.stream(QUESTIONS[0], "tinydom", max_new_tokens=40, stop=stop))
    assert text.strip() == pipe.answer(QUESTIONS[0], "tinydom", max_new_tokens=1).answer  # stopped after one token


def test_stream_surfaces_errors_in_the_caller(pipe):
    with pytest.raises(InputError, match="empty"):
        list(pipe.stream("  ", "tinydom"))


def test_base_parameters_are_bit_identical_after_every_call(pipe):
    before = param_hashes(pipe.base)
    assert before and not any("lora" in name for name in before)
    pipe.answer(QUESTIONS[0], "tinydom")
    pipe.answer(QUESTIONS[0], GENERAL)
    pipe.answer_batch(QUESTIONS, "tinydom")
    pipe.answer_batch(QUESTIONS, GENERAL)
    pipe.memory("tinydom", QUESTIONS)
    "".join(pipe.stream(QUESTIONS[1], "tinydom"))
    "".join(pipe.stream(QUESTIONS[1], GENERAL))
    assert param_hashes(pipe.base) == before
    assert not any(p.requires_grad for p in pipe.base.parameters())
    assert not pipe.base.training


def test_expert_backbone_weights_are_untouched_by_adapters(own_pipe, tiny_paths, make_module):
    pipe = own_pipe
    expert = pipe.experts[next(iter(pipe.experts))][0]
    fresh = param_hashes(load_causal_lm(tiny_paths["expert"]))
    backbone = {n.replace("base_model.model.", "").replace(".base_layer", ""): h
                for n, h in param_hashes(expert).items() if "lora_" not in n}
    assert backbone == fresh
    pipe.add_domain(DomainModule.open(make_module("second", seed=5)))
    pipe.answer(QUESTIONS[0], "second")
    assert not any(p.requires_grad for p in expert.parameters())


def test_two_domains_share_one_backbone_and_readd_replaces(own_pipe, make_module):
    pipe = own_pipe
    first = pipe.memory("tinydom", QUESTIONS[:1])
    pipe.add_domain(DomainModule.open(make_module("second", seed=5)))
    assert len(pipe.experts) == 1
    expert = pipe.experts[next(iter(pipe.experts))][0]
    assert {"tinydom", "second"} <= set(expert.peft_config)
    assert not torch.allclose(pipe.memory("second", QUESTIONS[:1]), first)
    torch.testing.assert_close(pipe.memory("tinydom", QUESTIONS[:1]), first)  # switching adapters back
    pipe.add_domain(DomainModule.open(make_module("tinydom", seed=0)))  # same module again: replaced, not stacked
    torch.testing.assert_close(pipe.memory("tinydom", QUESTIONS[:1]), first)


def test_unknown_domain_is_refused_with_the_fix(pipe):
    with pytest.raises(DomainNotFoundError, match="loaded: \\['tinydom'\\].*install-domain"):
        pipe.answer("q", "nope")


def test_unregistered_readout_kind_is_refused_before_touching_the_expert(tiny_paths, make_module):
    folder = make_module("plugged", readout=ReadoutConfig(kind="someones_readout", layers=[-1], slots=1))
    pipeline = GagPipeline(load_causal_lm(tiny_paths["base"]), load_tokenizer(tiny_paths["base"]),
                           expert_loader=_loader)
    with pytest.raises(IncompatibleModuleError, match="someones_readout.*readout_cls"):
        pipeline.add_domain(DomainModule.open(folder))
    assert pipeline.experts == {} and pipeline.domains == {}


def test_a_mixed_route_batch_is_one_generate_call_answering_like_each_route_alone(own_pipe, make_module, monkeypatch):
    pipe = own_pipe
    three_slots = ReadoutConfig(kind="multi_slot", layers=[-1, -2], slots=3, max_new_tokens=6)
    pipe.add_domain(DomainModule.open(make_module("second", seed=5, readout=three_slots)))
    questions = QUESTIONS + QUESTIONS[:2]
    routes = ["tinydom", GENERAL, "second", "tinydom", GENERAL]
    alone = [pipe.answer(q, r) for q, r in zip(questions, routes)]
    readouts, generates = [], []
    memory, generate = pipe.memory_with_backgrounds, pipe.base.generate
    monkeypatch.setattr(pipe, "memory_with_backgrounds",
                        lambda name, qs: readouts.append((name, len(qs))) or memory(name, qs))
    monkeypatch.setattr(pipe.base, "generate", lambda **kw: generates.append(1) or generate(**kw))
    mixed = pipe.answer_batch(questions, routes)
    assert readouts == [("tinydom", 2), ("second", 1)] and len(generates) == 1
    assert [a.answer for a in mixed] == [a.answer for a in alone]
    # each domain row carries the background its slots were read from (the expert's own text); general rows none
    assert [a.background is None for a in mixed] == [r == GENERAL for r in routes]
    assert [a.background for a in mixed] == [a.background for a in alone]
    fields = [(a.route, a.slots, a.prompt_tokens, a.completion_tokens, a.finish_reason) for a in mixed]
    assert fields == [(a.route, a.slots, a.prompt_tokens, a.completion_tokens, a.finish_reason) for a in alone]
    assert [a.slots for a in mixed] == [2, 0, 3, 2, 0]


def test_generation_options_and_the_old_max_new_tokens_form_agree(pipe):
    from gag_core.generation import GenerationOptions

    old = pipe.answer_batch(QUESTIONS, "tinydom", None, 3)
    new = pipe.answer_batch(QUESTIONS, ["tinydom"] * 3, None, GenerationOptions(max_new_tokens=3))
    assert [a.answer for a in old] == [a.answer for a in new]
    assert all(a.completion_tokens <= 3 and a.finish_reason in ("stop", "length") for a in new)
    assert pipe.answer_batch([], "tinydom") == []


def test_on_text_streams_every_row_of_a_batch(pipe):
    pieces: dict[int, list[str]] = {}
    answers = pipe.answer_batch(QUESTIONS, ["tinydom", GENERAL, "tinydom"],
                                on_text=lambda row, piece: pieces.setdefault(row, []).append(piece))
    assert ["".join(pieces.get(i, [])).strip() for i in range(3)] == [a.answer for a in answers]


def test_remove_domain_deletes_its_adapter(own_pipe, make_module):
    pipe = own_pipe
    pipe.add_domain(DomainModule.open(make_module("second", seed=5)))
    expert = pipe.experts[pipe.domain("second").expert_id][0]
    pipe.remove_domain("second")
    assert "second" not in pipe.domains and "second" not in expert.peft_config
    with pytest.raises(DomainNotFoundError):
        pipe.remove_domain("second")
    assert pipe.answer(QUESTIONS[0], "tinydom").route == "tinydom"
