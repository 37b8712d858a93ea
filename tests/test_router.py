"""Prototype Plug-and-play Routing: prototypes, the router, encoders, the general route, the GAG API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gag_core.errors import ConfigError, DataError
from gag_core.router import (GENERAL_PROTOTYPES, ExpertMeanEncoder, PrototypeRouter, build_prototypes,
                             cached_prototypes, module_prototypes, read_questions_file)
from gag_core.routes import GENERAL, RouteDecision

ROOT = Path(__file__).resolve().parents[1]
MINERALS = ROOT / "modules" / "gag-domain-minerals" / "gag_domain_minerals" / "data"
GENERAL_FILE = ROOT / "gag_plugins" / "data" / "general_questions.jsonl"
GENERAL_HELDOUT = ROOT / "gag_plugins" / "data" / "general_questions_heldout.jsonl"
POLICIES = Path(__file__).parent / "data" / "domain_quillfeather.jsonl"

# A third invented domain (a board game that does not exist) for the plug-and-play test.
GLIMMERHOLD = [
    "How many victory crowns do you need to win a game of Glimmerhold?",
    "In Glimmerhold, can a Lantern Warden move diagonally?",
    "What happens when two Glimmerhold caravans land on the same ferry tile?",
    "How many cards does each player draw at the start of a Glimmerhold round?",
    "Can you trade amber tokens for salt tokens in Glimmerhold?",
    "What does the Moth Queen card do in Glimmerhold?",
    "How do you score the Tidewatch expansion of Glimmerhold?",
    "Is it legal to build a second keep on a marsh hex in Glimmerhold?",
]


class WordsEncoder:
    """A fast, deterministic stand-in encoder: hashed bag of lower-cased words, L2-normalised."""

    name = "test-words"
    dim = 128
    default_margin = 0.0

    def __init__(self):
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        out = torch.zeros(len(texts), self.dim)
        for i, text in enumerate(texts):
            for word in "".join(c.lower() if c.isalnum() else " " for c in text).split():
                out[i, sum(map(ord, word)) * 2654435761 % self.dim] += 1.0
        return F.normalize(out + 1e-6, dim=-1)


def _questions(path: Path, split: str | None = None) -> list[str]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["question"] for r in rows if split is None or r.get("split") == split]


# --- prototypes ----------------------------------------------------------------------------------------

def test_build_prototypes_is_normalised_deterministic_and_capped():
    x = torch.randn(100, 16)
    a, b = build_prototypes(x, k=8, seed=0), build_prototypes(x, k=8, seed=0)
    assert a.shape == (8, 16) and torch.equal(a, b)
    assert torch.allclose(a.norm(dim=-1), torch.ones(8), atol=1e-5)
    assert build_prototypes(x[:5], k=32).shape == (5, 16)  # k = min(k, n)
    assert build_prototypes(x[:1].repeat(6, 1), k=32).shape == (1, 16)  # duplicates count once
    with pytest.raises(DataError):
        build_prototypes(torch.zeros(0, 16))
    with pytest.raises(ConfigError):
        build_prototypes(x, k=0)


def test_cached_prototypes_reuse_and_invalidate(tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"question": f"question number {i}"}) + "\n" for i in range(10)))
    enc = WordsEncoder()
    first = cached_prototypes(enc, questions, tmp_path / "cache", k=4)
    again = cached_prototypes(enc, questions, tmp_path / "cache", k=4)
    assert enc.calls == 1 and torch.equal(first, again)
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
    with open(questions, "a") as f:
        f.write(json.dumps({"question": "a new one"}) + "\n")
    cached_prototypes(enc, questions, tmp_path / "cache", k=4)
    assert enc.calls == 2  # the file changed: a new key


# --- the router ------------------------------------------------------------------------------------------

def _router(margin=0.0):
    router = PrototypeRouter(WordsEncoder(), margin)
    router.add_questions(GENERAL, ["hello there", "tell me a joke", "what is the capital of france"])
    router.add_questions("minerals", ["what colour is veltrasite", "crystal system of veltrasite"])
    return router


def test_router_scores_are_max_cosine_and_argmax_wins():
    router = _router()
    d = router.route("What colour is Veltrasite?")
    assert isinstance(d, RouteDecision) and d.route == "minerals"
    assert list(d.scores) == [GENERAL, "minerals"] and d.score == d.scores["minerals"] == max(d.scores.values())
    emb = router.encoder.encode(["What colour is Veltrasite?"])
    assert d.scores["minerals"] == pytest.approx(float((emb @ router.prototypes["minerals"].T).max()))
    assert router.route("hello there").route == GENERAL
    assert [x.route for x in router.route_batch(["hello there", "veltrasite colour"])] == [GENERAL, "minerals"]


def test_margin_falls_back_to_general():
    q = "what colour is veltrasite in france"
    plain = _router().route(q)
    gap = plain.score - sorted(plain.scores.values())[-2]
    assert plain.route == "minerals" and gap > 0
    fallback = _router(margin=gap + 1e-3).route(q)
    assert fallback.route == GENERAL and fallback.fallback and fallback.score == fallback.scores[GENERAL]
    with pytest.raises(ConfigError):
        PrototypeRouter(WordsEncoder(), margin=-1)


def test_decisions_name_the_runner_up():
    router = _router()
    router.add_questions("games", ["how do you win at glimmerhold", "glimmerhold rules"])
    d = router.route("What colour is Veltrasite?")
    rest = sorted(((s, r) for r, s in d.scores.items() if r != d.route), reverse=True)
    assert (d.runner_up_score, d.runner_up) == rest[0]
    q = "what colour is veltrasite in france"
    fallback = _router(margin=1.0).route(q)  # general chosen by the margin: the winning domain is the runner-up
    assert fallback.fallback and fallback.runner_up == "minerals"
    assert fallback.runner_up_score == _router().route(q).score
    alone = PrototypeRouter(WordsEncoder())
    alone.add_questions(GENERAL, ["hello there"])
    assert alone.route("hi").runner_up is None and alone.route("hi").runner_up_score is None


def test_prototypes_must_match_the_encoder():
    with pytest.raises(ConfigError, match="Rebuild"):
        PrototypeRouter(WordsEncoder()).add_route("x", torch.ones(2, 7))


# --- accuracy on the demo data (MiniLM) ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm_setup():
    """MiniLM embeddings of every question set, encoded once for the module (~20 s on 2 cores)."""
    from gag_core.router import SentenceEncoder

    enc = SentenceEncoder()
    sets = {"general_train": read_questions_file(GENERAL_FILE), "general_test": read_questions_file(GENERAL_HELDOUT),
            "minerals_train": _questions(MINERALS / "train.jsonl"),
            "minerals_test": _questions(MINERALS / "test.jsonl") + _questions(MINERALS / "dev.jsonl"),
            "policies_train": _questions(POLICIES, "prototype"), "policies_test": _questions(POLICIES, "test"),
            "glimmerhold": GLIMMERHOLD}
    emb = {k: enc.encode(v) for k, v in sets.items()}
    protos = {GENERAL: build_prototypes(emb["general_train"], k=GENERAL_PROTOTYPES),
              "minerals": build_prototypes(emb["minerals_train"]), "policies": build_prototypes(emb["policies_train"])}
    return enc, emb, protos


def _demo_router(enc, protos, margin=None):
    """The configuration gag uses for MiniLM: 64 general prototypes, 32 per domain, the encoder's margin."""
    router = PrototypeRouter(enc, enc.default_margin if margin is None else margin)
    for name, p in protos.items():
        router.add_route(name, p)
    return router


