"""Stage I: the domain expert as a LoRA adapter (peft) on the expert backbone.

Domain-adaptive pretraining on the corpus (causal-LM loss), then supervised fine-tuning on the QA pairs
with the loss on answer tokens only, inside the expert's chat template; or (``mix = "mixed"``) both kinds of
example interleaved in every epoch, which is what makes facts read only in documents answerable. The system
prompt is the readout's background prompt, so at readout time the expert writes exactly the kind of text it
was trained to write.

When LoRA covers only the top layers (``ExpertConfig.top_layers``), the layers below never change: their
output for each training example is computed once (the *frozen trunk*) and every step runs the top layers
only, starting from it. The loss is the same; each step skips the trunk's forward pass.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import DataError
from ..generation import pad_id
from ..readouts import expert_prompt_ids
from .config import ExpertConfig
from .loop import IGNORE, LoopSpec, answer_nll, epoch_batches, run_loop, trainable_state

TRUNK_CACHE_LIMIT_BYTES = 2 << 30  # above this the trunk is recomputed every step instead of kept in memory


class _Passthrough(nn.Module):
    """Stands in for a decoder layer whose work is done elsewhere: returns its input unchanged (decoder layers
    return a tensor since transformers 4.56, the oldest version gag supports)."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


@contextlib.contextmanager
def _layers_skipped(decoder, skip: range):
    """Temporarily replace ``decoder.layers[i]`` for i in ``skip`` by pass-throughs (indices keep their meaning,
    so per-layer attention types and rotary settings stay right)."""
    saved = {i: decoder.layers[i] for i in skip}
    try:
        for i in skip:
            decoder.layers[i] = _Passthrough()
        yield
    finally:
        for i, layer in saved.items():
            decoder.layers[i] = layer


def _decoder(lm):
    inner = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    return inner, inner.get_decoder()


