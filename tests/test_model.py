import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from llmtap.model import GPT, GPTConfig, KVCache, sample_next
from llmtap.positions import (POSITION_KINDS, alibi_bias, alibi_flex_attention, alibi_slopes, apply_rope, rope_cos_sin,
                              rope_inv_freq, sinusoidal_table)

V, BLOCK = 50, 32


def tiny(position="learned", seed=0, **kw):
    torch.manual_seed(seed)
    settings = dict(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=2, n_embd=16, position=position)
    settings.update(kw)
    model = GPT(GPTConfig(**settings)).eval()
    with torch.no_grad():   # larger weights than GPT-2 init, so the tests see real differences
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
    return model


def ids(B, T, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (B, T), generator=g)


def reference_forward(model, idx):
    """The model written out by hand with explicit attention scores (no SDPA, no cache)."""
    cfg = model.config
    B, T = idx.shape
    H, d = cfg.n_head, cfg.n_embd // cfg.n_head
    x = model.wte.weight[idx]
    pos = torch.arange(T)
    if cfg.position == "learned":
        x = x + model.wpe.weight[pos]
    elif cfg.position == "sinusoidal":
        x = x * cfg.n_embd ** 0.5 + sinusoidal_table(T, cfg.n_embd)     # Vaswani et al.'s sqrt(d) embedding scale
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for block in model.h:
        a = block.attn
        hN = block.ln_1(x)
        q, k, v = a.c_attn(hN).split(cfg.n_embd, dim=2)
        q, k, v = (t.view(B, T, H, d).transpose(1, 2) for t in (q, k, v))
        if cfg.position == "rope":
            q, k = apply_rope(q, k, *rope_cos_sin(pos, rope_inv_freq(d, cfg.rope_base)[0]))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d)
        if cfg.position == "alibi":
            m = alibi_slopes(H)
            dist = (pos[:, None] - pos[None, :]).float()
            scores = scores - m[:, None, None] * dist
        scores = scores.masked_fill(~causal, float("-inf"))
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, cfg.n_embd)
        x = x + block.adapter_attn(a.c_proj(y))
        x = x + block.adapter_mlp(block.mlp(block.ln_2(x)))
    return model.lm_head(model.ln_f(x))


# ----------------------------------------------------------------------------- shapes, reference
@pytest.mark.parametrize("position", POSITION_KINDS)
def test_shapes_and_reference(position):
    model = tiny(position)
    x = ids(3, 11)
    logits, loss = model(x)
    assert logits.shape == (3, 11, V) and loss is None
    with torch.no_grad():
        want = reference_forward(model, x)
    assert torch.allclose(logits, want, atol=1e-5), (logits - want).abs().max()


def test_position_kinds_differ():
    x = ids(1, 12)
    outs = {p: tiny(p)(x)[0] for p in POSITION_KINDS}
    for a in POSITION_KINDS:
        for b in POSITION_KINDS:
            if a < b:
                assert not torch.allclose(outs[a], outs[b], atol=1e-4), (a, b)


def test_alibi_uses_distance():
    # same weights, alibi vs none: the first position sees only itself, so it must agree;
    # later positions must differ.
    a, n = tiny("alibi"), tiny("none")
    assert torch.equal(a.wte.weight, n.wte.weight)
    x = ids(1, 10)
    la, ln = a(x)[0], n(x)[0]
    assert torch.allclose(la[:, 0], ln[:, 0], atol=1e-5)
    assert not torch.allclose(la[:, 1:], ln[:, 1:], atol=1e-4)


def test_idx_must_be_2d():
    with pytest.raises(ValueError):
        tiny()(torch.zeros(5, dtype=torch.long))


# ----------------------------------------------------------------------------- KV cache
@pytest.mark.parametrize("position", POSITION_KINDS)
@pytest.mark.parametrize("chunks", [(1,) * 8, (3, 1, 4), (5, 3), (1, 7)])
def test_incremental_equals_one_pass(position, chunks):
    model = tiny(position)
    x = ids(2, sum(chunks))
    with torch.no_grad():
        full, _ = model(x)
        cache, outs, start = KVCache(model.config.n_layer), [], 0
        for n in chunks:
            out, _ = model(x[:, start:start + n], cache=cache)
            outs.append(out)
            start += n
            assert len(cache) == start
    assert torch.allclose(torch.cat(outs, dim=1), full, atol=1e-5)


