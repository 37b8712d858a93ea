"""Augmenters (rewrite, synthetic QA), mixed Stage I training and documents-only training, on tiny models."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gag_core.corpus import Document, split_sentences
from gag_core.errors import ConfigError, DataError
from gag_core.training.augment import (AugmentContext, AugmentedQA, RewriteAugmenter, grounded, resolve_pronouns,
                                       subject_name)
from gag_core.training.augment_stage import BUILTIN_AUGMENTERS, build_augmenters
from gag_core.training.config import ExpertConfig, load_config
from gag_core.training.synthetic_qa import SyntheticQAAugmenter, keep_grounded, parse_pairs
from gag_plugins import hookimpl, manager

COLOURS = ["teal", "amber", "violet", "coral"]
DOC = ("Specimens of Fenbelite, an uncommon mineral, are crimson in hand sample. It crystallizes in the hexagonal "
       "crystal system. Fennick Harrowick discovered the mineral in 1805. Its lustre is vitreous. The mineral weathers "
       "slowly.")


class Killed(Exception):
    pass


def context(tmp_path: Path, **kw) -> AugmentContext:
    return AugmentContext(work=tmp_path, seed=0, generator="unused", dtype="float32", device="cpu", **kw)


def mineral_docs(n: int = 6) -> list[Document]:
    return [Document(f"m{i}", f"Mineral{i} is {COLOURS[i % 4]}. It was found in 18{i}0. It is rare.")
            for i in range(n)]


def fake_completion(generator, prompts, ctx):
    """What a good generator writes: one grounded pair per fact, and one ungrounded pair that must be dropped."""
    out = []
    for prompt in prompts:
        passage = prompt.split("Passage: ", 1)[1]
        name, colour = re.search(r"(Mineral\d+) is (\w+)", passage).groups()
        out.append(f"Q: What colour is {name}?\nA: {colour}.\nQ: Who found {name}?\nA: Nobody knows\n")
    return out


# --- rewrite ------------------------------------------------------------------------------------------------

def test_subject_is_the_title_else_the_name_in_the_first_sentence():
    assert subject_name(Document("x", DOC)) == "Fenbelite"
    assert subject_name(Document("x", DOC, title="Fenbelite (mineral)")) == "Fenbelite (mineral)"
    text = "The Harrow Mining Company was founded by Alice Smith. The company makes tin. Harrow Mining Company grew."
    assert subject_name(Document("x", text)) == "Harrow Mining Company"
    assert resolve_pronouns("It is red.", "X") == "X is red." and resolve_pronouns("Its lustre.", "X") == "X's lustre."
    assert resolve_pronouns("The company makes tin.", "X") == "X makes tin."
    assert resolve_pronouns("Italy is red.", "X") == "Italy is red."


def test_rewrite_permutes_sentences_seeded_and_names_the_subject(tmp_path):
    augmenter = RewriteAugmenter(variants=3)
    out = list(augmenter.augment([Document("fen", DOC)], context(tmp_path)))
    assert len(out) == 3 and all(isinstance(t, str) for t in out)
    expected = sorted(resolve_pronouns(s, "Fenbelite") for s in split_sentences(DOC))
    assert all(sorted(split_sentences(t)) == expected for t in out)
    assert "Fenbelite crystallizes" in out[0] and "Fenbelite's lustre" in out[0] and "Fenbelite weathers" in out[0]
    assert len(set(out)) > 1  # the orders differ
    assert out == list(RewriteAugmenter(variants=3).augment([Document("fen", DOC)], context(tmp_path)))  # seeded
    answers = list(RewriteAugmenter(variants=2, as_answers=True).augment([Document("fen", DOC)], context(tmp_path)))
    assert answers[0] == AugmentedQA("Tell me about Fenbelite.", out[0], align=False, source="fen")


def test_augmenter_settings_are_checked_by_name():
    with pytest.raises(ConfigError, match=r"stage1\.augment_options\.rewrite\.variant;"):
        RewriteAugmenter(variant=3)
    with pytest.raises(ConfigError, match=r"rewrite\.variants = 'many'"):
        RewriteAugmenter(variants="many")
    with pytest.raises(ConfigError, match=r"stage1\.mix = 'interleaved'.*mixed, sequential"):
        ExpertConfig(mix="interleaved")
    with pytest.raises(ConfigError, match=r"stage1\.augment = "):
        ExpertConfig(augment=["rewrite", "rewrite"])
    cfg = load_config(None, "embedded", {"stage1": {"augment": ["backtranslate"]}})
    with pytest.raises(ConfigError, match="Unknown augmenter 'backtranslate'.*paraphrase, rewrite, synthetic-qa"):
        build_augmenters(cfg)
    cfg = load_config(None, "embedded", {"stage1": {"augment_options": {"rewrite": {"variants": 2}}}})
    with pytest.raises(ConfigError, match="does not turn on"):
        build_augmenters(cfg)


def test_augmenters_come_through_the_plugin_hook():
    class Shouting:
        name = "shouting"

        def augment(self, documents, context):
            yield from (d.text.upper() for d in documents)

    class Plugin:
        @hookimpl
        def register_augmenters(self, register):
            register("shouting", Shouting)

    pm = manager.load_plugins()
    pm.register(Plugin(), name="test-augmenter-plugin")
    try:
        found = manager.collect("register_augmenters")
    finally:
        pm.unregister(name="test-augmenter-plugin")
    assert found["rewrite"] is BUILTIN_AUGMENTERS["rewrite"] and found["synthetic-qa"] is SyntheticQAAugmenter
    cfg = load_config(None, "embedded", {"stage1": {"augment": ["shouting"]}})
    assert [type(a) for a in build_augmenters(cfg, found)] == [Shouting]


# --- synthetic QA -------------------------------------------------------------------------------------------

def test_only_grounded_pairs_are_kept():
    text = "1. Q: What colour is Fenbelite?\nA: Crimson.\nQ: What is Fenbelite?\nA: Fenbelite\nQ: Who?\nA: a wizard\n"
    pairs = parse_pairs(text)
    assert pairs == [("What colour is Fenbelite?", "Crimson"), ("What is Fenbelite?", "Fenbelite"),
                     ("Who?", "a wizard")]
    kept, dropped = keep_grounded(pairs, DOC)
    assert kept == [("What colour is Fenbelite?", "Crimson")] and dropped == 2
    assert not grounded("Q?", "", DOC) and not grounded("Q?", "rim", DOC)  # whole words only


def test_synthetic_qa_resumes_after_an_interruption_without_generating_a_passage_twice(tmp_path, monkeypatch):
    docs = mineral_docs(6)
    calls: list[str] = []
    alive = [False]

    def counting(self, generator, prompts, ctx, *rest, **kw):
        calls.extend(prompts)
        if len(calls) > 4 and not alive[0]:
            raise Killed  # the process dies mid-run (its finished batches are on disk)
        return fake_completion(generator, prompts, ctx)

    monkeypatch.setattr(SyntheticQAAugmenter, "complete", counting)
    augmenter = SyntheticQAAugmenter(batch_size=2)
    with pytest.raises(Killed):
        list(augmenter.augment(docs, context(tmp_path)))
    results = tmp_path / "augment" / "synthetic-qa.jsonl"
    assert len(results.read_text().splitlines()) == 4
    with open(results, "a") as f:
        f.write('{"key": "torn')  # a kill in the middle of a write
    alive[0] = True
    progress = []
    log = tmp_path / "train-log.jsonl"
    pairs = list(augmenter.augment(docs, context(tmp_path, log_path=log,
                                                 progress=lambda *a: progress.append(a))))
    assert len(calls) == 8 and len(set(calls)) == 6  # 4 before the kill, 2 after; the lost batch's 2 redone once
    assert [p.question for p in pairs] == [f"What colour is Mineral{i}?" for i in range(6)]
    assert all(p.align and p.source == f"m{i}" for i, p in enumerate(pairs))
    assert progress[-1] == ("augment-synthetic-qa", 6, 6, {"kept": 6, "dropped": 6})
    record = json.loads(log.read_text().splitlines()[-1])
    assert (record["kept"], record["dropped"], record["items"]) == (6, 6, 6)
    calls.clear()
    assert len(list(augmenter.augment(docs, context(tmp_path)))) == 6 and calls == []  # all done: no generation


def test_synthetic_qa_runs_a_real_generator(tiny_paths, tmp_path):
    augmenter = SyntheticQAAugmenter(generator=tiny_paths["base"], max_new_tokens=6)
    pairs = list(augmenter.augment(mineral_docs(2), context(tmp_path, log_path=tmp_path / "log.jsonl")))
    assert all(isinstance(p, AugmentedQA) for p in pairs)  # a random model writes nothing grounded, but it runs
    assert json.loads((tmp_path / "log.jsonl").read_text())["items"] == 2


# --- Stage I mixing and documents only ----------------------------------------------------------------------

def test_mixed_training_interleaves_documents_and_qa_in_one_phase(tiny_tokenizer):
    from gag_core.training.loop import epoch_batches
    from gag_core.training.stage1 import stage1_phases

    qa = [(f"What colour is mineral {i}?", COLOURS[i % 4]) for i in range(8)]
    corpus = [d.text for d in mineral_docs(8)]
    plain = {"dapt_epochs": 1, "sft_epochs": 8}  # a plain expert's (training resolves unset epochs: config.resolved)
    sequential = stage1_phases(tiny_tokenizer, qa, corpus, ExpertConfig(max_length=32, **plain), None)
    assert [(name, epochs) for name, _, epochs in sequential] == [("stage1-dapt", 1), ("stage1-sft", 8)]
    [(name, examples, epochs)] = stage1_phases(tiny_tokenizer, qa, corpus, ExpertConfig(max_length=32, mix="mixed", **plain),
                                               None)
    assert (name, epochs) == ("stage1-mixed", 8)
    assert len(examples) == len(sequential[0][1]) + len(sequential[1][1])
    is_doc = {id(ex): i < len(sequential[0][1]) for i, ex in enumerate(examples)}
    for epoch in range(2):  # every epoch's batches mix both kinds, in a seeded order
        batches = epoch_batches(examples, 4, seed=0)(epoch)
        assert any(len({is_doc[id(ex)] for ex in batch}) == 2 for batch in batches)


def test_documents_only_trains_a_working_module_through_the_cli(tiny_paths, tmp_path, monkeypatch):
    from gag_cli.main import app
    from gag_core.module import DomainModule
    from tests.test_training import TINY_CONFIG

    monkeypatch.setattr(SyntheticQAAugmenter, "complete", lambda self, g, p, c, *a, **k: fake_completion(g, p, c))
    corpus = tmp_path / "docs"
    corpus.mkdir()
    for d in mineral_docs(6):
        (corpus / f"{d.id}.txt").write_text(d.text)
    (tmp_path / "config.json").write_text(json.dumps({**TINY_CONFIG, "stage1": {**TINY_CONFIG["stage1"]}}))
    out = tmp_path / "module"
    result = CliRunner().invoke(app, ["train-domain", "docs", "--corpus", str(corpus), "--mix", "mixed",
                                      "--augment", "rewrite", "--config", str(tmp_path / "config.json"),
                                      "--base", tiny_paths["base"], "--expert", tiny_paths["expert"],
                                      "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "turning on the synthetic-qa augmenter" in re.sub(r"\s+", " ", result.output)
    module = DomainModule.open(out)
    data = module.manifest.training["data"]
    assert data["qa_pairs"] == data["synthetic_qa_pairs"] == 6 and data["augmented_texts"] == 6 * 4
    assert module.manifest.training["config"]["stage1"]["augment"] == ["rewrite", "synthetic-qa"]
    exemplars = (out / "router" / "exemplars.jsonl").read_text()
    assert "What colour is Mineral3?" in exemplars


def test_documents_only_refuses_too_few_grounded_pairs(tiny_paths, tmp_path, monkeypatch):
    from gag_core.training.data import TrainInputs
    from gag_core.training.train_domain import train_domain

    monkeypatch.setattr(SyntheticQAAugmenter, "complete",
                        lambda self, g, prompts, c, *a, **k: ["Q: What?\nA: nothing"] * len(prompts))
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": d.text, "title": d.id}) + "\n"
                                                 for d in mineral_docs(3)))
    cfg = load_config(None, "embedded", {"base": tiny_paths["base"], "expert": tiny_paths["expert"]})
    with pytest.warns(UserWarning, match="turning on the synthetic-qa"), \
            pytest.raises(DataError, match="Only 0 QA pairs to align on.*0 grounded synthetic pairs.*--qa-generator"):
        train_domain(TrainInputs("docs", None, tmp_path / "docs.jsonl"), cfg, tmp_path / "out")


# --- paraphrase -----------------------------------------------------------------------------------------------

def fake_paraphrases(generator, prompts, ctx, *rest, **kw):
    """A generator's rewrites: two usable ones, then a repeat, a name dropped, the answer given and a non-question."""
    out = []
    for prompt in prompts:
        question = prompt.split('ask: "', 1)[1]
        name = re.search(r"Mineral(\d+)", question)
        colour = COLOURS[int(name.group(1)) % 4]
        out.append(f"1. Which colour does {name.group()} have?\n2. Tell me the colour of {name.group()}?\n3. {question}"
                   f"\n- What colour is that mineral?\n- Is {name.group()} {colour}?\nThe colour of {name.group()}.")
    return out


