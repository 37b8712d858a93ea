"""``gag list``, ``gag info``, ``gag install-domain``, ``gag uninstall-domain``."""

from __future__ import annotations

import json
import sys

import typer
from rich.table import Table

from gag_core.distribution import parse_source
from gag_core.module import MANIFEST, Manifest, verify_module
from gag_core.safety import SizeLimits, scan_folder
from gag_core.store import InstalledDomain
from gag_plugins.discovery import all_domains, find_domain, install_domain, uninstall_domain

from .console import console, err_console, handle_errors


def _base_fingerprint(profile: str, base: str | None) -> tuple[str, int, dict]:
    """Load the base model once: (id, hidden size, embedding fingerprint)."""
    from gag_core.models import embedding_fingerprint, get_profile, hidden_size, load_causal_lm

    prof = get_profile(profile)
    base_id = base or prof.base
    with console.status(f"Loading base model {base_id} to check compatibility ..."):
        model = load_causal_lm(base_id, dtype=prof.dtype, device_map=prof.device_map)
    return base_id, hidden_size(model), embedding_fingerprint(model)


def _compatible(manifest, hidden: int, fingerprint: dict) -> str:
    from gag_core.models import fingerprints_match

    if manifest is None:
        return "unreadable"
    ok = int(manifest.base.get("hidden_size", -1)) == hidden and fingerprints_match(manifest.base["fingerprint"], fingerprint)
    return "yes" if ok else "no"


def _size(n: int) -> str:
    value, unit = float(n), 0
    while value >= 1024 and unit < 3:
        value, unit = value / 1024, unit + 1
    return f"{n} B" if unit == 0 else f"{value:.1f} {('KiB', 'MiB', 'GiB')[unit - 1]}"


def _summary(d: InstalledDomain, m: Manifest) -> tuple[Table, Table]:
    """The facts a user asks about a domain (not the fingerprint), and its files with their sizes."""
    r, p = m.readout, m.projector
    router = m.router.get("encoder", "?") + (f" ({m.router['num_prototypes']} prototypes)"
                                             if "num_prototypes" in m.router else "")
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    for key, value in [
        ("name", m.name), ("version", m.version), ("description", m.description or "-"),
        ("base model", f"{m.base['id']} (hidden size {m.base['hidden_size']})"),
        ("expert", f"{m.expert.get('id', '?')} (hidden size {m.expert.get('hidden_size', '?')}), LoRA adapter"),
        ("readout", f"{r.kind}, layers {r.layers}, {r.slots} slot{'s' if r.slots != 1 else ''}, {r.pooling} pooling"),
        ("projector", f"{p.kind} ({p.expert_hidden} → {p.base_hidden}, {p.slots} slots)"),
        ("router encoder", router),
        ("installed", d.path),
        ("source", d.source + (f": {d.origin}" if d.origin else "")),
    ]:
        facts.add_row(key, str(value))
    files = Table(title="files", title_justify="left")
    files.add_column("file")
    files.add_column("size", justify="right")
    for rel, path in sorted(scan_folder(d.path).items()):
        files.add_row(rel, _size(path.stat().st_size))
    return facts, files


def _updates(history: list[dict]) -> str:
    """'-' for a module never updated, else the count and the last update's date."""
    return f"{len(history)} (last {history[-1].get('date', '?')})" if history else "-"


def _history_table(history: list[dict]) -> Table:
    """One row per `gag update-domain`: versions, the parent manifest's hash, date and what was added."""
    table = Table(title="update history", title_justify="left")
    for col in ("version", "parent", "parent sha256", "date", "new QA", "corrections", "documents", "replayed"):
        table.add_column(col)
    for h in history:
        added = h.get("added") or {}
        table.add_row(*(str(x) for x in (h.get("version"), h.get("parent_version"), str(h.get("parent_sha256"))[:12],
                                         h.get("date"), added.get("new_facts"), added.get("corrections"),
                                         added.get("documents"), added.get("replayed_rows"))))
    return table


