"""The routed service: one pipeline (frozen base + domain experts) and a prototype router between ``general``
and the loaded domains. The one object that the CLI, the evaluation harness and the server answer through.

    service = RoutedService(pipeline, readouts=..., projectors=..., encoders=..., general_questions=path)
    service.add_domain(DomainModule.open(folder))        # plug and play: only its prototypes join the router
    service.answer("What colour is Fenbelite?")          # routed; answer.decision says why
    service.answer_batch([Query("Who found it?"), Query("Hello!", route="general")])   # one generate call

The registries (readout kind -> class, projector kind -> class, encoder name -> factory) are passed in: the core
never discovers plugins; ``gag_plugins.api.GAG`` wires them from the installed ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, DomainNotFoundError, IncompatibleModuleError
from .models import canonical_model_id
from .module import DomainModule
from .pipeline import Answer
from .router import PrototypeRouter, build_router, make_encoder
from .routes import GENERAL, RouteDecision


@dataclass
class Query:
    question: str
    route: str | None = None  # None = let the router choose; "general"; or a domain name (skips routing)
    history: list[dict] | None = None  # earlier chat messages, before the question in the base prompt
    passages: int = 0  # gag+rag: also paste the domain's top-k passages as text after the memory slots


class RoutedStream:
    """The pieces of one answer as they are generated. ``route`` and ``decision`` (None when the route was
    forced) are known before the first piece; ``close()`` (or dropping the stream) stops the generation."""

    def __init__(self, pieces: Iterator[str], route: str, decision: RouteDecision | None):
        self._pieces = pieces
        self.route = route
        self.decision = decision

    def __iter__(self) -> RoutedStream:
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        self._pieces.close()


class RoutedService:
    """A frozen base model and its loaded domains, with prototype routing between them and ``general``."""

    def __init__(self, pipeline, *, readouts: Mapping[str, type], projectors: Mapping[str, type],
                 encoders: Mapping[str, Callable], router_encoder: str = "minilm", margin: float | None = None,
                 general_questions: Path, expert_override: str | None = None, min_confidence: float | None = None,
                 per_domain: Mapping[str, float] | None = None):
        self.pipeline = pipeline
        self.readouts, self.projectors, self.encoders = dict(readouts), dict(projectors), dict(encoders)
        self.router_encoder = router_encoder  # a name in ``encoders``
        self.margin = margin  # None = the encoder's measured default (when the router is not calibrated)
        self.min_confidence = min_confidence  # None = the default once calibrated; see router.build_router
        self.per_domain = dict(per_domain or {})  # domain -> its own minimum confidence
        self.general_questions = Path(general_questions)  # JSONL questions the general route's prototypes come from
        self.expert_override = expert_override  # the backbone every domain runs on, whatever its manifest names
        self.unavailable: dict[str, str] = {}  # domain -> why it could not be loaded
        self._router: PrototypeRouter | None = None

    # -- domains ---------------------------------------------------------------------------------
    @property
    def domains(self) -> list[str]:
        return sorted(self.pipeline.domains)

    def module(self, name: str) -> DomainModule:
        """A loaded domain's module (its manifest: version, base model id, ...)."""
        return self.pipeline.domain(name).module

    def add_domain(self, module: DomainModule) -> None:
        """Attach a verified module; when the router exists, only this domain's prototypes are added to it."""
        m = module.manifest
        readout, projector = self.readouts.get(m.readout.kind), self.projectors.get(m.projector.kind)
        if readout is None or projector is None:
            raise IncompatibleModuleError(
                f"Domain {m.name!r} needs readout {m.readout.kind!r} and projector {m.projector.kind!r}; registered: "
                f"readouts {sorted(self.readouts)}, projectors {sorted(self.projectors)}. "
                "Install the plugin that provides them.")
        self.pipeline.add_domain(module, readout_cls=readout, projector_cls=projector)
        self.unavailable.pop(module.name, None)
        if self._router is not None:  # its route only; the calibration is refitted for the new set on first use
            self._router.add_module(module)

    def remove_domain(self, name: str) -> None:
        """Detach a loaded domain; its route leaves the router, no other route changes."""
        self.pipeline.remove_domain(name)
        if self._router is not None:
            self._router.remove_route(name)

    def resolve(self, route: str) -> str:
        """Check a forced route ("general" or a loaded domain) and return it."""
        if route == GENERAL or route in self.pipeline.domains:
            return route
        if route in self.unavailable:
            raise IncompatibleModuleError(f"Domain {route!r} cannot be used: {self.unavailable[route]}")
        raise DomainNotFoundError(f"No loaded domain {route!r}; loaded: {', '.join(self.domains) or 'none'} "
                                  f"(or {GENERAL!r}). Install it with `gag install-domain`, or pick a loaded one.")

    # -- routing ---------------------------------------------------------------------------------
    def _expert_backbone(self) -> tuple:
        """(model, tokenizer, id) of the backbone the expert-mean encoder reads (the first domain's)."""
        first = next(iter(self.pipeline.domains), None)
        expert_id = self.module(first).manifest.expert["id"] if first is not None else self.expert_override
        if expert_id is None:
            raise ConfigError("The expert-mean router encoder needs an expert backbone; load a domain first "
                              "or pass expert=ID.")
        model, tokenizer, key = self.pipeline.expert_backbone(expert_id)
        return model, tokenizer, canonical_model_id(self.expert_override) if self.expert_override else key

    @property
    def router(self) -> PrototypeRouter:
        """The PPR router over general + the loaded domains (built on first use, general prototypes cached)."""
        if self._router is None:
            encoder = make_encoder(self.encoders, self.router_encoder, self._expert_backbone)
            modules = [self.module(name) for name in self.pipeline.domains]  # load order = router order
            self._router = build_router(modules, encoder, self.margin, self.general_questions,
                                        min_confidence=self.min_confidence, per_domain=self.per_domain)
        return self._router

    def route_batch(self, questions: list[str]) -> list[RouteDecision]:
        """PPR's decision for every question, in one encoder pass."""
        if not self.pipeline.domains:  # nothing to choose from: no encoder, no expert to load
            return [RouteDecision(GENERAL, 1.0, {GENERAL: 1.0}) for _ in questions]
        return self.router.route_batch(list(questions))

    def route(self, question: str) -> RouteDecision:
        """Which route PPR picks for ``question``, with every route's score."""
        return self.route_batch([question])[0]

    def _decide(self, queries: Sequence[Query]) -> tuple[list[str], dict[int, RouteDecision]]:
        """Every query's route (forced ones checked) and the router's decision for the unforced ones."""
        forced = [None if q.route is None else self.resolve(q.route) for q in queries]
        todo = [i for i, route in enumerate(forced) if route is None]
        decisions = dict(zip(todo, self.route_batch([queries[i].question for i in todo]))) if todo else {}
        return [decisions[i].route if route is None else route for i, route in enumerate(forced)], decisions

    # -- answering -------------------------------------------------------------------------------
    def answer_batch(self, queries: Sequence[Query], options=None, *, cancel=None, on_text=None) -> list[Answer]:
        """Answer every query in one generation batch, in input order. Queries without a route are routed
        together (one encoder pass); their answers carry the ``decision`` and its ``route_score``.
        ``cancel`` (one event per query) and ``on_text(row, piece)`` go to the pipeline."""
        queries = list(queries)
        if not queries:
            return []
        routes, decisions = self._decide(queries)
        questions = [q.question for q in queries]
        texts = self.pipeline.passages(questions, routes, [q.passages for q in queries]) \
            if any(q.passages for q in queries) else None
        answers = self.pipeline.answer_batch(questions, routes, [q.history for q in queries], options, cancel=cancel,
                                             on_text=on_text, texts=texts)
        for i, decision in decisions.items():
            answers[i].decision, answers[i].route_score = decision, decision.score
        return answers

    def answer(self, question: str, route: str | None = None, history: list[dict] | None = None,
               options=None) -> Answer:
        """One answer; ``route=None`` routes the question (see :meth:`answer_batch`)."""
        return self.answer_batch([Query(question, route, history)], options)[0]

    def stream(self, question: str, route: str | None = None, history: list[dict] | None = None, options=None,
               stop: threading.Event | None = None, passages: int = 0) -> RoutedStream:
        """The answer's text as it is generated; setting ``stop`` ends it early. Routing happens here, so the
        stream's ``route`` and ``decision`` are known before iterating. ``passages``: as :class:`Query`'s."""
        routes, decisions = self._decide([Query(question, route, history)])
        text = self.pipeline.passages([question], routes, [passages])[0]
        pieces = self.pipeline.stream(question, routes[0], history, options, stop=stop, text=text)
        return RoutedStream(pieces, routes[0], decisions.get(0))
