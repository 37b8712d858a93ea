"""``gag serve``: the OpenAI-compatible server (gag_core.serving) over the installed domains."""

from __future__ import annotations

import ipaddress

import typer

from gag_core.errors import ConfigError

from .ask import BaseOpt, ExpertOpt, ProfileOpt, RouterEncoderOpt
from .console import console, handle_errors

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; any other name or address may be reachable from elsewhere."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to serve beyond this machine without a key."""
    if api_key is None and not is_loopback(host):
        raise ConfigError(f"Refusing to serve on {host} without an API key: anyone who can reach that address could "
                          "use the models. Pass --api-key KEY (or set GAG_API_KEY) and send it as 'Authorization: "
                          "Bearer KEY', or bind to 127.0.0.1 and put a proxy with authentication in front.")


def register(app: typer.Typer) -> None:
    @app.command("serve")
    @handle_errors
    def serve(
        host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; another than loopback needs a key."),
        port: int = typer.Option(8000, "--port", help="TCP port (0 = any free port)."),
        api_key: str = typer.Option(None, "--api-key", envvar="GAG_API_KEY", show_default=False,
                                    help="Clients must send 'Authorization: Bearer KEY' (default: $GAG_API_KEY)."),
        domain: list[str] = typer.Option(None, "--domain", "-d", help="Serve only these installed domains "
                                         "(repeat; default: all installed; /admin/reload re-reads them)."),
        max_batch: int = typer.Option(8, "--max-batch", help="Most requests answered in one generate call."),
        batch_window_ms: float = typer.Option(15.0, "--batch-window-ms", help="How long the worker waits for one "
                                              "more request after the latest (at most 4 windows) before generating."),
        max_queue: int = typer.Option(64, "--max-queue", help="Waiting requests beyond which new ones get 429."),
        timeout_s: float = typer.Option(120.0, "--timeout-s", help="Per-request limit, queueing included (504)."),
        max_tokens_cap: int = typer.Option(512, "--max-tokens-cap", help="Largest max_tokens a request may ask."),
        max_prompt_tokens: int = typer.Option(2048, "--max-prompt-tokens", help="Largest prompt (all messages)."),
        default_max_tokens: int = typer.Option(64, "--default-max-tokens", help="max_tokens when a request has "
                                               "none."),
        log_level: str = typer.Option("info", "--log-level", help="uvicorn log level (warning: no access log)."),
        profile: str = ProfileOpt, base: str = BaseOpt, expert: str = ExpertOpt, router_encoder: str = RouterEncoderOpt,
    ) -> None:
        """Serve the OpenAI API (chat completions, completions, models) over the installed domains: model
        "auto" routes each question, "general" is the plain base, a domain name skips routing."""
        check_bind(host, api_key)
        from gag_core.serving.settings import ServeSettings

        settings = ServeSettings(api_key=api_key, max_batch=max_batch, batch_window_ms=batch_window_ms,
                                 max_queue=max_queue, timeout_s=timeout_s, max_tokens_cap=max_tokens_cap,
                                 max_prompt_tokens=max_prompt_tokens, default_max_tokens=default_max_tokens)
        wanted = list(domain or []) or None

        def build_service():
            from gag_plugins.api import GAG

            return GAG.from_installed(wanted, profile=profile, base=base, expert=expert,
                                      max_new_tokens=default_max_tokens, router_encoder=router_encoder)

        _run(build_service, settings, host, port, log_level, refresh=lambda service: service.refresh(wanted))


def _run(build_service, settings, host: str, port: int, log_level: str, refresh=None) -> None:
    """Load everything, then serve: HTTP in a second thread, generation on this (the main) thread, which
    runs PyTorch's CPU kernels faster (Engine.serve_here). SIGINT/SIGTERM stop taking requests, finish the
    ones in flight, then exit; a second one exits at once."""
    import signal
    import threading

    import uvicorn

    from gag_core.serving.app import create_app
    from gag_core.serving.engine import Engine

    engine = Engine(build_service, settings, refresh=refresh)  # reload: in place, one base in memory
    with console.status("Loading the base model, the domains and the router…"):
        engine.start(worker=False)
    service = engine.service
    console.print(f"Serving [bold]auto[/], [bold]general[/] and {', '.join(service.domains) or 'no domain'} "
                  f"on http://{host}:{port}/v1 (API key: {'required' if settings.api_key else 'none, loopback only'})")
    for name, why in service.unavailable.items():
        console.print(f"[yellow]Unavailable:[/] {name}: {why}")
    server = uvicorn.Server(uvicorn.Config(create_app(engine, settings), host=host, port=port, log_level=log_level))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, server.handle_exit)
    http = threading.Thread(target=server.run, name="gag-http", daemon=True)
    http.start()
    engine.serve_here(until=lambda: not http.is_alive())
    http.join()
    if not server.started:
        raise ConfigError(f"The HTTP server did not start on {host}:{port} (see the error above); is the port in "
                          "use? Pick another with --port.")