@pytest.mark.parametrize("position", POSITION_KINDS)
def test_causal(position):
    model = tiny(position)
    x = ids(1, 12)
    y = x.clone()
    y[0, 7:] = (y[0, 7:] + 1) % V
    with torch.no_grad():
        lx, ly = model(x)[0], model(y)[0]
    assert torch.allclose(lx[:, :7], ly[:, :7], atol=1e-6)
    assert not torch.allclose(lx[:, 7:], ly[:, 7:], atol=1e-4)


def test_kv_cache_len_and_batch_expand():
    cache = KVCache(2)
    assert len(cache) == 0
    k = torch.randn(1, 2, 3, 4)
    cache.append(0, k, k)
    assert len(cache) == 3
    k2, v2 = cache.append(0, torch.randn(5, 2, 2, 4), torch.randn(5, 2, 2, 4))
    assert k2.shape == (5, 2, 5, 4) and torch.equal(k2[3, :, :3], k[0])


# ----------------------------------------------------------------------------- generate
def greedy_reference(model, idx, n):
    for _ in range(n):
        logits, _ = model(idx)
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


@pytest.mark.parametrize("position", POSITION_KINDS)
def test_generate_greedy_matches_full_recomputation(position):
    model = tiny(position)
    x = ids(2, 5)
    out = model.generate(x, 12, temperature=0)
    assert out.shape == (2, 17)
    assert torch.equal(out[:, :5], x)
    with torch.no_grad():
        assert torch.equal(out, greedy_reference(model, x, 12))


def test_generate_respects_eos():
    model = tiny("rope")
    x = ids(3, 4, seed=3)
    free = model.generate(x, 10, temperature=0)
    eos = free[0, 4 + 2].item()          # a token the first row emits at its third step
    out = model.generate(x, 10, temperature=0, eos_id=eos)
    assert out.shape == free.shape
    for row in range(3):
        gen = out[row, 4:].tolist()
        if eos in gen:
            first = gen.index(eos)
            assert all(t == eos for t in gen[first:])
            assert gen[:first] == free[row, 4:4 + first].tolist()
        else:
            assert gen == free[row, 4:].tolist()
    assert eos in out[0, 4:].tolist()


@pytest.mark.parametrize("position", ["learned", "sinusoidal", "rope", "alibi", "none"])
def test_generate_beyond_block_size(position):
    model = tiny(position, block_size=8)
    x = ids(1, 6)
    out = model.generate(x, 20, temperature=0)
    assert out.shape == (1, 26)
    assert ((0 <= out) & (out < V)).all()
    if position == "learned":
        # every token is the argmax of the model on a window of the most recent tokens
        with torch.no_grad():
            for t in range(6, 26):
                choices = {model(out[:, max(0, t - w):t])[0][0, -1].argmax().item() for w in (7, 8)}
                assert out[0, t].item() in choices
        long = ids(1, 20)                 # a prompt longer than the block works too
        assert model.generate(long, 3, temperature=0).shape == (1, 23)


def test_generate_sampling_is_seeded_and_valid():
    model = tiny("none")
    x = ids(2, 3)
    a = model.generate(x, 8, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(0))
    b = model.generate(x, 8, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def test_generate_bad_inputs():
    model = tiny()
    x = ids(1, 3)
    with pytest.raises(ValueError):
        model.generate(x, -1)
    with pytest.raises(ValueError):
        model.generate(x, 2, temperature=-0.5)
    with pytest.raises(ValueError):
        model.generate(x, 2, top_k=0)


def test_sample_next_top_k_and_temperature():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]])
    assert sample_next(logits, 0).tolist() == [1]
    g = torch.Generator().manual_seed(0)
    draws = {sample_next(logits, 1.0, 2, g).item() for _ in range(200)}
    assert draws == {1, 3}


