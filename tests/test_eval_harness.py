"""The evaluation harness (`gag eval`) and routing evaluation (`gag eval-router`) on tiny models and fakes."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from gag_cli.main import app
from gag_core.errors import ConfigError, DataError
from gag_core.evaluation.harness import EvalConfig, evaluate_methods, expand_methods, prepare_items
from gag_core.evaluation.routing import evaluate_router

runner = CliRunner()
ROWS = [
    {"question": "What colour is Veltrasite?", "answer": "Veltrasite is teal.", "value": "teal"},
    {"question": "Which crystal system does Veltrasite have?", "answer": "It is hexagonal.", "value": "hexagonal"},
    {"question": "Who discovered Veltrasite?", "answer": "Veltrasite was discovered by Ann Fox.", "value": "Ann Fox"},
    {"question": "In which year was Veltrasite discovered?", "answer": "In 1847.", "value": "1847"},
    {"question": "What colour is Quillite?", "answer": "Quillite is cubic and brown.", "value": "brown"},
    {"question": "Where was Quillite found?", "answer": "Near the lazy dog.", "value": "lazy dog"},
]
CORPUS = [
    {"id": "velt", "text": "Veltrasite is a teal mineral of the hexagonal crystal system, discovered by Ann Fox "
                           "in the year 1847 near the quick brown fox rocks."},
    {"id": "quill", "text": "Quillite is a brown mineral of the cubic crystal system, found near the lazy dog."},
    {"id": "other", "text": "The quick brown fox jumps over the lazy dog. 0123456789 mineral crystal system."},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def installed(make_module):
    from gag_core import install

    install.install_folder(make_module("tinydom"))
    return "tinydom"


# --- method names and gold fields ---------------------------------------------------------------------

def test_expand_methods():
    assert expand_methods(["base", "rag", "gag"], ks=[1, 3], retrievers=["bm25", "dense"]) == [
        "base", "rag-bm25@1", "rag-bm25@3", "rag-dense@1", "rag-dense@3", "gag"]
    assert expand_methods(["rag-dense", "rag-dense@1", "gag"], ks=[1, 2], routed=True) == [
        "rag-dense@1", "rag-dense@2", "gag-routed"]
    with pytest.raises(ConfigError, match="Unknown method 'colbert'"):
        expand_methods(["colbert"])
    with pytest.raises(ConfigError, match="Unknown retriever"):
        EvalConfig(retrievers=["colbert"])


def test_gold_is_value_else_answer_and_reference_is_answer():
    items = prepare_items([{"question": "q1", "answer": "long one", "value": "v"}, {"question": "q2", "answer": "a2"}],
                          EvalConfig())
    assert [(i.gold, i.reference) for i in items] == [("v", "long one"), ("a2", "a2")]
    items = prepare_items([{"question": "q", "answer": "a", "alias": ["x", "y"]}], EvalConfig(gold_field="alias"))
    assert items[0].gold == ["x", "y"]
    with pytest.raises(DataError, match="row 1 has no gold field 'value2'"):
        prepare_items([{"question": "q", "answer": "a"}], EvalConfig(gold_field="value2"))
    with pytest.raises(DataError, match="non-empty string"):
        prepare_items([{"question": "q", "value": ""}], EvalConfig())


def test_a_bad_plan_is_refused_before_any_work(tmp_path):
    from gag_core.errors import IncompatibleModuleError
    from gag_core.service import RoutedService

    loaded = SimpleNamespace(module=object())
    pipe = SimpleNamespace(domains={"d": loaded}, domain=lambda name: loaded, tokenizer=None)
    service = RoutedService(pipe, readouts={}, projectors={}, encoders={}, general_questions=tmp_path / "g.jsonl")
    service.unavailable["old"] = "aligned to another base model"
    with pytest.raises(IncompatibleModuleError, match="another base model"):
        evaluate_methods(service, ROWS, ["gag-routed"], domain="old")
    with pytest.raises(ConfigError, match="need a corpus"):
        evaluate_methods(service, ROWS, ["rag-bm25@1"], domain="d")


# --- gag eval through the CLI ---------------------------------------------------------------------------

def test_eval_cli_smoke(tmp_path, installed, tiny_paths):
    data = write_jsonl(tmp_path / "test.jsonl", ROWS)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", CORPUS)
    out = tmp_path / "out"
    result = runner.invoke(app, ["eval", "--domain", installed, "--data", str(data), "--corpus", str(corpus),
                                 "--methods", "base,expert,gag,rag-bm25@1,rag-dense@1", "--out", str(out),
                                 "--base", tiny_paths["base"], "--expert", tiny_paths["expert"],
                                 "--max-new-tokens", "4", "--latency-sample", "1"])
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads((out / "results.json").read_text())
    rows = {r["method"]: r for r in report["rows"]}
    assert list(rows) == ["base", "expert", "gag", "rag-bm25@1", "rag-dense@1"]
    for r in rows.values():
        assert r["n"] == 6 and r["latency_n"] == 1 and r["latency_median_s"] > 0
        for key in ("containment", "exact_match", "token_f1", "sts"):
            assert 0.0 <= r[key] <= 1.0, (r["method"], key, r[key])
        assert r["bertscore"] is None  # only with --bertscore-model
    assert rows["expert"]["prompt_tokens"] is None  # the expert alone never prompts the base
    assert rows["rag-bm25@1"]["prompt_tokens"] > rows["gag"]["prompt_tokens"] > rows["base"]["prompt_tokens"]
    assert rows["rag-dense@1"]["prompt_tokens"] > rows["gag"]["prompt_tokens"]
    assert (out / "results.md").read_text().count("| rag-") == 2
    assert {"answer_containment_by_method.png", "base_prompt_tokens_by_method.png",
            "median_latency_by_method.png"} <= {p.name for p in out.iterdir()}
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 30 and {"method", "question", "gold", "prediction", "containment"} <= set(preds[0])
    assert "gag eval" in result.output and "predictions.jsonl" in result.output


def test_eval_cli_refuses_rag_without_corpus(tmp_path):
    data = write_jsonl(tmp_path / "test.jsonl", ROWS)  # refused before any model loads
    result = runner.invoke(app, ["eval", "--domain", "tinydom", "--data", str(data), "--methods", "base,rag"])
    assert result.exit_code == 1 and "--corpus" in result.output and "Traceback" not in result.output


def test_routed_and_expert_text_in_python(installed, tiny_paths):
    from gag_core.routes import RouteDecision
    from gag_plugins.api import GAG

    gag = GAG.from_installed([installed], base=tiny_paths["base"], expert=tiny_paths["expert"], max_new_tokens=4,
                             strict=True)
    gag.route = lambda q: RouteDecision(installed if "Veltrasite" in q else "general", 0.5, {})
    gag.route_batch = lambda qs: [gag.route(q) for q in qs]  # GAG.answer_batch routes through route_batch
    results = evaluate_methods(gag, ROWS, ["gag", "gag-routed", "expert-text"], domain=installed,
                               latency_sample=0, sts=False)
    by = {r["method"]: r for r in results}
    assert by["gag-routed"]["routed_to_domain"] == pytest.approx(4 / 6)
    routed = by["gag-routed"]["predictions"]
    assert [p["route"] for p in routed] == [installed] * 4 + ["general"] * 2
    # questions routed to the domain answer exactly like the oracle; general ones get the plain prompt
    assert [p["prediction"] for p in routed[:4]] == [p["prediction"] for p in by["gag"]["predictions"][:4]]
    assert routed[4]["prompt_tokens"] < by["gag"]["predictions"][4]["prompt_tokens"]
    assert by["expert-text"]["prompt_tokens"] > 0 and by["gag"]["sts"] is None
    assert by["gag"]["latency_median_s"] is None and by["gag"]["latency_n"] == 0


# --- routing evaluation -----------------------------------------------------------------------------------

class FakeRouter:
    def __init__(self, table):
        self.table = table

    def route(self, question):
        return SimpleNamespace(route=self.table[question], score=1.0, scores={})


MIXED = [("m1", "minerals", "minerals"), ("m2", "minerals", "minerals"), ("m3", "minerals", "general"),
         ("l1", "law", "law"), ("l2", "law", "minerals"), ("g1", "general", "general"),
         ("g2", "general", "general"), ("g3", "general", "law")]


def test_evaluate_router_counts():
    rows = [{"question": q, "domain": gold} for q, gold, _ in MIXED]
    result = evaluate_router(FakeRouter({q: chosen for q, _, chosen in MIXED}), rows)
    assert result["n"] == 8 and result["accuracy"] == pytest.approx(5 / 8)
    assert result["labels"] == ["general", "law", "minerals"]
    assert result["confusion"] == [[2, 1, 0], [0, 1, 1], [1, 0, 2]]
    per = {r["route"]: r for r in result["per_route"]}
    assert per["minerals"]["precision"] == pytest.approx(2 / 3) and per["minerals"]["recall"] == pytest.approx(2 / 3)
    assert per["law"]["precision"] == pytest.approx(1 / 2) and per["law"]["recall"] == pytest.approx(1 / 2)
    assert per["general"]["support"] == 3 and per["general"]["predicted"] == 3


def test_evaluate_router_with_a_real_prototype_router():
    import torch

    from gag_core.router import PrototypeRouter

    class FirstLetterEncoder:  # one axis per first letter: "m..." -> minerals, "l..." -> law, "g..." -> general
        name, dim = "first-letter", 3

        def encode(self, texts):
            return torch.eye(3)[["gml".index(t[0]) for t in texts]]

    router = PrototypeRouter(FirstLetterEncoder())
    for i, route in enumerate(["general", "minerals", "law"]):
        router.add_route(route, torch.eye(3)[i:i + 1])
    rows = [{"question": q, "domain": gold} for q, gold, _ in MIXED]
    result = evaluate_router(router, rows)  # the first letter always names the gold route here
    assert result["accuracy"] == 1.0 and result["confusion"] == [[3, 0, 0], [0, 2, 0], [0, 0, 3]]


def test_evaluate_router_undefined_precision_and_bad_rows():
    result = evaluate_router(FakeRouter({"a": "general"}), [{"question": "a", "domain": "minerals"}])
    per = {r["route"]: r for r in result["per_route"]}
    assert per["minerals"]["precision"] is None and per["minerals"]["recall"] == 0.0
    assert per["general"]["recall"] is None and per["general"]["precision"] == 0.0
    with pytest.raises(DataError, match="row 1"):
        evaluate_router(FakeRouter({}), [{"question": "a"}])
    with pytest.raises(ConfigError, match="route"):
        evaluate_router(object(), [{"question": "a", "domain": "general"}])


def test_eval_router_cli_with_a_fake_gag(tmp_path, monkeypatch):
    import gag_cli.evaluate as evaluate_cli

    monkeypatch.setattr(evaluate_cli, "load_routing", lambda *a: FakeRouter({q: chosen for q, _, chosen in MIXED}))
    data = write_jsonl(tmp_path / "mixed.jsonl", [{"question": q, "domain": gold} for q, gold, _ in MIXED])
    out = tmp_path / "router"
    result = runner.invoke(app, ["eval-router", "--data", str(data), "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    saved = json.loads((out / "router.json").read_text())
    assert saved["confusion"] == [[2, 1, 0], [0, 1, 1], [1, 0, 2]] and saved["accuracy"] == pytest.approx(0.625)
    assert (out / "confusion_matrix.png").stat().st_size > 0 and (out / "routing_recall_by_route.png").exists()
    md = (out / "results.md").read_text()
    assert "Confusion matrix" in md and "| minerals | 1 | 0 | 2 |" in md
    assert "0.625" in result.output


def test_eval_router_cli_without_routing_is_a_clean_error(tmp_path, monkeypatch):
    import gag_cli.evaluate as evaluate_cli

    monkeypatch.setattr(evaluate_cli, "load_routing", lambda *a: SimpleNamespace())
    data = write_jsonl(tmp_path / "mixed.jsonl", [{"question": "q", "domain": "general"}])
    result = runner.invoke(app, ["eval-router", "--data", str(data), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "route(question)" in result.output
