"""Training configuration: one dataclass per stage, per-profile defaults, TOML/YAML overrides.

Every setting carries its help text and the rule its value must follow; a config is checked when it is built
and after every override, and a value that breaks its rule is refused with the setting's name, the value and
what it should be.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..models import PROFILES
from ..projectors import BUILTIN_PROJECTORS
from ..readouts import BUILTIN_READOUTS, ReadoutConfig


@dataclass(frozen=True)
class Rule:
    test: Callable[[Any], bool]
    expected: str  # what a valid value is, in words


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def at_least(n: int) -> Rule:
    return Rule(lambda v: _is_int(v) and v >= n, f"an integer >= {n}")


def one_of(names) -> Rule:
    return Rule(lambda v: v in names, "one of " + ", ".join(sorted(names)))


def unset_or_at_least(n: int) -> Rule:
    return Rule(lambda v: v is None or (_is_int(v) and v >= n), f"an integer >= {n}, or unset (the default for a "
                                                                 "grounded or a plain expert)")


POSITIVE = Rule(lambda v: _is_number(v) and v > 0, "a number > 0")
NON_NEGATIVE = Rule(lambda v: _is_number(v) and v >= 0, "a number >= 0")
FRACTION = Rule(lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")
FLAG = Rule(lambda v: isinstance(v, bool), "true or false")
TEXT = Rule(lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string")
OPTIONAL_TEXT = Rule(lambda v: v is None or (isinstance(v, str) and bool(v.strip())), "a non-empty string or unset")
NAMES = Rule(lambda v: isinstance(v, list) and bool(v) and all(isinstance(x, str) and x for x in v),
             "a non-empty list of module names")
AUGMENTERS = Rule(lambda v: isinstance(v, list) and all(isinstance(x, str) and x for x in v) and len(set(v)) == len(v),
                  "a list of distinct augmenter names (rewrite, synthetic-qa, paraphrase, or a plugin's)")
OPTION_TABLES = Rule(lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(t, dict)
                                                           for k, t in v.items()),
                     "a table of tables, one per augmenter: {rewrite = {variants = 4}}")
MIX_MODES = ("sequential", "mixed")


def setting(default: Any = None, help: str = "", rule: Rule | None = None, *, factory: Callable | None = None):
    """A config field with its help text and the rule its value must follow."""
    meta = {"help": help, "rule": rule}
    return field(default_factory=factory, metadata=meta) if factory else field(default=default, metadata=meta)


def check_settings(config, section: str = "") -> None:
    """Refuse the first field of ``config`` whose value breaks its rule, naming it as ``section + name``."""
    for f in fields(config):
        rule, value = f.metadata.get("rule"), getattr(config, f.name)
        if rule is not None and not rule.test(value):
            raise ConfigError(f"{section}{f.name} = {value!r} is not valid: expected {rule.expected}. Set "
                              f"{section}{f.name} to such a value in the --config file (or its command-line option).")


@dataclass
class ExpertConfig:
    """Stage I: LoRA on the expert backbone (domain-adaptive pretraining, then QA SFT)."""

    lora_r: int = setting(16, "LoRA rank", at_least(1))
    lora_alpha: int = setting(32, "LoRA alpha", POSITIVE)
    lora_dropout: float = setting(0.0, "LoRA dropout", FRACTION)
    target_modules: list[str] = setting(help="modules that get LoRA", rule=NAMES, factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    top_layers: int = setting(12, "LoRA on the top N layers only (0 = all); the layers below run once per example "
                                  "(cache_trunk), not every step", at_least(0))
    cache_trunk: bool = setting(True, "with top_layers, compute the untouched lower layers once per example instead "
                                      "of every step (same loss)", FLAG)
    dapt_epochs: int | None = setting(None, "causal-LM epochs over the corpus (0 = skip; unset: 1 for a plain expert, "
                                            "0 for a grounded one)", unset_or_at_least(0))
    sft_epochs: int | None = setting(None, "QA supervised epochs (unset: 8 for a plain expert, 1 for a grounded one, "
                                           "which learns to read its passages in one)", unset_or_at_least(0))
    lr: float = setting(2e-3, "learning rate", POSITIVE)
    batch_size: int = setting(16, "examples per step", at_least(1))
    max_length: int = setting(160, "tokens per example (longer are cut)", at_least(2))
    system_prompt: str | None = setting(None, "None = the readout's background prompt", OPTIONAL_TEXT)
    mix: str = setting("sequential", "sequential: DAPT epochs over the corpus, then QA SFT; mixed: corpus text "
                                     "(+ augmented texts) and QA interleaved in every one of sft_epochs epochs "
                                     "(seeded shuffle), no separate DAPT", one_of(MIX_MODES))
    augment: list[str] = setting(help="augmenters run before Stage I (rewrite, synthetic-qa, paraphrase, or a "
                                      "plugin's); [] = none", rule=AUGMENTERS, factory=list)
    augment_options: dict = setting(help="settings per augmenter, e.g. {rewrite = {variants = 4}, synthetic-qa = "
                                         "{generator = ID}} (docs/training.md)", rule=OPTION_TABLES, factory=dict)

    def __post_init__(self):
        check_settings(self, "stage1.")


@dataclass
class AlignConfig:
    """Stage II: projector alignment with base and expert frozen."""

    projector: str = setting("anchored_residual", "projector kind: anchored_residual | mlp2x_gelu | gated_residual",
                             one_of(BUILTIN_PROJECTORS))
    epochs: int | None = setting(None, "passes over the QA pairs (unset: 9 for a plain expert, 2 for a grounded one)",
                                 unset_or_at_least(1))
    lr: float = setting(1.5e-3, "peak learning rate (cosine decay, 5% warm-up)", POSITIVE)
    batch_size: int = setting(4, "examples per step (per process); small batches align faster per epoch "
                                 "(docs/training.md)", at_least(1))
    weight_decay: float = setting(0.0, "AdamW weight decay", NON_NEGATIVE)
    grad_clip: float = setting(1.0, "gradient norm clip (0 = none)", NON_NEGATIVE)
    semantic_alpha: float = setting(0.0, "weight of the sentence-encoder semantic loss (v4: 0.01)", NON_NEGATIVE)
    diversity_alpha: float = setting(0.001, "weight of the slot-diversity loss", NON_NEGATIVE)
    standardize: bool = setting(True, "standardise readouts per feature with training statistics (stored in the "
                                      "projector; anchored_residual reads them raw)", FLAG)
    input_noise: float = setting(0.0, "std of Gaussian noise on the projector's input while training (0.1 suits "
                                      "mlp2x_gelu's standardised input)", NON_NEGATIVE)
    checkpoint_every: int = setting(50, "steps between checkpoints", at_least(1))
    dev_every: int = setting(5, "greedy dev evaluation every N epochs (0 = only at the end)", at_least(0))
    dev_limit: int = setting(32, "dev questions evaluated each time", at_least(0))
    max_new_tokens: int = setting(24, "answer budget in dev evaluation", at_least(1))
    cache_prefix: bool = setting(True, "keep the frozen prefix keys/values in memory across epochs (off for large "
                                       "bases)", FLAG)

    def __post_init__(self):
        check_settings(self, "stage2.")


@dataclass
class TrainConfig:
    profile: str = setting("embedded", "embedded | paper", one_of(PROFILES))
    base: str | None = setting(None, "base model id/folder (default: the profile's)", OPTIONAL_TEXT)
    expert: str | None = setting(None, "expert backbone id/folder (default: the profile's)", OPTIONAL_TEXT)
    question_field: str = setting("question", "JSONL field holding questions", TEXT)
    answer_field: str = setting("answer", "JSONL field holding answers", TEXT)
    seed: int = setting(0, "random seed", at_least(0))
    # embedded defaults (docs/training.md, rounds 2 and 4): the expert's background re-read without the question
    # (the same background gives the same memory whatever the phrasing), at layer 0 -- the expert's own token
    # embeddings of its background -- one token per slot in 24 slots (round 7: mean-pooling them into 12 doubled
    # or blurred new names), for the anchored_residual projector. Deep layers with mlp2x_gelu reach the same
    # held-out accuracy but carry nothing the projector was not aligned on.
    readout: ReadoutConfig = setting(
        help="expert readout", rule=Rule(lambda v: isinstance(v, ReadoutConfig), "a [readout] table"),
        factory=lambda: ReadoutConfig.for_kind("multi_slot", layers=[0], pooling="token", slots=24, reencode=True,
                                               layer_norm=False, context_passages=1))
    stage1: ExpertConfig = setting(help="Stage I", rule=Rule(lambda v: isinstance(v, ExpertConfig), "a [stage1] table"),
                                   factory=ExpertConfig)
    stage2: AlignConfig = setting(help="Stage II", rule=Rule(lambda v: isinstance(v, AlignConfig), "a [stage2] table"),
                                  factory=AlignConfig)
    prototypes: int = setting(32, "router prototypes per domain (fewer with few questions)", at_least(1))
    router_encoder: str = setting("minilm", "minilm (the embedded sentence encoder, the router's default) | "
                                            "expert-mean", TEXT)
    readout_batch_size: int = setting(32, "questions per readout batch (on 2 CPU cores 32 generates 1.3x faster per "
                                          "question than 16)", at_least(1))
    shard_size: int = setting(64, "questions per readout-cache shard", at_least(1))

    def __post_init__(self):
        check_settings(self)
        if self.readout.kind not in BUILTIN_READOUTS:
            raise ConfigError(f"readout.kind = {self.readout.kind!r} cannot be trained: train-domain builds the "
                              f"built-in readouts ({', '.join(sorted(BUILTIN_READOUTS))}); pick one (--readout).")

    def to_dict(self) -> dict:
        return asdict(self)


def profile_defaults(profile: str) -> TrainConfig:
    """Defaults that work: ``embedded`` is tuned for a 2-core CPU; ``paper`` follows the paper's setup."""
    if profile == "embedded":
        return TrainConfig(profile="embedded")
    if profile == "paper":
        return TrainConfig(
            profile="paper",
            readout=ReadoutConfig.for_kind("multi_slot", max_new_tokens=64),
            stage1=ExpertConfig(lora_r=32, lora_alpha=64, top_layers=0, dapt_epochs=1, sft_epochs=3, lr=2e-4,
                                batch_size=8, max_length=512),
            stage2=AlignConfig(projector="gated_residual", epochs=3, lr=1e-4, batch_size=8, semantic_alpha=0.01,
                               diversity_alpha=0.001, checkpoint_every=200, max_new_tokens=64,
                               cache_prefix=False, input_noise=0.0),
            readout_batch_size=16)
    raise ConfigError(f"Unknown profile {profile!r}; expected embedded or paper.")


