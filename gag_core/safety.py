"""Checks applied to every file of a domain module before anything is read into memory.

Only safetensors, JSON, JSONL and Markdown are accepted; paths must stay inside the folder; symlinks,
device files and oversized files are refused; safetensors headers are parsed and checked against the
file size before any tensor is read; manifests and adapter configs may only hold fields gag understands,
so nothing in a module can name code to import or switch on remote code.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .errors import ConfigError, ModuleFormatError

ALLOWED_SUFFIXES = (".safetensors", ".json", ".jsonl", ".md")
FORBIDDEN_HINT = "Only .safetensors, .json, .jsonl and .md files are accepted (never pickle: .bin/.pt/.pth/.pkl)."
DEFAULT_MAX_FILE_BYTES = 2 * 1024**3
DEFAULT_MAX_MODULE_BYTES = 4 * 1024**3
MAX_FILES = 256  # a module has seven files; thousands of tiny ones is an attack on the installer, not a module
MAX_HEADER_BYTES = 100 * 1024**2
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}


def parse_size(text: str | int, what: str = "size") -> int:
    """``"500MB"``, ``"2GiB"``, ``"1048576"`` -> bytes."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(str(text))
    unit = (m.group(2) or "").lower() if m else None
    if not m or unit not in _UNITS:
        raise ConfigError(f"Invalid {what} {text!r}: give bytes or a number with a unit, e.g. 500MB or 2GiB.")
    return int(float(m.group(1)) * _UNITS[unit])


def _env_bytes(var: str, default: int) -> int:
    value = os.environ.get(var)
    return default if value in (None, "") else parse_size(value, var)


@dataclass(frozen=True)
class SizeLimits:
    """Per-file and whole-module byte limits. Defaults are read from the environment when constructed
    (``GAG_MAX_FILE_BYTES``, ``GAG_MAX_MODULE_BYTES``), not when gag is imported."""

    per_file: int = field(default_factory=lambda: _env_bytes("GAG_MAX_FILE_BYTES", DEFAULT_MAX_FILE_BYTES))
    total: int = field(default_factory=lambda: _env_bytes("GAG_MAX_MODULE_BYTES", DEFAULT_MAX_MODULE_BYTES))
    files: int = MAX_FILES

    @classmethod
    def with_max_size(cls, max_size: str | int | None) -> "SizeLimits":
        """The environment's limits, with ``--max-size`` capping the whole module (and so every file)."""
        limits = cls()
        if max_size is None:
            return limits
        total = parse_size(max_size, "--max-size")
        return cls(per_file=min(limits.per_file, total), total=total, files=limits.files)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_relative_path(rel: str) -> PurePosixPath:
    """A manifest path must be relative, canonical, inside the folder, and of an allowed type."""
    if not isinstance(rel, str) or not rel:
        raise ModuleFormatError(f"Unsafe path {rel!r} in the module: paths must be non-empty strings.")
    p = PurePosixPath(rel)
    if (p.is_absolute() or rel.startswith(("/", "\\")) or "\\" in rel or ":" in p.parts[0] or ".." in p.parts
            or p.as_posix() != rel or any(ord(c) < 32 for c in rel)):
        raise ModuleFormatError(f"Unsafe path {rel!r} in the module: paths must be relative, use '/', and stay "
                                "inside the module folder (no '..', no absolute or drive paths).")
    if p.suffix not in ALLOWED_SUFFIXES:
        raise ModuleFormatError(f"File {rel!r} has a disallowed type. {FORBIDDEN_HINT}")
    return p


def check_file_hashes(files: dict) -> None:
    """The manifest's ``files`` map: safe relative paths to lowercase sha256 hex digests."""
    if not isinstance(files, dict):
        raise ModuleFormatError("The manifest's 'files' must map relative paths to sha256 digests.")
    for rel, digest in files.items():
        check_relative_path(rel)
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise ModuleFormatError(f"The manifest lists {rel!r} with {digest!r}, which is not a sha256 hex digest.")


