"""Prefix tuning and prompt tuning: shapes, masks, positions, the context budget, KV-cache
generation, training, saving and loading, and bad inputs."""
import copy

import pytest
import torch

from llmtap.train import count_parameters
from llmtap.model import GPT, GPTConfig, KVCache
from llmtap.prefix import (add_prefix_tuning, add_prompt_tuning, fold_prefix, load_prefix,
                           prefix_from_tokens, save_prefix, text_token_ids, usable_length)
from llmtap.tokenizer import Tokenizer

TOK = Tokenizer("abcdefgh我好感到不。心情")
POSITIONS = ["learned", "rope", "alibi", "sinusoidal", "none"]


def make_gpt(position="learned", block_size=24, seed=0):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=16,
                          position=position)).eval()
    with torch.no_grad():               # wide weights: sharp distributions, so differences show
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.3)
    return model


def ids(text="我感到不好。abc", batch=1):
    return torch.tensor([TOK.encode(text, bos=True)] * batch)


def greedy_by_recomputation(model, x, n):
    """Greedy continuation computed the slow way: the whole sequence, no KV cache, every step."""
    for _ in range(n):
        x = torch.cat([x, model(x)[0][:, -1].argmax(-1, keepdim=True)], dim=1)
    return x


# ----------------------------------------------------------------------------- prefix tuning
def test_prefix_shapes_and_trainable_parameters():
    model = add_prefix_tuning(make_gpt(), n_prefix=5)
    kv = model.prefix_tuning.key_values()
    assert kv.shape == (2, 2, 2, 5, 8)                     # (layer, k/v, head, prefix, head_dim)
    trainable, total = count_parameters(model)
    assert trainable == 2 * 2 * 5 * 16 and total == count_parameters(make_gpt())[1] + trainable
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["prefix_tuning.kv"]
    cache = model.prefix_tuning.fill(KVCache(2))
    assert len(cache) == 5 and cache.n_prefix == 5 and cache.keys[1].shape == (1, 2, 5, 8)


@pytest.mark.parametrize("position", POSITIONS)
def test_prefix_equals_attention_over_prefix_then_tokens(position):
    """The model with a prefix computes what a plain model does with those keys/values in its cache,
    and the prefix changes the output (so it is really read)."""
    base = make_gpt(position)
    model = add_prefix_tuning(copy.deepcopy(base), n_prefix=4, seed=1)
    x = ids(batch=3)
    cache = KVCache(2)
    kv = model.prefix_tuning.key_values()
    for layer in range(2):
        cache.keys[layer], cache.values[layer] = kv[layer, 0][None], kv[layer, 1][None]
    want = base(x, cache=cache)[0]
    got = model(x)[0]
    assert got.shape == (3, x.shape[1], TOK.vocab_size)
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, base(x)[0], atol=1e-3)


def test_prefix_mask_tokens_stay_causal_and_see_the_prefix():
    """Changing a later token never changes earlier logits; changing the prefix changes all of them."""
    model = add_prefix_tuning(make_gpt(), n_prefix=3)
    x = ids()
    y = x.clone()
    y[0, -1] = TOK.encode("h")[0]
    a, b = model(x)[0], model(y)[0]
    assert torch.equal(a[:, :-1], b[:, :-1]) and not torch.allclose(a[:, -1], b[:, -1])
    with torch.no_grad():
        model.prefix_tuning.kv[:, :, :, 0] += 1.0
    c = model(x)[0]
    assert not torch.allclose(c[:, 0], a[:, 0], atol=1e-4)


def test_prefix_takes_positions_before_the_text():
    """With learned positions the text starts at position n_prefix."""
    base = make_gpt("learned")
    model = add_prefix_tuning(copy.deepcopy(base), n_prefix=4)
    x = ids()
    cache = model.prefix_tuning.fill(KVCache(2))
    with torch.no_grad():
        model.wpe.weight[:4] = 0.0                          # positions 0..3 belong to the prefix only
    same = model(x, cache=cache)[0]
    with torch.no_grad():
        model.wpe.weight[:4].normal_()
    assert torch.equal(model(x, cache=model.prefix_tuning.fill(KVCache(2)))[0], same)
    with torch.no_grad():
        model.wpe.weight[4].add_(1.0)                       # the first token's position
    assert not torch.allclose(model(x)[0], same)


