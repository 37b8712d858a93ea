"""Hostile modules. Each is refused with a clear message and GAG_HOME stays byte-identical.

Every attack tries to *replace* an installed, good domain (``install-domain --force``), so a refusal that
touched the store at all would show up in the tree hash.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gag_core import install
from gag_core.errors import IncompatibleModuleError
from gag_core.module import ADAPTER_CONFIG, MANIFEST, DomainModule, verify_module
from tests.test_distribution import FakeHub, fake_hub  # noqa: F401  (fixture)
from tests.test_store import cli, rehash, tree_hash

NAME = "victim"


@pytest.fixture
def victim(make_module, gag_home, tmp_path):
    """A good domain installed under GAG_HOME, and a fresh copy of it to turn into an attack."""
    good = make_module(NAME)
    install.install_folder(good)
    attack = tmp_path / "attack" / NAME
    shutil.copytree(good, attack)
    return attack


def refused(source, gag_home, message: str, *extra: str) -> None:
    """install-domain --force must fail with ``message`` (regex on the joined output) and change nothing."""
    before = tree_hash(gag_home)
    r = CliRunner().invoke(cli(), ["install-domain", str(source), "--force", *extra])
    out = " ".join(r.output.split())
    assert r.exit_code == 1, out
    assert out.count("Error:") == 1 and re.search(message, out), out
    assert "Traceback" not in out
    assert tree_hash(gag_home) == before
    verify_module(gag_home / "domains" / NAME)  # the good installation still verifies


def never_load(monkeypatch, hostile: Path) -> None:
    """Fail the test if the hostile file's tensors are ever read (good installed modules may be)."""
    import safetensors.torch

    real = safetensors.torch.load_file
    content = Path(hostile).read_bytes()  # compared by content: the store verifies a staged copy

    def load_file(path, *args, **kwargs):
        if Path(path).read_bytes() == content:
            pytest.fail("a tensor of the hostile file was read")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "load_file", load_file)


def _edit_manifest(folder: Path, fn) -> None:
    data = json.loads((folder / MANIFEST).read_text())
    fn(data)
    (folder / MANIFEST).write_text(json.dumps(data, sort_keys=True, indent=2))


# --- files ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_pickle_renamed_to_safetensors(victim, gag_home, kind, monkeypatch):
    target = victim / "projector.safetensors"
    if kind == "pickle":
        target.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}, protocol=4))
    else:
        torch.save({"weight": torch.zeros(4)}, target)
    rehash(victim)  # the attacker lists the right hash: only the content check can catch it
    never_load(monkeypatch, target)
    refused(victim, gag_home, r"projector\.safetensors is not a valid safetensors file .* renamed pickle")


def test_hash_mismatch(victim, gag_home):
    with open(victim / "expert" / "adapter_model.safetensors", "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\xff" * 8)
    refused(victim, gag_home, r"expert/adapter_model\.safetensors in module 'victim' has sha256 .* tampered with\. Re-download it")


@pytest.mark.parametrize("path", ["../evil.json", "router/../../evil.json", "/etc/evil.json", "C:/evil.json"])
def test_path_escaping_the_module_in_the_manifest(victim, gag_home, path):
    (victim.parent / "evil.json").write_text("{}")
    _edit_manifest(victim, lambda d: d["files"].__setitem__(path, "0" * 64))
    refused(victim, gag_home, rf"Unsafe path '{re.escape(path)}' in the module: .* stay inside the module folder")


@pytest.mark.parametrize("what", ["file", "folder"])
def test_symlink_to_something_outside(victim, gag_home, tmp_path, what):
    outside = tmp_path / "outside"
    if what == "file":
        outside.mkdir()
        shutil.copyfile(victim / "router" / "exemplars.jsonl", outside / "exemplars.jsonl")
        (victim / "router" / "exemplars.jsonl").unlink()
        (victim / "router" / "exemplars.jsonl").symlink_to(outside / "exemplars.jsonl")
        refused(victim, gag_home, r"'router/exemplars\.jsonl' is a symbolic link; modules may not contain links")
    else:
        shutil.move(victim / "expert", outside)
        (victim / "expert").symlink_to(outside, target_is_directory=True)
        refused(victim, gag_home, r"'expert' is a symbolic link")


