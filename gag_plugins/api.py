"""The Python API: ``GAG.from_installed()`` loads the base model and every installed domain.

    from gag_plugins.api import GAG
    gag = GAG.from_installed()                      # embedded profile, all installed domains
    print(gag.answer("What colour is Fenbelite?", domain="minerals").answer)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from gag_core.errors import GagError, IncompatibleModuleError
from gag_core.models import get_profile, load_causal_lm, load_tokenizer
from gag_core.module import DomainModule
from gag_core.pipeline import GENERAL, Answer, GagPipeline

from .discovery import all_domains
from .manager import collect

log = logging.getLogger(__name__)


class GAG:
    """A frozen base model plus installed domains, with routing between them."""

    def __init__(self, pipeline: GagPipeline, profile: str = "embedded"):
        self.pipeline = pipeline
        self.profile = profile
        self.unavailable: dict[str, str] = {}  # domain -> why it could not be loaded
        self.router = None

    @classmethod
    def load_base(cls, profile: str = "embedded", base: str | None = None, expert: str | None = None,
                  max_new_tokens: int = 64, trust_remote_code: bool = False) -> "GAG":
        prof = get_profile(profile)
        base_id = base or prof.base
        expert_override = expert

        def load_expert(expert_id: str):
            eid = expert_override or expert_id
            return (load_causal_lm(eid, dtype=prof.dtype, device_map=prof.device_map, trust_remote_code=trust_remote_code),
                    load_tokenizer(eid, trust_remote_code))

        model = load_causal_lm(base_id, dtype=prof.dtype, device_map=prof.device_map, trust_remote_code=trust_remote_code)
        tok = load_tokenizer(base_id, trust_remote_code)
        return cls(GagPipeline(model, tok, expert_loader=load_expert, max_new_tokens=max_new_tokens), profile)

    @classmethod
    def from_installed(cls, domains: list[str] | None = None, *, profile: str = "embedded", base: str | None = None,
                       expert: str | None = None, max_new_tokens: int = 64, strict: bool = False) -> "GAG":
        """Load the base and the named (default: all) installed domains. Incompatible domains are set aside
        (see ``unavailable``) unless ``strict``, in which case the first problem is raised."""
        gag = cls.load_base(profile, base, expert, max_new_tokens)
        available = all_domains()
        names = list(available) if domains is None else domains
        for name in names:
            try:
                if name not in available:
                    from gag_core.errors import DomainNotFoundError
                    raise DomainNotFoundError(f"No domain named {name!r}; available: {sorted(available) or 'none'}.")
                gag.add_domain(DomainModule.open(available[name].path))
            except GagError as exc:
                if strict:
                    raise
                gag.unavailable[name] = str(exc)
                log.warning("Domain %s is unavailable: %s", name, exc)
        return gag

    def add_domain(self, module: DomainModule) -> None:
        readouts, projectors = collect("register_readouts"), collect("register_projectors")
        m = module.manifest
        if m.readout.kind not in readouts or m.projector.kind not in projectors:
            raise IncompatibleModuleError(
                f"Domain {m.name!r} needs readout {m.readout.kind!r} and projector {m.projector.kind!r}; registered: "
                f"readouts {sorted(readouts)}, projectors {sorted(projectors)}. Install the plugin that provides them.")
        self.pipeline.add_domain(module, readout_cls=readouts[m.readout.kind], projector_cls=projectors[m.projector.kind])

    @property
    def domains(self) -> list[str]:
        return sorted(self.pipeline.domains)

    def _check_route(self, route: str) -> str:
        if route != GENERAL and route not in self.pipeline.domains and route in self.unavailable:
            raise IncompatibleModuleError(f"Domain {route!r} cannot be used: {self.unavailable[route]}")
        return route

    def answer(self, question: str, domain: str | None = None, history=None, max_new_tokens: int | None = None) -> Answer:
        """Answer with ``domain`` (a domain name or "general"); routing picks one when ``domain`` is None."""
        route = self._check_route(domain or GENERAL)
        return self.pipeline.answer(question, route, history, max_new_tokens)

    def answer_batch(self, questions: list[str], domain: str | None = None, max_new_tokens: int | None = None) -> list[Answer]:
        route = self._check_route(domain or GENERAL)
        return self.pipeline.answer_batch(questions, route, None, max_new_tokens)

    def stream(self, question: str, domain: str | None = None, history=None, **kwargs) -> Iterator[str]:
        route = self._check_route(domain or GENERAL)
        return self.pipeline.stream(question, route, history, **kwargs)
