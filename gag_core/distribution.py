"""How a domain module travels (DESIGN.md §4): pip packages, the Hugging Face Hub, and packaging.

- ``parse_source``: a folder, a ``.whl``/``.tar.gz`` file, a PyPI requirement, or ``hf:ORG/NAME[@REVISION]``.
- ``install_package``: pip-installs a domain package into the running environment (``sys.executable -m pip``)
  only after a staged copy (``pip install --no-deps --target``) has verified every module folder in it; after
  the real install, the domains its entry points register are verified again, and it is uninstalled if not.
- ``install_hub``: ``snapshot_download`` limited to safetensors/JSON/JSONL/Markdown (honours ``HF_HOME``,
  ``HF_HUB_CACHE``, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and ``HF_TOKEN`` at call time), then ``install_folder``.
- ``package_module``: writes a pip-installable project exposing the module through the ``gag`` entry point.
- ``push_module``: ``create_repo`` + ``upload_folder`` of a verified copy with a Hub-ready model card.

This module never imports gag_plugins: entry-point discovery is passed in as ``find_domains``.
"""

from __future__ import annotations

import importlib
import inspect
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import ConfigError, DistributionError, GagError, ModuleFormatError
from .module import CARD, MANIFEST, Manifest, check_name, verify_module
from .models import EMBEDDED_ID
from .safety import SizeLimits, check_relative_path, scan_folder, sha256_file
from .store import InstalledDomain, install_folder

HUB_PREFIX = "hf:"
HUB_PATTERNS = ["*.safetensors", "*.json", "*.jsonl", "*.md"]
EMBEDDED_HUB_BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
_REVISION = re.compile(r"^[\w][\w./-]{0,254}$")
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*((?:===?|>=|<=|~=|!=|<|>)\s*[A-Za-z0-9.*+!_-]+)?$")


# --- sources ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    kind: str  # "folder" | "archive" | "pypi" | "hub"
    value: str  # folder or file path, requirement, or repo id
    revision: str | None = None  # hub only

    def __str__(self) -> str:
        if self.kind == "hub":
            return f"{HUB_PREFIX}{self.value}" + (f"@{self.revision}" if self.revision else "")
        return self.value


def parse_source(text: str) -> Source:
    """Tell a folder, a wheel/sdist, a PyPI requirement and a Hub repo apart; refuse anything else."""
    text = text.strip()
    if text.startswith(HUB_PREFIX):
        repo, at, revision = text[len(HUB_PREFIX):].partition("@")
        if not _REPO_ID.match(repo) or (at and not _REVISION.match(revision)):
            raise ConfigError(f"Invalid Hub source {text!r}: expected hf:ORG/NAME or hf:ORG/NAME@REVISION "
                              "(a branch, tag or commit).")
        return Source("hub", repo, revision or None)
    path = Path(text).expanduser()
    if path.is_dir():
        return Source("folder", str(path))
    if text.endswith((".whl", ".tar.gz")):
        if not path.is_file():
            raise ConfigError(f"No such package file {text!r}; check the path.")
        return Source("archive", str(path.resolve()))
    if path.exists():
        raise ConfigError(f"{text} is neither a module folder nor a .whl/.tar.gz package.")
    match = _REQUIREMENT.match(text)
    if match and "/" not in text and os.sep not in text:
        return Source("pypi", text)
    hint = " For a Hugging Face repo write hf:ORG/NAME." if text.count("/") == 1 else ""
    raise ConfigError(f"Cannot install {text!r}: expected a module folder, a .whl/.tar.gz file, a PyPI name "
                      f"(e.g. gag-domain-minerals or gag-domain-minerals==0.1.0) or hf:ORG/NAME[@REVISION].{hint}")


# --- pip ----------------------------------------------------------------------------------------

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


@dataclass
class StagedPackage:
    distribution: str
    version: str
    modules: dict[str, Manifest]  # manifest name -> verified manifest


def stage_package(artifact: Path, target: Path, limits: SizeLimits) -> StagedPackage:
    """``pip install --no-deps --target`` into a scratch folder and verify every module folder it ships.
    Nothing from the package is imported or executed here (an sdist's build backend still runs, as in any pip install)."""
    run_pip("install", "--no-deps", "--no-compile", "--target", str(target), str(artifact),
            what=f"unpack {artifact.name}")
    infos = sorted(target.glob("*.dist-info"))
    if len(infos) != 1:
        raise DistributionError(f"{artifact.name} unpacked into {len(infos)} distributions; expected one.")
    dist = importlib.metadata.PathDistribution(infos[0])
    name, version = dist.metadata["Name"], dist.version
    if not [ep for ep in dist.entry_points if ep.group == "gag"]:
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


