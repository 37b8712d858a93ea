"""Hybrid routing (issue 17): lexical evidence, calibrated confidence, abstention, module files, plug and play."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from gag_core.calibration import (Calibration, expected_calibration_error, fit_calibration, read_route_calibration,
                                  reliability, route_calibration_json, write_reliability_png)
from gag_core.errors import ConfigError, ModuleFormatError
from gag_core.hybrid import Policy
from gag_core.lexical import Background, LexicalIndex, LexicalScorer, hybrid_bonus, one_edit, terms
from gag_core.router import GENERAL_PROTOTYPES, PrototypeRouter, build_prototypes, read_questions_file
from gag_core.routes import GENERAL
from tests.test_router import words_plugin  # noqa: F401 - the fast test encoder, as a plugin (fixture)

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = {"minerals": ROOT / "modules/gag-domain-minerals/gag_domain_minerals/data",
           "registry": ROOT / "modules/gag-domain-registry/gag_domain_registry/data"}
GENERAL_FILE = ROOT / "gag_plugins" / "data" / "general_questions.jsonl"
GLIMMERHOLD = [  # a third invented domain (a board game), for plug and play
    "How many victory crowns do you need to win a game of Glimmerhold?",
    "In Glimmerhold, can a Lantern Warden move diagonally?",
    "What does the Moth Queen card do in Glimmerhold?",
    "How do you score the Tidewatch expansion of Glimmerhold?",
    "What happens when two Glimmerhold caravans land on the same ferry tile?",
    "Can you trade amber tokens for salt tokens in Glimmerhold?",
    "Is it legal to build a second keep on a marsh hex in Glimmerhold?",
    "How many cards does each player draw at the start of a Glimmerhold round?",
]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --- lexical evidence ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def background():
    return Background.build(read_questions_file(GENERAL_FILE))


def test_terms_and_common_words(background):
    assert terms("What's Fenbelite's colour, O Wise One?") == ["what", "fenbelite", "colour", "wise", "one"]
    assert background.common("hardness") and background.common("geologists") and background.common("crystallizes")
    assert not background.common("fenbelite") and not background.common("orlivar")
    assert one_edit("fenbleite", "fenbelite") and one_edit("fenbelite", "fenbelit") and not one_edit("abcde", "badce")


def test_evidence_names_rare_domain_terms_typos_included(background):
    index = LexicalIndex.build(["What colour is Fenbelite?", "Who discovered Orvdasite?"],
                               ["Fenbelite is crimson. It was found near Cape Quarnby."])
    scorer = LexicalScorer(index, background, ["What colour is Fenbelite?", "Who discovered Orvdasite?"])
    assert scorer.prior == 1.0  # every exemplar names a rare term
    assert scorer.evidence("tell me about quarnby").score == 1.0
    assert scorer.evidence("Fenbleite colour?").matches == [("fenbleite", "fenbelite", 1.0)]
    assert scorer.evidence("What colour is quartz?").score == 0.0  # common words are no evidence
    assert hybrid_bonus(1.0, 1.0) == 0.5 and hybrid_bonus(0.0, 1.0) == -0.5 and hybrid_bonus(0.0, 0.0) == 0.0


def test_lexical_index_round_trip_and_refusals():
    index = LexicalIndex.build(["What colour is Fenbelite?"], ["Fenbelite is crimson."])
    again = LexicalIndex.from_json(index.to_json())
    assert again == index and again.digest() == index.digest() and index.df["fenbelite"] == 2
    bad = json.loads(index.to_json())
    for change in ({"tokenizer": "other"}, {"df": {"x" * 80: 1}}, {"df": {"fenbelite": 9}}, {"format_version": 9}):
        with pytest.raises(ModuleFormatError):
            LexicalIndex.from_json(json.dumps({**bad, **change}))
    with pytest.raises(ModuleFormatError):
        LexicalIndex.from_json("not json")


# --- calibration -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_is_monotone_round_trips_and_measures_ece(method, tmp_path):
    gen = torch.Generator().manual_seed(0)
    leads = torch.rand(400, generator=gen).tolist()
    correct = [bool(torch.rand(1, generator=gen).item() < 0.2 + 0.8 * x) for x in leads]
    cal = fit_calibration(leads, ["domain"] * 400, correct, method=method)
    conf = [cal.confidence(x, "domain") for x in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert conf == sorted(conf) and conf[0] < 0.45 and conf[-1] > 0.8
    assert cal.ece is not None and cal.ece < 0.06
    again = Calibration.from_dict(json.loads(cal.to_json()))
    assert again.confidence(0.4, "domain") == pytest.approx(cal.confidence(0.4, "domain"))
    assert again.confidence(0.4, "general") == pytest.approx(cal.confidence(0.4, "general"))  # falls back to "all"
    bins = reliability([cal.confidence(x, "domain") for x in leads], correct)
    assert sum(b["n"] for b in bins) == 400 and write_reliability_png(tmp_path / "r.png", {"x": bins}).stat().st_size
    with pytest.raises(ModuleFormatError):
        Calibration.from_dict({"format_version": 1, "method": "platt", "maps": {"domain": {"x": [1, 0], "y": [0, 1]}}})


def test_ece_of_perfect_and_of_overconfident_predictions():
    assert expected_calibration_error([0.5] * 10, [True, False] * 5) == pytest.approx(0.0)
    assert expected_calibration_error([1.0] * 10, [True, False] * 5) == pytest.approx(0.5)
    questions, fit = read_route_calibration(route_calibration_json(["q1", "q2"], None))
    assert questions == ["q1", "q2"] and fit is None
    with pytest.raises(ConfigError):
        Policy(min_confidence=1.5)


# --- the hybrid router on the demo data (MiniLM) ------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(calibrations):
    """MiniLM, the general prototypes and the two demo domains' prototypes, indexes and dev questions."""
    from gag_core.router import SentenceEncoder

    enc = SentenceEncoder()
    general = read_questions_file(GENERAL_FILE)
    parts = {GENERAL: (build_prototypes(enc.encode(general), k=GENERAL_PROTOTYPES), None, None)}
    for name, folder in DOMAINS.items():
        train = [r["question"] for r in _rows(folder / "train.jsonl")]
        index = LexicalIndex.build(train, [r["text"] for r in _rows(folder / "corpus.jsonl")])
        parts[name] = (build_prototypes(enc.encode(train)), (index, train[:256]),
                       [r["question"] for r in _rows(folder / "dev.jsonl")])
    return enc, general, parts, calibrations


