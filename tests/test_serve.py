"""``gag serve``: a real uvicorn server on a loopback port, driven with the official ``openai`` client.

Tiny random models answer through the real routed service; a scripted fake service (slow, gated, streaming
until cancelled) drives the queue, timeout and disconnect cases deterministically.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx2
import openai
import pytest

from gag_core.errors import DomainNotFoundError, InputError
from gag_core.generation import GenerationOptions
from gag_core.pipeline import Answer
from gag_core.routes import GENERAL, RouteDecision
from gag_core.service import Query
from gag_core.serving.app import create_app
from gag_core.serving.engine import Engine
from gag_core.serving.settings import ServeSettings

KEY = "test-key"
QUESTIONS = ["What colour is Veltrasite?", "hi", "In which year was the hexagonal mineral discovered?",
             "Tell me about the crystal system", "0123456789", "What is the quick brown fox?"]
DEMO_HOME = os.environ.get("GAG_HOME")  # read at collection, before the per-test GAG_HOME of conftest


@contextmanager
def serving(engine: Engine, settings: ServeSettings):
    """A real uvicorn server for ``engine`` on a free loopback port; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(engine, settings), host="127.0.0.1", port=0,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def client(url: str, key: str | None = KEY, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key or "none", max_retries=0, timeout=60, **kwargs)


def post(url: str, path: str, body, key: str | None = KEY, **kwargs) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    return httpx2.post(f"{url}{path}", content=body, timeout=60,
                       headers={"Content-Type": "application/json", **headers}, **kwargs)


def tiny_service(tiny_paths, folders=(), installed: bool = False):
    from gag_core.models import load_causal_lm, load_tokenizer
    from gag_core.module import DomainModule
    from gag_core.pipeline import GagPipeline
    from gag_plugins.api import GAG

    if installed:
        return GAG.from_installed(base=tiny_paths["base"], max_new_tokens=6, router_encoder="expert-mean")
    pipeline = GagPipeline(load_causal_lm(tiny_paths["base"]), load_tokenizer(tiny_paths["base"]),
                           expert_loader=lambda e: (load_causal_lm(e), load_tokenizer(e)), max_new_tokens=6)
    service = GAG(pipeline, router_encoder="expert-mean")
    for folder in folders:
        service.add_domain(DomainModule.open(folder))
    return service


@pytest.fixture(scope="module")
def tiny_server(tiny_paths, tmp_path_factory):
    """One served tiny service (domain ``tinydom``), key required; yields (url, service, settings)."""
    from tests.factories import build_tiny_module

    root = tmp_path_factory.mktemp("serve")
    folder = build_tiny_module(root / "tinydom", name="tinydom", paths=tiny_paths)
    settings = ServeSettings(api_key=KEY, max_tokens_cap=32, default_max_tokens=6, max_prompt_tokens=64,
                             batch_window_ms=20, max_batch=16)
    with pytest.MonkeyPatch.context() as mp:  # the router's prototype cache goes here, not to the user's home
        mp.setenv("GAG_HOME", str(root / "home"))
        engine = Engine(lambda: tiny_service(tiny_paths, [folder]), settings).start()
    with serving(engine, settings) as url:
        yield url, engine.service, settings


def direct(service, question: str, route: str | None, max_tokens: int = 6) -> Answer:
    return service.answer_batch([Query(question, route)], GenerationOptions(max_new_tokens=max_tokens))[0]


# --- the OpenAI endpoints on tiny models ----------------------------------------------------------------

def test_models_lists_auto_general_and_every_domain(tiny_server):
    url, service, _ = tiny_server
    models = {m.id: m for m in client(url).models.list().data}
    assert list(models) == ["auto", GENERAL, "tinydom"]
    tinydom = models["tinydom"].model_dump()
    assert tinydom["version"] == service.module("tinydom").manifest.version
    assert tinydom["base_model"] == service.module("tinydom").manifest.base["id"]


