"""Installed domains under ``GAG_HOME/domains``: atomic install from a folder, uninstall, records.

Install = copy into a hidden staging folder -> verify the copy -> rename into place. A killed install
leaves only a hidden ``.staging-*`` folder, which listing ignores and the next install removes; the
previous installation stays untouched until the final rename.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import DomainNotFoundError, ModuleFormatError
from .module import MANIFEST, Manifest, check_name, read_manifest, verify_module
from .paths import domains_dir
from .safety import SizeLimits, scan_folder

RECORDS = ".records"  # install records (source, time), outside the module folders
STALE_SECONDS = 3600


@dataclass
class InstalledDomain:
    name: str
    path: Path
    source: str  # "folder" | "package" | "hub"
    origin: str = ""  # where it came from (path, package name, hub repo)
    manifest: Manifest | None = None


def _record_path(name: str) -> Path:
    return domains_dir() / RECORDS / f"{name}.json"


def read_record(name: str) -> dict:
    p = _record_path(name)
    try:
        return json.loads(p.read_text()) if p.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def clean_debris(max_age: float = 0.0) -> None:
    """Remove staging folders left by killed installs (older than ``max_age`` seconds)."""
    root = domains_dir()
    if not root.is_dir():
        return
    now = time.time()
    for p in root.glob(".staging-*"):
        try:
            if now - p.stat().st_mtime >= max_age:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def list_installed() -> dict[str, InstalledDomain]:
    root = domains_dir()
    out: dict[str, InstalledDomain] = {}
    if not root.is_dir():
        return out
    for p in sorted(root.iterdir()):
        if p.name.startswith(".") or not p.is_dir() or p.is_symlink():
            continue
        try:
            manifest = read_manifest(p)
        except ModuleFormatError:
            manifest = None
        rec = read_record(p.name)
        out[p.name] = InstalledDomain(p.name, p, rec.get("source", "folder"), rec.get("origin", ""), manifest)
    return out


def install_folder(src: Path, *, name: str | None = None, force: bool = False, source: str = "folder",
                   origin: str | None = None, limits: SizeLimits = SizeLimits()) -> InstalledDomain:
    """Verify and install a module folder atomically. Nothing changes unless every check passes."""
    src = Path(src)
    manifest = verify_module(src, limits)  # refuse before copying anything
    target_name = check_name(name or manifest.name)
    root = domains_dir()
    root.mkdir(parents=True, exist_ok=True)
    clean_debris(STALE_SECONDS)
    target = root / target_name
    if target.exists() and not force:
        raise ModuleFormatError(f"Domain {target_name!r} is already installed; pass --force to replace it "
                                f"or --name to install it under another name.")
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        files = scan_folder(src, limits)
        for rel, path in files.items():
            dst = staging / "module" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dst)
        staged = staging / "module"
        if target_name != manifest.name:
            data = json.loads((staged / MANIFEST).read_text(encoding="utf-8"))
            data["name"] = target_name
            (staged / MANIFEST).write_text(json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n")
        manifest = verify_module(staged, limits)  # verify the copy that will actually be used
        record = {"source": source, "origin": origin or str(src.resolve()), "installed_at": time.time()}
        (root / RECORDS).mkdir(exist_ok=True)
        rec_tmp = staging / "record.json"
        rec_tmp.write_text(json.dumps(record, sort_keys=True))
        if target.exists():
            os.replace(target, staging / "old")
        os.replace(staged, target)
        os.replace(rec_tmp, _record_path(target_name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return InstalledDomain(target_name, target, source, record["origin"], manifest)


def uninstall(name: str) -> InstalledDomain:
    installed = list_installed()
    if name not in installed:
        raise DomainNotFoundError(f"No installed domain named {name!r}; installed: {sorted(installed) or 'none'}.")
    dom = installed[name]
    root = domains_dir()
    trash = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    os.replace(dom.path, trash / "old")
    _record_path(name).unlink(missing_ok=True)
    shutil.rmtree(trash, ignore_errors=True)
    return dom
