"""``update_domain``: new QA pairs (+ documents) into an existing module, keeping its projector.

The anchored-residual projector carries facts it never saw in Stage II (docs/training.md, round 4), so new
knowledge needs only Stage I: the module's own LoRA continues training on the new data plus a replay sample of
the module's training data (:mod:`gag_core.training.replay`: corrections replace what they correct). Then the
router prototypes and exemplars are rebuilt with the new questions, the version is bumped (minor when new facts
or documents arrive, patch for corrections only), the update is recorded in the manifest's ``history`` and the
model card, and the module is written by the one writer (``module.write_module``: staging folder, verify,
rename). Stage I resumes after ``kill -9`` from a work folder keyed by the parent manifest's sha256, the new
data and the settings. Nothing installed changes here; installing the result is a separate, atomic step.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from ..assemble import model_card
from ..corpus import Document
from ..errors import ConfigError, DataError, IncompatibleModuleError
from ..grounding import Grounding
from ..lexical import LexicalIndex
from ..models import canonical_model_id, get_profile, resolve_dtype
from ..module import (CALIBRATION, CORPUS_SAMPLE, LEXICAL, MANIFEST, PASSAGES, TRAIN_QA, DomainModule, Manifest,
                      write_module)
from ..paths import gag_home
from ..safety import sha256_file
from .augment import expert_passages
from .augment_stage import augment_data
from .config import TrainConfig, load_config
from .data import QAPair, TrainData, TrainInputs, file_digest, load_documents, load_qa
from .loop import append_log
from .replay import (ReplayPlan, corrected_passages, data_files, plan_replay, qa_row, read_rows, with_unstated_facts,
                     without_stale)
from .stages import ExpertResult, RouterResult, TrainContext, expert_stage, router_stage

CARRIES_UNSEEN_FACTS = ("anchored_residual",)  # projector kinds that pass facts they were never aligned on


@dataclass
class UpdateInputs:
    """What an update starts from and adds."""

    module: Path  # the module folder to update (an installed domain's folder, or a build)
    qa: Path  # new QA pairs (JSONL); a pair about a fact the module knows, with another answer, corrects it
    corpus: Path | None = None  # new documents (JSONL, .txt/.md, or a folder)
    replay: float = 0.5  # fraction of the module's own training QA rehearsed with the new data
    epochs: int | None = None  # Stage I QA epochs (default: the module's stage1.sft_epochs)
    seed: int | None = None  # default: the module's
    base: str | None = None  # when given, must be the module's base ...
    expert: str | None = None  # ... and expert backbone ...
    profile: str | None = None  # ... and profile: an update never changes models


@dataclass
class UpdateRun:
    """How this process runs the update."""

    accelerator: Any = None  # default: one process, CUDA when available
    progress: Callable[[str, int, int, dict], None] | None = None  # (stage, done, total, info)
    work_dir: Path | None = None  # default: GAG_HOME/work/update-NAME-<hash of parent, data and settings>
    augmenters: Mapping[str, type] | None = None  # for a module trained with stage1.augment (new documents)


@dataclass
class ParentModule:
    module: DomainModule
    sha256: str  # of its gag-domain.json: names exactly this version
    config: TrainConfig  # the settings it was trained with (+ the update's epochs and seed)
    rows: list[dict]  # its Stage I QA rows ([] when it ships none and --replay is 0)
    corpus: list[str]  # its shipped corpus sample
    grounding: Grounding  # the passages its expert reads (none when it is not grounded)


@dataclass
class NewData:
    pairs: list[QAPair]
    rows: list[dict]
    documents: list[Document]
    plan: ReplayPlan


@dataclass
class UpdateResult:
    folder: Path
    version: str
    parent_version: str
    history: dict  # the manifest's new history entry
    seconds: float
    work: Path


def check_updatable(manifest: Manifest, inputs: UpdateInputs) -> None:
    """Refuse what an update cannot do: change models, or update a projector that carries only aligned facts."""
    kind = manifest.projector.kind
    if kind not in CARRIES_UNSEEN_FACTS:
        raise IncompatibleModuleError(
            f"Domain {manifest.name!r} uses the {kind} projector, which carries only the facts it was aligned on in "
            "Stage II (0 % of new facts, docs/training.md round 4), so retraining its expert alone cannot teach it "
            f"new ones; retrain it with `gag train-domain` (the anchored_residual projector can be updated).")
    trained = (manifest.training.get("config") or {}).get("profile")
    for what, given, recorded in (("profile", inputs.profile, trained), ("base", inputs.base, manifest.base["id"]),
                                  ("expert", inputs.expert, manifest.expert["id"])):
        if given and recorded and canonical_model_id(given) != recorded:
            raise IncompatibleModuleError(
                f"Domain {manifest.name!r} was trained with {what} {recorded!r}, not {given!r}; an update keeps the "
                f"models. Drop --{what}, or train a new module for {given!r} with `gag train-domain`.")


def update_config(manifest: Manifest, inputs: UpdateInputs) -> TrainConfig:
    """The module's own training settings, with the update's epochs and seed."""
    saved = manifest.training.get("config")
    if not isinstance(saved, dict):
        raise ConfigError(f"Domain {manifest.name!r} records no training config, so its Stage I cannot be continued; "
                          "retrain it with `gag train-domain`.")
    config = load_config(None, saved.get("profile", "embedded"), saved)
    if inputs.epochs is not None:
        config = replace(config, stage1=replace(config.stage1, sft_epochs=inputs.epochs))
    return replace(config, seed=config.seed if inputs.seed is None else inputs.seed)


def parent_rows(module: DomainModule, fraction: float) -> list[dict]:
    """The module's Stage I QA: shipped in ``TRAIN_QA``, else its recorded training file if unchanged; a module
    with neither can be updated only with ``fraction`` 0 (a warning says what that risks)."""
    if TRAIN_QA in module.manifest.files:
        return read_rows(module.path / TRAIN_QA, "question")
    source = ((module.manifest.training.get("data") or {}).get("sources") or {}).get("qa") or {}
    path = Path(source.get("path", "")) if source.get("path") else None
    if path is not None and path.is_file() and file_digest(path) == source.get("sha256"):
        return [qa_row(p, "qa") for p in load_qa(path, min_rows=1)]
    if fraction > 0:
        raise DataError(f"Domain {module.name!r} v{module.manifest.version} ships no training data to replay "
                        f"({TRAIN_QA}; modules trained before update-domain have none) and records no unchanged "
                        "training file; retrain it with `gag train-domain`, or pass --replay 0 to update without "
                        "replay (old facts may then be forgotten).")
    warnings.warn(f"Updating {module.name!r} without replay: facts not in the new data may be forgotten.",
                  stacklevel=2)
    return []


def open_parent(inputs: UpdateInputs) -> ParentModule:
    """Verify the module, refuse what cannot be updated, and read its settings and replay data."""
    if not 0 <= inputs.replay <= 1:
        raise ConfigError(f"--replay {inputs.replay} is not a fraction; give a number in [0, 1] (default 0.5).")
    module = DomainModule.open(inputs.module)
    check_updatable(module.manifest, inputs)
    config = update_config(module.manifest, inputs)
    corpus = ([r["text"] for r in read_rows(module.path / CORPUS_SAMPLE, "text")]
              if CORPUS_SAMPLE in module.manifest.files else [])
    return ParentModule(module, sha256_file(module.path / MANIFEST), config,
                        parent_rows(module, inputs.replay), corpus, Grounding.of_module(module))


def load_new_data(parent: ParentModule, inputs: UpdateInputs) -> NewData:
    """The new QA (refused when empty or malformed, naming file and line), the new documents, and the replay plan."""
    config = parent.config
    pairs = load_qa(inputs.qa, config.question_field, config.answer_field, min_rows=1)
    documents = load_documents(inputs.corpus) if inputs.corpus else []
    rows = [qa_row(p, "qa") for p in pairs]
    return NewData(pairs, rows, documents, plan_replay(parent.rows, rows, inputs.replay, config.seed))


def update_work_dir(parent: ParentModule, inputs: UpdateInputs) -> Path:
    key = json.dumps({"parent": parent.sha256, "qa": file_digest(inputs.qa), "corpus": file_digest(inputs.corpus),
                      "replay": inputs.replay, "cfg": parent.config.to_dict()}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return gag_home() / "work" / f"update-{parent.module.name}-{digest}"


def update_context(parent: ParentModule, inputs: UpdateInputs, new: NewData, run: UpdateRun) -> TrainContext:
    """Stage I's context: the new QA + the replay sample (+ new documents and a corpus replay sample)."""
    config, seed = parent.config, parent.config.seed
    replay = [QAPair(r["question"], r["answer"], 0, r) for r in new.plan.replay]
    corpus = [d.text for d in new.documents]
    if corpus or config.stage1.mix == "mixed":
        kept = without_stale(parent.corpus, new.plan.replaced)
        corpus += random.Random(seed).sample(kept, round(inputs.replay * len(kept)))
    data = TrainData(qa=new.pairs + [p for p in replay if p.meta.get("split") != "expert_only"], dev=[],
                     expert_only=[p for p in replay if p.meta.get("split") == "expert_only"], corpus=corpus or None,
                     dev_eval=[], documents=new.documents)
    profile = get_profile(config.profile)
    work = run.work_dir or update_work_dir(parent, inputs)
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps(config.to_dict(), indent=1, sort_keys=True))
    accelerator = run.accelerator or Accelerator(cpu=not torch.cuda.is_available())
    torch.manual_seed(seed)
    passages = corrected_passages(parent.grounding.passages, new.plan.replaced, new.rows) + \
        expert_passages(new.documents, config.readout.context_words)
    if parent.grounding.k:
        passages = with_unstated_facts(passages, new.rows)
    grounding = Grounding(passages, parent.grounding.k)
    return TrainContext(config, TrainInputs(parent.module.name, inputs.qa, inputs.corpus), data, work, accelerator,
                        run.progress, base_id=config.base or profile.base, expert_id=config.expert or profile.expert,
                        dtype=resolve_dtype(profile.dtype), grounding=grounding)


