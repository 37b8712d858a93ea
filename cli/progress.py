"""A rich progress display for multi-stage jobs, driven by ``progress(stage, done, total, info)`` callbacks."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .console import console
from .jsonl import append_rows, completed_rows


@contextmanager
def stage_progress():
    with Progress(TextColumn("[bold]{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console, transient=False) as progress:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int, info: dict) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total, info="")
            text = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items())
            progress.update(tasks[stage], completed=done, total=total, info=text)

        yield update


def resumable_batches(questions: list[str], output: Path, batch_size: int, verb: str,
                      rows_for: Callable[[list[str]], list[dict]]) -> None:
    """Write ``rows_for(batch)`` to the JSONL ``output`` batch by batch, in input order, with a progress bar;
    rows already there (an interrupted run) are kept and their questions skipped. ``verb``: "answered", "routed"."""
    done = completed_rows(output, questions)
    if done:
        console.print(f"Resuming: {done}/{len(questions)} already {verb} in {output}")
    output.parent.mkdir(parents=True, exist_ok=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console) as progress:
        task = progress.add_task(verb, total=len(questions), completed=done)
        for start in range(done, len(questions), batch_size):
            batch = questions[start:start + batch_size]
            append_rows(output, rows_for(batch))  # the whole batch at once, in input order
            progress.update(task, advance=len(batch))
