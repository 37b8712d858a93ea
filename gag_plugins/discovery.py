"""Domain discovery and installation: folders under GAG_HOME plus module folders registered by packages.

A package registers its module folder through the ``register_domains`` hook of a ``gag`` entry point;
each registration is attributed to the pip distribution that owns the entry point, so ``gag list`` can
show it and ``gag uninstall-domain`` can pip-uninstall it. Installing from any source lives here because
a package's domains are only known through its entry points (gag_core never imports gag_plugins).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from gag_core import distribution, store
from gag_core.errors import DistributionError, DomainNotFoundError, GagError, ModuleFormatError, PluginError
from gag_core.module import check_name, read_manifest
from gag_core.safety import SizeLimits
from gag_core.store import InstalledDomain, list_installed

from .manager import GROUP, load_plugins


def _entry_point_distributions() -> dict[str, str]:
    """{entry-point name: distribution name} for the ``gag`` group."""
    return {ep.name: ep.dist.name for ep in importlib.metadata.entry_points(group=GROUP) if ep.dist is not None}


def _call_register_domains(hook_function, argnames, register) -> None:
    hook_function(**{name: register for name in argnames if name == "register"})


def package_domains() -> dict[str, InstalledDomain]:
    """Every domain registered through ``register_domains``, with the distribution that ships it."""
    pm = load_plugins()
    dists = _entry_point_distributions()
    out: dict[str, InstalledDomain] = {}
    for impl in pm.hook.register_domains.get_hookimpls():
        dist = dists.get(impl.plugin_name, "")

        def register(name, path, source="package", _dist=dist, _plugin=impl.plugin_name):
            if name in out:
                raise PluginError(f"Two plugins registered domain {name!r} ({out[name].origin} and {_dist or _plugin}); "
                                  "uninstall one of them with `gag uninstall-domain` or pip.")
            path = Path(path)
            try:
                manifest = read_manifest(path)
            except ModuleFormatError:
                manifest = None
            out[name] = InstalledDomain(name, path, "package", _dist or _plugin, manifest, distribution=_dist,
                                        record=store.read_record(name))

        try:
            _call_register_domains(impl.function, impl.argnames, register)
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(f"Plugin {impl.plugin_name!r} ({dist or 'not from pip'}) failed in register_domains: "
                              f"{exc}. Set GAG_LOAD_PLUGINS='' to start without plugins.") from None
    return out


def _safe_name(name) -> bool:
    try:
        check_name(name)
        return True
    except ModuleFormatError:
        return False


def all_domains() -> dict[str, InstalledDomain]:
    """Every domain gag can use. A folder installed under GAG_HOME wins over a package of the same name."""
    return {**package_domains(), **list_installed()}


def find_domain(name: str) -> InstalledDomain:
    domains = all_domains()
    if name not in domains:
        raise DomainNotFoundError(f"No domain named {name!r}; available: {sorted(domains) or 'none'}. "
                                  "Install one with `gag install-domain SOURCE` (see `gag list`).")
    return domains[name]


def distribution_domains(dist_name: str) -> dict[str, Path]:
    """Load the ``gag`` entry points of one (freshly installed) distribution and return the domains they register.
    The plugins are also registered with the running plugin manager, so this process sees them at once."""
    importlib.invalidate_caches()
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise DistributionError(f"{dist_name} is not installed in this environment ({sys.prefix}).") from None
    pm = load_plugins()
    found: dict[str, Path] = {}
    for ep in dist.entry_points:
        if ep.group != GROUP:
            continue
        plugin = ep.load()
        if not pm.has_plugin(ep.name):
            pm.register(plugin, name=ep.name)
        hook = getattr(plugin, "register_domains", None)
        if hook is not None:
            hook(register=lambda name, path, source="package": found.__setitem__(name, Path(path)))
    return found


# --- install / uninstall ------------------------------------------------------------------------

@dataclass
class InstallResult:
    source: str  # "folder" | "package" | "hub"
    domains: list[InstalledDomain]
    distribution: str = ""
    notes: list[str] = field(default_factory=list)


def _manifest_name(folder: Path) -> str | None:
    """The name a folder would install under, or None if unreadable (install_folder then refuses it precisely)."""
    try:
        return read_manifest(folder).name
    except GagError:
        return None


def _refuse_shadowing(name: str | None, force: bool) -> None:
    if name is None or force:
        return
    packages = package_domains()
    if name in packages:
        raise ModuleFormatError(f"Domain {name!r} is provided by package {packages[name].origin}; pass --force to "
                                "shadow it with this install, or --name to install under another name.")


def install_domain(source_text: str, *, name: str | None = None, force: bool = False,
                   limits: SizeLimits | None = None) -> InstallResult:
    """Install from a folder, a .whl/.tar.gz, a PyPI name, or ``hf:ORG/NAME[@REVISION]``. Verified before it lands."""
    limits = limits or SizeLimits()
    source = distribution.parse_source(source_text)
    if source.kind == "folder":
        _refuse_shadowing(name or _manifest_name(Path(source.value)), force)
        return InstallResult("folder", [store.install_folder(Path(source.value), name=name, force=force, limits=limits)])
    if source.kind == "hub":
        dom = distribution.install_hub(source, name=name, force=force, limits=limits,
                                       check_target=lambda folder: _refuse_shadowing(name or _manifest_name(folder), force))
        return InstallResult("hub", [dom])
    if name:
        raise ModuleFormatError("--name applies to folders and Hub repos; a package registers its domains under "
                                "their own names. Install the package without --name.")
    return _install_package(source, force, limits)


def _install_package(source, force: bool, limits: SizeLimits) -> InstallResult:
    shadowed: list[str] = []

    def check_names(dist: str, names: set[str]) -> None:
        existing = all_domains()
        for n in sorted(names):
            d = existing.get(n)
            if d is None or (d.source == "package" and d.distribution == dist):
                continue
            if d.source == "package":
                raise ModuleFormatError(f"Domain {n!r} is already provided by package {d.origin}; uninstall it first "
                                        f"with `gag uninstall-domain {n}`.")
            if not force:
                raise ModuleFormatError(f"Domain {n!r} is already installed ({d.source}: {d.origin or d.path}); pass "
                                        "--force to replace it with the package's.")
            shadowed.append(n)

    result = distribution.install_package(source, find_domains=distribution_domains, check_names=check_names,
                                          force=force, limits=limits)
    for n in shadowed:  # the package replaces these folders (a folder would otherwise win over it)
        store.uninstall(n)
    domains = []
    for n, path in sorted(result.domains.items()):
        record = {"source": "package", "distribution": result.distribution, "version": result.version,
                  "origin": str(source), "installed_at": time.time()}
        store.write_record(n, record)
        domains.append(InstalledDomain(n, path, "package", result.distribution, read_manifest(path),
                                       distribution=result.distribution, record=record))
    notes = []
    allowed = os.environ.get("GAG_LOAD_PLUGINS")
    if allowed is not None and result.distribution not in {x.strip() for x in allowed.split(",")}:
        notes.append(f"GAG_LOAD_PLUGINS is set and does not name {result.distribution}; add it there to use these domains.")
    return InstallResult("package", domains, result.distribution, notes)


@dataclass
class UninstallResult:
    removed: list[str]
    distribution: str = ""


def uninstall_domain(name: str) -> UninstallResult:
    """Remove a folder installed under GAG_HOME, or pip-uninstall the package that ships the domain
    (which removes every domain that package registers)."""
    if name in list_installed():
        store.uninstall(name)
        return UninstallResult([name])
    packages = package_domains()
    if name not in packages:
        raise DomainNotFoundError(f"No installed domain named {name!r}; installed: {sorted(all_domains()) or 'none'} "
                                  "(see `gag list`).")
    dist = packages[name].distribution or packages[name].record.get("distribution", "")
    if not dist or distribution.installed_version(dist) is None:
        raise DistributionError(f"Domain {name!r} is registered by plugin {packages[name].origin!r}, which pip does not "
                                "know in this environment; remove that plugin yourself.")
    names = sorted(n for n, d in packages.items() if (d.distribution or d.record.get("distribution")) == dist)
    pm = load_plugins()
    plugins = [ep_name for ep_name, ep_dist in _plugin_distributions(pm).items() if ep_dist == dist]
    distribution.pip_uninstall(dist)
    for ep_name in plugins:  # this process stops seeing them too
        if pm.has_plugin(ep_name):
            pm.unregister(name=ep_name)
    for n in names:
        if _safe_name(n):
            store.remove_record(n)
    return UninstallResult(names, dist)


def _plugin_distributions(pm) -> dict[str, str]:
    dists = _entry_point_distributions()
    return {name: dists.get(name, "") for name, _ in pm.list_name_plugin()}