# What an unset epoch count means (docs/training.md): a plain expert memorises its QA over 8 epochs after one pass
# over the corpus and needs 9 alignment epochs; a grounded one learns to read its passages in one epoch.
EPOCH_DEFAULTS = {"plain": {"dapt_epochs": 1, "sft_epochs": 8, "align_epochs": 9},
                  "grounded": {"dapt_epochs": 0, "sft_epochs": 1, "align_epochs": 2}}


def resolved(config: TrainConfig, grounded: bool) -> TrainConfig:
    """``config`` with every unset epoch count set to its default for a grounded or a plain expert."""
    d = EPOCH_DEFAULTS["grounded" if grounded else "plain"]
    s1, s2 = config.stage1, config.stage2
    return replace(config, stage1=replace(s1, dapt_epochs=d["dapt_epochs"] if s1.dapt_epochs is None else s1.dapt_epochs,
                                          sft_epochs=d["sft_epochs"] if s1.sft_epochs is None else s1.sft_epochs),
                   stage2=replace(s2, epochs=d["align_epochs"] if s2.epochs is None else s2.epochs))


def with_readout_kind(config: TrainConfig, kind: str) -> TrainConfig:
    """``config`` with readout ``kind`` at that kind's defaults (``readouts.KIND_DEFAULTS``), keeping the
    profile's background prompt, budget, passages and re-reading; the profile's own kind keeps all its settings."""
    if kind == config.readout.kind:
        return config
    keep = {"max_new_tokens": config.readout.max_new_tokens, "background_prompt": config.readout.background_prompt,
            "context_passages": config.readout.context_passages, "context_words": config.readout.context_words}
    if kind != "prefill":  # prefill generates no background to re-read
        keep["reencode"] = config.readout.reencode
    return replace(config, readout=ReadoutConfig.for_kind(kind, **keep))