# ----------------------------------------------------------------------------- prompt embeds, adapters
@pytest.mark.parametrize("position", POSITION_KINDS)
def test_prompt_embeds(position):
    model = tiny(position)
    x = ids(2, 6)
    soft = torch.randn(3, 16)
    logits, _ = model(x, prompt_embeds=soft)
    assert logits.shape == (2, 6, V)
    other, _ = model(x, prompt_embeds=soft + torch.randn(3, 16))
    plain, _ = model(x)
    assert not torch.allclose(logits, other, atol=1e-4)
    assert not torch.allclose(logits, plain, atol=1e-4)
    batched, _ = model(x, prompt_embeds=soft[None])
    assert torch.allclose(batched, logits, atol=1e-6)
    # soft tokens equal to token embeddings act like those tokens
    prefix = ids(1, 3, seed=5)
    as_soft, _ = model(x, prompt_embeds=model.wte.weight[prefix[0]].detach())
    as_tokens, _ = model(torch.cat([prefix.expand(2, -1), x], dim=1))
    assert torch.allclose(as_soft, as_tokens[:, 3:], atol=1e-5)


def test_prompt_embeds_gradient_flows():
    model = tiny("learned")
    soft = torch.randn(2, 16, requires_grad=True)
    _, loss = model(ids(1, 5), targets=ids(1, 5, seed=2), prompt_embeds=soft)
    loss.backward()
    assert soft.grad is not None and soft.grad.abs().sum() > 0


def test_prompt_embeds_with_filled_cache_raises():
    model = tiny()
    cache = KVCache(2)
    model(ids(1, 3), cache=cache)
    with pytest.raises(ValueError):
        model(ids(1, 2), cache=cache, prompt_embeds=torch.randn(2, 16))


