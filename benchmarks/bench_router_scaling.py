"""Routing time with 10 → 1000 domains × 32 prototypes (PrototypeRouter, synthetic random prototypes).

Encoding the query and scoring it against the prototypes are timed separately: the encoder's cost does
not depend on the number of domains, the scoring's does. Scoring is timed for one query (what a user
waits for) and per query in a batch of 64. For reference, ``fused_ms`` times the same max-cosine over
one concatenated prototype matrix (a single matmul + reshape-max), i.e. what a vectorised router costs, and
``hybrid_ms`` the hybrid path: the same scoring plus every domain's lexical evidence and a calibrated decision.

    python benchmarks/bench_router_scaling.py [--quick] [--domains 10,100,1000] [--encoder expert|minilm|none]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from common import DATA, ROOT, print_table, read_jsonl, setup_threads, write_results

from gag_core.routes import GENERAL
from gag_core.router import PrototypeRouter

GENERAL_QUESTIONS = ROOT / "gag_plugins" / "data" / "general_questions.jsonl"


class FixedEncoder:
    """Stands in for the real encoder when only scoring is timed (queries are given as embeddings)."""

    def __init__(self, dim: int, name: str):
        self.dim, self.name = dim, name

    def encode(self, texts):
        raise RuntimeError("scoring-only benchmark: pass embeddings")


def load_encoder(kind: str):
    if kind == "expert":
        from gag_core.models import EMBEDDED_ID, load_causal_lm, load_tokenizer
        from gag_core.router import ExpertMeanEncoder

        return ExpertMeanEncoder(load_causal_lm(EMBEDDED_ID), load_tokenizer(EMBEDDED_ID), EMBEDDED_ID)
    from gag_core.router import SentenceEncoder

    return SentenceEncoder()


def best_ms(fn, repeats: int) -> float:
    """Median of ``repeats`` timings in milliseconds (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def hybrid_timer(router, n: int, gen: torch.Generator):
    """One question through the hybrid path: dense scores of every route, the lexical evidence of every domain
    (each with ~300 invented terms and 32 exemplars), a calibrated decision. Returns the timed callable."""
    import random

    from gag_core.calibration import Calibration
    from gag_core.hybrid import Policy, decide, hybrid_scores
    from gag_core.lexical import Background, LexicalIndex, LexicalScorer

    rng = random.Random(0)
    background = Background.build([r["question"] for r in read_jsonl(GENERAL_QUESTIONS)])
    word = lambda: "".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(4)) + "ite"  # noqa: E731
    scorers = {}
    for name in router.routes[1:]:
        names = [word() for _ in range(300)]
        exemplars = [f"What colour is {w}?" for w in names[:32]]
        scorers[name] = LexicalScorer(LexicalIndex.build(exemplars, [" ".join(names)]), background, exemplars)
    calibration = Calibration("platt", {"all": {"a": 10.0, "b": -3.0}})
    policy = Policy(min_confidence=0.5)
    one = F.normalize(torch.randn(1, router.encoder.dim, generator=gen), dim=-1)
    question = [f"Who discovered {rng.choice(sorted(scorers[router.routes[-1]].rare))} and when?"]
    return lambda: decide(hybrid_scores(router.score_embeddings(one), question, router.routes, scorers), policy,
                          calibration)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and the MiniLM encoder")
    parser.add_argument("--domains", default="10,100,1000", help="numbers of domains (plus general)")
    parser.add_argument("--prototypes", type=int, default=32, help="prototypes per domain")
    parser.add_argument("--encoder", default=None, choices=["expert", "minilm", "none"],
                        help="query encoder timed separately (default: expert; --quick: minilm)")
    parser.add_argument("--dim", type=int, default=None, help="embedding size when --encoder none (default 576)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/bench_router_scaling.json)")
    args = parser.parse_args()
    setup_threads(args.threads)
    repeats = 5 if args.quick else 30
    kind = args.encoder or ("minilm" if args.quick else "expert")
    questions = [r["question"] for r in read_jsonl(DATA / "test.jsonl", 16)]
    encoder_ms = None
    if kind != "none":
        encoder = load_encoder(kind)
        encoder_ms = best_ms(lambda: encoder.encode(questions[:1]), repeats)
        dim, encoder_name = encoder.dim, encoder.name
    else:
        dim, encoder_name = args.dim or 576, "none"
    gen = torch.Generator().manual_seed(0)
    one = F.normalize(torch.randn(1, dim, generator=gen), dim=-1)
    batch = F.normalize(torch.randn(64, dim, generator=gen), dim=-1)
    rows = []
    for n in [int(d) for d in args.domains.split(",")]:
        router = PrototypeRouter(FixedEncoder(dim, encoder_name))
        for name in [GENERAL] + [f"dom{i:04d}" for i in range(n)]:
            router.add_route(name, torch.randn(args.prototypes, dim, generator=gen))
        fused = torch.cat(list(router.prototypes.values()))  # every route has the same prototype count
        score_ms = best_ms(lambda: router.decide(router.score_embeddings(one)), repeats)  # noqa: B023
        hybrid_ms = best_ms(hybrid_timer(router, n, gen), repeats)
        batch_ms = best_ms(lambda: router.decide(router.score_embeddings(batch)), repeats) / 64  # noqa: B023
        fused_ms = best_ms(lambda: (one @ fused.T).view(1, n + 1, -1).amax(-1).argmax(-1), repeats)  # noqa: B023
        rows.append({"domains": n, "prototypes": fused.shape[0], "prototype_mb": fused.numel() * 4 / 2**20,
                     "encode_ms": encoder_ms, "score_ms": score_ms, "score_ms_per_query_b64": batch_ms,
                     "fused_ms": fused_ms, "hybrid_ms": hybrid_ms, "total_ms": (encoder_ms or 0.0) + score_ms,
                     "hybrid_total_ms": (encoder_ms or 0.0) + hybrid_ms})
        print(f"{n} domains: score {score_ms:.2f} ms")
    columns = ["domains", "prototypes", "prototype_mb", "encode_ms", "score_ms", "score_ms_per_query_b64",
               "fused_ms", "hybrid_ms", "total_ms", "hybrid_total_ms"]
    title = f"Routing time vs domains (encoder {encoder_name}, dim {dim})" + (" (QUICK: 5 repeats)" if args.quick else "")
    print_table(rows, columns, title)
    write_results("bench_router_scaling", {
        "benchmark": "router_scaling", "quick": args.quick, "threads": args.threads, "encoder": encoder_name,
        "dim": dim, "prototypes_per_domain": args.prototypes, "repeats": repeats, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
