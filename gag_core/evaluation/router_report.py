"""How good a router's decisions are on labelled questions: accuracy, the two costly error kinds, and how
well its confidence is calibrated (ECE, reliability bins). Used by ``gag eval-router`` and the benchmarks.

- **general -> domain** (leakage): a general question sent to a domain gets a wrong injection;
- **domain -> general** (a miss): the plain base knows nothing of the domain's private facts;
- **domain -> domain**: the wrong domain.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from ..calibration import expected_calibration_error, reliability
from ..errors import DataError
from ..routes import GENERAL


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def routing_report(golds: Sequence[str], routes: Sequence[str], confidences: Sequence[float | None] | None = None,
                   kinds: Sequence[str] | None = None, bins: int = 10) -> dict:
    """Metrics of the chosen ``routes`` against the gold ones. ``confidences`` (one per question; a calibrated
    router's) add ECE and the reliability bins; ``kinds`` (e.g. a phrasing) add the accuracy per kind."""
    if len(golds) != len(routes) or not golds:
        raise DataError(f"Routing report needs one chosen route per gold route; got {len(golds)} gold routes and "
                        f"{len(routes)} chosen ones.")
    correct = [g == r for g, r in zip(golds, routes)]
    general = [i for i, g in enumerate(golds) if g == GENERAL]
    domain = [i for i, g in enumerate(golds) if g != GENERAL]
    report = {
        "n": len(golds), "accuracy": sum(correct) / len(golds),
        "general_to_domain": _rate(sum(routes[i] != GENERAL for i in general), len(general)),
        "domain_to_general": _rate(sum(routes[i] == GENERAL for i in domain), len(domain)),
        "domain_to_domain": _rate(sum(routes[i] not in (GENERAL, golds[i]) for i in domain), len(domain)),
        "ece": None, "reliability": None,
    }
    if confidences is not None and golds and all(c is not None for c in confidences):
        report["ece"] = expected_calibration_error(confidences, correct, bins)
        report["reliability"] = reliability(confidences, correct, bins)
    if kinds is not None:
        by_kind: dict[str, list[bool]] = defaultdict(list)
        for kind, ok in zip(kinds, correct):
            by_kind[kind].append(ok)
        report["per_kind"] = {k: {"n": len(v), "accuracy": sum(v) / len(v)} for k, v in sorted(by_kind.items())}
    report["errors"] = [{"i": i, "gold": g, "route": r, "confidence": None if confidences is None else confidences[i]}
                        for i, (g, r) in enumerate(zip(golds, routes)) if g != r]
    return report
