"""Save -> load round trip of a domain module for every registered readout x projector kind, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gag_core.errors import IncompatibleModuleError, ModuleFormatError
from gag_core.models import load_causal_lm, load_tokenizer
from gag_core.module import MANIFEST, DomainModule, verify_module
from gag_core.pipeline import GagPipeline
from gag_core.projectors import ProjectorBundle, ProjectorConfig
from gag_core.safety import sha256_file
from gag_plugins.manager import collect
from tests import tiny
from tests.factories import tiny_lora
from tests.test_readouts_projectors import tiny_readout



READOUT_KINDS = sorted(collect("register_readouts"))
PROJECTOR_KINDS = sorted(collect("register_projectors"))
MODULE_FILES = {"gag-domain.json", "README.md", "expert/adapter_config.json", "expert/adapter_model.safetensors",
                "projector.safetensors", "router/prototypes.safetensors", "router/exemplars.jsonl"}
QUESTIONS = ["What colour is Veltrasite?", "In which year was the hexagonal mineral discovered?"]


def files_in(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def original_bundle(readout, projector_kind, seed=0) -> ProjectorBundle:
    """The projector exactly as tests/factories.build_tiny_module initialised it."""
    config = ProjectorConfig(kind=projector_kind, expert_hidden=48, base_hidden=64, slots=readout.slots,
                             layers=len(readout.layers), standardize=True)
    torch.manual_seed(seed)
    bundle = ProjectorBundle(config, collect("register_projectors")[projector_kind])
    bundle.fit_standardizer(torch.randn(16, config.layers, config.slots, config.expert_hidden))
    # frozen like a loaded one: with requires_grad the CPU kernels may round differently (1e-7)
    return bundle.eval().requires_grad_(False)


def lora_state(peft_model, adapter="default") -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(peft_model, adapter_name=adapter)


@pytest.mark.parametrize("projector_kind", PROJECTOR_KINDS)
@pytest.mark.parametrize("readout_kind", READOUT_KINDS)
def test_save_load_round_trip(make_module, tiny_paths, readout_kind, projector_kind):
    from peft import PeftModel

    readout_config = tiny_readout(readout_kind)
    folder = make_module("rt", readout=readout_config, projector_kind=projector_kind)

    # files: exactly the format's, never pickle
    assert files_in(folder) == MODULE_FILES
    assert not [p for p in folder.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".ckpt"}]
    manifest_text = (folder / MANIFEST).read_text()
    data = json.loads(manifest_text)
    assert manifest_text == json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert data["format_version"] == 1 and set(data["files"]) == MODULE_FILES - {MANIFEST}
    assert all(sha256_file(folder / rel) == digest for rel, digest in data["files"].items())
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: gag\nbase_model: ") and "tags:" in card

    module = DomainModule.open(folder)
    assert module.manifest.readout == readout_config
    assert module.manifest.projector.kind == projector_kind

    # projector: equal state dict and equal outputs
    original = original_bundle(readout_config, projector_kind)
    loaded = module.load_projector(collect("register_projectors")[projector_kind])
    assert loaded.state_dict().keys() == original.state_dict().keys()
    for key, value in original.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    assert not any(p.requires_grad for p in loaded.parameters())
    torch.manual_seed(1)
    memory = torch.randn(2, len(readout_config.layers), readout_config.slots, 48)
    torch.testing.assert_close(loaded(memory), original(memory), rtol=0, atol=0)

    # adapter: a fresh PeftModel loads exactly the LoRA weights that were saved
    saved_expert = tiny_lora(load_causal_lm(tiny_paths["expert"], frozen=False), seed=0).eval()
    reference = lora_state(saved_expert)
    expert = PeftModel.from_pretrained(load_causal_lm(tiny_paths["expert"]), str(module.adapter_dir)).eval()
    reloaded = lora_state(expert)
    assert reloaded.keys() == reference.keys() and len(reference) > 0
    for key, value in reference.items():
        assert torch.equal(reloaded[key], value), key

    # readout through the reloaded adapter: [B, layers, K, h_expert], deterministic, and it projects to [B, K, h_base]
    readout = collect("register_readouts")[readout_kind](module.manifest.readout)
    tok = load_tokenizer(tiny_paths["expert"])
    first = readout.read(expert, tok, QUESTIONS)
    assert first.shape == (2, len(readout_config.layers), readout_config.slots, 48)
    assert torch.equal(readout.read(expert, tok, QUESTIONS), first)
    torch.testing.assert_close(readout.read(saved_expert, tok, QUESTIONS), first, rtol=0, atol=1e-6)
    assert loaded(first).shape == (2, readout_config.slots, 64)


def test_install_copy_is_byte_identical(make_module):
    from gag_core import install

    folder = make_module("copied")
    installed = install.install_folder(folder)
    assert files_in(installed.path) == MODULE_FILES
    for rel in MODULE_FILES:
        assert (installed.path / rel).read_bytes() == (folder / rel).read_bytes()


# --- refusals ----------------------------------------------------------------------------------------

def _pipeline(base, tiny_paths, expert=None):
    pipe = GagPipeline(base, load_tokenizer(tiny_paths["base"]),
                       expert_loader=lambda e: (load_causal_lm(e), load_tokenizer(e)))
    if expert is not None:
        pipe.add_expert(tiny_paths["expert"], expert, load_tokenizer(tiny_paths["expert"]))
    return pipe


def test_another_base_with_the_same_shape_is_refused(make_module, tiny_paths):
    module = DomainModule.open(make_module("fp"))
    pipe = _pipeline(load_causal_lm(tiny_paths["llama_base"]), tiny_paths)
    with pytest.raises(IncompatibleModuleError) as err:
        pipe.add_domain(module)
    msg = str(err.value)
    assert "'fp'" in msg and "input embeddings differ" in msg and "Load that base model or retrain" in msg
    assert pipe.domains == {} and pipe.experts == {}


def test_a_base_of_another_hidden_size_is_refused(make_module, tiny_paths, tiny_tokenizer):
    """The projector's output size (64) does not fit a base of hidden size 32."""
    module = DomainModule.open(make_module("hs"))
    small_base = tiny.make_model("qwen3", len(tiny_tokenizer), hidden=32, seed=1)
    with pytest.raises(IncompatibleModuleError) as err:
        _pipeline(small_base, tiny_paths).add_domain(module)
    msg = str(err.value)
    assert "hidden size 64" in msg and "hidden size 32" in msg and "retrain the domain" in msg and "Load base" in msg


