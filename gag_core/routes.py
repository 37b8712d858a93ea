"""Neutral route names shared by the router, the pipeline and the routed service (no model code here)."""

from __future__ import annotations

from dataclasses import dataclass, field

GENERAL = "general"  # the plain frozen base model, no injection


@dataclass
class RouteDecision:
    route: str  # the chosen route ("general" or a domain name)
    score: float  # the chosen route's score (max cosine to its prototypes)
    scores: dict[str, float] = field(default_factory=dict)  # every route's score, router order
    fallback: bool = False  # True when a domain won by less than the margin and general was chosen instead
    runner_up: str | None = None  # the best-scoring route other than the chosen one (None: the only route)
    runner_up_score: float | None = None  # its score

    def to_dict(self) -> dict:
        return {"route": self.route, "route_score": round(self.score, 4),
                "scores": {k: round(v, 4) for k, v in self.scores.items()}}