def scan_folder(root: Path, limits: SizeLimits | None = None) -> dict[str, Path]:
    """Every file under ``root`` as {relative posix path: path}; refuses anything unsafe."""
    limits = limits or SizeLimits()
    root = Path(root)
    if root.is_symlink() or not root.is_dir():
        raise ModuleFormatError(f"{root} is not a folder (symlinks are refused); pass a domain module folder.")
    files: dict[str, Path] = {}
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames) + sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                raise ModuleFormatError(f"{rel!r} is a symbolic link; modules may not contain links. "
                                        "Replace it with the file itself.")
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                raise ModuleFormatError(f"{rel!r} is not a regular file (device, socket or fifo); remove it.")
            check_relative_path(rel)
            if st.st_size > limits.per_file:
                raise ModuleFormatError(f"{rel!r} is {st.st_size} bytes; the per-file limit is {limits.per_file} "
                                        "(raise GAG_MAX_FILE_BYTES or --max-size if you trust it).")
            total += st.st_size
            files[rel] = path
            if len(files) > limits.files:
                raise ModuleFormatError(f"The module holds more than {limits.files} files; a domain module has seven.")
    if total > limits.total:
        raise ModuleFormatError(f"The module holds {total} bytes; the limit is {limits.total} "
                                "(raise GAG_MAX_MODULE_BYTES or --max-size if you trust it).")
    return files


