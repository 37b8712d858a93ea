"""Helpers of ``gag demo``'s evaluation: single-query latency (the expert-alone answers live in the harness)."""

from __future__ import annotations

import time

from gag_core.evaluation.harness import expert_alone_answers
from gag_core.routes import GENERAL


def timed_single(gag, domain: str, method: str, questions: list[str]) -> list[float]:
    """Wall time of answering each question alone (batch 1) through the service ``gag``, as a user would see it."""
    times = []
    for q in questions:
        start = time.perf_counter()
        if method == "expert":
            expert_alone_answers(gag.pipeline, domain, [q])
        else:
            gag.answer(q, GENERAL if method == "base" else domain)
        times.append(time.perf_counter() - start)
    return times
