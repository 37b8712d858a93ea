"""Plugins: fake plugins registered in fixtures add a readout/projector kind; duplicates and broken plugins."""

from __future__ import annotations

import importlib.metadata

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from gag_core.errors import IncompatibleModuleError, PluginError
from gag_core.models import load_causal_lm, load_tokenizer
from gag_core.module import DomainModule
from gag_core.pipeline import GagPipeline
from gag_core.projectors import ProjectorBundle, ProjectorConfig
from gag_core.readouts import ReadoutConfig, pool_segments
from gag_plugins import hookimpl, manager
from gag_plugins.api import GAG
from tests.plugin_state import forget_plugins



class MeanEmbeddingReadout:
    """A third-party readout: K segments of the expert's input embeddings of the question (no forward pass)."""

    kind = "mean_embedding"

    def __init__(self, config: ReadoutConfig | None = None):
        self.config = config or ReadoutConfig(kind=self.kind, layers=[0], slots=1)

    @torch.no_grad()
    def read(self, expert, tokenizer, questions):
        emb = expert.get_input_embeddings()
        out = []
        for q in questions:
            ids = torch.tensor(tokenizer(q, add_special_tokens=False)["input_ids"], device=emb.weight.device)
            out.append(pool_segments(emb(ids), torch.ones(len(ids), dtype=torch.bool), self.config.slots, "mean"))
        return torch.stack(out).unsqueeze(1).float()  # [B, 1, K, H]


class LinearProjector(nn.Module):
    kind = "linear_only"

    def __init__(self, config: ProjectorConfig):
        super().__init__()
        self.proj = nn.Linear(config.expert_hidden, config.base_hidden)

    def forward(self, x):
        return self.proj(x)


class ThirdPartyPlugin:
    @hookimpl
    def register_readouts(self, register):
        register(MeanEmbeddingReadout.kind, MeanEmbeddingReadout)

    @hookimpl
    def register_projectors(self, register):
        register(LinearProjector.kind, LinearProjector)


class ShadowingPlugin:
    @hookimpl
    def register_readouts(self, register):
        register("multi_slot", MeanEmbeddingReadout)


class EntryPointPlugin:  # loaded through a fake entry point below
    @hookimpl
    def register_datasets(self, register):
        register("from-entry-point", "/nowhere")


class InvalidPlugin:
    @hookimpl
    def register_readouts(self, register, not_a_spec_argument):
        pass


# what the fake entry points below name (an entry point names a module or an object with hookimpls)
ENTRY_POINT_PLUGIN, THIRD_PARTY_PLUGIN, INVALID_PLUGIN = EntryPointPlugin(), ThirdPartyPlugin(), InvalidPlugin()


@pytest.fixture
def register_plugin():
    """Register fake plugins on the real manager; always unregistered afterwards."""
    pm = manager.load_plugins()
    names = []

    def register(plugin, name):
        pm.register(plugin, name=name)
        names.append(name)
        return plugin

    try:
        yield register
    finally:
        for name in names:
            if pm.get_plugin(name) is not None:
                pm.unregister(name=name)


@pytest.fixture
def fresh_manager(monkeypatch):
    """Forget every loaded plugin for the test; the next test reloads the real ones."""
    forget_plugins()
    try:
        yield manager
    finally:
        forget_plugins()


def _tiny_gag(tiny_paths) -> GAG:
    pipeline = GagPipeline(load_causal_lm(tiny_paths["base"]), load_tokenizer(tiny_paths["base"]),
                           expert_loader=lambda e: (load_causal_lm(e), load_tokenizer(e)), max_new_tokens=4)
    return GAG(pipeline)


# --- a plugin adds kinds --------------------------------------------------------------------------------

def test_a_plugin_readout_kind_loads_and_answers(register_plugin, make_module, tiny_paths):
    register_plugin(ThirdPartyPlugin(), "third-party")
    assert manager.collect("register_readouts")["mean_embedding"] is MeanEmbeddingReadout
    folder = make_module("plugged", readout=ReadoutConfig(kind="mean_embedding", layers=[0], slots=2))
    gag = _tiny_gag(tiny_paths)
    gag.add_domain(DomainModule.open(folder))
    assert isinstance(gag.pipeline.domains["plugged"].readout, MeanEmbeddingReadout)
    assert gag.pipeline.memory("plugged", ["a", "bb cc"]).shape == (2, 2, 64)
    assert gag.answer("What colour is Veltrasite?", domain="plugged").route == "plugged"


def test_a_plugin_readout_module_answers_through_the_cli(register_plugin, make_module, tiny_paths):
    from gag_cli.main import app

    register_plugin(ThirdPartyPlugin(), "third-party")
    folder = make_module("plugged", readout=ReadoutConfig(kind="mean_embedding", layers=[0], slots=2))
    runner = CliRunner()
    assert runner.invoke(app, ["install-domain", str(folder)]).exit_code == 0
    result = runner.invoke(app, ["ask", "--domain", "plugged", "hi", "--base", tiny_paths["base"], "--json",
                                 "--max-new-tokens", "3"])
    assert result.exit_code == 0, result.output
    assert '"route": "plugged"' in result.output


def test_without_the_plugin_the_module_is_refused_with_the_fix(register_plugin, make_module, tiny_paths):
    folder = make_module("plugged", readout=ReadoutConfig(kind="mean_embedding", layers=[0], slots=2))
    with pytest.raises(IncompatibleModuleError, match="'mean_embedding'.*Install the plugin"):
        _tiny_gag(tiny_paths).add_domain(DomainModule.open(folder))