@dataclass
class PackageInstall:
    distribution: str
    version: str
    domains: dict[str, Path]  # registered name -> module folder inside the installed package


def install_package(source: Source, *, find_domains: Callable[[str], dict[str, Path]],
                    check_names: Callable[[str, set[str]], None] | None = None, force: bool = False,
                    limits: SizeLimits | None = None) -> PackageInstall:
    """Stage and verify, pip-install into the running environment, then verify what the entry points register.

    ``find_domains(distribution)`` returns {name: folder} registered by that distribution's ``gag`` entry
    points; ``check_names(distribution, names)`` may refuse names that clash with installed domains.
    """
    limits = limits or SizeLimits()
    with tempfile.TemporaryDirectory(prefix="gag-package-") as tmp:
        if source.kind == "archive":
            artifact = Path(source.value)
        elif source.kind == "pypi":
            # wheels only: a mistyped name must not run some sdist's build code before gag can refuse it
            run_pip("download", "--no-deps", "--only-binary=:all:", "--dest", str(Path(tmp) / "download"),
                    source.value, what=f"download a wheel of {source.value}")
            found = sorted((Path(tmp) / "download").iterdir())
            if len(found) != 1:
                raise DistributionError(f"pip download of {source.value} gave {len(found)} files; expected one.")
            artifact = found[0]
        else:
            raise ValueError(source.kind)
        staged = stage_package(artifact, Path(tmp) / "target", limits)
        if check_names:
            check_names(staged.distribution, set(staged.modules))
        previous = installed_version(staged.distribution)
        final = str(artifact) if source.kind == "archive" else f"{staged.distribution}=={staged.version}"
        extra = ("--force-reinstall", "--no-deps") if force and previous is not None else ()
        run_pip("install", *extra, final, what=f"install {final}")
    try:
        domains = find_domains(staged.distribution)
        if not domains:
            raise DistributionError(f"{staged.distribution} installed, but its 'gag' entry points register no domain.")
        for name, folder in domains.items():
            manifest = verify_module(folder, limits)
            if manifest.name != name:
                raise DistributionError(f"{staged.distribution} registers domain {name!r} for a module named "
                                        f"{manifest.name!r}; the names must match.")
    except GagError as exc:
        pip_uninstall(staged.distribution)
        raise DistributionError(f"{exc} {staged.distribution} was uninstalled again.") from None
    except Exception as exc:  # the package's own code failed while registering
        pip_uninstall(staged.distribution)
        raise DistributionError(f"{staged.distribution} failed to load: {exc}. It was uninstalled again.") from None
    return PackageInstall(staged.distribution, staged.version, domains)


# --- the Hugging Face Hub -----------------------------------------------------------------------

def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class HubSettings:
    cache_dir: str | None
    endpoint: str | None
    offline: bool


def hub_settings() -> HubSettings:
    """Read the Hub's environment now (huggingface_hub itself reads it once, when first imported)."""
    cache = os.environ.get("HF_HUB_CACHE") or (os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME") else None)
    from huggingface_hub import constants

    offline = _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE") or bool(constants.HF_HUB_OFFLINE)
    return HubSettings(os.path.expanduser(cache) if cache else None, os.environ.get("HF_ENDPOINT") or None, offline)


def download_hub(repo_id: str, revision: str | None = None, *, limits: SizeLimits | None = None,
                 token: str | None = None) -> Path:
    """Download (or find in the cache) a module repo's safetensors/JSON/JSONL/Markdown files; returns the snapshot."""
    from huggingface_hub import snapshot_download

    limits = limits or SizeLimits()
    s = hub_settings()
    kwargs = dict(repo_id=repo_id, repo_type="model", revision=revision, allow_patterns=HUB_PATTERNS,
                  cache_dir=s.cache_dir, endpoint=s.endpoint, token=token, local_files_only=s.offline)
    try:
        if not s.offline and "dry_run" in inspect.signature(snapshot_download).parameters:
            _check_remote_sizes(snapshot_download(**kwargs, dry_run=True), limits, repo_id)
        return Path(snapshot_download(**kwargs))
    except GagError:
        raise
    except Exception as exc:
        raise DistributionError(_hub_error_message(exc, repo_id, revision, s)) from None


def _check_remote_sizes(files, limits: SizeLimits, repo_id: str) -> None:
    total = 0
    for info in files:
        size = getattr(info, "file_size", None) or 0
        if size > limits.per_file:
            raise ModuleFormatError(f"{repo_id}: {info.filename} is {size} bytes; the per-file limit is "
                                    f"{limits.per_file} (raise GAG_MAX_FILE_BYTES or --max-size). Nothing was downloaded.")
        total += size
    if total > limits.total:
        raise ModuleFormatError(f"{repo_id} holds {total} bytes of module files; the limit is {limits.total} "
                                "(raise GAG_MAX_MODULE_BYTES or --max-size). Nothing was downloaded.")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0].rstrip(".")


