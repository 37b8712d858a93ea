"""The Python API: discovery and wiring. ``GAG.from_installed()`` loads the base model and every installed
domain into a :class:`gag_core.service.RoutedService` wired to the installed plugins.

    from gag_plugins.api import GAG
    gag = GAG.from_installed()                      # embedded profile, all installed domains
    print(gag.answer("What colour is Fenbelite?").answer)              # routed automatically
    print(gag.answer("What colour is Fenbelite?", route="minerals").answer)
    print(gag.route("What colour is Fenbelite?"))   # RouteDecision(route='minerals', score=..., scores={...})
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

from gag_core.errors import DomainNotFoundError, GagError
from gag_core.models import canonical_model_id, get_profile, load_causal_lm, load_tokenizer
from gag_core.module import DomainModule
from gag_core.pipeline import GagPipeline
from gag_core.router import PrototypeRouter, build_router, make_encoder
from gag_core.service import RoutedService, RoutedStream

from .discovery import all_domains
from .manager import collect

log = logging.getLogger(__name__)

GENERAL_QUESTIONS = Path(__file__).parent / "data" / "general_questions.jsonl"
DEFAULT_ROUTER_ENCODER = "minilm"  # measured against expert-mean in docs/routing.md


def router_encoder_name(name: str | None = None) -> str:
    """The encoder to route with: ``name``, else ``$GAG_ROUTER_ENCODER``, else the default (minilm)."""
    return name or os.environ.get("GAG_ROUTER_ENCODER") or DEFAULT_ROUTER_ENCODER


def open_installed(domains: list[str] | None = None, *, strict: bool = False
                   ) -> tuple[list[DomainModule], dict[str, str]]:
    """Open and verify the named (default: all) installed domains.

    Returns (modules, unavailable) where ``unavailable`` maps a domain that is missing or failed verification
    to why; with ``strict`` the first problem is raised instead."""
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
                router_encoder: str | None = None, margin: float | None = None, min_confidence: float | None = None,
                per_domain: dict[str, float] | None = None) -> tuple[PrototypeRouter, dict]:
    """A router over the installed domains without loading the base model (``gag route``).

    Returns (router, unavailable) where ``unavailable`` maps a domain that failed verification to why."""
    modules, unavailable = open_installed(domains)
    prof = get_profile(profile)

    @functools.cache  # loaded once, only if the encoder asks for it
    def backbone():
        eid = expert or (modules[0].manifest.expert["id"] if modules else prof.expert)
        model = load_causal_lm(eid, dtype=prof.dtype, device_map=prof.device_map)
        return model, load_tokenizer(eid), canonical_model_id(eid)

    encoder = make_encoder(collect("register_encoders"), router_encoder_name(router_encoder), backbone)
    return build_router(modules, encoder, margin, GENERAL_QUESTIONS, min_confidence=min_confidence,
                        per_domain=per_domain), unavailable


class GAG(RoutedService):
    """A :class:`RoutedService` wired to the installed plugins: their readouts, projectors and router encoders."""

    def __init__(self, pipeline: GagPipeline, profile: str = "embedded", *, router_encoder: str | None = None,
                 margin: float | None = None, expert_override: str | None = None, **routing):
        """``routing``: ``min_confidence`` and ``per_domain`` (see :class:`RoutedService`)."""
        super().__init__(pipeline, readouts=collect("register_readouts"), projectors=collect("register_projectors"),
                         encoders=collect("register_encoders"), router_encoder=router_encoder_name(router_encoder),
                         margin=margin, general_questions=GENERAL_QUESTIONS, expert_override=expert_override,
                         **routing)
        self.profile = profile

    @classmethod
    def load_base(cls, profile: str = "embedded", base: str | None = None, expert: str | None = None,
                  max_new_tokens: int = 64, trust_remote_code: bool = False, *, router_encoder: str | None = None,
                  margin: float | None = None, **routing) -> GAG:
        """The base model alone (no domain yet); ``expert`` overrides every domain's expert backbone."""
        prof = get_profile(profile)
        base_id = base or prof.base

        def load_expert(expert_id: str):
            eid = expert or expert_id
            return (load_causal_lm(eid, dtype=prof.dtype, device_map=prof.device_map, trust_remote_code=trust_remote_code),
                    load_tokenizer(eid, trust_remote_code))

        model = load_causal_lm(base_id, dtype=prof.dtype, device_map=prof.device_map, trust_remote_code=trust_remote_code)
        tok = load_tokenizer(base_id, trust_remote_code)
        # a backbone named like the base is the base itself (loaded once), unless --expert names another model
        other_expert = expert is not None and canonical_model_id(expert) != canonical_model_id(base_id)
        pipeline = GagPipeline(model, tok, expert_loader=load_expert, max_new_tokens=max_new_tokens, base_id=base_id,
                               share_backbone=False if other_expert else None)
        return cls(pipeline, profile, router_encoder=router_encoder, margin=margin, expert_override=expert, **routing)

    @classmethod
    def from_installed(cls, domains: list[str] | None = None, *, profile: str = "embedded", base: str | None = None,
                       expert: str | None = None, max_new_tokens: int = 64, strict: bool = False,
                       router_encoder: str | None = None, margin: float | None = None, **routing) -> GAG:
        """Load the base and the named (default: all) installed domains. Incompatible domains are set aside
        (see ``unavailable``) unless ``strict``, in which case the first problem is raised. The router (over
        general + the loaded domains) is built on first use; ``router_encoder`` names a registered encoder
        (default minilm, or ``$GAG_ROUTER_ENCODER``), ``margin`` defaults to the encoder's measured value;
        ``routing`` holds ``min_confidence`` and ``per_domain`` (calibrated routers, docs/routing.md)."""
        gag = cls.load_base(profile, base, expert, max_new_tokens, router_encoder=router_encoder, margin=margin,
                            **routing)
        gag.refresh(domains, strict=strict)
        return gag

    def refresh(self, domains: list[str] | None = None, *, strict: bool = False) -> dict:
        """Bring the loaded domains in line with what is installed now, in place (the base stays loaded):
        uninstalled domains leave, new ones join, a domain whose manifest changed (an update, a reinstall) is
        reloaded, the others are not touched. A domain that fails verification or loading is set aside in
        ``unavailable`` (raised with ``strict``). Returns what changed: domains, added, removed, updated."""
        modules, unavailable = open_installed(domains, strict=strict)
        wanted = {m.name: m for m in modules}
        before = set(self.domains)
        removed = sorted(before - set(wanted) - set(unavailable))
        for name in removed + [n for n in unavailable if n in before]:
            self.remove_domain(name)
        updated = [n for n, m in wanted.items() if n in before and self.module(n).manifest != m.manifest]
        for name, module in wanted.items():
            if name in self.domains and name not in updated:
                continue
            try:
                if name in updated:
                    self.remove_domain(name)
                self.add_domain(module)
            except GagError as exc:
                if strict:
                    raise
                unavailable[name] = str(exc)
        self.unavailable = unavailable
        for name, why in unavailable.items():
            log.warning("Domain %s is unavailable: %s", name, why)
        after = set(self.domains)
        return {"domains": sorted(after), "added": sorted(after - before), "removed": sorted(before - after),
                "updated": sorted(set(updated) & after), "unavailable": dict(unavailable)}

    # ``domain=`` is the name gag's first releases gave ``route=``; existing callers keep working
    def answer(self, question: str, route: str | None = None, history=None, options=None, *, domain=None):
        return super().answer(question, route or domain, history, options)

    def stream(self, question: str, route: str | None = None, history=None, options=None, stop=None,
               passages: int = 0, *, domain=None) -> RoutedStream:
        return super().stream(question, route or domain, history, options, stop, passages)
