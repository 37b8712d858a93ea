"""A grounded expert: it reads its domain's top passages before the question (Stage I, readouts, expert alone)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from gag_core.corpus import Document
from gag_core.errors import ConfigError, ModuleFormatError
from gag_core.grounding import Grounding, expert_input
from gag_core.module import MANIFEST, PASSAGES, DomainModule, Manifest
from gag_core.readouts import ReadoutConfig
from gag_core.training.augment import expert_passages
from gag_core.training.replay import corrected_passages
from tests.test_training import TINY_CONFIG, run_script, write_data

PASSAGE_TEXTS = ["Fenbelite is crimson. It was found by Fennick Harrowick in 1805.",
                 "Orvdasite is bronze. Gwendra Penhallow found it near Cape Quarnby.",
                 "Granite is a common igneous rock."]


def test_the_top_passage_comes_before_the_question_and_k0_is_the_plain_question():
    grounded = Grounding(PASSAGE_TEXTS, k=1)
    [text] = grounded.expert_inputs(["Who found Orvdasite?"])
    assert text == expert_input("Who found Orvdasite?", [PASSAGE_TEXTS[1]])
    assert text.startswith("Notes:\n[1] Orvdasite is bronze.") and text.endswith("\n\nQuestion: Who found Orvdasite?")
    assert len(Grounding(PASSAGE_TEXTS, k=2).top(["Who found Orvdasite?"])[0]) == 2
    assert Grounding(PASSAGE_TEXTS, k=0).expert_inputs(["Who found Orvdasite?"]) == ["Who found Orvdasite?"]
    assert Grounding([], k=0).expert_inputs(["q"]) == ["q"]


def test_expert_passages_name_their_subject_in_every_piece():
    doc = Document("fen", "Specimens of Fenbelite are crimson. It crystallizes in the hexagonal system. "
                   "Its discoverer was Fennick Harrowick. Collectors prize it.")
    whole = expert_passages([doc], max_words=100)
    assert whole == ["Specimens of Fenbelite are crimson. Fenbelite crystallizes in the hexagonal system. "
                     "Fenbelite's discoverer was Fennick Harrowick. Collectors prize it."]
    pieces = expert_passages([doc], max_words=12)
    assert len(pieces) > 1 and all("Fenbelite" in p for p in pieces)


def test_corrections_rewrite_the_sentence_that_stated_the_old_answer():
    old = {"question": "What colour is Fenbelite?", "answer": "Fenbelite is crimson.", "entity": "Fenbelite",
           "attribute": "colour", "value": "crimson"}
    new = {**old, "question": "Which colour has Fenbelite?", "answer": "Fenbelite is green.", "value": "green"}
    out = corrected_passages(PASSAGE_TEXTS, [old], [new])
    assert out[0] == "Fenbelite is green. It was found by Fennick Harrowick in 1805."
    assert out[1:] == PASSAGE_TEXTS[1:]
    # a value that shares its sentence with other facts is replaced where it stands: the others stay readable
    year = {**old, "question": "When was Fenbelite found?", "answer": "It was found in 1805.", "attribute": "year",
            "value": "1805"}
    out = corrected_passages(PASSAGE_TEXTS, [year], [{**year, "answer": "It was found in 1811.", "value": "1811"}])
    assert out[0] == "Fenbelite is crimson. It was found by Fennick Harrowick in 1811."
    # without a new value to put in place, the sentence becomes the correcting answer
    bare = {k: v for k, v in new.items() if k != "value"}
    assert corrected_passages(PASSAGE_TEXTS, [old], [bare])[0] == ("Fenbelite is green. It was found by Fennick "
                                                                   "Harrowick in 1805.")


def test_readout_config_bounds_the_passages():
    with pytest.raises(ConfigError, match="context_passages"):
        ReadoutConfig(context_passages=17)
    with pytest.raises(ConfigError, match="context_words"):
        ReadoutConfig(context_passages=1, context_words=2)


@pytest.fixture(scope="module")
def grounded_module(tiny_paths, tmp_path_factory):
    root = tmp_path_factory.mktemp("grounded")
    data = write_data(root / "data")
    config = json.loads(json.dumps(TINY_CONFIG))
    config["readout"].update(context_passages=1, context_words=16)
    (data / "config.json").write_text(json.dumps(config))
    result = run_script(tiny_paths, data, root / "module", env_extra={"GAG_HOME": str(root / "home")})
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "module"


def test_a_grounded_module_ships_its_passages_and_its_expert_reads_them(grounded_module, tiny_paths):
    from gag_core.models import load_causal_lm, load_tokenizer
    from gag_core.pipeline import GagPipeline

    module = DomainModule.open(grounded_module)
    assert module.manifest.readout.context_passages == 1 and PASSAGES in module.manifest.files
    passages = [json.loads(line)["text"] for line in (grounded_module / PASSAGES).read_text().splitlines()]
    assert len(passages) == 12 and passages[3].startswith("Mineral 3 is")
    pipe = GagPipeline(load_causal_lm(tiny_paths["base"]), load_tokenizer(tiny_paths["base"]),
                       expert_loader=lambda i: (load_causal_lm(i), load_tokenizer(i)), max_new_tokens=4)
    loaded = pipe.add_domain(module)
    seen = []
    read = loaded.readout.read_with_backgrounds
    loaded.readout.read_with_backgrounds = lambda model, tok, qs: seen.extend(qs) or read(model, tok, qs)
    memory = pipe.memory("tinydom", ["What colour is mineral 3?"])
    assert seen == [expert_input("What colour is mineral 3?", [passages[3]])]
    assert memory.shape[1] == module.manifest.projector.slots and torch.isfinite(memory).all()
    assert pipe.answer("What colour is mineral 3?", "tinydom").route == "tinydom"


def test_a_grounded_module_without_its_passages_is_refused(grounded_module, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(grounded_module, broken)
    (broken / PASSAGES).unlink()
    manifest = Manifest.from_dict(json.loads((broken / MANIFEST).read_text()))
    manifest.save(broken)  # hashes re-made without the file: only the grounding rule can refuse it
    with pytest.raises(ModuleFormatError, match="ships no knowledge/passages.jsonl"):
        DomainModule.open(broken)


# --- gag+rag: memory slots and retrieved passages in one base prompt -------------------------------------------

def test_text_after_the_slots_keeps_the_slot_positions(tiny_tokenizer):
    from gag_core.injection import InjectionHook

    hook = InjectionHook(tiny_tokenizer)
    plain = hook.build("What colour is mineral 3?", 4)
    with_text = hook.build("What colour is mineral 3?", 4, text="[1] Mineral 3 is coral.")
    assert with_text.slot_positions == plain.slot_positions
    end = plain.slot_positions[-1] + 1
    assert with_text.input_ids[:end] == plain.input_ids[:end]
    assert with_text.input_ids[-len(plain.input_ids[end:]):] == plain.input_ids[end:]
    assert "Mineral 3 is coral" in tiny_tokenizer.decode(with_text.input_ids[end:])


def test_gag_plus_rag_methods_expand_per_retriever_and_k():
    from gag_core.evaluation.harness import expand_methods

    assert expand_methods(["gag+rag"], [1, 2], ["bm25"]) == ["gag+rag-bm25@1", "gag+rag-bm25@2"]
    assert expand_methods(["gag+rag-dense@5", "rag-bm25@1"]) == ["gag+rag-dense@5", "rag-bm25@1"]
    with pytest.raises(ConfigError, match="gag\\+rag"):
        expand_methods(["gag+rag-bm26@1"])


def test_ask_with_passages_puts_the_domain_passages_in_the_base_prompt(grounded_module, tiny_paths):
    from gag_core.models import load_causal_lm, load_tokenizer
    from gag_core.pipeline import GagPipeline

    pipe = GagPipeline(load_causal_lm(tiny_paths["base"]), load_tokenizer(tiny_paths["base"]),
                       expert_loader=lambda i: (load_causal_lm(i), load_tokenizer(i)), max_new_tokens=4)
    pipe.add_domain(DomainModule.open(grounded_module))
    [text] = pipe.passages(["What colour is mineral 3?"], ["tinydom"], [1])
    assert text.startswith("[1] Mineral 3 is coral.")
    assert pipe.passages(["Hello"], ["general"], [2]) == [None]
    plain, rag = (pipe.answer_batch(["What colour is mineral 3?"], "tinydom", texts=t)[0] for t in (None, [text]))
    assert rag.prompt_tokens > plain.prompt_tokens and rag.slots == plain.slots


def test_passages_from_a_module_that_ships_none_are_refused(make_module, tiny_paths):
    from gag_core.models import load_causal_lm, load_tokenizer
    from gag_core.pipeline import GagPipeline

    pipe = GagPipeline(load_causal_lm(tiny_paths["base"]), load_tokenizer(tiny_paths["base"]),
                       expert_loader=lambda i: (load_causal_lm(i), load_tokenizer(i)), max_new_tokens=4)
    pipe.add_domain(DomainModule.open(make_module("plain")))
    with pytest.raises(ConfigError, match="ships no passages"):
        pipe.passages(["q"], ["plain"], [1])


def test_new_facts_without_a_document_join_their_entity_passage_or_become_passages():
    from gag_core.training.replay import with_unstated_facts

    rows = [{"question": "What colour is Orvdasite?", "answer": "Orvdasite is bronze.", "value": "bronze"},
            {"question": "Who found Zelmite?", "answer": "Zelmite was found by Ama Okoro.", "value": "Ama Okoro"},
            {"question": "What colour is Zelmite?", "answer": "Zelmite is crimson.", "value": "crimson",
             "entity": "Zelmite"},  # crimson is stated, but about another mineral
            {"question": "How hard is Zelmite?", "answer": "It scratches glass.", "value": "scratches glass",
             "entity": "Zelmite"},
            {"question": "When was Orvdasite found?", "answer": "Orvdasite was found in 1790.", "value": "1790",
             "entity": "Orvdasite"}]
    out = with_unstated_facts(PASSAGE_TEXTS, rows)
    # a known entity's new fact joins its passage (its top passage keeps all its facts: no passage of one fact
    # outranks it for the entity's other questions); a new entity's facts share one passage that names it
    assert out == [PASSAGE_TEXTS[0], PASSAGE_TEXTS[1] + " Orvdasite was found in 1790.", PASSAGE_TEXTS[2],
                   "Who found Zelmite? Zelmite was found by Ama Okoro.",
                   "Zelmite is crimson. It scratches glass."]
    assert with_unstated_facts(PASSAGE_TEXTS, rows[:1]) == PASSAGE_TEXTS  # stated already: nothing added