class SparseCausalLMLoss(nn.Module):
    """Cross-entropy on labelled positions only; the vocabulary projection runs just where it is needed.

    With ``trunk`` (the frozen lower layers' output for these tokens) only layers ``trunk_layers`` and above run.
    """

    def __init__(self, lm, trunk_layers: int = 0):
        super().__init__()
        self.lm = lm
        self.trunk_layers = trunk_layers

    def forward(self, input_ids, attention_mask, labels, trunk=None):
        inner, decoder = _decoder(self.lm)
        if trunk is None:
            hidden = decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        else:
            with _layers_skipped(decoder, range(self.trunk_layers)):
                hidden = decoder(inputs_embeds=trunk, attention_mask=attention_mask).last_hidden_state
        return answer_nll(inner.get_output_embeddings(), hidden, labels)


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
    out, cut = [], []
    for question, answer in pairs:
        prompt = expert_prompt_ids(tokenizer, question, system_prompt)
        target = tokenizer(answer, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        ids = (prompt + target)[:max_length]
        labels = ([IGNORE] * len(prompt) + target)[:max_length]
        out.append((ids, labels))
        if len(prompt) >= max_length:
            cut.append(len(prompt))
    if cut:  # an example without one answer token teaches nothing, and a batch of them has no loss (nan)
        raise DataError(f"{len(cut)} of {len(pairs)} QA pairs lose their whole answer at stage1.max_length="
                        f"{max_length}: the prompt alone takes up to {max(cut)} tokens. Raise stage1.max_length "
                        "or shorten those questions (or stage1.system_prompt).")
    return out


def dapt_examples(tokenizer, docs: list[str], max_length: int):
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for doc in docs:
        stream += tokenizer(doc, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
    return [(stream[i:i + max_length], stream[i:i + max_length]) for i in range(0, len(stream), max_length)
            if len(stream[i:i + max_length]) > 8]


def collate(examples, pad_id: int, device):
    """Right-padded ids, attention and labels (+ the padded trunk states when every example has them)."""
    width = max(len(ex[0]) for ex in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    attn = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (x, y, *_) in enumerate(examples):
        ids[i, :len(x)] = torch.tensor(x)
        labels[i, :len(y)] = torch.tensor(y)
        attn[i, :len(x)] = 1
    trunk = None
    if all(len(ex) > 2 for ex in examples):
        trunk = torch.zeros((len(examples), width, examples[0][2].shape[-1]), dtype=examples[0][2].dtype)
        for i, ex in enumerate(examples):
            trunk[i, :len(ex[0])] = ex[2]
        trunk = trunk.to(device)
    return ids.to(device), attn.to(device), labels.to(device), trunk


def trunk_layers(model, config: ExpertConfig) -> int:
    """How many lower layers carry no LoRA (0 when every layer is trained)."""
    n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    return n_layers - config.top_layers if 0 < config.top_layers < n_layers else 0


@torch.no_grad()
def attach_trunk(lm, examples, layers: int, pad_id: int, device, batch_size: int = 32):
    """``(ids, labels)`` -> ``(ids, labels, trunk)``: the output of the lower ``layers`` decoder layers (no LoRA
    there, so it never changes during training). Returns the examples unchanged if it would not fit in memory."""
    _, decoder = _decoder(lm)
    hidden = decoder.get_input_embeddings().weight.shape[1]
    dtype = decoder.get_input_embeddings().weight.dtype
    size = sum(len(ids) for ids, _ in examples) * hidden * torch.finfo(dtype).bits // 8
    if layers <= 0 or size > TRUNK_CACHE_LIMIT_BYTES:
        return examples
    n_layers = len(decoder.layers)
    captured = []
    handle = decoder.layers[layers - 1].register_forward_hook(
        lambda mod, args, out: captured.append(out[0] if isinstance(out, tuple) else out))
    out = []
    try:
        with _layers_skipped(decoder, range(layers, n_layers)):
            for s in range(0, len(examples), batch_size):
                chunk = examples[s:s + batch_size]
                ids, attn, _, _ = collate(chunk, pad_id, device)
                captured.clear()
                decoder(input_ids=ids, attention_mask=attn)
                states = captured[0].detach().cpu()
                out += [(x, y, states[i, :len(x)].clone()) for i, (x, y) in enumerate(chunk)]
    finally:
        handle.remove()
    return out


@torch.no_grad()
def trunk_matches(wrapper: "SparseCausalLMLoss", examples, pad_id: int, device, atol: float = 1e-4) -> bool:
    """Whether starting from the cached trunk gives the full forward's loss on a few examples. False for a model
    whose decoder does more to ``inputs_embeds`` than the layers do (Gemma scales them), so the caller can
    fall back to the full forward instead of training on a wrong loss. The relative tolerance follows the
    backbone's precision (1e-3 in float32, ~3e-2 in bf16, where rounding alone moves a loss by 1e-2); a wrong
    trunk moves it by far more."""
    ids, attn, labels, trunk = collate(examples[:4], pad_id, device)
    if trunk is None:
        return False
    rtol = max(1e-3, 4 * torch.finfo(wrapper.lm.get_input_embeddings().weight.dtype).eps)
    was_training = wrapper.training
    wrapper.eval()  # no dropout in the comparison
    try:
        return bool(torch.allclose(wrapper(ids, attn, labels), wrapper(ids, attn, labels, trunk), atol=atol, rtol=rtol))
    finally:
        wrapper.train(was_training)


def stage1_phases(tokenizer, qa: list[tuple[str, str]], corpus: list[str] | None, config: ExpertConfig,
                  system_prompt: str | None, prompt_allowance: int = 0) -> list[tuple[str, list, int]]:
    """(name, examples, epochs) of each Stage I phase. ``sequential``: DAPT over the corpus (if any), then QA SFT;
    ``mixed``: one phase whose every epoch is a seeded shuffle of the corpus windows and the QA examples.
    ``prompt_allowance``: tokens a QA example may take beyond ``max_length`` (a grounded expert's passages)."""
    sft = sft_examples(tokenizer, qa, system_prompt, config.max_length + prompt_allowance)
    dapt = dapt_examples(tokenizer, corpus, config.max_length) if corpus else []
    if config.mix == "mixed":
        return [("stage1-mixed", dapt + sft, config.sft_epochs)]
    phases = [("stage1-dapt", dapt, config.dapt_epochs)] if dapt and config.dapt_epochs > 0 else []
    return phases + [("stage1-sft", sft, config.sft_epochs)]


def train_expert(peft_model, tokenizer, *, qa: list[tuple[str, str]], corpus: list[str] | None,
                 config: ExpertConfig, system_prompt: str | None, workdir: Path, accelerator, seed: int = 0,
                 log_path: Path | None = None, progress=None, prompt_allowance: int = 0) -> None:
    """Run the Stage I phases (``stage1_phases``: DAPT then SFT, or mixed); each resumes from its checkpoint."""
    device = accelerator.device
    pad = pad_id(tokenizer)
    frozen = trunk_layers(peft_model, config) if config.cache_trunk else 0
    wrapper = SparseCausalLMLoss(peft_model, frozen)

    def loss_fn(model, batch):
        ids, attn, labels, trunk = collate(batch, pad, device)
        return model(ids, attn, labels, trunk), {}

    for name, examples, epochs in stage1_phases(tokenizer, qa, corpus, config, system_prompt, prompt_allowance):
        done = workdir / f"{name}.done.safetensors"
        if done.exists():  # finished earlier: restore its weights (a later phase starts from them)
            wrapper.load_state_dict(load_file(str(done)), strict=False)
            continue
        spec = LoopSpec(name, epochs, config.lr, checkpoint_every=25)
        examples = attach_trunk(peft_model, examples, frozen, pad, device)
        if frozen and len(examples[0]) > 2 and not trunk_matches(wrapper, examples, pad, device):
            warnings.warn(f"{name}: the cached trunk does not reproduce this model's forward pass; "
                          "training with the full forward instead (slower, same result).")
            examples = [ex[:2] for ex in examples]
        run_loop(spec, accelerator=accelerator, model=wrapper, batches=epoch_batches(examples, config.batch_size, seed),
                 loss_fn=loss_fn, ckpt_dir=workdir / f"{name}.ckpt", log_path=log_path, progress=progress)
        if accelerator.is_main_process:
            tmp = done.with_suffix(".tmp")
            save_file({k: v.cpu().contiguous() for k, v in trainable_state(wrapper).items()}, str(tmp))
            tmp.replace(done)
        accelerator.wait_for_everyone()
