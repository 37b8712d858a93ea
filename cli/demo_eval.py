"""Helpers of ``gag demo``'s evaluation: single-query latency (the expert-alone answers live in the harness)."""

from __future__ import annotations

import time

from gag_core.evaluation.harness import expert_alone_answers


def timed_single(pipe, domain: str, method: str, questions: list[str]) -> list[float]:
    """Wall time of answering each question alone (batch 1), as a user would see it."""
    times = []
    for q in questions:
        start = time.perf_counter()
        if method == "base":
            pipe.answer(q, "general")
        elif method == "gag":
            pipe.answer(q, domain)
        else:
            expert_alone_answers(pipe, domain, [q])
        times.append(time.perf_counter() - start)
    return times