def _merge(obj, overrides: dict, where: str):
    names = {f.name for f in fields(obj)}
    for key, value in overrides.items():
        if key not in names:
            raise ConfigError(f"Unknown setting {where}{key!r}; valid: {sorted(names)}.")
        current = getattr(obj, key)
        if is_dataclass(current) and isinstance(value, dict):
            _merge(current, value, f"{where}{key}.")
        else:
            setattr(obj, key, value)
    obj.__post_init__()
    return obj


def _set_only(overrides: dict) -> dict:
    """The overrides that are set: None (an option not given) keeps the configured value, in nested tables too."""
    out = {}
    for key, value in overrides.items():
        if isinstance(value, dict):
            value = _set_only(value) or None
        if value is not None:
            out[key] = value
    return out


def _read_file(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        import tomllib
        return tomllib.loads(text)
    if path.suffix in (".yaml", ".yml"):
        import yaml
        return yaml.safe_load(text) or {}
    if path.suffix == ".json":
        return json.loads(text)
    raise ConfigError(f"Config file {path} must be .toml, .yaml/.yml or .json.")


def load_config(path: Path | None = None, profile: str = "embedded", overrides: dict | None = None) -> TrainConfig:
    """Profile defaults, then a TOML/YAML/JSON file, then explicit overrides (None values are not set)."""
    cfg = profile_defaults(profile)
    if path is not None:
        data = _read_file(Path(path))
        if "profile" in data and data["profile"] != profile:
            cfg = profile_defaults(data["profile"])
        _merge(cfg, data, "")
    if overrides:
        _merge(cfg, _set_only(overrides), "")
    return cfg
