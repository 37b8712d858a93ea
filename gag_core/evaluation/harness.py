"""The evaluation harness: answer one domain's QA rows with several methods and score them side by side.

Methods (the names results use):

- ``base``          the plain frozen base model (the general route: no knowledge, no instruction);
- ``expert``        the domain expert (backbone + its LoRA) answering directly, prompted as in Stage I;
- ``gag``           GAG with the oracle domain: expert readout -> projector -> K injected slots;
- ``gag-routed``    GAG with the route the service's router picks per question (``general`` = the plain base);
- ``rag-bm25@k``, ``rag-dense@k``  the top-k corpus chunks pasted as text into the *same* instruction
                    template GAG uses (``InjectionHook.build_with_text``), then greedy base generation;
- ``gag+rag-bm25@k``, ``gag+rag-dense@k``  GAG's memory slots followed by those top-k chunks as text, in one
                    base prompt (``InjectionHook.build(..., text=)``);
- ``expert-text``   the expert's generated answer pasted as knowledge text into that template.

``rag`` (and ``gag+rag``) expands to every retriever × k of the config, ``rag-bm25`` (``gag+rag-bm25``) to
every k. All methods answer in
left-padded batches; latency is timed apart, per question at batch 1 on the first few questions, so the
median reads as what one user waits for (retrieval, routing and the expert included where a method uses
them). Metric definitions: :mod:`gag_core.evaluation.metrics` and docs/evaluation.md.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, DataError
from ..generation import GenerationOptions, generate, left_pad, pad_id
from ..jsonl import iter_objects
from ..readouts import expert_prompt_ids
from ..routes import GENERAL
from ..service import Query, RoutedService
from .metrics import BertScorer, StsScorer, aggregate, contains, exact_match, summarize_latencies, token_f1
from ..corpus import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_TOKENS, Document, chunk_documents, load_corpus
from ..retrieval import BM25Retriever, DenseRetriever, format_knowledge

PLAIN_METHODS = ("base", "expert", "expert-text", "gag", "gag-routed")
RETRIEVERS = ("bm25", "dense")
RAG_RE = re.compile(r"^(gag\+)?rag-(bm25|dense)@([1-9][0-9]*)$")  # (gag+)rag-<retriever>@<k>
RATE_METRICS = ("containment", "exact_match", "token_f1")
Progress = Callable[[str, int, int, dict], None]


@dataclass
class EvalConfig:
    ks: list[int] = field(default_factory=lambda: [2], metadata={"help": "top-k values that `rag` expands to"})
    retrievers: list[str] = field(default_factory=lambda: list(RETRIEVERS),
                                  metadata={"help": "retrievers that `rag` expands to: bm25, dense"})
    chunk_size: int = field(default=DEFAULT_CHUNK_TOKENS, metadata={"help": "RAG chunk size (base-tokenizer tokens)"})
    chunk_overlap: int = field(default=DEFAULT_CHUNK_OVERLAP, metadata={"help": "tokens shared by neighbouring chunks"})
    dense_encoder: str | None = field(default=None, metadata={"help": "dense retriever model (None = embedded MiniLM)"})
    question_field: str = field(default="question", metadata={"help": "row field holding the question"})
    gold_field: str | None = field(default=None, metadata={"help": "short gold answer field (None = value, else answer)"})
    answer_field: str = field(default="answer", metadata={"help": "reference answer field, used by STS/BERTScore"})
    sts: bool = field(default=True, metadata={"help": "compute STS (cosine of sentence embeddings)"})
    sts_model: str | None = field(default=None, metadata={"help": "STS encoder (None = embedded MiniLM)"})
    bertscore_model: str | None = field(default=None, metadata={"help": "encoder for BERTScore (None = skip it)"})
    batch_size: int = field(default=16, metadata={"help": "questions generated together"})
    latency_sample: int = field(default=8, metadata={"help": "first N questions timed one at a time (0 = none)"})
    max_new_tokens: int | None = field(default=None, metadata={"help": "answer budget (None = the pipeline's)"})

    def __post_init__(self):
        self.ks = [int(k) for k in self.ks]
        self.retrievers = list(self.retrievers)
        if not self.ks or any(k < 1 for k in self.ks):
            raise ConfigError(f"ks must be positive integers, e.g. [1, 2, 3]; got {self.ks}.")
        bad = sorted(set(self.retrievers) - set(RETRIEVERS))
        if bad or not self.retrievers:
            raise ConfigError(f"Unknown retriever(s) {bad or self.retrievers}; expected some of {list(RETRIEVERS)}.")
        if self.batch_size < 1 or self.latency_sample < 0:
            raise ConfigError(f"batch_size must be >= 1 and latency_sample >= 0; got {self.batch_size}, "
                              f"{self.latency_sample}.")


# --- data -------------------------------------------------------------------------------------------

@dataclass
class EvalItem:
    question: str
    gold: str | list[str]  # containment / exact match / token F1 compare against this
    reference: str | list[str]  # STS / BERTScore compare against this (the answer field, else the gold)


def load_rows(path: str | Path, limit: int = 0) -> list[dict]:
    """The JSON objects of a JSONL file, in order (the first ``limit`` when > 0)."""
    rows = []
    for _, row in iter_objects(path):
        rows.append(row)
        if limit and len(rows) >= limit:
            break
    if not rows:
        raise DataError(f"{path} holds no rows; add one JSON object per line.")
    return rows


def _answer_value(value: Any, where: str, name: str) -> str | list[str]:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return list(value)
    raise DataError(f"{where}: field {name!r} must be a non-empty string or list of strings; found {value!r}.")


def prepare_items(rows: Sequence[dict], config: EvalConfig) -> list[EvalItem]:
    """Questions, golds and references of the rows (see :class:`EvalConfig` for the field rules)."""
    items = []
    for i, row in enumerate(rows, 1):
        where = f"row {i}"
        q = row.get(config.question_field)
        if not isinstance(q, str) or not q.strip():
            raise DataError(f"{where}: expected a non-empty string field {config.question_field!r}.")
        gold_name = config.gold_field or ("value" if "value" in row else config.answer_field)
        if gold_name not in row:
            raise DataError(f"{where} has no gold field {gold_name!r} (fields: {sorted(row)}); "
                            "pass --gold-field NAME.")
        gold = _answer_value(row[gold_name], where, gold_name)
        ref = _answer_value(row[config.answer_field], where, config.answer_field) \
            if config.answer_field in row else gold
        items.append(EvalItem(q, gold, ref))
    if not items:
        raise DataError("No rows to evaluate; give at least one row with a question and a gold answer.")
    return items


def expand_methods(methods: Sequence[str], ks: Sequence[int] = (2,), retrievers: Sequence[str] = RETRIEVERS,
                   routed: bool = False) -> list[str]:
    """``rag`` -> ``rag-<r>@<k>`` for every retriever and k; ``rag-bm25`` -> every k. ``routed`` replaces
    ``gag`` with ``gag-routed``. Unknown names are refused; duplicates dropped (first order kept)."""
    out: list[str] = []
    for m in (m.strip() for m in methods):
        if m in ("rag", "gag+rag"):
            out += [f"{m}-{r}@{k}" for r in retrievers for k in ks]
        elif m in ("rag-bm25", "rag-dense", "gag+rag-bm25", "gag+rag-dense"):
            out += [f"{m}@{k}" for k in ks]
        elif m == "gag" and routed:
            out.append("gag-routed")
        elif m in PLAIN_METHODS or RAG_RE.match(m):
            out.append(m)
        else:
            raise ConfigError(f"Unknown method {m!r}; expected {', '.join(PLAIN_METHODS)}, rag, rag-bm25, "
                              "rag-dense, rag-<bm25|dense>@<k> (e.g. rag-bm25@2), gag+rag or gag+rag-<bm25|dense>@<k>.")
    return list(dict.fromkeys(out))


# --- answering --------------------------------------------------------------------------------------

@dataclass
class MethodOutput:
    texts: list[str]
    prompt_tokens: list[int | None]  # base-prompt tokens per question (None: the base is not prompted)
    routes: list[str] | None = None  # gag-routed only


@torch.no_grad()
def expert_alone_answers(pipe, domain: str, questions: list[str], max_new_tokens: int = 32,
                         batch_size: int = 16) -> list[str]:
    """The expert (with its LoRA) answering directly, prompted as in its Stage I training (after its passages when
    it is grounded)."""
    model, tok = pipe.domain_expert(domain)  # the domain's adapter active
    system = pipe.domain(domain).readout.config.background_prompt
    questions = pipe.domain(domain).grounding.expert_inputs(questions)
    device = model.get_input_embeddings().weight.device
    out = []
    for s in range(0, len(questions), batch_size):
        prompts = [expert_prompt_ids(tok, q, system) for q in questions[s:s + batch_size]]
        ids, attn = left_pad(prompts, pad_id(tok), device)
        generated = generate(model, tok, {"input_ids": ids, "attention_mask": attn},
                             GenerationOptions(max_new_tokens=max_new_tokens))
        out += [g.text.strip() for g in generated]
    return out


@torch.no_grad()
def answer_with_text(pipe, domain: str, questions: list[str], knowledge: list[str],
                     max_new_tokens: int | None = None) -> MethodOutput:
    """Greedy base answers with ``knowledge`` as text in the domain's GAG instruction template (one batch)."""
    hook = pipe.domain(domain).hook
    prompts = [hook.build_with_text(q, k) for q, k in zip(questions, knowledge)]
    generated = pipe.generate(pipe.prompt_inputs(prompts), max_new_tokens)  # the pipeline's greedy settings
    return MethodOutput([g.text.strip() for g in generated], [len(p.input_ids) for p in prompts])


