"""``gag package-domain``: a pip-installable project that ships a module folder through the ``gag`` entry point."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from ..errors import ConfigError, ModuleFormatError
from ..module import check_name, copy_module, verify_module
from ..safety import SizeLimits

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = {dist}
version = {version}
description = {description}
readme = "README.md"
requires-python = ">=3.11"
dependencies = []

[project.entry-points.gag]
{entry} = {package}

[tool.setuptools]
packages = [{package}]

[tool.setuptools.package-data]
{package_bare} = ["module/*", "module/*/*"]
"""

INIT = '''\
"""gag domain ``{name}`` v{version}, packaged by `gag package-domain`.

Registered through the ``gag`` entry-point group exactly like ``gag-domain-minerals``: the module folder
(``module/``) is package data, checked by gag (hashes, types, shapes) before it is used. No other code.
"""

from pathlib import Path

from gag_plugins import hookimpl

MODULE = Path(__file__).parent / "module"


@hookimpl
def register_domains(register):
    register({name!r}, MODULE)
'''

README = """\
# {dist}

The [gag](https://pypi.org/project/gag/) domain module `{name}` v{version} as a pip package: {description}

```bash
gag install-domain {dist}        # or: gag install-domain ./dist/{wheel_prefix}-{version}-py3-none-any.whl
gag ask --domain {name} "your question"
```

The module's model card is `{package}/module/README.md`.
"""


def package_names(domain: str) -> tuple[str, str]:
    """(distribution name, import package) for a domain: ``gag-domain-NAME``, ``gag_domain_NAME``."""
    check_name(domain)
    return "gag-domain-" + re.sub(r"[._-]+", "-", domain), "gag_domain_" + re.sub(r"[.-]+", "_", domain)


def _toml_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string with these escapes is a valid TOML basic string


def package_module(folder: Path, out_dir: Path, *, limits: SizeLimits | None = None) -> Path:
    """Write a pip-installable project for a verified module folder into ``out_dir`` (new or empty)."""
    manifest = verify_module(folder, limits)
    dist, package = package_names(manifest.name)
    version = _check_version(manifest.version)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"{out_dir} already exists and is not empty; choose a new or empty folder for --out.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.writing-", dir=out_dir.parent))
    try:
        copy_module(folder, staging / package / "module", limits)
        description = " ".join((manifest.description or f"gag domain {manifest.name}").split())
        (staging / "pyproject.toml").write_text(PYPROJECT.format(
            dist=_toml_str(dist), version=_toml_str(version), description=_toml_str(description),
            entry=manifest.name if re.fullmatch(r"[A-Za-z0-9_-]+", manifest.name) else _toml_str(manifest.name),
            package=_toml_str(package), package_bare=package), encoding="utf-8")
        (staging / package / "__init__.py").write_text(INIT.format(name=manifest.name, version=version), encoding="utf-8")
        (staging / "README.md").write_text(README.format(dist=dist, name=manifest.name, version=version, package=package,
                                                         description=description, wheel_prefix=dist.replace("-", "_")),
                                           encoding="utf-8")
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _check_version(version: str) -> str:
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # pragma: no cover - packaging ships with pip/setuptools
        return version
    try:
        return str(Version(version))
    except InvalidVersion:
        raise ModuleFormatError(f"Module version {version!r} is not a valid Python package version (PEP 440), "
                                "e.g. 0.1.0; re-export the module with such a version.") from None
