"""Hybrid (dense + lexical, calibrated) routing against dense-only PPR, in one run, on unseen phrasings.

Routes: ``general`` and the two demo domains of different shapes, ``minerals`` (QA-first) and ``registry``
(documents-first: 34 of its 48 companies exist only in its corpus). Each route is built exactly as
``gag train-domain`` builds a module:
- prototypes: k-means of the domain's ``train.jsonl`` questions (32) / of ``general_questions.jsonl`` (64);
- lexical index (hybrid only): the training questions + the corpus;
- calibration: the domains' ``dev.jsonl`` questions + the general questions, cross-fitted in 5 folds.

Evaluated on ``gag_plugins/data/routing_heldout.jsonl`` only (687 questions that nothing above has seen:
imperatives, statements ending in "?", typos, lower case, terse fragments, typos in the entity name, real
minerals and companies in the domains' own phrasings, general questions sharing the domains' vocabulary).

Variants: ``hybrid`` (min confidence 0.5), ``dense`` (the same calibration and threshold, no lexical
evidence) and ``dense-margin`` (PPR as before: MiniLM's margin 0.05; its confidence is still reported).
Also: a reliability plot (PNG) and the routing time of one question (encode + score + decide).

    python benchmarks/bench_routing_hybrid.py [--encoder minilm] [--threads 1] [--out PATH] [--png PATH]
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import RESULTS, ROOT, print_table, read_jsonl, setup_threads, write_results

from gag_core.calibration import write_reliability_png
from gag_core.evaluation.router_report import routing_report
from gag_core.lexical import LexicalIndex, LexicalScorer
from gag_core.router import DEFAULT_PROTOTYPES, GENERAL_PROTOTYPES, PrototypeRouter, build_prototypes
from gag_core.routes import GENERAL

PLUGIN_DATA = ROOT / "gag_plugins" / "data"
DOMAINS = {"minerals": ROOT / "modules/gag-domain-minerals/gag_domain_minerals/data",
           "registry": ROOT / "modules/gag-domain-registry/gag_domain_registry/data"}
VARIANTS = {"hybrid": {"lexical": True, "margin": 0.0, "min_confidence": 0.5},
            "dense": {"lexical": False, "margin": 0.0, "min_confidence": 0.5},
            "dense-margin": {"lexical": False, "margin": 0.05, "min_confidence": None}}


def questions(path) -> list[str]:
    return [r["question"] for r in read_jsonl(path)]


def build(encoder, general: list[str], emb: dict, variant: dict) -> PrototypeRouter:
    router = PrototypeRouter(encoder, variant["margin"], min_confidence=variant["min_confidence"],
                             general_questions=general)
    router.add_route(GENERAL, build_prototypes(emb[GENERAL], k=GENERAL_PROTOTYPES))
    for name, folder in DOMAINS.items():
        train = questions(folder / "train.jsonl")
        lexical = None
        if variant["lexical"]:
            corpus = [r["text"] for r in read_jsonl(folder / "corpus.jsonl")]
            lexical = LexicalScorer(LexicalIndex.build(train, corpus), router.background,
                                    list(dict.fromkeys(train))[:256])
        router.add_route(name, build_prototypes(emb[name], k=DEFAULT_PROTOTYPES), lexical=lexical,
                         calibration_questions=questions(folder / "dev.jsonl"))
    return router


def route_ms(router, qs: list[str]) -> float:
    """Median time to route one question alone: encode, score every route, decide."""
    router.route(qs[0])
    times = []
    for q in qs:
        start = time.perf_counter()
        router.route(q)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def measure(name: str, router, rows: list[dict]) -> dict:
    start = time.perf_counter()
    cal = router.calibration
    fit_s = time.perf_counter() - start
    decisions = router.route_batch([r["question"] for r in rows])
    golds, routes, conf = [r["route"] for r in rows], [d.route for d in decisions], [d.confidence for d in decisions]
    report = routing_report(golds, routes, conf, [r["kind"].split(":")[-1] for r in rows])
    report["fallbacks"] = sum(d.fallback for d in decisions)
    groups = routing_report(golds, routes, conf, [r["route"] if r["route"] != GENERAL else r["kind"].split(":")[0]
                                                  for r in rows])["per_kind"]
    report["errors"] = [{**e, "question": rows[e["i"]]["question"], "kind": rows[e["i"]]["kind"]}
                        for e in report["errors"]]
    return {"variant": name, **{k: report[k] for k in ("n", "accuracy", "general_to_domain", "domain_to_general",
                                                       "domain_to_domain", "fallbacks", "ece")},
            "calibration_fit_s": fit_s, "calibration_samples": cal.samples if cal else 0,
            "calibration_ece_crossfit": cal.ece if cal else None,
            "route_ms_single": route_ms(router, [r["question"] for r in rows[::40]]),
            "per_phrasing": report["per_kind"], "per_group": groups, "reliability": report["reliability"],
            "errors": report["errors"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="minilm", help="a registered router encoder (default minilm)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/bench_routing_hybrid.json)")
    parser.add_argument("--png", default=str(RESULTS / "routing_reliability.png"), help="reliability plot")
    args = parser.parse_args()
    setup_threads(args.threads)
    from bench_routing_accuracy import make_encoder

    encoder = make_encoder(args.encoder)
    general = questions(PLUGIN_DATA / "general_questions.jsonl")
    emb = {GENERAL: encoder.encode(general)}
    emb.update({n: encoder.encode(questions(f / "train.jsonl")) for n, f in DOMAINS.items()})
    rows = read_jsonl(PLUGIN_DATA / "routing_heldout.jsonl")
    results = []
    for name, variant in VARIANTS.items():
        results.append(measure(name, build(encoder, general, emb, variant), rows))
        print(f"{name}: accuracy {results[-1]['accuracy']:.4f}, ECE {results[-1]['ece']:.4f}")
    columns = ["variant", "accuracy", "general_to_domain", "domain_to_general", "domain_to_domain", "ece",
               "fallbacks", "route_ms_single"]
    print_table(results, columns, f"Routing on routing_heldout.jsonl ({len(rows)} unseen questions), {encoder.name}")
    kinds = sorted(results[0]["per_phrasing"])
    table = [{"phrasing": k, "n": results[0]["per_phrasing"][k]["n"],
              **{r["variant"]: r["per_phrasing"][k]["accuracy"] for r in results}} for k in kinds]
    print_table(table, ["phrasing", "n", *VARIANTS], "Accuracy per phrasing kind")
    png = write_reliability_png(args.png, {r["variant"]: r["reliability"] for r in results[:2]},
                                "routing reliability on routing_heldout.jsonl")
    print(f"reliability plot → {png}")
    write_results("bench_routing_hybrid", {"benchmark": "routing_hybrid", "threads": args.threads,
                                           "encoder": encoder.name, "questions": len(rows), "png": str(png),
                                           "rows": results}, args.out)


if __name__ == "__main__":
    main()