def read_safetensors_header(path: Path) -> dict[str, dict]:
    """Parse a safetensors header and check it against the file size; returns {name: {dtype, shape}}.

    Checks what the safetensors format guarantees before any tensor byte is touched: a bounded JSON header,
    known dtypes, non-negative integer shapes, and data offsets that tile the data section exactly (no
    gaps, no overlaps, nothing past the end of the file), so a header cannot promise more bytes than exist.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ModuleFormatError(f"{path.name} is not a safetensors file (too short).")
        (n,) = struct.unpack("<Q", head)
        if n <= 1 or n > min(size - 8, MAX_HEADER_BYTES):
            raise ModuleFormatError(f"{path.name} is not a valid safetensors file (header length {n}, file size {size}). "
                                    "It may be a renamed pickle; re-export it with safetensors.")
        raw = f.read(n)
    try:
        if not raw.lstrip().startswith(b"{"):
            raise ValueError
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ModuleFormatError(f"{path.name} has an unreadable safetensors header; it may be a renamed pickle.") from None
    if not isinstance(header, dict):
        raise ModuleFormatError(f"{path.name} has a malformed safetensors header.")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ModuleFormatError(f"{path.name}: __metadata__ must map strings to strings.")
    data_len = size - 8 - n
    out, spans = {}, []
    for name, info in header.items():
        if name != "__metadata__":
            out[name], span = _checked_entry(path, name, info, data_len)
            spans.append(span)
    position = 0
    for start, end in sorted(spans):
        if start != position:
            raise ModuleFormatError(f"{path.name}: tensor data offsets overlap or leave gaps; the file is forged.")
        position = end
    if position != data_len:
        raise ModuleFormatError(f"{path.name}: {data_len - position} trailing bytes after the last tensor; "
                                "the file is forged or corrupt.")
    return out


def _checked_entry(path: Path, name: str, info, data_len: int) -> tuple[dict, tuple[int, int]]:
    """One tensor's header entry checked (dtype known, shape non-negative, its bytes inside the data section and
    as many as its shape needs): ``({dtype, shape}, (start, end))``."""
    try:
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        start, end = offsets
        if not all(type(x) is int for x in (start, end, *shape)):
            raise TypeError
    except (KeyError, TypeError, ValueError):
        raise ModuleFormatError(f"{path.name}: tensor {name!r} has a malformed header entry.") from None
    if dtype not in _DTYPE_BYTES:
        raise ModuleFormatError(f"{path.name}: tensor {name!r} has unknown dtype {dtype!r}.")
    if any(d < 0 for d in shape):
        raise ModuleFormatError(f"{path.name}: tensor {name!r} has a negative dimension in {shape}.")
    count = 1
    for d in shape:
        count *= d
    nbytes = count * _DTYPE_BYTES[dtype]
    if not (0 <= start <= end <= data_len) or end - start != nbytes:
        raise ModuleFormatError(
            f"{path.name}: tensor {name!r} declares shape {shape} ({nbytes} bytes) but the file holds "
            f"{data_len} data bytes; the file is truncated or forged.")
    return {"dtype": dtype, "shape": list(shape)}, (start, end)


# --- manifest and adapter config: only fields gag understands ------------------------------------

# Sections of the manifest that gag acts on: every key must be known. ``training`` is provenance shown in
# the model card and never acted on, but it still may not carry keys that look like code or loader switches.
MANIFEST_SECTIONS = {
    "base": {"id", "hidden_size", "fingerprint"},
    "expert": {"id", "hidden_size"},
    "router": {"encoder", "num_prototypes", "dim"},
    "prompt": {"instruction", "template"},
}
FINGERPRINT_KEYS = {"vocab_size", "hidden_size", "sample"}
CODE_LIKE_KEYS = {"trust_remote_code", "auto_map", "auto_mapping", "_target_", "custom_pipelines",
                  "code_revision", "module", "module_path", "entry_point", "class_path", "import", "loader"}


def _code_like_keys(value, where: str) -> list[str]:
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or k in CODE_LIKE_KEYS or (k.startswith("__") and k.endswith("__")):
                found.append(f"{where}.{k}")
            found += _code_like_keys(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _code_like_keys(v, f"{where}[{i}]")
    return found


def check_manifest_fields(data: dict, manifest_name: str = "gag-domain.json") -> None:
    """Refuse manifest sections with fields gag does not know, and anything that looks like code or a loader switch."""
    for section, allowed in MANIFEST_SECTIONS.items():
        value = data.get(section)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ModuleFormatError(f"{manifest_name}: '{section}' must be a JSON object.")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ModuleFormatError(
                f"{manifest_name}: '{section}' has unknown fields {unknown} (allowed: {sorted(allowed)}); gag never "
                "executes code or enables remote code from a module. Re-export the module with gag.")
    fingerprint = (data.get("base") or {}).get("fingerprint")
    if fingerprint is not None and (not isinstance(fingerprint, dict) or set(fingerprint) - FINGERPRINT_KEYS):
        raise ModuleFormatError(f"{manifest_name}: base.fingerprint must hold only {sorted(FINGERPRINT_KEYS)}.")
    suspicious = _code_like_keys(data, "manifest")
    if suspicious:
        raise ModuleFormatError(
            f"{manifest_name} has executable-looking fields {suspicious[:5]}; gag never imports code, follows module "
            "paths or enables trust_remote_code from a module. Remove them and re-export the module.")


# peft LoraConfig fields that change more than the adapter's own weights when a LoRA is loaded: they replace
# whole modules, restructure or re-initialise the shared expert backbone, or import a module by name.
_ADAPTER_MUST_BE_EMPTY = ("modules_to_save", "layer_replication", "trainable_token_indices", "megatron_config",
                          "loftq_config", "eva_config", "corda_config", "lora_ga_config", "arrow_config")
_ADAPTER_INIT_OK = (True, False, "gaussian")


def check_adapter_config(cfg: dict, rel: str = "expert/adapter_config.json") -> None:
    """A plain LoRA for a causal LM: nothing that alters the shared backbone beyond the adapter or names code."""
    if cfg.get("peft_type") != "LORA":
        raise ModuleFormatError(f"{rel} must describe a LoRA adapter; found peft_type {cfg.get('peft_type')!r}.")
    if cfg.get("task_type") not in (None, "CAUSAL_LM"):
        raise ModuleFormatError(f"{rel}: task_type must be CAUSAL_LM or null; found {cfg.get('task_type')!r}.")
    for key in _ADAPTER_MUST_BE_EMPTY:
        if cfg.get(key):
            raise ModuleFormatError(f"{rel} sets {key}={cfg[key]!r}, which would change the shared expert backbone "
                                    "beyond the LoRA weights; gag accepts plain LoRA adapters only.")
    if cfg.get("init_lora_weights", True) not in _ADAPTER_INIT_OK:
        raise ModuleFormatError(f"{rel}: init_lora_weights={cfg['init_lora_weights']!r} re-initialises base weights on "
                                f"load; use one of {list(_ADAPTER_INIT_OK)}.")
    mapping = cfg.get("auto_mapping")
    if mapping is not None:
        parent = mapping.get("parent_library") if isinstance(mapping, dict) else mapping
        if not isinstance(mapping, dict) or (parent is not None and not str(parent).startswith("transformers.")):
            raise ModuleFormatError(f"{rel}: auto_mapping names {parent!r}; only transformers model classes are allowed.")
    if "megatron_core" in cfg and cfg["megatron_core"] not in (None, "megatron.core"):
        raise ModuleFormatError(f"{rel}: megatron_core names module {cfg['megatron_core']!r}; gag refuses module paths.")
    bad = [k for k in ("trust_remote_code", "auto_map", "_target_") if k in cfg]
    if bad:
        raise ModuleFormatError(f"{rel} has executable-looking fields {bad}; remove them.")
