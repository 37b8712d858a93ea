"""``gag chat``: an interactive, multi-turn session that routes every question and streams the answer.

Earlier turns stay in the base prompt as plain text (the ``history`` messages); injected knowledge applies to
the current question only. Ctrl-C during an answer stops that answer; Ctrl-D (end of input) or /quit ends the
session. Lines are read through :func:`read_line`, which tests replace (or feed through CliRunner's input).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import typer

from gag_core.errors import GagError, InputError
from gag_core.routes import GENERAL

from .ask import BaseOpt, ExpertOpt, ProfileOpt, RouterEncoderOpt, forced_route, load_gag
from .console import console, handle_errors
from .route import MarginOpt, MinConfidenceOpt, route_label, scores_table, why

HELP = """[bold]commands[/]
  /route [TEXT]  every route's score for TEXT (default: the last question)
  /domains       the loaded domains
  /use NAME      answer with domain NAME from now on (no routing)
  /general       answer with the plain base model from now on
  /auto          route every question again (the default)
  /reset         forget the conversation so far
  /help          this list
  /quit          leave (Ctrl-D works too)
Ctrl-C stops the answer being written; a line starting with // sends the rest as text."""


def read_line(prompt: str) -> str:
    """Read one line from the user (raises EOFError at end of input)."""
    return console.input(prompt)


class ChatSession:
    """The state of one chat: the route mode, the conversation, and the last routing decision."""

    def __init__(self, gag, *, forced: str | None = None, history_turns: int = 8):
        self.gag = gag  # a RoutedService
        self.forced = forced  # None = route automatically; else "general" or a domain name
        self.history_turns = history_turns
        self.history: list[dict] = []
        self.last_question: str | None = None
        self.last_decision = None

    # -- commands --------------------------------------------------------------------------------
    def command(self, line: str) -> bool:
        """Run a /command; False means the session ends."""
        name, _, arg = line[1:].strip().partition(" ")
        arg = arg.strip()
        if name in ("quit", "exit", "q"):
            return False
        if name == "help":
            console.print(HELP)
        elif name == "domains":
            self._show_domains()
        elif name == "route":
            self._show_route(arg)
        elif name == "use":
            self._use(arg)
        elif name == "general":
            self.forced = GENERAL
            console.print("[dim]Answering with the plain base model (no injection). /auto to route again.[/]")
        elif name == "auto":
            self.forced = None
            console.print("[dim]Routing every question automatically.[/]")
        elif name == "reset":
            self.history.clear()
            console.print("[dim]Conversation cleared.[/]")
        else:
            console.print(f"Unknown command /{name}; type /help for the list.")
        return True

    def _show_domains(self) -> None:
        names = self.gag.domains
        console.print("loaded domains: " + (", ".join(names) if names else "none (every question goes to general)"))
        for name, why in sorted(self.gag.unavailable.items()):
            console.print(f"[yellow]unavailable[/] {name}: {why}")
        mode = "automatic routing" if self.forced is None else f"fixed route {self.forced}"
        console.print(f"[dim]mode: {mode}[/]")

    def _show_route(self, text: str) -> None:
        """Every route's score for ``text``, or for the last question when ``text`` is empty."""
        if text:
            decision = self.gag.route(text)
        elif self.last_question is None:
            console.print("No question yet; ask one first, or give one: /route TEXT.")
            return
        else:
            text = self.last_question
            decision = self.last_decision = self.last_decision or self.gag.route(text)
        console.print(f"routes for: {text}", markup=False)
        console.print(why(decision), markup=False)
        console.print(scores_table(decision))

    def _use(self, name: str) -> None:
        if not name:
            console.print("Usage: /use NAME (see /domains).")
        elif name == GENERAL:
            self.command("/general")
        else:
            try:
                self.forced = self.gag.resolve(name)
            except GagError as exc:  # unavailable (says why) or not loaded (lists the loaded ones)
                console.print(str(exc), markup=False)
                return
            console.print(f"[dim]Answering with domain {name}. /auto to route again.[/]")

    # -- questions -------------------------------------------------------------------------------
    def recent_history(self) -> list[dict]:
        keep = 2 * self.history_turns
        return self.history[len(self.history) - keep:] if keep else []

    def ask(self, question: str) -> str:
        """Route (unless a route is fixed), stream the answer, and add the turn to the history."""
        self.last_question = question
        stop = threading.Event()
        stream = self.gag.stream(question, self.forced, self.recent_history() or None, stop=stop)
        self.last_decision = decision = stream.decision  # None when the route is fixed
        if decision is None:
            label = f"{stream.route} (fixed)"
        else:
            label = route_label(decision)
        console.print(f"[dim]→ {label}[/]")
        pieces: list[str] = []
        start = time.perf_counter()
        try:
            for piece in stream:
                pieces.append(piece)
                console.print(piece, end="", soft_wrap=True, markup=False, highlight=False)
            console.print(f"\n[dim]{time.perf_counter() - start:.2f} s[/]")
        except KeyboardInterrupt:
            stop.set()
            console.print("\n[dim](stopped)[/]")
        finally:
            stream.close()  # never leave a generation running behind the session's back
        answer = "".join(pieces).strip()
        self.history += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        return answer


def run_chat(session: ChatSession, read: Callable[[str], str] | None = None) -> None:
    """The read-eval loop. EOF or /quit ends it; Ctrl-C at the prompt twice in a row ends it too."""
    read = read or read_line
    console.print("[bold]gag chat[/] — type a question, /help for commands, /quit to leave.")
    interrupted = False
    while True:
        try:
            line = read("[bold cyan]you›[/] ")
        except EOFError:
            console.print()
            break
        except KeyboardInterrupt:
            if interrupted:
                break
            interrupted = True
            console.print("\n[dim](Ctrl-C again, /quit or Ctrl-D to leave)[/]")
            continue
        interrupted = False
        line = line.strip()
        if not line:
            continue
        if line.startswith("/") and not line.startswith("//"):
            if not session.command(line):
                break
            continue
        try:
            session.ask(line[1:] if line.startswith("//") else line)
        except GagError as exc:  # one bad question must not end the session
            console.print(f"[bold red]Error:[/] {exc}")
        except KeyboardInterrupt:  # Ctrl-C while routing, before the answer started
            console.print("\n[dim](stopped)[/]")
    console.print("[dim]bye[/]")


def register(app: typer.Typer) -> None:
    @app.command("chat")
    @handle_errors
    def chat(
        domain: str = typer.Option(None, "--domain", "-d", help="Start with this domain fixed (no routing)."),
        general: bool = typer.Option(False, "--general", help="Start with the plain base model (no injection)."),
        max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="Answer length budget in tokens."),
        history_turns: int = typer.Option(8, "--history-turns", help="Earlier turns kept in the prompt."),
        router_encoder: str = RouterEncoderOpt, margin: float = MarginOpt, min_confidence: list[str] = MinConfidenceOpt,
        profile: str = ProfileOpt, base: str = BaseOpt, expert: str = ExpertOpt,
    ) -> None:
        """Chat with routing between general and the installed domains; answers stream as they are written,
        each after its route and the router's confidence."""
        forced = forced_route(domain, general)
        if history_turns < 0:
            raise InputError(f"--history-turns must be >= 0; got {history_turns}.")
        gag = load_gag(profile, base, expert, None, max_new_tokens, router_encoder, margin, min_confidence)
        if forced is not None:
            gag.resolve(forced)  # an unavailable domain says why, an unknown one lists the loaded ones
        session = ChatSession(gag, forced=forced, history_turns=history_turns)
        run_chat(session)
