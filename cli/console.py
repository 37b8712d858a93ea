"""Shared console and the error boundary: a GagError becomes one red line and exit code 1."""

from __future__ import annotations

import functools
import logging
import os

import typer
from rich.console import Console

from gag_core.errors import GagError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def quiet_libraries() -> None:
    """Keep transformers' and hub's chatter off the user's terminal unless GAG_VERBOSE is set."""
    if os.environ.get("GAG_VERBOSE"):
        logging.basicConfig(level=logging.INFO)
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:
        pass
    import warnings

    warnings.filterwarnings("ignore")


def handle_errors(fn):
    """Decorator for commands: a GagError prints ``Error: ...`` and exits 1, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        quiet_libraries()
        try:
            return fn(*args, **kwargs)
        except GagError as exc:
            err_console.print(f"[bold red]Error:[/] {exc}")
            raise typer.Exit(1) from None

    return wrapper
