"""Bad training and question files are refused (or, for ``ask --input``, skipped) naming the file and line."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from gag_cli.main import app
from gag_core.corpus import load_corpus
from gag_core.errors import DataError
from gag_core.training.data import PASSAGE_WORDS, load_documents, load_qa
from tests.test_cli_basic import installed, model_args  # noqa: F401  (installed is a fixture)

GOOD = '{"question": "What colour is mineral 1?", "answer": "teal"}\n'
LATIN1 = '{"question": "Qu\xe9 color?", "answer": "teal"}\n'.encode("latin-1")


def clean_error(result, *needles):
    out = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in out and "Error:" in out, result.output
    for needle in needles:
        assert needle in out, out


@pytest.mark.parametrize("content, expected", [
    (b"", "is empty"),
    (b"\n  \n", "is empty"),
    ((GOOD * 4).encode() + LATIN1, r"line 5: not UTF-8 text"),
    (GOOD.encode() + b"\x00\x01\x02binary\xff\n" + (GOOD * 4).encode(), r"line 2: binary data"),
    ((GOOD * 4).encode() + b'{"question": "Who found it?", "answer": "  "}\n', r"line 5: missing or empty 'answer'"),
])
def test_bad_qa_files_name_the_file_and_line(tmp_path, content, expected):
    path = tmp_path / "qa.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"qa\.jsonl.*{expected}"):
        load_qa(path)


@pytest.mark.parametrize("name, content, expected", [
    ("empty.txt", b"", "holds no sentences"),
    ("rules.md", b"----\n\n* * *\n====\n", "holds no sentences"),
    ("latin.txt", "Line one.\nCaf\xe9 au lait.\n".encode("latin-1"), r"latin\.txt:2: not UTF-8"),
    ("blob.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"blob\.txt:3: binary data"),
    ("docs.jsonl", b'{"text": "Fine."}\n' + '{"text": "Caf\xe9"}\n'.encode("latin-1"),
     r"docs\.jsonl, line 2: not UTF-8"),
    ("docs.jsonl", b'{"text": "Fine.", "title": 3}\n', r"line 1: 'title' must be a string"),
    ("empty.jsonl", b"", "holds no documents"),
])
def test_bad_corpora_name_the_file_and_line(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=expected):
        load_documents(path)


def test_a_folder_corpus_mixes_text_markdown_and_jsonl_with_titles(tmp_path):
    (tmp_path / "a.txt").write_text("Alpha is red.")
    (tmp_path / "b.md").write_text("# Beta\n\nBeta is blue.")
    (tmp_path / "c.jsonl").write_text(json.dumps({"text": "Gamma is green.", "title": "Gamma"}) + "\n")
    docs = load_corpus(tmp_path)
    assert [(d.id, d.title) for d in docs] == [("a.txt", None), ("b.md", None), ("c:1", "Gamma")]


def test_a_10_mb_single_document_is_cut_into_passages_quickly(tmp_path):
    sentence = "The Harrow mine shipped 4,000 tonnes of ore to Quellin in 1907. "
    path = tmp_path / "huge.txt"
    path.write_text(sentence * (10_000_000 // len(sentence)))
    start = time.perf_counter()
    docs = load_documents(path)
    assert time.perf_counter() - start < 20
    assert len(docs) > 1000 and all(len(d.text.split()) <= PASSAGE_WORDS for d in docs)
    assert docs[0].id == "huge.txt#0" and docs[0].text.startswith("The Harrow mine")
    (tmp_path / "one_line.txt").write_text("x" * 10_000_000)  # no spaces, no sentence ends: cut by characters
    assert max(len(d.text) for d in load_documents(tmp_path / "one_line.txt")) < 10_000


def test_train_domain_refuses_a_non_utf8_qa_file_before_loading_a_model(tmp_path):
    (tmp_path / "qa.jsonl").write_bytes((GOOD * 4).encode() + LATIN1)
    result = CliRunner().invoke(app, ["train-domain", "bad", "--qa", str(tmp_path / "qa.jsonl")])
    clean_error(result, "qa.jsonl", "line 5: not UTF-8")
    result = CliRunner().invoke(app, ["train-domain", "bad"])
    clean_error(result, "give QA pairs (--qa), documents (--corpus)")


def test_ask_input_skips_bad_lines_reports_them_and_answers_the_good_ones(installed, tmp_path):  # noqa: F811
    questions = tmp_path / "q.jsonl"
    questions.write_bytes(b'{"question": "What colour is mineral 1?"}\n' + LATIN1 + b'{"question": ""}\nnot json\n'
                          b'{"question": "What colour is mineral 2?"}\n')
    out = tmp_path / "a.jsonl"
    result = CliRunner().invoke(app, ["ask", "--domain", "tinydom", "--input", str(questions), "--output", str(out),
                                      *map(str, model_args(installed))])
    clean_error(result, "skipped 3 bad line(s)", "q.jsonl:2: not UTF-8", "q.jsonl:3: expected a non-empty",
                "q.jsonl:4: not valid JSON")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["question"] for r in rows] == ["What colour is mineral 1?", "What colour is mineral 2?"]