@pytest.mark.parametrize("position", ["learned", "rope", "alibi"])
@pytest.mark.parametrize("kind", ["prefix", "prompt"])
def test_kv_cache_generation_equals_full_recomputation(position, kind):
    model = make_gpt(position, block_size=24)
    if kind == "prefix":
        add_prefix_tuning(model, n_prefix=4, seed=3)
    else:
        add_prompt_tuning(model, n_tokens=4, seed=3)
    x = ids("我感到")
    n_new = 24 - 4 - x.shape[1]                             # fill the usable window exactly
    fast = model.generate(x, n_new, temperature=0)
    assert fast.shape[1] == 24 - 4
    assert torch.equal(fast, greedy_by_recomputation(model, x, n_new))


def test_generation_slides_its_window_with_a_prefix():
    """Learned positions: past the usable length, generate keeps the last usable_length - 1 tokens."""
    model = add_prefix_tuning(make_gpt("learned", block_size=16), n_prefix=6)
    out = model.generate(ids("我感到"), 20, temperature=0)
    assert out.shape[1] == 4 + 20
    step = out[:, :-1][:, -(usable_length(model) - 1):]
    assert out[0, -1] == model(step)[0][0, -1].argmax()


def test_batched_prefix_shared_by_every_row():
    model = add_prefix_tuning(make_gpt(), n_prefix=3)
    one, many = model(ids())[0], model(ids(batch=4))[0]
    assert torch.allclose(many, one.expand(4, -1, -1), atol=1e-6)


