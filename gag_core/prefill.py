"""Batched prefill without the waste: the prompt prefix the rows share is read once, and rows of very different
lengths are read in separate groups instead of all being padded to the longest.

A left-padded batch spends most of its prefill on work that is the same for every row (the system turn and
the instruction every prompt starts with) or on padding (a 30-token general question padded to a 97-token
domain prompt). Prefill is compute-bound, so that work costs as much as real tokens; decoding is not, so
batching only pays when prefill is lean. ``shared_prefill`` computes the key/value cache of every row except
its last token:

1. the longest prefix all rows share, once, at batch size 1;
2. each group of rows of similar length after that prefix (left-padded within the group), on a copy of the
   prefix cache;

and lays the result out as ``[prefix | padding | rest of the row]``: the cache rows are joined with zero
keys/values where a row has padding, and the attention mask marks that padding. ``generate`` then continues
from the cache with the full inputs: it reads only the last token, and derives each position from the mask,
so every real token keeps the position it has in the plain batch. The answers are the plain batch's answers
(token for token in float32; tests/test_prefill.py) at a fraction of its prefill.
"""

from __future__ import annotations

import inspect

import torch

MIN_SHARED = 8  # a shared prefix shorter than this is not worth its own forward pass
SLACK = 1.25  # a row is padded by at most 25 % of its length, else it starts a group of its own


def cache_kwarg(model) -> str:
    """The name under which this transformers version passes a KV cache ("cache" from 5.x, else past_key_values)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"


def shared_prefix(x: torch.Tensor, starts: list[int], lengths: list[int]) -> int:
    """Length of the longest prefix all rows' real tokens (ids [B, T] or embeddings [B, T, h]) share."""
    span = min(lengths)
    rows = torch.stack([x[r, s:s + span] for r, s in enumerate(starts)])
    same = rows == rows[:1]
    if same.dim() == 3:
        same = same.all(-1)
    differs = (~same.all(0)).nonzero()
    return int(differs[0]) if len(differs) else span


def length_groups(lengths: list[int], slack: float = SLACK) -> list[list[int]]:
    """Rows grouped by length (longest first) so that no row is padded to more than ``slack`` times its length."""
    order = sorted(range(len(lengths)), key=lambda r: -lengths[r])
    groups: list[list[int]] = []
    for r in order:
        if groups and lengths[groups[-1][0]] <= slack * lengths[r]:
            groups[-1].append(r)
        else:
            groups.append([r])
    return groups


def _dynamic_layers(cache) -> list | None:
    """The cache's per-layer key/value holders when they are plain (full-attention, growable) layers, else None."""
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer).__name__ != "DynamicLayer" for layer in layers):
        return None
    return layers


@torch.no_grad()
def shared_prefill(model, inputs: dict) -> dict | None:
    """``inputs`` ({"input_ids" or "inputs_embeds", "attention_mask"}, left-padded) with a KV cache of all but each
    row's last token, ready for ``model.generate``; None when the batch gains nothing (one row, or rows of similar
    length that share no long prefix) or the model's cache is not the plain kind this layout needs."""
    key = "inputs_embeds" if "inputs_embeds" in inputs else "input_ids"
    lengths = [int(n) for n in inputs["attention_mask"].sum(1).tolist()]
    mask, x = inputs["attention_mask"][:, -max(lengths):], inputs[key][:, -max(lengths):]  # no all-padding column
    batch, width = mask.shape
    if batch < 2 or min(lengths) < 2 or not all(bool(mask[r, width - n:].all()) for r, n in enumerate(lengths)):
        return None
    plan = [(rows, _group_prefix(x, rows, lengths)) for rows in length_groups(lengths)]
    if len(plan) == 1 and not plan[0][1]:
        return None
    name = cache_kwarg(model)
    merged, cache, new_mask = None, None, torch.zeros_like(mask)
    for rows, shared in plan:  # each row's cache: [its group's prefix | zeros | its other tokens but the last]
        cache = _group_cache(model, x, key, rows, lengths, shared, name)
        layers = _dynamic_layers(cache)
        if layers is None:
            return None
        merged = merged or [_empty_like(layer, batch, width - 1) for layer in layers]
        index = torch.tensor(rows, device=mask.device)
        span = max(lengths[r] for r in rows) - shared - 1
        for full, layer in zip(merged, layers):
            for dst, src in zip(full, (layer.keys, layer.values)):
                dst[index, :, :shared] = src[:, :, :shared]
                if span:
                    dst[index, :, width - 1 - span:] = src[:, :, shared:]
        for r in rows:
            new_mask[r, :shared] = 1
            new_mask[r, width - (lengths[r] - shared):] = 1
    for layer, (k, v) in zip(layers, merged):  # the last group's cache object now carries every row
        layer.keys, layer.values = k, v
    return {key: x, "attention_mask": new_mask, name: cache}


def _group_prefix(x: torch.Tensor, rows: list[int], lengths: list[int]) -> int:
    """The prefix a group's rows share (0 for a single row or one under MIN_SHARED); each row keeps a token after it."""
    if len(rows) < 2:
        return 0
    width = x.shape[1]
    sub = [lengths[r] for r in rows]
    shared = min(shared_prefix(x[rows], [width - n for n in sub], sub), min(sub) - 1)
    return shared if shared >= MIN_SHARED else 0


def _cache_of(output):
    return getattr(output, "cache", None) or output.past_key_values


def _empty_like(layer, batch: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    k, v = layer.keys, layer.values
    return (k.new_zeros((batch, k.shape[1], length, k.shape[3])), v.new_zeros((batch, v.shape[1], length, v.shape[3])))


def _group_cache(model, x, key: str, rows: list[int], lengths: list[int], shared: int, name: str):
    """The KV cache of ``rows``: their shared prefix read once (batch 1) and copied to every row, then their other
    tokens but the last, left-padded within the group."""
    width, n, device = x.shape[1], len(rows), x.device
    cache = None
    if shared:
        start = width - lengths[rows[0]]
        prefix = _cache_of(model(**{key: x[rows[0]:rows[0] + 1, start:start + shared]}, use_cache=True,
                                 logits_to_keep=1))
        if _dynamic_layers(prefix) is None:
            return None
        cache = _copy_cache(prefix, n)
    rest = [lengths[r] - shared - 1 for r in rows]
    span = max(rest)
    if span == 0:  # nothing after the prefix but the last token
        return cache
    local = torch.zeros((n, span), dtype=torch.long, device=device)
    for i, m in enumerate(rest):
        local[i, span - m:] = 1
    attn = torch.cat([torch.ones((n, shared), dtype=torch.long, device=device), local], 1)
    positions = (shared + local.cumsum(1) - 1).clamp(min=0)
    out = model(**{key: x[rows, width - 1 - span:width - 1]}, attention_mask=attn, position_ids=positions,
                use_cache=True, logits_to_keep=1, **({name: cache} if cache is not None else {}))
    return _cache_of(out)


def _copy_cache(cache, n: int):
    """A copy of a batch-1 cache repeated to ``n`` rows (the original stays as it was)."""
    import copy

    out = copy.copy(cache)
    out.layers = []
    for layer in cache.layers:
        twin = copy.copy(layer)
        twin.keys, twin.values = layer.keys.expand(n, -1, -1, -1), layer.values.expand(n, -1, -1, -1)
        out.layers.append(twin)
    return out