def _routes(router, emb):
    return [d.route for d in router.decide(router.score_embeddings(emb))]


def test_minilm_routing_accuracy_on_mixed_heldout_set(minilm_setup):
    enc, emb, protos = minilm_setup
    router = _demo_router(enc, protos)
    gold = {GENERAL: "general_test", "minerals": "minerals_test", "policies": "policies_test"}
    routed = {route: _routes(router, emb[key]) for route, key in gold.items()}
    correct = sum(r == route for route, rs in routed.items() for r in rs)
    total = sum(len(rs) for rs in routed.values())
    general_to_domain = sum(r != GENERAL for r in routed[GENERAL]) / len(routed[GENERAL])
    assert correct / total >= 0.98, (correct, total)
    assert general_to_domain <= 0.02, routed[GENERAL]
    assert all(r == "minerals" for r in routed["minerals"]) and all(r == "policies" for r in routed["policies"])


@pytest.mark.parametrize("margin", [0.0, 0.05])
def test_a_new_domain_only_takes_the_queries_it_wins(minilm_setup, margin):
    enc, emb, protos = minilm_setup
    mixed = torch.cat([emb["general_test"], emb["minerals_test"], emb["policies_test"], emb["glimmerhold"]])
    router = _demo_router(enc, protos, margin)
    before = _routes(router, mixed)
    router.add_route("glimmerhold", build_prototypes(emb["glimmerhold"][:4]))
    after = _routes(router, mixed)
    changed = [(b, a) for b, a in zip(before, after) if a != b]
    assert changed, "the new domain should win its own questions"
    if margin == 0:  # exactly plug and play
        assert all(a == "glimmerhold" for _, a in changed)
    else:  # a margin may also send a query the new domain nearly wins back to general, never elsewhere
        assert all(a in ("glimmerhold", GENERAL) for _, a in changed)
    assert _routes(router, emb["glimmerhold"][4:]) == ["glimmerhold"] * 4


