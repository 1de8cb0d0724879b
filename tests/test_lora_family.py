"""The LoRA family: rsLoRA, DoRA, PiSSA, OLoRA and LoRA+, against their formulas and against peft.

Parity with peft: the same random Hugging Face model, the same A, B (and m) copied across, logits
within 1e-6 (they agree bit for bit on this machine). GPT-2's layers are Conv1D; OLoRA is compared on
a small random Llama (nn.Linear), because peft 0.21 factorises Conv1D's stored d_in x d_out matrix
for OLoRA, which breaks its residual (llmtap factorises the d_out x d_in weight, tested below).
"""
import json
import math
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from llmtap.lora import (LoRALinear, add_lora, load_lora, lora_layers, lora_plus_param_groups, lora_state_dict,
                         merge_lora, save_lora, unmerge_lora)

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
warnings.filterwarnings("ignore", category=UserWarning)

TOL = 1e-6          # logits of order 1; observed differences are 0.0
GPT2_TARGETS = ["c_attn", "c_proj", "c_fc"]
LLAMA_TARGETS = ["q_proj", "v_proj", "up_proj", "down_proj"]
X = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))


def gpt2():
    from llmtap.hf import random_gpt2
    return random_gpt2(n_layer=2, n_head=2, n_embd=32, n_positions=32, seed=0)[0]


def llama():
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)).eval()


def logits(model, x=X):
    with torch.no_grad():
        return model(x).logits


def layer(kind, d_in=12, d_out=20, seed=0):
    torch.manual_seed(seed)
    if kind == "linear":
        return nn.Linear(d_in, d_out)
    from transformers.pytorch_utils import Conv1D
    return Conv1D(d_out, d_in)                          # weight stored (d_in, d_out)


def dense_w(base):
    """W0 as d_out x d_in, whatever the layer stores."""
    return base.weight.T if type(base).__name__ == "Conv1D" else base.weight


