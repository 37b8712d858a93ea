"""Assemble a domain module folder from trained parts: manifest, model card, files."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from .models import canonical_model_id, embedding_fingerprint, hidden_size
from .module import Manifest, write_module
from .projectors import ProjectorBundle
from .readouts import ReadoutConfig


def model_card(manifest: Manifest) -> str:
    t = manifest.training or {}
    front = ["---", "library_name: gag", f"base_model: {manifest.base['id']}",
             "tags:", "- gag", "- generation-augmented-generation", "- lora", f"- gag-domain-{manifest.name}", "---", ""]
    body = [f"# gag domain module `{manifest.name}` v{manifest.version}", "", manifest.description or "", "",
            "A [gag](https://pypi.org/project/gag/) domain module: a LoRA expert, a projector that maps the expert's "
            "readout into the frozen base model's embedding space, and router prototypes.", "",
            "| part | value |", "|---|---|",
            f"| base model (frozen) | `{manifest.base['id']}` (hidden {manifest.base['hidden_size']}) |",
            f"| expert backbone | `{manifest.expert['id']}` (hidden {manifest.expert['hidden_size']}) |",
            f"| readout | {manifest.readout.kind}, layers {manifest.readout.layers}, {manifest.readout.slots} slot(s) |",
            f"| projector | {manifest.projector.kind} |",
            f"| router encoder | {manifest.router.get('encoder')} |", "",
            "## Use", "", "```bash", f"gag install-domain ./{manifest.name}",
            f"gag ask --domain {manifest.name} \"your question\"", "```", ""]
    if t.get("data"):
        body += ["## Training data", "", "```json", json.dumps(t["data"], indent=2, sort_keys=True), "```", ""]
    if manifest.history:
        body += ["## Update history", "", "| version | parent (manifest sha256) | date | added |", "|---|---|---|---|"]
        body += [f"| {h.get('version')} | {h.get('parent_version')} (`{str(h.get('parent_sha256', ''))[:12]}`) | "
                 f"{h.get('date')} | {json.dumps(h.get('added', {}), sort_keys=True)} |" for h in manifest.history]
        body.append("")
    if t.get("metrics"):
        body += ["## Metrics", "", "| metric | value |", "|---|---|"]
        body += [f"| {k} | {v} |" for k, v in sorted(t["metrics"].items())] + [""]
    if t.get("config"):
        body += ["## Training configuration", "", "```json", json.dumps(t["config"], indent=2, sort_keys=True), "```", ""]
    return "\n".join(front + body)


def assemble_module(out_dir: Path, *, name: str, base_id: str, base_model, expert_id: str, expert_model,
                    adapter_dir: Path | None, readout: ReadoutConfig, projector: ProjectorBundle,
                    prototypes: torch.Tensor, exemplars: list[str], encoder: str, prompt: dict | None = None,
                    description: str = "", version: str = "0.1.0", training: dict | None = None,
                    router_files: dict[str, str] | None = None, data_files: dict[str, str] | None = None) -> Path:
    """Write a complete, verified module folder. ``expert_model`` is a PeftModel when ``adapter_dir`` is None.
    ``router_files``: the optional lexical index and calibration questions (``module.LEXICAL``/``CALIBRATION``);
    ``data_files``: the training data update-domain replays (``module.TRAIN_QA``/``CORPUS_SAMPLE``)."""
    manifest = Manifest(
        name=name, version=version, description=description,
        base={"id": canonical_model_id(base_id), "hidden_size": hidden_size(base_model),
              "fingerprint": embedding_fingerprint(base_model)},
        expert={"id": canonical_model_id(expert_id), "hidden_size": hidden_size(expert_model)},
        readout=readout, projector=projector.config, router={"encoder": encoder}, prompt=prompt or {},
        training=training or {})
    if adapter_dir is None:
        with tempfile.TemporaryDirectory() as tmp:
            expert_model.save_pretrained(tmp, safe_serialization=True, selected_adapters=[expert_model.active_adapter])
            sub = Path(tmp) / expert_model.active_adapter
            src = sub if (sub / "adapter_config.json").exists() else Path(tmp)
            return write_module(Path(out_dir), manifest, projector=projector, adapter_dir=src, prototypes=prototypes,
                                exemplars=exemplars, card=model_card(manifest), router_files=router_files,
                                data_files=data_files)
    return write_module(Path(out_dir), manifest, projector=projector, adapter_dir=Path(adapter_dir),
                        prototypes=prototypes, exemplars=exemplars, card=model_card(manifest), router_files=router_files,
                        data_files=data_files)