# --- encoders on tiny models -----------------------------------------------------------------------------

def test_expert_mean_encoder_ignores_adapters_and_padding(tiny_paths):
    from gag_core.models import load_causal_lm, load_tokenizer
    from tests.factories import tiny_lora

    tok = load_tokenizer(tiny_paths["expert"])
    plain = ExpertMeanEncoder(load_causal_lm(tiny_paths["expert"]), tok, "tiny")
    texts = ["What colour is Veltrasite?", "hi", "The quick brown fox jumps over the lazy dog in the year 0123"]
    batch = plain.encode(texts)
    assert batch.shape == (3, 48) and plain.name == "expert-mean:tiny"
    assert torch.allclose(batch.norm(dim=-1), torch.ones(3), atol=1e-5)
    one_by_one = torch.cat([plain.encode([t]) for t in texts])
    assert torch.allclose(batch, one_by_one, atol=1e-5)  # right padding + mask: batching changes nothing
    peft = tiny_lora(load_causal_lm(tiny_paths["expert"], frozen=False), seed=3).requires_grad_(False)
    with_adapter = ExpertMeanEncoder(peft, tok, "tiny").encode(texts)
    assert torch.allclose(with_adapter, batch, atol=1e-5)  # the adapter is disabled while encoding
    assert not any(p.requires_grad for p in peft.parameters())  # and stays frozen when it is enabled again
    with torch.no_grad():  # and the adapter is active again afterwards
        ids = torch.tensor([tok(texts[0])["input_ids"]])
        assert not torch.allclose(peft(input_ids=ids).logits, plain.model(input_ids=ids).logits)


def test_module_prototypes_rebuilt_for_another_encoder(make_module, tmp_path):
    from gag_core.module import DomainModule

    exemplars = ["what colour is veltrasite", "crystal system of veltrasite", "who found veltrasite"]
    module = DomainModule.open(make_module("tinyminerals", exemplars=exemplars))
    enc = WordsEncoder()
    rebuilt = module_prototypes(module, enc, tmp_path / "cache")  # manifest says "expert-mean": rebuild
    assert rebuilt.shape == (3, enc.dim) and enc.calls == 1
    assert torch.allclose(rebuilt, build_prototypes(enc.encode(exemplars)), atol=1e-5)
    own = DomainModule.open(make_module("own", exemplars=exemplars, encoder=enc.name,
                                        prototypes=build_prototypes(enc.encode(exemplars))))
    assert torch.allclose(module_prototypes(own, enc, tmp_path / "cache"), own.load_prototypes())


# --- the general route is the plain base model ----------------------------------------------------------------

def test_general_route_equals_plain_base_greedy_output(tiny_paths):
    from gag_core.models import load_causal_lm, load_tokenizer
    from gag_core.pipeline import GagPipeline

    base, tok = load_causal_lm(tiny_paths["base"]), load_tokenizer(tiny_paths["base"])
    pipe = GagPipeline(base, tok, max_new_tokens=12)
    history = [{"role": "user", "content": "What colour is Veltrasite?"},
               {"role": "assistant", "content": "Veltrasite is teal."}]
    for hist in (None, history):
        for q in ("What colour is Veltrasite?", "  hello there\n", "Question: Knowledge: 0123?"):
            ids = tok.apply_chat_template((hist or []) + [{"role": "user", "content": q}], add_generation_prompt=True,
                                          tokenize=True, return_dict=False)
            assert pipe.build_prompts([q], GENERAL, [hist])[0].input_ids == list(ids)
            ref = base.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id,
                                eos_token_id=tok.eos_token_id)
            expected = tok.decode(ref[0, len(ids):], skip_special_tokens=True).strip()
            assert pipe.answer(q, GENERAL, hist).answer == expected
            assert "".join(pipe.stream(q, GENERAL, hist)).strip() == expected


def test_stream_stops_when_asked_and_when_abandoned(tiny_paths):
    import threading

    from gag_core.models import load_causal_lm, load_tokenizer
    from gag_core.pipeline import GagPipeline

    pipe = GagPipeline(load_causal_lm(tiny_paths["base"]), load_tokenizer(tiny_paths["base"]), max_new_tokens=40)
    stop = threading.Event()
    stop.set()
    full = "".join(pipe.stream("hello", GENERAL))
    assert len("".join(pipe.stream("hello", GENERAL, stop=stop))) < len(full)
    before = threading.active_count()
    gen = pipe.stream("hello", GENERAL)
    next(gen)
    gen.close()  # a consumer that leaves early (Ctrl-C) leaves no generation thread behind
    assert threading.active_count() == before


