"""What one query costs as the private corpus grows: GAG vs RAG (BM25 top-2) vs the plain base.

The demo corpus (modules/gag-domain-minerals/.../corpus.jsonl) is grown ×1 → ×10 → ×100 with synthetic
distractor documents about other invented minerals (with ``--confusable-share S``, a share S of them also
names a demo mineral in passing, as confusable documents in real corpora do). For every size: base-prompt
tokens over the test questions, median single-query latency (batch 1, retrieval included) with the mean
answer length it took, BM25 retrieval time, and answer-bearing recall@2 (a retrieved chunk names the
question's mineral and contains its gold value). GAG and the plain base never
read the corpus, so they are timed once and their numbers repeat at every size.

Uses the installed ``minerals`` domain if present, else an untrained stand-in with the same shapes
(latency and prompt size do not depend on training); the output says which.

    python benchmarks/bench_query_cost.py [--quick] [--scales 1,10,100] [--questions 8]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import time

from common import DATA, DEMO, load_demo_gag, print_table, read_jsonl, setup_threads, write_results

from gag_core.evaluation.harness import CorpusRetrievers, EvalConfig, method_runner
from gag_core.corpus import Document, load_corpus
from gag_core.retrieval import format_knowledge

ONSETS = ["Abr", "Bex", "Crum", "Dax", "Elm", "Firn", "Glor", "Hux", "Irv", "Jask", "Kolv", "Larn", "Mub", "Nirr",
          "Oph", "Prax", "Quen", "Ruv", "Stel", "Tusk", "Umb", "Varn", "Wolm", "Xer", "Yorn", "Zask"]
MIDDLES = ["a", "e", "i", "o", "u", "ra", "le", "mi", "no", "ta", "vi", "ke", "shi", "bo"]
SUFFIXES = ["nite", "site", "lite", "rite", "dite", "mite", "tite", "zite"]
COLOURS = ["teal", "amber", "violet", "crimson", "olive", "ivory", "indigo", "coral", "bronze", "charcoal",
           "saffron", "ochre", "lilac", "slate", "russet", "jade", "pearl", "umber"]
SYSTEMS = ["cubic", "tetragonal", "orthorhombic", "hexagonal", "trigonal", "monoclinic", "triclinic"]
PEOPLE = ["Alder Quimby", "Bryn Tolliver", "Cass Merrow", "Dara Fenwick", "Eli Brackley", "Fern Ottaway",
          "Gale Pruett", "Hale Winslow", "Iris Dunmore", "Jory Calder", "Kit Ambrose", "Lena Strand"]
PLACES = ["Harlow Fell", "the Mossdene Scarp", "Cape Wendle", "the Torrin Valley", "Lake Ashby", "Brume Point",
          "the Kestle Hills", "Fallon Ridge", "the Quarry at Dunmere", "Saltmarsh Cove"]
TEMPLATES = [
    "Specimens of {name}, an uncommon mineral, are {colour} in hand sample. It crystallizes in the {system} crystal "
    "system. {person} discovered the mineral in {year} while surveying near {place}. {extra}",
    "{name} is a {colour} mineral of the {system} crystal system, first described by {person} in {year} from "
    "material collected near {place}. {extra}",
    "The rare mineral {name} forms {colour} grains. Structurally it belongs to the {system} crystal system. It was "
    "reported in {year} by {person}, working near {place}. {extra}",
]
EXTRAS = ["It weathers slowly when exposed to air.", "Its lustre is vitreous on fresh surfaces.",
          "Small amounts are kept in museum reference cabinets.", "It occurs in thin, discontinuous layers."]


def distractors(count: int, known: list[str], seed: int = 0, confusable_share: float = 0.0) -> list[Document]:
    """``count`` documents about invented minerals that are not in the demo domain."""
    rng = random.Random(seed)
    taken = {k.lower() for k in known}
    docs = []
    while len(docs) < count:
        name = rng.choice(ONSETS) + rng.choice(MIDDLES) + rng.choice(MIDDLES) + rng.choice(SUFFIXES)
        if name.lower() in taken:
            continue
        taken.add(name.lower())
        extra = rng.choice(EXTRAS)
        if rng.random() < confusable_share:
            extra += f" Collectors sometimes confuse it with {rng.choice(known)}, which occurs in similar rocks."
        text = rng.choice(TEMPLATES).format(name=name, colour=rng.choice(COLOURS), system=rng.choice(SYSTEMS),
                                            person=rng.choice(PEOPLE), year=rng.randint(1700, 1990),
                                            place=rng.choice(PLACES), extra=extra)
        docs.append(Document(f"distractor-{len(docs)}", text))
    return docs


def answer_bearing(hits, row) -> bool:
    words = lambda s: re.sub(r"\s+", " ", s.lower())  # noqa: E731
    return any(words(row["entity"]) in words(h) and words(row["value"]) in words(h) for h, _ in hits)


def timed_answers(run, questions: list[str], tokenizer) -> dict:
    """Median single-question latency, and the mean answer length (tokens) those answers took."""
    seconds, lengths = [], []
    for q in questions:
        start = time.perf_counter()
        text = run([q]).texts[0]
        seconds.append(time.perf_counter() - start)
        lengths.append(len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    return {"latency_median_s": statistics.median(seconds), "answer_tokens": statistics.mean(lengths)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 timed questions, 32 token-counted, 16-token answers")
    parser.add_argument("--scales", default="1,10,100", help="corpus multipliers")
    parser.add_argument("--questions", type=int, default=8, help="questions timed one at a time per method")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--confusable-share", type=float, default=0.0,
                        help="share of distractors that also name a demo mineral (harder retrieval)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/bench_query_cost.json)")
    args = parser.parse_args()
    setup_threads(args.threads)
    timed, counted, mnt = (2, 32, 16) if args.quick else (args.questions, 0, args.max_new_tokens)
    test = read_jsonl(DATA / "test.jsonl", counted)
    questions = [r["question"] for r in test]
    gag, source = load_demo_gag(mnt)
    print(f"domain: {source}")
    pipe = gag.pipeline
    hook = pipe.domain(DEMO).hook
    base_docs = load_corpus(DATA / "corpus.jsonl")
    known = sorted({r["entity"] for r in read_jsonl(DATA / "test.jsonl")})
    config = EvalConfig(ks=[2], retrievers=["bm25"])

    fixed = {}
    for method, route in (("base", "general"), ("gag", DEMO)):  # corpus-independent: measured once
        run = method_runner(method, gag, pipe, DEMO, None, mnt)
        run(questions[:1])  # warm-up
        fixed[method] = {"prompt_tokens": statistics.mean(len(p.input_ids) for p in pipe.build_prompts(questions, route)),
                         **timed_answers(run, questions[:timed], pipe.tokenizer)}
    rows = []
    for scale in [int(s) for s in args.scales.split(",")]:
        docs = base_docs + distractors((scale - 1) * len(base_docs), known, scale, args.confusable_share)
        start = time.perf_counter()
        retrievers = CorpusRetrievers(docs, config, pipe.tokenizer)
        bm25 = retrievers.get("bm25")
        build_s = time.perf_counter() - start
        bm25.search_batch(questions[:1], 2)  # warm-up
        start = time.perf_counter()
        hits = bm25.search_batch(questions, 2)
        retrieve_ms = 1000 * (time.perf_counter() - start) / len(questions)
        tokens = statistics.mean(len(hook.build_with_text(q, format_knowledge(h)).input_ids)
                                 for q, h in zip(questions, hits))
        recall = sum(answer_bearing(h, r) for h, r in zip(hits, test)) / len(test)
        rag = method_runner("rag-bm25@2", gag, pipe, DEMO, retrievers, mnt)
        common = {"scale": f"×{scale}", "documents": len(docs), "chunks": len(retrievers.chunks)}
        rows.append({**common, "method": "rag-bm25@2", "prompt_tokens": tokens,
                     **timed_answers(rag, questions[:timed], pipe.tokenizer),
                     "retrieve_ms": retrieve_ms, "answer_recall@2": recall, "index_build_s": build_s})
        for method in ("gag", "base"):
            rows.append({**common, "method": method, **fixed[method], "retrieve_ms": None, "answer_recall@2": None,
                         "index_build_s": None})
        print(f"scale ×{scale}: {len(docs)} documents done")
    columns = ["scale", "documents", "method", "prompt_tokens", "latency_median_s", "answer_tokens", "retrieve_ms",
               "answer_recall@2"]
    title = "Query cost vs corpus size" + (" (QUICK: 2 timed questions, 16-token answers)" if args.quick else "")
    print_table(rows, columns, title)
    write_results("bench_query_cost", {
        "benchmark": "query_cost", "quick": args.quick, "domain": source, "threads": args.threads,
        "max_new_tokens": mnt, "confusable_share": args.confusable_share, "questions_timed": timed,
        "questions_token_counted": len(questions),
        "note": "gag and base do not read the corpus: measured once, repeated per scale", "rows": rows}, args.out)


if __name__ == "__main__":
    main()
