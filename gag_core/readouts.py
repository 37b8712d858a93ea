"""Expert readouts: turn the expert's hidden states for a question into a memory tensor.

Every readout returns memory of shape [batch, layers, slots, h_expert]; the projector's layer mixer
fuses the layer axis. Kinds:
- ``final_token`` (paper v1): state at the final generation step, one layer (default -4), one slot.
- ``multi_slot`` (paper v4): the generated trajectory at layers {-1,-2,-4,-6}, cut into K contiguous
  segments, each pooled with softmax weights over token norms, then LayerNorm and clamp to +-10.
- ``prefill``: the question prompt only, no generation. K=1 takes the prompt's final position (the state
  that predicts the answer's first token); K>1 pools K segments of the prompt like ``multi_slot``.

With ``reencode`` the generating kinds read the background in a second pass over the generated text alone,
without the question, so the same background gives the same memory however the question was phrased
(measured: docs/training.md).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import ClassVar, Protocol

import torch
import torch.nn.functional as F

from .errors import ConfigError
from .generation import GenerationOptions, generate, left_pad, pad_id
from .models import chat_template_kwargs

DEFAULT_BACKGROUND_PROMPT = "Give the background knowledge needed to answer this question."
# Model families whose hidden_states[0] is the unscaled embedding lookup (Gemma, for one, scales it)
EMBEDDINGS_ARE_LAYER_0 = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi3"})
POOLINGS = ("norm_softmax", "mean", "last", "token")
KIND_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
# The one table of per-kind defaults (paper v1, paper v4, the prompt-only probe): each kind's own default config,
# `gag train-domain --readout KIND` and the training profiles start from it (ReadoutConfig.for_kind).
KIND_DEFAULTS: dict[str, dict] = {
    "final_token": {"layers": [-4], "slots": 1},
    "multi_slot": {"layers": [-1, -2, -4, -6], "slots": 4, "pooling": "norm_softmax"},
    "prefill": {"layers": [-1], "slots": 1, "pooling": "last"},
}


@dataclass
class ReadoutConfig:
    kind: str = field(default="multi_slot", metadata={"help": "final_token | multi_slot | prefill"})
    layers: list[int] = field(default_factory=lambda: list(KIND_DEFAULTS["multi_slot"]["layers"]),
                              metadata={"help": "hidden-state layers read (negative = from the top)"})
    slots: int = field(default=KIND_DEFAULTS["multi_slot"]["slots"], metadata={"help": "K memory vectors per question"})
    pooling: str = field(default="norm_softmax", metadata={"help": "norm_softmax | mean | last | token"})
    background_prompt: str = field(default=DEFAULT_BACKGROUND_PROMPT,
                                   metadata={"help": "system prompt asking the expert for background"})
    max_new_tokens: int = field(default=24, metadata={"help": "background generation budget (tokens)"})
    clamp: float = field(default=10.0, metadata={"help": "memory values are clamped to +-clamp"})
    layer_norm: bool = field(default=True, metadata={"help": "LayerNorm each pooled vector (no affine)"})
    reencode: bool = field(default=False, metadata={"help": "read the generated background in a second pass "
                                                            "without the question (phrasing-invariant memory)"})
    context_passages: int = field(default=0, metadata={"help": "passages of the domain's documents the expert reads "
                                                               "before the question (0 = none; gag_core.grounding)"})
    context_words: int = field(default=100, metadata={"help": "words per passage the expert reads"})

    def __post_init__(self):
        # Plugins register further kinds, so any well-formed name is accepted here; the registry lookup
        # (GAG.add_domain / GagPipeline.add_domain) refuses a kind nobody registered.
        if not isinstance(self.kind, str) or not KIND_RE.match(self.kind):
            raise ConfigError(f"Invalid readout kind {self.kind!r}; expected final_token, multi_slot, prefill or a "
                              "plugin's kind (lowercase letters, digits, '_', '-', '.').")
        if self.slots < 1 or self.slots > 64:
            raise ConfigError(f"readout.slots must be in 1..64; got {self.slots}.")
        if self.kind == "final_token" and self.slots != 1:
            raise ConfigError(f"The final_token readout gives one vector per layer; set readout.slots to 1 "
                              f"(got {self.slots}) or use multi_slot for K > 1.")
        if not self.layers:
            raise ConfigError("readout.layers must name at least one layer, e.g. [-4].")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"Unknown pooling {self.pooling!r}; expected one of {', '.join(POOLINGS)}.")
        if self.reencode and self.kind == "prefill":
            raise ConfigError("readout.reencode re-reads a generated background; the prefill readout generates none. "
                              "Set reencode = false or use multi_slot.")
        if self.max_new_tokens < 1:
            raise ConfigError(f"readout.max_new_tokens must be >= 1; got {self.max_new_tokens}.")
        if not 0 <= self.context_passages <= 16 or self.context_words < 8:
            raise ConfigError(f"readout.context_passages must be in 0..16 and readout.context_words >= 8; got "
                              f"{self.context_passages} and {self.context_words}.")
        self.layers = [int(x) for x in self.layers]

    @classmethod
    def for_kind(cls, kind: str, **settings) -> "ReadoutConfig":
        """``kind`` with its ``KIND_DEFAULTS`` (a plugin's kind: the field defaults), then ``settings`` on top."""
        return cls(kind=kind, **{**KIND_DEFAULTS.get(kind, {}), **settings})  # __post_init__ copies the layers

    def to_dict(self) -> dict:
        return asdict(self)


class ExpertReadout(Protocol):
    """(expert with the domain adapter active, tokenizer, questions) -> memory [B, layers, slots, h_expert]."""

    kind: ClassVar[str]
    config: ReadoutConfig

    def read(self, expert, tokenizer, questions: list[str]) -> torch.Tensor: ...


# --- pooling -----------------------------------------------------------------------------------

def pool_segments(states: torch.Tensor, mask: torch.Tensor, slots: int, pooling: str) -> torch.Tensor:
    """Pool one sequence's valid states into ``slots`` contiguous segments.

    states [T, H] and mask [T] bool -> [slots, H]. With fewer valid tokens than slots, tokens repeat -- except
    with ``token`` pooling: one token per slot, the slots after the last token zero (a name's pieces reach the
    base once each, never doubled), and mean segments only when there are more tokens than slots.
    """
    valid = states[mask]
    if valid.shape[0] == 0:
        return states.new_zeros(slots, states.shape[-1])
    n = valid.shape[0]
    if pooling == "token":
        if n <= slots:
            return torch.cat([valid, valid.new_zeros(slots - n, valid.shape[-1])])
        pooling = "mean"
    bounds = torch.linspace(0, n, slots + 1)
    out = []
    for k in range(slots):
        lo = int(bounds[k].floor())
        hi = max(int(bounds[k + 1].floor()), lo + 1)
        seg = valid[min(lo, n - 1):min(hi, n)]
        if pooling == "mean":
            out.append(seg.mean(0))
        elif pooling == "last":
            out.append(seg[-1])
        else:
            weights = torch.softmax(seg.float().norm(dim=-1), dim=0).to(seg.dtype)
            out.append((weights.unsqueeze(-1) * seg).sum(0))
    return torch.stack(out)


def _finish(memory: torch.Tensor, config: ReadoutConfig) -> torch.Tensor:
    memory = memory.float()
    if config.layer_norm:
        memory = F.layer_norm(memory, memory.shape[-1:])
    return memory.clamp(-config.clamp, config.clamp)


# --- shared expert calls -----------------------------------------------------------------------

def expert_prompt_ids(tokenizer, question: str, system_prompt: str | None) -> list[int]:
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
        {"role": "user", "content": question}]
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                             return_dict=False, **chat_template_kwargs(tokenizer))
    return tokenizer(f"{system_prompt or ''}\nQuestion: {question}\nAnswer:", add_special_tokens=False)["input_ids"]


