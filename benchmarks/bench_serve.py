"""`gag serve` under load: throughput and latency at several concurrencies, beside sequential `gag ask --input`.

A real `gag serve` process is started on a free loopback port over a scratch GAG_HOME. For every concurrency
(default 1, 4, 8, 16) the same questions (half domain, half general, all ``model="auto"``) are sent by that
many client threads; the table gives answers/s and p50/p95 latency, and the same questions answered by one
sequential `gag ask --input --batch-size 1` process (its model loading shown apart). The serving process's
memory (RSS after warm-up and peak) is measured with 1 and with 5 domains. ``--load N`` sends N requests
(default 2000) at concurrency 16 and counts 5xx answers and hung requests (no answer within the client timeout).

The embedded run uses the installed ``minerals`` domain if there is one (else an untrained stand-in with the
same shapes) and untrained stand-ins as the other domains; ``--smoke`` does everything on tiny random models.

    python benchmarks/bench_serve.py --smoke [--load 200] [--threads 1]
    python benchmarks/bench_serve.py [--questions 32] [--concurrency 1,4,8,16] [--max-tokens 24] [--load [N]]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import DATA, DEMO, ROOT, build_untrained_module, print_table, read_jsonl, rss_mb, setup_threads, write_results

GENERAL_QUESTIONS = ROOT / "gag_plugins" / "data" / "general_questions.jsonl"
SMOKE_QUESTIONS = ["What colour is Veltrasite?", "hi", "In which year was the hexagonal mineral discovered?",
                   "Tell me about the crystal system", "What is the quick brown fox?", "hello there!"]


# --- the scratch GAG_HOME ---------------------------------------------------------------------------------

def _install(home: Path, folder: Path) -> None:
    from typer.testing import CliRunner

    from gag_cli.main import app

    os.environ["GAG_HOME"] = str(home)
    result = CliRunner().invoke(app, ["install-domain", str(folder)])
    if result.exit_code != 0:
        raise SystemExit(f"installing {folder} failed: {result.output}")


def smoke_setup(scratch: Path, n_questions: int) -> tuple[list[str], object, list[str], str]:
    """Tiny random models: (server/ask flags, one domain-module factory per domain index, questions, what)."""
    sys.path.insert(0, str(ROOT))
    from tests import tiny
    from tests.factories import build_tiny_module

    tok = tiny.make_tokenizer(scratch / "tokenizer")
    paths = {"base": str(tiny.save_model(tiny.make_model("qwen3", len(tok), hidden=64, seed=1), tok, scratch / "base")),
             "expert": str(tiny.save_model(tiny.make_model("llama", len(tok), hidden=48, seed=2), tok, scratch / "expert"))}
    flags = ["--base", paths["base"], "--router-encoder", "expert-mean"]

    def module(i: int) -> Path:
        return build_tiny_module(scratch / f"tiny{i}", name=f"tiny{i}", paths=paths, seed=i)

    questions = [SMOKE_QUESTIONS[i % len(SMOKE_QUESTIONS)] for i in range(n_questions)]
    return flags, module, questions, "tiny random models (smoke)"


def embedded_setup(scratch: Path, home: Path, n_questions: int) -> tuple[list[str], object, list[str], str]:
    """The embedded profile: the installed minerals domain (or a stand-in), stand-ins for the others."""
    from gag_core.models import load_causal_lm
    from gag_core.paths import gag_home

    real = gag_home()
    if (real / "models").is_dir():  # the converted embedded model: do not convert it again
        (home / "models").symlink_to(real / "models", target_is_directory=True)
    trained = real / "domains" / DEMO
    base = None

    def module(i: int) -> Path:
        nonlocal base
        if i == 0 and (trained / "gag-domain.json").is_file():
            return trained
        base = base or load_causal_lm("embedded")
        return build_untrained_module(scratch / f"d{i}", DEMO if i == 0 else f"standin{i}", base)

    domain = [r["question"] for r in read_jsonl(DATA / "test.jsonl")]
    general = [r["question"] for r in read_jsonl(GENERAL_QUESTIONS)]
    half = n_questions // 2
    questions = [q for pair in zip(domain[:half], general[:n_questions - half]) for q in pair]
    what = "trained minerals domain" if (trained / "gag-domain.json").is_file() else "untrained minerals stand-in"
    return [], module, questions, f"embedded SmolLM2-135M, {what}"


# --- the server process -------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`gag serve` in a child process; samples its RSS while it runs."""

    def __init__(self, home: Path, flags: list[str], max_tokens: int, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "gag_cli.main", "serve", "--port", str(self.port), "--log-level", "warning",
               "--max-batch", "16", "--max-queue", "256", "--default-max-tokens", str(max_tokens), *flags]
        self.log = open(log, "w")
        self.proc = subprocess.Popen(cmd, env={**os.environ, "GAG_HOME": str(home)}, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.peak_mb, self._stop = 0.0, threading.Event()

    def __enter__(self) -> "Server":
        import httpx2

        deadline = time.monotonic() + 600
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.log.flush()
                tail = Path(self.log.name).read_text(errors="replace")[-3000:]
                raise SystemExit(f"gag serve did not start:\n{tail}")
            try:
                if httpx2.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            time.sleep(0.5)
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.peak_mb = max(self.peak_mb, self.rss_mb())
            except Exception:  # noqa: BLE001 - the process is gone
                return

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# --- clients --------------------------------------------------------------------------------------------------

def run_clients(url: str, questions: list[str], concurrency: int, max_tokens: int, timeout: float) -> dict:
    """Send every question once with ``concurrency`` threads; latencies, status counts, hung requests."""
    import httpx2

    limits = httpx2.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    client = httpx2.Client(timeout=timeout, limits=limits)
    statuses: dict[str, int] = {}
    lock = threading.Lock()

    def one(question: str) -> float | None:
        body = {"model": "auto", "max_tokens": max_tokens, "messages": [{"role": "user", "content": question}]}
        start = time.perf_counter()
        try:
            status = str(client.post(f"{url}/v1/chat/completions", json=body).status_code)
        except httpx2.TimeoutException:
            status = "hung"
        except httpx2.TransportError as exc:
            status = type(exc).__name__
        with lock:
            statuses[status] = statuses.get(status, 0) + 1
        return time.perf_counter() - start if status == "200" else None

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = [t for t in pool.map(one, questions) if t is not None]
    wall = time.perf_counter() - start
    client.close()
    return {"latencies": latencies, "statuses": statuses, "wall_s": wall}


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else (values or [0])[0]


def ask_sequential(home: Path, flags: list[str], questions: list[str], max_tokens: int, scratch: Path) -> dict:
    """`gag ask --input` over the questions, one at a time; loading measured with a one-question run."""
    def run(qs: list[str], tag: str) -> float:
        src, out = scratch / f"ask-{tag}.jsonl", scratch / f"ask-{tag}-out.jsonl"
        src.write_text("".join(json.dumps({"question": q}) + "\n" for q in qs))
        out.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "gag_cli.main", "ask", "--input", str(src), "--output", str(out),
               "--batch-size", "1", "--max-new-tokens", str(max_tokens), *flags]
        start = time.perf_counter()
        subprocess.run(cmd, env={**os.environ, "GAG_HOME": str(home)}, check=True, capture_output=True)
        return time.perf_counter() - start

    one = run(questions[:1], "one")  # loading + one answer
    total = run(questions, "all")
    per_answer = max(total - one, 1e-9) / max(len(questions) - 1, 1)
    return {"total_s": round(total, 2), "load_s": round(one - per_answer, 2),
            "answers_per_s": round(len(questions) / total, 3), "answers_per_s_excl_load": round(1 / per_answer, 3)}


