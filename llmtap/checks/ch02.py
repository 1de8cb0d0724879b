"""Checkers of chapter 02 (LoRA): the LoRA forward pass, merging, the parameter count."""
from __future__ import annotations

import copy

import torch

from ..lora import add_lora
from ..model import GPT, GPTConfig
from ..train import count_parameters
from .common import run_check


def check_lora_forward(lora_forward) -> bool:
    """lora_forward(x, W0, A, B, alpha, r) -> W0 x + (alpha / r) B A x, for x of shape (..., d_in)."""
    def test():
        g = torch.Generator().manual_seed(0)
        d_in, d_out, r, alpha = 12, 10, 3, 6.0
        x, W0 = torch.randn(4, 5, d_in, generator=g), torch.randn(d_out, d_in, generator=g)
        A, B = torch.randn(r, d_in, generator=g), torch.randn(d_out, r, generator=g)
        got = lora_forward(x, W0, A, B, alpha, r)
        assert torch.is_tensor(got) and got.shape == (4, 5, d_out), \
            f"expected a tensor of shape (4, 5, {d_out}), got {getattr(got, 'shape', type(got).__name__)}"
        base = x @ W0.T
        assert torch.allclose(lora_forward(x, W0, A, torch.zeros_like(B), alpha, r), base, atol=1e-5), \
            "with B = 0 the result must be exactly W0 x"
        assert not torch.allclose(got, base + (x @ A.T) @ B.T, atol=1e-4) or alpha / r == 1, \
            "scale the update by alpha / r"
        assert torch.allclose(got, base + (alpha / r) * (x @ A.T) @ B.T, atol=1e-4), \
            "h = x W0ᵀ + (alpha / r) (x Aᵀ) Bᵀ"
    return run_check("Exercise: LoRA forward", test)


def check_merge_weight(merge_weight) -> bool:
    """merge_weight(W0, A, B, alpha, r) -> W0 + (alpha / r) B A, without changing W0."""
    def test():
        g = torch.Generator().manual_seed(1)
        W0, A, B = torch.randn(7, 9, generator=g), torch.randn(2, 9, generator=g), torch.randn(7, 2, generator=g)
        keep = W0.clone()
        got = merge_weight(W0, A, B, 4.0, 2)
        assert torch.is_tensor(got) and got.shape == W0.shape, "return a tensor shaped like W0 (d_out, d_in)"
        assert torch.equal(W0, keep), "do not change W0 in place: unmerging needs the original"
        assert torch.allclose(got, W0 + 2.0 * B @ A, atol=1e-5), "merged weight = W0 + (alpha / r) B A"
    return run_check("Exercise: merge", test)


def check_lora_param_count(lora_param_count) -> bool:
    """lora_param_count(model, targets, r) -> trainable parameters LoRA adds to the named linear layers."""
    def test():
        model = GPT(GPTConfig(vocab_size=40, block_size=8, n_layer=3, n_head=2, n_embd=24))
        for targets, r in [(["c_attn"], 4), (["c_attn", "c_proj"], 2), (["c_fc"], 8)]:
            got = lora_param_count(model, targets, r)
            want = count_parameters(add_lora(copy.deepcopy(model), targets, r=r))[0]
            assert got == want, f"for targets {targets} and r={r} expected {want}, got {got}: each wrapped " \
                                f"layer adds r (d_in + d_out)"
    return run_check("Exercise: LoRA parameter count", test)
