"""``gag ask``: one question (streamed) or a resumable JSONL batch."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.markup import escape

from gag_core.errors import DataError, InputError
from gag_core.routes import GENERAL

from .console import console, handle_errors
from .jsonl import read_questions
from .progress import resumable_batches

ProfileOpt = typer.Option("embedded", "--profile", help="Model profile: embedded (offline CPU) or paper (Qwen3-8B + 1.7B).")
BaseOpt = typer.Option(None, "--base", help="Base model id or folder (overrides the profile).")
ExpertOpt = typer.Option(None, "--expert", help="Expert backbone id or folder (overrides the modules' own).")
RouterEncoderOpt = typer.Option(None, "--router-encoder", help="Router encoder: minilm (default) or expert-mean "
                                "(or $GAG_ROUTER_ENCODER).")


def load_gag(profile: str, base: str | None, expert: str | None, domains: list[str] | None, max_new_tokens: int,
             router_encoder: str | None = None, margin: float | None = None, min_confidence: list[str] | None = None):
    from gag_plugins.api import GAG

    from .route import parse_min_confidence

    with console.status("Loading models…"):
        return GAG.from_installed(domains, profile=profile, base=base, expert=expert, max_new_tokens=max_new_tokens,
                                  router_encoder=router_encoder, margin=margin, **parse_min_confidence(min_confidence))


def forced_route(domain: str | None, general: bool) -> str | None:
    """The route --domain/--general force, or None to let the router choose."""
    if domain and general:
        raise InputError("Pass either --domain NAME or --general, not both.")
    return GENERAL if general else domain


def register(app: typer.Typer) -> None:
    @app.command("ask")
    @handle_errors
    def ask(
        question: str = typer.Argument(None, help="The question (omit with --input)."),
        domain: str = typer.Option(None, "--domain", "-d", help="Answer with this domain (skip routing)."),
        general: bool = typer.Option(False, "--general", help="Answer with the plain base model (no injection)."),
        input: Path = typer.Option(None, "--input", "-i", help="JSONL file with a 'question' field per line."),
        output: Path = typer.Option(None, "--output", "-o", help="JSONL answers; an interrupted run resumes."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of streaming text."),
        batch_size: int = typer.Option(8, "--batch-size", help="Questions generated together (JSONL mode)."),
        max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Answer length budget in tokens."),
        profile: str = ProfileOpt, base: str = BaseOpt, expert: str = ExpertOpt, router_encoder: str = RouterEncoderOpt,
        explain: bool = typer.Option(False, "--explain", help="Show every route's score and why this route."),
        min_confidence: list[str] = typer.Option([], "--min-confidence", help="Answer with general when the "
                                                 "winning domain's confidence is below this; NAME=X per domain."),
        passages: int = typer.Option(0, "--passages", min=0, max=16, help="gag+rag: also give the base the top K "
                                     "passages of the domain's own documents as text, after the memory slots (the "
                                     "domain must ship passages: a grounded expert)."),
    ) -> None:
        """Answer a question with a domain (or route automatically), or a JSONL file of questions."""
        from gag_core.service import Query

        from .route import parse_min_confidence

        parse_min_confidence(min_confidence)  # refuse a bad value before loading any model
        if (question is None) == (input is None):
            raise InputError("Give a QUESTION or --input FILE (one of them).")
        if question is not None and not question.strip():  # refuse before loading any model
            raise InputError("The question is empty; pass a non-empty question.")
        if input is not None and output is None:
            raise InputError("--input needs --output FILE for the answers.")
        route = forced_route(domain, general)
        gag = load_gag(profile, base, expert, [domain] if domain else ([] if general else None), max_new_tokens,
                       router_encoder, min_confidence=min_confidence)
        if input is not None:
            _ask_file(gag, input, output, route, batch_size, passages)
            return
        if as_json:
            answer = gag.answer_batch([Query(question, route, passages=passages)])[0]
            console.print_json(json.dumps(answer.to_dict(), ensure_ascii=False))
            return
        stream = gag.stream(question, route, passages=passages)
        _show_route(stream, explain)
        start = time.perf_counter()
        for piece in stream:
            console.print(piece, end="", soft_wrap=True, markup=False)
        console.print(f"\n[dim]{time.perf_counter() - start:.2f} s[/]")


def _show_route(stream, explain: bool) -> None:
    """The route line before the answer; with ``explain``, why (and every route's score)."""
    from .route import route_label, scores_table, why

    decision = stream.decision
    console.print(f"[dim]route: {route_label(decision) if decision else stream.route + ' (forced)'}[/]")
    if explain and decision is not None:
        console.print(why(decision), markup=False, style="dim")
        console.print(scores_table(decision))


def _ask_file(gag, input: Path, output: Path, route: str | None, batch_size: int, passages: int = 0) -> None:
    from gag_core.service import Query

    skipped: list[str] = []  # bad lines are reported and left out; the good ones are answered
    questions = read_questions(input, skipped=skipped)
    for line in skipped:
        console.print(f"[yellow]skipped[/] {escape(line)}")
    # each batch is routed in one encoder pass and answered in one generate call
    resumable_batches(questions, output, batch_size, "answered",
                      lambda batch: [a.to_dict() for a in gag.answer_batch([Query(q, route, passages=passages)
                                                                            for q in batch])])
    console.print(f"[green]Wrote[/] {len(questions)} answers to {output}")
    if skipped:
        raise DataError(f"skipped {len(skipped)} bad line(s) of {input}: {'; '.join(skipped[:5])}. Fix them and "
                        f"rerun with another --output to answer them too; the good lines' answers are in {output}.")