def test_device_or_fifo_file(victim, gag_home):
    os.mkfifo(victim / "router" / "pipe.jsonl")
    refused(victim, gag_home, r"'router/pipe\.jsonl' is not a regular file")


def test_safetensors_header_declaring_a_10_gb_tensor(victim, gag_home, monkeypatch):
    header = json.dumps({"proj.weight": {"dtype": "F32", "shape": [50_000, 50_000],
                                         "data_offsets": [0, 10_000_000_000]}}).encode()
    (victim / "projector.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 64)
    rehash(victim)
    never_load(monkeypatch, victim / "projector.safetensors")
    refused(victim, gag_home, r"tensor 'proj\.weight' declares shape \[50000, 50000\] \(10000000000 bytes\) "
                              r"but the file holds 64 data bytes")


def test_projector_shapes_must_match_the_manifest(victim, gag_home):
    from safetensors.torch import save_file

    save_file({"projector.fc1.weight": torch.zeros(2, 2)}, str(victim / "projector.safetensors"))
    rehash(victim)
    refused(victim, gag_home, r"projector\.safetensors of module 'victim' does not match its projector config")


@pytest.mark.parametrize("damage", ["nan", "zero_std"])
def test_projector_with_non_finite_weights_or_zero_std(victim, gag_home, damage):
    from safetensors.torch import load_file, save_file

    path = victim / "projector.safetensors"
    state = load_file(str(path))
    if damage == "nan":
        state["gain"] = torch.tensor(float("nan"))
    else:
        state["input_std"][0, 0, 0] = 0.0
    save_file(state, str(path))
    rehash(victim)
    refused(victim, gag_home, r"non-finite or invalid values in \[.*(gain|input_std)")


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".pkl", ".pth"])
def test_pickle_formats_are_refused_by_type(victim, gag_home, suffix):
    torch.save({"w": torch.zeros(2)}, victim / "expert" / f"adapter_model{suffix}")
    rehash(victim)  # even when the manifest lists it with the right hash
    refused(victim, gag_home, rf"File 'expert/adapter_model{re.escape(suffix)}' has a disallowed type\. Only "
                              r"\.safetensors, \.json, \.jsonl and \.md files are accepted")


def test_oversized_module(victim, gag_home):
    refused(victim, gag_home, r"per-file limit is 20000 \(raise GAG_MAX_FILE_BYTES or --max-size", "--max-size", "20KB")


# --- manifest and adapter config --------------------------------------------------------------------

@pytest.mark.parametrize("edit, message", [
    (lambda d: d.__setitem__("trust_remote_code", True), r"unknown fields \['trust_remote_code'\]; gag never executes code"),
    (lambda d: d.__setitem__("entry_point", "evil:run"), r"unknown fields \['entry_point'\]"),
    (lambda d: d["expert"].__setitem__("trust_remote_code", True),
     r"'expert' has unknown fields \['trust_remote_code'\] .* never executes code or enables remote code"),
    (lambda d: d["router"].__setitem__("encoder_module", "evil.encoders:Encoder"), r"'router' has unknown fields \['encoder_module'\]"),
    (lambda d: d["readout"].__setitem__("module", "os.system"), r"executable-looking fields \['manifest\.readout\.module'\]"),
    (lambda d: d["projector"].__setitem__("class_path", "evil.Projector"), r"fields \['manifest\.projector\.class_path'\]"),
    (lambda d: d["readout"].__setitem__("hook", "evil"), r"missing or has a malformed field"),
    (lambda d: d.__setitem__("training", {"config": {"auto_map": {"AutoModel": "evil.Model"}}}),
     r"executable-looking fields \['manifest\.training\.config\.auto_map'\]"),
    (lambda d: d.__setitem__("training", {"loader": "evil.module:run"}), r"executable-looking fields \['manifest\.training\.loader'\]"),
    (lambda d: d.__setitem__("format_version", 99), r"format_version 99; this gag reads version 1"),
    (lambda d: d["files"].__setitem__("README.md", "not-a-hash"), r"'README\.md' with 'not-a-hash', which is not a sha256"),
])
def test_manifest_with_unknown_or_executable_looking_fields(victim, gag_home, edit, message):
    _edit_manifest(victim, edit)
    refused(victim, gag_home, message)


