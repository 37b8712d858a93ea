"""The stages of ``train_domain``, each a function that returns what the next ones need.

Every stage resumes: what it finished is in the work folder, and a rerun picks it up instead of redoing it
(``train_domain.py`` lists the files). Randomness is seeded where it is used, in the same order on every run,
so a resumed or repeated run trains exactly the same weights.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file

from ..errors import TrainingError
from ..grounding import Grounding
from ..hybrid import module_router_files
from ..injection import InjectionHook
from ..models import hidden_size, load_causal_lm, load_sentence_encoder, load_tokenizer
from ..projectors import ProjectorBundle, ProjectorConfig, anchor_on_vocabulary
from ..readouts import BUILTIN_READOUTS
from ..router import ExpertMeanEncoder, SentenceEncoder, build_prototypes
from .config import AlignConfig, TrainConfig
from .data import QAPair, TrainData, TrainInputs, file_digest
from .evaluate import containment_accuracy, generate_with_memory
from .loop import append_log
from .readout_cache import build_cache, load_cache
from .stage1 import add_lora, train_expert
from .stage2 import AlignmentModel, align_projector, make_examples

ADAPTER_FILE = "adapter_model.safetensors"


@dataclass
class TrainContext:
    """What every stage reads: the request, its loaded data, the work folder and how this process runs."""

    config: TrainConfig
    inputs: TrainInputs
    data: TrainData
    work: Path
    accelerator: Any
    progress: Callable[[str, int, int, dict], None] | None
    base_id: str
    expert_id: str
    dtype: str  # the profile's: the models load in it
    grounding: Grounding = field(default_factory=lambda: Grounding([], 0))  # the passages the expert reads

    def expert_inputs(self, questions: list[str]) -> list[str]:
        """What the expert reads for each question (its top passages first when it is grounded)."""
        return self.grounding.expert_inputs(questions)

    @property
    def log_path(self) -> Path:
        return self.work / "train-log.jsonl"

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process


# --- Stage I: the expert ------------------------------------------------------------------------------

@dataclass
class ExpertResult:
    model: Any  # PeftModel with the domain adapter "default"; eval mode, frozen
    tokenizer: Any
    adapter_dir: Path  # work/expert/
    seconds: float


def expert_stage(ctx: TrainContext, reuse: Path | None = None, start: Path | None = None) -> ExpertResult:
    """Stage I: train the expert's LoRA into ``work/expert/`` (DAPT, then QA SFT), or load it when it is there.
    ``reuse``: an adapter folder trained earlier, copied in first (benchmarks, re-alignment); ``start``: an
    adapter folder to continue training from instead of a fresh LoRA (update-domain)."""
    started = time.time()
    tokenizer = load_tokenizer(ctx.expert_id)
    adapter_dir = ctx.work / "expert"
    if reuse is not None and not adapter_dir.exists():
        shutil.copytree(reuse, adapter_dir)
    if (adapter_dir / ADAPTER_FILE).exists():
        backbone = load_causal_lm(ctx.expert_id, dtype=ctx.dtype, device=ctx.device)
        model = PeftModel.from_pretrained(backbone, str(adapter_dir), adapter_name="default")
    else:
        model = _train_expert(ctx, tokenizer, adapter_dir, start)
    model.eval()
    model.requires_grad_(False)
    return ExpertResult(model, tokenizer, adapter_dir, time.time() - started)


def _train_expert(ctx: TrainContext, tokenizer, adapter_dir: Path, start: Path | None = None):
    config, data = ctx.config, ctx.data
    backbone = load_causal_lm(ctx.expert_id, dtype=ctx.dtype, frozen=False, device=ctx.device)
    if start is None:
        model = add_lora(backbone, config.stage1)
    else:  # continue a module's adapter: only its LoRA weights train
        model = PeftModel.from_pretrained(backbone.requires_grad_(False), str(start), adapter_name="default",
                                          is_trainable=True)
    questions = [p.question for p in data.qa + data.expert_only]
    inputs = ctx.expert_inputs(questions)
    allowance = max((len(tokenizer(g)["input_ids"]) - len(tokenizer(q)["input_ids"]) for q, g in zip(questions, inputs)
                     if g != q), default=0)  # the passages' tokens: a grounded example may be that much longer
    train_expert(model, tokenizer, qa=list(zip(inputs, [p.answer for p in data.qa + data.expert_only])),
                 corpus=(data.corpus or []) + data.augmented_texts, prompt_allowance=allowance,
                 config=config.stage1, system_prompt=config.stage1.system_prompt or config.readout.background_prompt,
                 workdir=ctx.work, accelerator=ctx.accelerator, seed=config.seed, log_path=ctx.log_path,
                 progress=ctx.progress)
    if ctx.is_main:
        staging = ctx.work / "expert.tmp"
        model.save_pretrained(str(staging), safe_serialization=True)
        if not (staging / ADAPTER_FILE).exists():
            raise TrainingError(f"peft did not write {ADAPTER_FILE} in {staging}; install a peft that saves "
                                "safetensors adapters and rerun (the trained phases resume).")
        if not adapter_dir.exists():
            staging.replace(adapter_dir)
    ctx.accelerator.wait_for_everyone()
    return model


# --- readout cache ------------------------------------------------------------------------------------

@dataclass
class ReadoutCacheResult:
    caches: dict[str, tuple[Path, list[str]]]  # split ("train", "dev") -> (cache folder, its questions)
    seconds: float

    def load(self, split: str) -> torch.Tensor | None:
        """The split's readouts [N, layers, K, h_expert] in question order (None for a split without questions)."""
        folder, questions = self.caches[split]
        return load_cache(folder, questions) if questions else None


