"""``gag eval`` (base / expert / GAG / RAG side by side on one domain) and ``gag eval-router``.

Thin: the work is in :mod:`gag_core.evaluation.harness`, :mod:`gag_core.evaluation.routing` and
:mod:`gag_core.evaluation.router_report`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import typer

from gag_core.errors import ConfigError

from .ask import BaseOpt, ExpertOpt, ProfileOpt, RouterEncoderOpt, load_gag
from .console import console, handle_errors
from .progress import stage_progress
from .route import MarginOpt, MinConfidenceOpt

EVAL_COLUMNS = ["method", "n", "containment", "exact_match", "token_f1", "sts", "bertscore", "prompt_tokens",
                "latency_median_s", "latency_p95_s"]
ROUTER_COLUMNS = ["route", "support", "predicted", "precision", "recall", "f1"]
QUALITY_COLUMNS = ["router", "n", "accuracy", "general_to_domain", "domain_to_general", "domain_to_domain", "ece"]


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated integers, e.g. 1,2,3; got {text!r}.") from None
    if not values:
        raise ConfigError(f"{option} needs at least one value, e.g. 2.")
    return values


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def eval_plots(rows: list[dict]) -> dict:
    """Bar charts per method, plus containment against k for each retriever when several k were run."""
    plots = {"answer containment by method": ("method", "containment", {r["method"]: r["containment"] for r in rows})}
    tokens = {r["method"]: r["prompt_tokens"] for r in rows if r["prompt_tokens"] is not None}
    if tokens:
        plots["base-prompt tokens by method"] = ("method", "mean tokens", tokens)
    latency = {r["method"]: r["latency_median_s"] for r in rows if r["latency_median_s"] is not None}
    if latency:
        plots["median latency by method"] = ("method", "seconds (batch 1)", latency)
    by_k: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        if r["method"].startswith("rag-"):
            kind, k = r["method"].split("@")
            by_k.setdefault(kind, []).append((int(k), r["containment"]))
    if any(len(v) > 1 for v in by_k.values()):
        plots["RAG containment vs k"] = ("k (chunks)", "containment", by_k)
    return plots


@handle_errors
def eval_cmd(
    domain: str = typer.Option(..., "--domain", "-d", help="The domain to evaluate (its expert, projector, hook)."),
    data: Path = typer.Option(..., "--data", help="JSONL rows with 'question' and a gold answer."),
    methods: str = typer.Option("base,rag,expert,gag", "--methods",
                                help="Comma-separated: base, expert, expert-text, gag, gag-routed, rag, "
                                     "rag-bm25, rag-dense, rag-bm25@2, gag+rag (memory slots + the top-k chunks), "
                                     "gag+rag-bm25@1, ..."),
    corpus: Path = typer.Option(None, "--corpus", help="RAG corpus: .jsonl ('text' per line), .txt/.md, or a folder."),
    routed: bool = typer.Option(False, "--routed", help="Replace 'gag' by 'gag-routed' (the router picks the route)."),
    out: Path = typer.Option(None, "--out", help="Output folder (default: gag-eval/DOMAIN)."),
    k: str = typer.Option("2", "--k", help="Top-k values for rag and gag+rag, e.g. 1,2,3."),
    retriever: str = typer.Option("bm25,dense", "--retriever", help="Retrievers for rag: bm25, dense."),
    chunk_size: int = typer.Option(480, "--chunk-size", help="RAG chunk size in base-tokenizer tokens."),
    chunk_overlap: int = typer.Option(48, "--chunk-overlap", help="Tokens shared by neighbouring chunks."),
    bertscore_model: str = typer.Option(None, "--bertscore-model", help="Encoder folder/id for BERTScore (off if absent)."),
    limit: int = typer.Option(0, "--limit", help="Evaluate only the first N rows (0 = all)."),
    sample: int = typer.Option(0, "--sample", help="Evaluate a random sample of N rows (seed 0; 0 = all), after "
                                                   "--limit: spreads a small budget over every entity and type."),
    answer_field: str = typer.Option("answer", "--answer-field", help="Reference answer field (STS, BERTScore)."),
    gold_field: str = typer.Option(None, "--gold-field", help="Short gold field (default: 'value' if present, "
                                                               "else --answer-field)."),
    latency_sample: int = typer.Option(8, "--latency-sample", help="First N questions timed one at a time."),
    batch_size: int = typer.Option(16, "--batch-size", help="Questions generated together."),
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", help="Answer length budget in tokens."),
    profile: str = ProfileOpt, base: str = BaseOpt, expert: str = ExpertOpt,
    router_encoder: str = RouterEncoderOpt, margin: float = MarginOpt,
) -> None:
    """Compare base, expert, GAG and RAG on a domain's QA set: a table plus results.json/.md and plots."""
    from gag_core.evaluation.harness import EvalConfig, evaluate_methods, expand_methods, load_rows

    config = EvalConfig(ks=_int_list(k, "--k"), retrievers=_names(retriever), chunk_size=chunk_size,
                        chunk_overlap=chunk_overlap, gold_field=gold_field, answer_field=answer_field,
                        bertscore_model=bertscore_model, batch_size=batch_size, latency_sample=latency_sample,
                        max_new_tokens=max_new_tokens)
    planned = expand_methods(_names(methods), config.ks, config.retrievers, routed=routed)
    if any("rag-" in m for m in planned) and corpus is None:
        raise ConfigError("The rag methods need --corpus FILE (the documents to retrieve from); "
                          "pass it or leave rag out of --methods.")
    rows = load_rows(data, limit)  # refuse bad data before loading any model
    if sample and sample < len(rows):
        rows = random.Random(0).sample(rows, sample)
    gag = load_gag(profile, base, expert, None if "gag-routed" in planned else [domain], max_new_tokens,
                   router_encoder, margin)
    with stage_progress() as progress:
        results = evaluate_methods(gag, rows, planned, domain=domain, corpus=corpus, config=config,
                                   progress=progress)
    title = f"gag eval — domain {domain}, {len(rows)} questions ({data.name})"
    _report(results, out or Path("gag-eval") / domain, title, "gag-routed" in planned, bool(bertscore_model))


