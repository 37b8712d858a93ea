"""The routed service (gag_core.service) on tiny models: one batch entry point, forced routes, plug and play."""

from __future__ import annotations

import pytest
import torch

from gag_core.errors import DomainNotFoundError, IncompatibleModuleError
from gag_core.models import load_causal_lm, load_tokenizer
from gag_core.module import DomainModule
from gag_core.pipeline import GagPipeline
from gag_core.projectors import BUILTIN_PROJECTORS
from gag_core.readouts import BUILTIN_READOUTS, ReadoutConfig
from gag_core.routes import GENERAL
from gag_core.service import Query, RoutedService
from tests.test_router import GENERAL_FILE, GLIMMERHOLD, MINERAL_EXEMPLARS, POLICY_EXEMPLARS, WordsEncoder

MINERAL_Q = "What colour is Veltrasite, exactly?"
POLICY_Q = "Does the Skiff VPN work abroad?"
CHAT_Q = "hello, tell me a joke"


def _pipeline(tiny_paths) -> GagPipeline:
    return GagPipeline(load_causal_lm(tiny_paths["base"]), load_tokenizer(tiny_paths["base"]),
                       expert_loader=lambda e: (load_causal_lm(e), load_tokenizer(e)), max_new_tokens=4)


def _service(pipeline, encoders=None, **kwargs) -> RoutedService:
    encoders = encoders or {"words": lambda **_: WordsEncoder()}
    return RoutedService(pipeline, readouts=BUILTIN_READOUTS, projectors=BUILTIN_PROJECTORS, encoders=encoders,
                         router_encoder=next(iter(encoders)), general_questions=GENERAL_FILE, **kwargs)


@pytest.fixture
def service(tiny_paths, make_module):
    svc = _service(_pipeline(tiny_paths))
    for name, exemplars, seed in (("tinyminerals", MINERAL_EXEMPLARS, 1), ("tinypolicies", POLICY_EXEMPLARS, 2)):
        svc.add_domain(DomainModule.open(make_module(name, exemplars=exemplars, seed=seed)))
    return svc


def test_answer_batch_routes_the_unforced_in_one_pass_and_keeps_input_order(service, monkeypatch):
    queries = [Query(MINERAL_Q), Query(CHAT_Q, route=GENERAL), Query(POLICY_Q), Query(MINERAL_Q, route="tinypolicies"),
               Query(CHAT_Q)]
    encoder = service.router.encoder  # built here: the general and domain prototypes are encoded now
    encoder.calls = 0
    generate_calls = []
    original = service.pipeline.answer_batch

    def recording(questions, routes, *args, **kwargs):
        generate_calls.append(list(routes))
        return original(questions, routes, *args, **kwargs)

    monkeypatch.setattr(service.pipeline, "answer_batch", recording)
    answers = service.answer_batch(queries)
    assert encoder.calls == 1  # the three unforced questions were encoded together
    assert generate_calls == [["tinyminerals", GENERAL, "tinypolicies", "tinypolicies", GENERAL]]  # one batch
    assert [a.question for a in answers] == [q.question for q in queries]
    assert [a.route for a in answers] == generate_calls[0]
    for query, ans in zip(queries, answers):
        if query.route is None:  # routed: the decision travels with the answer
            assert ans.decision.route == ans.route and ans.route_score == ans.decision.score
            assert ans.decision.runner_up not in (None, ans.route)
        else:
            assert ans.decision is None and ans.route_score is None
    assert [a.slots > 0 for a in answers] == [True, False, True, True, False]
    assert service.answer_batch([]) == []
    single = service.answer(MINERAL_Q)
    assert single.route == "tinyminerals" and single.decision == service.route(MINERAL_Q)


def test_resolve_checks_forced_routes(service):
    assert service.resolve(GENERAL) == GENERAL and service.resolve("tinyminerals") == "tinyminerals"
    with pytest.raises(DomainNotFoundError, match="No loaded domain 'nosuch'; loaded: tinyminerals, tinypolicies"):
        service.resolve("nosuch")
    service.unavailable["oldminerals"] = "it was aligned to another base model"
    with pytest.raises(IncompatibleModuleError, match="'oldminerals' cannot be used: it was aligned to another base"):
        service.resolve("oldminerals")
    with pytest.raises(DomainNotFoundError):  # refused before anything is routed or generated
        service.answer_batch([Query(MINERAL_Q), Query(CHAT_Q, route="nosuch")])
    with pytest.raises(DomainNotFoundError):
        service.stream(CHAT_Q, "nosuch")


