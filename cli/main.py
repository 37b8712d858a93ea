"""The ``gag`` command. Commands live in sibling modules; plugins add more through ``register_commands``."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="gag",
    help="Generation-Augmented Generation: answer with a frozen LLM plus private domain knowledge injected "
         "as a few continuous tokens.\n\nStart with `gag demo`, then `gag ask \"...\"` or `gag chat`.",
    no_args_is_help=True, pretty_exceptions_show_locals=False, rich_markup_mode="rich",
)


def _register() -> None:
    from gag_plugins.manager import load_plugins

    from . import ask, chat, demo, distribute, domains, evaluate, models_cmd, route, serve, train, update

    for mod in (models_cmd, domains, ask, train, update, demo, route, chat, evaluate, distribute, serve):
        mod.register(app)
    load_plugins().hook.register_commands(cli=app)


_register()

if __name__ == "__main__":
    app()