def _report(results: list[dict], out: Path, title: str, routed: bool, bertscore: bool) -> None:
    """The table on the console; results.json/.md, plots and predictions.jsonl in ``out``."""
    from gag_core.evaluation.report import write_report

    from .tables import render_rich_table

    table_rows = [{k: v for k, v in r.items() if k != "predictions"} for r in results]
    columns = EVAL_COLUMNS + (["routed_to_domain"] if routed else [])
    if not bertscore:
        columns.remove("bertscore")
    written = write_report(out, title, table_rows, columns, eval_plots(table_rows))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as f:
        for r in results:
            for p in r["predictions"]:
                f.write(json.dumps({"method": r["method"], **p}, ensure_ascii=False) + "\n")
    console.print(render_rich_table(table_rows, columns, title))
    console.print(f"[green]Wrote[/] {', '.join(sorted(p.name for p in written.values()))} and "
                  f"predictions.jsonl to {out}")


def load_routing(profile: str, expert: str | None, router_encoder: str | None, margin: float | None,
                 min_confidence: list[str]):
    """The router over every installed domain, without a language model (like ``gag route``)."""
    from gag_plugins.api import load_router

    from .console import err_console
    from .route import parse_min_confidence

    with console.status("Loading the router…"):
        router, unavailable = load_router(profile=profile, expert=expert, router_encoder=router_encoder,
                                          margin=margin, **parse_min_confidence(min_confidence))
    for name, reason in unavailable.items():
        err_console.print(f"[yellow]Skipping domain {name}:[/] {reason}")
    return router