def service_answers(service: RoutedService, questions: list[str], route: str | None,
                    max_new_tokens: int) -> MethodOutput:
    """The service's answers, every question on ``route``; ``route=None`` routes each (routes are then kept)."""
    answers = service.answer_batch([Query(q, route) for q in questions], GenerationOptions(max_new_tokens))
    return MethodOutput([a.answer for a in answers], [a.prompt_tokens for a in answers],
                        None if route is not None else [a.route for a in answers])


class CorpusRetrievers:
    """Chunks the corpus once and builds each retriever on first use."""

    def __init__(self, corpus, config: EvalConfig, tokenizer):
        docs = load_corpus(corpus) if isinstance(corpus, (str, Path)) else list(corpus)
        if docs and isinstance(docs[0], str):
            docs = [Document(str(i), t) for i, t in enumerate(docs)]
        tok = tokenizer if getattr(tokenizer, "is_fast", False) else None  # words when no fast tokenizer
        self.chunks = chunk_documents(docs, config.chunk_size, config.chunk_overlap, tok)
        self.config = config
        self.built: dict[str, Any] = {}

    def get(self, kind: str):
        if kind not in self.built:
            self.built[kind] = BM25Retriever(self.chunks) if kind == "bm25" else \
                DenseRetriever(self.chunks, self.config.dense_encoder)
        return self.built[kind]


