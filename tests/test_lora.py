"""LoRA: the layer, wrapping, merging, PEFT's file format, and interoperability with peft."""
import copy
import json
import warnings

import pytest
import torch
import torch.nn as nn

from llmtap.lora import (LoRALinear, add_lora, load_lora, lora_layers, lora_state_dict, mark_only_lora_as_trainable,
                         merge_lora, save_lora, unmerge_lora)
from llmtap.model import GPT, GPTConfig
from llmtap.train import count_parameters

transformers = pytest.importorskip("transformers")
warnings.filterwarnings("ignore", category=UserWarning)


@pytest.fixture
def gpt2():
    from llmtap.hf import random_gpt2
    model, _ = random_gpt2(n_layer=2, n_head=2, n_embd=32, n_positions=32, seed=0)
    return model


@pytest.fixture
def course_gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()


def randomize_b(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g))


X = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------- the layer
@pytest.mark.parametrize("kind", ["linear", "conv1d"])
def test_lora_layer_is_w0x_plus_scaled_bax(kind):
    torch.manual_seed(0)
    if kind == "linear":
        base = nn.Linear(12, 20)
        dense = lambda x, W: x @ W.T + base.bias
    else:
        from transformers.pytorch_utils import Conv1D
        base = Conv1D(20, 12)                                       # weight (d_in, d_out) = (12, 20)
        dense = lambda x, W: x @ W + base.bias
    layer = LoRALinear(base, r=3, alpha=6)
    x = torch.randn(4, 7, 12)
    assert torch.equal(layer(x), base(x))                           # B = 0: exactly the base layer
    with torch.no_grad():
        layer.lora_B.normal_()
    BA = layer.lora_B @ layer.lora_A * (6 / 3)
    want = dense(x, base.weight + (BA.T if kind == "conv1d" else BA))
    assert torch.allclose(layer(x), want, atol=1e-5)
    assert layer.lora_A.shape == (3, 12) and layer.lora_B.shape == (20, 3)


def test_lora_init_a_is_gaussian_b_is_zero():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(512, 512), r=8, alpha=16)
    a = layer.lora_A.detach()
    assert torch.count_nonzero(layer.lora_B) == 0
    assert abs(a.mean().item()) < 0.01 and abs(a.std().item() - 1 / 8) < 0.01


def test_dropout_only_touches_the_update():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(8, 8), r=2, alpha=2, dropout=0.5).train()
    x = torch.randn(3, 8)
    assert torch.equal(layer(x), layer.base_layer(x))               # B = 0, whatever the dropout
    assert isinstance(LoRALinear(nn.Linear(8, 8), 2, 2, 0.0).lora_dropout, nn.Identity)


def test_lora_under_bf16_autocast(course_gpt):
    base = course_gpt(X)[0]
    add_lora(course_gpt, ["c_attn", "c_fc"], r=4, alpha=8)
    randomize_b(course_gpt)
    with torch.no_grad():
        for layer in lora_layers(course_gpt).values():
            layer.lora_B.mul_(0.1)              # an update of the size training produces
    full = course_gpt(X)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = course_gpt(X)[0]
    assert low.dtype == torch.bfloat16
    # bf16 keeps ~3 significant digits: its rounding error must stay well below what the update changes
    assert (low.float() - full).abs().max().item() < 0.1 * (full - base).abs().max().item()


# ----------------------------------------------------------------------------- wrapping
def test_add_lora_on_the_course_model(course_gpt):
    before = course_gpt(X)[0]
    total_before = count_parameters(course_gpt)[1]
    add_lora(course_gpt, ["c_attn"], r=4, alpha=8)
    assert sorted(lora_layers(course_gpt)) == ["h.0.attn.c_attn", "h.1.attn.c_attn"]
    assert torch.equal(course_gpt(X)[0], before)
    trainable, total = count_parameters(course_gpt)
    assert trainable == 2 * 4 * (32 + 96) and total == total_before + trainable
    assert all(("lora_" in n) == p.requires_grad for n, p in course_gpt.named_parameters())