@pytest.fixture(scope="module")
def calibrations(tmp_path_factory):
    """One calibration cache for the module: routers over the same routes share their fit."""
    return tmp_path_factory.mktemp("calibrations")


def _hybrid_router(demo, min_confidence=0.5, lexical=True):
    enc, general, parts, cache = demo
    router = PrototypeRouter(enc, min_confidence=min_confidence, general_questions=general, cache_folder=cache)
    for name, (protos, lex, dev) in parts.items():
        scorer = LexicalScorer(lex[0], router.background, lex[1]) if lex and lexical else None
        router.add_route(name, protos, lexical=scorer, calibration_questions=dev)
    return router


def test_an_entity_name_routes_to_its_domain_even_phrased_like_a_general_question(demo):
    router, dense = _hybrid_router(demo), _hybrid_router(demo, lexical=False)
    questions = {"Write me a short poem about Fenbelite.": "minerals",
                 "I read something about sarvgorite yesterday, what was it again?": "minerals",
                 "Is Orlivar Industries a good place to work?": "registry",
                 "My uncle used to talk about Ushovia Works all the time. Any idea why?": "registry"}
    decisions = router.route_batch(list(questions))
    assert [d.route for d in decisions] == list(questions.values())
    assert all(d.confidence is not None and d.confidence >= 0.5 and not d.fallback for d in decisions)
    assert any(d.route == GENERAL for d in dense.route_batch(list(questions)))  # the cosine alone misses some


def test_a_general_question_sharing_a_domain_word_stays_general(demo):
    router = _hybrid_router(demo)
    questions = ["What is the hardness of topaz?", "How hard is a diamond compared to steel?",
                 "Which crystal system does table salt have?", "Who founded the East India Company?",
                 "What is the share capital of a typical start-up?", "Tell me the colour of malachite."]
    decisions = router.route_batch(questions)
    assert [d.route for d in decisions] == [GENERAL] * len(questions), [(d.route, d.evidence) for d in decisions]
    assert all(d.confidence > 0.5 for d in decisions)


def test_plug_and_play_holds_with_the_hybrid_score(demo):
    """Adding a domain moves no other route's score; with min_confidence the only other change is a fallback
    to general (the calibration was refitted), never a third domain."""
    enc = demo[0]
    mixed = ([r["question"] for f in DOMAINS.values() for r in _rows(f / "test.jsonl")[:60]]
             + read_questions_file(ROOT / "gag_plugins" / "data" / "general_questions_heldout.jsonl") + GLIMMERHOLD)
    for min_confidence in (None, 0.5):
        router = _hybrid_router(demo, min_confidence)
        before = router.route_batch(mixed)
        index = LexicalIndex.build(GLIMMERHOLD[:4])
        router.add_route("glimmerhold", build_prototypes(enc.encode(GLIMMERHOLD[:4])),
                         lexical=LexicalScorer(index, router.background, GLIMMERHOLD[:4]),
                         calibration_questions=GLIMMERHOLD[4:6])
        after = router.route_batch(mixed)
        assert all(math.isclose(b.scores[r], a.scores[r], abs_tol=1e-5)
                   for b, a in zip(before, after) for r in b.scores)
        changed = [(b.route, a.route) for b, a in zip(before, after) if a.route != b.route]
        allowed = ("glimmerhold",) if min_confidence is None else ("glimmerhold", GENERAL)
        assert changed and all(a in allowed for _, a in changed), changed
        assert [d.route for d in router.route_batch(GLIMMERHOLD[4:])] == ["glimmerhold"] * 4


