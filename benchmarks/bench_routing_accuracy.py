"""Routing accuracy of PPR per encoder on a mixed held-out set: two domains + general questions.

- domain ``minerals``: prototypes from the demo's train.jsonl questions, tested on test.jsonl + dev.jsonl
  (unseen phrasings of the same facts);
- domain ``policies``: an invented company's HR/IT questions (tests/data/domain_quillfeather.jsonl),
  half for prototypes, half for testing;
- ``general``: prototypes from gag_plugins/data/general_questions.jsonl, tested on
  general_questions_heldout.jsonl (which includes real-world mineralogy questions: hard negatives).

Each encoder runs with the defaults ``gag`` uses for it (general prototypes, margin). Also reported: the
general→domain rate under 5-fold cross-validation over the 400 general questions (a second, larger view
of the same failure), and the encoder's time per question (batched, and one at a time).

    python benchmarks/bench_routing_accuracy.py [--encoders minilm,expert-mean] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import DATA, ROOT, print_table, read_jsonl, setup_threads, write_results

from gag_core.routes import GENERAL
from gag_core.router import DEFAULT_PROTOTYPES, GENERAL_PROTOTYPES, PrototypeRouter, build_prototypes

POLICIES = ROOT / "tests" / "data" / "domain_quillfeather.jsonl"
GENERAL_DIR = ROOT / "gag_plugins" / "data"
ROUTES = [GENERAL, "minerals", "policies"]


def question_sets() -> dict[str, list[str]]:
    q = lambda rows: [r["question"] for r in rows]  # noqa: E731
    policies = read_jsonl(POLICIES)
    return {"general_train": q(read_jsonl(GENERAL_DIR / "general_questions.jsonl")),
            "general_test": q(read_jsonl(GENERAL_DIR / "general_questions_heldout.jsonl")),
            "minerals_train": q(read_jsonl(DATA / "train.jsonl")),
            "minerals_test": q(read_jsonl(DATA / "test.jsonl")) + q(read_jsonl(DATA / "dev.jsonl")),
            "policies_train": [r["question"] for r in policies if r["split"] == "prototype"],
            "policies_test": [r["question"] for r in policies if r["split"] == "test"]}


def make_encoder(name: str):
    from functools import cache

    from gag_core.router import make_encoder as build
    from gag_plugins.manager import collect

    @cache  # the encoder asks for the current backbone on every encode: load it once
    def backbone():
        from gag_core.models import EMBEDDED_ID, load_causal_lm, load_tokenizer

        return load_causal_lm(EMBEDDED_ID), load_tokenizer(EMBEDDED_ID), EMBEDDED_ID

    return build(collect("register_encoders"), name, backbone)


def router_for(encoder, emb: dict, general_train: torch.Tensor) -> PrototypeRouter:
    router = PrototypeRouter(encoder, getattr(encoder, "default_margin", 0.0))
    router.add_route(GENERAL, build_prototypes(general_train, k=getattr(encoder, "general_prototypes",
                                                                         GENERAL_PROTOTYPES)))
    router.add_route("minerals", build_prototypes(emb["minerals_train"], k=DEFAULT_PROTOTYPES))
    router.add_route("policies", build_prototypes(emb["policies_train"], k=DEFAULT_PROTOTYPES))
    return router


def routes(router, emb: torch.Tensor) -> list[str]:
    return [d.route for d in router.decide(router.score_embeddings(emb))]


def measure(name: str, sets: dict[str, list[str]]) -> dict:
    encoder = make_encoder(name)
    start = time.perf_counter()
    emb = {k: encoder.encode(v) for k, v in sets.items()}
    batched_ms = 1000 * (time.perf_counter() - start) / sum(len(v) for v in sets.values())
    single = []
    for q in sets["minerals_test"][:12]:
        t0 = time.perf_counter()
        encoder.encode([q])
        single.append(1000 * (time.perf_counter() - t0))
    router = router_for(encoder, emb, emb["general_train"])
    confusion = {}
    for gold in ROUTES:
        got = routes(router, emb[f"{gold}_test"])
        confusion[gold] = {r: got.count(r) for r in ROUTES}
    total = sum(sum(row.values()) for row in confusion.values())
    correct = sum(confusion[g][g] for g in ROUTES)
    n_general = sum(confusion[GENERAL].values())
    folds, stolen = 5, 0  # general -> domain under 5-fold CV over the general training questions
    order = torch.randperm(len(sets["general_train"]), generator=torch.Generator().manual_seed(0))
    for f in range(folds):
        test = order[f::folds]
        train = order[torch.isin(order, test, invert=True)]
        cv_router = router_for(encoder, emb, emb["general_train"][train])
        stolen += sum(r != GENERAL for r in routes(cv_router, emb["general_train"][test]))
    return {"encoder": encoder.name, "margin": router.margin, "general_prototypes": len(router.prototypes[GENERAL]),
            "accuracy": correct / total, "questions": total,
            "general_to_domain": 1 - confusion[GENERAL][GENERAL] / n_general,
            "minerals_recall": confusion["minerals"]["minerals"] / sum(confusion["minerals"].values()),
            "policies_recall": confusion["policies"]["policies"] / sum(confusion["policies"].values()),
            "cv_general_to_domain": stolen / len(sets["general_train"]),
            "encode_ms_batched": batched_ms, "encode_ms_single": statistics.median(single), "confusion": confusion}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", default="minilm,expert-mean")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/bench_routing_accuracy.json)")
    args = parser.parse_args()
    setup_threads(args.threads)
    sets = question_sets()
    rows = []
    for name in args.encoders.split(","):
        rows.append(measure(name.strip(), sets))
        print(f"{rows[-1]['encoder']}: accuracy {rows[-1]['accuracy']:.4f}")
    columns = ["encoder", "margin", "general_prototypes", "accuracy", "general_to_domain", "minerals_recall",
               "policies_recall", "cv_general_to_domain", "encode_ms_single", "encode_ms_batched"]
    print_table(rows, columns, "PPR on a mixed held-out set (general 80, minerals 320, policies 32)")
    write_results("bench_routing_accuracy", {"benchmark": "routing_accuracy", "threads": args.threads,
                                             "sets": {k: len(v) for k, v in sets.items()}, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
