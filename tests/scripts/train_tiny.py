"""Train a tiny domain in a subprocess; optionally SIGKILL itself at a chosen point (resume tests).

usage: train_tiny.py BASE EXPERT DATA_DIR OUT [KILL_AT]
KILL_AT: stage1 | readout | stage2 | augment — the process kills itself with SIGKILL right after the first
checkpoint / shard of that stage (augment: the first batch of generated rows) is written. Every prompt a
generator-based augmenter generates for is printed as a GENERATED line.
"""

import json
import os
import signal
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
base, expert, data, out = sys.argv[1:5]
kill_at = sys.argv[5] if len(sys.argv) > 5 else ""

from gag_core.training import checkpoint, readout_cache  # noqa: E402
from gag_core.training.config import load_config  # noqa: E402
from gag_core.training.train_domain import TrainInputs, train_domain  # noqa: E402


def die():
    os.kill(os.getpid(), signal.SIGKILL)


if kill_at in ("stage1", "stage2"):
    original = checkpoint.save_checkpoint

    def save_then_die(folder, **kwargs):
        original(folder, **kwargs)
        if Path(folder).name.startswith(kill_at):
            die()

    checkpoint.save_checkpoint = save_then_die
    import gag_core.training.loop as loop

    loop.save_checkpoint = save_then_die
from gag_core.training import generated  # noqa: E402

original_complete = generated.GeneratorAugmenter.complete


def counted_complete(self, generator, prompts, *args, **kwargs):
    for p in prompts:
        print("GENERATED", json.dumps(p), flush=True)
    return original_complete(self, generator, prompts, *args, **kwargs)


generated.GeneratorAugmenter.complete = counted_complete
if kill_at == "augment":
    original_append = generated.append_objects

    def append_then_die(path, rows):
        original_append(path, rows)
        die()

    generated.append_objects = append_then_die
if kill_at == "readout":
    original_replace = readout_cache.os.replace

    class _Os:
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def replace(src, dst):
            original_replace(src, dst)
            if str(dst).endswith(".safetensors"):
                die()

    readout_cache.os = _Os()

cfg = load_config(Path(data) / "config.json", "embedded", {"base": base, "expert": expert})
d = Path(data)
train_domain(TrainInputs("tinydom", d / "train.jsonl", d / "corpus.jsonl", d / "dev.jsonl"), cfg, Path(out))
print("TRAINED", out)