def list_domains(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    check: bool = typer.Option(False, "--check", help="Load the base model and check each domain's base "
                               "fingerprint against it (fills the 'compatible' column)."),
    profile: str = typer.Option("embedded", "--profile", help="Profile whose base model --check loads."),
    base: str = typer.Option(None, "--base", help="Base model id or folder for --check (overrides the profile's)."),
) -> None:
    """List domains: source (folder / package / hub), version, base model; --check tests compatibility."""
    from gag_plugins.manager import load_errors

    domains = all_domains()
    for msg in load_errors:
        err_console.print(f"[yellow]Warning:[/] {msg}")
    rows = [{"name": d.name, "source": d.source, "version": d.manifest.version if d.manifest else "?",
             "base": d.manifest.base["id"] if d.manifest else "?", "origin": d.origin,
             "updates": _updates(d.manifest.history) if d.manifest else "-",
             "distribution": d.distribution, "path": str(d.path),
             "description": d.manifest.description if d.manifest else "unreadable manifest"}
            for d in domains.values()]
    if check and rows:
        base_id, hidden, fingerprint = _base_fingerprint(profile, base)
        for row, d in zip(rows, domains.values()):
            row["compatible"] = _compatible(d.manifest, hidden, fingerprint)
            row["checked_against"] = base_id
    if as_json:
        console.print_json(json.dumps(rows))
        return
    if not rows:
        console.print("No domains installed. Try `gag demo`, or `gag install-domain SOURCE`.")
        return
    table = Table(title="gag domains")
    updated = any(r["updates"] != "-" for r in rows)  # the column only when some domain was updated (narrow terminals)
    columns = ["name", "source", "version"] + (["updates"] if updated else []) + ["base"]
    columns += ["compatible"] if check else []
    columns += ["origin", "description"]
    for col in columns:
        table.add_column(col)
    for r in rows:
        table.add_row(*[str(r[c]) for c in columns])
    console.print(table)
    if not check:
        console.print("[dim]`gag list --check` loads the base model and tests each domain's compatibility.[/]")


def info(
    name: str = typer.Argument(..., help="Domain name (see `gag list`)."),
    as_json: bool = typer.Option(False, "--json", help=f"Print the manifest ({MANIFEST}) as JSON."),
) -> None:
    """Verify a domain's files and summarise it: models, readout, projector, router, files."""
    d = find_domain(name)
    manifest = verify_module(d.path)
    verified = f"[green]verified[/] {d.path} ({d.source}{': ' + d.origin if d.origin else ''})"
    if as_json:
        console.print_json(manifest.to_json())
        err_console.print(verified)
        return
    for part in _summary(d, manifest):
        console.print(part)
    if manifest.history:
        console.print(_history_table(manifest.history))
    console.print("[green]verified[/]: every file's sha256, type and tensor shapes match the manifest.")


def install_domain_cmd(
    source: str = typer.Argument(..., help="A module folder, a .whl/.tar.gz file, a PyPI name, or "
                                 "hf:ORG/NAME[@REVISION]."),
    name: str = typer.Option(None, "--name", help="Install under this name instead of the manifest's "
                             "(folders and Hub repos)."),
    force: bool = typer.Option(False, "--force", help="Replace an installed domain of the same name."),
    max_size: str = typer.Option(None, "--max-size", help="Refuse modules larger than this, e.g. 500MB or 2GiB "
                                 "(default: GAG_MAX_MODULE_BYTES, else 4 GiB)."),
) -> None:
    """Verify a domain module and install it atomically (folders and Hub repos under GAG_HOME; packages with pip)."""
    limits = SizeLimits.with_max_size(max_size)
    parsed = parse_source(source)
    if parsed.is_package:
        console.print(f"Installing {parsed} with pip into {sys.prefix} ...")
    elif parsed.kind == "hub":
        console.print(f"Fetching {parsed} (safetensors/JSON/JSONL/Markdown only) ...")
    result = install_domain(source, name=name, force=force, limits=limits)
    for d in result.domains:
        where = f"package {result.distribution}" if result.source == "package" else str(d.path)
        console.print(f"[green]Installed[/] domain [bold]{d.name}[/] ({result.source}) → {where}")
    for note in result.notes:
        err_console.print(f"[yellow]Note:[/] {note}")


def uninstall_domain_cmd(name: str = typer.Argument(..., help="Domain name (see `gag list`).")) -> None:
    """Remove an installed domain (a domain from a package: pip-uninstall that package)."""
    result = uninstall_domain(name)
    if result.distribution:
        console.print(f"Uninstalled package [bold]{result.distribution}[/] (domains: {', '.join(result.removed)})")
    else:
        console.print(f"Uninstalled [bold]{name}[/]")


def register(app: typer.Typer) -> None:
    for name, command in (("list", list_domains), ("info", info), ("install-domain", install_domain_cmd),
                          ("uninstall-domain", uninstall_domain_cmd)):
        app.command(name)(handle_errors(command))