def update_domain(inputs: UpdateInputs, out_dir: Path | None = None, run: UpdateRun | None = None
                  ) -> UpdateResult | None:
    """Update a module with new QA (+ documents) and write the new version to ``out_dir`` (default
    GAG_HOME/builds/NAME-vVERSION); None on every process but the main one."""
    started, run = time.time(), run or UpdateRun()
    parent = open_parent(inputs)
    new = load_new_data(parent, inputs)
    ctx = update_context(parent, inputs, new, run)
    if canonical_model_id(ctx.expert_id) != parent.module.manifest.expert["id"]:
        raise IncompatibleModuleError(f"Domain {parent.module.name!r} was trained on expert "
                                      f"{parent.module.manifest.expert['id']!r}, but its settings now load "
                                      f"{ctx.expert_id!r}; retrain it with `gag train-domain`.")
    if ctx.is_main:
        append_log(ctx.log_path, {"stage": "update", "event": "plan", "new_qa": len(new.rows),
                                  "replay_qa": len(new.plan.replay), "corrections": new.plan.corrections,
                                  "documents": len(new.documents)})
    if new.documents:
        augment_data(ctx, run.augmenters)
    expert = expert_stage(ctx, start=parent.module.adapter_dir)
    if not ctx.is_main:
        return None
    router = update_router(ctx, expert, parent, new)
    entry = history_entry(parent, new, time.time() - started)
    out = Path(out_dir) if out_dir else gag_home() / "builds" / f"{parent.module.name}-v{entry['version']}"
    folder = write_update(out, parent, new, expert, router, entry, ctx.grounding)
    return UpdateResult(folder, entry["version"], entry["parent_version"], entry, time.time() - started, ctx.work)