def test_training_moves_only_lora(course_gpt):
    add_lora(course_gpt, ["c_attn", "c_proj"], r=2, alpha=4)
    frozen = {n: p.clone() for n, p in course_gpt.named_parameters() if not p.requires_grad}
    opt = torch.optim.AdamW([p for p in course_gpt.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(20):
        _, loss = course_gpt(X, targets=X)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(torch.equal(p, frozen[n]) for n, p in course_gpt.named_parameters() if n in frozen)


@pytest.mark.parametrize("targets, expected", [
    (["c_attn"], ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]),
    (["attn.c_proj"], ["transformer.h.0.attn.c_proj", "transformer.h.1.attn.c_proj"]),
    (["transformer.h.1.mlp.c_fc"], ["transformer.h.1.mlp.c_fc"]),
    (r".*\.1\.attn\.c_(attn|proj)", ["transformer.h.1.attn.c_attn", "transformer.h.1.attn.c_proj"]),
])
def test_target_matching_follows_peft(gpt2, targets, expected):
    from peft import LoraConfig, get_peft_model
    add_lora(gpt2, targets, r=2)
    assert sorted(lora_layers(gpt2)) == expected
    from llmtap.hf import random_gpt2
    fresh, _ = random_gpt2(n_layer=2, n_head=2, n_embd=32, n_positions=32)
    peft_model = get_peft_model(fresh, LoraConfig(r=2, target_modules=targets))
    peft_names = sorted(n.removeprefix("base_model.model.") for n, m in peft_model.named_modules()
                        if hasattr(m, "lora_A") and hasattr(m, "base_layer"))
    assert peft_names == expected


@pytest.mark.parametrize("kwargs, match", [
    (dict(r=0), "positive int"), (dict(r=-2), "positive int"), (dict(r=2.5), "positive int"),
    (dict(alpha=0), "alpha must be a positive"), (dict(alpha=-1), "alpha must be a positive"),
    (dict(dropout=1.0), "dropout"), (dict(r=64), "rank at most 32"),
    (dict(target_modules=["q_proj"]), "matches no linear layer"), (dict(target_modules=[]), "non-empty list"),
])
def test_add_lora_bad_inputs(gpt2, kwargs, match):
    args = dict(target_modules=["c_attn"], r=4, alpha=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        add_lora(gpt2, **args)
    assert not lora_layers(gpt2)                       # nothing was wrapped halfway


def test_no_match_error_lists_candidates(gpt2):
    with pytest.raises(ValueError) as e:
        add_lora(gpt2, ["query"])
    assert "c_attn" in str(e.value) and "c_fc" in str(e.value) and "transformer.h.0" in str(e.value)


def test_wrapping_twice_is_an_error(gpt2):
    add_lora(gpt2, ["c_attn"], r=2)
    with pytest.raises(ValueError, match="wrapped with LoRA already"):
        add_lora(gpt2, ["c_attn"], r=2)
    with pytest.raises(ValueError, match="wrapped with LoRA already"):
        add_lora(gpt2, r".*attn\.c_attn\.base_layer", r=2)


def test_functions_need_lora_layers(gpt2, tmp_path):
    for fn in (merge_lora, unmerge_lora, lora_state_dict):
        with pytest.raises(ValueError, match="add_lora"):
            fn(gpt2)
    with pytest.raises(ValueError, match="add_lora"):
        save_lora(gpt2, tmp_path)


# ----------------------------------------------------------------------------- merge / unmerge
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_merge_is_free_and_unmerge_is_bit_exact(gpt2, dtype):
    gpt2 = gpt2.to(dtype)
    add_lora(gpt2, ["c_attn", "c_fc"], r=4, alpha=8)
    randomize_b(gpt2)
    x = torch.randint(0, 256, (2, 12))
    weights = {n: p.clone() for n, p in gpt2.state_dict().items()}
    unmerged = gpt2(x).logits
    merge_lora(gpt2)
    assert all(l.merged for l in lora_layers(gpt2).values())
    tol = 1e-4 if dtype == torch.float32 else 0.1
    assert (gpt2(x).logits.float() - unmerged.float()).abs().max().item() < tol
    merge_lora(gpt2)                                   # merging twice changes nothing
    unmerge_lora(gpt2)
    assert all(torch.equal(p, weights[n]) for n, p in gpt2.state_dict().items())
    for _ in range(1000 if dtype == torch.bfloat16 else 50):     # many cycles, still bit-exact
        merge_lora(gpt2)
        unmerge_lora(gpt2)
    assert all(torch.equal(p, weights[n]) for n, p in gpt2.state_dict().items())
    assert torch.equal(gpt2(x).logits, unmerged)


def test_merged_layer_does_no_extra_work(course_gpt):
    add_lora(course_gpt, ["c_attn"], r=2)
    merge_lora(course_gpt)
    layer = course_gpt.h[0].attn.c_attn
    with torch.no_grad():
        layer.lora_A.fill_(float("nan"))               # the forward must not touch A or B any more
    assert torch.isfinite(course_gpt(X)[0]).all()


# ----------------------------------------------------------------------------- PEFT format and interop
def peft_twin(model_factory, targets, r, alpha, seed=3):
    from peft import LoraConfig, get_peft_model
    peft_model = get_peft_model(model_factory(), LoraConfig(r=r, lora_alpha=alpha, target_modules=targets,
                                                            task_type="CAUSAL_LM"))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g))
    return peft_model.eval()


def fresh_gpt2():
    from llmtap.hf import random_gpt2
    return random_gpt2(n_layer=2, n_head=2, n_embd=32, n_positions=32, seed=0)[0]


