"""Memory and latency with 1 → 20 installed domains on one base and one shared expert backbone.

One untrained module (embedded profile shapes: LoRA r=16 on the top 15 layers, mlp2x projector, 4 slots)
is built once and installed under N names in a throwaway GAG_HOME (the converted embedded model is
shared through a symlink); domains are then added to one GAG one after another. At each N: process RSS,
the growth over one domain, and the median single-query latency when queries alternate between the first
and the newest domain (so every query switches the active LoRA adapter).

    python benchmarks/bench_domain_scaling.py [--quick] [--counts 1,2,5,10,20] [--questions 8]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import tempfile
from pathlib import Path

from common import DATA, build_untrained_module, median_seconds, print_table, read_jsonl, rss_mb, setup_threads, \
    write_results


def isolated_home() -> Path:
    """A temporary GAG_HOME whose models folder is the real one (no second GGUF conversion)."""
    from gag_core.models import ensure_embedded_cached

    models = ensure_embedded_cached().parent
    home = Path(tempfile.mkdtemp(prefix="gag-bench-home-"))
    (home / "models").symlink_to(models, target_is_directory=True)
    os.environ["GAG_HOME"] = str(home)
    return home


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1, 2 and 4 domains, 2 timed questions, 8-token answers")
    parser.add_argument("--counts", default="1,2,5,10,20", help="numbers of loaded domains to measure at")
    parser.add_argument("--questions", type=int, default=8, help="questions timed one at a time per count")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/bench_domain_scaling.json)")
    args = parser.parse_args()
    setup_threads(args.threads)
    counts = [1, 2, 4] if args.quick else [int(c) for c in args.counts.split(",")]
    timed, mnt = (2, 8) if args.quick else (args.questions, args.max_new_tokens)
    home = isolated_home()
    try:
        run(args, counts, timed, mnt, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)  # the models symlink is unlinked, its target kept


def run(args, counts: list[int], timed: int, mnt: int, home: Path) -> None:
    from gag_core import install
    from gag_core.module import DomainModule
    from gag_plugins.api import GAG

    gag = GAG.load_base("embedded", max_new_tokens=mnt)
    questions = [r["question"] for r in read_jsonl(DATA / "test.jsonl", timed)]
    gag.answer(questions[0], "general")  # a first forward pass pages the base weights in
    gc.collect()
    rss_base_only = rss_mb()
    folder = build_untrained_module(home / "build" / "dom00", "dom00", gag.pipeline.base)
    names = [f"dom{i:02d}" for i in range(max(counts))]
    for name in names:
        install.install_folder(folder, name=name)
    module_mb = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
    rows, loaded = [], 0
    for n in counts:
        while loaded < n:
            gag.add_domain(DomainModule.open(home / "domains" / names[loaded]))
            loaded += 1
        gag.answer(questions[0], names[0])  # warm-up: the expert backbone is loaded with the first domain
        gc.collect()
        rss = rss_mb()
        pair = [names[0], names[n - 1]]
        state = {"i": 0}

        def alternate(q):
            state["i"] += 1
            return gag.answer(q, pair[state["i"] % 2])

        latency = median_seconds(alternate, questions)
        rows.append({"domains": n, "rss_mb": rss, "latency_median_s": latency})
        print(f"{n} domain(s): RSS {rss:.0f} MB, median {latency:.2f} s")
    one = rows[0]["rss_mb"]
    for r in rows:
        r["rss_growth_mb"] = r["rss_mb"] - one
        r["growth_per_extra_domain_mb"] = (r["rss_mb"] - one) / (r["domains"] - 1) if r["domains"] > 1 else None
    columns = ["domains", "rss_mb", "rss_growth_mb", "growth_per_extra_domain_mb", "latency_median_s"]
    title = "Installed domains vs memory and latency" + (" (QUICK: 2 timed questions, 8-token answers)"
                                                          if args.quick else "")
    print_table(rows, columns, title)
    print(f"module folder on disk: {module_mb:.1f} MB; RSS with the base only: {rss_base_only:.0f} MB")
    write_results("bench_domain_scaling", {
        "benchmark": "domain_scaling", "quick": args.quick, "threads": args.threads, "max_new_tokens": mnt,
        "questions_timed": timed, "module_mb_on_disk": module_mb, "rss_base_only_mb": rss_base_only,
        "domain": "untrained copies of one embedded-profile module", "rows": rows}, args.out)


if __name__ == "__main__":
    main()