def test_paraphrases_keep_the_names_and_numbers_and_never_the_answer():
    from gag_core.training.paraphrase import key_terms, keep_paraphrases, parse_lines

    assert key_terms("What did Fennick Harrowick find in 1805?") == {"fennick", "harrowick", "1805"}
    lines = parse_lines("1. When was Fenbelite found?\n2) Fenbelite: when found?\n\n- In 1805?\nQ: When did "
                        "they find Fenbelite?")
    assert lines == ["When was Fenbelite found?", "Fenbelite: when found?", "In 1805?", "When did they find Fenbelite?"]
    kept, dropped = keep_paraphrases("In which year was Fenbelite discovered?", "1805", lines + [
        "When was Fenbelite found?", "Was Fenbelite found in 1805?", "When was it found?",
        "The answer to this question is: in which year was Fenbelite discovered?"], min_overlap=0.0)
    assert kept == ["When was Fenbelite found?", "Fenbelite: when found?", "When did they find Fenbelite?"]
    assert dropped == 5  # a repeat, "In 1805?" and the answer-giving one, one without the name, the original inside
    drifted = ["Which colour is the mineral Fenbelite?", "Which mineral is Fenbelite?"]  # the second lost "colour"
    assert keep_paraphrases("Which colour does the mineral Fenbelite have?", "crimson", drifted) == (drifted[:1], 1)


