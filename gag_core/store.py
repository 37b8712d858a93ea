"""Installed domains under ``GAG_HOME/domains``: the store's lock, staging folders, commit, repair, records.

An install (``gag_core.install``) verifies the source, copies it into a hidden ``.staging-*`` folder
(``staging_area``), verifies the copy, then ``commit`` swaps it into place with renames. Before the first
rename the staging folder gets an ``intent.json`` naming the target, and the new install record waits in the
staging folder too, so whatever point a killed install stopped at, the next gag command (``repair``) can
tell what happened:

- the staged module is still in staging: nothing landed; a replaced installation moved to ``old`` is put back;
- the staged module is gone: it landed; the waiting record is moved into place.

Then the staging folder is deleted. Records (where a domain came from) live in ``.records/NAME.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DomainNotFoundError, ModuleFormatError
from .module import Manifest, check_name, read_manifest
from .paths import domains_dir

RECORDS = ".records"  # install records (source, origin, distribution, time), outside the module folders
LOCK = ".lock"
STAGING_PREFIX = ".staging-"
INTENT = "intent.json"
STALE_SECONDS = 3600  # without file locks (Windows), staging folders younger than this may belong to a live install

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


@dataclass
class InstalledDomain:
    name: str
    path: Path
    source: str  # "folder" | "package" | "hub"
    origin: str = ""  # where it came from (path, package spec, hf:repo@commit)
    manifest: Manifest | None = None
    distribution: str = ""  # the pip distribution that ships it (source "package")
    record: dict = field(default_factory=dict)


# --- records ------------------------------------------------------------------------------------

def _record_path(name: str) -> Path:
    return domains_dir() / RECORDS / f"{check_name(name)}.json"


def read_record(name: str) -> dict:
    try:
        p = _record_path(name)
        data = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
    except (OSError, ValueError, ModuleFormatError):
        return {}
    return data if isinstance(data, dict) else {}


def write_record(name: str, record: dict) -> None:
    """Write an install record atomically (temporary file, then rename)."""
    path = _record_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True, indent=1))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def remove_record(name: str) -> None:
    _record_path(name).unlink(missing_ok=True)


# --- lock and repair ----------------------------------------------------------------------------

@contextlib.contextmanager
def store_lock(blocking: bool = True):
    """Hold ``domains/.lock`` (POSIX file lock) while changing the store. Yields False if not acquired."""
    root = domains_dir()
    root.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield True
        return
    with open(root / LOCK, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def repair() -> list[str]:
    """Finish or undo what killed installs and uninstalls left behind; call with the lock held.

    Returns a line per action taken. Every staging folder is debris once the lock is held, because gag
    only creates them under the lock.
    """
    root = domains_dir()
    actions: list[str] = []
    if not root.is_dir():
        return actions
    now = time.time()
    for staging in sorted(root.glob(STAGING_PREFIX + "*")):
        if fcntl is None and now - staging.stat().st_mtime < STALE_SECONDS:  # pragma: no cover
            continue
        intent = staging / INTENT
        if intent.is_file():
            try:
                target = root / check_name(json.loads(intent.read_text(encoding="utf-8"))["target"])
            except (OSError, ValueError, KeyError, TypeError, ModuleFormatError):
                target = None
            if target is not None and (staging / "module").is_dir():  # the new module never landed
                if (staging / "old").is_dir() and not target.exists():
                    os.replace(staging / "old", target)
                    actions.append(f"restored {target.name} (an interrupted install had moved it aside)")
            elif target is not None and (staging / "record.json").is_file():  # it landed; finish the record
                _record_path(target.name).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / "record.json", _record_path(target.name))
                actions.append(f"completed the interrupted install of {target.name}")
        shutil.rmtree(staging, ignore_errors=True)
    return actions


def _repair_if_needed() -> None:
    root = domains_dir()
    if root.is_dir() and any(root.glob(STAGING_PREFIX + "*")):
        with store_lock(blocking=False) as acquired:
            if acquired:
                repair()


# --- listing ------------------------------------------------------------------------------------

def list_installed() -> dict[str, InstalledDomain]:
    """Domains installed as folders under GAG_HOME (from a folder or the Hub)."""
    _repair_if_needed()
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
        source = rec.get("source", "folder") if rec.get("source") in ("folder", "hub") else "folder"
        out[p.name] = InstalledDomain(p.name, p, source, rec.get("origin", ""), manifest, record=rec)
    return out


# --- staging and commit ------------------------------------------------------------------------

def refuse_installed(name: str, force: bool) -> None:
    """Refuse to install over an installed domain unless ``force`` is given."""
    if (domains_dir() / check_name(name)).exists() and not force:
        raise ModuleFormatError(f"Domain {name!r} is already installed; pass --force to replace it "
                                f"or --name to install it under another name.")


@contextlib.contextmanager
def _locked_staging():
    """Hold the lock, finish what killed commands left, and yield a fresh staging folder (always removed)."""
    with store_lock():
        repair()
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=domains_dir()))
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def staging_area(name: str, force: bool):
    """A staging folder for installing ``name``, with the store locked: stage the module in ``STAGING/module``,
    then ``commit``. The target is checked again under the lock (someone may have installed it meanwhile)."""
    with _locked_staging() as staging:
        refuse_installed(name, force)
        yield staging


def commit(staging: Path, name: str, record: dict) -> Path:
    """Rename ``staging/module`` to the domain's folder (moving a previous installation aside) and write the record.
    On an exception everything is rolled back; on a kill, ``repair`` finishes or undoes it. Returns the folder."""
    target = domains_dir() / check_name(name)
    (staging / "record.json").write_text(json.dumps(record, sort_keys=True, indent=1), encoding="utf-8")
    (staging / INTENT).write_text(json.dumps({"target": target.name}), encoding="utf-8")
    old = staging / "old"
    had_old = target.exists()
    try:
        if had_old:
            os.replace(target, old)
        try:
            os.replace(staging / "module", target)
            _record_path(target.name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / "record.json", _record_path(target.name))
        except BaseException:
            if not (staging / "module").exists() and target.exists():
                os.replace(target, staging / "module")  # take the new module back out
            raise
    except BaseException:
        if had_old and old.exists() and not target.exists():
            os.replace(old, target)
        (staging / INTENT).unlink(missing_ok=True)  # settled: rolled back
        raise
    (staging / INTENT).unlink(missing_ok=True)  # settled: installed
    return target


# --- uninstall ----------------------------------------------------------------------------------

def uninstall(name: str) -> InstalledDomain:
    """Remove a domain installed under GAG_HOME (a killed uninstall completes on the next command)."""
    installed = list_installed()
    if name not in installed:
        raise DomainNotFoundError(f"No installed domain named {name!r}; installed: {sorted(installed) or 'none'}.")
    dom = installed[name]
    with _locked_staging() as trash:
        if dom.path.exists():
            os.replace(dom.path, trash / "old")
        remove_record(name)
    return dom
