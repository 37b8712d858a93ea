"""Every registered readout and projector kind on tiny models: shapes, determinism, configs, pooling."""

from __future__ import annotations

import pytest
import torch

from gag_core.errors import ConfigError, InjectionError
from gag_core.models import load_causal_lm, load_tokenizer
from gag_core.projectors import ProjectorBundle, ProjectorConfig
from gag_core.readouts import ReadoutConfig, pool_segments
from gag_plugins.manager import collect
from tests.factories import tiny_lora



READOUT_KINDS = sorted(collect("register_readouts"))
PROJECTOR_KINDS = sorted(collect("register_projectors"))
# A small config per built-in kind; a plugin's kind gets a generic one.
TINY_READOUTS = {
    "final_token": ReadoutConfig(kind="final_token", layers=[-4, -1], slots=1, max_new_tokens=4),
    "multi_slot": ReadoutConfig(kind="multi_slot", layers=[-1, -2, -4, -6], slots=3, max_new_tokens=6),
    "prefill": ReadoutConfig(kind="prefill", layers=[-1, -3], slots=2, pooling="mean"),
}
QUESTIONS = ["What colour is Veltrasite?", "hi", "In which year was the hexagonal mineral discovered?"]


def tiny_readout(kind: str) -> ReadoutConfig:
    return TINY_READOUTS.get(kind) or ReadoutConfig(kind=kind, layers=[-1], slots=1, max_new_tokens=4)


def test_the_builtins_are_registered():
    assert {"final_token", "multi_slot", "prefill"} <= set(READOUT_KINDS)
    assert {"mlp2x_gelu", "gated_residual", "anchored_residual"} <= set(PROJECTOR_KINDS)


@pytest.fixture(scope="module")
def expert(tiny_paths):
    model = tiny_lora(load_causal_lm(tiny_paths["expert"], frozen=False), seed=3).eval()
    return model, load_tokenizer(tiny_paths["expert"])


@pytest.mark.parametrize("kind", READOUT_KINDS)
def test_readout_memory_shape_and_determinism(expert, kind):
    model, tok = expert
    config = tiny_readout(kind)
    readout = collect("register_readouts")[kind](config)
    first = readout.read(model, tok, QUESTIONS)
    assert first.shape == (3, len(config.layers), config.slots, 48)
    assert torch.isfinite(first).all() and first.abs().max() <= config.clamp
    assert torch.equal(readout.read(model, tok, QUESTIONS), first)
    alone = torch.cat([readout.read(model, tok, [q]) for q in QUESTIONS])
    torch.testing.assert_close(first, alone, rtol=0, atol=1e-4)  # left padding changes nothing
    assert not torch.allclose(first[0], first[1])  # the memory depends on the question


@pytest.mark.parametrize("kind", ["final_token", "multi_slot"])
def test_generating_readouts_read_the_generated_background(expert, kind):
    """A different background budget changes a generating readout's memory; prefill ignores it."""
    model, tok = expert
    config = tiny_readout(kind)
    cls = collect("register_readouts")[kind]
    short = cls(ReadoutConfig(**{**config.to_dict(), "max_new_tokens": 2})).read(model, tok, QUESTIONS[:1])
    longer = cls(ReadoutConfig(**{**config.to_dict(), "max_new_tokens": 8})).read(model, tok, QUESTIONS[:1])
    assert not torch.allclose(short, longer)


@pytest.mark.parametrize("kind", ["final_token", "multi_slot"])
def test_reencode_reads_the_background_alone(expert, kind):
    """reencode: the memory is the background's states without the question in context, so it depends on
    the generated text only (two phrasings that produce the same background get the same memory)."""
    from gag_core.readouts import _finish, generate_background

    model, tok = expert
    config = ReadoutConfig(**{**tiny_readout(kind).to_dict(), "reencode": True})
    cls = collect("register_readouts")[kind]
    memory = cls(config).read(model, tok, QUESTIONS)
    assert memory.shape == (3, len(config.layers), config.slots, 48)
    torch.testing.assert_close(memory, torch.cat([cls(config).read(model, tok, [q]) for q in QUESTIONS]),
                               rtol=0, atol=1e-4)  # right padding changes nothing
    in_context = cls(ReadoutConfig(**{**config.to_dict(), "reencode": False})).read(model, tok, QUESTIONS)
    assert not torch.allclose(memory, in_context)
    ids, _, gen = generate_background(model, tok, QUESTIONS[:1], config)
    background = ids[0][gen[0]].unsqueeze(0)  # the generated tokens alone
    with torch.no_grad():
        hs = model(input_ids=background, output_hidden_states=True).hidden_states
    states = torch.stack([hs[layer] for layer in config.layers])  # [L, 1, T, H]
    every = torch.ones(background.shape, dtype=torch.bool)
    expected = _finish(cls(config)._pool(states, every, every), config)
    torch.testing.assert_close(memory[:1], expected, rtol=0, atol=1e-4)


def test_default_readout_configs_are_consistent():
    for cls in collect("register_readouts").values():
        readout = cls()
        assert readout.config.kind == cls.kind


