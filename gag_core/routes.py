"""Neutral route names shared by the router, the pipeline and the routed service (no model code here)."""

from __future__ import annotations

from dataclasses import dataclass, field

GENERAL = "general"  # the plain frozen base model, no injection


@dataclass
class RouteDecision:
    route: str  # the chosen route ("general" or a domain name)
    score: float  # the chosen route's score (max cosine to its prototypes, + lexical bonus when hybrid)
    scores: dict[str, float] = field(default_factory=dict)  # every route's score, router order
    fallback: bool = False  # True when a domain won, but below the minimum confidence (or margin): general instead
    runner_up: str | None = None  # the best-scoring route other than the chosen one (None: the only route)
    runner_up_score: float | None = None  # its score
    confidence: float | None = None  # calibrated P(this route is right); None when the router is not calibrated
    threshold: float | None = None  # the minimum confidence the winning domain needed (None: margin rule)
    dense: dict[str, float] = field(default_factory=dict)  # every route's cosine alone (hybrid routers)
    evidence: dict[str, str] = field(default_factory=dict)  # domain -> its lexical evidence, in words

    def to_dict(self) -> dict:
        out = {"route": self.route, "route_score": round(self.score, 4),
               "scores": {k: round(v, 4) for k, v in self.scores.items()}}
        if self.confidence is not None:
            out["confidence"] = round(self.confidence, 4)
        return out