def cache_readouts(ctx: TrainContext, expert: ExpertResult, num_shards: int = 1, shard_rank: int = 0
                   ) -> ReadoutCacheResult:
    """Expert readouts of the train and dev questions, as cache shards in ``work/readouts-*/``. This worker builds
    its shards (``num_shards`` > 1: the ones of ``shard_rank``; else this process's share) and skips finished ones."""
    started = time.time()
    config = ctx.config
    readout = BUILTIN_READOUTS[config.readout.kind](config.readout)
    key = {"readout": config.readout.to_dict(), "adapter": file_digest(expert.adapter_dir / ADAPTER_FILE),
           **({"passages": ctx.grounding.digest()} if ctx.grounding.k else {})}
    if num_shards <= 1:
        num_shards, shard_rank = ctx.accelerator.num_processes, ctx.accelerator.process_index
    caches = {"train": (ctx.work / "readouts-train", ctx.data.questions),
              "dev": (ctx.work / "readouts-dev", [p.question for p in ctx.data.dev_eval])}

    def read(batch: list[str]) -> torch.Tensor:
        return readout.read(expert.model, expert.tokenizer, ctx.expert_inputs(batch))

    for split, (folder, questions) in caches.items():
        if questions:
            build_cache(folder, questions, read, key=key,
                        shard_size=config.shard_size, batch_size=config.readout_batch_size, num_shards=num_shards,
                        shard_rank=shard_rank, progress=_relabelled(ctx.progress, f"readout-{split}"))
    ctx.accelerator.wait_for_everyone()
    return ReadoutCacheResult(caches, time.time() - started)


def _relabelled(progress, label: str):
    if progress is None:
        return None
    return lambda _label, done, total, info: progress(label, done, total, info)


# --- Stage II: projector alignment ----------------------------------------------------------------------

class DevEvaluator:
    """Greedy dev containment while aligning: run_loop's ``on_epoch_end`` (every ``dev_every`` epochs and after
    the last), and the module's final metric."""

    def __init__(self, config: AlignConfig, base, tokenizer, hook: InjectionHook, bundle: ProjectorBundle,
                 pairs: list[QAPair], memory: torch.Tensor | None):
        self.config, self.base, self.tokenizer, self.hook, self.bundle = config, base, tokenizer, hook, bundle
        self.pairs, self.memory = pairs, memory
        self.history: list[dict] = []

    def __call__(self, epoch: int) -> dict:
        every = self.config.dev_every
        if not self.pairs or not (epoch == self.config.epochs or (every and epoch % every == 0)):
            return {}
        with torch.no_grad():
            projected = self.bundle(self.memory[: len(self.pairs)])
        predictions = generate_with_memory(self.base, self.tokenizer, self.hook, [p.question for p in self.pairs],
                                           projected, self.config.max_new_tokens)
        accuracy = containment_accuracy(predictions, [p.meta.get("value") or p.answer for p in self.pairs])
        self.history.append({"epoch": epoch, "dev_containment": accuracy})
        return {"dev_containment": accuracy}

    def final_metrics(self) -> dict:
        """``{"dev_containment": ...}`` after the last epoch (evaluated now if alignment was resumed past it)."""
        if not self.pairs:
            return {}
        done = self.history and self.history[-1]["epoch"] == self.config.epochs
        last = self.history[-1] if done else self(self.config.epochs)
        return {"dev_containment": round(last["dev_containment"], 4)}


@dataclass
class AlignResult:
    bundle: ProjectorBundle  # aligned, eval mode
    base: Any
    base_tokenizer: Any
    hook: InjectionHook
    dev: DevEvaluator
    seconds: float


