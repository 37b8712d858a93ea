"""Projectors: memory [B, layers, K, h_expert] -> [B, K, h_base], in the base's input-embedding space.

A ``ProjectorBundle`` is the trained part of a domain: the per-slot layer mixer plus the projector proper.
Every size comes from :class:`ProjectorConfig`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .errors import ConfigError

KIND_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")  # built-in or plugin kind names


@dataclass
class ProjectorConfig:
    kind: str = field(default="mlp2x_gelu", metadata={"help": "mlp2x_gelu | gated_residual | anchored_residual"})
    expert_hidden: int = field(default=576, metadata={"help": "expert hidden size (input)"})
    base_hidden: int = field(default=576, metadata={"help": "base embedding size (output)"})
    slots: int = field(default=4, metadata={"help": "K memory vectors"})
    layers: int = field(default=4, metadata={"help": "number of expert layers the readout provides"})
    hidden: int = field(default=0, metadata={"help": "inner width; 0 = base_hidden"})
    output_scale: float = field(default=1.0, metadata={"help": "initial output gain (set to the base embedding RMS)"})
    standardize: bool = field(default=False, metadata={"help": "subtract the training readouts' mean and divide by "
                                                                "their std per feature before projecting"})

    def __post_init__(self):
        # Plugins register further kinds; ProjectorBundle refuses a kind it has no class for.
        if not isinstance(self.kind, str) or not KIND_RE.match(self.kind):
            raise ConfigError(f"Invalid projector kind {self.kind!r}; expected mlp2x_gelu, gated_residual or a "
                              "plugin's kind (lowercase letters, digits, '_', '-', '.').")
        for name in ("expert_hidden", "base_hidden", "slots", "layers"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"projector.{name} must be >= 1; got {getattr(self, name)}.")
        if not self.hidden:
            self.hidden = self.base_hidden

    def to_dict(self) -> dict:
        return asdict(self)


class LayerMixer(nn.Module):
    """Learned per-slot softmax weights over the readout's layers: [B, L, K, H] -> [B, K, H]."""

    def __init__(self, layers: int, slots: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(slots, layers))

    def forward(self, memory: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.logits, dim=-1)  # [K, L]
        return torch.einsum("blkh,kl->bkh", memory, weights.to(memory.dtype))