def _hub_error_message(exc: Exception, repo_id: str, revision: str | None, s: HubSettings) -> str:
    chain, cause = [], exc
    while cause is not None and len(chain) < 6:  # the Hub wraps the real reason (e.g. DryRunError from RepoNotFound)
        chain.append(type(cause).__name__)
        cause = cause.__cause__ or cause.__context__
    kind = next((k for k in chain if k in ("RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError")), chain[0])
    where = f"hf:{repo_id}" + (f"@{revision}" if revision else "")
    if kind in ("RepositoryNotFoundError", "GatedRepoError"):
        return (f"{where}: the repository does not exist, is private, or is gated. If you have access, log in with "
                "`hf auth login` or set HF_TOKEN.")
    if kind == "RevisionNotFoundError":
        return f"{where}: revision {revision!r} does not exist; give a branch, tag or commit of the repo."
    if s.offline or kind in ("LocalEntryNotFoundError", "IncompleteSnapshotError", "OfflineModeIsEnabled"):
        return (f"{where} is not (completely) in the Hugging Face cache ({s.cache_dir or 'the default HF_HOME'}) and "
                f"offline mode is {'on (HF_HUB_OFFLINE)' if s.offline else 'forced by a failed connection'}. "
                f"Unset HF_HUB_OFFLINE and retry with network access. ({kind}: {_first_line(exc)})")
    return f"Could not download {where}: {kind}: {_first_line(exc)}. Check HF_ENDPOINT and your network."


def materialize_snapshot(snapshot: Path, dest: Path, limits: SizeLimits | None = None) -> Path:
    """Copy a cached snapshot (symlinks into ``blobs/``) into a plain folder of module files.

    Only links that resolve to a regular file in this repo's ``blobs`` folder are followed; files the
    download did not ask for (other patterns, left by other tools) are not copied.
    """
    from huggingface_hub.utils import filter_repo_objects

    limits = limits or SizeLimits()
    snapshot = Path(snapshot)
    blobs = (snapshot.parent.parent / "blobs").resolve()
    total = 0
    for dirpath, dirnames, filenames in os.walk(snapshot, followlinks=False):
        for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            path = Path(dirpath) / name
            rel = path.relative_to(snapshot).as_posix()
            if not list(filter_repo_objects([rel], allow_patterns=HUB_PATTERNS)):
                continue
            check_relative_path(rel)
            real = path.resolve(strict=True) if path.is_symlink() else path
            if path.is_symlink() and real.parent != blobs:
                raise ModuleFormatError(f"{rel} in the Hugging Face cache links outside the repo's blobs ({real}).")
            if not real.is_file() or real.is_symlink():
                raise ModuleFormatError(f"{rel} in the Hugging Face cache is not a regular file.")
            size = real.stat().st_size
            total += size
            if size > limits.per_file or total > limits.total:
                raise ModuleFormatError(f"{rel} exceeds the size limits ({limits.per_file} per file, {limits.total} in all).")
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(real, dest / rel)
    return dest


def install_hub(source: Source, *, name: str | None = None, force: bool = False, limits: SizeLimits | None = None,
                token: str | None = None, check_target: Callable[[Path], None] | None = None) -> InstalledDomain:
    """Pull ``hf:ORG/NAME[@REVISION]`` (or find it in the cache) and install it like a folder.
    ``check_target(folder)`` may refuse the downloaded module before it is installed."""
    limits = limits or SizeLimits()
    snapshot = download_hub(source.value, source.revision, limits=limits, token=token)
    commit = snapshot.name
    with tempfile.TemporaryDirectory(prefix="gag-hub-") as tmp:
        folder = materialize_snapshot(snapshot, Path(tmp) / "module", limits)
        if check_target:
            check_target(folder)
        return install_folder(folder, name=name, force=force, source="hub", origin=f"{HUB_PREFIX}{source.value}@{commit}",
                              limits=limits, record={"repo": source.value, "revision": source.revision or "main",
                                                     "commit": commit})