def test_an_expert_of_another_hidden_size_is_refused_with_the_fix(make_module, tiny_paths, tiny_tokenizer):
    module = DomainModule.open(make_module("eh"))
    small_expert = tiny.make_model("llama", len(tiny_tokenizer), hidden=32, seed=2)
    pipe = _pipeline(load_causal_lm(tiny_paths["base"]), tiny_paths, expert=small_expert)
    with pytest.raises(IncompatibleModuleError) as err:
        pipe.add_domain(module)
    msg = str(err.value)
    assert "hidden size 48" in msg and "32" in msg
    assert "--expert" in msg or "Load" in msg or "retrain" in msg  # says what to do


def test_an_expert_of_another_hidden_size_is_refused(make_module, tiny_paths, tiny_tokenizer):
    module = DomainModule.open(make_module("eh"))
    small_expert = tiny.make_model("llama", len(tiny_tokenizer), hidden=32, seed=2)
    pipe = _pipeline(load_causal_lm(tiny_paths["base"]), tiny_paths, expert=small_expert)
    with pytest.raises(IncompatibleModuleError, match="hidden size 48.*has 32"):
        pipe.add_domain(module)
    assert pipe.domains == {}


def _rewrite_manifest(folder: Path, edit) -> None:
    data = json.loads((folder / MANIFEST).read_text())
    edit(data)
    (folder / MANIFEST).write_text(json.dumps(data, sort_keys=True, indent=2))


def test_manifest_sizes_that_disagree_are_refused(make_module):
    folder = make_module("sz")
    _rewrite_manifest(folder, lambda d: d["projector"].update(base_hidden=32))
    with pytest.raises(ModuleFormatError, match="base.hidden_size 64 differs from projector.base_hidden 32"):
        DomainModule.open(folder)


def test_projector_weights_that_do_not_match_the_config_are_refused(make_module):
    from safetensors.torch import save_file

    folder = make_module("pw")
    bigger = ProjectorBundle(ProjectorConfig(expert_hidden=48, base_hidden=64, slots=2, layers=4, hidden=128))
    save_file({k: v.contiguous() for k, v in bigger.state_dict().items()}, str(folder / "projector.safetensors"))
    digest = sha256_file(folder / "projector.safetensors")
    _rewrite_manifest(folder, lambda d: d["files"].update({"projector.safetensors": digest}))
    with pytest.raises(ModuleFormatError, match="does not match its projector config"):
        DomainModule.open(folder)


def test_tampered_missing_and_pickle_files_are_refused(make_module):
    folder = make_module("tamper")
    with open(folder / "projector.safetensors", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModuleFormatError, match="sha256.*Re-download"):
        verify_module(folder)

    folder = make_module("missing")
    (folder / "router" / "exemplars.jsonl").unlink()
    with pytest.raises(ModuleFormatError, match="missing.*router/exemplars.jsonl"):
        verify_module(folder)

    folder = make_module("pickle")
    (folder / "expert" / "adapter_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ModuleFormatError, match="never pickle"):
        verify_module(folder)


def test_a_newer_format_version_is_refused_with_the_fix(make_module):
    folder = make_module("future")
    _rewrite_manifest(folder, lambda d: d.update(format_version=2))
    with pytest.raises(ModuleFormatError, match="Upgrade gag"):
        DomainModule.open(folder)
