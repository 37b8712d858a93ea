"""``gag models``: profiles and what is cached."""

from __future__ import annotations

import typer
from rich.table import Table

from gag_core.models import PROFILES, embedded_cache_dir, embedded_gguf_path
from gag_core.paths import gag_home

from .console import console, handle_errors


def register(app: typer.Typer) -> None:
    @app.command("models")
    @handle_errors
    def models() -> None:
        """Show the model profiles (embedded, paper) and which models are cached locally."""
        table = Table(title="gag model profiles")
        for col in ("profile", "base (frozen)", "expert backbone", "dtype", "about"):
            table.add_column(col)
        for p in PROFILES.values():
            table.add_row(p.name, p.base, p.expert, p.dtype, p.description)
        console.print(table)
        cache = embedded_cache_dir()
        try:
            gguf = str(embedded_gguf_path())
        except Exception as exc:  # noqa: BLE001 - report, don't fail
            gguf = f"missing ({exc})"
        console.print(f"GAG_HOME: {gag_home()}")
        console.print(f"embedded GGUF: {gguf}")
        state = "cached" if (cache / "model.safetensors").exists() else "not yet converted (first use converts it, ~20 s)"
        console.print(f"embedded safetensors cache: {cache} — {state}")
