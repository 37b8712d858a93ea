"""Where gag keeps its files: ``GAG_HOME`` (default: the per-user data dir)."""

import os
from pathlib import Path


def gag_home() -> Path:
    """Root of gag's data: installed domains, converted models, caches."""
    env = os.environ.get("GAG_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "gag"


def domains_dir() -> Path:
    return gag_home() / "domains"


def models_dir() -> Path:
    return gag_home() / "models"


def cache_dir() -> Path:
    return gag_home() / "cache"
