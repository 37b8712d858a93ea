"""The Python API: ``GAG.from_installed()`` loads the base model and every installed domain.

    from gag_plugins.api import GAG
    gag = GAG.from_installed()                      # embedded profile, all installed domains
    print(gag.answer("What colour is Fenbelite?").answer)              # routed automatically
    print(gag.answer("What colour is Fenbelite?", domain="minerals").answer)
    print(gag.route("What colour is Fenbelite?"))   # RouteDecision(route='minerals', score=..., scores={...})
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from gag_core.errors import ConfigError, GagError, IncompatibleModuleError
from gag_core.models import canonical_model_id, get_profile, load_causal_lm, load_tokenizer
from gag_core.module import DomainModule
from gag_core.paths import cache_dir
from gag_core.pipeline import GENERAL, Answer, GagPipeline
from gag_core.router import (GENERAL_PROTOTYPES, ExpertMeanEncoder, PrototypeRouter, RouteDecision,
                             cached_prototypes, module_prototypes)

from .discovery import all_domains
from .manager import collect

log = logging.getLogger(__name__)

GENERAL_QUESTIONS = Path(__file__).parent / "data" / "general_questions.jsonl"
DEFAULT_ROUTER_ENCODER = "minilm"  # measured against expert-mean in docs/routing.md


def router_encoder_name(name: str | None = None) -> str:
    """The encoder to route with: ``name``, else ``$GAG_ROUTER_ENCODER``, else the default (minilm)."""
    return name or os.environ.get("GAG_ROUTER_ENCODER") or DEFAULT_ROUTER_ENCODER


def make_encoder(name: str | None = None, expert_backbone: Callable[[], tuple] | None = None):
    """Build a registered router encoder (``register_encoders`` hook) by name."""
    name = router_encoder_name(name)
    encoders = collect("register_encoders")
    if name not in encoders:
        raise ConfigError(f"Unknown router encoder {name!r}; registered: {sorted(encoders)}. "
                          "Pass --router-encoder with one of them, or install the plugin that provides it.")
    return encoders[name](expert_backbone=expert_backbone)


def build_router(modules: list[DomainModule], encoder, margin: float | None = None,
                 general_questions: Path = GENERAL_QUESTIONS) -> PrototypeRouter:
    """General + one route per module. ``margin=None`` takes the encoder's measured default."""
    router = PrototypeRouter(encoder, getattr(encoder, "default_margin", 0.0) if margin is None else margin)
    folder = cache_dir() / "router"
    k = getattr(encoder, "general_prototypes", GENERAL_PROTOTYPES)
    router.add_route(GENERAL, cached_prototypes(encoder, general_questions, folder, k=k))
    for module in modules:
        router.add_route(module.name, module_prototypes(module, encoder, folder))
    return router


def open_installed(domains: list[str] | None = None, *, strict: bool = False
                   ) -> tuple[list[DomainModule], dict[str, str]]:
    """Open and verify the named (default: all) installed domains.

    Returns (modules, unavailable) where ``unavailable`` maps a domain that is missing or failed verification
    to why; with ``strict`` the first problem is raised instead."""
    from gag_core.errors import DomainNotFoundError

    available = all_domains()
    modules, unavailable = [], {}
    for name in list(available) if domains is None else domains:
        try:
            if name not in available:
                raise DomainNotFoundError(f"No domain named {name!r}; available: {sorted(available) or 'none'}.")
            modules.append(DomainModule.open(available[name].path))
        except GagError as exc:
            if strict:
                raise
            unavailable[name] = str(exc)
    return modules, unavailable


def load_router(domains: list[str] | None = None, *, profile: str = "embedded", expert: str | None = None,
                router_encoder: str | None = None, margin: float | None = None) -> tuple[PrototypeRouter, dict]:
    """A router over the installed domains without loading the base model (``gag route``).

    Returns (router, unavailable) where ``unavailable`` maps a domain that failed verification to why."""
    modules, unavailable = open_installed(domains)
    prof = get_profile(profile)

    def backbone():
        eid = expert or (modules[0].manifest.expert["id"] if modules else prof.expert)
        model = load_causal_lm(eid, dtype=prof.dtype, device_map=prof.device_map)
        return model, load_tokenizer(eid), canonical_model_id(eid)

    return build_router(modules, make_encoder(router_encoder, backbone), margin), unavailable


