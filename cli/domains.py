"""``gag list``, ``gag info``, ``gag install-domain``, ``gag uninstall-domain``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from gag_core import store
from gag_core.errors import ModuleFormatError
from gag_core.module import verify_module
from gag_plugins.discovery import all_domains, find_domain

from .console import console, handle_errors


def register(app: typer.Typer) -> None:
    @app.command("list")
    @handle_errors
    def list_domains(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
        """List installed domains: source, version, base model."""
        domains = all_domains()
        rows = [{"name": d.name, "source": d.source, "version": d.manifest.version if d.manifest else "?",
                 "base": d.manifest.base["id"] if d.manifest else "?", "path": str(d.path),
                 "description": d.manifest.description if d.manifest else "unreadable manifest"}
                for d in domains.values()]
        if as_json:
            console.print_json(json.dumps(rows))
            return
        if not rows:
            console.print("No domains installed. Try `gag demo`, or `gag install-domain SOURCE`.")
            return
        table = Table(title="installed gag domains")
        for col in ("name", "source", "version", "base", "description"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["name"], r["source"], r["version"], r["base"], r["description"])
        console.print(table)

    @app.command("info")
    @handle_errors
    def info(name: str = typer.Argument(..., help="Domain name (see `gag list`).")) -> None:
        """Show a domain's manifest and verify its files."""
        d = find_domain(name)
        manifest = verify_module(d.path)
        console.print_json(manifest.to_json())
        console.print(f"[green]verified[/] {d.path} ({d.source})")

    @app.command("install-domain")
    @handle_errors
    def install_domain(
        source: str = typer.Argument(..., help="A module folder."),
        name: str = typer.Option(None, "--name", help="Install under this name instead of the manifest's."),
        force: bool = typer.Option(False, "--force", help="Replace an installed domain of the same name."),
    ) -> None:
        """Verify a domain module and install it atomically under GAG_HOME."""
        path = Path(source)
        if not path.is_dir():
            raise ModuleFormatError(f"{source} is not a folder; pass a domain module folder.")
        installed = store.install_folder(path, name=name, force=force)
        console.print(f"[green]Installed[/] domain [bold]{installed.name}[/] → {installed.path}")

    @app.command("uninstall-domain")
    @handle_errors
    def uninstall_domain(name: str = typer.Argument(..., help="Domain name.")) -> None:
        """Remove an installed domain."""
        removed = store.uninstall(name)
        console.print(f"Uninstalled [bold]{removed.name}[/]")
