"""Stage II: projector alignment. Base and expert frozen; readouts come from the cache.

Loss = NLL of the gold answer given the knowledge prompt with the projected memory in its slots
+ semantic_alpha * (1 - cos(head(mean answer states), sentence-encoder(gold answer)))
+ diversity_alpha * mean squared off-diagonal cosine between the K projected slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..generation import pad_id
from ..injection import InjectionHook, merge_memory
from ..projectors import ProjectorBundle
from .config import AlignConfig
from .loop import IGNORE, LoopSpec, answer_nll, epoch_batches, run_loop

BATCH_SEED_STRIDE = 7919  # Stage II's epoch shuffles: Random(seed * 7919 + epoch), as since the first release


@dataclass
class AlignExample:
    """One QA pair split at the first memory slot: a frozen prefix and a trainable suffix."""

    memory: torch.Tensor  # [L, K, He]
    prefix: list[int]  # template + question: never depends on the projector
    suffix: list[int]  # K slots + rest of the template + gold answer
    labels: list[int]  # aligned with suffix; IGNORE except on the answer
    sentence: torch.Tensor | None = None
    kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # cached prefix keys/values per layer


class AlignmentModel(nn.Module):
    """The trainable part (projector bundle + semantic head) with the frozen base kept outside DDP's view.

    The base is frozen and the prefix (chat template + question) does not depend on the projector, so the
    prefix runs once without gradients (its keys/values can even be cached across epochs) and only the
    suffix — the K slots, the rest of the template and the answer — runs with gradients.
    """

    def __init__(self, bundle: ProjectorBundle, base, sentence_dim: int = 0):
        super().__init__()
        self.bundle = bundle
        object.__setattr__(self, "base", base)  # not a submodule: never trained, never broadcast
        hidden = base.get_input_embeddings().weight.shape[1]
        self.semantic_head = nn.Linear(hidden, sentence_dim) if sentence_dim else None

    def forward(self, memory, cache, prefix_mask, prefix_len, suffix_ids, suffix_mask, labels, slots,
                sentence=None, semantic_alpha=0.0, diversity_alpha=0.0, input_noise=0.0):
        projected = self.bundle(memory, noise=input_noise)  # [B, K, Hb]
        slot_mask = torch.zeros_like(suffix_ids, dtype=torch.bool)
        slot_mask[:, :slots] = True
        embeds = merge_memory(self.base.get_input_embeddings()(suffix_ids), slot_mask, projected)
        positions = prefix_len.unsqueeze(1) + torch.arange(suffix_ids.shape[1], device=suffix_ids.device)
        hidden = self.base.get_decoder()(inputs_embeds=embeds, attention_mask=torch.cat([prefix_mask, suffix_mask], 1),
                                         past_key_values=cache, position_ids=positions, use_cache=True).last_hidden_state
        nll = answer_nll(self.base.get_output_embeddings(), hidden, labels)
        logs = {"nll": float(nll.detach())}
        loss = nll
        if semantic_alpha and self.semantic_head is not None and sentence is not None:
            mask = (labels != IGNORE).unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            sem = 1 - F.cosine_similarity(self.semantic_head(mean.float()), sentence, dim=-1).mean()
            loss = loss + semantic_alpha * sem
            logs["semantic"] = float(sem.detach())
        if diversity_alpha and projected.shape[1] > 1:
            unit = F.normalize(projected.float(), dim=-1)
            gram = unit @ unit.transpose(1, 2)
            k = gram.shape[-1]
            div = (gram[:, ~torch.eye(k, dtype=torch.bool, device=gram.device)] ** 2).mean()
            loss = loss + diversity_alpha * div
            logs["diversity"] = float(div.detach())
        return loss, logs


def make_examples(hook: InjectionHook, tokenizer, questions, answers, memory: torch.Tensor, slots: int,
                  sentences: torch.Tensor | None = None) -> list[AlignExample]:
    eos = tokenizer.eos_token_id
    out = []
    for i, (q, a) in enumerate(zip(questions, answers)):
        prompt = hook.build(q, slots)
        cut = prompt.slot_positions[0]
        if prompt.slot_positions != list(range(cut, cut + slots)):
            raise ValueError("memory slots must be contiguous")
        target = tokenizer(a, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        suffix = prompt.input_ids[cut:]
        out.append(AlignExample(memory[i], prompt.input_ids[:cut], suffix + target,
                                [IGNORE] * len(suffix) + target, None if sentences is None else sentences[i]))
    return out


@torch.no_grad()
def prefix_kv(base, batch: list[AlignExample], pad_id: int, device):
    """Keys/values of each example's prefix, computed without gradients (right-padded, then cut)."""
    width = max(len(e.prefix) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        ids[i, :len(e.prefix)] = torch.tensor(e.prefix)
        attn[i, :len(e.prefix)] = 1
    out = base.get_decoder()(input_ids=ids.to(device), attention_mask=attn.to(device), use_cache=True)
    cache = out.past_key_values
    kvs = []
    for i, e in enumerate(batch):
        n = len(e.prefix)
        kvs.append([(layer.keys[i, :, :n].clone(), layer.values[i, :, :n].clone()) for layer in cache.layers])
    return kvs


def cache_prefixes(base, examples: list[AlignExample], pad_id: int, device, batch_size: int = 32, progress=None):
    for s in range(0, len(examples), batch_size):
        chunk = examples[s:s + batch_size]
        for e, kv in zip(chunk, prefix_kv(base, chunk, pad_id, device)):
            e.kv = kv
        if progress:
            progress("prefix-cache", min(s + batch_size, len(examples)), len(examples), {})


def collate(base, batch: list[AlignExample], pad_id: int, device):
    """Left-padded prefix cache + right-padded suffix, ready for :meth:`AlignmentModel.forward`."""
    from transformers import DynamicCache

    kvs = [e.kv for e in batch] if all(e.kv is not None for e in batch) else prefix_kv(base, batch, pad_id, device)
    width = max(len(e.prefix) for e in batch)
    layers = []
    for layer in range(len(kvs[0])):
        ks, vs = [], []
        for kv in kvs:
            k, v = kv[layer]
            pad = width - k.shape[1]
            ks.append(F.pad(k, (0, 0, pad, 0)))
            vs.append(F.pad(v, (0, 0, pad, 0)))
        layers.append((torch.stack(ks).to(device), torch.stack(vs).to(device)))
    cache = DynamicCache(layers, config=base.config)
    prefix_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        prefix_mask[i, width - len(e.prefix):] = 1
    swidth = max(len(e.suffix) for e in batch)
    suffix = torch.full((len(batch), swidth), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), swidth), IGNORE, dtype=torch.long)
    smask = torch.zeros((len(batch), swidth), dtype=torch.long)
    for i, e in enumerate(batch):
        suffix[i, :len(e.suffix)] = torch.tensor(e.suffix)
        labels[i, :len(e.labels)] = torch.tensor(e.labels)
        smask[i, :len(e.suffix)] = 1
    prefix_len = torch.tensor([len(e.prefix) for e in batch])
    memory = torch.stack([e.memory for e in batch])
    sentence = torch.stack([e.sentence for e in batch]).to(device) if batch[0].sentence is not None else None
    return (memory.to(device), cache, prefix_mask.to(device), prefix_len.to(device), suffix.to(device),
            smask.to(device), labels.to(device), sentence)