def test_paraphrase_resumes_after_an_interruption_and_trains_stage1_only(tmp_path, monkeypatch):
    from gag_core.training.data import QAPair
    from gag_core.training.paraphrase import ParaphraseAugmenter

    qa = tuple(QAPair(f"What colour is Mineral{i}?", COLOURS[i % 4], 0, {}) for i in range(6))
    calls, alive = [], [False]

    def counting(self, generator, prompts, ctx, *rest, **kw):
        calls.extend(prompts)
        if len(calls) > 4 and not alive[0]:
            raise Killed
        return fake_paraphrases(generator, prompts, ctx)

    monkeypatch.setattr(ParaphraseAugmenter, "complete", counting)
    augmenter = ParaphraseAugmenter(batch_size=2, variants=2)
    with pytest.raises(Killed):
        list(augmenter.augment([], context(tmp_path, qa=qa)))
    alive[0] = True
    progress, log = [], tmp_path / "train-log.jsonl"
    pairs = list(augmenter.augment([], context(tmp_path, qa=qa, log_path=log, progress=lambda *a: progress.append(a))))
    assert len(calls) == 8 and len(set(calls)) == 6  # the batch lost to the kill is the only one done twice
    assert [p.question for p in pairs[:2]] == ["Which colour does Mineral0 have?", "Tell me the colour of Mineral0?"]
    assert len(pairs) == 12 and not any(p.align for p in pairs) and pairs[2].answer == COLOURS[1]
    assert progress[-1] == ("augment-paraphrase", 6, 6, {"kept": 12, "dropped": 24})
    assert json.loads(log.read_text().splitlines()[-1])["kept"] == 12


