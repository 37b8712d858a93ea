"""Installing domain modules (DESIGN.md §4): one installer for every source.

The resolvers in ``gag_core.distribution`` turn a source into files: a folder is used as it is, a Hub repo
is pulled into a plain folder, a pip package is staged with ``pip install --target`` and every module folder
it ships is verified. The installer then checks the names against what is installed, and

- a folder (from disk or the Hub) is copied into a staging folder of the store, the copy is verified, and
  the store renames it into place (``store.commit``; a crash at any point is rolled back or forward);
- a package is pip-installed into the running environment; the domains its ``gag`` entry points register
  are verified, and the package is pip-uninstalled again if they do not.

Nothing under GAG_HOME or in the environment changes unless every check passes. gag_core loads no entry
points: the plugin layer hands the installer what packages register (``packaged``, and inside
``Installer.package`` the ``registered`` folders of the new package). Records of where each domain came
from live in the store.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import store
from .distribution import (Source, fetch_artifact, installed_version, parse_source, pip_install_staged, pip_uninstall,
                           pull_hub, stage_package)
from .errors import ConfigError, DistributionError, DomainNotFoundError, GagError, ModuleFormatError
from .module import check_name, copy_module, read_manifest, verify_module
from .safety import SizeLimits
from .store import InstalledDomain, list_installed


def install_folder(src: Path, *, name: str | None = None, force: bool = False, source: str = "folder",
                   origin: str | None = None, limits: SizeLimits | None = None,
                   record: dict | None = None) -> InstalledDomain:
    """Verify a module folder, stage a copy in the store, verify the copy, and rename it into place.
    ``name`` installs it under another name (only the manifest's name changes)."""
    limits = limits or SizeLimits()
    src = Path(src)
    manifest = verify_module(src, limits)  # refuse before touching GAG_HOME
    target_name = check_name(name or manifest.name)
    store.refuse_installed(target_name, force)
    with store.staging_area(target_name, force) as staging:
        manifest = copy_module(src, staging / "module", limits)  # verify the copy that will actually be used
        if manifest.name != target_name:
            manifest.name = target_name
            manifest.save(staging / "module", limits)
        rec = {**(record or {}), "source": source, "origin": origin or str(src.resolve()),
               "version": manifest.version, "installed_at": time.time()}
        target = store.commit(staging, target_name, rec)
    return InstalledDomain(target_name, target, source, rec["origin"], manifest, record=rec)


@dataclass
class InstallResult:
    source: str  # "folder" | "package" | "hub"
    domains: list[InstalledDomain]
    distribution: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class UninstallResult:
    removed: list[str]
    distribution: str = ""


@dataclass
class PackageInstall:
    """A package ``Installer.package`` has pip-installed, waiting for what its entry points register."""

    distribution: str
    version: str
    registered: dict[str, Path] | None = None  # set by the caller: {name: folder} its entry points register
    result: InstallResult | None = None  # set when the ``with`` block has ended well


def _manifest_name(folder: Path) -> str | None:
    """The name a folder would install under, or None if unreadable (install_folder then refuses it precisely)."""
    try:
        return read_manifest(folder).name
    except GagError:
        return None


def _safe_name(name) -> bool:
    try:
        check_name(name)
        return True
    except ModuleFormatError:
        return False


class Installer:
    """Installs and uninstalls domains from any source.

    ``packaged``: the domains pip packages register now, as the plugin layer found them through entry points;
    a folder may not silently shadow one, and uninstalling one pip-uninstalls its package.
    """

    def __init__(self, packaged: Mapping[str, InstalledDomain] | None = None, *, force: bool = False,
                 limits: SizeLimits | None = None):
        self.packaged = dict(packaged or {})
        self.force = force
        self.limits = limits or SizeLimits()

    def install(self, source: Source | str, *, name: str | None = None, token: str | None = None) -> InstallResult:
        """Install a folder or a Hub repo under GAG_HOME (a pip package goes through ``package``)."""
        source = parse_source(source) if isinstance(source, str) else source
        if source.kind == "folder":
            self._refuse_shadowing(name or _manifest_name(Path(source.value)))
            return InstallResult("folder", [install_folder(Path(source.value), name=name, force=self.force,
                                                           limits=self.limits)])
        if source.kind != "hub":
            raise ConfigError(f"{source} is a pip package; install it with `gag install-domain` (or "
                              "gag_plugins.discovery.install_domain), which loads its entry points.")
        with tempfile.TemporaryDirectory(prefix="gag-hub-") as tmp:
            pulled = pull_hub(source, Path(tmp) / "module", limits=self.limits, token=token)
            self._refuse_shadowing(name or _manifest_name(pulled.folder))
            dom = install_folder(pulled.folder, name=name, force=self.force, source="hub", origin=pulled.origin,
                                 limits=self.limits, record=pulled.record)
        return InstallResult("hub", [dom])

    @contextlib.contextmanager
    def package(self, source: Source, *, name: str | None = None) -> Iterator[PackageInstall]:
        """Stage and verify a pip package, pip-install it, and yield it: the caller sets ``registered`` to what
        its ``gag`` entry points register. Leaving the block verifies those folders and writes the records;
        if the block or that verification fails, the package is pip-uninstalled again."""
        if name:
            raise ModuleFormatError("--name applies to folders and Hub repos; a package registers its domains under "
                                    "their own names. Install the package without --name.")
        with tempfile.TemporaryDirectory(prefix="gag-package-") as tmp:
            artifact = fetch_artifact(source, Path(tmp))
            staged = stage_package(artifact, Path(tmp) / "target", self.limits)
            shadowed = self._check_package_names(staged.distribution, set(staged.modules))
            pip_install_staged(artifact, source, staged, force=self.force)
        pending = PackageInstall(staged.distribution, staged.version)
        try:
            yield pending
            self._verify_registered(pending)
        except GagError as exc:
            pip_uninstall(pending.distribution)
            raise DistributionError(f"{exc} {pending.distribution} was uninstalled again.") from None
        except Exception as exc:  # the package's own code failed while registering
            pip_uninstall(pending.distribution)
            raise DistributionError(f"{pending.distribution} failed to load: {exc}. It was uninstalled again.") from None
        pending.result = self._record_package(pending, str(source), shadowed)

    def uninstall(self, name: str) -> UninstallResult:
        """Remove a folder installed under GAG_HOME, or pip-uninstall the package that ships the domain
        (which removes every domain that package registers)."""
        if name in list_installed():
            store.uninstall(name)
            return UninstallResult([name])
        if name not in self.packaged:
            known = sorted({**self.packaged, **list_installed()})
            raise DomainNotFoundError(f"No installed domain named {name!r}; installed: {known or 'none'} "
                                      "(see `gag list`).")
        dist = self._distribution_of(self.packaged[name])
        if not dist or installed_version(dist) is None:
            raise DistributionError(f"Domain {name!r} is registered by plugin {self.packaged[name].origin!r}, which pip "
                                    "does not know in this environment; remove that plugin yourself.")
        names = sorted(n for n, d in self.packaged.items() if self._distribution_of(d) == dist)
        pip_uninstall(dist)
        for n in names:
            if _safe_name(n):
                store.remove_record(n)
        return UninstallResult(names, dist)

    # --- checks and records ----------------------------------------------------------------------

    @staticmethod
    def _distribution_of(dom: InstalledDomain) -> str:
        return dom.distribution or dom.record.get("distribution", "")

    def _refuse_shadowing(self, name: str | None) -> None:
        if name is not None and not self.force and name in self.packaged:
            raise ModuleFormatError(f"Domain {name!r} is provided by package {self.packaged[name].origin}; pass --force "
                                    "to shadow it with this install, or --name to install under another name.")

    def _check_package_names(self, dist: str, names: set[str]) -> list[str]:
        """Refuse names another package provides, or installed folders without --force; returns the folders
        this package will replace (a folder would otherwise win over it)."""
        existing = {**self.packaged, **list_installed()}
        shadowed = []
        for n in sorted(names):
            d = existing.get(n)
            if d is None or (d.source == "package" and d.distribution == dist):
                continue
            if d.source == "package":
                raise ModuleFormatError(f"Domain {n!r} is already provided by package {d.origin}; uninstall it first "
                                        f"with `gag uninstall-domain {n}`.")
            if not self.force:
                raise ModuleFormatError(f"Domain {n!r} is already installed ({d.source}: {d.origin or d.path}); pass "
                                        "--force to replace it with the package's.")
            shadowed.append(n)
        return shadowed

    def _verify_registered(self, pending: PackageInstall) -> None:
        if not pending.registered:
            raise DistributionError(f"{pending.distribution} installed, but its 'gag' entry points register no domain.")
        for name, folder in pending.registered.items():
            manifest = verify_module(folder, self.limits)
            if manifest.name != name:
                raise DistributionError(f"{pending.distribution} registers domain {name!r} for a module named "
                                        f"{manifest.name!r}; the names must match.")

    def _record_package(self, pending: PackageInstall, origin: str, shadowed: list[str]) -> InstallResult:
        for n in shadowed:
            store.uninstall(n)
        domains = []
        for n, path in sorted(pending.registered.items()):
            record = {"source": "package", "distribution": pending.distribution, "version": pending.version,
                      "origin": origin, "installed_at": time.time()}
            store.write_record(n, record)
            domains.append(InstalledDomain(n, path, "package", pending.distribution, read_manifest(path),
                                           distribution=pending.distribution, record=record))
        return InstallResult("package", domains, pending.distribution)