def align_projector(model: AlignmentModel, tokenizer, examples: list[AlignExample], *, config: AlignConfig,
                    workdir: Path, accelerator, seed: int = 0, log_path: Path | None = None, progress=None,
                    on_epoch_end=None) -> dict:
    pad = pad_id(tokenizer)
    device = accelerator.device
    slots = examples[0].memory.shape[1]
    base = model.base
    if config.cache_prefix:
        cache_prefixes(base, examples, pad, device, progress=progress)

    def loss_fn(m, batch):
        memory, cache, pmask, plen, suffix, smask, labels, sentence = collate(base, batch, pad, device)
        return m(memory, cache, pmask, plen, suffix, smask, labels, slots, sentence,
                 config.semantic_alpha, config.diversity_alpha, config.input_noise)

    spec = LoopSpec("stage2-align", config.epochs, config.lr, config.grad_clip, config.weight_decay,
                    checkpoint_every=config.checkpoint_every)
    batches = epoch_batches(examples, config.batch_size, seed, stride=BATCH_SEED_STRIDE)
    return run_loop(spec, accelerator=accelerator, model=model, batches=batches, loss_fn=loss_fn,
                    ckpt_dir=workdir / "stage2.ckpt", log_path=log_path, on_epoch_end=on_epoch_end, progress=progress)