def perturb(model, seed=1, scale=0.1):
    """Move B (and m) away from their start, as training would; returns the model."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n or "lora_magnitude_vector" in n:
                p.add_(torch.randn(p.shape, generator=g) * scale * (p.abs().mean() if "magnitude" in n else 1))
    return model


# ----------------------------------------------------------------------------- rsLoRA
def test_rslora_scales_by_alpha_over_sqrt_r():
    base = layer("linear")
    plain, rs = LoRALinear(base, r=4, alpha=8), LoRALinear(base, r=4, alpha=8, use_rslora=True)
    assert plain.scaling == 8 / 4 and rs.scaling == 8 / math.sqrt(4)
    with torch.no_grad():
        rs.lora_B.normal_()
    x = torch.randn(3, 12)
    want = base(x) + (8 / math.sqrt(4)) * x @ (rs.lora_B @ rs.lora_A).T
    assert torch.allclose(rs(x), want, atol=1e-5)


# ----------------------------------------------------------------------------- DoRA
@pytest.mark.parametrize("kind", ["linear", "conv1d"])
def test_dora_is_magnitude_times_unit_direction(kind):
    base = layer(kind)
    d = LoRALinear(base, r=3, alpha=6, use_dora=True)
    W0 = dense_w(base)
    assert torch.allclose(d.lora_magnitude_vector, W0.norm(dim=1))          # m = ||W0||_c, one per output feature
    assert d.lora_magnitude_vector.shape == (20,) and d.lora_magnitude_vector.requires_grad
    x = torch.randn(4, 5, 12)
    assert torch.equal(d(x), base(x))                                         # B = 0, g = 1: exactly the base
    with torch.no_grad():
        d.lora_B.normal_()
        d.lora_magnitude_vector.mul_(torch.rand(20) + 0.5)
    V = W0 + 2.0 * d.lora_B @ d.lora_A                                        # W0 + s·BA
    W = d.lora_magnitude_vector[:, None] * V / V.norm(dim=1, keepdim=True)   # m · V / ||V||_c
    assert torch.allclose(d(x), F.linear(x, W, base.bias), atol=1e-5)


def test_dora_treats_the_norm_as_a_constant_in_backward():
    base = layer("linear")
    d = LoRALinear(base, r=3, alpha=6, use_dora=True)
    with torch.no_grad():
        d.lora_B.normal_()
        d.lora_magnitude_vector.mul_(1.3)
    x = torch.randn(8, 12)

    def grads(detach):
        m, A, B = (t.detach().clone().requires_grad_() for t in (d.lora_magnitude_vector, d.lora_A, d.lora_B))
        V = base.weight + 2.0 * B @ A
        norm = V.norm(dim=1, keepdim=True)
        W = m[:, None] * V / (norm.detach() if detach else norm)
        F.linear(x, W, base.bias).pow(2).sum().backward()
        return m.grad, A.grad, B.grad

    d(x).pow(2).sum().backward()
    ours = (d.lora_magnitude_vector.grad, d.lora_A.grad, d.lora_B.grad)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(ours, grads(detach=True)))
    assert not torch.allclose(ours[2], grads(detach=False)[2], atol=1e-4)    # the test can tell the two apart


def test_dora_dropout_acts_on_the_input_of_the_correction():
    torch.manual_seed(0)
    d = LoRALinear(nn.Linear(12, 20), r=3, alpha=6, dropout=0.5, use_dora=True).train()
    with torch.no_grad():
        d.lora_B.normal_()
        d.lora_magnitude_vector.mul_(1.2)
    x = torch.randn(4, 12)
    torch.manual_seed(7)
    out = d(x)
    torch.manual_seed(7)
    x_d = d.lora_dropout(x)                                 # the same mask
    W0, b = d.base_layer.weight, d.base_layer.bias
    g = d.lora_magnitude_vector / d.weight_norm()
    want = x @ W0.T + b + (g - 1) * (x_d @ W0.T) + g * 2.0 * (x_d @ d.lora_A.T @ d.lora_B.T)
    assert torch.allclose(out, want, atol=1e-5)


@pytest.mark.parametrize("kind", ["linear", "conv1d"])
def test_dora_merge_and_bit_exact_unmerge(kind):
    d = LoRALinear(layer(kind), r=3, alpha=6, use_dora=True).eval()
    with torch.no_grad():
        d.lora_B.normal_()
        d.lora_magnitude_vector.mul_(0.8)
    x = torch.randn(5, 12)
    w0, unmerged = d.base_layer.weight.clone(), d(x)
    d.merge()
    assert torch.allclose(d(x), unmerged, atol=1e-5)
    d.unmerge()
    assert torch.equal(d.base_layer.weight, w0) and torch.equal(d(x), unmerged)


@pytest.mark.parametrize("module", [nn.Embedding(10, 4), nn.Conv2d(3, 4, 3), nn.LayerNorm(4)])
def test_lora_layer_refuses_other_layer_types(module):
    with pytest.raises(TypeError, match="wraps nn.Linear, Hugging Face's Conv1D"):
        LoRALinear(module, r=2, alpha=4, use_dora=True)


# ----------------------------------------------------------------------------- PiSSA and OLoRA
@pytest.mark.parametrize("kind", ["linear", "conv1d"])
def test_pissa_starts_from_the_principal_singular_vectors(kind):
    base = layer(kind)
    W0 = dense_w(base).detach().clone()
    p = LoRALinear(base, r=3, alpha=6, init="pissa")
    U, S, Vh = torch.linalg.svd(W0, full_matrices=False)
    principal = U[:, :3] @ torch.diag(S[:3]) @ Vh[:3]
    assert torch.allclose(p.scaling * p.lora_B @ p.lora_A, principal, atol=1e-5)     # s·BA = U_r S_r V_rᵀ
    assert torch.allclose(p.lora_B.T @ p.lora_B, torch.diag(S[:3] / p.scaling), atol=1e-5)   # B = U_r (S_r / s)^½
    residual = dense_w(base)
    assert torch.allclose(residual, W0 - principal, atol=1e-5)                       # W0 became W_res
    assert torch.allclose(torch.linalg.svdvals(residual)[:9], S[3:12], atol=1e-5)
    x = torch.randn(4, 12)
    assert torch.allclose(p(x), x @ W0.T + base.bias, atol=1e-5)                     # output unchanged


@pytest.mark.parametrize("kind", ["linear", "conv1d"])
def test_olora_starts_from_the_qr_factors(kind):
    base = layer(kind)
    W0 = dense_w(base).detach().clone()
    o = LoRALinear(base, r=3, alpha=6, init="olora")
    Q, R = torch.linalg.qr(W0)
    assert torch.allclose(o.lora_B.T @ o.lora_B, torch.eye(3), atol=1e-5)             # B = Q_r: orthonormal
    assert torch.allclose(o.lora_B @ o.lora_A, Q[:, :3] @ R[:3], atol=1e-5)          # B A = Q_r R_r
    assert torch.count_nonzero(torch.tril(o.lora_A, diagonal=-1)) == 0                # A = R_r: upper triangular
    assert torch.allclose(dense_w(base), W0 - 2.0 * Q[:, :3] @ R[:3], atol=1e-5)
    x = torch.randn(4, 12)
    assert torch.allclose(o(x), x @ W0.T + base.bias, atol=1e-5)


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_residual_inits_merge_and_unmerge(init):
    model = perturb(add_lora(gpt2(), GPT2_TARGETS, r=4, alpha=8, init=init))
    residuals = {n: l.base_layer.weight.clone() for n, l in lora_layers(model).items()}
    before = logits(model)
    merge_lora(model)
    for n, l in lora_layers(model).items():                                   # W_res + s·BA
        assert torch.allclose(l.base_layer.weight, residuals[n] + l.delta_weight(), atol=1e-6)
    assert torch.allclose(logits(model), before, atol=1e-5)
    unmerge_lora(model)
    assert all(torch.equal(l.base_layer.weight, residuals[n]) for n, l in lora_layers(model).items())


# ----------------------------------------------------------------------------- parity with peft
METHODS = {   # name: (model factory, targets, peft LoraConfig options, add_lora options)
    "rslora": (gpt2, GPT2_TARGETS, dict(use_rslora=True), dict(use_rslora=True)),
    "dora": (gpt2, GPT2_TARGETS, dict(use_dora=True), dict(use_dora=True)),
    "dora+rslora": (gpt2, GPT2_TARGETS, dict(use_dora=True, use_rslora=True), dict(use_dora=True, use_rslora=True)),
    "pissa": (gpt2, GPT2_TARGETS, dict(init_lora_weights="pissa"), dict(init="pissa")),
    "pissa+dora": (gpt2, GPT2_TARGETS, dict(init_lora_weights="pissa", use_dora=True), dict(init="pissa", use_dora=True)),
    "olora": (llama, LLAMA_TARGETS, dict(init_lora_weights="olora"), dict(init="olora")),
    "dora-linear": (llama, LLAMA_TARGETS, dict(use_dora=True), dict(use_dora=True)),
}


def peft_model(method, **extra):
    from peft import LoraConfig, get_peft_model
    make, targets, peft_kw, _ = METHODS[method]
    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, task_type="CAUSAL_LM", **peft_kw, **extra)
    return get_peft_model(make(), config).eval()


def ours(method, **extra):
    make, targets, _, our_kw = METHODS[method]
    return add_lora(make(), targets, r=4, alpha=8, **our_kw, **extra).eval()


def peft_tensors(model, name):
    """(A, B, m or None, base weight) of peft's LoRA layer ``name``."""
    t = model.base_model.model.get_submodule(name)
    m = t.lora_magnitude_vector["default"].weight if "default" in t.lora_magnitude_vector else None
    return t.lora_A["default"].weight, t.lora_B["default"].weight, m, t.base_layer.weight