# --- module files, install and the CLI (tiny models, the fast words encoder) ------------------------------------

def _router_files(name: str, exemplars: list[str], dev: list[str]) -> dict[str, str]:
    from gag_core.hybrid import module_router_files
    from tests.test_router import WordsEncoder

    enc = WordsEncoder()
    return module_router_files(name, enc, build_prototypes(enc.encode(exemplars)), exemplars, [], dev, GENERAL_FILE)


def test_router_files_are_verified_like_every_module_file(make_module):
    from gag_core.module import CALIBRATION, LEXICAL, DomainModule, read_manifest, verify_module

    exemplars = ["What colour is Veltrasite?", "Who discovered Veltrasite?"]
    folder = make_module("tinydom", exemplars=exemplars,
                         router_files=_router_files("tinydom", exemplars, ["Where was Veltrasite found?"] * 3))
    module = DomainModule.open(folder)
    assert {LEXICAL, CALIBRATION} <= set(module.manifest.files)
    assert module.load_lexical().df["veltrasite"] == 2 and module.calibration_questions() == ["Where was Veltrasite found?"]
    for rel in (LEXICAL, CALIBRATION):
        original = (folder / rel).read_text()
        (folder / rel).write_text(original.replace("veltrasite", "veltrasitx").replace("Where", "Here"))
        with pytest.raises(ModuleFormatError, match="sha256"):
            verify_module(folder)
        (folder / rel).write_text("{}")  # malformed, with the manifest's hash updated: refused on its content
        read_manifest(folder).save(folder)
        with pytest.raises(ModuleFormatError, match=rel):
            verify_module(folder)
        (folder / rel).write_text(original)
        read_manifest(folder).save(folder)
    verify_module(folder)


@pytest.fixture
def installed_hybrid(make_module):
    from gag_core import install
    from tests.test_router import MINERAL_EXEMPLARS, POLICY_EXEMPLARS

    for name, exemplars, dev, seed in (("tinyminerals", MINERAL_EXEMPLARS, ["Veltrasite has what colour?"], 1),
                                       ("tinypolicies", POLICY_EXEMPLARS, ["Can I use the Skiff VPN abroad?"], 2)):
        install.install_folder(make_module(name, exemplars=exemplars, seed=seed,
                                           router_files=_router_files(name, exemplars, dev * 3)))


def test_route_explain_and_eval_router_cli(words_plugin, installed_hybrid, tmp_path):
    from typer.testing import CliRunner

    from gag_cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["route", "Tell me about Veltrasite, please.", "--explain", "--router-encoder",
                                 "words"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("tinyminerals (") and "confidence" in result.output
    assert "lexical evidence" in result.output and "veltrasite" in result.output and "scored best" in result.output
    data = tmp_path / "labelled.jsonl"
    rows = [("What colour is Veltrasite, exactly?", "tinyminerals"), ("hello, tell me a joke", GENERAL),
            ("Does the Skiff VPN work abroad?", "tinypolicies"), ("Who discovered Veltrasite?", "tinyminerals")]
    data.write_text("".join(json.dumps({"question": q, "route": r, "kind": "x"}) + "\n" for q, r in rows))
    out = tmp_path / "report"
    result = runner.invoke(app, ["eval-router", "--data", str(data), "--route-field", "route", "--out", str(out),
                                 "--router-encoder", "words", "--compare-dense", "--min-confidence", "tinypolicies=0.2"])
    assert result.exit_code == 0, result.output
    quality = json.loads((out / "router.json").read_text())["quality"]
    assert set(quality) == {"installed", "dense only"} and quality["installed"]["accuracy"] == 1.0
    assert quality["installed"]["ece"] is not None and (out / "reliability.png").stat().st_size > 0
    assert "Routing quality" in result.output and "Accuracy per kind" in result.output
    assert "reliability.png" in (out / "results.md").read_text()
    bad = runner.invoke(app, ["route", "hi", "--router-encoder", "words", "--min-confidence", "2"])
    assert bad.exit_code != 0 and "--min-confidence must be in [0, 1]" in bad.output