def test_add_and_remove_domain_change_only_that_route(service, make_module):
    questions = [MINERAL_Q, CHAT_Q, POLICY_Q, "Veltrasite was discovered by whom?",
                 "Can a Lantern Warden in Glimmerhold move two tiles?"]
    before_routes = [d.route for d in service.route_batch(questions)]
    before = {name: p.clone() for name, p in service.router.prototypes.items()}
    game = DomainModule.open(make_module("tinygame", exemplars=GLIMMERHOLD[:4], seed=3))
    service.add_domain(game)
    assert service.domains == ["tinygame", "tinyminerals", "tinypolicies"] and service.module("tinygame") is game
    assert service.router.routes == [GENERAL, "tinyminerals", "tinypolicies", "tinygame"]
    assert all(torch.equal(service.router.prototypes[n], p) for n, p in before.items())
    after = [d.route for d in service.route_batch(questions)]
    assert after[-1] == "tinygame"
    assert all(a == b for a, b in zip(after, before_routes) if a != "tinygame")  # only the new domain's wins move
    service.remove_domain("tinygame")
    assert service.domains == ["tinyminerals", "tinypolicies"] and list(service.router.prototypes) == list(before)
    assert [d.route for d in service.route_batch(questions)] == before_routes
    with pytest.raises(DomainNotFoundError):
        service.resolve("tinygame")


def test_a_module_whose_kinds_are_not_registered_is_refused(tiny_paths, make_module):
    svc = RoutedService(_pipeline(tiny_paths), readouts={}, projectors=BUILTIN_PROJECTORS,
                        encoders={"words": lambda **_: WordsEncoder()}, general_questions=GENERAL_FILE)
    folder = make_module("plugged", readout=ReadoutConfig(kind="mean_embedding", layers=[0], slots=2))
    with pytest.raises(IncompatibleModuleError, match="'mean_embedding'.*registered: readouts \\[\\]"):
        svc.add_domain(DomainModule.open(folder))
    assert svc.domains == []


def test_stream_knows_its_route_before_iterating(service):
    stream = service.stream(POLICY_Q)
    assert stream.route == "tinypolicies" and stream.decision == service.route(POLICY_Q)
    assert "".join(stream).strip() == service.answer(POLICY_Q, "tinypolicies").answer
    forced = service.stream(POLICY_Q, GENERAL)
    assert forced.route == GENERAL and forced.decision is None
    assert "".join(forced).strip() == service.answer(POLICY_Q, GENERAL).answer


def test_without_domains_everything_goes_to_general_and_nothing_is_loaded(tiny_paths):
    svc = _service(_pipeline(tiny_paths), {"broken": lambda **_: pytest.fail("no encoder is needed")})
    assert [d.route for d in svc.route_batch([MINERAL_Q, CHAT_Q])] == [GENERAL, GENERAL]
    assert svc.answer(MINERAL_Q).route == GENERAL


def test_expert_mean_encoder_follows_the_backbone_when_a_domain_wraps_it(tiny_paths, make_module):
    from gag_plugins.manager import collect

    pipeline = _pipeline(tiny_paths)
    svc = _service(pipeline, {"expert-mean": collect("register_encoders")["expert-mean"]},
                   expert_override=tiny_paths["expert"])
    router = svc.router  # built before any domain: the encoder reads the plain backbone
    plain = router.encoder.encode([MINERAL_Q, CHAT_Q])
    svc.add_domain(DomainModule.open(make_module("tinyminerals", exemplars=MINERAL_EXEMPLARS, seed=1)))
    wrapped, _, _ = pipeline.expert_backbone(tiny_paths["expert"])
    assert router.encoder.model is wrapped and hasattr(wrapped, "peft_config")  # now a PeftModel
    assert torch.allclose(router.encoder.encode([MINERAL_Q, CHAT_Q]), plain, atol=1e-5)  # adapters off
    assert router.routes == [GENERAL, "tinyminerals"]