def test_usable_length_and_overflow_error():
    model = add_prefix_tuning(make_gpt("rope", block_size=16), n_prefix=6)
    assert usable_length(model) == 10
    model(torch.zeros(1, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="leaving 10 for tokens; got 11"):
        model(torch.zeros(1, 11, dtype=torch.long))
    both = add_prompt_tuning(model, n_tokens=3)
    assert usable_length(both) == 7
    with pytest.raises(ValueError, match="takes 9 of the 16"):
        both(torch.zeros(1, 8, dtype=torch.long))


def test_reparametrised_prefix_trains_then_folds():
    from llmtap.train import TrainConfig, train
    model = add_prefix_tuning(make_gpt(), n_prefix=4, reparam_hidden=12)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names == {"prefix_tuning.prefix_embedding", "prefix_tuning.mlp.0.weight", "prefix_tuning.mlp.0.bias",
                     "prefix_tuning.mlp.2.weight", "prefix_tuning.mlp.2.bias"}
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    g = torch.Generator().manual_seed(0)
    x = torch.randint(3, TOK.vocab_size, (4, 12), generator=g)
    history = train(model, lambda: (x, x), TrainConfig(steps=30, lr=1e-2, warmup_steps=2, log_every=10,
                                                       progress=False), device="cpu")
    assert history["loss"][-1] < history["loss"][0]
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    before = model(x)[0]
    fold_prefix(model)
    assert model.prefix_tuning.mlp is None
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["prefix_tuning.kv"]
    assert torch.allclose(model(x)[0], before, atol=1e-5)
    assert count_parameters(model)[0] == 2 * 2 * 4 * 16


def test_prefix_init_from_text_is_the_models_own_keys():
    base = make_gpt("rope")
    model = add_prefix_tuning(copy.deepcopy(base), n_prefix=3, init="text", init_text="心情好", tokenizer=TOK)
    x = ids("我")
    # a prefix made of the keys/values of "心情好" at positions 0..2 acts like that text read before x
    want = base(torch.cat([torch.tensor([TOK.encode("心情好")]), x], dim=1))[0][:, 3:]
    assert torch.allclose(model(x)[0], want, atol=1e-5)
    kv = prefix_from_tokens(base, TOK.encode("心情好"))
    assert kv.shape == (2, 2, 2, 3, 8)
    vocab = add_prefix_tuning(copy.deepcopy(base), n_prefix=5, init="vocab", tokenizer=TOK, seed=0)
    again = add_prefix_tuning(copy.deepcopy(base), n_prefix=5, init="vocab", tokenizer=TOK, seed=0)
    assert torch.equal(vocab.prefix_tuning.kv, again.prefix_tuning.kv)


def test_seeded_and_leaves_global_random_state_alone():
    a = add_prefix_tuning(make_gpt(), n_prefix=3, seed=5)
    b = add_prefix_tuning(make_gpt(), n_prefix=3, seed=5)
    c = add_prefix_tuning(make_gpt(), n_prefix=3, seed=6)
    assert torch.equal(a.prefix_tuning.kv, b.prefix_tuning.kv)
    assert not torch.equal(a.prefix_tuning.kv, c.prefix_tuning.kv)
    model = make_gpt()
    state = torch.get_rng_state()
    add_prefix_tuning(model, n_prefix=3, seed=9)
    assert torch.equal(torch.get_rng_state(), state)


# ----------------------------------------------------------------------------- prompt tuning
def test_soft_prompt_is_prepended_to_the_embeddings():
    base = make_gpt("learned")
    model = add_prompt_tuning(copy.deepcopy(base), n_tokens=4, seed=0)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["prompt_tuning.embeddings"]
    assert count_parameters(model)[0] == 4 * 16
    x = ids(batch=2)
    got = model(x)[0]
    assert got.shape == (2, x.shape[1], TOK.vocab_size)                # logits for the tokens only
    assert torch.allclose(got, base(x, prompt_embeds=model.prompt_tuning.embeddings)[0], atol=1e-6)
    assert not torch.allclose(got, base(x)[0], atol=1e-3)


def test_soft_prompt_from_text_equals_reading_the_text():
    """A soft prompt initialised from a text is that text's embeddings: the model reads it as the text."""
    base = make_gpt("rope")
    model = add_prompt_tuning(copy.deepcopy(base), n_tokens=None, init="text", init_text="心情好", tokenizer=TOK)
    assert model.prompt_tuning.n_tokens == 3
    x = ids("我")
    want = base(torch.cat([torch.tensor([TOK.encode("心情好")]), x], dim=1))[0][:, 3:]
    assert torch.allclose(model(x)[0], want, atol=1e-5)
    tiled = add_prompt_tuning(copy.deepcopy(base), n_tokens=7, init="text", init_text="心情好", tokenizer=TOK)
    assert torch.equal(tiled.prompt_tuning.embeddings, base.wte.weight[TOK.encode("心情好心情好心")])
    assert text_token_ids(TOK, "心情好", 2) == TOK.encode("心情")


def test_soft_prompt_inits():
    base = make_gpt()
    vocab = add_prompt_tuning(copy.deepcopy(base), n_tokens=6, init="vocab", tokenizer=TOK, seed=1)
    rows = vocab.prompt_tuning.embeddings
    known = base.wte.weight[TOK.offset:]
    assert all((known == r).all(-1).any() for r in rows)               # each row is a character's embedding
    rand = add_prompt_tuning(make_gpt(block_size=256), n_tokens=200, init="random", seed=1)
    std = rand.prompt_tuning.embeddings.std().item()
    assert abs(std - base.wte.weight.std().item()) < 0.1 * std


def test_soft_prompt_and_prefix_together_and_the_cache():
    model = add_prompt_tuning(add_prefix_tuning(make_gpt("rope"), n_prefix=3), n_tokens=2)
    x = ids("我感到")
    assert torch.equal(model.generate(x, 6, temperature=0), greedy_by_recomputation(model, x, 6))
    cache = KVCache(2)
    model(x, cache=cache)
    assert len(cache) == 3 + 2 + x.shape[1] and cache.n_prefix == 3


def test_prompt_embeds_with_a_filled_cache_is_an_error():
    model = make_gpt()
    cache = KVCache(2)
    model(ids(), cache=cache)
    with pytest.raises(ValueError, match="first chunk"):
        model(ids(), cache=cache, prompt_embeds=torch.zeros(2, 16))


# ----------------------------------------------------------------------------- saving and loading
@pytest.mark.parametrize("which", ["prefix", "prompt", "both"])
def test_save_load_round_trip(which, tmp_path):
    model = make_gpt("rope")
    if which in ("prefix", "both"):
        add_prefix_tuning(model, n_prefix=4, reparam_hidden=8, seed=2)
    if which in ("prompt", "both"):
        add_prompt_tuning(model, n_tokens=3, seed=2)
    before = model(ids())[0]
    path = save_prefix(model, tmp_path / "p.safetensors")
    assert torch.allclose(model(ids())[0], before, atol=1e-5)           # saving folded the MLP, same function
    fresh = load_prefix(make_gpt("rope"), path)
    assert torch.equal(fresh(ids())[0], model(ids())[0])
    assert count_parameters(fresh)[0] == count_parameters(model)[0]


def test_load_refuses_what_does_not_fit(tmp_path):
    path = save_prefix(add_prefix_tuning(make_gpt(), n_prefix=4), tmp_path / "p.safetensors")
    with pytest.raises(ValueError, match="shape"):
        load_prefix(add_prefix_tuning(make_gpt(), n_prefix=5), path)
    from llmtap.adapters import add_adapters, save_adapters
    other = save_adapters(add_adapters(make_gpt(), bottleneck=2), tmp_path / "a.safetensors")
    with pytest.raises(ValueError, match="not an llmtap prefix"):
        load_prefix(make_gpt(), other)
    with pytest.raises(FileNotFoundError):
        load_prefix(make_gpt(), tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="no prefix or soft prompt"):
        save_prefix(make_gpt(), tmp_path / "x.safetensors")


# ----------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("n", [0, -1, 24, 30, 2.0, True])
def test_bad_prefix_and_prompt_lengths(n):
    with pytest.raises(ValueError, match="n_prefix"):
        add_prefix_tuning(make_gpt(block_size=24), n_prefix=n)
    with pytest.raises(ValueError, match="n_tokens"):
        add_prompt_tuning(make_gpt(block_size=24), n_tokens=n)


def test_bad_inits_and_options():
    with pytest.raises(ValueError, match="no token for the characters"):
        add_prompt_tuning(make_gpt(), n_tokens=None, init="text", init_text="心情😀", tokenizer=TOK)
    with pytest.raises(ValueError, match="no token for the characters"):
        add_prefix_tuning(make_gpt(), n_prefix=3, init="text", init_text="xyz", tokenizer=TOK)
    with pytest.raises(ValueError, match="init must be one of"):
        add_prompt_tuning(make_gpt(), init="zeros")
    with pytest.raises(ValueError, match="needs init_text"):
        add_prompt_tuning(make_gpt(), init="text", tokenizer=TOK)
    with pytest.raises(ValueError, match="needs the tokenizer"):
        add_prefix_tuning(make_gpt(), init="vocab")
    with pytest.raises(ValueError, match="needs init='text'"):
        add_prompt_tuning(make_gpt(), n_tokens=None)
    with pytest.raises(ValueError, match="reparam_hidden"):
        add_prefix_tuning(make_gpt(), reparam_hidden=0)
    with pytest.raises(ValueError, match="only init='random'"):
        add_prefix_tuning(make_gpt(), reparam_hidden=8, init="vocab", tokenizer=TOK)
    model = add_prefix_tuning(make_gpt(), n_prefix=2)
    with pytest.raises(ValueError, match="once"):
        add_prefix_tuning(model, n_prefix=2)
    with pytest.raises(ValueError, match="no prefix"):
        fold_prefix(make_gpt())
    with pytest.raises(ValueError, match="empty KVCache"):
        model.prefix_tuning.fill(model.prefix_tuning.fill(KVCache(2)))


def test_hf_models_get_a_clear_error():
    pytest.importorskip("transformers")
    from llmtap.hf import random_gpt2
    gpt2, _ = random_gpt2(n_layer=1, n_head=2, n_embd=16, n_positions=16)
    with pytest.raises(TypeError, match="course GPT only.*add_adapters"):
        add_prefix_tuning(gpt2, n_prefix=2)
    with pytest.raises(TypeError, match="course GPT only"):
        add_prompt_tuning(gpt2, n_tokens=2)


@pytest.mark.cuda
def test_prefix_under_bf16_autocast_on_cuda():
    model = add_prefix_tuning(make_gpt("rope"), n_prefix=4).cuda()
    x = ids(batch=2).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits, loss = model(x, x)
    loss.backward()
    assert model.prefix_tuning.kv.grad is not None and torch.isfinite(logits).all()


def test_prefix_trains_in_fp32_with_bf16_keys_on_cpu_autocast():
    model = add_prefix_tuning(make_gpt("rope"), n_prefix=4)
    x = ids(batch=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, loss = model(x, x)
    loss.backward()
    assert model.prefix_tuning.kv.grad is not None and model.prefix_tuning.kv.grad.dtype == torch.float32
