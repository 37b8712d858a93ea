"""Training on tiny models: Stage II equivalence, end to end, kill -9 resume per stage, data parallel."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gag_core.errors import ConfigError, DataError, TrainingError
from gag_core.injection import InjectionHook, merge_memory
from gag_core.module import DomainModule
from gag_core.projectors import ProjectorBundle, ProjectorConfig
from gag_core.training.data import load_qa
from gag_core.training.stage2 import IGNORE, AlignmentModel, cache_prefixes, collate, make_examples
from tests import tiny

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "scripts" / "train_tiny.py"
TINY_CONFIG = {
    "readout": {"kind": "multi_slot", "layers": [-1, -2], "slots": 2, "max_new_tokens": 4},
    "stage1": {"lora_r": 4, "top_layers": 3, "lora_alpha": 8, "dapt_epochs": 1, "sft_epochs": 2, "batch_size": 4, "max_length": 64},
    "stage2": {"epochs": 2, "batch_size": 4, "checkpoint_every": 2, "dev_limit": 4, "max_new_tokens": 4},
    "prototypes": 4, "shard_size": 4, "readout_batch_size": 4,
}


def write_data(folder: Path, n: int = 12) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    colours = ["teal", "amber", "violet", "coral"]
    rows = [{"question": f"What colour is mineral {i}?", "answer": f"It is {colours[i % 4]}.", "value": colours[i % 4]}
            for i in range(n)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"text": f"Mineral {i} is {colours[i % 4]}. " * 3}) + "\n"
                                                 for i in range(n)))
    (folder / "config.json").write_text(json.dumps(TINY_CONFIG))
    return folder


def run_script(tiny_paths, data, out, kill_at="", env_extra=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    return subprocess.run([sys.executable, str(SCRIPT), tiny_paths["base"], tiny_paths["expert"], str(data), str(out),
                           kill_at], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("arch", ["qwen3", "llama"])
def test_cached_prefix_loss_equals_full_sequence_loss(arch, tiny_tokenizer):
    base = tiny.make_model(arch, len(tiny_tokenizer), 64, seed=1).requires_grad_(False)
    bundle = ProjectorBundle(ProjectorConfig(expert_hidden=48, base_hidden=64, slots=2, layers=3))
    model = AlignmentModel(bundle, base)
    questions = ["What colour is x?", "a much longer question about the discovered mineral crystal system?", "hi"]
    examples = make_examples(InjectionHook(tiny_tokenizer), tiny_tokenizer, questions,
                             ["teal.", "It is cubic and hexagonal.", "0123"], torch.randn(3, 3, 2, 48), 2)
    fresh, _ = model(*collate(base, examples, 0, "cpu")[:7], 2)
    cache_prefixes(base, examples, 0, "cpu")
    cached, _ = model(*collate(base, examples, 0, "cpu")[:7], 2)
    total, count = 0.0, 0
    for e in examples:  # reference: each full sequence on its own, no cache
        ids = torch.tensor([e.prefix + e.suffix])
        labels = torch.tensor([[IGNORE] * len(e.prefix) + e.labels])[:, 1:]
        mask = torch.zeros_like(ids, dtype=torch.bool)
        mask[0, len(e.prefix):len(e.prefix) + 2] = True
        embeds = merge_memory(base.get_input_embeddings()(ids), mask, bundle(e.memory[None]))
        logits = base.get_output_embeddings()(base.get_decoder()(inputs_embeds=embeds).last_hidden_state[:, :-1])
        total = total + F.cross_entropy(logits[labels != IGNORE], labels[labels != IGNORE], reduction="sum")
        count += int((labels != IGNORE).sum())
    assert torch.allclose(fresh, total / count, atol=1e-5)
    assert torch.allclose(cached, fresh, atol=1e-6)


@pytest.mark.parametrize("arch", ["qwen3", "llama"])
def test_frozen_trunk_gives_the_same_loss_and_lora_gradients(arch, tiny_tokenizer):
    from gag_core.training.config import ExpertConfig
    from gag_core.training.stage1 import (SparseCausalLMLoss, add_lora, attach_trunk, sft_examples, trunk_layers,
                                          trunk_matches)
    from gag_core.training.stage1 import collate as stage1_collate

    model = add_lora(tiny.make_model(arch, len(tiny_tokenizer), 48, seed=3), ExpertConfig(lora_r=4, top_layers=2))
    for name, p in model.named_parameters():  # LoRA B starts at zero; give it values so every path matters
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    frozen = trunk_layers(model, ExpertConfig(top_layers=2))
    assert frozen == 4
    examples = sft_examples(tiny_tokenizer, [("What colour is x?", "teal."), ("a much longer question about the "
                            "discovered mineral crystal system?", "It is cubic and hexagonal."), ("hi", "0123")], None, 64)
    with_trunk = attach_trunk(model, examples, frozen, 0, "cpu", batch_size=2)  # batches pad differently
    assert [len(e) for e in with_trunk] == [3, 3, 3]

    def loss_and_grads(batch, trunk_layers_):
        model.zero_grad()
        loss = SparseCausalLMLoss(model, trunk_layers_)(*stage1_collate(batch, 0, "cpu"))
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    full, full_grads = loss_and_grads(examples, 0)
    fast, fast_grads = loss_and_grads(with_trunk, frozen)
    assert torch.allclose(full, fast, atol=1e-5)
    assert full_grads.keys() == fast_grads.keys() and len(full_grads) > 0
    for name in full_grads:
        assert torch.allclose(full_grads[name], fast_grads[name], atol=1e-5), name
    # the guard train_expert runs first: the right trunk passes; a trunk the decoder would not produce (as for a
    # model that rescales inputs_embeds) fails, and training falls back to the full forward
    assert trunk_matches(SparseCausalLMLoss(model, frozen), with_trunk, 0, "cpu")
    scaled = [(x, y, 2.0 * t) for x, y, t in with_trunk]
    assert not trunk_matches(SparseCausalLMLoss(model, frozen), scaled, 0, "cpu")
    # in bf16 (the embedded profile on CPUs with native bf16) rounding alone moves the loss past float32's
    # tolerance: the right trunk must still pass, or Stage I silently falls back to the slow full forward
    model.to(torch.bfloat16)
    half = attach_trunk(model, examples, frozen, 0, "cpu", batch_size=2)
    assert trunk_matches(SparseCausalLMLoss(model, frozen), half, 0, "cpu")
    assert len(model.get_base_model().get_decoder().layers) == 6  # every layer is back in place
    assert all(type(layer).__name__.endswith("DecoderLayer") for layer in model.get_base_model().get_decoder().layers)


def test_bad_rows_are_reported_with_line_numbers(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "q1", "answer": "a1"}\nnot json\n{"question": "", "answer": "x"}\n')
    with pytest.raises(DataError, match=r"line 2.*line 3"):
        load_qa(path)
    path.write_text('{"question": "q1", "answer": "a1"}\n')
    with pytest.raises(DataError, match="at least"):
        load_qa(path)


def test_train_domain_end_to_end_produces_a_working_module(tiny_paths, tmp_path):
    from gag_core.models import load_causal_lm, load_tokenizer
    from gag_core.pipeline import GagPipeline

    data = write_data(tmp_path / "data")
    result = run_script(tiny_paths, data, tmp_path / "module")
    assert result.returncode == 0, result.stderr[-3000:]
    module = DomainModule.open(tmp_path / "module")
    assert module.manifest.training["data"]["qa_pairs"] == 12
    assert "dev_containment" in module.manifest.training["metrics"]
    base = load_causal_lm(tiny_paths["base"])
    pipe = GagPipeline(base, load_tokenizer(tiny_paths["base"]),
                       expert_loader=lambda i: (load_causal_lm(i), load_tokenizer(i)), max_new_tokens=4)
    pipe.add_domain(module)
    assert pipe.answer("What colour is mineral 3?", "tinydom").route == "tinydom"


@pytest.mark.parametrize("stage", ["stage1", "readout", "stage2"])
def test_kill_9_then_rerun_resumes_and_finishes(stage, tiny_paths, tmp_path):
    data = write_data(tmp_path / "data")
    out = tmp_path / "module"
    killed = run_script(tiny_paths, data, out, kill_at=stage)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not out.exists()
    home = Path(os.environ["GAG_HOME"])
    work = next((home / "work").iterdir())
    before = sorted(p.name for p in work.iterdir())
    finished = run_script(tiny_paths, data, out)
    assert finished.returncode == 0, finished.stderr[-3000:]
    DomainModule.open(out)
    log = [json.loads(line) for line in (work / "train-log.jsonl").read_text().splitlines()]
    if stage == "readout":
        assert "readouts-train" in before  # the first shard survived and was not recomputed
        assert any(p.name.startswith("shard-") for p in (work / "readouts-train").iterdir())
    else:
        assert any(r.get("event") == "resumed" and r["stage"].startswith(stage) for r in log), log[-5:]


def test_kill_9_during_synthetic_qa_then_rerun_generates_only_the_rest(tiny_paths, tmp_path):
    data = write_data(tmp_path / "data", n=6)
    config = json.loads(json.dumps(TINY_CONFIG))
    config["stage1"].update(augment=["synthetic-qa"],
                            augment_options={"synthetic-qa": {"batch_size": 2, "max_new_tokens": 4}})
    (data / "config.json").write_text(json.dumps(config))
    out = tmp_path / "module"

    def generated(run):
        return [line for line in run.stdout.splitlines() if line.startswith("GENERATED ")]

    killed = run_script(tiny_paths, data, out, kill_at="augment")
    assert killed.returncode == -9, killed.stderr[-3000:]
    first = generated(killed)
    assert len(first) == 2 and not out.exists()  # one batch written, then SIGKILL
    finished = run_script(tiny_paths, data, out)
    assert finished.returncode == 0, finished.stderr[-3000:]
    rest = generated(finished)
    assert rest and not set(rest) & set(first)  # the written batch is read back, never generated again
    DomainModule.open(out)
    work = next((Path(os.environ["GAG_HOME"]) / "work").iterdir())
    rows = (work / "augment" / "synthetic-qa.jsonl").read_text().splitlines()
    assert len(rows) == len(first) + len(rest)
    log = [json.loads(line) for line in (work / "train-log.jsonl").read_text().splitlines()]
    done = [r for r in log if r.get("stage") == "augment-synthetic-qa" and r.get("event") == "done"]
    assert done and done[-1]["items"] == len(rows)


def test_non_finite_loss_stops_with_a_report(tiny_paths, tmp_path):
    from accelerate import Accelerator

    from gag_core.training.loop import LoopSpec, run_loop

    model = torch.nn.Linear(2, 1)

    def loss_fn(m, batch):
        return m(torch.ones(1, 2)).sum() * float("nan"), {"nll": float("nan")}

    with pytest.raises(TrainingError, match="loss became nan.*Lower the learning rate"):
        run_loop(LoopSpec("unit", 1, 1e-3), accelerator=Accelerator(cpu=True), model=model,
                 batches=lambda e: [[0]], loss_fn=loss_fn, ckpt_dir=tmp_path / "ckpt")


def test_data_parallel_two_cpu_processes(tiny_paths, tmp_path):
    data = write_data(tmp_path / "data")
    out = tmp_path / "module"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29617",
           str(SCRIPT), tiny_paths["base"], tiny_paths["expert"], str(data), str(out)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    module = DomainModule.open(out)
    assert module.manifest.training["data"]["qa_pairs"] == 12


def test_anchor_is_fitted_on_the_shared_vocabulary_and_refuses_foreign_tokenizers(tiny_paths):
    from gag_core.models import load_causal_lm, load_tokenizer
    from gag_core.projectors import ProjectorBundle, ProjectorConfig, anchor_on_vocabulary

    base, expert = load_causal_lm(tiny_paths["base"]), load_causal_lm(tiny_paths["expert"])
    tok = load_tokenizer(tiny_paths["base"])
    bundle = ProjectorBundle(ProjectorConfig(kind="anchored_residual", expert_hidden=48, base_hidden=64, slots=2,
                                             layers=1, output_scale=0.02))
    before = bundle.projector.anchor_map.weight.clone()
    fit = anchor_on_vocabulary(bundle, expert, tok, base, tok)
    assert fit["shared_tokens"] == len(tok.get_vocab())
    assert not torch.equal(before, bundle.projector.anchor_map.weight)
    # the fitted map is the least-squares one: its residual is orthogonal to the expert embeddings
    e, b = expert.get_input_embeddings().weight.detach(), base.get_input_embeddings().weight.detach()
    with torch.no_grad():
        fitted = bundle.projector.anchor_map(e) * 0.02
    assert float((e.T @ (fitted - b)).norm() / (e.T @ b).norm()) < 1e-3

    class Foreign:  # a tokenizer from another model family: no token strings in common
        @staticmethod
        def get_vocab():
            return {f"zz{i}": i for i in range(400)}

    with pytest.raises(ConfigError, match="share only 0 of 400"):
        anchor_on_vocabulary(bundle, expert, Foreign(), base, tok)


def test_configs_refuse_bad_values_naming_the_setting_the_value_and_the_fix(tmp_path):
    from gag_core.training.config import AlignConfig, ExpertConfig, load_config

    for overrides, named in [({"stage2": {"epochs": 0}}, "stage2.epochs = 0"),
                             ({"stage1": {"lr": "fast"}}, "stage1.lr = 'fast'"),
                             ({"stage1": {"lora_dropout": 1.5}}, "stage1.lora_dropout = 1.5"),
                             ({"stage2": {"projector": "mlp3x"}}, "stage2.projector = 'mlp3x'"),
                             ({"shard_size": 0}, "shard_size = 0"),
                             ({"readout": "multi_slot"}, "readout = 'multi_slot'")]:
        with pytest.raises(ConfigError, match=re.escape(named) + ".*expected.*--config"):
            load_config(None, "embedded", overrides)
    with pytest.raises(ConfigError, match="stage1.batch_size = 0.*an integer >= 1"):
        ExpertConfig(batch_size=0)
    with pytest.raises(ConfigError, match="stage2.cache_prefix = 'yes'.*true or false"):
        AlignConfig(cache_prefix="yes")
    (tmp_path / "bad.json").write_text(json.dumps({"stage2": {"dev_every": -1}}))
    with pytest.raises(ConfigError, match="stage2.dev_every = -1"):
        load_config(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="readout.kind = 'custom' cannot be trained.*final_token, multi_slot"):
        load_config(None, "embedded", {"readout": {"kind": "custom"}})
    cfg = load_config(None, "embedded", {"stage2": {"epochs": None, "projector": "mlp2x_gelu"}, "base": None})
    assert (cfg.stage2.epochs, cfg.stage2.projector, cfg.base) == (None, "mlp2x_gelu", None)  # None = not given


def test_unset_epochs_mean_one_thing_for_a_grounded_expert_and_another_for_a_plain_one():
    from gag_core.training.config import load_config, resolved

    cfg = load_config(None, "embedded")
    assert cfg.readout.context_passages == 1 and cfg.stage1.sft_epochs is None and cfg.stage2.epochs is None
    grounded, plain = resolved(cfg, grounded=True), resolved(cfg, grounded=False)
    assert (grounded.stage1.dapt_epochs, grounded.stage1.sft_epochs, grounded.stage2.epochs) == (0, 1, 2)
    assert (plain.stage1.dapt_epochs, plain.stage1.sft_epochs, plain.stage2.epochs) == (1, 8, 9)
    given = resolved(load_config(None, "embedded", {"stage1": {"sft_epochs": 3}}), grounded=True)
    assert (given.stage1.sft_epochs, given.stage2.epochs) == (3, 2)  # a set value is used as given
    paper = load_config(None, "paper")
    assert resolved(paper, grounded=False) == paper  # the paper profile sets every count


def test_readout_kinds_start_from_the_one_table_of_defaults():
    from gag_core.readouts import BUILTIN_READOUTS, KIND_DEFAULTS
    from gag_core.training.config import load_config, profile_defaults, with_readout_kind

    for kind, defaults in KIND_DEFAULTS.items():
        own = BUILTIN_READOUTS[kind]().config  # a readout built without a config
        assert {k: getattr(own, k) for k in defaults} == defaults
        switched = with_readout_kind(load_config(None, "embedded"), kind)
        if kind != "multi_slot":  # the embedded profile's own kind keeps its layer-0 settings
            assert {k: getattr(switched.readout, k) for k in defaults} == defaults
            assert switched.readout.max_new_tokens == profile_defaults("embedded").readout.max_new_tokens
    paper = profile_defaults("paper").readout
    assert {k: getattr(paper, k) for k in KIND_DEFAULTS["multi_slot"]} == KIND_DEFAULTS["multi_slot"]
    with pytest.raises(ConfigError, match="readout.kind = 'custom'"):
        with_readout_kind(load_config(None, "embedded"), "custom")


def test_sft_refuses_examples_whose_whole_answer_is_cut(tiny_tokenizer):
    from gag_core.training.stage1 import sft_examples

    pairs = [("What colour is mineral 3?", "It is teal.")] * 2
    assert len(sft_examples(tiny_tokenizer, pairs, None, 64)) == 2
    with pytest.raises(DataError, match="2 of 2 QA pairs lose their whole answer at stage1.max_length=8"):
        sft_examples(tiny_tokenizer, pairs, None, 8)