def update_router(ctx: TrainContext, expert: ExpertResult, parent: ParentModule, new: NewData) -> RouterResult:
    """Prototypes and exemplars over the new questions first, then the module's (its kept training questions, or
    its exemplars when it ships none); its lexical index grows by the new questions and documents; its
    calibration questions stay."""
    module = parent.module
    old = [r["question"] for r in new.plan.kept if r.get("split") != "expert_only"] if parent.rows else \
        module.exemplars()
    questions = list(dict.fromkeys([r["question"] for r in new.rows] + old))
    data = TrainData([QAPair(q, "", 0, {}) for q in questions], [], [], None, [])
    router = router_stage(replace(ctx, data=data, inputs=replace(ctx.inputs, general_questions=None)), expert)
    files = dict(router.files)
    previous = module.load_lexical()
    if previous is not None:
        added = LexicalIndex.build([r["question"] for r in new.rows], [d.text for d in new.documents])
        df = {t: previous.df.get(t, 0) + added.df.get(t, 0) for t in sorted({*previous.df, *added.df})}
        files[LEXICAL] = LexicalIndex(previous.documents + added.documents, df).to_json()
    if CALIBRATION in module.manifest.files:
        files[CALIBRATION] = (module.path / CALIBRATION).read_text(encoding="utf-8")
    return replace(router, files=files)