def _model_device(model) -> torch.device:
    return model.get_input_embeddings().weight.device


@torch.no_grad()
def _forward_states(expert, ids, attn, layers: list[int]) -> torch.Tensor:
    """Hidden states at ``layers`` -> [L, B, T, H]. Layer 0 alone is the token embeddings: no forward pass."""
    if set(layers) == {0} and getattr(expert.config, "model_type", None) in EMBEDDINGS_ARE_LAYER_0:
        return expert.get_input_embeddings()(ids).unsqueeze(0).expand(len(layers), -1, -1, -1)
    out = expert(input_ids=ids, attention_mask=attn, output_hidden_states=True, use_cache=False)
    hs = out.hidden_states
    try:
        return torch.stack([hs[layer] for layer in layers])
    except IndexError:
        raise ConfigError(f"readout.layers {layers} is out of range for an expert with {len(hs) - 1} layers.") from None


@torch.no_grad()
def generate_background(expert, tokenizer, questions: list[str], config: ReadoutConfig):
    """Greedy background generation; returns (ids [B,T], attention [B,T], generated-token mask [B,T]).

    The prompt is left-padded, the generated tokens follow it (right-padded); a row's generated tokens include
    the end-of-sequence token it stopped on."""
    device = _model_device(expert)
    pad = pad_id(tokenizer)
    ids, attn = left_pad([expert_prompt_ids(tokenizer, q, config.background_prompt) for q in questions], pad, device)
    done = generate(expert, tokenizer, {"input_ids": ids, "attention_mask": attn},
                    GenerationOptions(max_new_tokens=config.max_new_tokens))
    new, gen_mask = _right_pad([g.token_ids + ([tokenizer.eos_token_id] if g.finish_reason == "stop" else [])
                                for g in done], pad, device)
    full_attn = torch.cat([attn, gen_mask.long()], dim=1)
    full_gen = torch.cat([torch.zeros_like(attn, dtype=torch.bool), gen_mask], dim=1)
    return torch.cat([ids, new], dim=1), full_attn, full_gen


