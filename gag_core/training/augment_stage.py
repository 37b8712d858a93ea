"""The augment stage of ``train_domain``: run the configured augmenters (``stage1.augment``) over the corpus
before Stage I, and add what they yield to the training data.

- texts -> ``TrainData.augmented_texts`` (Stage I learns them like the corpus: DAPT, or mixed into every epoch);
- QA pairs with ``align`` -> ``TrainData.qa`` (Stage I SFT, Stage II alignment, router exemplars);
- other QA pairs -> ``TrainData.expert_only`` (Stage I only).

Documents only (no ``--qa``): the QA that Stage II aligns on and the router's exemplars must come from the
documents, so ``synthetic-qa`` is turned on when it is not configured (:func:`for_documents_only`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace

from ..errors import ConfigError, DataError
from .augment import AugmentContext, AugmentedQA, RewriteAugmenter
from .config import TrainConfig
from .data import MIN_QA, QAPair, TrainInputs
from .loop import append_log
from .paraphrase import ParaphraseAugmenter
from .synthetic_qa import SyntheticQAAugmenter

BUILTIN_AUGMENTERS: dict[str, type] = {RewriteAugmenter.name: RewriteAugmenter,
                                       SyntheticQAAugmenter.name: SyntheticQAAugmenter,
                                       ParaphraseAugmenter.name: ParaphraseAugmenter}
QA_FROM_DOCUMENTS = SyntheticQAAugmenter.name
PARAPHRASE = ParaphraseAugmenter.name


def for_documents_only(config: TrainConfig, inputs: TrainInputs) -> tuple[TrainConfig, str | None]:
    """``config`` with ``synthetic-qa`` turned on when there are documents and no QA file and it is not on yet,
    with a note saying so; otherwise ``config`` unchanged and no note."""
    if inputs.qa is not None or inputs.corpus is None or QA_FROM_DOCUMENTS in config.stage1.augment:
        return config, None
    stage1 = replace(config.stage1, augment=[*config.stage1.augment, QA_FROM_DOCUMENTS])
    note = (f"No --qa given: turning on the {QA_FROM_DOCUMENTS} augmenter, which writes the QA pairs Stage II "
            "aligns on (and the router's exemplars) from the documents (--augment synthetic-qa).")
    return replace(config, stage1=stage1), note


def build_augmenters(config: TrainConfig, registry: Mapping[str, type] | None = None) -> list:
    """The configured augmenters, constructed with their options (before any model loads, so a bad option is
    refused early); an unknown name is refused with the registered ones."""
    registry = BUILTIN_AUGMENTERS if registry is None else registry
    options = config.stage1.augment_options
    unused = sorted(set(options) - set(config.stage1.augment))
    if unused:
        raise ConfigError(f"stage1.augment_options has settings for {', '.join(unused)}, which stage1.augment does "
                          f"not turn on ({config.stage1.augment}); add them (--augment NAME) or remove the settings.")
    out = []
    for name in config.stage1.augment:
        if name not in registry:
            raise ConfigError(f"Unknown augmenter {name!r} in stage1.augment; registered: "
                              f"{', '.join(sorted(registry))} (a plugin adds more through register_augmenters).")
        out.append(registry[name](**options.get(name, {})))
    return out


def augment_data(ctx, registry: Mapping[str, type] | None = None) -> dict:
    """Run the augmenters over ``ctx.data.documents`` and add their output to ``ctx.data`` (see the module doc);
    returns counts per augmenter. The main process runs first (a generator's results land in the work folder),
    the others then read them. Refuses too little QA to align on."""
    augmenters = build_augmenters(ctx.config, registry)
    data, counts = ctx.data, {}
    on_documents = [a.name for a in augmenters if getattr(a, "needs_documents", True)]
    if on_documents and not data.documents:
        raise DataError(f"The augmenters {on_documents} work on documents; give --corpus.")
    if augmenters and not ctx.is_main:
        ctx.accelerator.wait_for_everyone()
    context = AugmentContext(work=ctx.work, seed=ctx.config.seed, generator=ctx.base_id, dtype=ctx.dtype,
                             device=ctx.device, log_path=ctx.log_path if ctx.is_main else None, progress=ctx.progress,
                             qa=tuple(data.qa))
    for augmenter in augmenters:
        started, texts, aligned, stage1_only = time.time(), 0, 0, 0
        for item in augmenter.augment(data.documents, context):
            if isinstance(item, str):
                data.augmented_texts.append(item)
                texts += 1
            elif isinstance(item, AugmentedQA):
                pair = QAPair(item.question, item.answer, 0, {"augmenter": augmenter.name, "source": item.source})
                (data.qa if item.align else data.expert_only).append(pair)
                aligned, stage1_only = aligned + item.align, stage1_only + (not item.align)
            else:
                raise ConfigError(f"Augmenter {augmenter.name!r} yielded a {type(item).__name__}; an augmenter yields "
                                  "str (a training text) or AugmentedQA.")
        counts[augmenter.name] = {"texts": texts, "qa": aligned, "stage1_qa": stage1_only}
        if ctx.is_main:
            append_log(ctx.log_path, {"stage": "augment", "augmenter": augmenter.name, **counts[augmenter.name],
                                      "seconds": round(time.time() - started, 1)})
    if augmenters and ctx.is_main:
        ctx.accelerator.wait_for_everyone()
    if len(data.qa) < MIN_QA:
        raise DataError(f"Only {len(data.qa)} QA pairs to align on (at least {MIN_QA} are needed): the documents gave "
                        f"{counts.get(QA_FROM_DOCUMENTS, {}).get('qa', 0)} grounded synthetic pairs. Give QA pairs "
                        "(--qa), more documents, or a stronger generator (--qa-generator).")
    return counts