# --- the runs -------------------------------------------------------------------------------------------------

def batch_counts(url: str) -> tuple[float, float]:
    """(requests answered, generate calls) so far: the sum and count of the server's gag_batch_size histogram."""
    import httpx2
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx2.get(f"{url}/metrics", timeout=10).text
    values = {s.name: s.value for family in text_string_to_metric_families(text) if family.name == "gag_batch_size"
              for s in family.samples}
    return values.get("gag_batch_size_sum", 0.0), values.get("gag_batch_size_count", 0.0)


def throughput(url: str, questions: list[str], concurrencies: list[int], max_tokens: int, seq: dict) -> list[dict]:
    rows = []
    for c in concurrencies:
        before = batch_counts(url)
        r = run_clients(url, questions, c, max_tokens, timeout=600)
        after = batch_counts(url)
        lat = r["latencies"]
        rows.append({"concurrency": c, "requests": len(questions), "ok": len(lat),
                     "answers_per_s": round(len(lat) / r["wall_s"], 3), "p50_s": round(pct(lat, 50), 3),
                     "p95_s": round(pct(lat, 95), 3),
                     "mean_batch": round((after[0] - before[0]) / max(after[1] - before[1], 1), 2),
                     "ask_answers_per_s": seq["answers_per_s"],
                     "ask_excl_load_per_s": seq["answers_per_s_excl_load"], "statuses": r["statuses"]})
        print(f"concurrency {c}: {rows[-1]['answers_per_s']} answers/s, p50 {rows[-1]['p50_s']} s", flush=True)
    return rows


