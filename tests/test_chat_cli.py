"""``gag chat``, ``gag route`` and routed ``gag ask`` through typer's CliRunner, with tiny models."""

from __future__ import annotations

import json
import threading

import pytest
from typer.testing import CliRunner

from gag_core.routes import GENERAL, RouteDecision
from gag_core.service import RoutedStream
from tests.test_router import installed_two, words_plugin  # noqa: F401 - shared fixtures

runner = CliRunner()


@pytest.fixture
def app():
    from gag_cli.main import app

    return app


def _model_args(tiny_paths):
    return ["--base", tiny_paths["base"], "--expert", tiny_paths["expert"], "--router-encoder", "words",
            "--max-new-tokens", "4"]


def test_chat_routes_switches_and_quits(app, words_plugin, installed_two, tiny_paths):
    lines = ["What colour is Veltrasite, exactly?", "/route", "/general", "And who discovered Veltrasite?",
             "/use tinypolicies", "hello", "/use nosuch", "/domains", "/auto", "Does the Skiff VPN work abroad?",
             "/help", "/quit", "never read"]
    result = runner.invoke(app, ["chat", *_model_args(tiny_paths)], input="\n".join(lines) + "\n")
    out = result.output
    assert result.exit_code == 0, out
    assert "→ tinyminerals 0." in out  # routed, with its score
    assert "routes for:" in out and "│ tinyminerals │" in out and "chosen" in out  # the /route table
    assert "→ general (fixed)" in out and "→ tinypolicies (fixed)" in out
    assert "No loaded domain 'nosuch'" in out
    assert "loaded domains: tinyminerals, tinypolicies" in out
    assert "→ tinypolicies 0." in out  # /auto routes again
    assert "/use NAME" in out and "bye" in out
    assert out.count("you›") == 12  # /quit ended the session before the last line


def test_chat_ends_at_end_of_input(app, words_plugin, tiny_paths):
    result = runner.invoke(app, ["chat", *_model_args(tiny_paths)], input="hello\n")
    assert result.exit_code == 0, result.output
    assert "→ general 1.000" in result.output and "bye" in result.output


def test_chat_refuses_an_unknown_domain(app, words_plugin, tiny_paths):
    result = runner.invoke(app, ["chat", "--domain", "nosuch", *_model_args(tiny_paths)], input="/quit\n")
    assert result.exit_code == 1 and "nosuch" in result.output


class StubGag:
    """Records what the chat session asks of it; ``stream`` can simulate Ctrl-C after the first piece."""

    domains = ["minerals"]
    unavailable: dict = {}

    def __init__(self, interrupt_first=False):
        self.calls = []
        self.interrupt_first = interrupt_first
        self.stops = []

    def route(self, question):
        route = "minerals" if "mineral" in question else GENERAL
        return RouteDecision(route, 0.9, {GENERAL: 0.5, "minerals": 0.9} if route != GENERAL else {GENERAL: 0.9})

    def resolve(self, route):
        return route

    def stream(self, question, route=None, history=None, options=None, stop=None):
        decision = None if route is not None else self.route(question)
        route = route or decision.route
        self.calls.append((question, route, [dict(m) for m in history or []]))
        self.stops.append(stop)
        return RoutedStream(self._pieces(), route, decision)

    def _pieces(self):
        yield "partial "
        if self.interrupt_first and len(self.calls) == 1:
            raise KeyboardInterrupt
        yield "answer"


def test_ctrl_c_stops_one_answer_not_the_session_and_history_is_kept():
    from gag_cli.chat import ChatSession, run_chat

    gag = StubGag(interrupt_first=True)
    lines = iter(["a mineral question", "a follow-up", "/use minerals", "third"])

    def read(prompt):
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    session = ChatSession(gag)
    run_chat(session, read)
    assert [c[1] for c in gag.calls] == ["minerals", GENERAL, "minerals"]
    assert isinstance(gag.stops[0], threading.Event) and gag.stops[0].is_set()  # Ctrl-C set the stop event
    assert not gag.stops[1].is_set()
    assert gag.calls[0][2] == []  # earlier turns travel as history; the interrupted answer is kept as written
    assert gag.calls[1][2] == [{"role": "user", "content": "a mineral question"},
                               {"role": "assistant", "content": "partial"}]
    assert len(gag.calls[2][2]) == 4
    assert session.forced == "minerals"


