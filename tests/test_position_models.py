"""Chapter 04: the course GPT with every position encoding and RoPE scaling, FlexAttention ALiBi
on CUDA, and the shipped position models."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from llmtap import pretrain
from llmtap.model import GPT, GPTConfig, KVCache
from llmtap.positions import alibi_bias, alibi_flex_attention, alibi_slopes, rope_inv_freq


def tiny(position="rope", block_size=16, sharp=False, **kw):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, block_size=block_size, n_layer=2, n_head=4, n_embd=32,
                          position=position, **kw)).eval()
    if sharp:     # wide weights: peaked attention, so that positions change the output visibly
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() >= 2:
                    p.normal_(0, 0.3)
    return model


def ids(T, B=2, seed=0):
    return torch.randint(0, 40, (B, T), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- RoPE scaling inside GPT
def test_dynamic_ntk_changes_nothing_inside_the_window_and_rescales_beyond():
    plain = tiny(sharp=True)
    dynamic = tiny(sharp=True, rope_scaling={"rope_type": "dynamic", "factor": 4.0})
    x = ids(16)
    assert torch.allclose(plain(x)[0], dynamic(x)[0], atol=1e-6)           # T <= L = block_size
    long = ids(48)
    # beyond L, the base depends on the current length T: equal to static NTK with s T / L - (s - 1)
    ntk = tiny(sharp=True, rope_scaling={"rope_type": "ntk", "factor": 4.0 * 48 / 16 - 3.0})
    assert torch.allclose(dynamic(long)[0], ntk(long)[0], atol=1e-5)
    assert not torch.allclose(dynamic(long)[0], plain(long)[0], atol=1e-3)


def test_dynamic_ntk_uses_the_length_including_the_cache():
    dynamic = tiny(rope_scaling={"rope_type": "dynamic", "factor": 2.0})
    x = ids(40, B=1)
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
    yarn = tiny(rope_scaling={"rope_type": "yarn", "factor": 4.0, "attention_factor": a})
    unscaled = tiny(rope_scaling={"rope_type": "yarn", "factor": 4.0, "attention_factor": 1.0})
    assert torch.equal(yarn.rope_inv_freq, unscaled.rope_inv_freq)
    with torch.no_grad():
        for block in unscaled.h:
            C = 32
            block.attn.c_attn.weight[:2 * C] *= a
            block.attn.c_attn.bias[:2 * C] *= a
    x = ids(40)
    assert torch.allclose(yarn(x)[0], unscaled(x)[0], atol=1e-4)
    assert yarn.rope_attention_factor == a
    default = tiny(rope_scaling={"rope_type": "yarn", "factor": 4.0})
    assert default.rope_attention_factor == pytest.approx(0.1 * math.log(4.0) + 1)


def test_gpt_rope_scaling_takes_block_size_as_the_trained_length():
    model = tiny(block_size=32, rope_scaling={"rope_type": "yarn", "factor": 2.0})
    want, _ = rope_inv_freq(8, scaling={"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 32})
    assert torch.equal(model.rope_inv_freq, want)
    explicit = tiny(block_size=32, rope_scaling={"rope_type": "yarn", "factor": 2.0,
                                                 "original_max_position_embeddings": 2048})
    assert not torch.equal(explicit.rope_inv_freq, want)


def test_linear_scaling_in_gpt_is_position_interpolation():
    plain, pi = tiny(sharp=True), tiny(sharp=True, rope_scaling={"rope_type": "linear", "factor": 2.0})
    assert torch.allclose(pi.rope_inv_freq, plain.rope_inv_freq / 2)
    x = ids(32)
    assert not torch.allclose(pi(x)[0], plain(x)[0], atol=1e-3)


def test_bad_rope_scaling_in_config():
    for scaling in ({"rope_type": "yarn", "factor": 0.5}, {"rope_type": "nope", "factor": 2.0}):
        with pytest.raises(ValueError):
            tiny(rope_scaling=scaling)


# ----------------------------------------------------------------------------- ALiBi in GPT (SDPA path)
def test_alibi_model_matches_a_hand_written_attention():
    model = tiny("alibi")
    x = ids(12, B=1)
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
        logits, _ = tiny(kind)(ids(64))
        assert logits.shape == (2, 64, 40) and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="learned position"):
        tiny("learned")(ids(64))


def test_alibi_cache_equals_full_forward():
    model = tiny("alibi")
    x = ids(20, B=1)
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
    model = tiny("alibi")
    x = ids(256, B=2)
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


# ----------------------------------------------------------------------------- the shipped models
@pytest.mark.parametrize("name", pretrain.POSITION_MODELS)
def test_shipped_position_model_loads_and_its_numbers_hold(name):
    model, tok, info = pretrain.load_position_model(name)
    kind = "rope" if name == "rope_pi4" else name
    assert model.config.position == kind and model.config.block_size == pretrain.POSITIONS_L * (4 if name == "rope_pi4" else 1)
    assert pretrain.position_model_path(name).stat().st_size < 600_000
    L = pretrain.POSITIONS_L
    assert pretrain.perplexity_at_length(model, tok, L) == pytest.approx(info["ppl_1L"], rel=1e-3)
    assert pretrain.passkey_accuracy(model, tok, L, 0.5) == pytest.approx(
        pretrain.passkey_accuracy(model, tok, L, 0.5))                  # deterministic
    depths = (0.0, 0.25, 0.5, 0.75, 1.0)
    passkey_at_L = sum(pretrain.passkey_accuracy(model, tok, L, d) for d in depths) / len(depths)
    assert passkey_at_L == pytest.approx(info["passkey_1L"])
    if name in ("rope", "alibi"):
        assert passkey_at_L >= 0.4       # retrieval inside the trained window is learned (chance: 1e-5)
    if name == "learned":
        assert info["ppl_2L"] is None and pretrain.perplexity_at_length(model, tok, 2 * L) is None
    else:
        assert pretrain.perplexity_at_length(model, tok, 2 * L) == pytest.approx(info["ppl_2L"], rel=1e-3)


def test_position_helpers_bad_inputs():
    tok = pretrain.course_tokenizer()
    model = tiny()
    with pytest.raises(ValueError):
        pretrain.position_model_path("alibi2")
    with pytest.raises(ValueError):
        pretrain.with_rope_scaling(tiny("alibi"), {"rope_type": "linear", "factor": 2.0})
    with pytest.raises(ValueError):
        pretrain.perplexity_at_length(model, tok, 1)
    with pytest.raises(ValueError):
        pretrain.passkey_accuracy(model, tok, 20, 0.5)
    with pytest.raises(ValueError):
        next(pretrain.long_context_batches(tok, 64, 2, 0, passkey_share=0.8, repeat_share=0.3))
    with pytest.raises(ValueError):
        next(pretrain.long_context_batches(tok, 16, 2, 0))


def test_long_context_batches_and_passkey_documents():
    import random
    from llmtap import corpus
    tok = pretrain.course_tokenizer()
    x, y = next(pretrain.long_context_batches(tok, 64, 8, 0, passkey_share=1.0, repeat_share=0.0))
    assert x.shape == y.shape == (8, 64) and torch.equal(x[:, 1:], y[:, :-1])
    text = tok.decode(x[0].tolist())
    assert "密码是" in text
    rng = random.Random(0)
    for n_chars in (40, 64, 200):
        for depth in (0.0, 0.5, 1.0):
            prompt, key = corpus.passkey_sample(rng, n_chars, depth, "zh")
            assert len(key) == 5 and key.isdigit() and prompt.endswith("密码是")
            assert f"密码是{key}。" in prompt and len(prompt) <= n_chars + 7
            assert len(tok.encode(prompt + key, bos=True)) <= n_chars + 13 - 7 + 7   # one token per character


def test_with_rope_scaling_keeps_weights():
    model = tiny()
    pi = pretrain.with_rope_scaling(model, {"rope_type": "linear", "factor": 4.0})
    for (n, p), (_, q) in zip(model.state_dict().items(), pi.state_dict().items()):
        assert torch.equal(p, q), n
    assert pi.config.rope_scaling == {"rope_type": "linear", "factor": 4.0, "original_max_position_embeddings": 16}
    assert pi.config.block_size == 16
    longer = pretrain.with_rope_scaling(model, {"rope_type": "yarn", "factor": 4.0}, block_size=64)
    assert longer.config.block_size == 64
    want, _ = rope_inv_freq(8, scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16})
    assert torch.equal(longer.rope_inv_freq, want)          # scaled from the trained 16, not the new 64
    assert model.config.rope_scaling is None


def test_right_padding_leaves_each_rows_predictions_alone():
    # passkey_accuracy batches prompts of different lengths, padded on the right
    for kind in ("rope", "alibi", "learned", "none"):
        model = tiny(kind, block_size=32, sharp=True)
        row = ids(20, B=1, seed=3)
        padded = torch.cat([row, torch.zeros(1, 9, dtype=torch.long)], dim=1)
        assert torch.allclose(model(padded)[0][:, :20], model(row)[0], atol=1e-5), kind


def test_passkey_accuracy_is_deterministic_and_in_range():
    model, tok, _ = pretrain.load_position_model("alibi")
    a = pretrain.passkey_accuracy(model, tok, 128, 0.25, n=8)
    assert a == pretrain.passkey_accuracy(model, tok, 128, 0.25, n=8) and 0.0 <= a <= 1.0