@pytest.mark.parametrize("method", list(METHODS))
def test_same_outputs_as_peft(method):
    theirs, mine = peft_model(method), ours(method)
    deterministic_init = METHODS[method][3].get("init") in ("pissa", "olora")
    with torch.no_grad():
        for name, l in lora_layers(mine).items():
            A, B, m, W = peft_tensors(theirs, name)
            if deterministic_init:               # the same A, B and residual from the same W0
                assert torch.allclose(l.lora_A, A, atol=1e-6) and torch.allclose(l.lora_B, B, atol=1e-6)
                assert torch.allclose(l.base_layer.weight, W, atol=1e-6)
            if m is not None:                    # m = ||W0||_c on both sides
                assert torch.allclose(l.lora_magnitude_vector, m, atol=1e-6)
    perturb(theirs)
    with torch.no_grad():
        for name, l in lora_layers(mine).items():
            A, B, m, W = peft_tensors(theirs, name)
            l.lora_A.copy_(A)
            l.lora_B.copy_(B)
            l.base_layer.weight.copy_(W)
            if m is not None:
                l.lora_magnitude_vector.copy_(m)
    want = logits(theirs)
    assert (logits(mine) - want).abs().max().item() <= TOL
    merge_lora(mine)
    theirs.merge_adapter()
    assert (logits(mine) - logits(theirs)).abs().max().item() <= TOL
    assert (logits(mine) - want).abs().max().item() < 1e-5


