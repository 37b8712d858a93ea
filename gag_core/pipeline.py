"""The GAG pipeline: (route) -> expert readout (LoRA adapter) -> project -> inject -> generate.

One pipeline holds one frozen base model and one expert backbone per distinct expert id; every installed
domain is a named peft adapter on its backbone, switched per query. The general route is the plain base.
When the expert backbone is the base model itself (the embedded profile), it is loaded once: the domains'
adapters wrap the base, and the base path runs with every adapter switched off.

A batch may mix routes: each domain's rows get their readout and projection together, general rows get no
slots, and all rows are left-padded into one ``inputs_embeds`` batch for a single ``generate`` call.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from . import generation
from .errors import ConfigError, DomainNotFoundError, IncompatibleModuleError
from .generation import Generated, GenerationOptions
from .grounding import Grounding
from .injection import BuiltPrompt, InjectionHook, merge_memory
from .models import adapters_off, canonical_model_id
from .module import DomainModule
from .projectors import ProjectorBundle
from .retrieval import format_knowledge
from .readouts import BUILTIN_READOUTS
from .routes import GENERAL, RouteDecision

SHARE_BACKBONE_ENV = "GAG_SHARE_BACKBONE"  # "0" loads the expert backbone apart even when it is the base model


@dataclass
class Answer:
    question: str
    answer: str
    route: str
    prompt_tokens: int
    latency_s: float
    route_score: float | None = None  # the router's score for ``route`` (= decision.score when routed)
    extra: dict = field(default_factory=dict)
    completion_tokens: int = 0  # tokens generated (the end-of-sequence token not counted)
    finish_reason: str = "stop"  # "stop" (eos or stop string), "length" or "cancelled"
    decision: RouteDecision | None = None  # set when the router chose the route
    slots: int = 0  # injected memory vectors (0 on the general route)
    background: str | None = None  # what the expert wrote, whose readout filled the slots (domain routes)

    def __post_init__(self):
        if self.route_score is None and self.decision is not None:
            self.route_score = self.decision.score

    def to_dict(self) -> dict:
        d = {"question": self.question, "answer": self.answer, "route": self.route,
             "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
             "finish_reason": self.finish_reason, "latency_s": round(self.latency_s, 4)}
        if self.route_score is not None:
            d["route_score"] = round(float(self.route_score), 4)
        if self.decision is not None and self.decision.confidence is not None:  # calibrated routers
            d["route_confidence"] = round(float(self.decision.confidence), 4)
        if self.background is not None:
            d["background"] = self.background
        d.update(self.extra)
        return d


@dataclass
class LoadedDomain:
    module: DomainModule
    readout: object
    projector: ProjectorBundle
    hook: InjectionHook
    expert_id: str
    grounding: Grounding  # the passages the expert reads before each question (none for most modules)

    @property
    def name(self) -> str:
        return self.module.name


class _AnyEvent:
    """Set when any of its events is set (a stream stops on the caller's event or when the reader leaves)."""

    def __init__(self, *events: threading.Event | None):
        self.events = [e for e in events if e is not None]

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)