@handle_errors
def eval_router_cmd(
    data: Path = typer.Option(..., "--data", help="JSONL rows with 'question' and 'domain' (a domain or general)."),
    out: Path = typer.Option(Path("gag-eval") / "router", "--out", help="Output folder."),
    limit: int = typer.Option(0, "--limit", help="Evaluate only the first N rows (0 = all)."),
    route_field: str = typer.Option("domain", "--route-field", help="Field of the gold route."),
    kind_field: str = typer.Option("kind", "--kind-field", help="Optional field to break accuracy down by."),
    compare_dense: bool = typer.Option(False, "--compare-dense", help="Also evaluate without lexical evidence."),
    profile: str = ProfileOpt, expert: str = ExpertOpt, router_encoder: str = RouterEncoderOpt,
    margin: float = MarginOpt, min_confidence: list[str] = MinConfidenceOpt,
) -> None:
    """Routing over every installed domain: accuracy, general -> domain leakage, domain -> general misses,
    calibration error (ECE) with a reliability plot, per-route precision/recall and a confusion matrix."""
    from gag_core.evaluation.harness import load_rows
    from gag_core.evaluation.report import markdown_table, write_report
    from gag_core.evaluation.routing import evaluate_router, write_confusion_png

    from .tables import render_rich_table

    rows = load_rows(data, limit)
    router = load_routing(profile, expert, router_encoder, margin, min_confidence)
    with console.status("Routing…"):
        result = evaluate_router(router, rows, route_field=route_field)
    quality = {"installed": routing_quality(result, rows, kind_field)}
    if compare_dense and callable(getattr(router, "remove_lexical", None)):
        router.remove_lexical()
        quality["dense only"] = routing_quality(evaluate_router(router, rows, route_field=route_field), rows,
                                                kind_field)
    result["quality"] = quality
    title = f"gag eval-router — {result['n']} questions ({data.name}), accuracy {result['accuracy']:.3f}"
    plots = {"routing recall by route": ("gold route", "recall",
                                         {r["route"]: r["recall"] for r in result["per_route"]
                                          if r["recall"] is not None})}
    written = write_report(out, title, result["per_route"], ROUTER_COLUMNS, plots)
    write_confusion_png(out / "confusion_matrix.png", result["labels"], result["confusion"])
    (out / "router.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    labels = result["labels"]
    matrix_rows = [{"gold \\ routed": g, **dict(zip(labels, row))} for g, row in zip(labels, result["confusion"])]
    with open(written["results.md"], "a", encoding="utf-8") as f:
        f.write(f"\nAccuracy: **{result['accuracy']:.3f}** over {result['n']} questions.\n\n## Confusion matrix\n\n"
                + markdown_table(matrix_rows, ["gold \\ routed", *labels]) + "\n\n![confusion matrix]"
                "(confusion_matrix.png)\n" + quality_markdown(quality, out))
    console.print(render_rich_table(result["per_route"], ROUTER_COLUMNS, title))
    print_quality(quality)
    console.print(f"[green]Wrote[/] results.json, results.md, router.json, confusion_matrix.png to {out}")


def routing_quality(result: dict, rows: list[dict], kind_field: str) -> dict:
    """Leakage, misses and calibration of an ``evaluate_router`` result (see ``routing_report``)."""
    from gag_core.evaluation.router_report import routing_report

    predictions = result["predictions"]
    kinds = [str(r.get(kind_field, "")) for r in rows[:len(predictions)]]
    confidences = [p.get("confidence") for p in predictions]
    return routing_report([p["gold"] for p in predictions], [p["route"] for p in predictions],
                          confidences if all(c is not None for c in confidences) else None,
                          kinds if any(kinds) else None)


def print_quality(quality: dict) -> None:
    from .tables import render_rich_table

    rows = [{"router": name, **q} for name, q in quality.items()]
    console.print(render_rich_table(rows, QUALITY_COLUMNS, "Routing quality (ECE: calibrated routers only)"))
    first = next(iter(quality.values()))
    if first.get("per_kind"):
        table = [{"kind": k, "n": v["n"], **{name: q["per_kind"][k]["accuracy"] for name, q in quality.items()}}
                 for k, v in first["per_kind"].items()]
        console.print(render_rich_table(table, ["kind", "n", *quality], "Accuracy per kind"))


def quality_markdown(quality: dict, out: Path) -> str:
    """The quality table for results.md, and the reliability plot when the router is calibrated."""
    from gag_core.calibration import write_reliability_png
    from gag_core.evaluation.report import markdown_table

    text = "\n## Leakage, misses and calibration\n\n" + markdown_table(
        [{"router": name, **q} for name, q in quality.items()], QUALITY_COLUMNS) + "\n"
    curves = {name: q["reliability"] for name, q in quality.items() if q["reliability"]}
    if curves:
        write_reliability_png(out / "reliability.png", curves)
        text += "\n![reliability](reliability.png)\n"
    return text


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("eval-router")(eval_router_cmd)
