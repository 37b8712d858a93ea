"""The demo datasets (minerals, registry) and the routing held-out set: discovery, rebuilds, leakage, sizes."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gag_plugins import manager

ROOT = Path(__file__).resolve().parent.parent
MINERALS = ROOT / "modules" / "gag-domain-minerals" / "gag_domain_minerals" / "data"
REGISTRY = ROOT / "modules" / "gag-domain-registry" / "gag_domain_registry" / "data"
PLUGIN_DATA = ROOT / "gag_plugins" / "data"
ROUTING = PLUGIN_DATA / "routing_heldout.jsonl"
# name: (data folder, the generator's files that must be copied to run it elsewhere)
DATASETS = {"minerals": (MINERALS, ["generate.py"]), "registry": (REGISTRY, ["generate.py", "prose.py"])}
# Benchmarks compare runs over time: the minerals QA files predate the added corpus-only entities and must not move.
MINERALS_FROZEN = {
    "train.jsonl": "eb287b2940a5f148", "dev.jsonl": "472edaffc459f966", "test.jsonl": "64ad944b39ab489b",
    "unaligned_train.jsonl": "7e8927e85f7d25e8", "unaligned_test.jsonl": "9abfc5ae325fa5f6",
}


def rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def qa_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.jsonl") if p.name != "corpus.jsonl")


def norm(question: str) -> str:
    return re.sub(r"[^\w]+", " ", question.casefold()).strip()


def test_both_datasets_are_registered_through_the_plugin_hooks(monkeypatch):
    monkeypatch.delenv("GAG_LOAD_PLUGINS", raising=False)
    found = manager.collect("register_datasets")
    for name, (folder, _) in DATASETS.items():
        assert name in found, f"{name} is not registered; pip install -e modules/gag-domain-{name}"
        assert Path(found[name]).resolve() == folder.resolve()
        for required in ("corpus.jsonl", "train.jsonl", "dev.jsonl", "test.jsonl", "corpus_only_test.jsonl"):
            assert (folder / required).is_file(), (name, required)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_generator_rebuilds_byte_identically(name, tmp_path):
    folder, scripts = DATASETS[name]
    for script in scripts:
        shutil.copy(folder / script, tmp_path / script)
    subprocess.run([sys.executable, "generate.py"], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    written = sorted(p.name for p in tmp_path.glob("*.jsonl"))
    assert written == sorted(p.name for p in folder.glob("*.jsonl"))
    for filename in written:
        assert (tmp_path / filename).read_bytes() == (folder / filename).read_bytes(), f"{name}/{filename} differs"


def test_routing_heldout_rebuilds_byte_identically(tmp_path):
    out = tmp_path / "routing_heldout.jsonl"
    subprocess.run([sys.executable, str(PLUGIN_DATA.parent.parent / "benchmarks" / "data" / "make_routing_heldout.py"), str(out)], check=True,
                   capture_output=True, timeout=120)
    assert out.read_bytes() == ROUTING.read_bytes()


def test_minerals_qa_files_are_unchanged_by_the_added_entities():
    digests = {f: hashlib.sha256((MINERALS / f).read_bytes()).hexdigest()[:16] for f in MINERALS_FROZEN}
    assert digests == MINERALS_FROZEN, "a minerals QA file changed: benchmarks would no longer be comparable"


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_corpus_only_entities_appear_in_no_qa_file_but_in_the_corpus(name):
    folder, _ = DATASETS[name]
    only = {r["entity"] for r in rows(folder / "corpus_only_test.jsonl")}
    elsewhere = {r["entity"] for p in qa_files(folder) if p.name != "corpus_only_test.jsonl" for r in rows(p)}
    assert only and not only & elsewhere
    corpus = " ".join(d["text"] for d in rows(folder / "corpus.jsonl"))
    for row in rows(folder / "corpus_only_test.jsonl"):
        assert row["entity"] in corpus and row["value"] in corpus, row


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_corpus_only_set_is_large_enough(name):
    test = rows(DATASETS[name][0] / "corpus_only_test.jsonl")
    assert len(test) >= 50 and len({r["entity"] for r in test}) >= 10
    assert len({r["question"] for r in test}) == len(test)


def test_registry_shape():
    corpus = rows(REGISTRY / "corpus.jsonl")
    assert len({d["id"] for d in corpus}) == len(corpus)
    words = sorted(len(d["text"].split()) for d in corpus)
    assert words[-1] > 3000 and 60 <= words[0] and words[-2] <= 200, words
    qa = {p.name: rows(p) for p in qa_files(REGISTRY)}
    entities = {r["entity"] for rs in qa.values() for r in rs}
    trained = {r["entity"] for r in qa["train.jsonl"]}
    assert 40 <= len(entities) <= 60 and 0.25 <= len(trained) / len(entities) <= 0.35
    assert {r["entity"] for r in qa["dev.jsonl"]} == {r["entity"] for r in qa["test.jsonl"]} == trained
    train_q = {r["question"] for r in qa["train.jsonl"]}
    assert not train_q & {r["question"] for r in qa["dev.jsonl"] + qa["test.jsonl"]}  # held-out phrasings
    ids = {d["id"] for d in corpus}
    for rs in qa.values():
        for r in rs:
            assert r["docs"] and set(r["docs"]) <= ids, r
    locations = {r["fact_location"] for rs in qa.values() for r in rs}
    assert locations == {"own", "news", "digest"}  # some facts live only outside the company's own document


def test_routing_heldout_counts_and_labels():
    held = rows(ROUTING)
    assert {r["route"] for r in held} == {"minerals", "registry", "general"}
    for route, minimum in (("minerals", 150), ("registry", 150), ("general", 300)):
        assert sum(r["route"] == route for r in held) >= minimum, route
    assert len({norm(r["question"]) for r in held}) == len(held)
    for domain, (folder, _) in DATASETS.items():
        names = {r["entity"].lower() for p in qa_files(folder) for r in rows(p)}
        for r in held:
            if r["route"] == domain and r["kind"] != "typo_entity":
                assert any(n in r["question"].lower() for n in names), r


def test_routing_heldout_questions_appear_in_no_exemplar_or_training_file():
    sources = [p for folder, _ in DATASETS.values() for p in qa_files(folder)]
    sources += sorted(PLUGIN_DATA.glob("general_questions*.jsonl"))
    sources += sorted(ROOT.glob("modules/*/*/module/router/exemplars.jsonl"))
    sources += sorted((ROOT / "tests" / "data").glob("*.jsonl"))
    seen = {norm(r["question"]) for p in sources for r in rows(p)}
    leaked = [r["question"] for r in rows(ROUTING) if norm(r["question"]) in seen]
    assert not leaked, leaked[:5]
