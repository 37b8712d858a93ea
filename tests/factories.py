"""Build complete domain modules from tiny random models (no training)."""

from __future__ import annotations

from pathlib import Path

import torch

from gag_core.assemble import assemble_module
from gag_core.models import hidden_size, load_causal_lm
from gag_core.projectors import ProjectorBundle, ProjectorConfig
from gag_core.readouts import ReadoutConfig


def tiny_lora(expert, seed=0, name="default"):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(expert, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                              init_lora_weights=False), adapter_name=name)
    return model


def build_tiny_module(out: Path, *, name: str, paths: dict, readout: ReadoutConfig | None = None,
                      projector_kind: str = "mlp2x_gelu", base_key: str = "base", seed: int = 0,
                      prototypes: torch.Tensor | None = None, exemplars=None, encoder: str = "expert-mean",
                      expert_key: str = "expert", router_files: dict[str, str] | None = None):
    base = load_causal_lm(paths[base_key])
    expert = tiny_lora(load_causal_lm(paths[expert_key], frozen=False), seed=seed)
    readout = readout or ReadoutConfig(kind="multi_slot", layers=[-1, -2, -4, -6], slots=2, max_new_tokens=6)
    config = ProjectorConfig(kind=projector_kind, expert_hidden=hidden_size(expert), base_hidden=hidden_size(base),
                             slots=readout.slots,
                             layers=len(readout.layers), standardize=True)
    torch.manual_seed(seed)
    bundle = ProjectorBundle(config)
    bundle.fit_standardizer(torch.randn(16, config.layers, config.slots, config.expert_hidden))
    if prototypes is None:
        prototypes = torch.nn.functional.normalize(torch.randn(3, config.expert_hidden), dim=-1)
    return assemble_module(out, name=name, base_id=paths[base_key], base_model=base, expert_id=paths[expert_key],
                           expert_model=expert, adapter_dir=None, readout=readout, projector=bundle,
                           prototypes=prototypes, exemplars=exemplars or ["what is x?", "tell me about y"],
                           encoder=encoder, description=f"tiny test domain {name}", router_files=router_files)