def test_a_plugin_projector_kind_is_collected_and_usable(register_plugin):
    register_plugin(ThirdPartyPlugin(), "third-party")
    cls = manager.collect("register_projectors")["linear_only"]
    config = ProjectorConfig(kind="linear_only", expert_hidden=48, base_hidden=64, slots=2, layers=1)
    bundle = ProjectorBundle(config, cls)
    assert bundle(torch.randn(3, 1, 2, 48)).shape == (3, 2, 64)


def test_a_plugin_projector_module_loads(register_plugin, make_module, tiny_paths):
    from gag_core.assemble import assemble_module
    from tests.factories import tiny_lora

    register_plugin(ThirdPartyPlugin(), "third-party")
    readout = ReadoutConfig(kind="prefill", layers=[-1], slots=1, pooling="last")
    torch.manual_seed(0)
    bundle = ProjectorBundle(ProjectorConfig(kind="linear_only", expert_hidden=48, base_hidden=64, slots=1, layers=1),
                             LinearProjector)
    base = load_causal_lm(tiny_paths["base"])
    folder = assemble_module(
        tiny_paths["base"] + "-linear-module", name="linear", base_id=tiny_paths["base"], base_model=base,
        expert_id=tiny_paths["expert"], expert_model=tiny_lora(load_causal_lm(tiny_paths["expert"], frozen=False)),
        adapter_dir=None, readout=readout, projector=bundle, prototypes=torch.randn(2, 48), exemplars=["q"],
        encoder="expert-mean")
    gag = _tiny_gag(tiny_paths)
    gag.add_domain(DomainModule.open(folder))
    assert gag.answer("hi", domain="linear").route == "linear"


# --- duplicates, the rescue variable, broken plugins ----------------------------------------------------

def test_a_duplicate_kind_is_refused_naming_it(register_plugin):
    register_plugin(ShadowingPlugin(), "shadowing")
    with pytest.raises(PluginError, match="readout 'multi_slot'.*uninstall one"):
        manager.collect("register_readouts")


def test_two_plugins_registering_the_same_new_kind_are_refused(register_plugin):
    register_plugin(ThirdPartyPlugin(), "one")
    register_plugin(ThirdPartyPlugin(), "two")
    with pytest.raises(PluginError, match="projector 'linear_only'"):
        manager.collect("register_projectors")


def test_gag_load_plugins_empty_loads_only_the_builtins(fresh_manager, monkeypatch):
    monkeypatch.setenv("GAG_LOAD_PLUGINS", "")
    pm = fresh_manager.load_plugins()
    assert [name for name, _ in pm.list_name_plugin()] == ["gag.builtins"]
    assert {"final_token", "multi_slot", "prefill"} <= set(fresh_manager.collect("register_readouts"))
    assert fresh_manager.collect("register_datasets") == {}


def _fake_entry_points(monkeypatch, *entries):
    eps = importlib.metadata.EntryPoints(
        importlib.metadata.EntryPoint(name=name, value=value, group="gag") for name, value in entries)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: eps if kw.get("group") == "gag" else ())


def test_entry_points_load_and_can_be_limited_by_name(fresh_manager, monkeypatch):
    _fake_entry_points(monkeypatch, ("good", "tests.test_plugins:ENTRY_POINT_PLUGIN"),
                       ("other", "tests.test_plugins:THIRD_PARTY_PLUGIN"))
    monkeypatch.delenv("GAG_LOAD_PLUGINS", raising=False)
    names = [n for n, _ in fresh_manager.load_plugins().list_name_plugin()]
    assert names == ["gag.builtins", "good", "other"]
    assert fresh_manager.collect("register_datasets") == {"from-entry-point": "/nowhere"}

    forget_plugins()
    monkeypatch.setenv("GAG_LOAD_PLUGINS", "good")
    assert [n for n, _ in fresh_manager.load_plugins().list_name_plugin()] == ["gag.builtins", "good"]


def test_a_broken_plugin_is_reported_by_name_and_does_not_hide_the_others(fresh_manager, monkeypatch):
    _fake_entry_points(monkeypatch, ("broken", "gag_tests_no_such_module_xyz"),
                       ("invalid", "tests.test_plugins:INVALID_PLUGIN"),
                       ("good", "tests.test_plugins:ENTRY_POINT_PLUGIN"))
    monkeypatch.delenv("GAG_LOAD_PLUGINS", raising=False)
    names = [n for n, _ in fresh_manager.load_plugins().list_name_plugin()]
    assert names == ["gag.builtins", "good"]
    assert len(fresh_manager.load_errors) == 2
    assert "'broken'" in fresh_manager.load_errors[0] and "GAG_LOAD_PLUGINS=''" in fresh_manager.load_errors[0]
    assert "'invalid'" in fresh_manager.load_errors[1]
    assert "final_token" in fresh_manager.collect("register_readouts")


def test_the_real_entry_point_group_loads_when_allowed(fresh_manager, monkeypatch):
    installed = {ep.name for ep in importlib.metadata.entry_points(group="gag")}
    monkeypatch.delenv("GAG_LOAD_PLUGINS", raising=False)
    names = {n for n, _ in fresh_manager.load_plugins().list_name_plugin()}
    assert names == {"gag.builtins"} | installed
    assert not fresh_manager.load_errors
