"""``gag demo``: train (or reuse) the demo domain, install it, and compare base-only, expert-alone and GAG."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import typer
from rich.table import Table

from gag_core.paths import gag_home

from .console import console, handle_errors
from .progress import stage_progress

DEMO = "minerals"


def register(app: typer.Typer) -> None:
    @app.command("demo")
    @handle_errors
    def demo(
        retrain: bool = typer.Option(False, "--retrain", help="Train again even if a trained module is cached."),
        reevaluate: bool = typer.Option(False, "--reevaluate", help="Re-run the full evaluation (~3 min on 2 CPU cores)."),
        limit: int = typer.Option(0, "--limit", help="Evaluate only the first N test questions (0 = all)."),
    ) -> None:
        """Train the fictional 'minerals' demo domain on the embedded model (first run ~12 min on 2 CPU cores,
        then cached), install it, and print base-only vs expert-alone vs GAG accuracy on held-out phrasings."""
        from gag_core import install
        from gag_core.errors import DataError
        from gag_core.module import DomainModule
        from gag_core.training.config import load_config, resolved
        from gag_core.training.train_domain import TrainInputs, train_domain
        from gag_plugins.api import GENERAL_QUESTIONS
        from gag_plugins.manager import collect

        datasets = collect("register_datasets")
        if DEMO not in datasets:
            raise DataError("The demo data set is not installed; run `pip install -e modules/gag-domain-minerals` "
                            "(make demo does this).")
        data = Path(datasets[DEMO])
        build = gag_home() / "builds" / DEMO
        cfg = load_config(None, "embedded")
        stale = _built_with_other_config(build, resolved(cfg, grounded=cfg.readout.context_passages > 0).to_dict())
        if stale:
            console.print("[yellow]The cached demo module was trained with other settings (an older gag); "
                          "training it again.[/]")
        if retrain or stale or not (build / "gag-domain.json").exists():
            console.rule("[bold]Training the demo domain (embedded SmolLM2-135M, CPU)")
            inputs = TrainInputs(DEMO, data / "train.jsonl", data / "corpus.jsonl", data / "dev.jsonl",
                                 [data / "unaligned_train.jsonl"],
                                 "Fictional minerals (invented entities): colour, crystal system, discoverer, site, year.",
                                 general_questions=GENERAL_QUESTIONS)
            started = time.time()
            with stage_progress() as progress:
                train_domain(inputs, cfg, build, progress=progress)
            console.print(f"Trained in {time.time() - started:.0f} s → {build}")
        else:
            console.print(f"Reusing the trained demo module in {build} (pass --retrain to train again).")
        installed = install.install_folder(build, force=True)
        console.print(f"[green]Installed[/] domain [bold]{installed.name}[/]")
        module = DomainModule.open(installed.path)
        results_file = gag_home() / "demo" / f"results-{module.manifest.files['projector.safetensors'][:12]}-{limit}.json"
        if results_file.exists() and not reevaluate:
            results = json.loads(results_file.read_text())
            console.print(f"[dim]Evaluation cached in {results_file} (pass --reevaluate to recompute).[/]")
        else:
            results = evaluate_demo(module, data, limit)
            results_file.parent.mkdir(parents=True, exist_ok=True)
            results_file.write_text(json.dumps(results, indent=1))
        print_results(results)
        _live_example(module, data)


def _built_with_other_config(build: Path, config: dict) -> bool:
    from gag_core.training.config import load_config

    manifest = build / "gag-domain.json"
    if not manifest.exists():
        return False
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8")).get("training", {}).get("config")
        # settings added since the module was built are absent (or None) there: they count as their defaults
        filled = load_config(None, "embedded", recorded).to_dict() if isinstance(recorded, dict) else None
    except (OSError, ValueError):  # ConfigError included: a setting this gag does not know
        return True
    return filled != config


def _load_rows(path: Path, limit: int = 0) -> list[dict]:
    from gag_core.evaluation.harness import load_rows

    return load_rows(path, limit)


def evaluate_demo(module, data: Path, limit: int = 0) -> dict:
    """Accuracy (normalised gold value contained in the greedy answer) per method, per answer type."""
    from gag_core.evaluation.metrics import contains
    from gag_core.routes import GENERAL
    from gag_core.service import Query
    from gag_plugins.api import GAG

    from .demo_eval import timed_single

    with console.status("Loading base, expert and domain…"):
        gag = GAG.from_installed([DEMO], strict=True, max_new_tokens=32)
    sets = {"held-out phrasings": _load_rows(data / "test.jsonl", limit),
            "unaligned entities": _load_rows(data / "unaligned_test.jsonl", limit),
            "corpus-only entities": _load_rows(data / "corpus_only_test.jsonl", limit)}
    out: dict = {"sets": {}, "latency_s": {}}
    with stage_progress() as progress:
        for set_name, rows in sets.items():
            qs = [r["question"] for r in rows]
            base = [a.answer for b in _batches(qs) for a in gag.answer_batch([Query(q, GENERAL) for q in b])]
            progress(set_name, 1, 2, {"method": "base"})
            # the expert alone is the background it writes for GAG (one expert generation serves both)
            injected = [a for b in _batches(qs) for a in gag.answer_batch([Query(q, DEMO) for q in b])]
            progress(set_name, 2, 2, {"method": "gag"})
            answers = {"base": base, "expert": [a.background for a in injected], "gag": [a.answer for a in injected]}
            per = {}
            for method, texts in answers.items():
                hits = [bool(contains(t, r["value"])) for t, r in zip(texts, rows)]
                by_type: dict[str, list[bool]] = {}
                for h, r in zip(hits, rows):
                    by_type.setdefault(r["attribute"], []).append(h)
                per[method] = {"accuracy": sum(hits) / max(len(hits), 1),
                               "by_type": {k: sum(v) / len(v) for k, v in sorted(by_type.items())}}
            out["sets"][set_name] = {"n": len(rows), "methods": per,
                                     "examples": [{"question": r["question"], "gold": r["value"],
                                                   **{m: answers[m][j] for m in answers}} for j, r in enumerate(rows[:3])]}
        qs = [r["question"] for r in sets["held-out phrasings"][:LATENCY_QUESTIONS]]
        for method in ("base", "expert", "gag"):
            out["latency_s"][method] = statistics.median(timed_single(gag, DEMO, method, qs))
    return out


LATENCY_QUESTIONS = 4  # one question at a time, each method: the median of these
EVAL_BATCH = 32  # greedy generation on 2 CPU cores: 0.17 s per question at 32 vs 0.22 s at 16


def _batches(items, size: int = EVAL_BATCH):
    return [items[i:i + size] for i in range(0, len(items), size)]


def print_results(results: dict) -> None:
    for set_name, res in results["sets"].items():
        table = Table(title=f"demo domain 'minerals' — {set_name} (n={res['n']}), answer containment")
        table.add_column("method")
        table.add_column("accuracy", justify="right")
        types = list(next(iter(res["methods"].values()))["by_type"])
        for t in types:
            table.add_column(t, justify="right")
        if set_name == "held-out phrasings":
            table.add_column("median latency", justify="right")
        labels = {"base": "base only (frozen SmolLM2)", "expert": "expert alone (LoRA)", "gag": "GAG (base + injection)"}
        for method, m in res["methods"].items():
            row = [labels[method], f"{100 * m['accuracy']:.1f} %"] + [f"{100 * m['by_type'][t]:.0f}" for t in types]
            if set_name == "held-out phrasings":
                row.append(f"{results['latency_s'][method]:.2f} s")
            table.add_row(*row)
        console.print(table)


def _live_example(module, data: Path) -> None:
    row = _load_rows(data / "test.jsonl", 1)[0]
    console.print(f"\nTry it: [bold]gag ask --domain {DEMO} \"{row['question']}\"[/]   (gold: {row['value']})")