@pytest.mark.parametrize("kind", PROJECTOR_KINDS)
def test_projector_shapes_and_safetensors_round_trip(kind, tmp_path):
    from safetensors.torch import load_file, save_file

    config = ProjectorConfig(kind=kind, expert_hidden=48, base_hidden=64, slots=3, layers=4, output_scale=0.5)
    torch.manual_seed(0)
    bundle = ProjectorBundle(config, collect("register_projectors")[kind]).eval()
    memory = torch.randn(2, 4, 3, 48)
    out = bundle(memory)
    assert out.shape == (2, 3, 64) and torch.isfinite(out).all()
    save_file({k: v.contiguous() for k, v in bundle.state_dict().items()}, str(tmp_path / "p.safetensors"))
    again = ProjectorBundle(config, collect("register_projectors")[kind]).eval()
    again.load_state_dict(load_file(str(tmp_path / "p.safetensors")))
    torch.testing.assert_close(again(memory), out, rtol=0, atol=0)
    assert out.dtype == torch.float32 and bundle(memory.bfloat16()).dtype == torch.float32


def test_standardizer_is_fitted_saved_and_applied(tmp_path):
    from safetensors.torch import load_file, save_file

    config = ProjectorConfig(expert_hidden=8, base_hidden=6, slots=2, layers=3, standardize=True)
    torch.manual_seed(0)
    bundle = ProjectorBundle(config).eval()
    train = 5.0 + 3.0 * torch.randn(64, 3, 2, 8)
    bundle.fit_standardizer(train)
    torch.testing.assert_close(bundle.input_mean, train.mean(0))
    torch.testing.assert_close(bundle.input_std, train.std(0))
    # the projector sees standardised input: same output as a plain bundle fed (x - mean) / std
    plain = ProjectorBundle(ProjectorConfig(expert_hidden=8, base_hidden=6, slots=2, layers=3)).eval()
    plain.load_state_dict({k: v for k, v in bundle.state_dict().items() if not k.startswith("input_")})
    x = train[:4]
    torch.testing.assert_close(bundle(x), plain((x - train.mean(0)) / train.std(0)))
    save_file({k: v.contiguous() for k, v in bundle.state_dict().items()}, str(tmp_path / "p.safetensors"))
    again = ProjectorBundle(config).eval()
    again.load_state_dict(load_file(str(tmp_path / "p.safetensors")))
    torch.testing.assert_close(again(x), bundle(x), rtol=0, atol=0)
    # a constant feature gets the floor std, not a division by zero
    flat = torch.zeros(10, 3, 2, 8)
    bundle.fit_standardizer(flat)
    assert torch.isfinite(bundle(flat[:2])).all()


def test_anchored_projector_starts_as_the_map_between_vocabularies():
    from gag_core.projectors import AnchoredResidualProjector

    torch.manual_seed(0)
    config = ProjectorConfig(kind="anchored_residual", expert_hidden=16, base_hidden=24, slots=3, layers=1,
                             output_scale=0.05, standardize=True)
    bundle = ProjectorBundle(config).eval()
    assert not bundle.standardize and not hasattr(bundle, "input_mean")  # raw input: the anchor needs it
    expert_emb = torch.randn(300, 16)
    base_emb = expert_emb @ torch.randn(16, 24) + 0.3  # another model's embeddings of the same tokens
    residual = bundle.projector.anchor(expert_emb, base_emb, float(bundle.gain.detach()))
    assert residual < 1e-4
    # before any training, a token's expert embedding comes out as the base's embedding of that token
    out = bundle(expert_emb[:6].view(2, 1, 3, 16))
    torch.testing.assert_close(out.reshape(6, 24), base_emb[:6], atol=1e-4, rtol=1e-4)
    # same embeddings on both sides: the anchor is the identity (divided by the output gain)
    same = ProjectorBundle(ProjectorConfig(kind="anchored_residual", expert_hidden=16, base_hidden=16, slots=1,
                                           layers=1, output_scale=0.05))
    same.projector.anchor(expert_emb, expert_emb, 0.05)
    torch.testing.assert_close(same.projector.anchor_map.weight * 0.05, torch.eye(16), atol=1e-4, rtol=0)
    unseen = torch.randn(5, 16)  # vectors the fit never saw pass through unchanged
    torch.testing.assert_close(same(unseen.view(5, 1, 1, 16)).squeeze(1), unseen, atol=1e-4, rtol=1e-4)
    # the learned correction starts at zero
    assert isinstance(same.projector, AnchoredResidualProjector)
    assert not same.projector.mlp[-1].weight.detach().any()
    with pytest.raises(ConfigError, match="row for row"):
        same.projector.anchor(expert_emb, expert_emb[:10], 0.05)


def test_input_noise_only_while_training():
    bundle = ProjectorBundle(ProjectorConfig(expert_hidden=8, base_hidden=6, slots=2, layers=1, standardize=True))
    x = torch.randn(3, 1, 2, 8)
    bundle.eval()
    torch.testing.assert_close(bundle(x, noise=1.0), bundle(x), rtol=0, atol=0)
    bundle.train()
    assert not torch.allclose(bundle(x, noise=1.0), bundle(x, noise=0.0))


