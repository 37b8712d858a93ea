"""``gag update-domain``: new QA pairs (+ documents) into an installed domain, its projector unchanged."""

from __future__ import annotations

from pathlib import Path

import typer

from .console import console, err_console, handle_errors
from .progress import stage_progress


def register(app: typer.Typer) -> None:
    @app.command("update-domain")
    @handle_errors
    def update_domain_cmd(
        name: str = typer.Argument(..., help="Installed domain to update (see `gag list`)."),
        qa: Path = typer.Option(..., "--qa", help="New QA pairs, JSONL with question/answer fields. A pair about a "
                                "fact the domain knows (same question, or same entity + attribute) with another "
                                "answer corrects it."),
        corpus: Path = typer.Option(None, "--corpus", help="New documents: JSONL (text, optional title), a .txt/.md "
                                    "file, or a folder of them."),
        replay: float = typer.Option(0.5, "--replay", help="Fraction of the domain's own training QA rehearsed with "
                                     "the new data, so old facts are not forgotten (0 = none)."),
        module: Path = typer.Option(None, "--module", help="Update this module folder instead of the installed NAME."),
        epochs: int = typer.Option(None, "--epochs", help="Stage I QA epochs (default: the domain's own)."),
        install: bool = typer.Option(False, "--install", help="Install the new version when the update finishes "
                                     "(atomic: a failed update leaves the installed one as it was)."),
        out: Path = typer.Option(None, "--out", help="Module folder to write (default GAG_HOME/builds/NAME-vVERSION)."),
        seed: int = typer.Option(None, "--seed", help="Random seed (default: the domain's own)."),
        profile: str = typer.Option(None, "--profile", help="Refuse unless the domain was trained with this profile."),
        base: str = typer.Option(None, "--base", help="Refuse unless the domain was aligned to this base model."),
        expert: str = typer.Option(None, "--expert", help="Refuse unless the domain's expert is this backbone."),
    ) -> None:
        """Teach an installed domain new facts and corrections by continuing its expert (Stage I) on the new data
        plus a replay of its own; the projector is kept, the router rebuilt, the version bumped and the update
        recorded in the manifest's history. Rerun the same command to resume after an interruption."""
        from gag_core.training.update import UpdateInputs, UpdateRun, update_domain
        from gag_plugins.discovery import find_domain, install_domain
        from gag_plugins.manager import collect

        folder = module or find_domain(name).path
        if replay == 0:
            err_console.print("[yellow]Warning:[/] --replay 0: facts not in the new data may be forgotten.")
        inputs = UpdateInputs(Path(folder), qa, corpus, replay, epochs, seed, base, expert, profile)
        with stage_progress() as progress:
            result = update_domain(inputs, out, UpdateRun(progress=progress, augmenters=collect("register_augmenters")))
        added = result.history["added"]
        console.print(f"[green]Updated[/] {name} v{result.parent_version} → v{result.version}: {added['new_facts']} new "
                      f"QA, {added['corrections']} correction(s), {added['documents']} document(s), "
                      f"{added['replayed_rows']} replayed, in {result.seconds:.0f} s → {result.folder}")
        if install:
            installed = install_domain(str(result.folder), force=True)
            console.print(f"[green]Installed[/] domain [bold]{installed.domains[0].name}[/] v{result.version}")
