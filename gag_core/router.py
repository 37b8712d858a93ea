"""Prototype Plug-and-play Routing (PPR): training-free routing between ``general`` and every domain.

A frozen encoder embeds questions (L2-normalised). Each route owns a few prototypes (k-means centroids of
its training questions); a route's score is the highest cosine between the query and its prototypes, and
the best-scoring route wins. ``general`` is an ordinary competitor whose prototypes come from general
questions. Adding a domain only adds its prototypes: the scores of the other routes do not move, so a new
domain can take over the queries it wins and no others (with ``margin=0``; see :class:`PrototypeRouter`).

A domain with a lexical index (``router/lexical.json``) gets a hybrid score, and a router whose domains ship
calibration questions reports a calibrated confidence and abstains below a minimum (:mod:`gag_core.hybrid`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from .errors import ConfigError, DataError
from .calibration import Calibration
from .generation import pad_id
from .hybrid import DEFAULT_MIN_CONFIDENCE, Policy, Scored, decide, fit_router_calibration, hybrid_scores
from .jsonl import iter_objects
from .lexical import Background, LexicalScorer
from .models import adapters_off
from .paths import cache_dir
from .routes import GENERAL, RouteDecision

DEFAULT_PROTOTYPES = 32  # per domain (the paper's ~32)
GENERAL_PROTOTYPES = 64  # the general route covers far more ground than one domain (docs/routing.md)
SENTENCE_ENCODER_NAME = "sentence-transformers:all-MiniLM-L6-v2"


# --- encoders ----------------------------------------------------------------------------------------

@runtime_checkable
class Encoder(Protocol):
    """A frozen question encoder: ``encode(texts)`` -> [N, dim], every row of unit L2 norm."""

    name: str
    dim: int
    # optional: ``default_margin`` (float), the margin measured to suit this encoder's cosine scale, and
    # ``general_prototypes`` (int), how many prototypes the general route gets (default GENERAL_PROTOTYPES)

    def encode(self, texts: list[str]) -> torch.Tensor: ...


class ExpertMeanEncoder:
    """The paper's encoder: the expert backbone (no adapter active), last hidden state mean-pooled over the
    question's tokens (attention-masked), L2-normalised. The raw question is encoded, without a chat template."""

    default_margin = 0.0  # its cosines crowd near 1 (anisotropy); a margin that suits MiniLM would swamp them
    general_prototypes = 512  # every general question is its own prototype: centroids blur (docs/routing.md)

    def __init__(self, model, tokenizer, expert_id: str = "expert", batch_size: int = 32, *,
                 current_model: Callable[[], Any] | None = None):
        """``current_model``, when given, returns the backbone as it is now: a domain added later may wrap it
        as a PeftModel, whose adapters must then be switched off while encoding. ``model`` is its first value."""
        self._model = model
        self._current_model = current_model
        self.tokenizer = tokenizer
        self.name = f"expert-mean:{expert_id}"
        self.dim = int(model.get_input_embeddings().weight.shape[1])
        self.batch_size = batch_size

    @property
    def model(self):
        return self._current_model() if self._current_model is not None else self._model

    @staticmethod
    def _last_hidden(model, ids, mask) -> torch.Tensor:
        """The final (normed) hidden states; the decoder body alone when it can be reached (no LM head)."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        get_decoder = getattr(base, "get_decoder", None)
        body = get_decoder() if callable(get_decoder) else None
        if body is not None and body is not base:
            return body(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        return model(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False).hidden_states[-1]

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        model = self.model
        device = model.get_input_embeddings().weight.device
        pad = pad_id(self.tokenizer)
        out = []
        with adapters_off(model):
            for start in range(0, len(texts), self.batch_size):
                seqs = [self.tokenizer(t, add_special_tokens=False)["input_ids"] or [pad]
                        for t in texts[start:start + self.batch_size]]
                width = max(len(s) for s in seqs)  # right padding: positions stay 0..n-1 for every row
                ids = torch.full((len(seqs), width), pad, dtype=torch.long)
                mask = torch.zeros((len(seqs), width), dtype=torch.long)
                for i, s in enumerate(seqs):
                    ids[i, :len(s)] = torch.tensor(s)
                    mask[i, :len(s)] = 1
                ids, mask = ids.to(device), mask.to(device)
                states = self._last_hidden(model, ids, mask).float()
                m = mask.unsqueeze(-1).to(states.dtype)
                out.append(((states * m).sum(1) / m.sum(1)).cpu())
        if not out:
            return torch.zeros(0, self.dim)
        return F.normalize(torch.cat(out), dim=-1)


class SentenceEncoder:
    """A sentence-transformers model (default: the embedded all-MiniLM-L6-v2, offline on CPU)."""

    default_margin = 0.05  # measured on the demo data, docs/routing.md

    def __init__(self, path: str | Path | None = None, batch_size: int = 64):
        from .models import embedded_sentence_encoder_path, load_sentence_encoder

        self.model = load_sentence_encoder(path if path is not None else embedded_sentence_encoder_path())
        self.name = SENTENCE_ENCODER_NAME if path is None else f"sentence-transformers:{Path(str(path)).name}"
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.batch_size = batch_size

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, self.dim)
        emb = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_tensor=True,
                                normalize_embeddings=True, show_progress_bar=False)
        return F.normalize(emb.float().cpu(), dim=-1)


# --- prototypes --------------------------------------------------------------------------------------

def build_prototypes(embeddings: torch.Tensor, k: int = DEFAULT_PROTOTYPES, seed: int = 0) -> torch.Tensor:
    """k-means centroids of L2-normalised ``embeddings`` [N, dim] -> [k', dim], L2-normalised.

    k' = min(k, number of distinct rows): a domain with few questions gets fewer prototypes (one question
    gives one prototype, itself). Deterministic for a given ``seed``.
    """
    from sklearn.cluster import KMeans

    if embeddings.dim() != 2 or embeddings.shape[0] == 0:
        raise DataError(f"Prototypes need a non-empty [N, dim] embedding matrix; got shape {tuple(embeddings.shape)}. "
                        "Give the domain at least one training question.")
    if k < 1:
        raise ConfigError(f"The number of prototypes must be >= 1; got k={k}.")
    x = F.normalize(embeddings.detach().float().cpu(), dim=-1)
    n_distinct = int(torch.unique(x, dim=0).shape[0])
    k = min(k, n_distinct)
    if k == n_distinct:
        centroids = torch.unique(x, dim=0)
    else:
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x.numpy())
        centroids = torch.from_numpy(km.cluster_centers_).float()
    return F.normalize(centroids, dim=-1)


def read_questions_file(path: Path) -> list[str]:
    """The ``question`` field of every line of a JSONL file."""
    out = []
    for lineno, row in iter_objects(path):
        if not isinstance(row.get("question"), str):
            raise DataError(f"{path}:{lineno}: expected a JSON object with a string 'question' field.")
        out.append(row["question"])
    return out


def cached_prototypes(encoder: Encoder, questions_file: Path, cache_folder: Path,
                      k: int = DEFAULT_PROTOTYPES, seed: int = 0, label: str | None = None) -> torch.Tensor:
    """Prototypes of a JSONL file of questions, cached as safetensors under ``cache_folder``.

    The cache key is the encoder's name, the file's sha256, k and seed: editing the file or changing the
    encoder rebuilds them.
    """
    from safetensors.torch import load_file, save_file

    digest = hashlib.sha256(Path(questions_file).read_bytes()).hexdigest()
    key = hashlib.sha256(f"{encoder.name}\n{digest}\n{k}\n{seed}".encode()).hexdigest()[:16]
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder.name)[:60]
    path = Path(cache_folder) / f"{label or Path(questions_file).stem}-{slug}-{key}.safetensors"
    if path.is_file():
        try:
            protos = load_file(str(path))["prototypes"]
            if protos.dim() == 2 and protos.shape[1] == encoder.dim:
                return protos
        except Exception:  # noqa: BLE001 - a damaged cache file is rebuilt, never trusted
            pass
    protos = build_prototypes(encoder.encode(read_questions_file(questions_file)), k=k, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".proto-", suffix=".safetensors", dir=path.parent)
    os.close(fd)
    try:
        save_file({"prototypes": protos.contiguous()}, tmp,
                  metadata={"encoder": encoder.name, "questions_sha256": digest, "k": str(k), "seed": str(seed)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return protos


def module_prototypes(module, encoder: Encoder, cache_folder: Path, k: int = DEFAULT_PROTOTYPES) -> torch.Tensor:
    """A domain module's prototypes for ``encoder``: the module's own when its manifest names this encoder,
    otherwise rebuilt from its exemplar questions (``DomainModule.exemplars()``) and cached."""
    from .module import EXEMPLARS

    declared = module.manifest.router
    if declared.get("encoder") == encoder.name and int(declared.get("dim", -1)) == encoder.dim:
        return module.load_prototypes()
    return cached_prototypes(encoder, module.path / EXEMPLARS, cache_folder, k=k, label=f"domain-{module.name}")


# --- the router --------------------------------------------------------------------------------------

class PrototypeRouter:
    """Route a query to ``general`` or a domain: argmax over routes of max cosine to the route's prototypes
    (plus the lexical bonus of a hybrid route, :mod:`gag_core.hybrid`).

    Abstention: with a calibration and ``min_confidence``, a domain winner below it goes to ``general``;
    otherwise ``margin`` (default 0, off): when the winner is a domain and leads the runner-up by less than
    ``margin``, the query goes to ``general`` instead. With ``margin=0`` a newly added domain changes only
    the routes of queries it wins; with a margin it can also send a query it nearly wins back to general
    (never to itself).
    """

    def __init__(self, encoder: Encoder, margin: float = 0.0, *, min_confidence: float | None = None,
                 per_domain: Mapping[str, float] | None = None, general_questions: list[str] | None = None,
                 cache_folder: Path | None = None):
        """``min_confidence`` (and its ``per_domain`` overrides) replaces the margin once the router is
        calibrated; ``general_questions`` are what the calibration's general slice is cut from."""
        if margin < 0:
            raise ConfigError(f"The routing margin must be >= 0; got {margin}.")
        self.encoder = encoder
        self.margin = float(margin)
        self.policy = Policy(self.margin, min_confidence, dict(per_domain or {}))
        self.prototypes: dict[str, torch.Tensor] = {}  # route -> [n, dim], unit rows; insertion order = tie order
        self.lexical: dict[str, LexicalScorer] = {}  # route -> its lexical scorer (hybrid routes only)
        self.calibration_questions: dict[str, list[str]] = {}  # route -> held-out questions for calibration
        self.general_questions = list(general_questions or [])
        self.background = Background.build(self.general_questions) if general_questions is not None else None
        self.cache_folder = cache_folder
        self._fused: tuple[torch.Tensor, torch.Tensor] | None = None  # all prototypes + the route index of each
        self._calibration: tuple[Calibration | None] | None = None  # fitted on first use after a change

    @property
    def routes(self) -> list[str]:
        return list(self.prototypes)

    def add_route(self, name: str, prototypes: torch.Tensor, *, lexical: LexicalScorer | None = None,
                  calibration_questions: list[str] | None = None) -> None:
        """A route; ``lexical`` makes its score hybrid, ``calibration_questions`` (held out from its
        prototypes) join the calibration, which is refitted on first use."""
        if prototypes.dim() != 2 or prototypes.shape[0] == 0 or prototypes.shape[1] != self.encoder.dim:
            raise ConfigError(f"Prototypes of route {name!r} must be [n >= 1, {self.encoder.dim}] for encoder "
                              f"{self.encoder.name!r}; got {tuple(prototypes.shape)}. Rebuild them with this encoder.")
        self.remove_route(name)
        self.prototypes[name] = F.normalize(prototypes.detach().float().cpu(), dim=-1)
        if lexical is not None:
            self.lexical[name] = lexical
        if calibration_questions:
            self.calibration_questions[name] = list(calibration_questions)

    def add_module(self, module, k: int = DEFAULT_PROTOTYPES) -> None:
        """A domain module's route: its prototypes (rebuilt for another encoder), its lexical index read
        against this router's background, and its calibration questions (older modules: dense only)."""
        index = module.load_lexical() if self.background is not None else None
        lexical = None if index is None else LexicalScorer(index, self.background, module.exemplars())
        self.add_route(module.name, module_prototypes(module, self.encoder, prototype_cache(), k), lexical=lexical,
                       calibration_questions=module.calibration_questions())

    def add_questions(self, name: str, questions: list[str], k: int = DEFAULT_PROTOTYPES, seed: int = 0) -> None:
        """Add a route from example questions (encoded and clustered here)."""
        self.add_route(name, build_prototypes(self.encoder.encode(list(questions)), k=k, seed=seed))

    def remove_route(self, name: str) -> None:
        for table in (self.prototypes, self.lexical, self.calibration_questions):
            table.pop(name, None)
        self._fused = self._calibration = None

    def remove_lexical(self) -> None:
        """Score every route by its cosine alone (dense-only PPR); the calibration is refitted for that."""
        self.lexical.clear()
        self._calibration = None

    @property
    def calibration(self) -> Calibration | None:
        """P(correct) of a decision, fitted (or read from the cache) for the current set of routes."""
        if self._calibration is None:
            self._calibration = (fit_router_calibration(self, self.general_questions, self.cache_folder),)
        return self._calibration[0]

    def score_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        """[N, dim] unit rows -> [N, routes] max cosine per route (one matmul over every prototype)."""
        if not self.prototypes:
            raise ConfigError("The router has no routes; add the general route and the domains first.")
        if self._fused is None:
            owner = torch.cat([torch.full((len(p),), i) for i, p in enumerate(self.prototypes.values())])
            self._fused = torch.cat(list(self.prototypes.values())), owner
        matrix, owner = self._fused
        sims = embeddings.float().cpu() @ matrix.T  # [N, P]
        out = sims.new_full((sims.shape[0], len(self.prototypes)), float("-inf"))
        return out.scatter_reduce(1, owner.expand_as(sims), sims, reduce="amax")

    def score(self, questions: list[str]) -> Scored:
        """Dense and hybrid scores of every route for ``questions`` (one encoder pass)."""
        questions = list(questions)
        return hybrid_scores(self.score_embeddings(self.encoder.encode(questions)), questions, self.routes,
                             self.lexical)

    def decide(self, scores: torch.Tensor | Scored) -> list[RouteDecision]:
        """Decisions from a score matrix [N, routes] (or :meth:`score`'s result): argmax, then abstention."""
        if not isinstance(scores, Scored):
            scores = Scored(self.routes, scores, scores, [{} for _ in range(scores.shape[0])])
        return decide(scores, self.policy, self.calibration)

    def route_batch(self, questions: list[str]) -> list[RouteDecision]:
        if not questions:
            return []
        return self.decide(self.score(questions))

    def route(self, question: str) -> RouteDecision:
        return self.route_batch([question])[0]


