"""Hybrid routing on top of PPR: one score per route, a calibrated confidence, abstention to ``general``.

- **score**: a route's max cosine to its prototypes, plus, for a domain with a lexical index,
  :func:`gag_core.lexical.hybrid_bonus` of the question's rare-term evidence. A route's score depends only on
  its own data (prototypes, index, exemplars) and on the shared background: adding a domain moves no other
  route's score.
- **confidence**: the calibrated P(the best-scoring route is right), from its lead over the runner-up
  (:mod:`gag_core.calibration`), fitted on the routes' held-out questions whenever the set of routes
  changes and cached under ``GAG_HOME/cache/router`` keyed by that set.
- **abstention**: a domain winner whose confidence is below the minimum (per domain, or global) goes to
  ``general``; without a calibration (old modules) the margin rule of PPR applies instead.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .calibration import CALIBRATION_FORMAT, DEFAULT_METHOD, Calibration, fit_calibration
from .errors import ConfigError, GagError
from .lexical import LEXICAL_WEIGHT, TOKENIZER, Background, Evidence, LexicalScorer, hybrid_bonus
from .routes import GENERAL, RouteDecision

DEFAULT_MIN_CONFIDENCE = 0.5  # abstain when the winning domain is more likely wrong than right
CALIBRATION_FOLDS = 5  # general questions are cross-fitted: scored by a general route built without them


@dataclass
class Policy:
    """When a domain winner falls back to general: ``min_confidence`` (global, or per domain) when the
    router is calibrated, else ``margin`` (the winner's lead must reach it)."""

    margin: float = 0.0
    min_confidence: float | None = None
    per_domain: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        for name, value in [("margin", self.margin), ("min_confidence", self.min_confidence),
                            *self.per_domain.items()]:
            if value is not None and not (0.0 <= value <= (math.inf if name == "margin" else 1.0)):
                raise ConfigError(f"{name} must be in [0, 1] (margin: >= 0); got {value}.")

    def threshold(self, route: str) -> float | None:
        return self.per_domain.get(route, self.min_confidence)


@dataclass
class Scored:
    """Every route's scores for a batch of questions."""

    routes: list[str]
    dense: torch.Tensor  # [N, R] max cosine
    hybrid: torch.Tensor  # [N, R] dense + lexical bonus
    evidence: list[dict[str, Evidence]]  # per question: domain -> its lexical evidence


def hybrid_scores(dense: torch.Tensor, questions: list[str], routes: list[str],
                  scorers: dict[str, LexicalScorer]) -> Scored:
    """Add each lexical route's bonus to its dense column (the question's rare terms are found once)."""
    evidence: list[dict[str, Evidence]] = [{} for _ in questions]
    columns = [(j, scorers[r]) for j, r in enumerate(routes) if r in scorers]
    if not columns:
        return Scored(routes, dense, dense, evidence)
    bonus = [[0.0] * len(routes) for _ in questions]
    background = columns[0][1].background
    for i, question in enumerate(questions):
        rare = background.rare_terms(question)
        for j, scorer in columns:
            found = scorer.evidence(question, rare if scorer.background is background else None)
            evidence[i][routes[j]] = found
            bonus[i][j] = hybrid_bonus(found.score, scorer.prior)
    return Scored(routes, dense, dense + torch.tensor(bonus, dtype=dense.dtype), evidence)


def _lead(row: list[float], order: list[int]) -> float:
    return row[order[0]] - row[order[1]] if len(order) > 1 else math.inf


def decide(scored: Scored, policy: Policy, calibration: Calibration | None) -> list[RouteDecision]:
    """The route of every question: argmax of the hybrid score, then abstention (see :class:`Policy`)."""
    names, decisions = scored.routes, []
    for i, row in enumerate(scored.hybrid.tolist()):
        order = sorted(range(len(names)), key=lambda j: (-row[j], j))  # ties: the earlier route wins
        route, lead = names[order[0]], _lead(row, order)
        conf = (calibration.confidence(lead, "general" if route == GENERAL else "domain")
                if calibration is not None else None)
        threshold = policy.threshold(route) if conf is not None else None
        fallback = False
        if route != GENERAL and GENERAL in names:
            fallback = conf < threshold if threshold is not None else (policy.margin > 0 and lead < policy.margin)
        if fallback:
            route, conf = GENERAL, None if conf is None else 1.0 - conf
        chosen = names.index(route)
        other = next((j for j in order if j != chosen), None)  # the runner-up: best of the rest
        decisions.append(RouteDecision(
            route, row[chosen], dict(zip(names, row)), fallback,
            None if other is None else names[other], None if other is None else row[other], confidence=conf,
            threshold=threshold, dense=dict(zip(names, scored.dense[i].tolist())),
            evidence={r: e.describe() for r, e in scored.evidence[i].items()}))
    return decisions


# --- calibration of a router -----------------------------------------------------------------------------

def _outcomes(scored: Scored, gold: str) -> tuple[list[float], list[str], list[bool]]:
    leads, kinds, correct = [], [], []
    for row in scored.hybrid.tolist():
        order = sorted(range(len(row)), key=lambda j: (-row[j], j))
        win = scored.routes[order[0]]
        leads.append(min(_lead(row, order), 10.0))
        kinds.append("general" if win == GENERAL else "domain")
        correct.append(win == gold)
    return leads, kinds, correct


def calibration_data(router, general_questions: list[str], folds: int = CALIBRATION_FOLDS
                     ) -> tuple[list[float], list[str], list[bool]]:
    """(lead, kind of winner, correct) for every held-out question: each domain's calibration questions
    through the router as it is, and the general questions fold by fold through a router whose general
    prototypes and background were built from the other folds."""
    from .router import build_prototypes

    out: tuple[list, list, list] = ([], [], [])
    for name, questions in router.calibration_questions.items():
        if name in router.prototypes and questions:
            for acc, part in zip(out, _outcomes(router.score(questions), name)):
                acc.extend(part)
    if GENERAL not in router.prototypes or len(general_questions) < 2 * folds:
        return out
    emb = router.encoder.encode(list(general_questions))
    g, k = router.routes.index(GENERAL), int(router.prototypes[GENERAL].shape[0])
    for f in range(folds):
        test = [i for i in range(len(general_questions)) if i % folds == f]
        train = [i for i in range(len(general_questions)) if i % folds != f]
        background = Background.build([general_questions[i] for i in train])
        scorers = {r: s.with_background(background) for r, s in router.lexical.items()}
        dense = router.score_embeddings(emb[test])
        dense[:, g] = (emb[test] @ build_prototypes(emb[train], k=k).T).max(dim=1).values
        scored = hybrid_scores(dense, [general_questions[i] for i in test], router.routes, scorers)
        for acc, part in zip(out, _outcomes(scored, GENERAL)):
            acc.extend(part)
    return out


def calibration_key(router, general_questions: list[str], method: str) -> str:
    """Names the set of routes and everything their scores depend on (cache file name)."""
    parts = [f"cal{CALIBRATION_FORMAT}", TOKENIZER, str(LEXICAL_WEIGHT), method, str(CALIBRATION_FOLDS),
             router.encoder.name, hashlib.sha256("\n".join(general_questions).encode()).hexdigest()]
    for name, protos in router.prototypes.items():
        scorer = router.lexical.get(name)
        parts += [name, hashlib.sha256(protos.numpy().tobytes()).hexdigest(),
                  scorer.index.digest() if scorer else "-",
                  hashlib.sha256(json.dumps(router.calibration_questions.get(name, [])).encode()).hexdigest()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def fit_router_calibration(router, general_questions: list[str], cache_folder: Path | None,
                           method: str = DEFAULT_METHOD) -> Calibration | None:
    """The router's calibration, read from the cache or fitted (and cached). None when no domain has
    calibration questions (modules built before calibration existed)."""
    if not any(router.calibration_questions.get(r) for r in router.prototypes if r != GENERAL):
        return None
    path = None if cache_folder is None else \
        Path(cache_folder) / f"calibration-{calibration_key(router, general_questions, method)}.json"
    if path is not None and path.is_file():
        try:
            return Calibration.from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))
        except (GagError, ValueError):  # a damaged cache file is refitted, never trusted
            pass
    calibration = fit_calibration(*calibration_data(router, general_questions), method=method)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".calibration-", suffix=".json", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(calibration.to_json())
        os.replace(tmp, path)
    return calibration