@pytest.mark.parametrize("method", ["rslora", "dora", "pissa", "pissa+dora", "olora"])
def test_peft_saves_llmtap_loads(method, tmp_path):
    theirs = perturb(peft_model(method))
    theirs.save_pretrained(tmp_path)
    mine = load_lora(METHODS[method][0](), tmp_path)          # the original base: the residual is recomputed
    assert (logits(mine) - logits(theirs)).abs().max().item() <= TOL


@pytest.mark.parametrize("method", ["rslora", "dora", "dora+rslora", "pissa", "pissa+dora", "olora"])
def test_llmtap_saves_peft_loads(method, tmp_path):
    from peft import PeftModel
    mine = perturb(ours(method))
    save_lora(mine, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    _, _, peft_kw, our_kw = METHODS[method]
    assert config["use_dora"] == our_kw.get("use_dora", False) and config["use_rslora"] == our_kw.get("use_rslora", False)
    assert config["init_lora_weights"] == our_kw.get("init", "gaussian")
    keys = set(lora_state_dict(mine))
    assert any(k.endswith(".lora_magnitude_vector") for k in keys) == our_kw.get("use_dora", False)
    theirs = PeftModel.from_pretrained(METHODS[method][0](), tmp_path).eval()
    assert (logits(theirs) - logits(mine)).abs().max().item() <= TOL


@pytest.mark.parametrize("init", ["gaussian", "pissa"])
def test_save_then_load_into_the_original_base(init, tmp_path):
    mine = perturb(add_lora(gpt2(), GPT2_TARGETS, r=4, alpha=8, use_dora=True, init=init))
    save_lora(mine, tmp_path)
    back = load_lora(gpt2(), tmp_path)
    a, b = lora_state_dict(mine), lora_state_dict(back)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(l.base_layer.weight, lora_layers(mine)[n].base_layer.weight)     # the same residual
               for n, l in lora_layers(back).items())
    assert torch.equal(logits(back), logits(mine))


@pytest.mark.filterwarnings("ignore:OLoRA on Conv1D")
def test_loading_into_a_model_wrapped_otherwise_is_an_error(tmp_path):
    save_lora(perturb(add_lora(gpt2(), ["c_attn"], r=4, alpha=8, init="pissa")), tmp_path / "pissa")
    with pytest.raises(ValueError, match="PiSSA and OLoRA change the base weight"):
        load_lora(add_lora(gpt2(), ["c_attn"], r=4, alpha=8), tmp_path / "pissa")
    save_lora(add_lora(gpt2(), ["c_attn"], r=4, alpha=8, init="olora"), tmp_path / "olora")
    with pytest.raises(ValueError, match="OLoRA residual"):
        load_lora(add_lora(gpt2(), ["c_attn"], r=4, alpha=16, init="olora"), tmp_path / "olora")
    save_lora(add_lora(gpt2(), ["c_attn"], r=4, alpha=8, use_dora=True), tmp_path / "dora")
    with pytest.raises(ValueError, match="use_dora=True"):
        load_lora(add_lora(gpt2(), ["c_attn"], r=4, alpha=8), tmp_path / "dora")


