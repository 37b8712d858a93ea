"""Where a domain module comes from: a folder, a ``.whl``/``.tar.gz`` file, a PyPI requirement, or a Hub repo."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

HUB_PREFIX = "hf:"
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
REVISION = re.compile(r"^[\w][\w./-]{0,254}$")
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*((?:===?|>=|<=|~=|!=|<|>)\s*[A-Za-z0-9.*+!_-]+)?$")


@dataclass(frozen=True)
class Source:
    kind: str  # "folder" | "archive" | "pypi" | "hub"
    value: str  # folder or file path, requirement, or repo id
    revision: str | None = None  # hub only

    @property
    def is_package(self) -> bool:
        """A pip package (wheel/sdist file or PyPI requirement), installed into the running environment."""
        return self.kind in ("archive", "pypi")

    def __str__(self) -> str:
        if self.kind == "hub":
            return f"{HUB_PREFIX}{self.value}" + (f"@{self.revision}" if self.revision else "")
        return self.value


def parse_source(text: str) -> Source:
    """Tell a folder, a wheel/sdist, a PyPI requirement and a Hub repo apart; refuse anything else."""
    text = text.strip()
    if text.startswith(HUB_PREFIX):
        repo, at, revision = text[len(HUB_PREFIX):].partition("@")
        if not REPO_ID.match(repo) or (at and not REVISION.match(revision)):
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
