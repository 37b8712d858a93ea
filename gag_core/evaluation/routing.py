"""Routing evaluation: accuracy, per-route precision/recall/F1 and a confusion matrix (JSON + PNG).

Works with anything that has ``route(question)`` returning an object with ``.route`` — a
:class:`gag_core.service.RoutedService` or a :class:`gag_core.router.PrototypeRouter` — so it can be tested
with a fake router.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError, DataError
from ..routes import GENERAL
from .metrics import summarize_latencies


def evaluate_router(router, rows: Sequence[dict], *, question_field: str = "question",
                    route_field: str = "domain") -> dict:
    """Routing accuracy, per-route precision/recall/F1 and the confusion matrix of ``router.route(q).route``.

    ``router`` is anything with ``route(question)`` returning an object with ``.route`` (a RoutedService or a
    PrototypeRouter). ``confusion[i][j]`` counts questions whose gold route is ``labels[i]`` and that were
    routed to ``labels[j]``. Precision of a route nothing was sent to, and recall of a route no question
    belongs to, are ``None`` (undefined), not 0.
    """
    if not callable(getattr(router, "route", None)):
        raise ConfigError(f"Routing evaluation needs a router with route(question), e.g. a RoutedService or a "
                          f"PrototypeRouter; got {type(router).__name__}.")
    golds, preds, seconds, confidences = [], [], [], []
    for i, row in enumerate(rows, 1):
        q, gold = row.get(question_field), row.get(route_field)
        if not isinstance(q, str) or not q.strip() or not isinstance(gold, str) or not gold:
            raise DataError(f"row {i}: expected non-empty string fields {question_field!r} and {route_field!r} "
                            f"(a domain name or {GENERAL!r}); found {sorted(row)}.")
        start = time.perf_counter()
        decision = router.route(q)
        seconds.append(time.perf_counter() - start)
        preds.append(decision.route)
        confidences.append(getattr(decision, "confidence", None))  # calibrated routers only
        golds.append(gold)
    if not golds:
        raise DataError("No rows to evaluate routing on; add rows with 'question' and 'domain'.")
    labels = sorted(set(golds) | set(preds), key=lambda r: (r != GENERAL, r))
    index = {r: i for i, r in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for g, p in zip(golds, preds):
        matrix[index[g]][index[p]] += 1
    per_route = []
    for r, i in index.items():
        support, predicted, hit = sum(matrix[i]), sum(row[i] for row in matrix), matrix[i][i]
        precision = hit / predicted if predicted else None
        recall = hit / support if support else None
        f1 = (2 * precision * recall / (precision + recall) if precision and recall else
              (0.0 if precision is not None and recall is not None else None))
        per_route.append({"route": r, "support": support, "predicted": predicted, "precision": precision,
                          "recall": recall, "f1": f1, "confusion": dict(zip(labels, matrix[i]))})
    accuracy = sum(g == p for g, p in zip(golds, preds)) / len(golds)
    return {"n": len(golds), "accuracy": accuracy, "labels": labels, "confusion": matrix, "per_route": per_route,
            "route_latency": summarize_latencies(seconds),
            "predictions": [{"question": r[question_field], "gold": g, "route": p, "confidence": c}
                            for r, g, p, c in zip(rows, golds, preds, confidences)]}


def write_confusion_png(path: str | Path, labels: Sequence[str], matrix: Sequence[Sequence[int]],
                        title: str = "routing confusion matrix") -> Path:
    """A heatmap of counts: rows = gold route, columns = chosen route (matplotlib Figure, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    size = max(4.0, 0.6 * len(labels) + 2.5)
    fig = Figure(figsize=(size, size * 0.85), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black")
    ax.set_xlabel("chosen route")
    ax.set_ylabel("gold route")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.savefig(path, dpi=120)
    return Path(path)