# --- building a router ---------------------------------------------------------------------------------

def prototype_cache() -> Path:
    """Where prototypes built from question files are cached (safetensors, keyed by encoder and file)."""
    return cache_dir() / "router"


def make_encoder(encoders: Mapping[str, Callable[..., Encoder]], name: str,
                 expert_backbone: Callable[[], tuple] | None = None) -> Encoder:
    """Build encoder ``name`` from a registry {name: factory(**context)}. The context holds ``expert_backbone``,
    a callable returning (model, tokenizer, expert id) of the expert backbone as it is now (loaded on demand)."""
    if name not in encoders:
        raise ConfigError(f"Unknown router encoder {name!r}; registered: {sorted(encoders)}. "
                          "Pass --router-encoder with one of them, or install the plugin that provides it.")
    return encoders[name](expert_backbone=expert_backbone)


def build_router(modules: list, encoder: Encoder, margin: float | None, general_questions: Path, *,
                 min_confidence: float | None = None, per_domain: Mapping[str, float] | None = None) -> PrototypeRouter:
    """General (prototypes of ``general_questions``, cached) + one route per domain module, in order.

    Abstention: ``min_confidence`` when given; else an explicit ``margin``; else, when a module ships
    calibration questions, DEFAULT_MIN_CONFIDENCE; else the encoder's measured margin."""
    if min_confidence is None and margin is None and any(m.calibration_questions() for m in modules):
        min_confidence = DEFAULT_MIN_CONFIDENCE
    if margin is None:
        margin = 0.0 if min_confidence is not None else getattr(encoder, "default_margin", 0.0)
    router = PrototypeRouter(encoder, margin, min_confidence=min_confidence, per_domain=per_domain,
                             general_questions=read_questions_file(general_questions), cache_folder=prototype_cache())
    k = getattr(encoder, "general_prototypes", GENERAL_PROTOTYPES)
    router.add_route(GENERAL, cached_prototypes(encoder, general_questions, prototype_cache(), k=k))
    for module in modules:
        router.add_module(module)
    return router