class GAG:
    """A frozen base model plus installed domains, with routing between them."""

    def __init__(self, pipeline: GagPipeline, profile: str = "embedded", *, router_encoder: str | None = None,
                 margin: float | None = None, expert_override: str | None = None):
        self.pipeline = pipeline
        self.profile = profile
        self.unavailable: dict[str, str] = {}  # domain -> why it could not be loaded
        self.router_encoder = router_encoder_name(router_encoder)
        self.margin = margin
        self.expert_override = expert_override  # --expert: the backbone every domain runs on, whatever it names
        self.last_decision: RouteDecision | None = None  # set by answer/stream when they route
        self._router: PrototypeRouter | None = None

    @classmethod
    def load_base(cls, profile: str = "embedded", base: str | None = None, expert: str | None = None,
                  max_new_tokens: int = 64, trust_remote_code: bool = False, *, router_encoder: str | None = None,
                  margin: float | None = None) -> "GAG":
        prof = get_profile(profile)
        base_id = base or prof.base
        expert_override = expert

        def load_expert(expert_id: str):
            eid = expert_override or expert_id
            return (load_causal_lm(eid, dtype=prof.dtype, device_map=prof.device_map, trust_remote_code=trust_remote_code),
                    load_tokenizer(eid, trust_remote_code))

        model = load_causal_lm(base_id, dtype=prof.dtype, device_map=prof.device_map, trust_remote_code=trust_remote_code)
        tok = load_tokenizer(base_id, trust_remote_code)
        return cls(GagPipeline(model, tok, expert_loader=load_expert, max_new_tokens=max_new_tokens), profile,
                   router_encoder=router_encoder, margin=margin, expert_override=expert)

    @classmethod
    def from_installed(cls, domains: list[str] | None = None, *, profile: str = "embedded", base: str | None = None,
                       expert: str | None = None, max_new_tokens: int = 64, strict: bool = False,
                       router_encoder: str | None = None, margin: float | None = None) -> "GAG":
        """Load the base and the named (default: all) installed domains. Incompatible domains are set aside
        (see ``unavailable``) unless ``strict``, in which case the first problem is raised. The router (over
        general + the loaded domains) is built on first use; ``router_encoder`` names a registered encoder
        (default minilm, or ``$GAG_ROUTER_ENCODER``), ``margin`` defaults to the encoder's measured value."""
        gag = cls.load_base(profile, base, expert, max_new_tokens, router_encoder=router_encoder, margin=margin)
        modules, gag.unavailable = open_installed(domains, strict=strict)
        for module in modules:
            try:
                gag.add_domain(module)
            except GagError as exc:
                if strict:
                    raise
                gag.unavailable[module.name] = str(exc)
        for name, why in gag.unavailable.items():
            log.warning("Domain %s is unavailable: %s", name, why)
        return gag

    def add_domain(self, module: DomainModule) -> None:
        readouts, projectors = collect("register_readouts"), collect("register_projectors")
        m = module.manifest
        if m.readout.kind not in readouts or m.projector.kind not in projectors:
            raise IncompatibleModuleError(
                f"Domain {m.name!r} needs readout {m.readout.kind!r} and projector {m.projector.kind!r}; registered: "
                f"readouts {sorted(readouts)}, projectors {sorted(projectors)}. Install the plugin that provides them.")
        loaded = self.pipeline.add_domain(module, readout_cls=readouts[m.readout.kind],
                                          projector_cls=projectors[m.projector.kind])
        if self._router is not None:  # plug and play: only this domain's prototypes are added
            encoder = self._router.encoder
            if isinstance(encoder, ExpertMeanEncoder) and loaded.expert_id in self.pipeline.experts:
                model = self.pipeline.experts[loaded.expert_id][0]
                if model.get_input_embeddings() is encoder.model.get_input_embeddings():
                    encoder.model = model  # the backbone may have just been wrapped as a PeftModel
            self._router.add_route(module.name, module_prototypes(module, encoder, cache_dir() / "router"))

    @property
    def domains(self) -> list[str]:
        return sorted(self.pipeline.domains)

    # -- routing ---------------------------------------------------------------------------------
    def _expert_backbone(self):
        """(model, tokenizer, id) of the expert backbone for the expert-mean encoder (the first domain's)."""
        loaded = list(self.pipeline.domains.values())
        expert_id = loaded[0].expert_id if loaded else (self.expert_override or get_profile(self.profile).expert)
        key, (model, tok) = self.pipeline._expert_for(expert_id)
        return model, tok, canonical_model_id(self.expert_override) if self.expert_override else key

    @property
    def router(self) -> PrototypeRouter:
        """The PPR router over general + the loaded domains (built on first use, general prototypes cached)."""
        if self._router is None:
            encoder = make_encoder(self.router_encoder, self._expert_backbone)
            self._router = build_router([d.module for d in self.pipeline.domains.values()], encoder, self.margin)
        return self._router

    def route_batch(self, questions: list[str]) -> list[RouteDecision]:
        if not self.pipeline.domains:  # nothing to choose from: no encoder, no expert to load
            return [RouteDecision(GENERAL, 1.0, {GENERAL: 1.0}) for _ in questions]
        return self.router.route_batch(list(questions))

    def route(self, question: str) -> RouteDecision:
        """Which route PPR picks for ``question``, with every route's score."""
        return self.route_batch([question])[0]

    def _check_route(self, route: str) -> str:
        if route != GENERAL and route not in self.pipeline.domains and route in self.unavailable:
            raise IncompatibleModuleError(f"Domain {route!r} cannot be used: {self.unavailable[route]}")
        return route

    # -- answering -------------------------------------------------------------------------------
    def answer(self, question: str, domain: str | None = None, history=None, max_new_tokens: int | None = None) -> Answer:
        """Answer with ``domain`` (a domain name or "general"); routing picks one when ``domain`` is None
        (the answer's ``route_score`` is then set)."""
        if domain is None:
            self.last_decision = decision = self.route(question)
            ans = self.pipeline.answer(question, decision.route, history, max_new_tokens)
            ans.route_score = decision.score
            return ans
        return self.pipeline.answer(question, self._check_route(domain), history, max_new_tokens)

    def answer_routed(self, questions: list[str], histories=None, max_new_tokens: int | None = None) -> list[Answer]:
        """Route every question, then answer each route's group in one batch. Answers keep the input order."""
        histories = list(histories) if histories is not None else [None] * len(questions)
        decisions = self.route_batch(questions)
        answers: list[Answer | None] = [None] * len(questions)
        for route in dict.fromkeys(d.route for d in decisions):
            idx = [i for i, d in enumerate(decisions) if d.route == route]
            group = self.pipeline.answer_batch([questions[i] for i in idx], route, [histories[i] for i in idx],
                                               max_new_tokens)
            for i, ans in zip(idx, group):
                ans.route_score = decisions[i].score
                answers[i] = ans
        return answers

    def answer_batch(self, questions: list[str], domain: str | None = None, max_new_tokens: int | None = None) -> list[Answer]:
        """Answer a batch with one ``domain``; ``domain=None`` routes each question (see ``answer_routed``)."""
        if domain is None:
            return self.answer_routed(questions, max_new_tokens=max_new_tokens)
        return self.pipeline.answer_batch(questions, self._check_route(domain), None, max_new_tokens)

    def stream(self, question: str, domain: str | None = None, history=None, **kwargs) -> Iterator[str]:
        """Yield answer text as it is generated (``stop=threading.Event()`` ends it early). With
        ``domain=None`` the question is routed first; the decision is in ``last_decision``."""
        if domain is None:
            self.last_decision = decision = self.route(question)
            route = decision.route
        else:
            route = self._check_route(domain)
        return self.pipeline.stream(question, route, history, **kwargs)