def align_stage(ctx: TrainContext, expert: ExpertResult, readouts: ReadoutCacheResult) -> AlignResult:
    """Stage II: align the projector on the cached readouts through the frozen base (``work/stage2.ckpt``), or
    load ``work/projector.safetensors`` when alignment finished earlier."""
    started = time.time()
    config, data = ctx.config, ctx.data
    train_memory, dev_memory = readouts.load("train"), readouts.load("dev")
    base = load_causal_lm(ctx.base_id, dtype=ctx.dtype, device=ctx.device)
    base_tokenizer = load_tokenizer(ctx.base_id)
    hook = InjectionHook(base_tokenizer)
    bundle = _new_projector(ctx, expert, base, base_tokenizer, train_memory)
    sentences = _sentence_embeddings([p.answer for p in data.qa]) if config.stage2.semantic_alpha else None
    model = AlignmentModel(bundle, base, 0 if sentences is None else sentences.shape[1]).to(ctx.device)
    examples = make_examples(hook, base_tokenizer, data.questions, [p.answer for p in data.qa], train_memory,
                             bundle.config.slots, sentences)
    dev = DevEvaluator(config.stage2, base, base_tokenizer, hook, bundle, data.dev_eval, dev_memory)
    projector_file = ctx.work / "projector.safetensors"
    if projector_file.exists():
        bundle.load_state_dict(load_file(str(projector_file)))
    else:
        align_projector(model, base_tokenizer, examples, config=config.stage2, workdir=ctx.work,
                        accelerator=ctx.accelerator, seed=config.seed, log_path=ctx.log_path, progress=ctx.progress,
                        on_epoch_end=dev)
        if ctx.is_main:
            staging = projector_file.with_suffix(".tmp")
            save_file({k: v.detach().cpu().contiguous() for k, v in bundle.state_dict().items()}, str(staging))
            staging.replace(projector_file)
    bundle.eval()
    return AlignResult(bundle, base, base_tokenizer, hook, dev, time.time() - started)


def _new_projector(ctx: TrainContext, expert: ExpertResult, base, base_tokenizer, memory: torch.Tensor):
    """The projector to align, initialised from the seed: sized by the readouts, output scaled to the base's
    embeddings, standardised on the training readouts; ``anchored_residual`` starts from the least-squares map
    between the two models' embeddings of their shared vocabulary (the fit is logged)."""
    config = ctx.config
    emb_rms = float(base.get_input_embeddings().weight.float().pow(2).mean().sqrt())
    projector = ProjectorConfig(kind=config.stage2.projector, expert_hidden=hidden_size(expert.model),
                                base_hidden=hidden_size(base), slots=memory.shape[2], layers=memory.shape[1],
                                output_scale=emb_rms, standardize=config.stage2.standardize)
    torch.manual_seed(config.seed)
    bundle = ProjectorBundle(projector)
    bundle.fit_standardizer(memory)
    if hasattr(bundle.projector, "anchor"):
        fit = anchor_on_vocabulary(bundle, expert.model, expert.tokenizer, base, base_tokenizer)
        if ctx.is_main:
            append_log(ctx.log_path, {"stage": "stage2-align", "event": "anchor", **fit})
    return bundle


def _sentence_embeddings(texts: list[str]) -> torch.Tensor:
    """The semantic loss's targets: the embedded sentence encoder's unit vectors of the gold answers."""
    encoder = load_sentence_encoder()
    return torch.as_tensor(encoder.encode(texts, convert_to_numpy=True, normalize_embeddings=True,
                                          batch_size=64)).float()


# --- router prototypes -------------------------------------------------------------------------------------

@dataclass
class RouterResult:
    prototypes: torch.Tensor  # [k, dim], unit rows
    encoder: str  # the encoder's name (the manifest records it; another encoder rebuilds from the exemplars)
    exemplars: list[str] = field(default_factory=list)  # up to 256 distinct training questions
    files: dict[str, str] = field(default_factory=dict)  # lexical index + calibration questions (hybrid routing)


def router_stage(ctx: TrainContext, expert: ExpertResult) -> RouterResult:
    """k-means prototypes of the training questions under the configured router encoder, the lexical index
    (training questions + corpus) and the calibration questions (dev) of hybrid routing."""
    config, questions = ctx.config, ctx.data.questions
    if config.router_encoder == "minilm" or config.router_encoder.startswith("sentence"):
        encoder = SentenceEncoder()
    else:
        encoder = ExpertMeanEncoder(expert.model, expert.tokenizer, ctx.expert_id)
    prototypes = build_prototypes(encoder.encode(questions), k=config.prototypes, seed=config.seed)
    files = module_router_files(ctx.inputs.name, encoder, prototypes, questions, ctx.data.corpus or [],
                                [p.question for p in ctx.data.dev], ctx.inputs.general_questions)
    return RouterResult(prototypes, encoder.name, list(dict.fromkeys(questions))[:256], files)
