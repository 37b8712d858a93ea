"""``gag train-domain``: QA pairs and/or documents -> an installable domain module, every stage resumable."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from gag_core.paths import gag_home

from .console import console, handle_errors
from .progress import stage_progress


def register(app: typer.Typer) -> None:
    @app.command("train-domain")
    @handle_errors
    def train_domain_cmd(
        name: str = typer.Argument(..., help="Domain name (lowercase letters, digits, - _ .)."),
        qa: Path = typer.Option(None, "--qa", help="Training QA pairs, JSONL with question/answer fields (optional "
                                "with --corpus: QA is then written from the documents)."),
        corpus: Path = typer.Option(None, "--corpus", help="Documents: JSONL (text, optional title), a .txt/.md "
                                    "file, or a folder of them; long ones are cut into passages."),
        mix: str = typer.Option(None, "--mix", help="Stage I: sequential (DAPT, then QA) or mixed (documents and QA "
                                "interleaved in every epoch)."),
        augment: list[str] = typer.Option([], "--augment", help="Augmenter run before Stage I (repeatable): rewrite "
                                          "or synthetic-qa (over the documents), paraphrase (over the QA questions), "
                                          "or a plugin's."),
        qa_generator: str = typer.Option(None, "--qa-generator", help="Model id/folder that writes synthetic QA and "
                                         "paraphrases (default: the profile's base model)."),
        dev: Path = typer.Option(None, "--dev", help="Dev QA pairs evaluated after each alignment epoch."),
        expert_only: list[Path] = typer.Option([], "--expert-only-qa", help="QA used in Stage I only (repeatable)."),
        profile: str = typer.Option("embedded", "--profile", help="embedded (CPU, SmolLM2) or paper (Qwen3-8B/1.7B)."),
        config: Path = typer.Option(None, "--config", help="TOML/YAML/JSON overrides of the training config."),
        out: Path = typer.Option(None, "--out", help="Module folder to write (default GAG_HOME/builds/NAME)."),
        install: bool = typer.Option(False, "--install", help="Install the module when training finishes."),
        base: str = typer.Option(None, "--base", help="Base model id/folder (overrides the profile)."),
        expert: str = typer.Option(None, "--expert", help="Expert backbone id/folder (overrides the profile)."),
        readout: str = typer.Option(None, "--readout", help="Readout kind: final_token, multi_slot or prefill."),
        passages: int = typer.Option(None, "--passages", min=0, max=16, help="Passages of the corpus the expert reads "
                                     "before each question (readout.context_passages; 0 = none; default: the "
                                     "profile's)."),
        projector: str = typer.Option(None, "--projector", help="Projector kind: anchored_residual (embedded "
                                      "default), mlp2x_gelu or gated_residual (paper default)."),
        epochs: int = typer.Option(None, "--epochs", help="Alignment epochs (Stage II)."),
        question_field: str = typer.Option("question", "--question-field"),
        answer_field: str = typer.Option("answer", "--answer-field"),
        num_shards: int = typer.Option(1, "--num-shards", help="Split readout caching across this many workers."),
        shard_rank: int = typer.Option(0, "--shard-rank", help="This worker's shard rank (0..num-shards-1)."),
        readouts_only: bool = typer.Option(False, "--readouts-only", help="Stop after this worker's readout shards."),
    ) -> None:
        """Train a domain module: expert LoRA (Stage I), readout cache, projector alignment (Stage II),
        router prototypes, model card. Rerun the same command to resume after an interruption.

        Run under `accelerate launch` for data-parallel training."""
        from gag_core.training.train_domain import TrainInputs, TrainRun, train_domain
        from gag_plugins.api import GENERAL_QUESTIONS
        from gag_plugins.manager import collect

        overrides = {"base": base, "expert": expert, "question_field": question_field, "answer_field": answer_field,
                     "stage1": {"mix": mix, "augment": list(augment) or None},
                     "stage2": {"projector": projector, "epochs": epochs or None},
                     "readout": {"context_passages": passages}}
        out = out or gag_home() / "builds" / name
        inputs = TrainInputs(name, qa, corpus, dev, list(expert_only), general_questions=GENERAL_QUESTIONS)
        augmenters = collect("register_augmenters")
        cfg = _training_config(config, profile, overrides, readout, qa_generator, inputs, augmenters)
        with stage_progress() as progress:
            run = TrainRun(progress=progress, num_shards=num_shards, shard_rank=shard_rank, readouts_only=readouts_only,
                           augmenters=augmenters)
            folder = train_domain(inputs, cfg, out, run)
        _finish(folder, install)


def _finish(folder: Path | None, install: bool) -> None:
    from gag_core.install import install_folder

    if folder is None:
        console.print("Readout shards written; run without --readouts-only to finish.")
        return
    console.print(f"[green]Module written[/] → {folder}")
    if install:
        installed = install_folder(folder, force=True)
        console.print(f"[green]Installed[/] domain [bold]{installed.name}[/]")


def _training_config(config: Path | None, profile: str, overrides: dict, readout: str | None,
                     qa_generator: str | None, inputs, augmenters: dict):
    """The profile's defaults, the --config file, then the options; synthetic QA turned on (with a note) for
    documents only; every augmenter's settings checked before any model loads."""
    from gag_core.errors import ConfigError
    from gag_core.training.augment_stage import PARAPHRASE, QA_FROM_DOCUMENTS, build_augmenters, for_documents_only
    from gag_core.training.config import load_config, with_readout_kind

    cfg = load_config(config, profile, overrides)
    if readout:  # another kind starts from its own defaults; the profile's kind keeps the profile's settings
        cfg = with_readout_kind(cfg, readout)
    cfg, note = for_documents_only(cfg, inputs)
    if note:
        console.print(f"[yellow]note:[/] {note}")
    if qa_generator:
        generating = [name for name in (QA_FROM_DOCUMENTS, PARAPHRASE) if name in cfg.stage1.augment]
        if not generating:
            raise ConfigError(f"--qa-generator sets the generator of the {QA_FROM_DOCUMENTS} and {PARAPHRASE} "
                              f"augmenters; turn one on with --augment {QA_FROM_DOCUMENTS} or --augment {PARAPHRASE}.")
        options = dict(cfg.stage1.augment_options)
        for name in generating:
            options[name] = {**options.get(name, {}), "generator": qa_generator}
        cfg = replace(cfg, stage1=replace(cfg.stage1, augment_options=options))
    build_augmenters(cfg, augmenters)
    return cfg