class Zero(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


class AddVector(nn.Module):
    """Adds a fixed random vector (a constant shift of all features would vanish in the next LayerNorm)."""
    def __init__(self, dim):
        super().__init__()
        self.calls = 0
        self.v = torch.randn(dim, generator=torch.Generator().manual_seed(7))

    def forward(self, x):
        self.calls += 1
        return x + self.v


@pytest.mark.parametrize("slot", ["adapter_attn", "adapter_mlp"])
def test_adapter_slots_are_applied(slot):
    model = tiny()
    x = ids(1, 6)
    base, _ = model(x)
    add = AddVector(16)
    setattr(model.h[0], slot, add)
    changed, _ = model(x)
    assert add.calls == 1
    assert not torch.allclose(base, changed, atol=1e-4)
    for block in model.h:            # zeroing every attention / MLP output removes the sub-layer
        setattr(block, slot, Zero())
    zeroed, _ = model(x)
    assert not torch.allclose(base, zeroed, atol=1e-4)
    with torch.no_grad():
        assert torch.allclose(zeroed, reference_forward(model, x), atol=1e-5)


def test_zeroed_attention_makes_positions_independent():
    model = tiny("none")
    for block in model.h:
        block.adapter_attn = Zero()
    x = ids(1, 8)
    y = x.clone()
    y[0, :4] = (y[0, :4] + 1) % V                 # change the context only
    lx, ly = model(x)[0], model(y)[0]
    assert torch.allclose(lx[:, 4:], ly[:, 4:], atol=1e-6)


# ----------------------------------------------------------------------------- weights, config, loss
def test_weight_tying():
    model = tiny()
    assert model.lm_head.weight is model.wte.weight
    n_unique = sum(p.numel() for p in model.parameters())
    assert model.num_params() == n_unique
    model.requires_grad_(False)
    assert model.num_params(trainable_only=True) == 0


@pytest.mark.parametrize("kw", [
    dict(n_embd=15, n_head=2), dict(position="foo"), dict(dropout=1.0), dict(dropout=-0.1),
    dict(vocab_size=0), dict(block_size=-1), dict(n_layer=0), dict(n_head=2, n_embd=6, position="rope"),
    dict(n_embd=16.0),
])
def test_config_bad_inputs(kw):
    settings = dict(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=2, n_embd=16)
    settings.update(kw)
    with pytest.raises(ValueError):
        GPTConfig(**settings)


def test_config_to_dict_round_trip():
    cfg = GPTConfig(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=2, n_embd=16, position="rope",
                    rope_scaling={"rope_type": "linear", "factor": 2.0})
    assert GPTConfig(**cfg.to_dict()) == cfg


def test_learned_positions_beyond_block_size():
    model = tiny(block_size=8)
    model(ids(1, 8))
    with pytest.raises(ValueError, match="exceed the learned position table of 8"):
        model(ids(1, 9))
    cache = KVCache(2)
    model(ids(1, 6), cache=cache)
    with pytest.raises(ValueError, match="cache 6"):
        model(ids(1, 3), cache=cache)
    with pytest.raises(ValueError):
        model(ids(1, 6), prompt_embeds=torch.randn(3, 16))


@pytest.mark.parametrize("position", ["sinusoidal", "rope", "alibi", "none"])
def test_other_positions_run_beyond_block_size(position):
    model = tiny(position, block_size=8)
    assert model(ids(1, 20))[0].shape == (1, 20, V)


def test_loss_ignores_minus_100():
    model = tiny()
    x = ids(2, 7)
    t = ids(2, 7, seed=9)
    logits, loss = model(x, t)
    want = F.cross_entropy(logits.reshape(-1, V), t.reshape(-1))
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    masked = t.clone()
    masked[:, :4] = -100
    _, loss_m = model(x, masked)
    want_m = F.cross_entropy(logits[:, 4:].reshape(-1, V), t[:, 4:].reshape(-1))
    assert loss_m.item() == pytest.approx(want_m.item(), rel=1e-5)
    # changing the ignored targets does not change the loss
    other = masked.clone()
    other[:, :4] = -100
    other[0, 4] = masked[0, 4]
    _, loss_o = model(x, other)
    assert loss_o.item() == pytest.approx(loss_m.item(), rel=1e-6)
    assert abs(loss_m.item() - loss.item()) > 1e-4


def test_kv_cache_repeat_interleave_continues_each_row():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=16, position="rope")).eval()
    ctx, cont = torch.randint(0, 20, (2, 5)), torch.randint(0, 20, (6, 3))
    cache = KVCache(2)
    with torch.no_grad():
        model(ctx, cache=cache)
        got = model(cont, cache=cache.repeat_interleave(3))[0]
        want = model(torch.cat([ctx.repeat_interleave(3, 0), cont], 1))[0][:, 5:]
    assert torch.allclose(got, want, atol=1e-5)
    assert len(cache) == 5                     # the original cache is left as it was


def test_chapter03_slots_are_declared_and_empty():
    """The prefix and soft-prompt slots exist on every GPT (None until llmtap.prefix fills them) and
    hold no parameters, so a plain model's state dict and parameter count are the base model's."""
    model = GPT(GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=16))
    assert model.prefix_tuning is None and model.prompt_tuning is None and model.n_virtual == 0
    assert not any(k.startswith(("prefix_tuning", "prompt_tuning", "rotary")) for k in model.state_dict())


# ----------------------------------------------------------------------------- position encodings inside GPT
def pos_model(position="rope", block_size=16, sharp=False, **kw):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, block_size=block_size, n_layer=2, n_head=4, n_embd=32,
                          position=position, **kw)).eval()
    if sharp:     # wide weights: peaked attention, so that positions change the output visibly
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() >= 2:
                    p.normal_(0, 0.3)
    return model


