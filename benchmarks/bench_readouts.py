"""Compare readout kinds and projector kinds on the demo domain (embedded profile).

One Stage I expert is trained (or reused) and shared; each configuration then builds its own readout
cache and aligns its own projector. Reports held-out-phrasing accuracy (answer containment) overall
and per answer type, accuracy on the entities Stage II never saw, alignment time, and single-query latency. Prints a table and writes JSON.

    python benchmarks/bench_readouts.py [--epochs 8] [--limit 160] [--configs anchored-layer0-k12,...]
                                        [--expert-adapter WORK/expert]   # reuse a trained Stage I
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from gag_core.evaluation.harness import load_rows
from gag_core.module import DomainModule
from gag_core.paths import gag_home
from gag_core.readouts import ReadoutConfig
from gag_core.training.config import load_config
from gag_core.training.train_domain import TrainInputs, train_domain

DATA = Path(__file__).resolve().parent.parent / "modules" / "gag-domain-minerals" / "gag_domain_minerals" / "data"
# name -> (readout overrides, projector, Stage II overrides); the rest is the embedded profile's defaults
# round 3's Stage II for projectors learned from scratch
PREVIOUS = {"standardize": True, "input_noise": 0.1, "epochs": 12}
CONFIGS = {
    "anchored-layer0-k12": (dict(kind="multi_slot", layers=[0], slots=12, layer_norm=False, reencode=True),
                            "anchored_residual", {}),
    "multi_slot-k8/mlp2x": (dict(kind="multi_slot", layers=[-1, -2, -4, -6], slots=8, reencode=True),
                            "mlp2x_gelu", PREVIOUS),
    "multi_slot-layer0-k8/mlp2x": (dict(kind="multi_slot", layers=[0], slots=8, reencode=True), "mlp2x_gelu",
                                   PREVIOUS),
    "multi_slot-last-layer/mlp2x": (dict(kind="multi_slot", layers=[-1], slots=4), "mlp2x_gelu", PREVIOUS),
    "multi_slot/mlp2x": (dict(kind="multi_slot", layers=[-1, -2, -4, -6], slots=4), "mlp2x_gelu", PREVIOUS),
    "multi_slot/gated": (dict(kind="multi_slot", layers=[-1, -2, -4, -6], slots=4), "gated_residual", PREVIOUS),
    "final_token/mlp2x": (dict(kind="final_token", layers=[-4], slots=1), "mlp2x_gelu", PREVIOUS),
    "prefill-last/mlp2x": (dict(kind="prefill", layers=[-1], slots=1, pooling="last"), "mlp2x_gelu", PREVIOUS),
    "prefill-4slot/mlp2x": (dict(kind="prefill", layers=[-1, -2, -4, -6], slots=4), "mlp2x_gelu", PREVIOUS),
}


def evaluate(module_dir: Path, test: list[dict], unaligned: list[dict]) -> dict:
    from gag_core.evaluation.metrics import contains
    from gag_core.models import load_causal_lm, load_tokenizer
    from gag_core.pipeline import GagPipeline

    base = load_causal_lm("embedded")
    pipe = GagPipeline(base, load_tokenizer("embedded"), max_new_tokens=32,
                       expert_loader=lambda i: (load_causal_lm(i), load_tokenizer(i)))
    module = DomainModule.open(module_dir)
    pipe.add_domain(module)
    qs = [r["question"] for r in test + unaligned]
    answers = [a.answer for s in range(0, len(qs), 32) for a in pipe.answer_batch(qs[s:s + 32], module.name)]
    hits = [bool(contains(a, r["value"])) for a, r in zip(answers, test + unaligned)]
    hits, unaligned_hits = hits[:len(test)], hits[len(test):]
    by_type: dict[str, list[bool]] = {}
    for h, r in zip(hits, test):
        by_type.setdefault(r["attribute"], []).append(h)
    latency = []
    for q in qs[:8]:
        start = time.perf_counter()
        pipe.answer(q, module.name)
        latency.append(time.perf_counter() - start)
    return {"accuracy": sum(hits) / len(hits),
            "unaligned_accuracy": sum(unaligned_hits) / len(unaligned_hits) if unaligned_hits else None,
            "by_type": {k: sum(v) / len(v) for k, v in sorted(by_type.items())},
            "median_latency_s": statistics.median(latency)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="Stage II epochs (default: the profile's)")
    parser.add_argument("--limit", type=int, default=0, help="test questions (0 = all 160)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names of " + ", ".join(CONFIGS))
    parser.add_argument("--expert-adapter", type=Path, default=None,
                        help="a trained Stage I adapter folder to share (default: train one with the first config)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_readouts.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    test = load_rows(DATA / "test.jsonl", args.limit)
    unaligned = load_rows(DATA / "unaligned_test.jsonl", 0)  # entities Stage II never sees (Stage I only)
    inputs = TrainInputs("minerals", DATA / "train.jsonl", DATA / "corpus.jsonl", DATA / "dev.jsonl",
                         [DATA / "unaligned_train.jsonl"])
    root = gag_home() / "bench-readouts"
    out_path = Path(args.out)
    done = json.loads(out_path.read_text())["results"] if out_path.exists() else []
    results = [r for r in done if r["config"] in args.configs.split(",")]  # finished earlier: kept, not rerun
    adapter = args.expert_adapter
    for name in args.configs.split(","):
        if any(r["config"] == name for r in results):
            continue
        readout, projector, stage2 = CONFIGS[name]
        cfg = load_config(None, "embedded")
        cfg.readout = ReadoutConfig(**{"max_new_tokens": cfg.readout.max_new_tokens, "pooling": cfg.readout.pooling,
                                       **readout})
        cfg.stage2.projector = projector
        for key, value in stage2.items():
            setattr(cfg.stage2, key, value)
        if args.epochs:
            cfg.stage2.epochs = args.epochs
        work = root / "work" / name.replace("/", "_")
        start = time.time()
        out = train_domain(inputs, cfg, root / "modules" / name.replace("/", "_"), work_dir=work,
                           expert_adapter=adapter)
        elapsed = time.time() - start
        adapter = adapter or work / "expert"
        log = [json.loads(x) for x in (work / "train-log.jsonl").read_text().splitlines()]
        epochs_log = [r for r in log if r.get("stage") == "stage2-align" and r.get("event") == "epoch"]
        result = {"config": name, "readout": readout, "projector": projector, "train_s": round(elapsed, 1),
                  "align_s": epochs_log[-1]["elapsed_s"] if epochs_log else None, **evaluate(out, test, unaligned)}
        results.append(result)
        print(json.dumps(result), flush=True)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps({"test_questions": len(test), "results": results}, indent=1))
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"readout × projector on the demo domain ({len(test)} held-out phrasings)")
    types = list(results[0]["by_type"]) if results else []
    for col in ["config", "held-out", *types, "unaligned entities", "train s", "query latency"]:
        table.add_column(col)
    for r in results:
        table.add_row(r["config"], f"{100 * r['accuracy']:.1f} %", *[f"{100 * r['by_type'][t]:.0f}" for t in types],
                      "–" if r.get("unaligned_accuracy") is None else f"{100 * r['unaligned_accuracy']:.0f} %",
                      f"{r['train_s']:.0f}", f"{r['median_latency_s']:.2f} s")
    Console().print(table)


if __name__ == "__main__":
    main()
