"""Compare Stage I variants side by side on the demo domain: what the expert learns from documents and QA.

Each variant trains its own expert (augmenters, Stage I) in its own work folder, then the expert alone answers
the held-out phrasings (test.jsonl), the corpus-only entities (corpus_only_test.jsonl, facts only in documents)
and the entities held out of Stage II (unaligned_test.jsonl). ``--gag`` also aligns a projector (Stage II) and
scores GAG on the same questions. Reports answer containment, Stage I time (augmenters included) and, with
``--gag``, Stage II time. Finished variants are kept in the JSON and not rerun.

    python benchmarks/bench_stage1.py [--variants today,mixed,...] [--gag] [--limit N] [--qa-generator ID]
    python benchmarks/bench_stage1.py --smoke      # tiny random models, a slice of the data: checks the script runs

Variants (the embedded profile's defaults otherwise):
    today                 the embedded defaults of the day (now: the grounded expert reading its top passage,
                          1 SFT epoch, token slots; before round 6: one DAPT epoch, then 8 QA epochs)
    today+paraphrase      + 3 paraphrases of every training question by the generator (Stage I only)
    today+sqa             + synthetic QA written from the passages by the generator
    mixed                 corpus and QA interleaved in every SFT epoch
    mixed+rewrite         + 4 rewrites per document (shuffled sentences, subject names for pronouns)
    mixed+rewrite+sqa     + synthetic QA written from the passages by the generator (default: the base model)
    grounded-k1, -k2      the expert reads the top 1 / 2 passages of the corpus before each question
                          (readout.context_passages; gag_core/grounding.py); -Nep: N QA epochs instead of 8, no DAPT; -a4: 4 Stage II epochs instead of 9
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "modules" / "gag-domain-minerals" / "gag_domain_minerals" / "data"
SETS = {"held_out": "test.jsonl", "corpus_only": "corpus_only_test.jsonl", "unaligned": "unaligned_test.jsonl"}
VARIANTS = {  # overrides of the embedded profile, by section
    "today": {},  # the embedded defaults of the day (grounded expert, 1 SFT epoch, token slots)
    "today+paraphrase": {"stage1": {"augment": ["paraphrase"]}},
    "today+sqa": {"stage1": {"augment": ["synthetic-qa"]}},
    "mixed": {"stage1": {"mix": "mixed"}},
    "mixed+rewrite": {"stage1": {"mix": "mixed", "augment": ["rewrite"]}},
    "mixed+rewrite+sqa": {"stage1": {"mix": "mixed", "augment": ["rewrite", "synthetic-qa"]}},
    "grounded-k1": {"readout": {"context_passages": 1}},
    "grounded-k2": {"readout": {"context_passages": 2}},
    "grounded-k1-4ep": {"readout": {"context_passages": 1}, "stage1": {"sft_epochs": 4, "dapt_epochs": 0}},
    "grounded-k2-4ep": {"readout": {"context_passages": 2}, "stage1": {"sft_epochs": 4, "dapt_epochs": 0}},
    "grounded-k1-1ep": {"readout": {"context_passages": 1}, "stage1": {"sft_epochs": 1, "dapt_epochs": 0}},
    "grounded-k2-1ep": {"readout": {"context_passages": 2}, "stage1": {"sft_epochs": 1, "dapt_epochs": 0}},
    "grounded-k2-2ep": {"readout": {"context_passages": 2}, "stage1": {"sft_epochs": 2, "dapt_epochs": 0}},
    "grounded-k1-1ep-a4": {"readout": {"context_passages": 1}, "stage1": {"sft_epochs": 1, "dapt_epochs": 0},
                           "stage2": {"epochs": 4}},
}
SMOKE_CONFIG = {
    "readout": {"kind": "multi_slot", "layers": [-1], "slots": 2, "max_new_tokens": 4},
    "stage1": {"lora_r": 4, "lora_alpha": 8, "top_layers": 3, "sft_epochs": 1, "batch_size": 8, "max_length": 96},
    "stage2": {"epochs": 1, "batch_size": 8, "dev_limit": 4, "max_new_tokens": 4},
    "prototypes": 4, "shard_size": 16, "readout_batch_size": 8,
}


def smoke_models(folder: Path) -> tuple[str, str]:
    """Tiny random base and expert (tests/tiny.py) saved under ``folder``."""
    sys.path.insert(0, str(ROOT))
    from tests import tiny

    tok = tiny.make_tokenizer(folder / "tokenizer")
    base = tiny.save_model(tiny.make_model("qwen3", len(tok), 64, seed=1), tok, folder / "base")
    expert = tiny.save_model(tiny.make_model("llama", len(tok), 48, seed=2), tok, folder / "expert")
    return str(base), str(expert)


def variant_config(name: str, args, models: tuple[str, str] | None):
    from gag_core.training.config import load_config

    variant = json.loads(json.dumps(VARIANTS[name]))
    stage1 = variant.setdefault("stage1", {})
    overrides = variant
    if models:
        overrides = {**SMOKE_CONFIG, "base": models[0], "expert": models[1],
                     **{k: {**SMOKE_CONFIG.get(k, {}), **v} for k, v in variant.items()}}
    generating = [n for n in ("synthetic-qa", "paraphrase") if n in stage1.get("augment", [])]
    if generating:
        options = {"generator": args.qa_generator} if args.qa_generator else {}
        stage1["augment_options"] = {n: {**options, **({"max_new_tokens": 8} if models else {})} for n in generating}
        overrides["stage1"]["augment_options"] = stage1["augment_options"]
    return load_config(None, "embedded", overrides)


@torch.no_grad()
def expert_answers(expert, tokenizer, system: str, questions: list[str], max_new_tokens: int = 24) -> list[str]:
    """The expert alone (its adapter on), prompted as in Stage I, greedy."""
    from gag_core.generation import GenerationOptions, generate, left_pad, pad_id
    from gag_core.readouts import expert_prompt_ids

    device = expert.get_input_embeddings().weight.device
    out = []
    for s in range(0, len(questions), 32):
        prompts = [expert_prompt_ids(tokenizer, q, system) for q in questions[s:s + 32]]
        ids, attn = left_pad(prompts, pad_id(tokenizer), device)
        out += [g.text for g in generate(expert, tokenizer, {"input_ids": ids, "attention_mask": attn},
                                         GenerationOptions(max_new_tokens=max_new_tokens))]
    return out


def gag_answers(module_dir: Path, base_id: str, questions: list[str]) -> list[str]:
    return [a.answer for a in module_answers(module_dir, base_id, questions)]


def module_answers(module_dir: Path, base_id: str, questions: list[str]) -> list:
    """A module's GAG answers (``gag_core.pipeline.Answer``): ``.answer`` is GAG's, ``.background`` what its expert
    wrote after reading its passages -- the expert alone, as the module runs it."""
    from gag_core.models import load_causal_lm, load_tokenizer
    from gag_core.module import DomainModule
    from gag_core.pipeline import GagPipeline

    pipe = GagPipeline(load_causal_lm(base_id), load_tokenizer(base_id), max_new_tokens=24,
                       expert_loader=lambda i: (load_causal_lm(i), load_tokenizer(i)))
    module = DomainModule.open(module_dir)
    pipe.add_domain(module)
    batches = [questions[s:s + 32] for s in range(0, len(questions), 32)]
    return [a for batch in batches for a in pipe.answer_batch(batch, module.name)]


def scores(answers: list[str], sets: dict[str, list[dict]]) -> dict[str, float]:
    from gag_core.evaluation.metrics import contains

    out, start = {}, 0
    for name, rows in sets.items():
        hits = [bool(contains(a, r["value"])) for a, r in zip(answers[start:start + len(rows)], rows)]
        out[name] = round(sum(hits) / max(len(hits), 1), 4)
        start += len(rows)
    return out


def run_variant(name: str, args, models, inputs, sets, root: Path) -> dict:
    from gag_core.training.augment_stage import augment_data
    from gag_core.training.stages import align_stage, cache_readouts, expert_stage, router_stage
    from gag_core.training.train_domain import TrainRun, open_training, write_module

    cfg = variant_config(name, args, models)
    ctx = open_training(inputs, cfg, TrainRun(work_dir=root / "work" / name.replace("+", "_")))
    started = time.time()
    counts = augment_data(ctx)
    expert = expert_stage(ctx)
    stage1_s = time.time() - started
    questions = [r["question"] for rows in sets.values() for r in rows]
    system = cfg.stage1.system_prompt or cfg.readout.background_prompt
    result = {"variant": name, "overrides": VARIANTS[name], "augmented": counts, "stage1_s": round(stage1_s, 1),
              "train_qa": len(ctx.data.qa), "expert": scores(expert_answers(expert.model, expert.tokenizer, system,
                                                                              ctx.expert_inputs(questions)), sets)}
    if args.gag:
        readouts = cache_readouts(ctx, expert)
        aligned = align_stage(ctx, expert, readouts)
        folder = write_module(ctx, root / "modules" / name.replace("+", "_"), expert, readouts, aligned,
                              router_stage(ctx, expert))
        result.update(stage2_s=round(aligned.seconds, 1), gag=scores(gag_answers(folder, ctx.base_id, questions), sets))
    return result


def print_table(results: list[dict], sets: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Stage I variants on the demo domain (answer containment)")
    for col in ["variant", *[f"expert {s}" for s in sets], *[f"GAG {s}" for s in sets], "Stage I s", "Stage II s"]:
        table.add_column(col)
    for r in results:
        gag = r.get("gag") or {}
        table.add_row(r["variant"], *[f"{100 * r['expert'][s]:.1f} %" for s in sets],
                      *[f"{100 * gag[s]:.1f} %" if s in gag else "–" for s in sets], f"{r['stage1_s']:.0f}",
                      f"{r['stage2_s']:.0f}" if "stage2_s" in r else "–")
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: " + ", ".join(VARIANTS))
    parser.add_argument("--gag", action="store_true", help="also run Stage II and score GAG")
    parser.add_argument("--limit", type=int, default=0, help="questions per set (0 = all)")
    parser.add_argument("--qa-generator", default=None, help="generator of synthetic QA (default: the base model)")
    parser.add_argument("--smoke", action="store_true", help="tiny random models and a slice of the data")
    parser.add_argument("--out", default=None, help="results JSON (default results/bench_stage1.json)")
    args = parser.parse_args()
    from gag_core.evaluation.harness import load_rows
    from gag_core.paths import gag_home
    from gag_core.training.data import TrainInputs

    torch.set_num_threads(2)
    root = gag_home() / ("bench-stage1-smoke" if args.smoke else "bench-stage1")
    models = smoke_models(root / "models") if args.smoke else None
    limit = args.limit or (4 if args.smoke else 0)
    sets = {name: load_rows(DATA / file, limit) for name, file in SETS.items()}
    inputs = TrainInputs("minerals", DATA / "train.jsonl", DATA / "corpus.jsonl", DATA / "dev.jsonl",
                         [DATA / "unaligned_train.jsonl"])
    if args.smoke:
        inputs = smoke_inputs(root / "data")
    results_dir = Path(__file__).parent / "results"
    default_out = root / "bench_stage1_smoke.json" if args.smoke else results_dir / "bench_stage1.json"
    out_path = Path(args.out or default_out)
    wanted = args.variants.split(",")
    done = {r["variant"]: r for r in (json.loads(out_path.read_text())["results"] if out_path.exists() else [])}
    for name in wanted:  # every variant measured so far stays in the file; a finished one is not rerun
        if name not in done or (args.gag and not done[name].get("gag")):
            done[name] = run_variant(name, args, models, inputs, sets, root)
            print(json.dumps(done[name]), flush=True)
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_text(json.dumps({"questions": {k: len(v) for k, v in sets.items()},
                                            "results": list(done.values())}, indent=1))
    print_table([done[name] for name in wanted], sets)


def smoke_inputs(folder: Path):
    """A slice of the demo data (the first 8 documents and 24 QA pairs) for --smoke."""
    from gag_core.training.data import TrainInputs

    folder.mkdir(parents=True, exist_ok=True)
    for name, keep in (("train.jsonl", 24), ("corpus.jsonl", 8), ("dev.jsonl", 4), ("unaligned_train.jsonl", 4)):
        lines = (DATA / name).read_text(encoding="utf-8").splitlines(keepends=True)[:keep]
        (folder / name).write_text("".join(lines), encoding="utf-8")
    return TrainInputs("minerals", folder / "train.jsonl", folder / "corpus.jsonl", folder / "dev.jsonl",
                       [folder / "unaligned_train.jsonl"])


if __name__ == "__main__":
    main()
