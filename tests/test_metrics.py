"""Answer metrics (hand-made cases with hand-computed numbers), STS/BERTScore on MiniLM, and report writing."""

import json

import pytest

from gag_core.errors import DataError, ModelLoadError
from gag_core.evaluation.metrics import (
    BertScorer,
    StsScorer,
    aggregate,
    aggregate_by,
    answer_tokens,
    contains,
    exact_match,
    normalize_answer,
    summarize_latencies,
    token_f1,
)
from gag_cli.tables import render_rich_table
from gag_core.evaluation.report import markdown_table, write_report


# --- normalisation ------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("The Ångström", "angstrom"),                   # article dropped, Latin accents folded
    ("ZÜRICH", "zurich"),
    ("東京", "東京"),                                 # CJK untouched
    ("  Hello,   World!! ", "hello world"),          # punctuation -> space, whitespace collapsed
    ("A cat and an owl", "cat and owl"),
    ("theatre", "theatre"),                          # articles only as whole words
    ("1,847", "1847"),                               # digit-group comma deleted
    ("1,000,000", "1000000"),
    ("3.14", "3 14"),                                # decimal point is punctuation like any other
    ("don't O'Brien", "dont obrien"),                # apostrophes deleted (SQuAD-like)
    ("$5 + 10%", "5 10"),                            # symbols dropped too
    ("ＡＢＣ ﬁne", "abc fine"),                        # NFKC: full-width, ligature
    ("Straße", "strasse"),                           # casefold
    ("Й", "й"),                                      # Cyrillic breve kept: й is a different letter
    ("が", "が"),                                    # kana voicing mark kept
    ("New-York", "new york"),
    ("", ""),
])
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_unspaced_scripts_tokenise_per_character():
    assert answer_tokens("首都は東京です") == ["首", "都", "は", "東", "京", "で", "す"]
    assert answer_tokens("iPhone发布于2007年") == ["iphone", "发", "布", "于", "2007", "年"]


# --- containment / exact match ------------------------------------------------------------------

def test_contains_basic_and_unicode():
    assert contains("I think it was Zurich, Switzerland.", "Zürich")
    assert contains("The unit is the ångström.", "Ångström")
    assert contains("首都は東京です", "東京")
    assert contains("It is THE EIFFEL TOWER!", "the Eiffel Tower")


def test_contains_needs_whole_words():
    assert not contains("It happened in 18470.", "1847")
    assert not contains("She studies the arts", "art")
    assert contains("born in 1,847 AD", "1847")
    assert contains("born in 1847 AD", "1,847")


def test_contains_empty_and_lists():
    assert not contains("anything at all", "")
    assert not contains("anything at all", "the")       # normalises to empty
    assert not contains("", "Paris")
    assert not contains("Paris", [])
    assert contains("It is Lutetia.", ["Paris", "Lutetia"])
    assert not contains("It is Rome.", ["Paris", "Lutetia"])


def test_exact_match():
    assert exact_match("The Beatles.", "beatles")
    assert exact_match("Zurich", "Zürich")
    assert not exact_match("The Beatles were a band", "Beatles")
    assert not exact_match("", "")                      # empty gold never matches
    assert exact_match("1847", ["eighteen forty-seven", "1,847"])


# --- token F1 (hand-computed) ---------------------------------------------------------------------

def test_token_f1_hand_computed():
    # pred tokens [cat, sat, on, mat], gold [cat, on, mat]: common 3, P=3/4, R=1 -> F1 = 6/7
    assert token_f1("The cat sat on the mat.", "a cat on a mat") == pytest.approx(6 / 7)
    # pred [new, york, city] gold [york]: P=1/3, R=1 -> 0.5
    assert token_f1("New York City", "York") == pytest.approx(0.5)
    # repeated tokens count with multiplicity: pred [paris, paris], gold [paris]: common 1, P=1/2, R=1 -> 2/3
    assert token_f1("Paris Paris", "Paris") == pytest.approx(2 / 3)
    # CJK per character: pred [東, 京, 都] gold [東, 京]: P=2/3, R=1 -> 0.8
    assert token_f1("東京都", "東京") == pytest.approx(0.8)
    assert token_f1("Zürich", "zurich") == 1.0


def test_token_f1_edge_cases():
    assert token_f1("", "Paris") == 0.0
    assert token_f1("Paris", "") == 0.0
    assert token_f1("Rome", "Paris") == 0.0
    # max over golds: [london] vs [london, uk]: P=1, R=1/2 -> 2/3 (Paris scores 0)
    assert token_f1("London", ["Paris", "London, UK"]) == pytest.approx(2 / 3)