def module_router_files(name: str, encoder, prototypes: torch.Tensor, questions: list[str], corpus: list[str],
                        dev_questions: list[str], general_questions: Path | None) -> dict[str, str]:
    """A new module's optional routing files (train time): its lexical index over its training questions and
    corpus, and its calibration questions (dev), with the fit for this domain against general when the
    general questions are given (``route_calibration_json``)."""
    from .calibration import route_calibration_json
    from .lexical import LexicalIndex
    from .module import CALIBRATION, LEXICAL
    from .router import GENERAL_PROTOTYPES, PrototypeRouter, build_prototypes, read_questions_file

    index = LexicalIndex.build(questions, corpus)
    files = {LEXICAL: index.to_json()}
    dev_questions = list(dict.fromkeys(dev_questions))
    if not dev_questions:
        return files
    fit = None
    if general_questions is not None:
        general = read_questions_file(general_questions)
        router = PrototypeRouter(encoder, general_questions=general)
        k = getattr(encoder, "general_prototypes", GENERAL_PROTOTYPES)
        router.add_route(GENERAL, build_prototypes(encoder.encode(general), k=k))
        exemplars = list(dict.fromkeys(questions))[:256]
        router.add_route(name, prototypes, lexical=LexicalScorer(index, router.background, exemplars),
                         calibration_questions=dev_questions)
        fit = fit_router_calibration(router, general, None)
    files[CALIBRATION] = route_calibration_json(dev_questions, fit)
    return files
