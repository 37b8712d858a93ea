"""The GAG pipeline: (route) -> expert readout (LoRA adapter) -> project -> inject -> generate.

One pipeline holds one frozen base model and one expert backbone per distinct expert id; every installed
domain is a named peft adapter on its backbone, switched per query. The general route is the plain base.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from .errors import DomainNotFoundError, IncompatibleModuleError
from .injection import BuiltPrompt, InjectionHook, merge_memory
from .models import canonical_model_id
from .module import DomainModule
from .projectors import ProjectorBundle
from .readouts import BUILTIN_READOUTS

GENERAL = "general"


@dataclass
class Answer:
    question: str
    answer: str
    route: str
    prompt_tokens: int
    latency_s: float
    route_score: float | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"question": self.question, "answer": self.answer, "route": self.route,
             "prompt_tokens": self.prompt_tokens, "latency_s": round(self.latency_s, 4)}
        if self.route_score is not None:
            d["route_score"] = round(float(self.route_score), 4)
        d.update(self.extra)
        return d


@dataclass
class LoadedDomain:
    module: DomainModule
    readout: object
    projector: ProjectorBundle
    hook: InjectionHook
    expert_id: str

    @property
    def name(self) -> str:
        return self.module.name


class GagPipeline:
    """Compose a frozen base model with domain experts. Thread-compatible, not thread-safe."""

    def __init__(self, base, base_tokenizer, *, expert_loader: Callable[[str], tuple] | None = None,
                 max_new_tokens: int = 64, instruction: str | None = None):
        self.base = base
        self.tokenizer = base_tokenizer
        self.expert_loader = expert_loader
        self.max_new_tokens = max_new_tokens
        self.general_hook = InjectionHook(base_tokenizer, **({"instruction": instruction} if instruction else {}))
        self.experts: dict[str, list] = {}  # expert id -> [peft-or-plain model, tokenizer]
        self.domains: dict[str, LoadedDomain] = {}

    # -- domains ---------------------------------------------------------------------------------
    def add_expert(self, expert_id: str, model, tokenizer) -> None:
        """Provide an already loaded expert backbone (shared by every domain that names ``expert_id``)."""
        self.experts[canonical_model_id(expert_id)] = [model, tokenizer]

    def _expert_for(self, expert_id: str):
        key = canonical_model_id(expert_id)
        if key not in self.experts:
            if self.expert_loader is None:
                raise IncompatibleModuleError(f"No expert backbone {expert_id!r} is loaded and no loader was given.")
            self.experts[key] = list(self.expert_loader(expert_id))
        return key, self.experts[key]

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
        hook = InjectionHook(self.tokenizer, **{k: v for k, v in module.manifest.prompt.items()
                                               if k in ("instruction", "template")})
        key, slot = self._expert_for(module.manifest.expert["id"])
        model, tok = slot
        module.check_expert(model)
        if isinstance(model, PeftModel):
            if module.name in model.peft_config:
                model.delete_adapter(module.name)
            model.load_adapter(str(module.adapter_dir), adapter_name=module.name)
        else:
            model = PeftModel.from_pretrained(model, str(module.adapter_dir), adapter_name=module.name)
            slot[0] = model
        model.eval()
        model.requires_grad_(False)
        projector = projector.to(self.base.get_input_embeddings().weight.device)
        loaded = LoadedDomain(module, readout, projector, hook, key)
        self.domains[module.name] = loaded
        return loaded

    def domain(self, name: str) -> LoadedDomain:
        try:
            return self.domains[name]
        except KeyError:
            raise DomainNotFoundError(f"Domain {name!r} is not loaded; loaded: {sorted(self.domains) or 'none'}. "
                                      "Install it with `gag install-domain` or pick another with --domain.") from None

    # -- the steps -------------------------------------------------------------------------------
    @torch.no_grad()
    def memory(self, name: str, questions: list[str]) -> torch.Tensor:
        """Expert readout + projection for a batch of questions -> [B, K, h_base]."""
        d = self.domain(name)
        model, tok = self.experts[d.expert_id]
        model.set_adapter(name)
        model.requires_grad_(False)  # peft's set_adapter marks the active adapter trainable; the expert stays frozen
        raw = d.readout.read(model, tok, questions)
        return d.projector(raw)

    def build_prompts(self, questions: list[str], route: str, histories=None) -> list[BuiltPrompt]:
        histories = histories or [None] * len(questions)
        if route == GENERAL:
            return [self.general_hook.build_plain(q, h) for q, h in zip(questions, histories)]
        d = self.domain(route)
        return [d.hook.build(q, d.module.manifest.projector.slots, h) for q, h in zip(questions, histories)]

    def _inputs(self, questions, route, histories):
        hook = self.general_hook if route == GENERAL else self.domain(route).hook
        prompts = self.build_prompts(questions, route, histories)
        batch = hook.collate(prompts)
        device = self.base.get_input_embeddings().weight.device
        ids, attn = batch.input_ids.to(device), batch.attention_mask.to(device)
        if route == GENERAL:
            return {"input_ids": ids, "attention_mask": attn}, prompts
        embeds = self.base.get_input_embeddings()(ids)
        embeds = merge_memory(embeds, batch.slot_mask.to(device), self.memory(route, questions))
        return {"inputs_embeds": embeds, "attention_mask": attn}, prompts

    def _gen_kwargs(self, max_new_tokens):
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        return {"max_new_tokens": max_new_tokens or self.max_new_tokens, "do_sample": False,
                "pad_token_id": pad, "eos_token_id": self.tokenizer.eos_token_id}

    # -- answering -------------------------------------------------------------------------------
    @torch.no_grad()
    def answer_batch(self, questions: list[str], route: str, histories=None,
                     max_new_tokens: int | None = None) -> list[Answer]:
        """Greedy answers for questions that share one route (left-padded batch)."""
        start = time.perf_counter()
        inputs, prompts = self._inputs(questions, route, histories)
        out = self.base.generate(**inputs, **self._gen_kwargs(max_new_tokens))
        if "input_ids" in inputs:
            out = out[:, inputs["input_ids"].shape[1]:]
        texts = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        elapsed = (time.perf_counter() - start) / max(len(questions), 1)
        return [Answer(q, t.strip(), route, len(p.input_ids), elapsed) for q, t, p in zip(questions, texts, prompts)]

    def answer(self, question: str, route: str, history=None, max_new_tokens: int | None = None) -> Answer:
        return self.answer_batch([question], route, [history], max_new_tokens)[0]

    def stream(self, question: str, route: str, history=None, max_new_tokens: int | None = None,
               stop: threading.Event | None = None) -> Iterator[str]:
        """Yield the answer text as it is generated. Setting ``stop`` ends generation early."""
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        halt = threading.Event()  # set when the consumer leaves early (break, Ctrl-C)

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return halt.is_set() or bool(stop is not None and stop.is_set())

        inputs, _ = self._inputs([question], route, [history])
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt="input_ids" in inputs, skip_special_tokens=True)
        kwargs = {**inputs, **self._gen_kwargs(max_new_tokens), "streamer": streamer,
                  "stopping_criteria": StoppingCriteriaList([_Stop()])}
        errors: list[BaseException] = []

        def run():
            try:
                with torch.no_grad():
                    self.base.generate(**kwargs)
            except BaseException as exc:  # surfaced in the caller's thread
                errors.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield from streamer
        finally:  # never leave a generation running behind the caller's back
            halt.set()
            thread.join()
        if errors:
            raise errors[0]
