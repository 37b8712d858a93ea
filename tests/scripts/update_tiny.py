"""Run `gag update-domain ARGS...` in a subprocess; with KILL=1 it SIGKILLs itself right after the first Stage I
checkpoint is written (resume and atomicity tests).

usage: update_tiny.py KILL ARGS...
"""

import os
import signal
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
from gag_core.training import checkpoint, loop  # noqa: E402

if sys.argv[1] == "1":
    original = checkpoint.save_checkpoint

    def save_then_die(folder, **kwargs):
        original(folder, **kwargs)
        if Path(folder).name.startswith("stage1"):
            os.kill(os.getpid(), signal.SIGKILL)

    loop.save_checkpoint = save_then_die

from gag_cli.main import app  # noqa: E402

app(["update-domain", *sys.argv[2:]])
