"""`gag update-domain` on tiny models: end to end through the CLI, corrections, refusals, atomicity, resume."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gag_cli.main import app
from gag_core.errors import DataError, IncompatibleModuleError
from gag_core.install import install_folder
from gag_core.module import CORPUS_SAMPLE, MANIFEST, PASSAGES, PROJECTOR, TRAIN_QA, DomainModule, Manifest
from gag_core.training.replay import plan_replay, without_stale
from gag_core.training.update import UpdateInputs, check_updatable, open_parent
from tests.test_training import TINY_CONFIG

ROOT = Path(__file__).resolve().parent.parent
COLOURS = ["teal", "amber", "violet", "coral"]
runner = CliRunner()


def fact(i: int, colour: str, phrasing: str = "What colour is mineral {}?") -> dict:
    return {"question": phrasing.format(i), "answer": f"It is {colour}.", "value": colour,
            "entity": f"mineral {i}", "attribute": "colour"}


@pytest.fixture(scope="module")
def trained(tiny_paths, tmp_path_factory) -> Path:
    """One tiny module (12 facts, entity/attribute fields, a corpus), trained once for this file."""
    root = tmp_path_factory.mktemp("update")
    data = root / "data"
    data.mkdir()
    rows = [fact(i, COLOURS[i % 4]) for i in range(12)]
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (data / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    (data / "corpus.jsonl").write_text("".join(json.dumps({"text": f"Mineral {i} is {COLOURS[i % 4]}. " * 3}) + "\n"
                                               for i in range(12)))
    (data / "config.json").write_text(json.dumps(TINY_CONFIG))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GAG_HOME": str(root / "home")}
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "scripts" / "train_tiny.py"), tiny_paths["base"],
                           tiny_paths["expert"], str(data), str(root / "module")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "module"


@pytest.fixture
def installed(trained) -> Path:
    return install_folder(trained).path


def new_data(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "new.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


UPDATE = [fact(i, COLOURS[(i + 1) % 4]) for i in range(20, 24)] + [fact(3, "crimson", "Which colour has mineral {}?")]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def invoke(*args):
    return runner.invoke(app, ["update-domain", *[str(a) for a in args]])


def test_train_domain_ships_the_data_update_replays(trained):
    module = DomainModule.open(trained)
    assert {TRAIN_QA, CORPUS_SAMPLE} <= set(module.manifest.files)
    rows = [json.loads(line) for line in (trained / TRAIN_QA).read_text().splitlines()]
    assert len(rows) == 12 and rows[0]["entity"] == "mineral 0" and rows[0]["split"] == "qa"
    assert module.manifest.training["data"]["sources"]["qa"]["sha256"]


def test_update_end_to_end_through_the_cli(installed, tmp_path):
    before = snapshot(installed)
    result = invoke("tinydom", "--qa", new_data(tmp_path, UPDATE), "--epochs", 1, "--install")
    assert result.exit_code == 0, (result.output, result.exception)
    updated = DomainModule.open(installed)
    manifest = updated.manifest
    assert manifest.version == "0.2.0"  # new facts: a minor bump
    (entry,) = manifest.history
    assert entry["parent_version"] == "0.1.0" and entry["parent_sha256"] == sha256_file_bytes(before[MANIFEST])
    assert entry["added"] == {"qa_rows": 5, "new_facts": 4, "corrections": 1, "documents": 0, "replaced_rows": 1,
                              "replayed_rows": 6}
    assert (installed / PROJECTOR).read_bytes() == before[PROJECTOR]  # the projector is kept byte for byte
    assert {r["question"] for r in UPDATE} <= set(updated.exemplars())
    rows = [json.loads(line) for line in (installed / TRAIN_QA).read_text().splitlines()]
    about_3 = [r["value"] for r in rows if r.get("entity") == "mineral 3"]
    assert about_3 == ["crimson"]  # the correction replaced the old pair; the old answer is not replayed
    passages = [json.loads(line)["text"] for line in (installed / PASSAGES).read_text().splitlines()]
    assert manifest.readout.context_passages == 1  # the tiny module is grounded: the default with a corpus
    assert passages[3] == "Mineral 3 is crimson. " * 2 + "Mineral 3 is crimson."  # the old answer replaced in place
    assert "mineral 20: It is amber." in passages  # a new entity's fact without a document: a passage naming it
    assert "Update history" in (installed / "README.md").read_text()
    info = runner.invoke(app, ["info", "tinydom"])
    assert "update history" in info.output and "0.1.0" in info.output, info.output
    listed = json.loads(runner.invoke(app, ["list", "--json"]).output)
    assert listed[0]["updates"].startswith("1 (last ")


def sha256_file_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_a_correction_replaces_every_phrasing_of_the_old_fact():
    old = [fact(1, "teal"), fact(1, "teal", "Which colour does mineral {} have?"), fact(2, "amber"),
           {"question": "Who found mineral 1?", "answer": "Ada.", "split": "qa"}]
    new = [fact(1, "coral", "Mineral {} is what colour?"), {"question": "who found mineral 1", "answer": "Bo."},
           fact(2, "amber"), fact(9, "teal")]
    plan = plan_replay(old, new, 1.0, seed=0)
    assert (plan.corrections, plan.added) == (2, 1)
    assert plan.kept == [] and len(plan.replaced) == 3  # fact 2 repeated: dropped, not a correction
    assert without_stale(["Mineral 1 is teal.", "Mineral 1 was found by Ada.", "Mineral 2 is amber."],
                         plan.replaced) == ["Mineral 1 was found by Ada.", "Mineral 2 is amber."]


def test_refusals_are_one_clear_line(installed, tmp_path):
    good = new_data(tmp_path / "good", UPDATE)
    for args, needle in [(["--base", "other/base"], "was trained with base"),
                         (["--profile", "paper"], "was trained with profile"),
                         (["--replay", 2], "not a fraction")]:
        result = invoke("tinydom", "--qa", good, *args)
        assert result.exit_code == 1 and needle in " ".join(result.output.split()), result.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    bad = new_data(tmp_path / "bad", [fact(1, "teal")])
    bad.write_text(bad.read_text() + '{"question": "x"}\n')
    for path, needle in [(empty, "is empty"), (bad, "line 2")]:
        result = invoke("tinydom", "--qa", path)
        assert result.exit_code == 1 and needle in " ".join(result.output.split()), result.output
    manifest = DomainModule.open(installed).manifest
    manifest.projector.kind = "mlp2x_gelu"
    with pytest.raises(IncompatibleModuleError, match="train-domain"):
        check_updatable(manifest, UpdateInputs(installed, good))


def test_an_old_module_without_replay_data_is_refused_unless_replay_is_zero(trained, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(trained, old)
    for rel in (TRAIN_QA, CORPUS_SAMPLE):
        (old / rel).unlink()
    manifest = Manifest.from_dict(json.loads((old / MANIFEST).read_text()))
    manifest.training["data"].pop("sources")
    manifest.save(old)
    new = new_data(tmp_path, UPDATE)
    with pytest.raises(DataError, match="--replay 0"):
        open_parent(UpdateInputs(old, new))
    with pytest.warns(UserWarning, match="forgotten"):
        assert open_parent(UpdateInputs(old, new, replay=0)).rows == []


def test_a_failed_update_leaves_the_installed_module_as_it_was(installed, tmp_path, monkeypatch):
    before = snapshot(installed)

    def fail(self, folder, limits=None):
        raise OSError("disk full (injected mid-write)")

    monkeypatch.setattr(Manifest, "save", fail)
    result = invoke("tinydom", "--qa", new_data(tmp_path, UPDATE), "--epochs", 1, "--install")
    assert result.exit_code != 0
    assert snapshot(installed) == before


def test_kill_9_mid_training_leaves_the_install_and_a_rerun_resumes(installed, tmp_path):
    before = snapshot(installed)
    args = [sys.executable, str(ROOT / "tests" / "scripts" / "update_tiny.py")]
    tail = ["tinydom", "--qa", str(new_data(tmp_path, UPDATE)), "--epochs", "2", "--install"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = subprocess.run(args + ["1"] + tail, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert snapshot(installed) == before
    finished = subprocess.run(args + ["0"] + tail, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert DomainModule.open(installed).manifest.version == "0.2.0"
    work = next((Path(os.environ["GAG_HOME"]) / "work").glob("update-tinydom-*"))
    log = [json.loads(line) for line in (work / "train-log.jsonl").read_text().splitlines()]
    assert any(r.get("event") == "resumed" and r["stage"].startswith("stage1") for r in log)