def next_version(version: str, minor: bool) -> str:
    """Semver bump: minor (x.y+1.0) when new facts or documents arrive, patch (x.y.z+1) for corrections only."""
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)(.*)", version)
    if match is None:
        raise ConfigError(f"Module version {version!r} is not semver (MAJOR.MINOR.PATCH); retrain the module or "
                          "fix its version with `gag train-domain`.")
    major, mid, patch = (int(g) for g in match.groups()[:3])
    return f"{major}.{mid + 1}.0" if minor else f"{major}.{mid}.{patch + 1}"


def history_entry(parent: ParentModule, new: NewData, seconds: float) -> dict:
    manifest = parent.module.manifest
    return {"version": next_version(manifest.version, bool(new.plan.added or new.documents)),
            "parent_version": manifest.version, "parent_sha256": parent.sha256,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "added": {"qa_rows": len(new.rows), "new_facts": new.plan.added, "corrections": new.plan.corrections,
                      "documents": len(new.documents), "replaced_rows": len(new.plan.replaced),
                      "replayed_rows": len(new.plan.replay)},
            "stage1_epochs": parent.config.stage1.sft_epochs, "seconds": round(seconds, 1)}


def write_update(out: Path, parent: ParentModule, new: NewData, expert: ExpertResult, router: RouterResult,
                 entry: dict, grounding: Grounding) -> Path:
    """The new version, by the one module writer: the parent's manifest with the new version and history, its
    projector unchanged, the updated adapter, router and data (the new rows first, then the kept old ones) and
    the passages its expert reads (corrected, + the new documents')."""
    module = parent.module
    manifest = Manifest.from_dict(module.manifest.to_dict())
    manifest.version, manifest.history = entry["version"], [*manifest.history, entry]
    manifest.router = {**manifest.router, "encoder": router.encoder}
    texts = list(dict.fromkeys([d.text for d in new.documents] + without_stale(parent.corpus, new.plan.replaced)))
    files = data_files(new.rows + new.plan.kept, texts, parent.config.seed)
    if grounding.k:
        files[PASSAGES] = grounding.to_jsonl()
    return write_module(out, manifest, projector=module.load_projector(), adapter_dir=expert.adapter_dir,
                        prototypes=router.prototypes, exemplars=router.exemplars, card=model_card(manifest),
                        router_files=router.files, data_files=files)
