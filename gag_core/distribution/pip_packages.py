"""Domain packages and pip: run pip of the running interpreter, stage a package and verify what it ships.

A package is first unpacked with ``pip install --no-deps --target`` into a scratch folder and every module
folder in it is verified; only then is it pip-installed into the running environment (the way
``llm install`` does, so the domains land where gag can see them). Nothing from the package is imported or
executed while staging (an sdist's build backend still runs, as in any pip install).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import DistributionError
from ..module import MANIFEST, Manifest, verify_module
from ..safety import SizeLimits
from .sources import Source

ENTRY_POINT_GROUP = "gag"  # the entry-point group a domain package registers in (gag_plugins loads it)


def run_pip(*args: str, what: str) -> str:
    """Run pip of the running interpreter, the way ``llm install`` does; a failure raises with pip's last lines."""
    cmd = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--no-input"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise DistributionError(f"pip could not {what} (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def installed_version(distribution: str) -> str | None:
    importlib.invalidate_caches()
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def pip_uninstall(distribution: str) -> None:
    try:
        run_pip("uninstall", "-y", distribution, what=f"uninstall {distribution}")
        failure = None
    except DistributionError as exc:
        failure = exc
    if installed_version(distribution) is None:
        return
    location = Path(str(importlib.metadata.distribution(distribution).locate_file(""))).resolve()
    if not location.is_relative_to(Path(sys.prefix).resolve()):
        raise DistributionError(f"pip did not remove {distribution!r}: it is installed outside this environment "
                                f"({sys.prefix}), in {location} (--target or PYTHONPATH). Remove it from there by hand.")
    raise failure or DistributionError(f"pip did not remove {distribution!r} from {location}; run "
                                       f"`{sys.executable} -m pip uninstall {distribution}` to see why.")


def fetch_artifact(source: Source, scratch: Path) -> Path:
    """The wheel/sdist to install: the given file, or a wheel of a PyPI requirement downloaded into ``scratch``."""
    if source.kind == "archive":
        return Path(source.value)
    if source.kind != "pypi":
        raise ValueError(source.kind)
    # wheels only: a mistyped name must not run some sdist's build code before gag can refuse it
    download = Path(scratch) / "download"
    run_pip("download", "--no-deps", "--only-binary=:all:", "--dest", str(download), source.value,
            what=f"download a wheel of {source.value}")
    found = sorted(download.iterdir())
    if len(found) != 1:
        raise DistributionError(f"pip download of {source.value} gave {len(found)} files; expected one.")
    return found[0]


@dataclass
class StagedPackage:
    distribution: str
    version: str
    modules: dict[str, Manifest]  # manifest name -> verified manifest


def stage_package(artifact: Path, target: Path, limits: SizeLimits) -> StagedPackage:
    """``pip install --no-deps --target`` into a scratch folder and verify every module folder it ships."""
    run_pip("install", "--no-deps", "--no-compile", "--target", str(target), str(artifact),
            what=f"unpack {artifact.name}")
    infos = sorted(target.glob("*.dist-info"))
    if len(infos) != 1:
        raise DistributionError(f"{artifact.name} unpacked into {len(infos)} distributions; expected one.")
    dist = importlib.metadata.PathDistribution(infos[0])
    name, version = dist.metadata["Name"], dist.version
    if not [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]:
        raise DistributionError(f"{name} {version} has no entry point in the 'gag' group, so it is not a gag domain "
                                "package. Build one with `gag package-domain NAME --out DIR`.")
    modules: dict[str, Manifest] = {}
    for dirpath, dirnames, filenames in os.walk(target, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.endswith(".dist-info")]
        if MANIFEST in filenames:
            manifest = verify_module(Path(dirpath), limits)
            if manifest.name in modules:
                raise DistributionError(f"{name} ships two module folders named {manifest.name!r}.")
            modules[manifest.name] = manifest
    if not modules:
        raise DistributionError(f"{name} {version} ships no domain module folder ({MANIFEST} not found).")
    return StagedPackage(name, version, modules)


def pip_install_staged(artifact: Path, source: Source, staged: StagedPackage, *, force: bool) -> None:
    """pip-install the package that was staged into the running environment (the same file, or the same version)."""
    previous = installed_version(staged.distribution)
    final = str(artifact) if source.kind == "archive" else f"{staged.distribution}=={staged.version}"
    extra = ("--force-reinstall", "--no-deps") if force and previous is not None else ()
    run_pip("install", *extra, final, what=f"install {final}")