# --- summaries ----------------------------------------------------------------------------------

def test_summarize_latencies():
    assert summarize_latencies([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]) == pytest.approx(
        {"median": 5.5, "p95": 9.55})                       # position 0.95*9 = 8.55 -> 9 + 0.55
    assert summarize_latencies([2.0]) == {"median": 2.0, "p95": 2.0}
    assert summarize_latencies([]) == {"median": None, "p95": None}


def test_aggregate_and_aggregate_by():
    rows = [{"method": "rag", "em": True, "f1": 0.5}, {"method": "rag", "em": False, "f1": None},
            {"method": "gag", "em": True, "f1": 1.0}]
    assert aggregate(rows, ["em", "f1", "missing"]) == {"em": pytest.approx(2 / 3), "f1": 0.75, "missing": None}
    assert aggregate_by(rows, "method", ["em", "f1"]) == [
        {"method": "rag", "n": 2, "em": 0.5, "f1": 0.5}, {"method": "gag", "n": 1, "em": 1.0, "f1": 1.0}]


# --- embedding scores (MiniLM loaded once) ----------------------------------------------------------

@pytest.fixture(scope="module")
def sts():
    return StsScorer()


def test_sts_identical_close_to_one_unrelated_lower(sts):
    same, related, unrelated = sts.score(
        ["The capital of France is Paris.", "Paris is France's capital city.", "The capital of France is Paris."],
        ["The capital of France is Paris.", "The capital of France is Paris.", "Bananas are rich in potassium."])
    assert same == pytest.approx(1.0, abs=1e-4)
    assert unrelated < 0.3 < related < same


def test_sts_lists_empty_and_mismatch(sts):
    best, empty = sts.score(["Paris"], [["Bananas", "Paris"]]) + sts.score(["Paris"], [""])
    assert best == pytest.approx(1.0, abs=1e-4)
    assert empty == 0.0
    assert sts.score([], []) == []
    with pytest.raises(DataError, match="2 predictions but 1 golds"):
        sts.score(["a", "b"], ["a"])


def test_bert_scorer_on_minilm_backbone():
    from gag_core.models import embedded_sentence_encoder_path

    scorer = BertScorer(embedded_sentence_encoder_path())
    same, other, empty = scorer.score(["the cat sat on the mat", "the cat sat on the mat", ""],
                                      ["the cat sat on the mat", "stock markets fell sharply today", "x"])
    assert same == pytest.approx(1.0, abs=1e-4)
    assert other < same
    assert empty == 0.0


def test_bert_scorer_load_failure_is_clear(tmp_path):
    with pytest.raises(ModelLoadError, match="Could not load the BERTScore model"):
        BertScorer(tmp_path / "no-such-model")


# --- report -------------------------------------------------------------------------------------

def test_write_report(tmp_path):
    rows = [{"method": "base", "em": 0.1, "latency": 0.8, "note": "a|b"},
            {"method": "gag", "em": 0.83, "latency": None, "note": "ok"}]
    plots = {"EM by method": ("method", "EM", {"base": 0.1, "gag": 0.83}),
             "EM vs slots": ("slots", "EM", {"gag": [(1, 0.5), (2, 0.7), (4, 0.83)], "rag": [(1, 0.3)]})}
    written = write_report(tmp_path / "out", "Minerals", rows, ["method", "em", "latency", "note"], plots)
    for name in ("results.json", "results.md", "EM by method", "EM vs slots"):
        assert written[name].is_file() and written[name].stat().st_size > 0
    assert written["EM by method"].name == "em_by_method.png"
    data = json.loads(written["results.json"].read_text())
    assert data["title"] == "Minerals" and data["rows"][1]["latency"] is None
    assert data["plots"]["EM vs slots"]["series"]["gag"][2] == [4, 0.83]
    md = written["results.md"].read_text()
    assert "| base | 0.100 | 0.800 | a\\|b |" in md and "| gag | 0.830 | – | ok |" in md
    assert "![EM by method](em_by_method.png)" in md


def test_report_rejects_bad_series(tmp_path):
    with pytest.raises(DataError, match="series 'gag'"):
        write_report(tmp_path, "t", [], ["a"], {"p": ("x", "y", {"gag": "oops"})})


def test_tables():
    rows = [{"method": "rag", "em": 0.5}, {"method": "gag"}]
    assert markdown_table(rows, ["method", "em"]).splitlines()[1] == "|---|---:|"
    table = render_rich_table(rows, ["method", "em"], "Results")
    assert table.title == "Results" and [c.header for c in table.columns] == ["method", "em"]
    assert table.row_count == 2 and table.columns[1].justify == "right"
