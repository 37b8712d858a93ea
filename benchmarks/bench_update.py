"""`gag update-domain` on the demo domain, in one run: new entities, old entities, corrections, time.

1. Hold out ~20 % of the QA entities (seeded): the module is trained (`train_domain`, embedded defaults) on the
   others, without the held-out entities' QA or documents. Its wall time is the full-train time.
2. GAG answers the old entities' held-out phrasings (test.jsonl) before the update.
3. The update (`update_domain`, default replay 0.5) adds the held-out entities' QA and documents, and corrects
   `--corrections` existing facts (both training phrasings of each, with another value of the same attribute).
4. After it: GAG and the updated expert alone on the new entities' held-out phrasings, per answer type; GAG on
   the old entities' held-out phrasings; on the corrected facts' held-out phrasings, how often the new and the
   old answer are given; update time against full-train time.

    python benchmarks/bench_update.py [--holdout 0.2] [--corrections 10] [--epochs N] [--out FILE]
    python benchmarks/bench_update.py --smoke      # tiny random models, a slice of the data: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from bench_stage1 import SMOKE_CONFIG, gag_answers, module_answers, smoke_models

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "modules" / "gag-domain-minerals" / "gag_domain_minerals" / "data"
ATTRIBUTES = ("colour", "crystal_system", "discoverer", "site", "year")


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def corrected_rows(train: list[dict], old_entities: list[str], n: int, seed: int) -> list[dict]:
    """``n`` facts of old entities, each given another value of its attribute (every training phrasing)."""
    rng = random.Random(seed)
    values = {a: sorted({r["value"] for r in train if r["attribute"] == a}) for a in ATTRIBUTES}
    facts = sorted({(r["entity"], r["attribute"]) for r in train if r["entity"] in old_entities})
    out = []
    for entity, attribute in rng.sample(facts, min(n, len(facts))):
        rows = [r for r in train if (r["entity"], r["attribute"]) == (entity, attribute)]
        new = rng.choice([v for v in values[attribute] if v != rows[0]["value"]])
        out += [{**r, "answer": r["answer"].replace(r["value"], new), "value": new, "old_value": r["value"]}
                for r in rows if r["value"] in r["answer"]]
    return out


def split_data(folder: Path, holdout: float, n_corrections: int, seed: int, entities: int = 0) -> dict:
    """The files of the run: the base module's QA/corpus, the update's QA/corpus, and the evaluation sets."""
    train, test, corpus = read(DATA / "train.jsonl"), read(DATA / "test.jsonl"), read(DATA / "corpus.jsonl")
    names = sorted({r["entity"] for r in train})[:entities or None]
    new = sorted(random.Random(seed).sample(names, max(1, round(holdout * len(names)))))
    old = [e for e in names if e not in new]
    train = [r for r in train if r["entity"] in names]
    fixes = corrected_rows(train, old, n_corrections, seed)
    fixed = {(r["entity"], r["attribute"]): r for r in fixes}
    is_new = [any(e in d["text"] for e in new) for d in corpus]
    return {
        "base_qa": write(folder / "base_train.jsonl", [r for r in train if r["entity"] in old]),
        "base_corpus": write(folder / "base_corpus.jsonl", [d for d, n in zip(corpus, is_new) if not n]),
        "update_qa": write(folder / "update.jsonl", [r for r in train if r["entity"] in new] + fixes),
        "update_corpus": write(folder / "update_corpus.jsonl", [d for d, n in zip(corpus, is_new) if n]),
        "new_test": [r for r in test if r["entity"] in new],
        "old_test": [r for r in test if r["entity"] in old and (r["entity"], r["attribute"]) not in fixed],
        "fixed_test": [{**r, "value": fixed[k]["value"], "old_value": r["value"]} for r in test
                       if (k := (r["entity"], r["attribute"])) in fixed],
        "entities": {"old": len(old), "new": len(new)}, "corrected_facts": len(fixed)}


def rate(answers: list[str], rows: list[dict], key: str = "value") -> float:
    from gag_core.evaluation.metrics import contains

    return round(sum(bool(contains(a, r[key])) for a, r in zip(answers, rows)) / max(len(rows), 1), 4)


def per_type(answers: list[str], rows: list[dict]) -> dict:
    out = {"all": rate(answers, rows)}
    for a in ATTRIBUTES:
        picked = [(x, r) for x, r in zip(answers, rows) if r["attribute"] == a]
        if picked:
            out[a] = rate([x for x, _ in picked], [r for _, r in picked])
    return out


def run(args, root: Path) -> dict:
    from gag_core.training.config import load_config
    from gag_core.training.data import TrainInputs
    from gag_core.training.train_domain import TrainRun, train_domain
    from gag_core.training.update import UpdateInputs, update_domain

    models = smoke_models(root / "models") if args.smoke else None
    overrides = {**SMOKE_CONFIG, "base": models[0], "expert": models[1]} if models else None
    config = load_config(None, "embedded", overrides)
    files = split_data(root / "data", args.holdout, args.corrections, args.seed, entities=6 if args.smoke else 0)
    base_id = config.base or "embedded"
    started = time.time()
    module = train_domain(TrainInputs("minerals", files["base_qa"], files["base_corpus"], DATA / "dev.jsonl",
                                      [DATA / "unaligned_train.jsonl"]), config, root / "module",
                          TrainRun(work_dir=root / "work-train"))
    full_s = time.time() - started
    old_q = [r["question"] for r in files["old_test"]]
    before = gag_answers(module, base_id, old_q)
    update = update_domain(UpdateInputs(module, files["update_qa"], files["update_corpus"], epochs=args.epochs),
                           root / "module-updated")
    new_q, fixed_q = [r["question"] for r in files["new_test"]], [r["question"] for r in files["fixed_test"]]
    answers = module_answers(update.folder, base_id, new_q + old_q + fixed_q)
    after = [a.answer for a in answers]
    gag_new, gag_old, gag_fixed = after[:len(new_q)], after[len(new_q):len(new_q) + len(old_q)], after[-len(fixed_q):]
    # the updated expert alone: the background it wrote for GAG after reading its passages (as the module runs it)
    expert = [a.background or "" for a in answers[:len(new_q)] + answers[-len(fixed_q):]]
    return {
        "entities": files["entities"], "corrected_facts": files["corrected_facts"],
        "new_entities": {"gag": per_type(gag_new, files["new_test"]),
                         "expert": per_type(expert[:len(new_q)], files["new_test"])},
        "old_entities": {"gag_before": per_type(before, files["old_test"]), "gag_after": per_type(gag_old, files["old_test"])},
        "corrections": {"gag_new_answer": rate(gag_fixed, files["fixed_test"]),
                        "gag_old_answer": rate(gag_fixed, files["fixed_test"], "old_value"),
                        "expert_new_answer": rate(expert[len(new_q):], files["fixed_test"]),
                        "expert_old_answer": rate(expert[len(new_q):], files["fixed_test"], "old_value")},
        "time_s": {"full_train": round(full_s, 1), "update": round(update.seconds, 1),
                   "ratio": round(update.seconds / full_s, 3)},
        "update": update.history}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holdout", type=float, default=0.2, help="fraction of the QA entities added by the update")
    parser.add_argument("--corrections", type=int, default=10, help="existing facts whose answer the update changes")
    parser.add_argument("--epochs", type=int, default=None, help="Stage I epochs of the update (default: the module's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny random models and a slice of the data")
    parser.add_argument("--out", default=None, help="results JSON (default results/bench_update.json; --smoke: in "
                                                    "GAG_HOME)")
    args = parser.parse_args()
    if args.smoke:
        args.corrections = min(args.corrections, 2)
    from gag_core.paths import gag_home

    torch.set_num_threads(2)
    root = gag_home() / ("bench-update-smoke" if args.smoke else "bench-update")
    result = run(args, root)
    out = Path(args.out or (root / "bench_update_smoke.json" if args.smoke else
                            Path(__file__).parent / "results" / "bench_update.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