def _right_pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists right-padded: (ids [B, T], mask [B, T] bool) -- the left padding of the reversed lists, flipped."""
    ids, attn = left_pad([s[::-1] for s in seqs], pad_id, device)
    return ids.flip(1), attn.flip(1).bool()


def background_only(ids: torch.Tensor, gen: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The generated tokens of each row, without the prompt, right-padded: (ids [B, T'], mask [B, T'] bool)."""
    return _right_pad([ids[b][gen[b]].tolist() for b in range(ids.shape[0])], pad_id, ids.device)


class _GeneratingReadout:
    kind: ClassVar[str] = ""

    def __init__(self, config: ReadoutConfig | None = None):
        self.config = config or ReadoutConfig.for_kind(self.kind)

    def read(self, expert, tokenizer, questions: list[str]) -> torch.Tensor:
        return self.read_with_backgrounds(expert, tokenizer, questions)[0]

    def read_with_backgrounds(self, expert, tokenizer, questions: list[str]) -> tuple[torch.Tensor, list[str]]:
        """The memory and the background text each question's readout was taken from."""
        ids, attn, gen = generate_background(expert, tokenizer, questions, self.config)
        texts = [tokenizer.decode(ids[b][gen[b]].tolist(), skip_special_tokens=True).strip() for b in range(len(ids))]
        if self.config.reencode:
            ids, gen = background_only(ids, gen, pad_id(tokenizer))
            attn = gen.long()
        states = _forward_states(expert, ids, attn, self.config.layers)  # [L, B, T, H]
        return _finish(self._pool(states, attn.bool(), gen), self.config), texts


class FinalTokenReadout(_GeneratingReadout):
    """Paper v1: the state at the final generation step (last valid position), one slot per layer read."""

    kind = "final_token"

    def _pool(self, states, attn, gen):
        last = attn.long().cumsum(1).argmax(1)  # index of the last attended token per row
        picked = states[:, torch.arange(states.shape[1]), last]  # [L, B, H]
        return picked.permute(1, 0, 2).unsqueeze(2)  # [B, L, 1, H]


class MultiSlotReadout(_GeneratingReadout):
    """Paper v4: K contiguous segments of the generated trajectory at several layers."""

    kind = "multi_slot"

    def _pool(self, states, attn, gen):
        n_layers, batch = states.shape[:2]
        out = torch.stack([
            torch.stack([pool_segments(states[layer, b], gen[b], self.config.slots, self.config.pooling)
                         for layer in range(n_layers)])
            for b in range(batch)])
        return out  # [B, L, K, H]


class PrefillReadout:
    """The question prompt only (one forward pass, no generation)."""

    kind: ClassVar[str] = "prefill"

    def __init__(self, config: ReadoutConfig | None = None):
        self.config = config or ReadoutConfig.for_kind("prefill")

    @torch.no_grad()
    def read(self, expert, tokenizer, questions: list[str]) -> torch.Tensor:
        device = _model_device(expert)
        prompts = [expert_prompt_ids(tokenizer, q, self.config.background_prompt) for q in questions]
        ids, attn = left_pad(prompts, pad_id(tokenizer), device)
        states = _forward_states(expert, ids, attn, self.config.layers)  # [L, B, T, H]
        mask = attn.bool()
        n_layers, batch = states.shape[:2]
        if self.config.slots == 1 and self.config.pooling == "last":
            pooled = states[:, :, -1].permute(1, 0, 2).unsqueeze(2)  # left padding: last column is the final token
        else:
            pooled = torch.stack([
                torch.stack([pool_segments(states[layer, b], mask[b], self.config.slots, self.config.pooling)
                             for layer in range(n_layers)])
                for b in range(batch)])
        return _finish(pooled, self.config)


BUILTIN_READOUTS = {cls.kind: cls for cls in (FinalTokenReadout, MultiSlotReadout, PrefillReadout)}