def test_paraphrase_runs_a_real_generator(tiny_paths, tmp_path):
    from gag_core.training.data import QAPair
    from gag_core.training.paraphrase import ParaphraseAugmenter

    augmenter = ParaphraseAugmenter(generator=tiny_paths["base"], max_new_tokens=6)
    qa = (QAPair("What colour is Mineral1?", "teal", 0, {}),)
    pairs = list(augmenter.augment([], context(tmp_path, qa=qa, log_path=tmp_path / "log.jsonl")))
    assert all(isinstance(p, AugmentedQA) for p in pairs)  # a random model writes no usable rewrite, but it runs
    assert json.loads((tmp_path / "log.jsonl").read_text())["items"] == 1


def test_paraphrase_needs_no_documents_through_the_cli(tiny_paths, tmp_path, monkeypatch):
    from gag_cli.main import app
    from gag_core.module import DomainModule
    from gag_core.training.paraphrase import ParaphraseAugmenter
    from tests.test_training import TINY_CONFIG

    monkeypatch.setattr(ParaphraseAugmenter, "complete", lambda self, *a, **k: fake_paraphrases(*a, **k))
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": f"What colour is Mineral{i}?", "answer": COLOURS[i % 4]}) + "\n"
                          for i in range(8)))
    (tmp_path / "config.json").write_text(json.dumps(TINY_CONFIG))
    out = tmp_path / "module"
    result = CliRunner().invoke(app, ["train-domain", "para", "--qa", str(qa), "--augment", "paraphrase",
                                      "--qa-generator", tiny_paths["base"], "--config", str(tmp_path / "config.json"),
                                      "--base", tiny_paths["base"], "--expert", tiny_paths["expert"],
                                      "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    training = DomainModule.open(out).manifest.training
    assert training["data"]["qa_pairs"] == 8 and training["data"]["expert_only_pairs"] == 8 * 2
    assert training["config"]["stage1"]["augment_options"]["paraphrase"]["generator"] == tiny_paths["base"]
