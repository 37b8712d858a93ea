"""Pulling a module from the Hugging Face Hub: ``snapshot_download`` limited to safetensors/JSON/JSONL/Markdown.

The Hub's environment (``HF_HOME``, ``HF_HUB_CACHE``, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``) is
read at call time. The cached snapshot is copied into a plain folder, which the installer then installs like
any other folder.
"""

from __future__ import annotations

import inspect
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import DistributionError, GagError, ModuleFormatError
from ..safety import SizeLimits, check_relative_path
from .sources import HUB_PREFIX, Source

HUB_PATTERNS = ["*.safetensors", "*.json", "*.jsonl", "*.md"]


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


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, without a final full stop (for one-line errors)."""
    return (str(exc).strip().splitlines() or [""])[0].rstrip(".")


def _hub_error_message(exc: Exception, repo_id: str, revision: str | None, s: HubSettings) -> str:
    chain, cause = [], exc
    while cause is not None and len(chain) < 6:  # the Hub wraps the real reason (e.g. DryRunError from RepoNotFound)
        chain.append(type(cause).__name__)
        cause = cause.__cause__ or cause.__context__
    kind = next((k for k in chain if k in ("RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError")), chain[0])
    where = f"{HUB_PREFIX}{repo_id}" + (f"@{revision}" if revision else "")
    if kind in ("RepositoryNotFoundError", "GatedRepoError"):
        return (f"{where}: the repository does not exist, is private, or is gated. If you have access, log in with "
                "`hf auth login` or set HF_TOKEN.")
    if kind == "RevisionNotFoundError":
        return f"{where}: revision {revision!r} does not exist; give a branch, tag or commit of the repo."
    if s.offline or kind in ("LocalEntryNotFoundError", "IncompleteSnapshotError", "OfflineModeIsEnabled"):
        return (f"{where} is not (completely) in the Hugging Face cache ({s.cache_dir or 'the default HF_HOME'}) and "
                f"offline mode is {'on (HF_HUB_OFFLINE)' if s.offline else 'forced by a failed connection'}. "
                f"Unset HF_HUB_OFFLINE and retry with network access. ({kind}: {first_line(exc)})")
    return f"Could not download {where}: {kind}: {first_line(exc)}. Check HF_ENDPOINT and your network."


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


@dataclass
class HubModule:
    folder: Path  # a plain folder of the module's files (not yet verified)
    origin: str  # hf:ORG/NAME@COMMIT
    record: dict  # {"repo", "revision", "commit"} for the install record


def pull_hub(source: Source, dest: Path, *, limits: SizeLimits | None = None, token: str | None = None) -> HubModule:
    """Pull ``hf:ORG/NAME[@REVISION]`` (or find it in the cache) and copy its files into ``dest``."""
    snapshot = download_hub(source.value, source.revision, limits=limits, token=token)
    commit = snapshot.name
    folder = materialize_snapshot(snapshot, Path(dest), limits)
    return HubModule(folder, f"{HUB_PREFIX}{source.value}@{commit}",
                     {"repo": source.value, "revision": source.revision or "main", "commit": commit})