@pytest.mark.parametrize("changes, message", [
    ({"megatron_config": {"x": 1}, "megatron_core": "evil.module"}, r"megatron_config=.* plain LoRA adapters only"),
    ({"megatron_core": "evil.module"}, r"megatron_core names module 'evil\.module'"),
    ({"auto_mapping": {"base_model_class": "X", "parent_library": "os"}}, r"auto_mapping names 'os'"),
    ({"modules_to_save": ["lm_head"]}, r"modules_to_save=\['lm_head'\],.* beyond the LoRA weights"),
    ({"layer_replication": [[0, 4]]}, r"layer_replication"),
    ({"init_lora_weights": "pissa"}, r"init_lora_weights='pissa' re-initialises base weights"),
    ({"peft_type": "PROMPT_TUNING"}, r"must describe a LoRA adapter"),
    ({"trust_remote_code": True}, r"executable-looking fields \['trust_remote_code'\]"),
])
def test_adapter_config_that_would_change_more_than_the_lora(victim, gag_home, changes, message):
    cfg = json.loads((victim / ADAPTER_CONFIG).read_text())
    cfg.update(changes)
    (victim / ADAPTER_CONFIG).write_text(json.dumps(cfg))
    rehash(victim)
    refused(victim, gag_home, message)


# --- a module aligned to another base -----------------------------------------------------------------

def test_module_for_another_base_installs_but_its_use_is_refused(make_module, tiny_paths, gag_home):
    from gag_core.models import load_causal_lm, load_tokenizer
    from gag_core.pipeline import GagPipeline

    src = make_module("foreign", base_key="llama_base")  # aligned to the tiny Llama base, same hidden size
    r = CliRunner().invoke(cli(), ["install-domain", str(src)])
    assert r.exit_code == 0, r.output
    before = tree_hash(gag_home)
    module = DomainModule.open(gag_home / "domains" / "foreign")
    base = load_causal_lm(tiny_paths["base"])
    with pytest.raises(IncompatibleModuleError, match=r"Domain 'foreign' was aligned to base '.*llama_base'.*"
                                                      r"Load that base model or retrain the domain"):
        module.check_base(base)
    pipeline = GagPipeline(base, load_tokenizer(tiny_paths["base"]),
                           expert_loader=lambda eid: pytest.fail("the expert must not even be loaded"))
    with pytest.raises(IncompatibleModuleError, match="was aligned to base"):
        pipeline.add_domain(module)
    assert pipeline.domains == {}
    assert tree_hash(gag_home) == before
    rows = json.loads(CliRunner().invoke(cli(), ["list", "--json", "--check", "--base", tiny_paths["base"]]).output)
    assert [r["compatible"] for r in rows if r["name"] == "foreign"] == ["no"]


# --- the same attacks through the Hub and pip routes -------------------------------------------------

def test_hostile_module_from_the_hub_is_refused(victim, gag_home, fake_hub):  # noqa: F811
    (victim / "projector.safetensors").write_bytes(pickle.dumps({"w": 1}, protocol=4))
    rehash(victim)
    fake_hub.publish_folder("acme/victim", victim, extra={"expert/adapter_model.bin": b"\x80\x04"})
    refused("hf:acme/victim", gag_home, r"projector\.safetensors is not a valid safetensors file .* renamed pickle")
    assert not [p for p in fake_hub.paths_requested() if p.endswith(".bin")]
