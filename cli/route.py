"""``gag route``: which route (general or a domain) PPR picks for a question, or a resumable JSONL batch.

Routing needs no base model: only the router encoder (MiniLM by default) and the domains' prototypes.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from gag_core.errors import InputError

from .ask import ExpertOpt, ProfileOpt, RouterEncoderOpt
from .console import console, err_console, handle_errors
from .jsonl import append_rows, completed_rows, read_questions

MarginOpt = typer.Option(None, "--margin", help="Fall back to general when the winning domain leads the runner-up "
                         "by less than this (default: the encoder's measured margin; 0 turns it off).")


def scores_table(decision, title: str | None = None) -> Table:
    """Every route's score, best first; the chosen route in bold."""
    table = Table(title=title)
    table.add_column("route")
    table.add_column("score", justify="right")
    table.add_column("")
    for name, score in sorted(decision.scores.items(), key=lambda kv: -kv[1]):
        chosen = name == decision.route
        mark = ("chosen (margin fallback)" if decision.fallback else "chosen") if chosen else ""
        table.add_row(f"[bold]{name}[/]" if chosen else name, f"{score:.4f}", mark)
    return table


def decision_row(question: str, decision) -> dict:
    return {"question": question, **decision.to_dict()}


def register(app: typer.Typer) -> None:
    @app.command("route")
    @handle_errors
    def route(
        question: str = typer.Argument(None, help="The question (omit with --input)."),
        explain: bool = typer.Option(False, "--explain", help="Show every route's score."),
        input: Path = typer.Option(None, "--input", "-i", help="JSONL file with a 'question' field per line."),
        output: Path = typer.Option(None, "--output", "-o", help="JSONL routes; an interrupted run resumes."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
        batch_size: int = typer.Option(64, "--batch-size", help="Questions encoded together (JSONL mode)."),
        router_encoder: str = RouterEncoderOpt, margin: float = MarginOpt,
        profile: str = ProfileOpt, expert: str = ExpertOpt,
    ) -> None:
        """Show which route (general or a domain) a question goes to; --explain shows every route's score."""
        from gag_plugins.api import load_router

        if (question is None) == (input is None):
            raise InputError("Give a QUESTION or --input FILE (one of them).")
        if input is not None and output is None:
            raise InputError("--input needs --output FILE for the routes.")
        if batch_size < 1:
            raise InputError(f"--batch-size must be >= 1; got {batch_size}.")
        with console.status("Loading the router…"):
            router, unavailable = load_router(profile=profile, expert=expert, router_encoder=router_encoder,
                                              margin=margin)
        for name, why in unavailable.items():
            err_console.print(f"[yellow]Skipping domain {name}:[/] {why}")
        if input is not None:
            _route_file(router, input, output, batch_size)
            return
        decision = router.route(question)
        if as_json:
            console.print_json(json.dumps(decision_row(question, decision), ensure_ascii=False))
            return
        console.print(f"[bold]{decision.route}[/] ({decision.score:.4f})"
                      + (" [dim]— a domain won by less than the margin[/]" if decision.fallback else ""))
        if explain:
            console.print(scores_table(decision))
            console.print(f"[dim]encoder {router.encoder.name}, margin {router.margin:g}[/]")


def _route_file(router, input: Path, output: Path, batch_size: int) -> None:
    questions = read_questions(input)
    done = completed_rows(output, questions)
    if done:
        console.print(f"Resuming: {done}/{len(questions)} already routed in {output}")
    output.parent.mkdir(parents=True, exist_ok=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console) as progress:
        task = progress.add_task("routing", total=len(questions), completed=done)
        for start in range(done, len(questions), batch_size):
            batch = questions[start:start + batch_size]
            append_rows(output, [decision_row(q, d) for q, d in zip(batch, router.route_batch(batch))])
            progress.update(task, advance=len(batch))
    console.print(f"[green]Wrote[/] {len(questions)} routes to {output}")
