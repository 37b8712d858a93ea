"""Domain discovery: folders installed under GAG_HOME plus module folders that packages register.

A package registers its module folder through the ``register_domains`` hook of a ``gag`` entry point; each
registration is attributed to the pip distribution the plugin manager recorded for that plugin when it
loaded it, so ``gag list`` can show it and ``gag uninstall-domain`` can pip-uninstall it. Installing and
uninstalling is ``gag_core.install.Installer``'s job; ``install_domain`` and ``uninstall_domain`` only hand
it what the entry points register.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from pathlib import Path

from gag_core.distribution import parse_source
from gag_core.errors import DistributionError, DomainNotFoundError, ModuleFormatError, PluginError
from gag_core.install import Installer, InstallResult, UninstallResult
from gag_core.module import read_manifest
from gag_core.safety import SizeLimits
from gag_core.store import InstalledDomain, list_installed, read_record

from . import manager


def package_domains() -> dict[str, InstalledDomain]:
    """Every domain registered through ``register_domains``, with the distribution that ships it."""
    pm = manager.load_plugins()
    out: dict[str, InstalledDomain] = {}
    for impl in pm.hook.register_domains.get_hookimpls():
        dist = manager.distributions.get(impl.plugin_name, "")

        def register(name, path, _dist=dist, _plugin=impl.plugin_name):
            if name in out:
                raise PluginError(f"Two plugins registered domain {name!r} ({out[name].origin} and {_dist or _plugin}); "
                                  "uninstall one of them with `gag uninstall-domain` or pip.")
            path = Path(path)
            try:
                manifest = read_manifest(path)
            except ModuleFormatError:
                manifest = None
            out[name] = InstalledDomain(name, path, "package", _dist or _plugin, manifest, distribution=_dist,
                                        record=read_record(name))

        try:
            impl.function(**dict.fromkeys(impl.argnames, register))  # an impl may take no arguments
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(f"Plugin {impl.plugin_name!r} ({dist or 'not from pip'}) failed in register_domains: "
                              f"{exc}. Set GAG_LOAD_PLUGINS='' to start without plugins.") from None
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


def distribution_domains(dist_name: str) -> dict[str, Path]:
    """Load the ``gag`` entry points of one (freshly installed) distribution and return the domains they register.
    The plugins are also registered with the running plugin manager, so this process sees them at once."""
    importlib.invalidate_caches()
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise DistributionError(f"{dist_name} is not installed in this environment ({sys.prefix}).") from None
    manager.load_plugins()
    found: dict[str, Path] = {}
    for ep in dist.entry_points:
        if ep.group != manager.GROUP:
            continue
        hook = getattr(manager.register_entry_point(ep, dist_name), "register_domains", None)
        if hook is not None:
            hook(register=lambda name, path: found.__setitem__(name, Path(path)))
    return found


def install_domain(source_text: str, *, name: str | None = None, force: bool = False,
                   limits: SizeLimits | None = None) -> InstallResult:
    """Install from a folder, a .whl/.tar.gz, a PyPI name, or ``hf:ORG/NAME[@REVISION]``. Verified before it lands."""
    installer = Installer(package_domains(), force=force, limits=limits)
    source = parse_source(source_text)
    if not source.is_package:
        return installer.install(source, name=name)
    with installer.package(source, name=name) as pending:
        pending.registered = distribution_domains(pending.distribution)
    result = pending.result
    if not manager.allowed(result.distribution, result.distribution):
        result.notes.append(f"GAG_LOAD_PLUGINS is set and does not name {result.distribution}; add it there to use "
                            "these domains.")
    return result


def uninstall_domain(name: str) -> UninstallResult:
    """Remove a folder installed under GAG_HOME, or pip-uninstall the package that ships the domain
    (which removes every domain that package registers); this process stops seeing its plugins too."""
    result = Installer(package_domains()).uninstall(name)
    if result.distribution:
        manager.forget_distribution(result.distribution)
    return result
