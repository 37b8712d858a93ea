"""Stage II ablation on the demo domain: which readout pooling/layers and alignment settings make GAG work.

Readouts are computed from one trained Stage I expert once (every layer's hidden states over the expert's
generated background, and the final prompt position), so each variant only pays for its own alignment.
Each variant trains a projector with the library's Stage II (``gag_core.training.stage2``) and reports
held-out-phrasing answer containment (overall and per answer type) at chosen epochs, plus greedy accuracy
on every 8th training question (does the projector fit what it was trained on?).

    python benchmarks/bench_alignment.py cache WORK/expert            # expert states -> GAG_HOME/bench-alignment
    python benchmarks/bench_alignment.py run NAME '{"slots": 4, "std": true, "noise": 0.5, "bs": 4}'
    python benchmarks/bench_alignment.py table                          # all finished variants

Variant settings (JSON): layers [-1], slots 1, pooling mean|last|norm_softmax, source gen|prompt, reencode false,
ln true, std false, noise 0.0, bs 16, lr 2e-3, epochs 8, eval_epochs [epochs], hidden 0, projector
mlp2x_gelu, div 0.001, ntest 80, seed 0. Writes results/alignment/NAME.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections import defaultdict
from pathlib import Path

import torch

from common import DATA, RESULTS, read_jsonl, setup_threads

OUT = RESULTS / "alignment"  # one JSON per variant


def scratch() -> Path:
    """Cached expert states and alignment work folders (hundreds of MB): under GAG_HOME, not the repository."""
    from gag_core.paths import gag_home

    return gag_home() / "bench-alignment"
SPLITS = ("train", "test")


def cache_states(adapter: Path, new_tokens: int) -> None:
    """Expert background generation for train/test and the hidden states of every layer, as safetensors:
    ``states/`` reads the background with the question in context, ``states-reencode/`` re-reads the
    background text alone (``ReadoutConfig.reencode``)."""
    from peft import PeftModel
    from safetensors.torch import save_file

    from gag_core.generation import pad_id
    from gag_core.models import get_profile, load_causal_lm, load_tokenizer
    from gag_core.readouts import ReadoutConfig, background_only, generate_background

    prof = get_profile("embedded")
    tok = load_tokenizer(prof.expert)
    expert = PeftModel.from_pretrained(load_causal_lm(prof.expert), str(adapter)).eval()
    cfg = ReadoutConfig(kind="multi_slot", max_new_tokens=new_tokens)
    for sub in ("states", "states-reencode"):
        (scratch() / sub).mkdir(parents=True, exist_ok=True)
    pad = pad_id(tok)
    for split in SPLITS:
        rows = read_jsonl(DATA / f"{split}.jsonl")
        gens, lengths, prompt_last, texts, alone, alone_lengths = [], [], [], [], [], []
        for s in range(0, len(rows), 16):
            ids, attn, gen = generate_background(expert, tok, [r["question"] for r in rows[s:s + 16]], cfg)
            with torch.no_grad():
                hs = torch.stack(expert(input_ids=ids, attention_mask=attn, output_hidden_states=True).hidden_states, 1)
            bg_ids, bg_mask = background_only(ids, gen, pad)
            with torch.no_grad():
                bg = torch.stack(expert(input_ids=bg_ids, attention_mask=bg_mask.long(), output_hidden_states=True).hidden_states, 1)
            first = gen.long().argmax(1)
            for b in range(ids.shape[0]):
                alone.append(bg[b][:, bg_mask[b]].transpose(0, 1).half())
                alone_lengths.append(alone[-1].shape[0])
                g = hs[b][:, gen[b]].transpose(0, 1)  # [n_gen, layers+1, H]
                gens.append(g.half())
                lengths.append(g.shape[0])
                prompt_last.append(hs[b][:, first[b] - 1])  # the position that predicts the first answer token
                texts.append(tok.decode(ids[b][gen[b]], skip_special_tokens=True))
            print(f"{split} {min(s + 16, len(rows))}/{len(rows)}", flush=True)
        last = torch.stack(prompt_last).contiguous()
        for sub, g, n in (("states", gens, lengths), ("states-reencode", alone, alone_lengths)):
            save_file({"gen": torch.cat(g).contiguous(), "lengths": torch.tensor(n), "prompt_last": last},
                      str(scratch() / sub / f"{split}.safetensors"))
            (scratch() / sub / f"{split}.json").write_text(json.dumps({"texts": texts, "adapter": str(adapter)}))


def load_states(split: str, reencode: bool = False) -> dict:
    from safetensors.torch import load_file

    t = load_file(str(scratch() / ("states-reencode" if reencode else "states") / f"{split}.safetensors"))
    gen = list(torch.split(t["gen"], t["lengths"].tolist()))
    return {"gen": [g.transpose(0, 1) for g in gen], "prompt_last": t["prompt_last"],
            "rows": read_jsonl(DATA / f"{split}.jsonl")}


def memory(states: dict, o: dict) -> torch.Tensor:
    from gag_core.readouts import ReadoutConfig, _finish, pool_segments

    layers, slots, pooling = o.get("layers", [-1]), o.get("slots", 1), o.get("pooling", "mean")
    out = []
    for i in range(len(states["rows"])):
        if o.get("source", "gen") == "prompt":
            out.append(torch.stack([states["prompt_last"][i][layer].float().unsqueeze(0) for layer in layers]))
        else:
            g = states["gen"][i].float()
            valid = torch.ones(g.shape[1], dtype=torch.bool)
            out.append(torch.stack([pool_segments(g[layer], valid, slots, pooling) for layer in layers]))
    m = torch.stack(out)
    return _finish(m, ReadoutConfig()) if o.get("ln", True) else m


def run_variant(name: str, o: dict) -> dict:
    from accelerate import Accelerator

    from gag_core.evaluation.metrics import contains
    from gag_core.injection import InjectionHook
    from gag_core.models import get_profile, load_causal_lm, load_tokenizer
    from gag_core.projectors import ProjectorBundle, ProjectorConfig
    from gag_core.training.config import AlignConfig
    from gag_core.training.evaluate import generate_with_memory
    from gag_core.training.stage2 import AlignmentModel, align_projector, make_examples

    train, test = load_states("train", o.get("reencode", False)), load_states("test", o.get("reencode", False))
    test_rows = test["rows"][: o.get("ntest", 80)]
    mtr, mte = memory(train, o), memory(test, o)[: len(test_rows)]
    prof = get_profile("embedded")
    base, tok = load_causal_lm(prof.base), load_tokenizer(prof.base)
    hook = InjectionHook(tok)
    emb_rms = float(base.get_input_embeddings().weight.float().pow(2).mean().sqrt())
    pc = ProjectorConfig(kind=o.get("projector", "mlp2x_gelu"), expert_hidden=mtr.shape[-1],
                         base_hidden=base.get_input_embeddings().weight.shape[1], slots=mtr.shape[2], layers=mtr.shape[1],
                         output_scale=emb_rms, hidden=o.get("hidden", 0), standardize=bool(o.get("std")))
    torch.manual_seed(o.get("seed", 0))
    bundle = ProjectorBundle(pc)
    bundle.fit_standardizer(mtr)
    model = AlignmentModel(bundle, base, 0)
    rows = train["rows"]
    examples = make_examples(hook, tok, [r["question"] for r in rows], [r["answer"] for r in rows], mtr, pc.slots)
    epochs = o.get("epochs", 8)
    config = AlignConfig(epochs=epochs, lr=o.get("lr", 2e-3), batch_size=o.get("bs", 16), diversity_alpha=o.get("div", 0.001),
                         standardize=bool(o.get("std")), input_noise=o.get("noise", 0.0), checkpoint_every=10**9)
    eval_at = set(o.get("eval_epochs", [epochs]))
    work = scratch() / "work" / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.time()
    result = {"name": name, "settings": o, "evals": []}

    def accuracy(rs, mem):
        with torch.no_grad():
            projected = bundle(mem)
        preds = generate_with_memory(base, tok, hook, [r["question"] for r in rs], projected, 24)
        per = defaultdict(list)
        for p, r in zip(preds, rs):
            per[r["attribute"]].append(bool(contains(p, r["value"])))
        return sum(sum(v) for v in per.values()) / len(rs), {k: round(100 * sum(v) / len(v)) for k, v in per.items()}, preds

    def on_epoch_end(epoch: int) -> dict:
        if epoch not in eval_at:
            return {}
        acc, per, preds = accuracy(test_rows, mte)
        record = {"epoch": epoch, "test": acc, "per_type": per, "elapsed_s": round(time.time() - started)}
        if epoch == max(eval_at):
            record["train_every_8th"] = accuracy(rows[::8], mtr[::8])[0]
            record["samples"] = [[r["value"], p] for r, p in zip(test_rows[:10], preds[:10])]
        result["evals"].append(record)
        print(json.dumps(record), flush=True)
        return {"test": acc}

    def progress(stage, i, n, d):
        if i % 40 == 0:
            print(f"[{time.time() - started:6.0f}s] {stage} {i}/{n} {d}", flush=True)

    align_projector(model, tok, examples, config=config, workdir=work, accelerator=Accelerator(cpu=True),
                    progress=progress, on_epoch_end=on_epoch_end)
    result["align_s"] = round(time.time() - started, 1)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return result


def table() -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="Stage II ablation (demo domain, held-out phrasings; expert alone is the ceiling)")
    for col in ("variant", "settings", "test", "colour", "crystal", "discoverer", "site", "year", "train fit", "align s"):
        t.add_column(col)
    for f in sorted(OUT.glob("*.json")):
        r = json.loads(f.read_text())
        last = r["evals"][-1]
        per = last["per_type"]
        settings = " ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in r["settings"].items()
                            if k not in ("eval_epochs",))
        t.add_row(r["name"], settings.replace(" ", "\n") if len(settings) > 30 else settings, f"{100 * last['test']:.1f} % (ep {last['epoch']})",
                  *[str(per.get(k, "")) for k in ("colour", "crystal_system", "discoverer", "site", "year")],
                  f"{100 * last.get('train_every_8th', last.get('train_fit_phrasing0', float('nan'))):.0f} %",
                  str(r.get("align_s", "")))
    Console(width=max(Console().width, 120)).print(t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache", help="expert states of train/test questions from a trained Stage I adapter")
    c.add_argument("adapter", type=Path)
    c.add_argument("--new-tokens", type=int, default=24)
    r = sub.add_parser("run", help="align one variant and evaluate it")
    r.add_argument("name")
    r.add_argument("settings", help="JSON object of variant settings (see the module docstring)")
    sub.add_parser("table", help="print the finished variants")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    setup_threads(args.threads)
    if args.cmd == "cache":
        cache_states(args.adapter, args.new_tokens)
    elif args.cmd == "run":
        run_variant(args.name, json.loads(args.settings))
    else:
        table()


if __name__ == "__main__":
    main()
