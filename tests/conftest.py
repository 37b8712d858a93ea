import os

import pytest
import torch

from tests import tiny

torch.set_num_threads(1)  # tiny models: threads only add overhead
# The embedded profile's dtype is "auto" (bf16 on CPUs that compute it natively): tests pin float32 so that their
# exact comparisons hold on every machine (test_models_dtype covers the resolution itself).
os.environ["GAG_DTYPE"] = "float32"


@pytest.fixture(autouse=True)
def gag_home(tmp_path, monkeypatch):
    """Every test gets its own empty GAG_HOME (the embedded model cache is shared, see below)."""
    home = tmp_path / "gag_home"
    home.mkdir()
    monkeypatch.setenv("GAG_HOME", str(home))
    shared_models = os.environ.get("GAG_TEST_MODELS_DIR")
    if shared_models:
        (home / "models").symlink_to(shared_models, target_is_directory=True)
    return home


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_dir):
    return tiny.make_tokenizer(tiny_dir / "tokenizer")


@pytest.fixture(scope="session")
def tiny_paths(tiny_dir, tiny_tokenizer):
    """Saved tiny models: a Qwen3 base (h=64) and a Llama expert (h=48)."""
    vocab = len(tiny_tokenizer)
    base = tiny.save_model(tiny.make_model("qwen3", vocab, hidden=64, seed=1), tiny_tokenizer, tiny_dir / "base")
    expert = tiny.save_model(tiny.make_model("llama", vocab, hidden=48, seed=2), tiny_tokenizer, tiny_dir / "expert")
    llama_base = tiny.save_model(tiny.make_model("llama", vocab, hidden=64, seed=3), tiny_tokenizer, tiny_dir / "llama_base")
    return {"base": str(base), "expert": str(expert), "llama_base": str(llama_base)}


@pytest.fixture
def make_module(tiny_paths, tmp_path):
    """Factory: a complete module folder built from the tiny models with an untrained projector."""
    from tests.factories import build_tiny_module

    def make(name="tinydom", **kwargs):
        return build_tiny_module(tmp_path / "built" / name, name=name, paths=tiny_paths, **kwargs)

    return make
