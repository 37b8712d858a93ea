"""One training loop for both stages: accelerate, cosine schedule, checkpoints, resume, non-finite guard;
and what both stages' losses share: the answer NLL and the seeded epoch batches.

Batches are built deterministically per epoch (seeded shuffle), so a resumed run skips exactly the steps
already done. Under ``accelerate launch`` each process takes every world_size-th batch and DDP averages
the gradients.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import TrainingError
from .checkpoint import find_checkpoint, load_checkpoint, save_checkpoint


IGNORE = -100  # the label of a position that carries no loss (prompt, template, padding)


def answer_nll(lm_head, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled positions only: hidden [B, T, H] at position t predicts
    labels [B, T] at t + 1, and the vocabulary projection (``lm_head``) runs just where a label is."""
    target = labels[:, 1:]
    keep = target != IGNORE
    logits = lm_head(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), target[keep])


def epoch_batches(examples: list, batch_size: int, seed: int, stride: int = 1000) -> Callable[[int], list]:
    """``epoch -> batches``: the examples shuffled by ``Random(seed * stride + epoch)`` and cut into batches,
    the same on every call, so a resumed run rebuilds exactly the batches it had."""

    def make(epoch: int) -> list:
        order = list(range(len(examples)))
        random.Random(seed * stride + epoch).shuffle(order)
        return [[examples[i] for i in order[s:s + batch_size]] for s in range(0, len(order), batch_size)]

    return make


@dataclass
class LoopSpec:
    name: str
    epochs: int
    lr: float
    grad_clip: float = 1.0
    weight_decay: float = 0.0
    warmup_frac: float = 0.05
    checkpoint_every: int = 50


def cosine_schedule(optimizer, total: int, warmup: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def append_log(path: Path | None, record: dict) -> None:
    if path is None:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=float) + "\n")


def run_loop(spec: LoopSpec, *, accelerator, model: torch.nn.Module, batches: Callable[[int], list],
             loss_fn: Callable, ckpt_dir: Path, log_path: Path | None = None,
             on_epoch_end: Callable[[int], dict] | None = None,
             progress: Callable[[str, int, int, dict], None] | None = None) -> dict:
    """Train ``model``'s trainable parameters. ``loss_fn(model, batch) -> (loss, logs)``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TrainingError(f"{spec.name}: nothing to train (no parameter requires grad).")
    optimizer = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    world, rank = accelerator.num_processes, accelerator.process_index
    steps_per_epoch = max(1, math.ceil(len(batches(0)) / world))
    total = steps_per_epoch * spec.epochs
    scheduler = cosine_schedule(optimizer, total, int(total * spec.warmup_frac))
    start_epoch, start_step, global_step = _resume(spec, model, optimizer, scheduler, ckpt_dir, total, log_path)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    summary: dict = {}
    started = time.time()
    for epoch in range(start_epoch, spec.epochs):
        mine = batches(epoch)[rank::world][:steps_per_epoch]
        first = start_step if epoch == start_epoch else 0
        losses = []
        for step in range(first, len(mine)):
            loss, logs = loss_fn(model, mine[step])
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"{spec.name}: the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} "
                    f"(lr {scheduler.get_last_lr()[0]:.2e}; parts {logs}). Lower the learning rate or check the data "
                    f"for empty answers; the last good checkpoint is in {ckpt_dir}.")
            accelerator.backward(loss)
            if spec.grad_clip:
                accelerator.clip_grad_norm_(params, spec.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            global_step += 1
            losses.append(float(loss.detach()))
            if progress:
                progress(spec.name, global_step, total, {"loss": losses[-1], "epoch": epoch + 1})
            if accelerator.is_main_process:
                append_log(log_path, {"stage": spec.name, "epoch": epoch + 1, "step": global_step,
                                      "loss": losses[-1], **logs, "lr": scheduler.get_last_lr()[0]})
            if global_step % spec.checkpoint_every == 0 and step + 1 < len(mine):
                _checkpoint(accelerator, model, optimizer, scheduler, ckpt_dir,
                            {"epoch": epoch, "step": step + 1, "global_step": global_step, "total": total})
        _checkpoint(accelerator, model, optimizer, scheduler, ckpt_dir,
                    {"epoch": epoch + 1, "step": 0, "global_step": global_step, "total": total})
        summary = {"epoch": epoch + 1, "train_loss": sum(losses) / max(len(losses), 1)}
        if on_epoch_end is not None and accelerator.is_main_process:
            model.eval()
            summary.update(on_epoch_end(epoch + 1) or {})
            model.train()
        if accelerator.is_main_process:
            append_log(log_path, {"stage": spec.name, "event": "epoch", **summary,
                                  "elapsed_s": round(time.time() - started, 1)})
    model.eval()
    accelerator.wait_for_everyone()
    return summary


def _resume(spec: LoopSpec, model, optimizer, scheduler, ckpt_dir: Path, total: int, log_path: Path | None):
    """(epoch, step in it, global step) to start from: the checkpoint's, its weights and optimizer state
    restored, or zeros when there is none."""
    if find_checkpoint(ckpt_dir) is None:
        return 0, 0, 0
    weights, state = load_checkpoint(ckpt_dir, optimizer, scheduler)
    missing = set(trainable_state(model)) - set(weights)
    if missing or state.get("total") != total:
        raise TrainingError(f"{spec.name}: the checkpoint in {ckpt_dir} was made with other settings "
                            "(parameters or schedule differ); delete it or use the original settings.")
    model.load_state_dict(weights, strict=False)
    append_log(log_path, {"stage": spec.name, "event": "resumed", "global_step": state["global_step"]})
    return state["epoch"], state["step"], state["global_step"]


def _checkpoint(accelerator, model, optimizer, scheduler, ckpt_dir: Path, state: dict) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        save_checkpoint(ckpt_dir, weights=trainable_state(unwrapped), optimizer=optimizer, state=state,
                        scheduler=scheduler)
    accelerator.wait_for_everyone()