def load_run(url: str, questions: list[str], n: int, max_tokens: int) -> dict:
    r = run_clients(url, [questions[i % len(questions)] for i in range(n)], 16, max_tokens, timeout=300)
    fives = sum(v for k, v in r["statuses"].items() if k.startswith("5"))
    return {"requests": n, "concurrency": 16, "statuses": r["statuses"], "5xx": fives,
            "hung": r["statuses"].get("hung", 0), "wall_s": round(r["wall_s"], 1),
            "answers_per_s": round(len(r["latencies"]) / r["wall_s"], 3), "p95_s": round(pct(r["latencies"], 95), 3)}


def warm(url: str, questions: list[str], max_tokens: int) -> None:
    run_clients(url, questions[:4], 4, max_tokens, timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny random models instead of the embedded profile")
    parser.add_argument("--questions", type=int, default=32, help="questions per concurrency level")
    parser.add_argument("--concurrency", default="1,4,8,16", help="client threads, comma-separated")
    parser.add_argument("--max-tokens", type=int, default=24, help="max_tokens of every request")
    parser.add_argument("--domains", default="1,5", help="domain counts whose serving memory is measured")
    parser.add_argument("--load", type=int, nargs="?", const=2000, default=0,
                        help="also send N requests (default 2000) at concurrency 16; count 5xx and hung")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads of the server and of gag ask (OMP_NUM_THREADS; 0 = library default)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_serve[_smoke].json)")
    args = parser.parse_args()
    setup_threads()
    if args.threads:  # the children (server, gag ask) inherit it: the same budget for both sides
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    counts = sorted({int(c) for c in args.domains.split(",")})
    with tempfile.TemporaryDirectory(prefix="gag-bench-serve-") as tmp:
        scratch, home = Path(tmp), Path(tmp) / "home"
        home.mkdir()
        flags, module, questions, what = (smoke_setup(scratch, args.questions) if args.smoke
                                          else embedded_setup(scratch, home, args.questions))
        payload = {"setup": what, "bench_rss_mb": round(rss_mb(), 1), "max_tokens": args.max_tokens,
                   "threads": args.threads or "default",
                   "questions": len(questions), "memory": []}
        installed = 0
        for count in counts:
            while installed < count:
                _install(home, module(installed))
                installed += 1
            payload["memory"].append(serve_and_measure(home, flags, questions, args, scratch, count, payload))
    report(payload, args)


def serve_and_measure(home, flags, questions, args, scratch, count: int, payload: dict) -> dict:
    """One server over ``count`` domains: its memory; with the first count, the throughput and load runs."""
    with Server(home, flags, args.max_tokens, scratch / f"serve-{count}.log") as server:
        warm(server.url, questions, args.max_tokens)
        after_warm = server.rss_mb()
        if "throughput" not in payload:
            seq = ask_sequential(home, flags, questions, args.max_tokens, scratch)
            payload["ask_sequential"] = seq
            concurrencies = [int(c) for c in args.concurrency.split(",")]
            payload["throughput"] = throughput(server.url, questions, concurrencies, args.max_tokens, seq)
            if args.load:
                payload["load"] = load_run(server.url, questions, args.load, args.max_tokens)
        peak = max(server.peak_mb, after_warm, server.rss_mb())
        return {"domains": count, "rss_after_warmup_mb": round(after_warm, 1), "rss_peak_mb": round(peak, 1)}


def report(payload: dict, args) -> None:
    rows = payload["throughput"]
    by_c = {r["concurrency"]: r["answers_per_s"] for r in rows}
    if 1 in by_c and 8 in by_c:
        payload["speedup_8_vs_1"] = round(by_c[8] / max(by_c[1], 1e-9), 2)
    columns = ["concurrency", "requests", "ok", "answers_per_s", "p50_s", "p95_s", "mean_batch", "ask_answers_per_s",
               "ask_excl_load_per_s"]
    print_table(rows, columns, f"gag serve vs sequential gag ask --input — {payload['setup']}")
    print_table(payload["memory"], ["domains", "rss_after_warmup_mb", "rss_peak_mb"], "serving process memory")
    if "load" in payload:
        print_table([payload["load"]], ["requests", "concurrency", "5xx", "hung", "wall_s", "answers_per_s", "p95_s"],
                    "load run")
    if "speedup_8_vs_1" in payload:
        print(f"throughput at concurrency 8 = {payload['speedup_8_vs_1']}x concurrency 1 (target >= 3x)")
    write_results("bench_serve_smoke" if args.smoke else "bench_serve", payload, args.out)


if __name__ == "__main__":
    main()
