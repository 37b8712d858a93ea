"""Checks applied to every file of a domain module before anything is read into memory.

Only safetensors, JSON, JSONL and Markdown are accepted; paths must stay inside the folder; symlinks,
device files and oversized files are refused; safetensors headers are parsed and checked against the
file size before any tensor is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import ModuleFormatError

ALLOWED_SUFFIXES = (".safetensors", ".json", ".jsonl", ".md")
FORBIDDEN_HINT = "Only .safetensors, .json, .jsonl and .md files are accepted (never pickle: .bin/.pt/.pth/.pkl)."
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}


@dataclass(frozen=True)
class SizeLimits:
    per_file: int = int(os.environ.get("GAG_MAX_FILE_BYTES", 2 * 1024**3))
    total: int = int(os.environ.get("GAG_MAX_MODULE_BYTES", 4 * 1024**3))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_relative_path(rel: str) -> PurePosixPath:
    """A manifest path must be relative, inside the folder, and of an allowed type."""
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or rel.startswith(("/", "\\")) or ":" in p.parts[0] or ".." in p.parts or "\\" in rel:
        raise ModuleFormatError(f"Unsafe path {rel!r} in the module: paths must be relative and stay inside the folder.")
    if p.suffix not in ALLOWED_SUFFIXES:
        raise ModuleFormatError(f"File {rel!r} has a disallowed type. {FORBIDDEN_HINT}")
    return p


def scan_folder(root: Path, limits: SizeLimits = SizeLimits()) -> dict[str, Path]:
    """Every file under ``root`` as {relative posix path: path}; refuses anything unsafe."""
    if root.is_symlink() or not root.is_dir():
        raise ModuleFormatError(f"{root} is not a folder (symlinks are refused); pass a domain module folder.")
    files: dict[str, Path] = {}
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                raise ModuleFormatError(f"{rel!r} is a symbolic link; modules may not contain links. Replace it with the file itself.")
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise ModuleFormatError(f"{rel!r} is not a regular file (device, socket or fifo); remove it.")
            check_relative_path(rel)
            size = os.lstat(path).st_size
            if size > limits.per_file:
                raise ModuleFormatError(f"{rel!r} is {size} bytes; the per-file limit is {limits.per_file} "
                                        "(raise GAG_MAX_FILE_BYTES if you trust it).")
            total += size
            files[rel] = path
    if total > limits.total:
        raise ModuleFormatError(f"The module holds {total} bytes; the limit is {limits.total} (GAG_MAX_MODULE_BYTES).")
    return files


def read_safetensors_header(path: Path) -> dict[str, dict]:
    """Parse a safetensors header and check it against the file size; returns {name: {dtype, shape}}."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ModuleFormatError(f"{path.name} is not a safetensors file (too short).")
        (n,) = struct.unpack("<Q", head)
        if n <= 1 or n > min(size - 8, 100 * 1024**2):
            raise ModuleFormatError(f"{path.name} is not a valid safetensors file (header length {n}, file size {size}). "
                                    "It may be a renamed pickle; re-export it with safetensors.")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModuleFormatError(f"{path.name} has an unreadable safetensors header; it may be a renamed pickle.") from None
    if not isinstance(header, dict):
        raise ModuleFormatError(f"{path.name} has a malformed safetensors header.")
    data_len = size - 8 - n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = info["dtype"], info["shape"], info["data_offsets"]
            width = _DTYPE_BYTES[dtype]
            count = 1
            for d in shape:
                count *= int(d)
        except (KeyError, TypeError, ValueError):
            raise ModuleFormatError(f"{path.name}: tensor {name!r} has a malformed header entry.") from None
        if not (0 <= start <= end <= data_len) or end - start != count * width:
            raise ModuleFormatError(
                f"{path.name}: tensor {name!r} declares shape {shape} ({count * width} bytes) but the file holds "
                f"{data_len} data bytes; the file is truncated or forged.")
        out[name] = {"dtype": dtype, "shape": [int(d) for d in shape]}
    return out