def method_runner(method: str, service: RoutedService, domain: str, retrievers: CorpusRetrievers | None,
                  max_new_tokens: int | None) -> Callable[[list[str]], MethodOutput]:
    """A function answering a list of questions with ``method`` (one batch)."""
    pipe = service.pipeline
    mnt = max_new_tokens or pipe.max_new_tokens
    if method in ("base", "gag", "gag-routed"):
        route = {"base": GENERAL, "gag": domain, "gag-routed": None}[method]
        return lambda qs: service_answers(service, qs, route, mnt)
    if method == "expert":
        return lambda qs: MethodOutput(expert_alone_answers(pipe, domain, qs, mnt, len(qs)), [None] * len(qs))
    if method == "expert-text":
        return lambda qs: answer_with_text(pipe, domain, qs, expert_alone_answers(pipe, domain, qs, mnt, len(qs)), mnt)
    with_memory, kind, k = RAG_RE.match(method).groups()

    def rag(qs: list[str]) -> MethodOutput:
        knowledge = [format_knowledge(h) for h in retrievers.get(kind).search_batch(qs, int(k))]
        if with_memory:  # gag+rag: the memory slots, then the passages
            answers = pipe.answer_batch(qs, domain, options=GenerationOptions(mnt), texts=knowledge)
            return MethodOutput([a.answer for a in answers], [a.prompt_tokens for a in answers])
        return answer_with_text(pipe, domain, qs, knowledge, mnt)

    return rag


# --- scoring ----------------------------------------------------------------------------------------