# --- packaging ----------------------------------------------------------------------------------

def package_names(domain: str) -> tuple[str, str]:
    """(distribution name, import package) for a domain: ``gag-domain-NAME``, ``gag_domain_NAME``."""
    check_name(domain)
    return "gag-domain-" + re.sub(r"[._-]+", "-", domain), "gag_domain_" + re.sub(r"[.-]+", "_", domain)


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
        module_dst = staging / package / "module"
        for rel, path in scan_folder(Path(folder), limits).items():
            (module_dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, module_dst / rel)
        verify_module(module_dst, limits)
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


# --- pushing to the Hub -------------------------------------------------------------------------

def hub_base_model(base_id: str) -> str | None:
    """The ``base_model`` a Hub card may name: a Hub repo id (the embedded model maps to its source repo)."""
    if base_id == EMBEDDED_ID:
        return EMBEDDED_HUB_BASE
    return base_id if _REPO_ID.match(base_id) and not Path(base_id).exists() else None


def _front_matter(card: str) -> dict | None:
    import yaml

    if not card.startswith("---\n"):
        return None
    end = card.find("\n---", 4)
    try:
        meta = yaml.safe_load(card[4:end]) if end > 0 else None
    except yaml.YAMLError:
        return None
    return meta if isinstance(meta, dict) else None


def hub_card(manifest: Manifest, card: str | None) -> str | None:
    """A refreshed model card when ``card`` lacks the front matter the Hub needs; None when it is fine."""
    import yaml

    from .assemble import model_card

    want = {"library_name": "gag", "base_model": hub_base_model(manifest.base["id"])}
    meta = _front_matter(card or "")
    if meta is not None and all(meta.get(k) == v for k, v in want.items()) and "gag" in (meta.get("tags") or []):
        return None
    fresh = model_card(manifest)
    body = fresh[fresh.find("\n---", 4) + len("\n---"):] if fresh.startswith("---\n") else "\n" + fresh
    meta = {k: v for k, v in want.items() if v is not None}
    meta["tags"] = ["gag", "generation-augmented-generation", "lora", f"gag-domain-{manifest.name}"]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---" + body


def prepare_upload(folder: Path, dest: Path, limits: SizeLimits | None = None) -> tuple[Path, Manifest]:
    """A verified copy of the module with a Hub-ready card (the manifest's hash of README.md updated to match)."""
    manifest = verify_module(folder, limits)
    for rel, path in scan_folder(Path(folder), limits).items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / rel)
    card_path = dest / CARD
    refreshed = hub_card(manifest, card_path.read_text(encoding="utf-8") if card_path.is_file() else None)
    if refreshed is not None:
        card_path.write_text(refreshed, encoding="utf-8")
        data = json.loads((dest / MANIFEST).read_text(encoding="utf-8"))
        data["files"][CARD] = sha256_file(card_path)
        (dest / MANIFEST).write_text(json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return dest, verify_module(dest, limits)


def push_module(folder: Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                token: str | None = None, api=None, limits: SizeLimits | None = None) -> str:
    """Create (or reuse) a model repo and upload the module so it mirrors the folder. Returns the commit URL."""
    if not _REPO_ID.match(repo_id):
        raise ConfigError(f"Invalid Hub repo {repo_id!r}: expected ORG/NAME.")
    if revision is not None and not _REVISION.match(revision):
        raise ConfigError(f"Invalid branch name {revision!r}.")
    if hub_settings().offline:
        raise DistributionError("HF_HUB_OFFLINE is set, so nothing can be pushed; unset it and retry.")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(endpoint=hub_settings().endpoint, token=token)
    with tempfile.TemporaryDirectory(prefix="gag-push-") as tmp:
        upload, manifest = prepare_upload(Path(folder), Path(tmp) / "module", limits)
        try:
            api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            if revision and revision != "main":
                api.create_branch(repo_id, repo_type="model", branch=revision, exist_ok=True)
            commit = api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(upload), revision=revision,
                                       commit_message=f"gag domain {manifest.name} v{manifest.version}",
                                       allow_patterns=HUB_PATTERNS, delete_patterns=HUB_PATTERNS)
        except GagError:
            raise
        except Exception as exc:
            raise DistributionError(f"Could not push to hf:{repo_id}: {type(exc).__name__}: {_first_line(exc)}. Log in with "
                                    "`hf auth login` or set HF_TOKEN to a token with write access; check HF_ENDPOINT.") from None
    return str(getattr(commit, "commit_url", None) or commit)
