"""Houlsby adapters: identity at the start, placement in the block, freezing, HF GPT-2, saving and loading."""
import copy
import warnings

import pytest
import torch
import torch.nn.functional as F

from llmtap.adapters import (Adapter, WithAdapter, adapter_layers, adapter_state_dict, add_adapters, load_adapters,
                             save_adapters)
from llmtap.lora import add_lora
from llmtap.model import GPT, GPTConfig
from llmtap.train import count_parameters

warnings.filterwarnings("ignore", category=UserWarning)
X = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(0))


@pytest.fixture
def course_gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()


@pytest.fixture
def gpt2():
    pytest.importorskip("transformers")
    from llmtap.hf import random_gpt2
    model, _ = random_gpt2(n_layer=2, n_head=2, n_embd=32, n_positions=32, seed=0)
    return model


def randomize_up(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a in adapter_layers(model).values():
            a.up.weight.copy_(torch.randn(a.up.weight.shape, generator=g) * 0.1)
            a.up.bias.copy_(torch.randn(a.up.bias.shape, generator=g) * 0.1)


def test_adapter_is_identity_at_init_and_residual_bottleneck_after():
    torch.manual_seed(0)
    a = Adapter(16, 4)
    h = torch.randn(3, 5, 16)
    assert torch.equal(a(h), h)
    randomize = torch.Generator().manual_seed(2)
    with torch.no_grad():
        a.up.weight.copy_(torch.randn(16, 4, generator=randomize))
    want = h + F.gelu(h @ a.down.weight.T + a.down.bias) @ a.up.weight.T + a.up.bias
    assert torch.allclose(a(h), want, atol=1e-6)
    assert not torch.allclose(a(h), h)
    assert sum(p.numel() for p in a.parameters()) == 2 * 16 * 4 + 4 + 16


def test_course_model_adapters_start_as_the_base_and_only_they_train(course_gpt):
    base_logits = course_gpt(X)[0]
    model = add_adapters(copy.deepcopy(course_gpt), bottleneck=4)
    assert torch.equal(model(X)[0], base_logits)
    assert len(adapter_layers(model)) == 2 * 2
    assert all(isinstance(b.adapter_attn, Adapter) and isinstance(b.adapter_mlp, Adapter) for b in model.h)
    trainable, total = count_parameters(model)
    per_adapter = 2 * 32 * 4 + 4 + 32
    assert trainable == 4 * per_adapter and total == count_parameters(course_gpt)[1] + 4 * per_adapter
    assert {n.split(".")[2] for n, p in model.named_parameters() if p.requires_grad} == {"adapter_attn", "adapter_mlp"}
    randomize_up(model)
    assert not torch.allclose(model(X)[0], base_logits)


def test_adapters_sit_before_the_residual_adds(course_gpt):
    """Adapter(Attn(LN(x))) is added to x: check block 0 by hand."""
    model = add_adapters(copy.deepcopy(course_gpt), bottleneck=4)
    randomize_up(model)
    block = model.h[0]
    x = torch.randn(2, 5, 32)
    y = x + block.adapter_attn(block.attn(block.ln_1(x)))
    want = y + block.adapter_mlp(block.mlp(block.ln_2(y)))
    assert torch.allclose(block(x), want, atol=1e-6)
    assert not torch.allclose(block(x), course_gpt.h[0](x), atol=1e-4)


def test_layer_norms_can_train_too(course_gpt):
    model = add_adapters(copy.deepcopy(course_gpt), bottleneck=4, train_layer_norms=True)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert "h.0.ln_1.weight" in names and "ln_f.bias" in names
    assert not any("c_attn" in n or "wte" in n for n in names)


def test_adapters_train_with_the_training_loop(course_gpt):
    from llmtap.train import TrainConfig, train
    model = add_adapters(copy.deepcopy(course_gpt), bottleneck=4)
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    g = torch.Generator().manual_seed(0)
    batches = lambda: (torch.randint(0, 50, (4, 12), generator=g),) * 2
    history = train(model, batches, TrainConfig(steps=30, lr=1e-2, warmup_steps=2, log_every=10, progress=False),
                    device="cpu")
    assert history["loss"][-1] < history["loss"][0]
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert any(a.up.weight.abs().sum() > 0 for a in adapter_layers(model).values())


def test_hf_gpt2_adapters_wrap_c_proj(gpt2):
    x = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = gpt2(x).logits
    model = add_adapters(copy.deepcopy(gpt2), bottleneck=8)
    for block in model.transformer.h:
        assert isinstance(block.attn.c_proj, WithAdapter) and isinstance(block.mlp.c_proj, WithAdapter)
    with torch.no_grad():
        assert torch.equal(model(x).logits, before)
        randomize_up(model)
        assert not torch.allclose(model(x).logits, before)
    trainable, total = count_parameters(model)
    assert trainable == 4 * (2 * 32 * 8 + 8 + 32) and total == count_parameters(gpt2)[1] + trainable
    # a training step moves only the adapters
    model.train()
    model(input_ids=x, labels=x).loss.backward()
    assert all((p.grad is not None) == p.requires_grad for p in model.parameters())


def test_save_load_round_trip(course_gpt, gpt2, tmp_path):
    for base, x in ((course_gpt, X), (gpt2, X)):
        model = add_adapters(copy.deepcopy(base), bottleneck=4)
        randomize_up(model)
        path = save_adapters(model, tmp_path / f"{type(base).__name__}.safetensors")
        fresh = load_adapters(copy.deepcopy(base), path)
        assert adapter_state_dict(fresh).keys() == adapter_state_dict(model).keys()
        assert all(torch.equal(a, b) for a, b in zip(adapter_state_dict(fresh).values(),
                                                     adapter_state_dict(model).values()))
        with torch.no_grad():
            out = (lambda m: m(x)[0]) if isinstance(base, GPT) else (lambda m: m(x).logits)
            assert torch.equal(out(fresh), out(model))


def test_load_refuses_what_does_not_fit(course_gpt, tmp_path):
    path = save_adapters(add_adapters(copy.deepcopy(course_gpt), bottleneck=4), tmp_path / "a.safetensors")
    with pytest.raises(ValueError, match="shape"):
        load_adapters(add_adapters(copy.deepcopy(course_gpt), bottleneck=8), path)
    other = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=3, n_head=2, n_embd=32))
    with pytest.raises(ValueError, match="missing"):
        load_adapters(other, path)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="safetensors"):
        load_adapters(copy.deepcopy(course_gpt), tmp_path / "junk.safetensors")
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not llmtap adapters"):
        load_adapters(copy.deepcopy(course_gpt), tmp_path / "other.safetensors")


@pytest.mark.parametrize("bottleneck", [0, -3, 2.5, True, "8"])
def test_bad_bottleneck(course_gpt, bottleneck):
    with pytest.raises(ValueError, match="bottleneck"):
        add_adapters(copy.deepcopy(course_gpt), bottleneck=bottleneck)
    with pytest.raises(ValueError, match="bottleneck"):
        Adapter(8, bottleneck)


def test_bad_models_and_double_adding(course_gpt):
    model = add_adapters(copy.deepcopy(course_gpt), bottleneck=4)
    with pytest.raises(ValueError, match="once"):
        add_adapters(model, bottleneck=4)
    with pytest.raises(TypeError, match="GPT-2"):
        add_adapters(torch.nn.Linear(3, 3), bottleneck=4)
    with pytest.raises(ValueError, match="no adapters"):
        adapter_state_dict(course_gpt)


def test_adapters_and_lora_coexist(course_gpt):
    """The shared freezing helper: adding LoRA after adapters trains LoRA only (its own rule)."""
    model = add_lora(add_adapters(copy.deepcopy(course_gpt), bottleneck=4), ["c_attn"], r=2)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n for n in names)