class Mlp2xGeluProjector(nn.Module):
    """LLaVA's mlp2x_gelu with a LayerNorm in front: LN -> Linear -> GELU -> Linear."""

    kind = "mlp2x_gelu"

    def __init__(self, config: ProjectorConfig):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(config.expert_hidden), nn.Linear(config.expert_hidden, config.hidden),
                                 nn.GELU(), nn.Linear(config.hidden, config.base_hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GatedResidualProjector(nn.Module):
    """Paper v4: b = Linear(LN(x)); out = b + sigmoid(W_g LN(b)) * MLP(LN(b))."""

    kind = "gated_residual"

    def __init__(self, config: ProjectorConfig):
        super().__init__()
        self.inp = nn.Sequential(nn.LayerNorm(config.expert_hidden), nn.Linear(config.expert_hidden, config.base_hidden))
        self.norm = nn.LayerNorm(config.base_hidden)
        self.gate = nn.Linear(config.base_hidden, config.base_hidden)
        self.mlp = nn.Sequential(nn.Linear(config.base_hidden, config.hidden), nn.GELU(),
                                 nn.Linear(config.hidden, config.base_hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.inp(x)
        h = self.norm(b)
        return b + torch.sigmoid(self.gate(h)) * self.mlp(h)


class AnchoredResidualProjector(nn.Module):
    """out = A x + MLP(LN(x)), for readouts that live in the expert's token-embedding space (layer 0).

    ``A`` is anchored on the vocabulary the expert and base share: before training it is set by least squares so
    that A maps every expert input embedding onto the base's embedding of the same token (the identity when the
    two models share their embeddings), and the MLP's output layer starts at zero. At step 0 the projector is
    already a working text channel; training only learns a correction. Because nothing in it is fitted to the
    training entities, it carries tokens it never saw in alignment (measured: docs/training.md, round 4).
    Readouts go in raw: per-feature standardisation would break the anchor, so the bundle skips it.
    """

    kind = "anchored_residual"
    raw_input = True

    def __init__(self, config: ProjectorConfig):
        super().__init__()
        self.anchor_map = nn.Linear(config.expert_hidden, config.base_hidden)
        self.mlp = nn.Sequential(nn.LayerNorm(config.expert_hidden), nn.Linear(config.expert_hidden, config.hidden),
                                 nn.GELU(), nn.Linear(config.hidden, config.base_hidden))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    @torch.no_grad()
    def anchor(self, expert_embeddings: torch.Tensor, base_embeddings: torch.Tensor, gain: float,
               max_rows: int = 65536) -> float:
        """Least-squares A with expert_embeddings @ A.T ~= base_embeddings / gain (rows = shared tokens).

        Returns the relative residual of the fit (0 for identical embeddings)."""
        if expert_embeddings.shape[0] != base_embeddings.shape[0] or expert_embeddings.shape[0] < 2:
            raise ConfigError("anchored_residual needs the same tokens' embeddings from expert and base, row for row.")
        x, y = expert_embeddings.float(), base_embeddings.float()
        if x.shape[0] > max_rows:  # an even subsample is plenty for an h x h map
            idx = torch.linspace(0, x.shape[0] - 1, max_rows).long()
            x, y = x[idx], y[idx]
        ones = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
        sol = torch.linalg.lstsq(torch.cat([x, ones], 1), y / gain).solution  # [h_expert + 1, h_base]
        self.anchor_map.weight.copy_(sol[:-1].T.to(self.anchor_map.weight))
        self.anchor_map.bias.copy_(sol[-1].to(self.anchor_map.bias))
        fit = torch.cat([x, ones], 1) @ sol
        return float((fit - y / gain).norm() / (y / gain).norm().clamp(min=1e-12))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.anchor_map(x) + self.mlp(x)


BUILTIN_PROJECTORS = {cls.kind: cls for cls in (Mlp2xGeluProjector, GatedResidualProjector,
                                                 AnchoredResidualProjector)}


def anchor_on_vocabulary(bundle, expert, expert_tokenizer, base, base_tokenizer) -> dict:
    """Fit ``bundle``'s anchored projector on the tokens expert and base share (matched by token string).

    Returns what to log: the number of shared tokens and the fit's relative residual."""
    ev, bv = expert_tokenizer.get_vocab(), base_tokenizer.get_vocab()
    e_emb, b_emb = expert.get_input_embeddings().weight, base.get_input_embeddings().weight
    shared = [t for t in ev if t in bv and ev[t] < e_emb.shape[0] and bv[t] < b_emb.shape[0]]
    smaller = min(len(ev), len(bv))
    if len(shared) < max(bundle.config.expert_hidden + 1, smaller // 2):
        raise ConfigError(f"The {bundle.config.kind} projector is anchored on the tokens expert and base share, and "
                          f"they share only {len(shared)} of {smaller}. Use an expert from the base's model family "
                          "(same tokenizer) or set stage2.projector = \"mlp2x_gelu\".")
    shared.sort(key=ev.get)
    e_idx = torch.tensor([ev[t] for t in shared], device=e_emb.device)
    b_idx = torch.tensor([bv[t] for t in shared], device=b_emb.device)
    residual = bundle.projector.anchor(e_emb.detach()[e_idx], b_emb.detach()[b_idx].to(e_emb.device),
                                       float(bundle.gain.detach()))
    return {"shared_tokens": len(shared), "relative_residual": residual}


class ProjectorBundle(nn.Module):
    """Layer mixer + projector + output gain; what ``projector.safetensors`` holds."""

    def __init__(self, config: ProjectorConfig, projector_cls: type[nn.Module] | None = None):
        super().__init__()
        self.config = config
        cls = projector_cls or BUILTIN_PROJECTORS.get(config.kind)
        if cls is None:
            raise ConfigError(f"Projector kind {config.kind!r} is not built in; pass the class its plugin registers "
                              "(projector_cls) or install the plugin that provides it.")
        self.mixer = LayerMixer(config.layers, config.slots)
        self.projector = cls(config)
        self.gain = nn.Parameter(torch.tensor(float(config.output_scale)))
        # a projector that reads raw readouts (anchored_residual) is never given standardised ones
        self.standardize = bool(config.standardize and not getattr(cls, "raw_input", False))
        if self.standardize:
            # Readouts of different questions share most of their energy (cosine ~0.6-0.9 between unrelated
            # facts); standardising per feature lets the projector see what distinguishes them.
            shape = (config.layers, config.slots, config.expert_hidden)
            self.register_buffer("input_mean", torch.zeros(shape))
            self.register_buffer("input_std", torch.ones(shape))

    @torch.no_grad()
    def fit_standardizer(self, memory: torch.Tensor, min_std: float = 1e-2) -> None:
        """Set the per-feature statistics from training readouts [N, layers, K, h_expert]."""
        if not self.standardize:
            return
        memory = memory.float()
        self.input_mean.copy_(memory.mean(0))
        self.input_std.copy_(memory.std(0).clamp(min=min_std) if memory.shape[0] > 1 else torch.ones_like(memory[0]))

    def forward(self, memory: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        """``noise``: std of Gaussian noise added to the (standardised) input; training-time regulariser."""
        if memory.dim() != 4:
            raise ConfigError(f"Projector input must be [batch, layers, slots, hidden]; got {tuple(memory.shape)}.")
        _, layers, slots, hidden = memory.shape
        c = self.config
        if (layers, slots, hidden) != (c.layers, c.slots, c.expert_hidden):
            from .errors import InjectionError
            raise InjectionError(
                f"Readout memory is (layers={layers}, slots={slots}, hidden={hidden}) but the projector expects "
                f"(layers={c.layers}, slots={c.slots}, hidden={c.expert_hidden}); the module was trained with a "
                "different readout or expert model.")
        param = next(self.parameters())
        x = memory.to(device=param.device, dtype=param.dtype)
        if self.standardize:
            x = (x - self.input_mean.to(x.dtype)) / self.input_std.to(x.dtype)
        if noise and self.training:
            x = x + noise * torch.randn_like(x)
        x = self.mixer(x)
        return self.projector(x) * self.gain