def test_numerically_equal_to_peft():
    peft_model = peft_twin(fresh_gpt2, ["c_attn", "c_proj", "c_fc"], r=4, alpha=16)
    ours = add_lora(fresh_gpt2(), ["c_attn", "c_proj", "c_fc"], r=4, alpha=16)
    with torch.no_grad():
        for name, layer in lora_layers(ours).items():
            theirs = peft_model.base_model.model.get_submodule(name)
            layer.lora_A.copy_(theirs.lora_A["default"].weight)
            layer.lora_B.copy_(theirs.lora_B["default"].weight)
    x = torch.randint(0, 256, (3, 16))
    with torch.no_grad():
        assert torch.allclose(ours(x).logits, peft_model(x).logits, atol=1e-5)
    assert count_parameters(ours)[0] == sum(p.numel() for p in peft_model.parameters() if p.requires_grad)


def test_peft_saves_llmtap_loads(tmp_path):
    peft_model = peft_twin(fresh_gpt2, ["c_attn", "c_proj"], r=4, alpha=8)
    peft_model.save_pretrained(tmp_path)
    ours = load_lora(fresh_gpt2(), tmp_path)               # wraps the model as the config says
    x = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        assert torch.allclose(ours(x).logits, peft_model(x).logits, atol=1e-6)


def test_llmtap_saves_peft_loads(tmp_path):
    from peft import PeftModel
    ours = add_lora(fresh_gpt2(), ["c_attn", "mlp.c_proj"], r=2, alpha=4)
    randomize_b(ours)
    save_lora(ours, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 2 and config["lora_alpha"] == 4
    assert config["fan_in_fan_out"] is True
    theirs = PeftModel.from_pretrained(fresh_gpt2(), tmp_path).eval()
    x = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        assert torch.allclose(theirs(x).logits, ours(x).logits, atol=1e-6)


def test_save_then_load_is_bitwise(course_gpt, tmp_path):
    add_lora(course_gpt, ["c_attn", "c_fc"], r=4, alpha=8)
    randomize_b(course_gpt)
    save_lora(course_gpt, tmp_path / "adapter")
    torch.manual_seed(0)
    other = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()
    load_lora(other, tmp_path / "adapter")
    a, b = lora_state_dict(course_gpt), lora_state_dict(other)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(course_gpt(X)[0], other(X)[0])


def test_load_into_a_model_it_does_not_fit(course_gpt, tmp_path):
    add_lora(course_gpt, ["c_attn"], r=4, alpha=8)
    save_lora(course_gpt, tmp_path / "a")
    deeper = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=3, n_head=2, n_embd=32))
    add_lora(deeper, ["c_attn"], r=4, alpha=8)
    with pytest.raises(ValueError, match=r"missing keys \['base_model.model.h.2.attn.c_attn.lora_A.weight'"):
        load_lora(deeper, tmp_path / "a")
    wider = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=64))
    add_lora(wider, ["c_attn"], r=4, alpha=8)
    with pytest.raises(ValueError, match=r"wrong shape: \['base_model.model.h.0.attn.c_attn.lora_A.weight"):
        load_lora(wider, tmp_path / "a")
    other_rank = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32))
    add_lora(other_rank, ["c_attn"], r=2, alpha=8)
    with pytest.raises(ValueError, match="wrong shape"):
        load_lora(other_rank, tmp_path / "a")


def test_load_bad_files(course_gpt, tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_lora(course_gpt, tmp_path)
    add_lora(course_gpt, ["c_attn"], r=2)
    save_lora(course_gpt, tmp_path)
    (tmp_path / "adapter_model.safetensors").write_bytes(b"\x80\x04 not safetensors")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_lora(course_gpt, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    (tmp_path / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ValueError, match="use_dora"):
        load_lora(course_gpt, tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "IA3"}))
    with pytest.raises(ValueError, match="not LORA"):
        load_lora(course_gpt, tmp_path)


def test_mark_only_lora_as_trainable(course_gpt):
    add_lora(course_gpt, ["c_attn"], r=2)
    for p in course_gpt.parameters():
        p.requires_grad = True
    mark_only_lora_as_trainable(course_gpt)
    assert count_parameters(course_gpt)[0] == 2 * 2 * (32 + 96)


@pytest.mark.cuda
def test_lora_on_cuda_matches_cpu(course_gpt):
    add_lora(course_gpt, ["c_attn", "c_fc"], r=4, alpha=8)
    randomize_b(course_gpt)
    want = course_gpt(X)[0]
    gpu = copy.deepcopy(course_gpt).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = gpu(X.cuda())[0]
    assert (got.float().cpu() - want).abs().max().item() < 0.1
    merge_lora(gpu)
    unmerge_lora(gpu)
    assert all(torch.equal(a.cpu(), b) for a, b in zip(gpu.state_dict().values(), course_gpt.state_dict().values()))