@pytest.mark.parametrize("model", ["tinydom", GENERAL, "auto"])
def test_chat_answers_like_the_service_with_usage_and_the_gag_object(tiny_server, model):
    url, service, _ = tiny_server
    question = QUESTIONS[0]
    resp = client(url).chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                               max_tokens=5)
    route = service.route(question).route if model == "auto" else model
    expected = direct(service, question, route, 5)
    assert resp.choices[0].message.content == expected.answer and resp.model == model
    assert resp.choices[0].finish_reason == expected.finish_reason
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (expected.prompt_tokens,
                                                                         expected.completion_tokens)
    assert resp.usage.total_tokens == expected.prompt_tokens + expected.completion_tokens
    gag = resp.model_extra["gag"]
    assert gag["route"] == route and gag["slots"] == (0 if route == GENERAL else 2)
    if model == "auto":
        decision = service.route(question)
        assert gag["score"] == pytest.approx(decision.score) and gag["runner_up"] == decision.runner_up
    else:
        assert gag["score"] is None


def test_chat_streams_chunks_that_join_to_the_answer(tiny_server):
    url, service, _ = tiny_server
    stream = client(url).chat.completions.create(
        model="tinydom", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        max_tokens=8, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    first = chunks[0]
    assert first.choices[0].delta.role == "assistant" and first.model_extra["gag"]["route"] == "tinydom"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    expected = service.answer_batch([Query("hi", "tinydom", [{"role": "system", "content": "Be brief."}])],
                                    GenerationOptions(max_new_tokens=8))[0]
    assert text.strip() == expected.answer
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == expected.finish_reason
    assert chunks[-1].usage.completion_tokens == expected.completion_tokens and not chunks[-1].choices


def test_completions_plain_prompt_streaming_and_not(tiny_server):
    url, service, _ = tiny_server
    api = client(url)
    resp = api.completions.create(model=GENERAL, prompt=QUESTIONS[2], max_tokens=6)
    expected = direct(service, QUESTIONS[2], GENERAL)
    assert resp.choices[0].text == expected.answer and resp.model_extra["gag"]["route"] == GENERAL
    assert resp.usage.completion_tokens == expected.completion_tokens
    pieces = list(api.completions.create(model="tinydom", prompt=QUESTIONS[2], max_tokens=6, stream=True))
    assert pieces[0].model_extra["gag"]["slots"] == 2
    assert "".join(p.choices[0].text for p in pieces).strip() == direct(service, QUESTIONS[2], "tinydom").answer


def test_sampling_with_a_seed_repeats_and_stop_strings_cut(tiny_server):
    url, service, _ = tiny_server
    api = client(url)
    ask = lambda **kw: api.chat.completions.create(  # noqa: E731
        model="tinydom", messages=[{"role": "user", "content": QUESTIONS[1]}], max_tokens=12, **kw)
    first, again = ask(temperature=0.9, seed=7), ask(temperature=0.9, seed=7)
    assert first.choices[0].message.content == again.choices[0].message.content
    greedy = direct(service, QUESTIONS[1], "tinydom", 12).answer
    if len(greedy) > 2:
        cut = ask(stop=[greedy[2:4]])
        assert cut.choices[0].message.content == greedy[:greedy.index(greedy[2:4])].strip()
        assert cut.choices[0].finish_reason == "stop"


def test_sixteen_concurrent_clients_are_all_answered_correctly(tiny_server):
    url, service, _ = tiny_server
    jobs = [(QUESTIONS[i % len(QUESTIONS)], ["auto", "tinydom", GENERAL][i % 3]) for i in range(16)]
    expected = [direct(service, q, service.route(q).route if m == "auto" else m).answer for q, m in jobs]
    api = client(url)

    def ask(job):
        q, model = job
        return api.chat.completions.create(model=model, messages=[{"role": "user", "content": q}])

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, jobs))
    assert [a.choices[0].message.content for a in answers] == expected
    metrics = httpx2.get(f"{url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert "gag_batch_size_bucket" in metrics and 'gag_requests_total{endpoint="/v1/chat/completions"' in metrics
    sizes = [line for line in metrics.splitlines() if line.startswith("gag_batch_size_count")]
    count = float(sizes[0].split()[-1])
    total = float(next(line for line in metrics.splitlines() if line.startswith("gag_batch_size_sum")).split()[-1])
    assert total / count > 1.5, metrics  # requests really were batched together


# --- keys and bad input: 4xx OpenAI error objects, and the server stays healthy ----------------------------

def _error(resp: httpx2.Response, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code:
        assert error["code"] == code, error
    return error


def _chat(content="hi", **extra) -> dict:
    return {"model": "tinydom", "messages": [{"role": "user", "content": content}], **extra}


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_a_missing_or_wrong_key_is_401(tiny_server, key):
    url = tiny_server[0]
    with pytest.raises(openai.AuthenticationError):
        client(url, key or "not-the-key").models.list()
    _error(post(url, "/v1/chat/completions", _chat(), key=key), 401, "invalid_api_key")
    assert httpx2.get(f"{url}/metrics").status_code == 401
    assert httpx2.get(f"{url}/health").json()["status"] == "ok"  # health needs no key


BAD_INPUTS = {
    "unknown_model": (lambda s: _chat(model="nope"), 404, "model_not_found"),
    "empty_messages": (lambda s: {"model": "tinydom", "messages": []}, 400, "invalid_value"),
    "prompt_over_the_token_limit": (lambda s: _chat("word " * (s.max_prompt_tokens * 2)), 400,
                                    "context_length_exceeded"),
    "max_tokens_over_the_cap": (lambda s: _chat(max_tokens=s.max_tokens_cap + 1), 400, "invalid_value"),
    "malformed_json": (lambda s: b'{"model": "tinydom", "messages": [', 400, "invalid_json"),
    "body_over_1_mb": (lambda s: _chat("x" * (1024 * 1024 + 10)), 413, "request_too_large"),
    "prompt_embeds": (lambda s: {**_chat(), "prompt_embeds": "UEsDBBQAAAAIAA=="}, 400, "invalid_value"),
    "image_content": (lambda s: _chat([{"type": "image_url", "image_url": {"url": "x"}}]), 400, "invalid_value"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_a_4xx_error_object_and_the_server_stays_healthy(tiny_server, case):
    url, _, settings = tiny_server
    body, status, code = BAD_INPUTS[case]
    error = _error(post(url, "/v1/chat/completions", body(settings)), status, code)
    if case in ("prompt_embeds", "image_content"):
        assert "text only" in error["message"]
    assert httpx2.get(f"{url}/health").json()["status"] == "ok"
    ok = client(url).chat.completions.create(model="tinydom", messages=[{"role": "user", "content": "hi"}])
    assert ok.choices[0].message.content is not None


def test_a_chunked_body_over_1_mb_is_413_too(tiny_server):
    def body():  # no Content-Length: the limit is counted while the body arrives
        yield b'{"model": "tinydom", "messages": [{"role": "user", "content": "'
        yield from (b"x" * 100_000 for _ in range(11))
        yield b'"}]}'

    url = tiny_server[0]
    resp = httpx2.post(f"{url}/v1/chat/completions", content=body(), timeout=60,
                       headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    _error(resp, 413, "request_too_large")


def test_streamed_request_refused_before_the_stream_keeps_its_status(tiny_server):
    url, _, settings = tiny_server
    resp = post(url, "/v1/completions", {"model": "tinydom", "prompt": "word " * 200, "stream": True})
    _error(resp, 400, "context_length_exceeded")


# --- queue, timeout and disconnect, with a scripted service --------------------------------------------------

class FakeService:
    """Routes everything to ``fake``; each row streams ``pieces`` pieces, one per ``tick``, until cancelled.
    ``gate`` (an Event) holds every batch until it is set."""

    domains = ["fake"]
    unavailable: dict = {}

    def __init__(self, pieces: int = 3, tick: float = 0.0, gate: threading.Event | None = None, fail_on: str = ""):
        self.pieces, self.tick, self.gate, self.fail_on = pieces, tick, gate, fail_on
        self.batches: list[int] = []
        self.pipeline = SimpleNamespace(tokenizer=lambda text, **_: {"input_ids": text.split()},
                                        base=SimpleNamespace(config=SimpleNamespace(name_or_path="fake-base")))
        self.started, self.stopped = threading.Event(), threading.Event()
        self.produced: list[int] = []

    def module(self, name):
        return SimpleNamespace(manifest=SimpleNamespace(name=name, projector=SimpleNamespace(slots=3), version="1.2.3",
                                                        base={"id": "fake-base"}, description="a fake"))

    def resolve(self, route):
        if route in ("fake", GENERAL):
            return route
        raise DomainNotFoundError(f"No loaded domain {route!r}.")

    def route_batch(self, questions):
        return [RouteDecision("fake", 0.9, {}, runner_up=GENERAL, runner_up_score=0.2) for _ in questions]

    def answer_batch(self, queries, options=None, *, cancel=None, on_text=None):
        self.started.set()
        self.batches.append(len(queries))
        if self.fail_on and any(q.question == self.fail_on for q in queries):
            raise InputError(f"cannot answer {self.fail_on!r}")
        if self.gate is not None:
            self.gate.wait(30)
        answers = []
        for row, query in enumerate(queries):
            count, reason = 0, "length"
            while count < self.pieces:
                if cancel and cancel[row].is_set():
                    reason = "cancelled"
                    break
                count += 1
                if on_text:
                    on_text(row, "x ")
                time.sleep(self.tick)
            self.produced.append(count)
            answers.append(Answer(query.question, ("x " * count).strip(), query.route, 3, 0.0,
                                  completion_tokens=count, finish_reason=reason))
        self.stopped.set()
        return answers


def _fake_server(service: FakeService, **settings):
    settings = ServeSettings(**{"batch_window_ms": 1, **settings})
    return serving(Engine(lambda: service, settings), settings)


def test_a_full_queue_answers_429_with_retry_after_and_nothing_hangs():
    gate = threading.Event()
    fake = FakeService(gate=gate)
    with _fake_server(fake, max_queue=1, max_batch=1) as url, ThreadPoolExecutor(2) as pool:
        api = client(url, key=None)
        ask = lambda: api.chat.completions.create(model="fake", messages=[{"role": "user", "content": "q"}])  # noqa: E731
        first = pool.submit(ask)
        assert fake.started.wait(10)  # the worker holds the first request
        second = pool.submit(ask)
        deadline = time.monotonic() + 10
        while httpx2.get(f"{url}/health").json()["queue_depth"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(openai.RateLimitError) as refused:
            ask()
        assert refused.value.response.headers["retry-after"] == "1"
        assert refused.value.body["code"] == "queue_full"
        gate.set()
        assert first.result(10).choices[0].message.content == "x x x"
        assert second.result(10).choices[0].message.content == "x x x"


def test_a_request_over_the_timeout_is_504_and_its_generation_is_cancelled():
    fake = FakeService(pieces=400, tick=0.01)
    with _fake_server(fake, timeout_s=0.3) as url:
        with pytest.raises(openai.APIStatusError) as timed_out:
            client(url, key=None).chat.completions.create(model="fake", messages=[{"role": "user", "content": "q"}])
        assert timed_out.value.status_code == 504
        assert fake.stopped.wait(5) and fake.produced[0] < 400


def test_a_client_that_disconnects_mid_stream_stops_its_generation():
    fake = FakeService(pieces=400, tick=0.01)
    with _fake_server(fake) as url:
        stream = client(url, key=None).chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "q"}], stream=True)
        first = next(iter(stream))
        assert first.model_extra["gag"] == {"route": "fake", "score": 0.9, "runner_up": GENERAL,
                                            "runner_up_score": 0.2, "slots": 3}
        next(iter(stream))
        stream.close()
        assert fake.stopped.wait(5), "generation went on after the client left"
        assert fake.produced[0] < 400


def test_a_request_that_breaks_its_batch_fails_alone():
    fake = FakeService(fail_on="boom")
    with _fake_server(fake, batch_window_ms=5000, max_batch=3) as url, ThreadPoolExecutor(3) as pool:
        asks = [pool.submit(post, url, "/v1/chat/completions", {"model": "fake", "messages": [
            {"role": "user", "content": q}]}, None) for q in ("first", "boom", "last")]
        first, boom, last = (f.result(30) for f in asks)
    assert first.json()["choices"][0]["message"]["content"] == last.json()["choices"][0]["message"]["content"] == "x x x"
    assert "cannot answer 'boom'" in _error(boom, 400, "invalid_value")["message"]
    assert fake.batches[0] == 3 and fake.batches[1:] == [1, 1, 1]


def test_requests_that_keep_arriving_within_the_window_share_one_batch():
    fake = FakeService()  # 300 ms window; four requests 150 ms apart span 450 ms, more than one window
    with _fake_server(fake, batch_window_ms=300, max_batch=8) as url, ThreadPoolExecutor(4) as pool:
        def ask(i: int):
            time.sleep(0.15 * i)
            return post(url, "/v1/chat/completions", {"model": "fake", "messages": [
                {"role": "user", "content": f"q{i}"}]}, None)

        answers = [f.result(30) for f in [pool.submit(ask, i) for i in range(4)]]
    assert all(a.status_code == 200 for a in answers)
    assert fake.batches == [4]


def test_requests_sent_as_a_batch_ends_join_the_ones_that_waited_for_it():
    gate = threading.Event()
    fake = FakeService(gate=gate)
    with _fake_server(fake, batch_window_ms=300, max_batch=8) as url, ThreadPoolExecutor(3) as pool:
        ask = lambda q: post(url, "/v1/chat/completions", {"model": "fake", "messages": [  # noqa: E731
            {"role": "user", "content": q}]}, None)
        first = pool.submit(ask, "first")
        assert fake.started.wait(10)  # the worker holds the first request
        waited = pool.submit(ask, "waited")
        time.sleep(0.6)  # it has waited two windows when the batch ends
        gate.set()
        assert first.result(10).status_code == 200
        resent = pool.submit(ask, "resent")  # a client that sends again as soon as it has its answer
        assert waited.result(10).status_code == resent.result(10).status_code == 200
    assert fake.batches == [1, 2]


def test_serving_beyond_loopback_without_a_key_is_refused_with_the_way_out():
    from typer.testing import CliRunner

    from gag_cli.main import app
    from gag_cli.serve import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.5", "example.org"]))
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"], env={"GAG_API_KEY": None})
    assert result.exit_code == 1
    assert "without an API key" in result.output and "--api-key" in result.output and "127.0.0.1" in result.output


# --- reload ----------------------------------------------------------------------------------------------------

def _install(folder: Path) -> None:
    from typer.testing import CliRunner

    from gag_cli.main import app

    result = CliRunner().invoke(app, ["install-domain", str(folder)])
    assert result.exit_code == 0, result.output


def test_reload_picks_up_added_and_removed_domains_and_reports_a_broken_one(tiny_paths, make_module):
    from typer.testing import CliRunner

    from gag_cli.main import app

    _install(make_module("first"))
    settings = ServeSettings(api_key=KEY, default_max_tokens=4)
    built = []
    engine = Engine(lambda: built.append(tiny_service(tiny_paths, installed=True)) or built[-1], settings,
                    refresh=lambda service: service.refresh())
    with serving(engine, settings) as url, ThreadPoolExecutor(4) as pool:
        api = client(url)
        assert [m.id for m in api.models.list().data] == ["auto", GENERAL, "first"]
        _install(make_module("second", seed=3))
        _install(make_module("broken", base_key="llama_base"))  # aligned to another base model
        assert CliRunner().invoke(app, ["uninstall-domain", "first"]).exit_code == 0
        ask = lambda: api.chat.completions.create(model=GENERAL, messages=[{"role": "user", "content": "hi"}])  # noqa: E731
        in_flight = [pool.submit(ask) for _ in range(4)]
        assert _error(post(url, "/admin/reload", {}, key=None), 401)
        report = post(url, "/admin/reload", {}).json()
        assert all(f.result(30).choices[0].message.content is not None for f in in_flight)
        assert report["added"] == ["second"] and report["removed"] == ["first"] and report["domains"] == ["second"]
        assert "broken" in report["unavailable"]
        assert [m.id for m in api.models.list().data] == ["auto", GENERAL, "second"]
        assert httpx2.get(f"{url}/health").json()["unavailable"].keys() == {"broken"}
        _error(post(url, "/v1/chat/completions", {**_chat(), "model": "broken"}), 404, "model_unavailable")
        assert api.chat.completions.create(model="second", messages=[{"role": "user", "content": "hi"}]).choices
        assert len(built) == 1 and engine.service is built[0]  # refreshed in place: the base was loaded once


def test_admin_reload_needs_a_key_even_on_loopback():
    with _fake_server(FakeService()) as url:
        _error(post(url, "/admin/reload", {}, key=None), 403, "key_required")


# --- end to end on the embedded model, with the trained demo domain -------------------------------------------

@pytest.mark.e2e
def test_the_trained_demo_domain_answers_through_auto_and_by_name(monkeypatch):
    from gag_plugins.api import GAG
    from gag_plugins.discovery import all_domains

    if DEMO_HOME:
        monkeypatch.setenv("GAG_HOME", DEMO_HOME)
    else:  # the user's default GAG_HOME, where `gag demo` installed the trained domain
        monkeypatch.delenv("GAG_HOME")
    if "minerals" not in all_domains():
        pytest.skip("no trained minerals domain is installed; run `gag demo` first")
    settings = ServeSettings()
    engine = Engine(lambda: GAG.from_installed(["minerals"], strict=True), settings)
    questions = {"What colour is Fenbelite?": "crimson", "What colour is Orvdasite?": "bronze"}
    with serving(engine, settings) as url:
        api = client(url, key=None)
        for model in ("auto", "minerals"):
            for question, value in questions.items():
                resp = api.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                                   max_tokens=24)
                assert resp.model_extra["gag"]["route"] == "minerals"
                assert value in resp.choices[0].message.content.lower(), (model, resp.choices[0].message.content)
        general = api.chat.completions.create(model="auto", max_tokens=8,
                                              messages=[{"role": "user", "content": "What is the capital of France?"}])
        assert general.model_extra["gag"]["route"] == GENERAL and general.model_extra["gag"]["slots"] == 0


def test_refresh_reloads_only_a_domain_whose_manifest_changed(tiny_paths, make_module, tmp_path):
    from typer.testing import CliRunner

    from gag_cli.main import app
    from tests.factories import build_tiny_module

    _install(make_module("first"))
    _install(make_module("second", seed=3))
    gag = tiny_service(tiny_paths, installed=True)
    before = {name: gag.module(name).manifest for name in gag.domains}
    newer = build_tiny_module(tmp_path / "v2" / "first", name="first", paths=tiny_paths, seed=5)
    assert CliRunner().invoke(app, ["install-domain", str(newer), "--force"]).exit_code == 0
    report = gag.refresh()
    assert report["updated"] == ["first"] and report["added"] == [] and report["removed"] == []
    assert gag.module("first").manifest != before["first"] and gag.module("second").manifest == before["second"]
    assert gag.answer("hi", route="first").route == "first"  # the reloaded adapter answers
    assert gag.refresh()["updated"] == []  # nothing changed since


# --- the `gag serve` process: generation on its main thread, HTTP beside it ----------------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_process(tiny_paths, port: int, log: Path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "gag_cli.main", "serve", "--port", str(port), "--base", tiny_paths["base"],
           "--router-encoder", "expert-mean", "--default-max-tokens", "4", "--log-level", "warning"]
    return subprocess.Popen(cmd, env=dict(os.environ), stdout=open(log, "w"), stderr=subprocess.STDOUT)


def test_gag_serve_answers_from_its_main_thread_and_sigterm_finishes_in_flight_requests(tiny_paths, make_module,
                                                                                        tmp_path):
    import signal

    _install(make_module("first"))
    port, log = _free_port(), tmp_path / "serve.log"
    proc = _serve_process(tiny_paths, port, log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            try:
                if httpx2.get(f"{url}/health", timeout=2).json()["status"] == "ok":
                    break
            except httpx2.TransportError:
                time.sleep(0.2)
        api = client(url, key=None)
        with ThreadPoolExecutor(4) as pool:
            asks = [pool.submit(api.chat.completions.create, model=m, messages=[{"role": "user", "content": q}])
                    for m, q in zip(["auto", "first", GENERAL, "auto"], QUESTIONS)]
            time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)  # stop taking requests; the ones in flight still get their answer
            assert all(a.result(60).choices[0].finish_reason in ("stop", "length") for a in asks)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_gag_serve_on_a_busy_port_exits_with_an_error(tiny_paths, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        log = tmp_path / "serve.log"
        proc = _serve_process(tiny_paths, taken.getsockname()[1], log)
        assert proc.wait(120) != 0
    assert "--port" in log.read_text()