def test_projector_refuses_memory_of_the_wrong_shape():
    bundle = ProjectorBundle(ProjectorConfig(expert_hidden=48, base_hidden=64, slots=2, layers=4))
    with pytest.raises(InjectionError, match="layers=1, slots=2, hidden=48.*expects.*layers=4"):
        bundle(torch.randn(1, 1, 2, 48))
    with pytest.raises(ConfigError, match="batch, layers, slots, hidden"):
        bundle(torch.randn(2, 48))


def test_layer_mixer_starts_as_the_mean_over_layers():
    bundle = ProjectorBundle(ProjectorConfig(expert_hidden=4, base_hidden=4, slots=2, layers=3))
    memory = torch.randn(5, 3, 2, 4)
    torch.testing.assert_close(bundle.mixer(memory), memory.mean(1))


# --- configs -----------------------------------------------------------------------------------------

def test_readout_config_validation():
    with pytest.raises(ConfigError, match="slots to 1"):
        ReadoutConfig(kind="final_token", layers=[-4], slots=4)
    with pytest.raises(ConfigError, match="Invalid readout kind"):
        ReadoutConfig(kind="Not A Kind!")
    with pytest.raises(ConfigError, match="slots"):
        ReadoutConfig(slots=0)
    with pytest.raises(ConfigError, match="layers"):
        ReadoutConfig(layers=[])
    with pytest.raises(ConfigError, match="pooling"):
        ReadoutConfig(pooling="max")
    with pytest.raises(ConfigError, match="reencode"):
        ReadoutConfig(kind="prefill", reencode=True)
    assert ReadoutConfig(kind="a_plugins_kind").kind == "a_plugins_kind"  # plugins add kinds
    assert ReadoutConfig(layers=["-1", -2]).layers == [-1, -2]


def test_projector_config_validation():
    with pytest.raises(ConfigError, match="Invalid projector kind"):
        ProjectorConfig(kind="")
    with pytest.raises(ConfigError, match="expert_hidden"):
        ProjectorConfig(expert_hidden=0)
    assert ProjectorConfig(base_hidden=32).hidden == 32
    with pytest.raises(ConfigError, match="not built in.*plugin"):
        ProjectorBundle(ProjectorConfig(kind="a_plugins_kind"))


def test_out_of_range_layer_is_a_config_error(expert):
    model, tok = expert
    readout = collect("register_readouts")["prefill"](ReadoutConfig(kind="prefill", layers=[-40], slots=1))
    with pytest.raises(ConfigError, match="out of range"):
        readout.read(model, tok, QUESTIONS[:1])


# --- pooling -----------------------------------------------------------------------------------------

def test_pool_segments_modes():
    states = torch.arange(12, dtype=torch.float32).view(6, 2)
    mask = torch.tensor([False, True, True, True, True, False])  # valid rows 1..4
    assert pool_segments(states, mask, 2, "mean").tolist() == [[3.0, 4.0], [7.0, 8.0]]
    assert pool_segments(states, mask, 2, "last").tolist() == [[4.0, 5.0], [8.0, 9.0]]
    weighted = pool_segments(states, mask, 1, "norm_softmax")
    assert weighted.shape == (1, 2) and weighted[0, 0] > 5.0  # leans to the larger-norm tokens
    assert pool_segments(states, mask, 6, "mean").shape == (6, 2)  # fewer tokens than slots: repeats
    assert torch.equal(pool_segments(states, torch.zeros(6, dtype=torch.bool), 3, "mean"), torch.zeros(3, 2))


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_layer_zero_readout_skips_the_forward_pass_exactly(arch):
    """Layer 0 alone is read straight from the embedding table: the same states as the full forward's first."""
    from gag_core.readouts import _forward_states
    from tests import tiny

    model = tiny.make_model(arch, vocab=64).eval()
    ids = torch.randint(3, 64, (2, 7))
    attn = torch.ones_like(ids)
    attn[1, 5:] = 0
    fast = _forward_states(model, ids, attn, [0])
    full = model(input_ids=ids, attention_mask=attn, output_hidden_states=True).hidden_states[0]
    assert fast.shape == (1, 2, 7, 64)
    assert torch.equal(fast[0], full)


def test_token_pooling_gives_each_token_its_own_slot_and_zeros_after():
    from gag_core.readouts import pool_segments

    states = torch.arange(1, 6, dtype=torch.float).unsqueeze(-1).repeat(1, 3)  # tokens 1..5, H = 3
    mask = torch.tensor([True, True, True, False, False])
    pooled = pool_segments(states, mask, 5, "token")
    assert pooled[:, 0].tolist() == [1, 2, 3, 0, 0]  # never repeated, as mean pooling does
    assert pool_segments(states, mask, 5, "mean")[:, 0].tolist() == [1, 1, 2, 2, 3]
    longer = pool_segments(states, torch.ones(5, dtype=torch.bool), 2, "token")  # more tokens than slots: means
    assert longer[:, 0].tolist() == pool_segments(states, torch.ones(5, dtype=torch.bool), 2, "mean")[:, 0].tolist()