class GagPipeline:
    """Compose a frozen base model with domain experts. Thread-compatible, not thread-safe.

    ``base_id`` names the loaded base; an expert backbone with the same canonical id is then the base itself
    (not loaded again) unless ``share_backbone`` is False (default: ``$GAG_SHARE_BACKBONE`` != "0")."""

    def __init__(self, base, base_tokenizer, *, expert_loader: Callable[[str], tuple] | None = None,
                 max_new_tokens: int = 64, instruction: str | None = None, base_id: str | None = None,
                 share_backbone: bool | None = None):
        self.base = base
        self.tokenizer = base_tokenizer
        self.expert_loader = expert_loader
        self.max_new_tokens = max_new_tokens
        self.general_hook = InjectionHook(base_tokenizer, **({"instruction": instruction} if instruction else {}))
        self.base_id = canonical_model_id(base_id) if base_id else None
        self.share_backbone = (os.environ.get(SHARE_BACKBONE_ENV, "1") != "0") if share_backbone is None \
            else share_backbone
        self.experts: dict[str, list] = {}  # expert id -> [peft-or-plain model, tokenizer]
        self.domains: dict[str, LoadedDomain] = {}

    # -- backbones -------------------------------------------------------------------------------
    def add_expert(self, expert_id: str, model, tokenizer) -> None:
        """Provide an already loaded expert backbone (shared by every domain that names ``expert_id``)."""
        self.experts[canonical_model_id(expert_id)] = [model, tokenizer]

    def expert_backbone(self, expert_id: str) -> tuple:
        """(model, tokenizer, canonical id) of an expert backbone, loaded on first use. The model is a
        PeftModel once a domain's adapter is attached to it; with a shared backbone it wraps ``base``."""
        key = canonical_model_id(expert_id)
        if key not in self.experts:
            if self.share_backbone and key == self.base_id:
                self.experts[key] = [self.base, self.tokenizer]
            elif self.expert_loader is None:
                raise IncompatibleModuleError(f"No expert backbone {expert_id!r} is loaded and no loader was given; "
                                              "pass expert_loader= or add_expert() first.")
            else:
                self.experts[key] = list(self.expert_loader(expert_id))
        model, tokenizer = self.experts[key]
        return model, tokenizer, key

    def base_adapters_off(self):
        """A context in which the base runs as the plain base: when it is also an expert backbone, the
        PeftModel that wraps it has injected LoRA layers into its modules, and they are switched off here."""
        for model, _ in self.experts.values():
            if model is not self.base and getattr(model, "get_base_model", lambda: None)() is self.base:
                return adapters_off(model)
        return nullcontext()

    @property
    def device(self) -> torch.device:
        return self.base.get_input_embeddings().weight.device

    # -- domains ---------------------------------------------------------------------------------
    def add_domain(self, module: DomainModule, *, readout_cls=None, projector_cls=None) -> LoadedDomain:
        """Attach a verified module: its LoRA becomes a named adapter on the shared expert backbone."""
        from peft import PeftModel

        module.check_base(self.base)
        readout_cls = readout_cls or BUILTIN_READOUTS.get(module.manifest.readout.kind)
        if readout_cls is None:
            raise IncompatibleModuleError(
                f"Domain {module.name!r} needs readout {module.manifest.readout.kind!r}, which is not built in; pass "
                "readout_cls (the class its plugin registers) or load it through gag_plugins.api.GAG.")
        # everything that can refuse the module runs before its adapter is attached to the shared expert
        readout = readout_cls(module.manifest.readout)
        projector = module.load_projector(projector_cls)
        grounding = Grounding.of_module(module)
        hook = InjectionHook(self.tokenizer, **{k: v for k, v in module.manifest.prompt.items()
                                               if k in ("instruction", "template")})
        model, _, key = self.expert_backbone(module.manifest.expert["id"])
        module.check_expert(model)
        if isinstance(model, PeftModel):
            if module.name in model.peft_config:
                model.delete_adapter(module.name)
            model.load_adapter(str(module.adapter_dir), adapter_name=module.name)
        else:  # wraps in place: the backbone's modules get LoRA layers (see base_adapters_off)
            model = PeftModel.from_pretrained(model, str(module.adapter_dir), adapter_name=module.name)
            self.experts[key][0] = model
        model.eval()
        model.requires_grad_(False)
        projector = projector.to(self.device)
        loaded = LoadedDomain(module, readout, projector, hook, key, grounding)
        self.domains[module.name] = loaded
        return loaded

    def remove_domain(self, name: str) -> None:
        """Detach a loaded domain and delete its adapter from the expert backbone."""
        d = self.domain(name)
        slot = self.experts[d.expert_id]
        if name in getattr(slot[0], "peft_config", {}):
            slot[0].delete_adapter(name)
            if not slot[0].peft_config:  # no adapter left: back to the plain backbone (peft has no active adapter)
                slot[0] = slot[0].unload()
        del self.domains[name]

    def domain(self, name: str) -> LoadedDomain:
        try:
            return self.domains[name]
        except KeyError:
            raise DomainNotFoundError(f"Domain {name!r} is not loaded; loaded: {sorted(self.domains) or 'none'}. "
                                      "Install it with `gag install-domain` or pick another with --domain.") from None

    def domain_expert(self, name: str) -> tuple:
        """(model, tokenizer) of a domain's expert with that domain's adapter active (frozen)."""
        d = self.domain(name)
        model, tok = self.experts[d.expert_id]
        model.set_adapter(name)
        model.requires_grad_(False)  # peft's set_adapter marks the active adapter trainable; the expert stays frozen
        return model, tok

    # -- the steps -------------------------------------------------------------------------------
    @torch.no_grad()
    def memory(self, name: str, questions: list[str]) -> torch.Tensor:
        """Expert readout (of the question, after its passages for a grounded expert) + projection -> [B, K, h_base]."""
        return self.memory_with_backgrounds(name, questions)[0]

    @torch.no_grad()
    def memory_with_backgrounds(self, name: str, questions: list[str]) -> tuple[torch.Tensor, list[str | None]]:
        """:meth:`memory` and the background text the expert wrote for each question (None for a readout that
        writes none, or a plugin's that does not say)."""
        model, tok = self.domain_expert(name)
        d = self.domain(name)
        inputs = d.grounding.expert_inputs(questions)
        if hasattr(d.readout, "read_with_backgrounds"):
            memory, texts = d.readout.read_with_backgrounds(model, tok, inputs)
        else:
            memory, texts = d.readout.read(model, tok, inputs), [None] * len(questions)
        return d.projector(memory), texts

    def build_prompts(self, questions: list[str], routes: str | Sequence[str], histories=None,
                      texts: Sequence[str | None] | None = None) -> list[BuiltPrompt]:
        """Each question's base prompt: K slot positions on a domain route (followed by the row's ``texts``, if any:
        gag+rag), none on the general route."""
        routes = _per_row(routes, len(questions))
        histories = histories or [None] * len(questions)
        texts = texts or [None] * len(questions)
        prompts = []
        for q, route, h, text in zip(questions, routes, histories, texts):
            if route == GENERAL:
                prompts.append(self.general_hook.build_plain(q, h))
            else:
                d = self.domain(route)
                prompts.append(d.hook.build(q, d.module.manifest.projector.slots, h, text))
        return prompts

    def passages(self, questions: list[str], routes: Sequence[str], k: Sequence[int]) -> list[str | None]:
        """gag+rag: each domain row's top-``k`` passages of its domain's own knowledge as numbered text (None on the
        general route and where k is 0); a domain that ships no passages is refused."""
        out: list[str | None] = []
        for q, route, n in zip(questions, routes, k):
            if not n or route == GENERAL:
                out.append(None)
                continue
            grounding = self.domain(route).grounding
            if not grounding.passages:
                raise ConfigError(f"Domain {route!r} ships no passages to retrieve from (its expert was trained "
                                  "without readout.context_passages); answer without passages, or retrain it with "
                                  "a corpus and readout.context_passages >= 1.")
            out.append(format_knowledge(grounding.top([q], n)[0]))
        return out

    @torch.no_grad()
    def inputs(self, questions: list[str], routes: str | Sequence[str], histories=None,
               texts: Sequence[str | None] | None = None) -> tuple[dict, list[BuiltPrompt]]:
        """The base model's inputs for a batch, one route per row: left-padded ids when every row is general,
        else ``inputs_embeds`` with each domain's projected memory (one readout per domain) in its rows' slots."""
        routes = _per_row(routes, len(questions))
        prompts = self.build_prompts(questions, routes, histories, texts)
        batch = self.general_hook.collate(prompts)
        ids, attn = batch.input_ids.to(self.device), batch.attention_mask.to(self.device)
        if all(r == GENERAL for r in routes):
            return {"input_ids": ids, "attention_mask": attn}, prompts
        embeds = self.base.get_input_embeddings()(ids)
        slot_mask = batch.slot_mask.to(self.device)
        for route in dict.fromkeys(r for r in routes if r != GENERAL):
            rows = [i for i, r in enumerate(routes) if r == route]
            memory, backgrounds = self.memory_with_backgrounds(route, [questions[i] for i in rows])
            embeds[rows] = merge_memory(embeds[rows], slot_mask[rows], memory)
            for i, text in zip(rows, backgrounds):
                prompts[i].background = text
        return {"inputs_embeds": embeds, "attention_mask": attn}, prompts

    def prompt_inputs(self, prompts: list[BuiltPrompt]) -> dict:
        """Left-padded base inputs of built prompts without memory slots (e.g. knowledge pasted as text)."""
        batch = self.general_hook.collate(prompts)
        return {"input_ids": batch.input_ids.to(self.device), "attention_mask": batch.attention_mask.to(self.device)}

    def generate(self, inputs: dict, options: GenerationOptions | None = None, *, cancel=None,
                 on_text=None) -> list[Generated]:
        """The base model's completions of prepared inputs (adapters of a shared backbone off)."""
        with self.base_adapters_off():
            return generation.generate(self.base, self.tokenizer, inputs, self.options(options), cancel=cancel,
                                       on_text=on_text)

    def options(self, options: GenerationOptions | int | None = None) -> GenerationOptions:
        """Options as given; an int is a max_new_tokens (older call form); None (or 0) the pipeline's budget."""
        if isinstance(options, GenerationOptions):
            return options
        return GenerationOptions(max_new_tokens=options or self.max_new_tokens)

    # -- answering -------------------------------------------------------------------------------
    @torch.no_grad()
    def answer_batch(self, questions: list[str], routes: str | Sequence[str], histories=None,
                     options: GenerationOptions | int | None = None, *, cancel=None,
                     on_text: Callable[[int, str], None] | None = None,
                     texts: Sequence[str | None] | None = None) -> list[Answer]:
        """Answer a batch in one ``generate`` call; ``routes`` is one route for all or one per question.
        ``cancel`` holds one event (or None) per question; ``on_text(row, piece)`` streams text as it comes;
        ``texts``: knowledge text per row after a domain row's memory slots (gag+rag)."""
        if not questions:
            return []
        start = time.perf_counter()
        routes = _per_row(routes, len(questions))
        inputs, prompts = self.inputs(questions, routes, histories, texts)
        generated = self.generate(inputs, options, cancel=cancel, on_text=on_text)
        elapsed = (time.perf_counter() - start) / len(questions)
        return [Answer(q, g.text.strip(), r, len(p.input_ids), elapsed, completion_tokens=g.completion_tokens,
                       finish_reason=g.finish_reason, slots=p.num_slots, background=p.background)
                for q, r, p, g in zip(questions, routes, prompts, generated)]

    def answer(self, question: str, route: str, history=None, options: GenerationOptions | int | None = None, *,
               max_new_tokens: int | None = None) -> Answer:
        options = options if options is not None else max_new_tokens
        return self.answer_batch([question], route, [history], options)[0]

    def stream(self, question: str, route: str, history=None, options: GenerationOptions | int | None = None,
               stop: threading.Event | None = None, *, max_new_tokens: int | None = None,
               text: str | None = None) -> Iterator[str]:
        """Yield the answer text as it is generated. Setting ``stop`` ends generation early; so does leaving
        the loop (break, Ctrl-C, ``close()``): the generation thread never outlives the iterator."""
        options = options if options is not None else max_new_tokens
        pieces: queue.Queue = queue.Queue()
        halt = threading.Event()  # set when the consumer leaves early
        errors: list[BaseException] = []

        def run():
            try:
                self.answer_batch([question], route, [history], options, cancel=[_AnyEvent(halt, stop)],
                                  on_text=lambda _, piece: pieces.put(piece), texts=[text])
            except BaseException as exc:  # surfaced in the caller's thread
                errors.append(exc)
            finally:
                pieces.put(None)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            while (piece := pieces.get()) is not None:
                yield piece
        finally:  # never leave a generation running behind the caller's back
            halt.set()
            thread.join()
        if errors:
            raise errors[0]


def _per_row(routes: str | Sequence[str], n: int) -> list[str]:
    if isinstance(routes, str):
        return [routes] * n
    routes = list(routes)
    if len(routes) != n:
        raise ConfigError(f"Got {len(routes)} routes for {n} questions; give one route, or one per question.")
    return routes