def test_unsupported_peft_inits_are_refused(tmp_path):
    save_lora(add_lora(gpt2(), ["c_attn"], r=2), tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    for init in ("pissa_niter_4", "loftq", "corda"):
        (tmp_path / "adapter_config.json").write_text(json.dumps({**config, "init_lora_weights": init}))
        with pytest.raises(ValueError, match=f"init_lora_weights='{init}' is not implemented"):
            load_lora(gpt2(), tmp_path)


def test_olora_on_conv1d_warns_that_peft_cannot_load_it(tmp_path):
    with pytest.warns(UserWarning, match="peft .* cannot reproduce"):
        save_lora(add_lora(gpt2(), ["c_attn"], r=2, init="olora"), tmp_path)


# ----------------------------------------------------------------------------- LoRA+
def test_lora_plus_groups():
    model = add_lora(gpt2(), ["c_attn"], r=2, use_dora=True)
    model.transformer.h[0].attn.c_attn.base_layer.bias.requires_grad = True       # a trainable bias, say
    groups = {g["name"]: g for g in lora_plus_param_groups(model, lr=1e-4, weight_decay=0.01)}
    names = {id(p): n for n, p in model.named_parameters()}
    members = {k: {names[id(p)].rsplit(".", 1)[-1] for p in g["params"]} for k, g in groups.items()}
    assert members == {"A": {"lora_A"}, "B": {"lora_B", "lora_magnitude_vector"}, "B_no_decay": {"bias"}}
    assert groups["A"]["lr"] == 1e-4 and groups["B"]["lr"] == 16 * 1e-4 == groups["B_no_decay"]["lr"]
    assert groups["A"]["weight_decay"] == groups["B"]["weight_decay"] == 0.01 and groups["B_no_decay"]["weight_decay"] == 0
    opt = torch.optim.AdamW(lora_plus_param_groups(model, lr=1e-3, ratio=4), lr=1e-3)
    assert sorted(g["lr"] for g in opt.param_groups) == [1e-3, 4e-3, 4e-3]


def test_lora_plus_matches_peft():
    from peft.optimizers import create_loraplus_optimizer

    def lr_and_decay(model, groups):
        """{parameter name, in llmtap's spelling: (lr, weight_decay)}"""
        names = {id(p): n.removeprefix("base_model.model.").replace(".default", "").removesuffix(".weight")
                 for n, p in model.named_parameters()}
        return {names[id(p)]: (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}

    theirs = peft_model("dora")
    opt = create_loraplus_optimizer(theirs, torch.optim.AdamW, lr=2e-4, loraplus_lr_ratio=8, loraplus_weight_decay=0.1)
    mine = ours("dora")
    want = lr_and_decay(theirs, opt.param_groups)
    assert len(want) == 3 * 4 * 2                         # A, B, m of 4 layers x 2 blocks
    assert lr_and_decay(mine, lora_plus_param_groups(mine, lr=2e-4, ratio=8, weight_decay=0.1)) == want


def test_lora_plus_trains():
    torch.manual_seed(0)
    model = add_lora(gpt2(), GPT2_TARGETS, r=4, alpha=8).train()
    opt = torch.optim.AdamW(lora_plus_param_groups(model, lr=1e-3), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = model(input_ids=X, labels=X).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=0), "lr must be a positive"), (dict(lr=1e-3, ratio=-1), "ratio must be a positive"),
    (dict(lr=1e-3, weight_decay=-0.1), "weight_decay must be a number >= 0"),
])
def test_lora_plus_bad_inputs(kwargs, match):
    model = add_lora(gpt2(), ["c_attn"], r=2)
    with pytest.raises(ValueError, match=match):
        lora_plus_param_groups(model, **kwargs)
    with pytest.raises(ValueError, match="add_lora"):
        lora_plus_param_groups(gpt2(), lr=1e-3)


# ----------------------------------------------------------------------------- bad settings
@pytest.mark.parametrize("kwargs, match", [
    (dict(use_dora="yes"), "use_dora must be True or False"), (dict(use_rslora=1), "use_rslora must be True or False"),
    (dict(init="loftq"), r"init must be one of \('gaussian', 'pissa', 'olora'\)"),
    (dict(init="pissa", r=40), "rank at most 32"),
    (dict(init="olora", target_modules=["lm_head"]), "shares its weight with another module"),
])
def test_add_lora_bad_family_settings(kwargs, match):
    model = gpt2()
    weights = {n: p.clone() for n, p in model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        add_lora(model, **{"target_modules": ["c_attn"], "r": 4, **kwargs})
    assert not lora_layers(model)
    assert all(torch.equal(p, weights[n]) for n, p in model.state_dict().items())     # nothing changed halfway
