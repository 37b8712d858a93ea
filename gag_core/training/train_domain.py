"""``train_domain``: QA (+ corpus) -> a verified, installable domain module. Every stage resumes.

Stages (:mod:`gag_core.training.stages`), each skipped when its output exists in the work folder:
0. augmenters over the corpus (stage1.augment)         -> work/augment/ (those that resume)
1. expert LoRA (DAPT on the corpus, then QA SFT; or mixed; a grounded expert reads its top passages before each
   question: readout.context_passages)                  -> work/expert/
2. readout cache of train/dev questions                 -> work/readouts-*/
3. projector alignment (base + expert frozen)           -> work/stage2.ckpt, work/projector.safetensors
4. router prototypes (k-means), lexical index, calibration -> in the module
5. the module folder (+ model card with data stats, config, dev metrics)
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from ..assemble import assemble_module
from ..grounding import Grounding
from ..models import get_profile, resolve_dtype
from ..module import PASSAGES, check_name
from ..paths import gag_home
from .augment import expert_passages
from .augment_stage import augment_data, for_documents_only
from .config import TrainConfig, resolved
from .data import TrainData, TrainInputs, file_digest
from .replay import module_data_files
from .stages import (AlignResult, ExpertResult, ReadoutCacheResult, RouterResult, TrainContext, align_stage,
                     cache_readouts, expert_stage, router_stage)


@dataclass
class TrainRun:
    """How this process runs a training (what it learns is the ``TrainConfig``)."""

    accelerator: Any = None  # default: one process, CUDA when available
    progress: Callable[[str, int, int, dict], None] | None = None  # (stage, done, total, info)
    num_shards: int = 1  # > 1: split readout caching over this many workers ...
    shard_rank: int = 0  # ... of which this one builds the shards of this rank
    readouts_only: bool = False  # stop after this worker's readout shards
    work_dir: Path | None = None  # default: GAG_HOME/work/NAME-<hash of config and data>
    expert_adapter: Path | None = None  # a Stage I adapter trained earlier, reused instead of training one
    augmenters: dict[str, type] | None = None  # name -> augmenter class (default: the built-ins; the CLI: plugins')


def work_dir_for(inputs: TrainInputs, config: TrainConfig, dtype: str = "float32") -> Path:
    # float32 keeps the key of folders made before the dtype was part of it
    key = json.dumps({"cfg": config.to_dict(), **({"dtype": dtype} if dtype != "float32" else {}),
                      "qa": file_digest(inputs.qa), "corpus": file_digest(inputs.corpus), "dev": file_digest(inputs.dev),
                      "extra": [file_digest(p) for p in inputs.expert_only_qa]}, sort_keys=True)
    return gag_home() / "work" / f"{inputs.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def train_domain(inputs: TrainInputs, config: TrainConfig, out_dir: Path, run: TrainRun | None = None,
                 **run_options) -> Path | None:
    """Train a domain and write its module to ``out_dir``; returns the folder (None on a readout-only worker and
    on every process but the main one). ``run``, or its fields as keywords, says how this process runs."""
    run = run or TrainRun(**run_options)
    ctx = open_training(inputs, config, run)
    augment_data(ctx, run.augmenters)
    expert = expert_stage(ctx, run.expert_adapter)
    readouts = cache_readouts(ctx, expert, run.num_shards, run.shard_rank)
    if run.readouts_only:
        return None
    aligned = align_stage(ctx, expert, readouts)
    if not ctx.is_main:
        return None
    return write_module(ctx, out_dir, expert, readouts, aligned, router_stage(ctx, expert))


def open_training(inputs: TrainInputs, config: TrainConfig, run: TrainRun) -> TrainContext:
    """Check the name, seed, load and check the data, and open the work folder (with the config it trains)."""
    check_name(inputs.name)
    config, note = for_documents_only(config, inputs)
    if note:
        warnings.warn(note, stacklevel=2)
    accelerator = run.accelerator or Accelerator(cpu=not torch.cuda.is_available())
    torch.manual_seed(config.seed)
    profile = get_profile(config.profile)
    data = TrainData.load(inputs, config.question_field, config.answer_field, config.stage2.dev_limit)
    if config.readout.context_passages and not data.documents:  # nothing to read: the plain expert
        warnings.warn("No corpus: the expert has no passages to read, so it is trained plain (it must memorise its "
                      "QA; readout.context_passages = 0). Pass --corpus DOCS to ground it.", stacklevel=2)
        config = replace(config, readout=replace(config.readout, context_passages=0))
    grounding = Grounding(expert_passages(data.documents, config.readout.context_words),
                          config.readout.context_passages)
    config = resolved(config, grounded=bool(grounding.k))
    dtype = resolve_dtype(profile.dtype)
    work = run.work_dir or work_dir_for(inputs, config, dtype)
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps(config.to_dict(), indent=1, sort_keys=True))
    return TrainContext(config, inputs, data, work, accelerator, run.progress, base_id=config.base or profile.base,
                        expert_id=config.expert or profile.expert, dtype=dtype, grounding=grounding)


def write_module(ctx: TrainContext, out_dir: Path, expert: ExpertResult, readouts: ReadoutCacheResult,
                 aligned: AlignResult, router: RouterResult) -> Path:
    """The module folder: adapter, projector, prototypes, manifest and a model card with the data, config and
    dev metrics."""
    data, inputs = ctx.data, ctx.inputs
    metrics = aligned.dev.final_metrics()
    timings = {"stage1_s": expert.seconds, "readout_s": readouts.seconds, "stage2_s": aligned.seconds}
    stats = {"qa_pairs": len(data.qa), "dev_pairs": len(data.dev), "expert_only_pairs": len(data.expert_only),
             "corpus_documents": len(data.corpus or []), "augmented_texts": len(data.augmented_texts),
             "synthetic_qa_pairs": sum(1 for p in data.qa if "augmenter" in p.meta),
             "timings_s": {k: round(v, 1) for k, v in timings.items()}, "dtype": ctx.dtype,
             "sources": {k: {"path": str(Path(v).resolve()), "sha256": file_digest(v)}
                         for k, v in (("qa", inputs.qa), ("corpus", inputs.corpus)) if v is not None}}
    expert.model.set_adapter("default")
    return assemble_module(out_dir, name=inputs.name, base_id=ctx.base_id, base_model=aligned.base,
                           expert_id=ctx.expert_id, expert_model=expert.model, adapter_dir=expert.adapter_dir,
                           readout=ctx.config.readout, projector=aligned.bundle, prototypes=router.prototypes,
                           exemplars=router.exemplars, encoder=router.encoder, router_files=router.files,
                           data_files={**module_data_files(data, ctx.config.seed),
                                       **({PASSAGES: ctx.grounding.to_jsonl()} if ctx.grounding.k else {})},
                           prompt={"instruction": aligned.hook.instruction, "template": aligned.hook.template},
                           description=inputs.description or f"gag domain {inputs.name}",
                           training={"data": stats, "metrics": metrics, "config": ctx.config.to_dict(),
                                     "dev_history": aligned.dev.history})
