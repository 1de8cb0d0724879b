"""Checkers of chapter 03 (adapters and prefixes): the adapter forward pass, attention with a prefix,
the soft prompt read from a text."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..adapters import Adapter
from ..prefix import soft_prompt_from_text as reference_soft_prompt
from ..tokenizer import Tokenizer
from .common import run_check


def check_adapter_forward(adapter_forward) -> bool:
    """adapter_forward(h, W_down, b_down, W_up, b_up) -> h + GELU(h W_downᵀ + b_down) W_upᵀ + b_up,
    with the weights in nn.Linear's layout: W_down (m, d), W_up (d, m)."""
    def test():
        torch.manual_seed(0)
        adapter = Adapter(12, 3)
        h = torch.randn(2, 5, 12)
        args = (adapter.down.weight.detach(), adapter.down.bias.detach())
        zero_up = adapter_forward(h, *args, torch.zeros(12, 3), torch.zeros(12))
        assert torch.is_tensor(zero_up) and zero_up.shape == h.shape, \
            f"return a tensor shaped like h {tuple(h.shape)}, got {getattr(zero_up, 'shape', type(zero_up).__name__)}"
        assert torch.allclose(zero_up, h, atol=1e-6), \
            "with W_up = 0 and b_up = 0 the adapter must return h unchanged: add h back (the residual)"
        with torch.no_grad():
            adapter.up.weight.normal_()
            adapter.up.bias.normal_()
        got = adapter_forward(h, *args, adapter.up.weight.detach(), adapter.up.bias.detach())
        linear = h + (h @ args[0].T + args[1]) @ adapter.up.weight.detach().T + adapter.up.bias.detach()
        assert not torch.allclose(got, linear, atol=1e-4), "apply the nonlinearity f = GELU inside the bottleneck"
        assert torch.allclose(got, adapter(h).detach(), atol=1e-5), \
            "expected h + GELU(h W_downᵀ + b_down) W_upᵀ + b_up"
    return run_check("Exercise: adapter forward", test)


def check_prefix_attention(prefix_attention) -> bool:
    """prefix_attention(q, k, v, prefix_k, prefix_v) -> attention output (B, H, T, d): keys and values
    [P_k ; K], [P_v ; V]; every query sees all prefix entries and the tokens up to its own."""
    def test():
        g = torch.Generator().manual_seed(0)
        B, H, T, P, d = 2, 3, 6, 4, 8
        q, k, v = (torch.randn(B, H, T, d, generator=g) for _ in range(3))
        pk, pv = torch.randn(B, H, P, d, generator=g), torch.randn(B, H, P, d, generator=g)
        got = prefix_attention(q, k, v, pk, pv)
        assert torch.is_tensor(got) and got.shape == (B, H, T, d), \
            f"expected shape {(B, H, T, d)} (one output per token, none for the prefix), got " \
            f"{getattr(got, 'shape', type(got).__name__)}"
        allowed = torch.cat([torch.ones(T, P, dtype=torch.bool), torch.ones(T, T, dtype=torch.bool).tril()], dim=1)
        keys, values = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
        want = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed)
        top_left = F.scaled_dot_product_attention(q, keys, values, is_causal=True)
        assert not torch.allclose(got, top_left, atol=1e-4), \
            "is_causal=True on T x (P + T) scores lets query i see only keys 0..i, i.e. the prefix: " \
            "shift the causal part by P"
        no_mask = F.scaled_dot_product_attention(q, keys, values)
        assert not torch.allclose(got, no_mask, atol=1e-4), "the tokens must stay causal: mask the future tokens"
        assert torch.allclose(got, want, atol=1e-5), \
            "query i must see all P prefix entries and tokens 0..i, with scores q kᵀ / sqrt(d)"
    return run_check("Exercise: attention with a prefix", test)


def check_soft_prompt_from_text(soft_prompt_from_text) -> bool:
    """soft_prompt_from_text(embedding_weight, tokenizer, text) -> (n_tokens, n_embd): the embedding rows
    of the text's tokens, as a new tensor; ValueError for characters the tokenizer has no token for."""
    def test():
        tok = Tokenizer("abcdefgh我好感到不。心情")
        g = torch.Generator().manual_seed(0)
        weight = torch.randn(tok.vocab_size, 8, generator=g)
        keep = weight.clone()
        for text in ("心情", "我感到不好。", "a"):
            got = soft_prompt_from_text(weight, tok, text)
            want = reference_soft_prompt(weight, tok, text)
            assert torch.is_tensor(got) and got.shape == want.shape, \
                f"for {text!r} expected shape {tuple(want.shape)} (one row per token), got " \
                f"{getattr(got, 'shape', type(got).__name__)}"
            assert torch.equal(got, want), f"for {text!r}: take the embedding rows of tokenizer.encode(text)"
            got.add_(1.0)
            assert torch.equal(weight, keep), "return a copy: training the soft prompt must not change the embeddings"
        try:
            soft_prompt_from_text(weight, tok, "心情😀")
        except ValueError:
            pass
        else:
            raise AssertionError("a character the tokenizer lacks (😀) must raise ValueError, not fall back to bytes")
    return run_check("Exercise: soft prompt from text", test)