def score_rows(items: Sequence[EvalItem], output: MethodOutput, sts: StsScorer | None = None,
               bert: BertScorer | None = None) -> list[dict]:
    """One dict per question: the prediction and every metric of it."""
    preds = output.texts
    sts_vals = sts.score(preds, [it.reference for it in items]) if sts else [None] * len(items)
    bert_vals = bert.score(preds, [it.reference for it in items]) if bert else [None] * len(items)
    rows = []
    for i, (it, p) in enumerate(zip(items, preds)):
        row = {"question": it.question, "gold": it.gold, "prediction": p, "containment": contains(p, it.gold),
               "exact_match": exact_match(p, it.gold), "token_f1": token_f1(p, it.gold), "sts": sts_vals[i],
               "bertscore": bert_vals[i], "prompt_tokens": output.prompt_tokens[i]}
        if output.routes is not None:
            row["route"] = output.routes[i]
        rows.append(row)
    return rows


def _check_plan(methods: list[str], service: RoutedService, domain: str | None, corpus) -> str:
    if domain is None:
        if len(service.domains) != 1:
            raise ConfigError(f"Pass domain=NAME; loaded domains: {service.domains or 'none'}.")
        domain = service.domains[0]
    service.module(service.resolve(domain))  # refuses general, an unavailable domain (with why) or an unknown one
    if any(RAG_RE.match(m) for m in methods) and corpus is None:
        raise ConfigError("RAG methods need a corpus: pass corpus=PATH (CLI: --corpus FILE), or drop rag from methods.")
    return domain


def evaluate_methods(service: RoutedService, rows: Sequence[dict], methods: Sequence[str], *,
                     domain: str | None = None, corpus: str | Path | Sequence[Document] | Sequence[str] | None = None,
                     config: EvalConfig | None = None, progress: Progress | None = None, **options) -> list[dict]:
    """Answer ``rows`` with every method and score them; one summary dict per method, in method order.

    ``service`` is a :class:`RoutedService` (e.g. ``gag_plugins.api.GAG``) with ``domain`` loaded.
    ``options`` override fields of ``config`` (e.g. ``ks=[1, 2]``, ``latency_sample=4``).
    Each summary holds ``method, n, containment, exact_match, token_f1, sts, bertscore, prompt_tokens,
    latency_median_s, latency_p95_s`` (``None`` where not measured) and ``predictions``, the scored
    rows. ``gag-routed`` adds ``routed_to_domain``, the share of questions routed to ``domain``.
    """
    try:
        config = replace(config or EvalConfig(), **options)
    except TypeError:
        raise ConfigError(f"Unknown option(s) {sorted(set(options) - {f.name for f in fields(EvalConfig)})}; "
                          f"valid: {sorted(f.name for f in fields(EvalConfig))}.") from None
    methods = expand_methods(methods, config.ks, config.retrievers)
    domain = _check_plan(methods, service, domain, corpus)
    items = prepare_items(rows, config)
    needs_corpus = any(RAG_RE.match(m) for m in methods)
    retrievers = CorpusRetrievers(corpus, config, service.pipeline.tokenizer) if needs_corpus else None
    sts = StsScorer(config.sts_model) if config.sts else None
    bert = BertScorer(config.bertscore_model) if config.bertscore_model else None
    questions = [it.question for it in items]
    summaries = []
    for done, method in enumerate(methods):
        if progress:
            progress("evaluating", done, len(methods), {"method": method})
        run = method_runner(method, service, domain, retrievers, config.max_new_tokens)
        outputs = [run(questions[s:s + config.batch_size]) for s in range(0, len(questions), config.batch_size)]
        output = MethodOutput([t for o in outputs for t in o.texts], [n for o in outputs for n in o.prompt_tokens],
                              None if outputs[0].routes is None else [r for o in outputs for r in o.routes])
        latencies = []
        for q in questions[:config.latency_sample]:
            start = time.perf_counter()
            run([q])
            latencies.append(time.perf_counter() - start)
        scored = score_rows(items, output, sts, bert)
        lat = summarize_latencies(latencies)
        summary = {"method": method, "n": len(items),
                   **aggregate(scored, (*RATE_METRICS, "sts", "bertscore", "prompt_tokens")),
                   "latency_median_s": lat["median"], "latency_p95_s": lat["p95"], "latency_n": len(latencies)}
        if output.routes is not None:
            summary["routed_to_domain"] = sum(r == domain for r in output.routes) / len(output.routes)
        summaries.append({**summary, "predictions": scored})
    if progress:
        progress("evaluating", len(methods), len(methods), {"method": "done"})
    return summaries
