"""``gag route``: which route (general or a domain) the router picks for a question, with its confidence, or a
resumable JSONL batch.

Routing needs no base model: only the router encoder (MiniLM by default) and the domains' prototypes.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from gag_core.errors import InputError
from gag_core.routes import GENERAL

from .ask import ExpertOpt, ProfileOpt, RouterEncoderOpt
from .console import console, err_console, handle_errors
from .jsonl import read_questions
from .progress import resumable_batches

MarginOpt = typer.Option(None, "--margin", help="Fall back to general when the winning domain leads the runner-up "
                         "by less than this (default, for routers without calibration: the encoder's measured "
                         "margin; 0 turns it off).")
MinConfidenceOpt = typer.Option([], "--min-confidence", help="Fall back to general when the winning domain's "
                                "calibrated confidence is below this (default 0.5 when the domains ship calibration "
                                "questions); NAME=X sets one domain's own minimum (repeatable).")


def parse_min_confidence(values: list[str] | None) -> dict:
    """``--min-confidence`` values ("0.6", "registry=0.8") -> {"min_confidence", "per_domain"} for the router."""
    overall, per_domain = None, {}
    for value in values or []:
        name, _, number = value.rpartition("=")
        try:
            x = float(number)
        except ValueError:
            raise InputError(f"--min-confidence takes a number in [0, 1] or NAME=NUMBER; got {value!r}.") from None
        if not 0.0 <= x <= 1.0:
            raise InputError(f"--min-confidence must be in [0, 1]; got {value!r}.")
        if name:
            per_domain[name] = x
        else:
            overall = x
    return {"min_confidence": overall, "per_domain": per_domain}


def why(decision) -> str:
    """One line: why this route (and, for a fallback, why not the domain that scored best)."""
    d = decision
    conf = "" if d.confidence is None else f"confidence {d.confidence:.2f}"
    lexical = d.evidence.get(d.runner_up if d.fallback else d.route)
    lexical = f"; lexical: {lexical}" if lexical else ""
    if d.fallback and d.threshold is not None:
        return (f"{d.runner_up} scored best, but its confidence {1 - d.confidence:.2f} is below the minimum "
                f"{d.threshold:g}: answered by general (abstained){lexical}")
    if d.fallback:
        return f"{d.runner_up} scored best, but led by less than the margin: answered by general{lexical}"
    need = f" >= minimum {d.threshold:g}" if d.threshold is not None and d.route != GENERAL else ""
    closest = max(d.dense, key=d.dense.get, default=d.route)
    if d.route == GENERAL and closest != GENERAL and closest in d.evidence:  # phrased like a domain, names none of it
        lexical = f"; {closest} has the closest phrasing (cosine {d.dense[closest]:.2f}) but {d.evidence[closest]}"
    return f"{d.route} scored best ({conf or 'no calibration'}{need}){lexical}"


def scores_table(decision, title: str | None = None) -> Table:
    """Every route's score, best first; the chosen route in bold. Hybrid routers add the cosine alone and
    the lexical evidence."""
    table = Table(title=title)
    table.add_column("route")
    hybrid = bool(decision.evidence)
    if hybrid:
        table.add_column("cosine", justify="right")
        table.add_column("lexical evidence")
    table.add_column("score", justify="right")
    table.add_column("")
    for name, score in sorted(decision.scores.items(), key=lambda kv: -kv[1]):
        chosen = name == decision.route
        mark = ("chosen (fallback)" if decision.fallback else "chosen") if chosen else ""
        extra = [f"{decision.dense.get(name, score):.4f}", decision.evidence.get(name, "-")] if hybrid else []
        table.add_row(f"[bold]{name}[/]" if chosen else name, *extra, f"{score:.4f}", mark)
    return table


def route_label(decision) -> str:
    """"minerals 1.023, confidence 0.97" (+ abstention), for one-line displays."""
    conf = "" if decision.confidence is None else f", confidence {decision.confidence:.2f}"
    return f"{decision.route} {decision.score:.3f}{conf}" + (" (fallback)" if decision.fallback else "")


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
        router_encoder: str = RouterEncoderOpt, margin: float = MarginOpt, min_confidence: list[str] = MinConfidenceOpt,
        profile: str = ProfileOpt, expert: str = ExpertOpt,
    ) -> None:
        """Show which route (general or a domain) a question goes to, with its confidence; --explain shows
        every route's score and why."""
        from gag_plugins.api import load_router

        if (question is None) == (input is None):
            raise InputError("Give a QUESTION or --input FILE (one of them).")
        if input is not None and output is None:
            raise InputError("--input needs --output FILE for the routes.")
        if batch_size < 1:
            raise InputError(f"--batch-size must be >= 1; got {batch_size}.")
        with console.status("Loading the router…"):
            router, unavailable = load_router(profile=profile, expert=expert, router_encoder=router_encoder,
                                              margin=margin, **parse_min_confidence(min_confidence))
        for name, reason in unavailable.items():
            err_console.print(f"[yellow]Skipping domain {name}:[/] {reason}")
        if input is not None:
            _route_file(router, input, output, batch_size)
            return
        decision = router.route(question)
        if as_json:
            console.print_json(json.dumps(decision_row(question, decision), ensure_ascii=False))
            return
        conf = "" if decision.confidence is None else f", confidence {decision.confidence:.2f}"
        console.print(f"[bold]{decision.route}[/] ({decision.score:.4f}{conf})")
        if explain or decision.fallback:
            console.print(why(decision), markup=False)
        if explain:
            console.print(scores_table(decision))
            rule = ("minimum confidence" if decision.threshold is not None or router.policy.min_confidence is not None
                    else f"margin {router.margin:g}")
            console.print(f"[dim]encoder {router.encoder.name}, abstention by {rule}[/]")


def _route_file(router, input: Path, output: Path, batch_size: int) -> None:
    questions = read_questions(input)
    resumable_batches(questions, output, batch_size, "routed",
                      lambda batch: [decision_row(q, d) for q, d in zip(batch, router.route_batch(batch))])
    console.print(f"[green]Wrote[/] {len(questions)} routes to {output}")
