"""``gag package-domain`` (a pip-installable project) and ``gag push-domain`` (a Hugging Face model repo)."""

from __future__ import annotations

from pathlib import Path

import typer

from gag_core.distribution import package_module, package_names, push_module
from gag_plugins.discovery import find_domain

from .console import console, handle_errors


def register(app: typer.Typer) -> None:
    @app.command("package-domain")
    @handle_errors
    def package_domain(
        name: str = typer.Argument(..., help="Domain name (see `gag list`)."),
        out: Path = typer.Option(..., "--out", help="New or empty folder for the project."),
    ) -> None:
        """Write a pip-installable project that ships the domain through the `gag` entry point."""
        d = find_domain(name)
        folder = package_module(d.path, out)
        dist, package = package_names(d.manifest.name if d.manifest else name)
        console.print(f"[green]Wrote[/] {folder} ({dist}, package {package}).\n"
                      f"Build a wheel:  python -m build --wheel {folder}\n"
                      f"Install it:     gag install-domain {folder}/dist/<wheel>.whl")

    @app.command("push-domain")
    @handle_errors
    def push_domain(
        name: str = typer.Argument(..., help="Domain name (see `gag list`)."),
        repo: str = typer.Option(..., "--repo", help="Hub model repo ORG/NAME (created if missing)."),
        private: bool = typer.Option(False, "--private", help="Create the repo as private (an existing repo keeps "
                                     "its visibility)."),
        revision: str = typer.Option(None, "--revision", help="Branch to push to (created if missing; default main)."),
    ) -> None:
        """Upload a verified domain module to the Hugging Face Hub (token: HF_TOKEN or `hf auth login`)."""
        d = find_domain(name)
        with console.status(f"Pushing {name} to hf:{repo} ..."):
            url = push_module(d.path, repo, private=private, revision=revision)
        at = f"@{revision}" if revision else ""
        console.print(f"[green]Pushed[/] {name} → {url}\nInstall it with: gag install-domain hf:{repo}{at}")
