"""Tiny randomly initialised models and a tiny tokenizer for fast tests (Qwen3 and Llama architectures)."""

from __future__ import annotations

from pathlib import Path

import torch

CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CORPUS = ["What colour is Veltrasite? Veltrasite is teal. The quick brown fox jumps over the lazy dog.",
          "Question: Knowledge: Please answer the following question based on the knowledge provided.",
          "system user assistant You are a helpful assistant with access to expert knowledge.",
          "0123456789 discovered by in the year mineral crystal system hexagonal cubic"] * 20


def make_tokenizer(folder: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None)
    fast.chat_template = CHATML
    fast.save_pretrained(folder)
    return fast


def make_model(arch: str, vocab: int, hidden: int = 64, layers: int = 6, seed: int = 0, tie: bool = False):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen3Config

    torch.manual_seed(seed)
    common = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  tie_word_embeddings=tie, pad_token_id=0, eos_token_id=2)
    if arch == "qwen3":
        config = Qwen3Config(head_dim=hidden // 4, **common)
    elif arch == "llama":
        config = LlamaConfig(**common)
    else:
        raise ValueError(arch)
    model = AutoModelForCausalLM.from_config(config)
    model.eval()
    return model


def save_model(model, tokenizer, folder: Path) -> Path:
    """Save as a normal HF folder so it loads through gag's ``load_causal_lm`` by path."""
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
