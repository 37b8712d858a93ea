"""The profiles' dtype resolution: ``auto`` follows GAG_DTYPE, else native bf16 support."""

import pytest
import torch

from gag_core import models
from gag_core.errors import ConfigError


def test_concrete_dtypes_pass_through(monkeypatch):
    monkeypatch.setenv("GAG_DTYPE", "bfloat16")
    assert models.resolve_dtype("float32") == "float32"
    assert models._dtype("float16") is torch.float16


def test_auto_follows_gag_dtype(monkeypatch):
    monkeypatch.setenv("GAG_DTYPE", "bfloat16")
    assert models.resolve_dtype("auto") == "bfloat16"
    monkeypatch.setenv("GAG_DTYPE", "float64")
    with pytest.raises(ConfigError, match="GAG_DTYPE"):
        models.resolve_dtype("auto")


@pytest.mark.parametrize("flags, expected", [("fpu sse avx512f avx512_bf16", "bfloat16"),
                                             ("fpu sse amx_bf16", "bfloat16"),
                                             ("fpu sse avx2 avx512f", "float32")])
def test_auto_on_cpu_reads_the_cpu_flags(monkeypatch, tmp_path, flags, expected):
    monkeypatch.delenv("GAG_DTYPE")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    real_path = models.Path
    monkeypatch.setattr(models, "Path", lambda p: real_path(cpuinfo) if p == "/proc/cpuinfo" else real_path(p))
    assert models.resolve_dtype("auto") == expected


def test_embedded_profile_is_auto_and_unknown_names_are_refused():
    assert models.get_profile("embedded").dtype == "auto"
    with pytest.raises(ConfigError, match="Unknown dtype"):
        models._dtype("int8")


def test_the_converted_embedded_config_carries_no_gguf_quantization(tmp_path):
    """A cache converted before the fix is repaired in place: transformers would attach its GGUF quantizer."""
    import json

    from gag_core.models import _drop_quantization_config

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "llama", "quantization_config": {"quant_method": "gguf"}}))
    _drop_quantization_config(config)
    assert json.loads(config.read_text()) == {"model_type": "llama"}
    before = config.stat().st_mtime_ns
    _drop_quantization_config(config)  # nothing to do: the file is not rewritten
    assert config.stat().st_mtime_ns == before and not list(tmp_path.glob("*.tmp"))