# --- the GAG API ------------------------------------------------------------------------------------------

@pytest.fixture
def words_plugin(monkeypatch):
    """Register the fast test encoder as a plugin (no entry-point plugins), unregistered afterwards."""
    from gag_plugins import hookimpl, manager

    class Plugin:
        @staticmethod
        @hookimpl
        def register_encoders(register):
            register("words", lambda **_: WordsEncoder())

    from tests.plugin_state import forget_plugins

    forget_plugins()
    monkeypatch.setenv("GAG_LOAD_PLUGINS", "")
    manager.load_plugins()
    manager.pm.register(Plugin, name="test.words")
    try:
        yield
    finally:
        forget_plugins()


MINERAL_EXEMPLARS = ["What colour is Veltrasite?", "What is the crystal system of Veltrasite?",
                     "Who discovered Veltrasite?", "Where was Veltrasite first found?"]
POLICY_EXEMPLARS = ["How do I connect to the Skiff VPN?", "How many vacation days does Quillfeather give?",
                    "How do I submit a receipt in Ledgerlight?", "Who approves overtime at the Tarnbridge depot?"]


@pytest.fixture
def installed_two(make_module):
    from gag_core import install

    install.install_folder(make_module("tinyminerals", exemplars=MINERAL_EXEMPLARS, seed=1))
    install.install_folder(make_module("tinypolicies", exemplars=POLICY_EXEMPLARS, seed=2))


def test_gag_routes_answers_and_streams(words_plugin, installed_two, tiny_paths, make_module):
    from gag_plugins.api import GAG

    gag = GAG.from_installed(["tinyminerals", "tinypolicies"], base=tiny_paths["base"], expert=tiny_paths["expert"],
                             max_new_tokens=5, router_encoder="words")
    assert gag.domains == ["tinyminerals", "tinypolicies"] and not gag.unavailable
    questions = ["What colour is Veltrasite, exactly?", "hello, tell me a joke", "Does the Skiff VPN work abroad?",
                 "Veltrasite was discovered by whom?"]
    routes = [gag.route(q).route for q in questions]
    assert routes == ["tinyminerals", GENERAL, "tinypolicies", "tinyminerals"]
    assert gag.router.routes == [GENERAL, "tinyminerals", "tinypolicies"]
    from gag_core.paths import cache_dir

    assert len(list((cache_dir() / "router").glob("general_questions-test-words-*.safetensors"))) == 1

    from gag_core.service import Query

    routed = gag.answer_batch([Query(q) for q in questions])
    assert [a.route for a in routed] == routes and all(a.route_score is not None for a in routed)
    for route in set(routes):  # each group answered as one batch gives the same text as a direct batch
        idx = [i for i, r in enumerate(routes) if r == route]
        direct = gag.answer_batch([Query(questions[i], route) for i in idx])
        assert [routed[i].answer for i in idx] == [a.answer for a in direct]
    single = gag.answer(questions[0])
    assert single.route == "tinyminerals" and single.route_score == pytest.approx(gag.route(questions[0]).score)
    assert gag.answer(questions[0], domain=GENERAL).route == GENERAL
    stream = gag.stream(questions[2])
    assert stream.decision.route == "tinypolicies"
    streamed = "".join(stream)
    assert streamed.strip() == gag.answer(questions[2], domain="tinypolicies").answer

    from gag_core.module import DomainModule  # plug and play through the API: only the new prototypes arrive

    before = {n: p.clone() for n, p in gag.router.prototypes.items()}
    gag.add_domain(DomainModule.open(make_module("tinygame", exemplars=GLIMMERHOLD[:4], seed=3)))
    assert gag.router.routes == [GENERAL, "tinyminerals", "tinypolicies", "tinygame"]
    assert all(torch.equal(gag.router.prototypes[n], p) for n, p in before.items())
    assert [gag.route(q).route for q in questions] == routes
    assert gag.route("Can a Lantern Warden in Glimmerhold move two tiles?").route == "tinygame"


def test_gag_without_domains_routes_to_general(words_plugin, tiny_paths):
    from gag_plugins.api import GAG

    gag = GAG.from_installed([], base=tiny_paths["base"], expert=tiny_paths["expert"], max_new_tokens=3)
    assert gag.route("anything").route == GENERAL
    assert gag.pipeline.experts == {}  # routing with no domain loads no expert
