"""Domain discovery: folders installed under GAG_HOME plus module folders registered by packages."""

from __future__ import annotations

from pathlib import Path

from gag_core.module import read_manifest
from gag_core.errors import DomainNotFoundError, ModuleFormatError
from gag_core.store import InstalledDomain, list_installed

from .manager import collect


def package_domains() -> dict[str, InstalledDomain]:
    out = {}
    for name, path in collect("register_domains").items():
        path = Path(path)
        try:
            manifest = read_manifest(path)
        except ModuleFormatError:
            manifest = None
        out[name] = InstalledDomain(name, path, "package", str(path), manifest)
    return out


def all_domains() -> dict[str, InstalledDomain]:
    """Every domain gag can use. A folder installed under GAG_HOME wins over a package of the same name."""
    return {**package_domains(), **list_installed()}


def find_domain(name: str) -> InstalledDomain:
    domains = all_domains()
    if name not in domains:
        raise DomainNotFoundError(f"No domain named {name!r}; available: {sorted(domains) or 'none'}. "
                                  "Install one with `gag install-domain SOURCE` (see `gag list`).")
    return domains[name]
