"""Multi-domain serving on the embedded profile: memory with 5 domains vs 1, and what routing adds per query.

Five untrained domain modules in the embedded profile's shapes (fresh LoRA on the shared SmolLM2 expert,
random projector; memory and latency do not depend on training) are installed in a throwaway GAG_HOME.
Each domain's router exemplars are a different slice of the minerals training questions, so the router
really chooses between five sets of prototypes plus general.

- memory: a fresh process per configuration loads the base, N domains and the router, answers one question
  per domain, and reports its resident set size (RSS); the ratio 5 domains / 1 domain is the headline.
- routing overhead: in the 5-domain process, for a mix of minerals and general questions, the median time of
  ``gag.route(q)`` and of answering with the chosen route; routing's share = route / (route + answer).

    python benchmarks/bench_domains.py [--quick] [--router-encoder minilm|expert-mean] [--questions 12]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATA, print_table, read_jsonl, rss_mb, setup_threads, write_results

ROOT = Path(__file__).resolve().parent.parent
GENERAL_HELDOUT = ROOT / "gag_plugins" / "data" / "general_questions_heldout.jsonl"
DOMAINS = 5


def isolated_home() -> Path:
    """A temporary GAG_HOME whose models folder is the real one (no second GGUF conversion)."""
    from gag_core.models import ensure_embedded_cached

    models = ensure_embedded_cached().parent
    home = Path(tempfile.mkdtemp(prefix="gag-bench-domains-"))
    (home / "models").symlink_to(models, target_is_directory=True)
    return home


def build_domains(home: Path) -> list[str]:
    """Install ``DOMAINS`` untrained embedded-profile modules, each with its own exemplar questions."""
    import torch

    from gag_core import install
    from gag_core.assemble import assemble_module
    from gag_core.models import hidden_size, load_causal_lm
    from gag_core.projectors import ProjectorBundle, ProjectorConfig
    from gag_core.training.config import load_config
    from gag_core.training.stage1 import add_lora

    cfg = load_config(None, "embedded")
    base = load_causal_lm("embedded")
    train = [r["question"] for r in read_jsonl(DATA / "train.jsonl")]
    names = []
    for i in range(DOMAINS):
        name = f"dom{i}"
        torch.manual_seed(i)
        expert = add_lora(load_causal_lm("embedded", frozen=False), cfg.stage1)
        projector = ProjectorBundle(ProjectorConfig(kind=cfg.stage2.projector, expert_hidden=hidden_size(expert),
                                                    base_hidden=hidden_size(base), slots=cfg.readout.slots,
                                                    layers=len(cfg.readout.layers)))
        exemplars = train[i * 64:(i + 1) * 64]
        folder = assemble_module(home / "build" / name, name=name, base_id="embedded", base_model=base,
                                 expert_id="embedded", expert_model=expert, adapter_dir=None, readout=cfg.readout,
                                 projector=projector, prototypes=torch.nn.functional.normalize(
                                     torch.randn(4, hidden_size(expert)), dim=-1),
                                 exemplars=exemplars, encoder="untrained", description=f"benchmark stand-in {name}")
        install.install_folder(folder, name=name)
        names.append(name)
        del expert
    return names


def child(n_domains: int, args) -> dict:
    """One configuration in a fresh process: load, warm up every route, measure RSS (and, for 5, latency)."""
    from gag_core.generation import GenerationOptions
    from gag_plugins.api import GAG

    setup_threads(args.threads)
    names = [f"dom{i}" for i in range(n_domains)]
    gag = GAG.from_installed(names, strict=True, max_new_tokens=args.max_new_tokens,
                             router_encoder=args.router_encoder)
    minerals = [r["question"] for r in read_jsonl(DATA / "test.jsonl")][::20][:args.questions // 2]
    general = [r["question"] for r in read_jsonl(GENERAL_HELDOUT)][::7][:args.questions - len(minerals)]
    gag.route(minerals[0])  # builds the router (general prototypes come from the cache after the first run)
    for name in ["general", *names]:  # every adapter and projector is touched once
        gag.answer(minerals[0], name, options=GenerationOptions(max_new_tokens=4))
    gc.collect()
    result = {"domains": n_domains, "rss_mb": rss_mb(), "router_encoder": gag.router.encoder.name}
    if n_domains != DOMAINS:
        return result
    route_s, answer_s, rows = [], [], []
    for q in minerals + general:
        start = time.perf_counter()
        decision = gag.route(q)
        mid = time.perf_counter()
        gag.answer(q, decision.route)
        end = time.perf_counter()
        route_s.append(mid - start)
        answer_s.append(end - mid)
        rows.append({"route": decision.route, "route_ms": 1000 * (mid - start), "answer_s": end - mid})
    result.update(route_ms_median=1000 * statistics.median(route_s), answer_s_median=statistics.median(answer_s),
                  routes=sorted({r["route"] for r in rows}), per_question=rows)
    dom = [r for r in rows if r["route"] != "general"]
    gen = [r for r in rows if r["route"] == "general"]
    for label, part in (("domain", dom), ("general", gen)):
        if part:
            result[f"{label}_questions"] = len(part)
            result[f"{label}_answer_s_median"] = statistics.median(r["answer_s"] for r in part)
    return result


def run_child(n: int, args, home: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", str(n), "--threads", str(args.threads), "--questions",
           str(args.questions), "--max-new-tokens", str(args.max_new_tokens), "--router-encoder", args.router_encoder]
    env = {**os.environ, "GAG_HOME": str(home), "GAG_LOAD_PLUGINS": ""}  # only built-ins: a clean measurement
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the {n}-domain measurement failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 timed questions, 8-token answers")
    parser.add_argument("--questions", type=int, default=12, help="questions timed (half minerals, half general)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--router-encoder", default="minilm")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/bench_domains.json)")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.questions, args.max_new_tokens = 4, 8
    setup_threads(args.threads)
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    home = isolated_home()
    try:
        os.environ["GAG_HOME"] = str(home)
        build_domains(home)
        one, five = run_child(1, args, home), run_child(DOMAINS, args, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)  # the models symlink is unlinked, its target kept
    ratio = five["rss_mb"] / one["rss_mb"]
    share = five["route_ms_median"] / 1000 / (five["route_ms_median"] / 1000 + five["answer_s_median"])
    rows = [{"metric": "RSS, 1 domain (MB)", "value": round(one["rss_mb"], 1)},
            {"metric": f"RSS, {DOMAINS} domains (MB)", "value": round(five["rss_mb"], 1)},
            {"metric": f"RSS ratio {DOMAINS}/1 (limit 1.2)", "value": round(ratio, 3)},
            {"metric": "routing, median ms per query", "value": round(five["route_ms_median"], 1)},
            {"metric": "answer after routing, median s", "value": round(five["answer_s_median"], 3)},
            {"metric": "routing share of query time (limit 5 %)", "value": f"{100 * share:.2f} %"}]
    for label in ("domain", "general"):
        if f"{label}_answer_s_median" in five:
            part = five[f"{label}_answer_s_median"]
            share_l = five["route_ms_median"] / 1000 / (five["route_ms_median"] / 1000 + part)
            rows.append({"metric": f"  {label}-routed answers ({five[f'{label}_questions']}), median s / share",
                         "value": f"{part:.3f} / {100 * share_l:.2f} %"})
    title = f"{DOMAINS} domains vs 1 — embedded profile, encoder {five['router_encoder']}" + (
        " (QUICK)" if args.quick else "")
    print_table(rows, ["metric", "value"], title)
    write_results("bench_domains", {
        "benchmark": "domains", "quick": args.quick, "threads": args.threads, "max_new_tokens": args.max_new_tokens,
        "router_encoder": five["router_encoder"], "domains": DOMAINS,
        "domain": "untrained embedded-profile modules (fresh LoRA, random projector), distinct exemplars",
        "rss_1_domain_mb": one["rss_mb"], f"rss_{DOMAINS}_domains_mb": five["rss_mb"], "rss_ratio": ratio,
        "route_ms_median": five["route_ms_median"], "answer_s_median": five["answer_s_median"],
        "routing_share": share, "five_domain_run": five}, args.out)


if __name__ == "__main__":
    main()
