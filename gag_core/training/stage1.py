"""Stage I: the domain expert as a LoRA adapter (peft) on the expert backbone.

Domain-adaptive pretraining on the corpus (causal-LM loss), then supervised fine-tuning on the QA pairs
with the loss on answer tokens only, inside the expert's chat template. The system prompt is the readout's
background prompt, so at readout time the expert writes exactly the kind of text it was trained to write.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..readouts import expert_prompt_ids
from .config import ExpertConfig
from .loop import LoopSpec, run_loop, trainable_state

IGNORE = -100


class SparseCausalLMLoss(nn.Module):
    """Cross-entropy on labelled positions only; the vocabulary projection runs just where it is needed."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids, attention_mask, labels):
        inner = self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm
        hidden = inner.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        target = labels[:, 1:]
        keep = target != IGNORE
        logits = inner.get_output_embeddings()(hidden[:, :-1][keep])
        return F.cross_entropy(logits.float(), target[keep])


def add_lora(model, config: ExpertConfig, adapter_name: str = "default"):
    from peft import LoraConfig, get_peft_model

    present = {name.split(".")[-1] for name, _ in model.named_modules()}
    targets = [t for t in config.target_modules if t in present] or ["q_proj", "v_proj"]
    n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    layers = list(range(n_layers - config.top_layers, n_layers)) if 0 < config.top_layers < n_layers else None
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, layers_to_transform=layers, task_type="CAUSAL_LM")
    model.requires_grad_(False)
    return get_peft_model(model, lora, adapter_name=adapter_name)


def sft_examples(tokenizer, pairs: list[tuple[str, str]], system_prompt: str | None, max_length: int):
    eos = tokenizer.eos_token_id
    out = []
    for question, answer in pairs:
        prompt = expert_prompt_ids(tokenizer, question, system_prompt)
        target = tokenizer(answer, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        ids = (prompt + target)[:max_length]
        labels = ([IGNORE] * len(prompt) + target)[:max_length]
        out.append((ids, labels))
    return out


def dapt_examples(tokenizer, docs: list[str], max_length: int):
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for doc in docs:
        stream += tokenizer(doc, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
    return [(stream[i:i + max_length], stream[i:i + max_length]) for i in range(0, len(stream), max_length)
            if len(stream[i:i + max_length]) > 8]


def collate(examples, pad_id: int, device):
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    attn = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, :len(x)] = torch.tensor(x)
        labels[i, :len(y)] = torch.tensor(y)
        attn[i, :len(x)] = 1
    return ids.to(device), attn.to(device), labels.to(device)


def epoch_batches(examples, batch_size: int, seed: int):
    def make(epoch: int):
        order = list(range(len(examples)))
        random.Random(seed * 1000 + epoch).shuffle(order)
        return [[examples[i] for i in order[s:s + batch_size]] for s in range(0, len(order), batch_size)]

    return make


def train_expert(peft_model, tokenizer, *, qa: list[tuple[str, str]], corpus: list[str] | None,
                 config: ExpertConfig, system_prompt: str | None, workdir: Path, accelerator, seed: int = 0,
                 log_path: Path | None = None, progress=None) -> None:
    """Run DAPT (if a corpus and epochs are given) then SFT; each phase resumes from its checkpoint."""
    device = accelerator.device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    wrapper = SparseCausalLMLoss(peft_model)

    def loss_fn(model, batch):
        ids, attn, labels = collate(batch, pad, device)
        return model(ids, attn, labels), {}

    phases = []
    if corpus and config.dapt_epochs > 0:
        phases.append(("stage1-dapt", dapt_examples(tokenizer, corpus, config.max_length), config.dapt_epochs))
    phases.append(("stage1-sft", sft_examples(tokenizer, qa, system_prompt, config.max_length), config.sft_epochs))
    from safetensors.torch import load_file, save_file

    for name, examples, epochs in phases:
        done = workdir / f"{name}.done.safetensors"
        if done.exists():  # finished earlier: restore its weights (a later phase starts from them)
            wrapper.load_state_dict(load_file(str(done)), strict=False)
            continue
        spec = LoopSpec(name, epochs, config.lr, checkpoint_every=25)
        run_loop(spec, accelerator=accelerator, model=wrapper, batches=epoch_batches(examples, config.batch_size, seed),
                 loss_fn=loss_fn, ckpt_dir=workdir / f"{name}.ckpt", log_path=log_path, progress=progress)
        if accelerator.is_main_process:
            tmp = done.with_suffix(".tmp")
            save_file({k: v.cpu().contiguous() for k, v in trainable_state(wrapper).items()}, str(tmp))
            tmp.replace(done)
        accelerator.wait_for_everyone()
