"""Checkpoints without pickle: trainable weights and AdamW state in safetensors, counters in JSON.

Every write goes to a temporary name and is renamed into place, so a kill never leaves a half-written
checkpoint that a resume would read.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import TrainingError


def save_checkpoint(folder: Path, *, weights: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                    state: dict, scheduler=None) -> None:
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(tmp / "weights.safetensors"))
    opt = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, pstate in opt["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value) and value.dim() > 0:
                tensors[f"{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = float(value)
    save_file(tensors or {"_empty": torch.zeros(1)}, str(tmp / "optimizer.safetensors"))
    meta = {"state": state, "optimizer_scalars": scalars, "param_groups": opt["param_groups"],
            "scheduler": scheduler.state_dict() if scheduler is not None else None}
    (tmp / "state.json").write_text(json.dumps(meta, default=float))
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(folder: Path) -> Path | None:
    """The complete checkpoint, recovering from a kill between the two renames of ``save_checkpoint``."""
    folder = Path(folder)
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        if (candidate / "state.json").is_file():
            return candidate
    return None


def load_checkpoint(folder: Path, optimizer: torch.optim.Optimizer, scheduler=None) -> tuple[dict, dict]:
    """Restore optimizer (+ scheduler) state; return (weights, state)."""
    path = find_checkpoint(folder)
    if path is None:
        raise TrainingError(f"No checkpoint in {folder}.")
    meta = json.loads((path / "state.json").read_text())
    weights = load_file(str(path / "weights.safetensors"))
    tensors = load_file(str(path / "optimizer.safetensors"))
    state: dict = {}
    for key, value in tensors.items():
        if key == "_empty":
            continue
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for key, value in meta["optimizer_scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = torch.tensor(value)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    if scheduler is not None and meta.get("scheduler"):
        scheduler.load_state_dict(meta["scheduler"])
    return weights, meta["state"]
