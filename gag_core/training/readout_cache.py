"""Readout cache: expert readouts of the training questions as safetensors shards plus an index.

A shard is written to a temporary name and renamed, so a killed run never leaves a half-written shard
that a later run would read; a rerun skips shards that are complete and match their questions.
``num_shards``/``shard_rank`` split the shards across workers (worker r builds shards r, r+n, ...).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import TrainingError


def _digest(items: list[str]) -> str:
    h = hashlib.sha256()
    for q in items:
        h.update(q.encode("utf-8") + b"\0")
    return h.hexdigest()


def _shard_path(cache_dir: Path, i: int) -> Path:
    return cache_dir / f"shard-{i:05d}.safetensors"


def prepare_index(cache_dir: Path, questions: list[str], key: dict, shard_size: int) -> dict:
    """Write (or check) the index; a cache made for other questions or settings is cleared."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    index = {"questions": _digest(questions), "key": key, "shard_size": shard_size,
             "num_shards": (len(questions) + shard_size - 1) // shard_size, "count": len(questions)}
    path = cache_dir / "index.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = None
        if old == index:
            return index
        for p in cache_dir.glob("shard-*.safetensors"):
            p.unlink()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(index, sort_keys=True, indent=1))
    os.replace(tmp, path)
    return index


def shard_done(cache_dir: Path, i: int, questions: list[str]) -> bool:
    path = _shard_path(cache_dir, i)
    if not path.exists():
        return False
    try:
        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get("questions") == _digest(questions)
    except Exception:  # unreadable: treat as missing and rebuild it
        return False


def build_cache(cache_dir: Path, questions: list[str], read_fn, *, key: dict, shard_size: int = 64,
                batch_size: int = 16, num_shards: int = 1, shard_rank: int = 0, progress=None) -> int:
    """Compute missing shards owned by this worker. ``read_fn(batch) -> Tensor[B, ...]``. Returns shards built."""
    if not 0 <= shard_rank < num_shards:
        raise TrainingError(f"--shard-rank must be in 0..{num_shards - 1}; got {shard_rank}.")
    index = prepare_index(cache_dir, questions, key, shard_size)
    built = 0
    mine = [i for i in range(index["num_shards"]) if i % num_shards == shard_rank]
    for n, i in enumerate(mine):
        chunk = questions[i * shard_size:(i + 1) * shard_size]
        if not shard_done(cache_dir, i, chunk):
            parts = [read_fn(chunk[s:s + batch_size]).float().cpu() for s in range(0, len(chunk), batch_size)]
            tmp = _shard_path(cache_dir, i).with_suffix(".tmp")
            save_file({"memory": torch.cat(parts).contiguous()}, str(tmp), metadata={"questions": _digest(chunk)})
            os.replace(tmp, _shard_path(cache_dir, i))
            built += 1
        if progress:
            progress("readout-cache", n + 1, len(mine), {})
    return built


def load_cache(cache_dir: Path, questions: list[str]) -> torch.Tensor:
    """All readouts in question order; refuses an incomplete cache with the missing shard numbers."""
    index = json.loads((cache_dir / "index.json").read_text())
    if index["questions"] != _digest(questions):
        raise TrainingError(f"The readout cache in {cache_dir} was built for other questions; rebuild it.")
    size = index["shard_size"]
    missing = [i for i in range(index["num_shards"])
               if not shard_done(cache_dir, i, questions[i * size:(i + 1) * size])]
    if missing:
        raise TrainingError(f"The readout cache in {cache_dir} lacks shards {missing}; run the readout step for "
                            "every --shard-rank (or without --num-shards) first.")
    out = []
    for i in range(index["num_shards"]):
        with safe_open(str(_shard_path(cache_dir, i)), "pt") as f:
            out.append(f.get_tensor("memory"))
    return torch.cat(out)
