"""Shared pieces of the benchmarks: the demo data, an untrained module, timing, RSS, tables and JSON results."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "modules" / "gag-domain-minerals" / "gag_domain_minerals" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
DEMO = "minerals"


def setup_threads(threads: int = 1) -> None:
    """Benchmarks share a small machine: one intra-op thread unless asked otherwise; quiet libraries."""
    from gag_cli.console import quiet_libraries

    torch.set_num_threads(threads)
    quiet_libraries()


def read_jsonl(path: Path, limit: int = 0) -> list[dict]:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:limit] if limit else rows


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def median_seconds(fn: Callable[[str], object], questions: Sequence[str]) -> float:
    """Median wall time of ``fn(question)`` over the questions, each answered alone."""
    times = []
    for q in questions:
        start = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build_untrained_module(out_dir: Path, name: str, base_model, base_id: str = "embedded",
                           expert_id: str = "embedded") -> Path:
    """A complete module with a fresh LoRA (B = 0) and a random projector, in the profile's default shapes.

    Latency, prompt size and memory do not depend on training, so this stands in for a trained domain. An expert
    that reads passages (the grounded default) ships the demo corpus's documents as its passages.
    """
    from gag_core.assemble import assemble_module
    from gag_core.grounding import Grounding
    from gag_core.module import PASSAGES
    from gag_core.models import hidden_size, load_causal_lm
    from gag_core.projectors import ProjectorBundle, ProjectorConfig
    from gag_core.training.config import load_config
    from gag_core.training.stage1 import add_lora

    cfg = load_config(None, "embedded")
    expert = add_lora(load_causal_lm(expert_id, frozen=False), cfg.stage1)
    torch.manual_seed(0)
    readout = cfg.readout
    projector = ProjectorBundle(ProjectorConfig(kind=cfg.stage2.projector, expert_hidden=hidden_size(expert),
                                                base_hidden=hidden_size(base_model), slots=readout.slots,
                                                layers=len(readout.layers)))
    prototypes = torch.nn.functional.normalize(torch.randn(8, hidden_size(expert)), dim=-1)
    texts = [row["text"] for row in read_jsonl(DATA / "corpus.jsonl")]
    passages = {PASSAGES: Grounding(texts, readout.context_passages).to_jsonl()} if readout.context_passages else None
    folder = assemble_module(Path(out_dir), name=name, base_id=base_id, base_model=base_model, expert_id=expert_id,
                             expert_model=expert, adapter_dir=None, readout=readout, projector=projector,
                             prototypes=prototypes, exemplars=["What colour is it?"], encoder="expert-mean",
                             description=f"untrained benchmark stand-in for {name}", data_files=passages)
    del expert
    return folder


def load_demo_gag(max_new_tokens: int):
    """(GAG, description): the installed ``minerals`` domain if there is one, else an untrained stand-in."""
    from gag_core.module import DomainModule
    from gag_plugins.api import GAG
    from gag_plugins.discovery import all_domains

    if DEMO in all_domains():
        return (GAG.from_installed([DEMO], strict=True, max_new_tokens=max_new_tokens),
                "installed 'minerals' domain (trained)")
    gag = GAG.load_base("embedded", max_new_tokens=max_new_tokens)
    with tempfile.TemporaryDirectory(prefix="gag-bench-") as tmp:  # everything is in memory once added
        gag.add_domain(DomainModule.open(build_untrained_module(Path(tmp) / DEMO, DEMO, gag.pipeline.base)))
    return gag, "untrained 'minerals' stand-in (embedded model, fresh LoRA, random projector)"


def print_table(rows: list[dict], columns: list[str], title: str) -> None:
    import sys

    from rich.console import Console

    from gag_cli.tables import render_rich_table

    Console(width=None if sys.stdout.isatty() else 160).print(render_rich_table(rows, columns, title))


def write_results(name: str, payload: dict, out: str | Path | None = None) -> Path:
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return path
