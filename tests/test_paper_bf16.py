"""The paper code path on CPU: ``train-domain -> install-domain -> ask`` through the CLI in bfloat16.

Tiny random Qwen3 models shaped like the paper pair (a wider base than expert, one shared tokenizer whose
chat template knows ``enable_thinking``), the ``paper`` profile's dtype (bf16), readout defaults (multi_slot
over layers -1/-2/-4/-6, 4 slots, norm-softmax pooling) and projector (gated_residual, with the semantic
loss). Only the budgets (epochs, lengths) are cut so it runs in seconds. The float32 path hides dtype and
device mismatches that this one finds.
"""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from tests import tiny
from tests.test_training import write_data

# Qwen3's template in miniature: ChatML plus the enable_thinking switch gag turns off (models.chat_template_kwargs)
QWEN3_TEMPLATE = tiny.CHATML.replace(
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is defined and "
    "enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}")
BUDGETS = {  # the paper profile's settings except how long each stage runs
    "readout": {"max_new_tokens": 6},
    "stage1": {"sft_epochs": 1, "dapt_epochs": 1, "batch_size": 4},
    "stage2": {"epochs": 2, "batch_size": 4, "dev_limit": 4, "dev_every": 1, "max_new_tokens": 4},
    "prototypes": 4, "shard_size": 8, "readout_batch_size": 8,
}


@pytest.fixture(scope="module")
def paper_pair(tmp_path_factory):
    """A Qwen3 base (h=64, 8 layers) and a narrower Qwen3 expert (h=48, 6 layers) sharing one tokenizer."""
    folder = tmp_path_factory.mktemp("paper_pair")
    tok = tiny.make_tokenizer(folder / "tokenizer")
    tok.chat_template = QWEN3_TEMPLATE
    base = tiny.make_model("qwen3", len(tok), hidden=64, layers=8, seed=11)
    expert = tiny.make_model("qwen3", len(tok), hidden=48, layers=6, seed=12)
    for model in (base, expert):  # saved in bf16 like the Hub checkpoints
        model.to(torch.bfloat16)
    return {"base": str(tiny.save_model(base, tok, folder / "base")),
            "expert": str(tiny.save_model(expert, tok, folder / "expert"))}


def test_train_install_ask_in_bfloat16_with_the_paper_profile(paper_pair, tmp_path, monkeypatch):
    from gag_cli.main import app
    from gag_core.module import DomainModule
    from gag_core.training import stages
    from gag_core.training.config import profile_defaults

    loaded = []  # the dtype of every model training loads

    def load_and_record(*args, **kwargs):
        loaded.append(stages_load(*args, **kwargs))
        return loaded[-1]

    stages_load = stages.load_causal_lm
    monkeypatch.setattr(stages, "load_causal_lm", load_and_record)

    data = write_data(tmp_path / "data")
    (data / "config.json").write_text(json.dumps(BUDGETS))
    models = ["--profile", "paper", "--base", paper_pair["base"], "--expert", paper_pair["expert"]]
    runner = CliRunner()
    out = tmp_path / "paperdom"
    result = runner.invoke(app, ["train-domain", "paperdom", "--qa", str(data / "train.jsonl"), "--corpus",
                                 str(data / "corpus.jsonl"), "--dev", str(data / "dev.jsonl"), "--config",
                                 str(data / "config.json"), "--out", str(out), *models])
    assert result.exit_code == 0, (result.output, result.exception)
    assert len(loaded) == 2 and all(m.dtype == torch.bfloat16 for m in loaded)  # expert, then base

    manifest = DomainModule.open(out).manifest
    paper = profile_defaults("paper")
    assert manifest.projector.kind == "gated_residual" == paper.stage2.projector
    assert (manifest.readout.kind, manifest.readout.layers, manifest.readout.slots, manifest.readout.pooling) == (
        paper.readout.kind, paper.readout.layers, paper.readout.slots, paper.readout.pooling)
    assert manifest.training["config"]["stage2"]["semantic_alpha"] == paper.stage2.semantic_alpha > 0
    assert "dev_containment" in manifest.training["metrics"]

    result = runner.invoke(app, ["install-domain", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    question = "What colour is mineral 3?"
    result = runner.invoke(app, ["ask", "--domain", "paperdom", "--json", question, "--max-new-tokens", "4", *models])
    assert result.exit_code == 0, (result.output, result.exception)
    answer = json.loads(result.output[result.output.index("{"):])
    assert answer["route"] == "paperdom" and answer["question"] == question
    result = runner.invoke(app, ["ask", question, "--max-new-tokens", "4", *models])  # routed and streamed
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.output.startswith("route: ")
