"""The CLI through typer's CliRunner on tiny models: help, install/list/info/uninstall, ask, resumable JSONL."""

from __future__ import annotations

import json
import re

import pytest
import typer
from typer.testing import CliRunner

from gag_cli.main import app
from gag_core.pipeline import GagPipeline

runner = CliRunner()
ROW_KEYS = {"question", "answer", "route", "prompt_tokens", "latency_s"}



def invoke(*args, ok=True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def flat(text: str) -> str:
    """Rich wraps long lines at the console width; compare with whitespace collapsed."""
    return re.sub(r"\s+", " ", text)


def assert_clean_error(result, *needles):
    assert result.exit_code == 1, result.output
    out = flat(result.output)
    assert "Error:" in out and "Traceback" not in out, result.output
    assert isinstance(result.exception, SystemExit)
    for needle in needles:
        assert needle in out, result.output


@pytest.fixture
def installed(make_module, tiny_paths):
    folder = make_module("tinydom")
    result = invoke("install-domain", folder)
    assert "Installed" in result.output and "tinydom" in result.output
    return {"name": "tinydom", "folder": folder, "base": tiny_paths["base"], "expert": tiny_paths["expert"]}


def model_args(d):
    return ["--base", d["base"], "--expert", d["expert"], "--max-new-tokens", 4]


# --- help and the domain commands --------------------------------------------------------------------

def test_help_for_every_command():
    commands = typer.main.get_command(app).commands
    assert {"ask", "list", "info", "install-domain", "uninstall-domain", "models"} <= set(commands)
    top = invoke("--help")
    for name, command in commands.items():
        if not command.hidden:
            assert name in top.output
        result = invoke(name, "--help")
        assert "Usage" in result.output and name in result.output


def test_install_list_info_uninstall(installed):
    listed = invoke("list")
    assert "tinydom" in listed.output
    rows = json.loads(invoke("list", "--json").output)
    row = next(r for r in rows if r["name"] == "tinydom")
    assert row["source"] == "folder" and row["version"] == "0.1.0"

    info = invoke("info", "tinydom", "--json")
    assert "verified" in info.output and '"name": "tinydom"' in info.output

    assert_clean_error(invoke("install-domain", installed["folder"], ok=False), "already installed", "--force")
    assert "Installed" in invoke("install-domain", installed["folder"], "--force").output

    removed = invoke("uninstall-domain", "tinydom")
    assert "Uninstalled" in removed.output
    assert not any(r["name"] == "tinydom" for r in json.loads(invoke("list", "--json").output))
    assert_clean_error(invoke("uninstall-domain", "tinydom", ok=False), "No installed domain named 'tinydom'")
    assert_clean_error(invoke("info", "tinydom", ok=False), "No domain named 'tinydom'", "install-domain")


def test_info_summarises_a_domain_without_the_fingerprint(installed):
    from gag_core.module import read_manifest

    out = flat(invoke("info", "tinydom").output)
    manifest = read_manifest(installed["folder"])
    for needle in ["tinydom", "0.1.0", "(hidden size 64)", "(hidden size 48)",
                   f"{manifest.readout.kind}, layers {manifest.readout.layers}", manifest.projector.kind,
                   manifest.router["encoder"], "projector.safetensors", "expert/adapter_model.safetensors",
                   "KiB", "folder:", "verified"]:
        assert needle in out, (needle, out)
    assert "fingerprint" not in out and "sample" not in out and "{" not in out
    as_json = invoke("info", "tinydom", "--json").stdout
    assert json.loads(as_json)["base"]["fingerprint"] == manifest.base["fingerprint"]


def test_install_refuses_a_broken_folder(make_module, tmp_path):
    folder = make_module("broken")
    (folder / "projector.safetensors").write_bytes(b"garbage")
    assert_clean_error(invoke("install-domain", folder, ok=False), "sha256", "Re-download")
    assert_clean_error(invoke("install-domain", tmp_path / "nowhere", ok=False), "nowhere")
    assert "broken" not in invoke("list").output


# --- ask ----------------------------------------------------------------------------------------------

def test_ask_with_a_domain_prints_the_answer(installed):
    from gag_core.models import load_causal_lm, load_tokenizer
    from gag_core.module import DomainModule
    from gag_core.store import list_installed

    result = invoke("ask", "--domain", "tinydom", "What colour is Veltrasite?", *model_args(installed))
    assert "route: tinydom" in result.output

    pipe = GagPipeline(load_causal_lm(installed["base"]), load_tokenizer(installed["base"]),
                       expert_loader=lambda e: (load_causal_lm(e), load_tokenizer(e)), max_new_tokens=4)
    pipe.add_domain(DomainModule.open(list_installed()["tinydom"].path))
    expected = pipe.answer("What colour is Veltrasite?", "tinydom").answer
    assert expected and expected in result.output

    as_json = invoke("ask", "--domain", "tinydom", "What colour is Veltrasite?", "--json", *model_args(installed))
    row = json.loads(as_json.output)
    assert ROW_KEYS <= set(row) and row["answer"] == expected and row["route"] == "tinydom"


def test_ask_general_uses_the_plain_base(installed):
    result = invoke("ask", "--general", "What colour is Veltrasite?", *model_args(installed))
    assert "route: general" in result.output
    row = json.loads(invoke("ask", "--general", "hi", "--json", *model_args(installed)).output)
    assert row["route"] == "general" and row["prompt_tokens"] > 0


def test_ask_refuses_bad_questions_cleanly(installed):
    assert_clean_error(invoke("ask", "--domain", "tinydom", "", *model_args(installed), ok=False), "empty")
    assert_clean_error(invoke("ask", "--general", "   ", *model_args(installed), ok=False), "empty")
    too_long = "xq" * 3000
    for route in (["--domain", "tinydom"], ["--general"]):
        assert_clean_error(invoke("ask", *route, too_long, *model_args(installed), ok=False), "the limit is 2048")
    assert_clean_error(invoke("ask", "--domain", "nope", "q", *model_args(installed), ok=False), "'nope'")
    assert_clean_error(invoke("ask", "--domain", "tinydom", "--general", "q", *model_args(installed), ok=False),
                       "not both")
    assert_clean_error(invoke("ask", *model_args(installed), ok=False), "QUESTION or --input")


# --- JSONL batches ------------------------------------------------------------------------------------

def write_questions(path, questions):
    path.write_text("".join(json.dumps({"question": q}) + "\n" for q in questions))


def test_ask_jsonl_resumes_after_the_last_whole_line(installed, tmp_path, monkeypatch):
    questions = [f"What colour is mineral number {i}?" for i in range(5)]
    write_questions(tmp_path / "q.jsonl", questions)
    out = tmp_path / "a.jsonl"
    done = "".join(json.dumps({"question": q, "answer": f"PREWRITTEN {i}", "route": "tinydom", "prompt_tokens": 1,
                               "latency_s": 0.0}) + "\n" for i, q in enumerate(questions[:2]))
    out.write_text(done + '{"question": "What colour is mineral number 2?", "answ')  # torn by a kill

    asked: list[str] = []
    original = GagPipeline.answer_batch

    def recording(self, qs, route, *args, **kwargs):
        asked.extend(qs)
        return original(self, qs, route, *args, **kwargs)

    monkeypatch.setattr(GagPipeline, "answer_batch", recording)
    result = invoke("ask", "--domain", "tinydom", "--input", tmp_path / "q.jsonl", "--output", out,
                    "--batch-size", 2, *model_args(installed))
    assert "Resuming: 2/5" in flat(result.output)
    assert asked == questions[2:]

    text = out.read_text()
    assert text.startswith(done) and text.endswith("\n") and "answ\n" not in text and text.count('"answ"') == 0
    rows = [json.loads(line) for line in text.splitlines()]
    assert [r["question"] for r in rows] == questions
    assert all(ROW_KEYS <= set(r) for r in rows)
    assert [r["route"] for r in rows[2:]] == ["tinydom"] * 3
    assert all(isinstance(r["prompt_tokens"], int) and r["prompt_tokens"] > 0 for r in rows[2:])

    asked.clear()
    invoke("ask", "--domain", "tinydom", "--input", tmp_path / "q.jsonl", "--output", out, *model_args(installed))
    assert asked == [] and out.read_text() == text  # a finished file is left alone


def test_ask_jsonl_refuses_an_output_of_other_questions_and_bad_input(installed, tmp_path):
    write_questions(tmp_path / "q.jsonl", ["first question", "second question"])
    out = tmp_path / "a.jsonl"
    out.write_text(json.dumps({"question": "something else", "answer": "x"}) + "\n")
    result = invoke("ask", "--domain", "tinydom", "--input", tmp_path / "q.jsonl", "--output", out,
                    *model_args(installed), ok=False)
    assert_clean_error(result, "other questions", "delete it")
    assert out.read_text().startswith('{"question": "something else"')  # untouched

    (tmp_path / "bad.jsonl").write_text('{"question": "ok"}\n{"question": ""}\n')
    result = invoke("ask", "--domain", "tinydom", "--input", tmp_path / "bad.jsonl", "--output", tmp_path / "b.jsonl",
                    *model_args(installed), ok=False)
    assert_clean_error(result, "bad.jsonl:2")
    assert_clean_error(invoke("ask", "--domain", "tinydom", "--input", tmp_path / "q.jsonl", ok=False), "--output")


def test_demo_retrains_a_module_built_with_other_settings(tmp_path):
    import json

    from cli.demo import _built_with_other_config
    from gag_core.training.config import load_config, resolved

    config = resolved(load_config(None, "embedded"), grounded=True).to_dict()  # what the demo's module records
    assert not _built_with_other_config(tmp_path, config)  # nothing built yet: just train
    (tmp_path / "gag-domain.json").write_text(json.dumps({"training": {"config": config}}))
    assert not _built_with_other_config(tmp_path, config)
    older = json.loads(json.dumps(config))
    older["stage2"]["epochs"] += 1
    assert _built_with_other_config(tmp_path, older)
    missing = json.loads(json.dumps(config))
    del missing["stage1"]["mix"]  # a module built before a setting existed: it counts as the setting's default
    (tmp_path / "gag-domain.json").write_text(json.dumps({"training": {"config": missing}}))
    assert not _built_with_other_config(tmp_path, config)
    (tmp_path / "gag-domain.json").write_text("{not json")
    assert _built_with_other_config(tmp_path, config)