def test_route_command_explains_its_text_else_the_last_question(capsys):
    from gag_cli.chat import ChatSession

    gag = StubGag()
    session = ChatSession(gag)
    session.command("/route")
    assert "No question yet" in capsys.readouterr().out
    session.command("/route a mineral question")
    out = capsys.readouterr().out
    assert "routes for: a mineral question" in out and "chosen" in out and "minerals" in out
    session.ask("hello")
    capsys.readouterr()
    session.command("/route")
    assert "routes for: hello" in capsys.readouterr().out
    session.command("/route which mineral is teal?")
    out = capsys.readouterr().out
    assert "routes for: which mineral is teal?" in out and "hello" not in out
    assert [c[:2] for c in gag.calls] == [("hello", GENERAL)]  # explaining a text answers nothing


def test_ctrl_c_at_the_prompt_twice_ends_the_session():
    from gag_cli.chat import ChatSession, run_chat

    gag = StubGag()

    def read(prompt):
        raise KeyboardInterrupt

    run_chat(ChatSession(gag), read)
    assert gag.calls == []


def test_route_command_explain_and_jsonl_resume(app, words_plugin, installed_two, tmp_path):
    result = runner.invoke(app, ["route", "What colour is Veltrasite, exactly?", "--explain", "--router-encoder",
                                 "words"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("tinyminerals (")
    for name in (GENERAL, "tinyminerals", "tinypolicies"):
        assert name in result.output.split("\n", 1)[1]  # the table lists every route

    questions = ["What colour is Veltrasite, exactly?", "hello, tell me a joke", "Does the Skiff VPN work abroad?"]
    src, out = tmp_path / "q.jsonl", tmp_path / "r.jsonl"
    src.write_text("".join(json.dumps({"question": q}) + "\n" for q in questions))
    first = runner.invoke(app, ["route", "--input", str(src), "--output", str(out), "--router-encoder", "words"])
    assert first.exit_code == 0, first.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["route"] for r in rows] == ["tinyminerals", GENERAL, "tinypolicies"]
    assert all(set(r) == {"question", "route", "route_score", "scores"} for r in rows)
    assert rows[0]["route_score"] == max(rows[0]["scores"].values())
    out.write_text(out.read_text().splitlines(keepends=True)[0] + '{"question": "What col')  # killed mid-write
    again = runner.invoke(app, ["route", "--input", str(src), "--output", str(out), "--router-encoder", "words"])
    assert again.exit_code == 0 and "Resuming: 1/3" in again.output
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows


def test_route_command_rejects_unknown_encoder(app, words_plugin):
    result = runner.invoke(app, ["route", "hi", "--router-encoder", "nope"])
    assert result.exit_code == 1 and "Unknown router encoder 'nope'" in result.output


def test_ask_routes_without_domain(app, words_plugin, installed_two, tiny_paths, tmp_path):
    result = runner.invoke(app, ["ask", "What colour is Veltrasite, exactly?", "--json", *_model_args(tiny_paths)])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)
    assert row["route"] == "tinyminerals" and "route_score" in row
    src, out = tmp_path / "q.jsonl", tmp_path / "a.jsonl"
    src.write_text("".join(json.dumps({"question": q}) + "\n"
                           for q in ["hello, tell me a joke", "Does the Skiff VPN work abroad?"]))
    result = runner.invoke(app, ["ask", "--input", str(src), "--output", str(out), *_model_args(tiny_paths)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["route"] for r in rows] == [GENERAL, "tinypolicies"] and all("route_score" in r for r in rows)
