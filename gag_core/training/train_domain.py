"""``train_domain``: QA (+ corpus) -> a verified, installable domain module. Every stage resumes.

Stages, each skipped when its output exists in the work folder:
1. expert LoRA (DAPT on the corpus, then QA SFT)       -> work/expert/
2. readout cache of train/dev questions                 -> work/readouts-*/
3. projector alignment (base + expert frozen)           -> work/stage2.ckpt, work/projector.safetensors
4. router prototypes (k-means)                          -> in the module
5. the module folder (+ model card with data stats, config, dev metrics)
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..assemble import assemble_module
from ..errors import DataError
from ..injection import InjectionHook
from ..models import get_profile, hidden_size, load_causal_lm, load_tokenizer
from ..paths import gag_home
from ..projectors import ProjectorBundle, ProjectorConfig, anchor_on_vocabulary
from ..readouts import BUILTIN_READOUTS
from .config import TrainConfig
from .data import QAPair, load_corpus_texts, load_qa


@dataclass
class TrainInputs:
    name: str
    qa: Path
    corpus: Path | None = None
    dev: Path | None = None
    expert_only_qa: list[Path] = field(default_factory=list)  # QA used in Stage I only (never aligned)
    description: str = ""


def _file_digest(path: Path | None) -> str:
    if path is None:
        return ""
    p = Path(path)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(p.rglob("*")):
            if f.is_file():
                h.update(f.name.encode() + f.read_bytes())
        return h.hexdigest()
    return hashlib.sha256(p.read_bytes()).hexdigest()


def work_dir_for(inputs: TrainInputs, config: TrainConfig) -> Path:
    key = json.dumps({"cfg": config.to_dict(), "qa": _file_digest(inputs.qa), "corpus": _file_digest(inputs.corpus),
                      "dev": _file_digest(inputs.dev), "extra": [_file_digest(p) for p in inputs.expert_only_qa]},
                     sort_keys=True)
    return gag_home() / "work" / f"{inputs.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _golds(pairs: list[QAPair]) -> list[str]:
    return [p.meta.get("value") or p.answer for p in pairs]


def train_domain(inputs: TrainInputs, config: TrainConfig, out_dir: Path, *, accelerator=None, progress=None,
                 num_shards: int = 1, shard_rank: int = 0, readouts_only: bool = False,
                 work_dir: Path | None = None, expert_adapter: Path | None = None) -> Path | None:
    """Train a domain and write its module to ``out_dir``. Returns the folder (None for readout-only workers)."""
    from accelerate import Accelerator

    from ..module import check_name

    check_name(inputs.name)
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    torch.manual_seed(config.seed)
    prof = get_profile(config.profile)
    base_id, expert_id = config.base or prof.base, config.expert or prof.expert
    qa = load_qa(inputs.qa, config.question_field, config.answer_field)
    dev = load_qa(inputs.dev, config.question_field, config.answer_field, min_rows=1) if inputs.dev else []
    extra = [p for path in inputs.expert_only_qa for p in load_qa(path, config.question_field, config.answer_field, 1)]
    corpus = load_corpus_texts(inputs.corpus) if inputs.corpus else None
    work = work_dir or work_dir_for(inputs, config)
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "train-log.jsonl"
    (work / "config.json").write_text(json.dumps(config.to_dict(), indent=1, sort_keys=True))
    timings: dict[str, float] = {}

    # -- Stage I: expert ------------------------------------------------------------------------------
    t0 = time.time()
    expert_tok = load_tokenizer(expert_id)
    system_prompt = config.stage1.system_prompt or config.readout.background_prompt
    adapter_dir = work / "expert"
    if expert_adapter is not None and not adapter_dir.exists():  # reuse a trained expert (benchmarks, re-alignment)
        import shutil

        shutil.copytree(expert_adapter, adapter_dir)
    if not (adapter_dir / "adapter_model.safetensors").exists():
        from .stage1 import add_lora, train_expert

        backbone = load_causal_lm(expert_id, dtype=prof.dtype, frozen=False, device=accelerator.device)
        peft_model = add_lora(backbone, config.stage1)
        train_expert(peft_model, expert_tok, qa=[(p.question, p.answer) for p in qa + extra], corpus=corpus,
                     config=config.stage1, system_prompt=system_prompt, workdir=work, accelerator=accelerator,
                     seed=config.seed, log_path=log_path, progress=progress)
        if accelerator.is_main_process:
            tmp = work / "expert.tmp"
            peft_model.save_pretrained(str(tmp), safe_serialization=True)
            (tmp / "adapter_model.safetensors").exists() or _raise_no_adapter(tmp)
            tmp.replace(adapter_dir) if not adapter_dir.exists() else None
        accelerator.wait_for_everyone()
        expert = peft_model
    else:
        from peft import PeftModel

        backbone = load_causal_lm(expert_id, dtype=prof.dtype, device=accelerator.device)
        expert = PeftModel.from_pretrained(backbone, str(adapter_dir), adapter_name="default")
    expert.eval()
    expert.requires_grad_(False)
    timings["stage1_s"] = time.time() - t0

    # -- readout cache --------------------------------------------------------------------------------
    t0 = time.time()
    from .readout_cache import build_cache, load_cache

    readout = BUILTIN_READOUTS[config.readout.kind](config.readout)
    key = {"readout": config.readout.to_dict(), "adapter": _file_digest(adapter_dir / "adapter_model.safetensors")}
    world, rank = accelerator.num_processes, accelerator.process_index
    shards, my_rank = (num_shards, shard_rank) if num_shards > 1 else (world, rank)
    # only the dev questions Stage II evaluates need readouts
    dev_eval = dev[: config.stage2.dev_limit]
    caches = {"train": (work / "readouts-train", [p.question for p in qa]),
              "dev": (work / "readouts-dev", [p.question for p in dev_eval])}
    for split, (folder, questions) in caches.items():
        if questions:
            build_cache(folder, questions, lambda b: readout.read(expert, expert_tok, b), key=key,
                        shard_size=config.shard_size, batch_size=config.readout_batch_size, num_shards=shards,
                        shard_rank=my_rank, progress=progress and (lambda s, i, n, d, split=split: progress(f"readout-{split}", i, n, d)))
    accelerator.wait_for_everyone()
    if readouts_only:
        return None
    train_mem = load_cache(caches["train"][0], caches["train"][1])
    dev_mem = load_cache(caches["dev"][0], caches["dev"][1]) if dev_eval else None
    timings["readout_s"] = time.time() - t0

    # -- Stage II: projector alignment -------------------------------------------------------------------
    t0 = time.time()
    from .evaluate import containment_accuracy, generate_with_memory
    from .stage2 import AlignmentModel, align_projector, make_examples

    base = load_causal_lm(base_id, dtype=prof.dtype, device=accelerator.device)
    base_tok = load_tokenizer(base_id)
    hook = InjectionHook(base_tok)
    emb_rms = float(base.get_input_embeddings().weight.float().pow(2).mean().sqrt())
    pconfig = ProjectorConfig(kind=config.stage2.projector, expert_hidden=hidden_size(expert),
                              base_hidden=hidden_size(base), slots=train_mem.shape[2], layers=train_mem.shape[1],
                              output_scale=emb_rms, standardize=config.stage2.standardize)
    torch.manual_seed(config.seed)
    bundle = ProjectorBundle(pconfig)
    bundle.fit_standardizer(train_mem)
    if hasattr(bundle.projector, "anchor"):  # anchored_residual: start from the map between the vocabularies
        fit = anchor_on_vocabulary(bundle, expert, expert_tok, base, base_tok)
        if accelerator.is_main_process:
            with open(log_path, "a") as f:
                f.write(json.dumps({"stage": "stage2-align", "event": "anchor", **fit}) + "\n")
    sentences, sentence_dim = None, 0
    if config.stage2.semantic_alpha:
        sentences = _sentence_embeddings([p.answer for p in qa])
        sentence_dim = sentences.shape[1]
    model = AlignmentModel(bundle, base, sentence_dim).to(accelerator.device)
    examples = make_examples(hook, base_tok, [p.question for p in qa], [p.answer for p in qa], train_mem,
                             pconfig.slots, sentences)
    history: list[dict] = []

    def on_epoch_end(epoch: int) -> dict:
        every = config.stage2.dev_every
        if not dev_eval or not (epoch == config.stage2.epochs or (every and epoch % every == 0)):
            return {}
        with torch.no_grad():
            projected = bundle(dev_mem[: len(dev_eval)])
        preds = generate_with_memory(base, base_tok, hook, [p.question for p in dev_eval], projected,
                                     config.stage2.max_new_tokens)
        acc = containment_accuracy(preds, _golds(dev_eval))
        history.append({"epoch": epoch, "dev_containment": acc})
        return {"dev_containment": acc}

    projector_file = work / "projector.safetensors"
    if projector_file.exists():
        from safetensors.torch import load_file

        bundle.load_state_dict(load_file(str(projector_file)))
    else:
        align_projector(model, base_tok, examples, config=config.stage2, workdir=work, accelerator=accelerator,
                        seed=config.seed, log_path=log_path, progress=progress, on_epoch_end=on_epoch_end)
        if accelerator.is_main_process:
            from safetensors.torch import save_file

            tmp = projector_file.with_suffix(".tmp")
            save_file({k: v.detach().cpu().contiguous() for k, v in bundle.state_dict().items()}, str(tmp))
            tmp.replace(projector_file)
    bundle.eval()
    timings["stage2_s"] = time.time() - t0
    if not accelerator.is_main_process:
        return None

    # -- prototypes + module ------------------------------------------------------------------------------
    metrics = {}
    if dev_eval:
        last = history[-1] if history and history[-1]["epoch"] == config.stage2.epochs else on_epoch_end(config.stage2.epochs)
        metrics["dev_containment"] = round(last["dev_containment"], 4)
    prototypes, encoder_name = _prototypes(expert, expert_tok, expert_id, [p.question for p in qa], config)
    stats = {"qa_pairs": len(qa), "dev_pairs": len(dev), "expert_only_pairs": len(extra),
             "corpus_documents": len(corpus or []), "timings_s": {k: round(v, 1) for k, v in timings.items()}}
    exemplars = list(dict.fromkeys(p.question for p in qa))[:256]
    expert.set_adapter("default")
    return assemble_module(out_dir, name=inputs.name, base_id=base_id, base_model=base, expert_id=expert_id,
                           expert_model=expert, adapter_dir=adapter_dir, readout=config.readout, projector=bundle,
                           prototypes=prototypes, exemplars=exemplars, encoder=encoder_name,
                           prompt={"instruction": hook.instruction, "template": hook.template},
                           description=inputs.description or f"gag domain {inputs.name}",
                           training={"data": stats, "metrics": metrics, "config": config.to_dict(),
                                     "dev_history": history})


def _raise_no_adapter(folder: Path):
    raise DataError(f"peft did not write adapter_model.safetensors in {folder}.")


def _sentence_embeddings(texts: list[str]) -> torch.Tensor:
    from ..evaluation.retrieval import load_sentence_encoder

    enc = load_sentence_encoder()
    return torch.as_tensor(enc.encode(texts, convert_to_numpy=True, normalize_embeddings=True, batch_size=64)).float()


def _prototypes(expert, tokenizer, expert_id: str, questions: list[str], config: TrainConfig):
    from ..router import ExpertMeanEncoder, SentenceEncoder, build_prototypes

    if config.router_encoder in ("minilm", "sentence-transformers") or config.router_encoder.startswith("sentence"):
        encoder = SentenceEncoder()
    else:
        encoder = ExpertMeanEncoder(expert, tokenizer, expert_id)
    embeddings = encoder.encode(questions)
    return build_prototypes(embeddings, k=config.prototypes, seed=config.seed), encoder.name