def pos_ids(T, B=2, seed=0):
    return torch.randint(0, 40, (B, T), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- RoPE scaling inside GPT
def test_dynamic_ntk_changes_nothing_inside_the_window_and_rescales_beyond():
    plain = pos_model(sharp=True)
    dynamic = pos_model(sharp=True, rope_scaling={"rope_type": "dynamic", "factor": 4.0})
    x = pos_ids(16)
    assert torch.allclose(plain(x)[0], dynamic(x)[0], atol=1e-6)           # T <= L = block_size
    long = pos_ids(48)
    # beyond L, the base depends on the current length T: equal to static NTK with s T / L - (s - 1)
    ntk = pos_model(sharp=True, rope_scaling={"rope_type": "ntk", "factor": 4.0 * 48 / 16 - 3.0})
    assert torch.allclose(dynamic(long)[0], ntk(long)[0], atol=1e-5)
    assert not torch.allclose(dynamic(long)[0], plain(long)[0], atol=1e-3)


def test_dynamic_ntk_uses_the_length_including_the_cache():
    dynamic = pos_model(rope_scaling={"rope_type": "dynamic", "factor": 2.0})
    x = pos_ids(40, B=1)
    cache = KVCache(2)
    dynamic(x[:, :30], cache=cache)
    step, _ = dynamic(x[:, 30:], cache=cache)
    # the last chunk's queries are rotated with the base of length 40 (not 10)
    inv_freq = rope_inv_freq(8, scaling={"rope_type": "dynamic", "factor": 2.0,
                                         "original_max_position_embeddings": 16}, seq_len=40)[0]
    assert not torch.allclose(inv_freq, rope_inv_freq(8, scaling={"rope_type": "dynamic", "factor": 2.0,
                                                                   "original_max_position_embeddings": 16},
                                                      seq_len=10)[0])
    assert step.shape == (1, 10, 40) and torch.isfinite(step).all()


def test_yarn_attention_factor_scales_queries_and_keys():
    # YaRN multiplies cos and sin by a; that is the same as multiplying W_q and W_k (and their biases)
    # by a, i.e. the attention logits by a^2
    a = 1.7
    yarn = pos_model(rope_scaling={"rope_type": "yarn", "factor": 4.0, "attention_factor": a})
    unscaled = pos_model(rope_scaling={"rope_type": "yarn", "factor": 4.0, "attention_factor": 1.0})
    assert torch.equal(yarn.rotary.inv_freq, unscaled.rotary.inv_freq)
    with torch.no_grad():
        for block in unscaled.h:
            C = 32
            block.attn.c_attn.weight[:2 * C] *= a
            block.attn.c_attn.bias[:2 * C] *= a
    x = pos_ids(40)
    assert torch.allclose(yarn(x)[0], unscaled(x)[0], atol=1e-4)
    assert yarn.rotary.attention_factor == a
    default = pos_model(rope_scaling={"rope_type": "yarn", "factor": 4.0})
    assert default.rotary.attention_factor == pytest.approx(0.1 * math.log(4.0) + 1)


def test_gpt_rope_scaling_takes_block_size_as_the_trained_length():
    model = pos_model(block_size=32, rope_scaling={"rope_type": "yarn", "factor": 2.0})
    want, _ = rope_inv_freq(8, scaling={"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 32})
    assert torch.equal(model.rotary.inv_freq, want)
    explicit = pos_model(block_size=32, rope_scaling={"rope_type": "yarn", "factor": 2.0,
                                                 "original_max_position_embeddings": 2048})
    assert not torch.equal(explicit.rotary.inv_freq, want)


def test_linear_scaling_in_gpt_is_position_interpolation():
    plain, pi = pos_model(sharp=True), pos_model(sharp=True, rope_scaling={"rope_type": "linear", "factor": 2.0})
    assert torch.allclose(pi.rotary.inv_freq, plain.rotary.inv_freq / 2)
    x = pos_ids(32)
    assert not torch.allclose(pi(x)[0], plain(x)[0], atol=1e-3)


def test_bad_rope_scaling_in_config():
    for scaling in ({"rope_type": "yarn", "factor": 0.5}, {"rope_type": "nope", "factor": 2.0}):
        with pytest.raises(ValueError):
            pos_model(rope_scaling=scaling)


# ----------------------------------------------------------------------------- ALiBi in GPT (SDPA path)
def test_alibi_model_matches_a_hand_written_attention():
    model = pos_model("alibi")
    x = pos_ids(12, B=1)
    attn = model.h[0].attn
    h = model.h[0].ln_1(model.wte(x))
    q, k, v = attn.c_attn(h).split(32, dim=2)
    q, k, v = (t.view(1, 12, 4, 8).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(8) + alibi_bias(4, 12)
    scores = scores.masked_fill(~torch.ones(12, 12, dtype=torch.bool).tril(), float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(1, 12, 32)
    assert torch.allclose(attn(h, alibi=model.alibi_slopes), attn.c_proj(y), atol=1e-5)


def test_alibi_and_rope_read_beyond_the_window_learned_refuses():
    for kind in ("alibi", "rope", "sinusoidal", "none"):
        logits, _ = pos_model(kind)(pos_ids(64))
        assert logits.shape == (2, 64, 40) and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="learned position"):
        pos_model("learned")(pos_ids(64))


def test_alibi_cache_equals_full_forward():
    model = pos_model("alibi")
    x = pos_ids(20, B=1)
    full, _ = model(x)
    cache = KVCache(2)
    a, _ = model(x[:, :13], cache=cache)
    b, _ = model(x[:, 13:], cache=cache)
    assert torch.allclose(torch.cat([a, b], 1), full, atol=1e-5)


# ----------------------------------------------------------------------------- FlexAttention (CUDA)
def _sdpa_alibi(q, k, v, slopes):
    L = q.shape[2]
    bias = alibi_bias(len(slopes), L, device=q.device)
    bias = bias.masked_fill(~torch.ones(L, L, dtype=torch.bool, device=q.device).tril(), float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-3), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("L", [128, 300, 1024])
def test_flex_alibi_equals_sdpa_with_bias(dtype, tol, L):
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v, grad = (torch.randn(2, 8, L, 64, device="cuda", dtype=dtype, generator=g) for _ in range(4))
    slopes = alibi_slopes(8).cuda()
    grads = []
    for attention in (alibi_flex_attention, _sdpa_alibi):
        leaves = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
        out = attention(*leaves, slopes)
        out.backward(grad)
        grads.append((out.float(), *(t.grad.float() for t in leaves)))
    for got, want in zip(*grads):
        scale = want.abs().max().item()
        assert (got - want).abs().max().item() <= tol * max(scale, 1.0)


@pytest.mark.cuda
def test_gpt_alibi_on_cuda_uses_flex_and_matches_cpu():
    model = pos_model("alibi")
    x = pos_ids(256, B=2)
    want, loss_cpu = model(x, x)
    loss_cpu.backward()
    cuda = copy.deepcopy(model).cuda()
    cuda.zero_grad()
    got, loss = cuda(x.cuda(), x.cuda())
    loss.backward()
    assert torch.allclose(got.cpu(), want, atol=1e-3)
    for (n, p), (_, p_cpu) in zip(cuda.named_parameters(), model.named_parameters()):
        assert torch.allclose(p.grad.cpu(), p_cpu.grad, atol=1e-3, rtol=1e-3), n
    with torch.autocast("cuda", dtype=torch.bfloat16):
        low, _ = cuda(x.cuda())
    assert (low.float().cpu() - want).abs().max().item() < 0.1


def test_flex_alibi_bad_inputs():
    q = torch.zeros(1, 2, 8, 4)
    with pytest.raises(ValueError):
        alibi_flex_attention(q, torch.zeros(1, 2, 9, 4), q, alibi_slopes(2))
    with pytest.raises(ValueError):
        alibi_flex_attention(q, q, q, alibi_slopes(3))


# ----------------------------------------------------------------------------- right padding (from the shipped-models section)
def test_right_padding_leaves_each_rows_predictions_alone():
    # passkey_accuracy batches prompts of different lengths, padded on the right
    for kind in ("rope", "alibi", "learned", "none"):
        model = pos_model(kind, block_size=32, sharp=True)
        row = pos_ids(20, B=1, seed=3)
        padded = torch.cat([row, torch.zeros(1, 9, dtype=torch.long)], dim=1)
        assert torch.allclose(model(padded)[0][:, :20], model(row)[0], atol=1e-5), kind
