"""One backbone: peak memory and latency of `gag ask --domain X` vs `gag ask --general`, before and after.

In the embedded profile the base model and the domains' expert backbone are the same SmolLM2. "after" loads
it once (the domain's LoRA wraps the base, the base path runs with adapters off); "before" loads the expert
backbone apart, as gag did until then (``GAG_SHARE_BACKBONE=0``). Both are measured in one run.

Every measurement is a fresh `gag ask QUESTION --json` process: its peak resident set size comes from the
kernel (``wait4``'s ``ru_maxrss``), its wall time includes loading the models, and the answer latency is the
one the command reports; one unmeasured run first fills the caches (router prototypes). Real numbers use an
installed domain (default ``minerals``, e.g. after `gag demo`); when it is not installed, an untrained
stand-in with the same shapes is installed in a throwaway GAG_HOME (memory and latency do not depend on
training). ``--smoke`` does the same on tiny random models (a minute or so).

    python benchmarks/bench_memory.py [--domain minerals] [--repeats 3] [--max-new-tokens 32] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATA, DEMO, ROOT, build_untrained_module, print_table, read_jsonl, write_results

TARGET = 0.7  # the target: a domain question's peak RSS after / before


def gag_command() -> list[str]:
    """The `gag` console script of this environment."""
    script = Path(sys.executable).with_name("gag")
    found = str(script) if script.exists() else shutil.which("gag")
    if found is None:
        raise SystemExit("The `gag` command is not installed in this environment; run `pip install -e .` first.")
    return [found]


def run_gag(args: list[str], env: dict) -> tuple[str, float, float]:
    """Run `gag ARGS`; returns (stdout, peak RSS in MB, wall seconds). Fails loudly on a non-zero exit."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(gag_command() + args, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS (KiB on Linux)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"`gag {' '.join(args)}` failed ({proc.returncode}):\n{err.read()[-3000:]}")
        return out.read(), usage.ru_maxrss / 1024, wall


def measure(route_args: list[str], question: str, extra: list[str], env: dict, repeats: int, mnt: int) -> dict:
    """Median peak RSS, wall time and answer latency of `gag ask` over ``repeats`` fresh processes."""
    rss, wall, latency = [], [], []
    for _ in range(repeats):
        stdout, peak, seconds = run_gag(["ask", *route_args, question, "--json", "--max-new-tokens", str(mnt),
                                         *extra], env)
        answer = json.loads(stdout[stdout.index("{"):])
        rss.append(peak)
        wall.append(seconds)
        latency.append(answer["latency_s"])
    return {"rss_mb": statistics.median(rss), "wall_s": statistics.median(wall),
            "latency_s": statistics.median(latency), "runs": repeats}


def isolated_home(prefix: str, link_models: bool) -> Path:
    """A throwaway GAG_HOME; its models folder is the real one when ``link_models`` (no second conversion)."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    if link_models:
        from gag_core.models import ensure_embedded_cached

        (home / "models").symlink_to(ensure_embedded_cached().parent, target_is_directory=True)
    return home


def install(folder: Path, env: dict) -> None:
    run_gag(["install-domain", str(folder)], env)


def smoke_setup(home: Path, env: dict) -> tuple[str, list[str], str]:
    """Tiny random models; a module whose expert backbone is the tiny base itself."""
    sys.path.insert(0, str(ROOT))
    from tests import tiny
    from tests.factories import build_tiny_module

    tok = tiny.make_tokenizer(home / "tiny" / "tokenizer")
    base = str(tiny.save_model(tiny.make_model("qwen3", len(tok), hidden=64, seed=1), tok, home / "tiny" / "base"))
    install(build_tiny_module(home / "build" / "tinydom", name="tinydom", paths={"base": base, "expert": base},
                              expert_key="base"), env)
    return "tinydom", ["--base", base], "What colour is Veltrasite?"


def real_setup(domain: str, env: dict) -> tuple[str, list[str], Path | None]:
    """The installed domain when there is one, else an untrained stand-in in a throwaway GAG_HOME."""
    from gag_plugins.discovery import all_domains

    if domain in all_domains():
        return f"installed {domain!r}", [], None
    from gag_core.models import load_causal_lm

    home = isolated_home("gag-bench-memory-", link_models=True)
    env["GAG_HOME"] = str(home)
    install(build_untrained_module(home / "build" / domain, domain, load_causal_lm("embedded")), env)
    return f"untrained {domain!r} stand-in (embedded shapes, fresh LoRA, random projector)", [], home


def table_rows(results: dict, domain: str) -> list[dict]:
    rows = []
    for label, route in ((f"--domain {domain}", "domain"), ("--general", "general")):
        before, after = results[route]["before"], results[route]["after"]
        rows.append({"command": f"gag ask {label}", "RSS before (MB)": round(before["rss_mb"], 1),
                     "RSS after (MB)": round(after["rss_mb"], 1),
                     "after / before": round(after["rss_mb"] / before["rss_mb"], 3),
                     "wall before (s)": round(before["wall_s"], 2), "wall after (s)": round(after["wall_s"], 2),
                     "answer before (s)": round(before["latency_s"], 3),
                     "answer after (s)": round(after["latency_s"], 3)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", default=DEMO, help="installed domain to ask (default: minerals)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per configuration (median)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each `gag ask` process")
    parser.add_argument("--smoke", action="store_true", help="tiny random models, 1 repeat, 8-token answers")
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/bench_memory.json)")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    repeats, mnt = (1, 8) if args.smoke else (args.repeats, args.max_new_tokens)
    scratch = None
    try:
        if args.smoke:
            scratch = isolated_home("gag-bench-memory-smoke-", link_models=False)
            env["GAG_HOME"] = str(scratch)
            domain, extra, question = smoke_setup(scratch, env)
            source = "tiny random Qwen3 (base = expert backbone), untrained module"
        else:
            source, extra, scratch = real_setup(args.domain, env)
            domain, question = args.domain, read_jsonl(DATA / "test.jsonl", 1)[0]["question"]
        measure(["--domain", domain], question, extra, env, 1, mnt)  # warm-up: caches (router, models) filled once
        results = {route: {when: measure(route_args, question, extra, {**env, "GAG_SHARE_BACKBONE": share},
                                         repeats, mnt)
                           for when, share in (("before", "0"), ("after", "1"))}
                   for route, route_args in (("domain", ["--domain", domain]), ("general", ["--general"]))}
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)  # a models symlink is unlinked, its target kept
    rows = table_rows(results, domain)
    ratio = rows[0]["after / before"]
    print_table(rows, list(rows[0]), f"One backbone: peak RSS and latency, {source}" + (" (SMOKE)" if args.smoke else ""))
    print(f"domain question RSS after / before: {ratio:.3f} (target <= {TARGET}): {'met' if ratio <= TARGET else 'NOT met'}")
    write_results("bench_memory_smoke" if args.smoke and not args.out else "bench_memory", {
        "benchmark": "memory", "smoke": args.smoke, "source": source, "domain": domain, "question": question,
        "repeats": repeats, "max_new_tokens": mnt, "threads": args.threads, "target_ratio": TARGET,
        "domain_rss_ratio": ratio, "rows": rows, "results": results}, args.out)


if __name__ == "__main__":
    main()
