"""Checkers of chapter 00 (the course model): the causal mask, sampling, the next-token loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .common import run_check


def check_causal_mask(causal_mask) -> bool:
    """causal_mask(T) -> (T, T) bool tensor, True where query i may attend to key j (j <= i)."""
    def test():
        for T in (1, 2, 5, 9):
            m = causal_mask(T)
            assert isinstance(m, torch.Tensor), f"return a torch.Tensor, got {type(m).__name__}"
            assert m.shape == (T, T), f"for T={T} the mask must be ({T}, {T}), got {tuple(m.shape)}"
            assert m.dtype == torch.bool, f"return a bool tensor (True = may attend), got {m.dtype}"
            want = torch.ones(T, T, dtype=torch.bool).tril()
            assert torch.equal(m, want), f"wrong entries for T={T}: row i must be True for j <= i only"
    return run_check("Exercise: causal mask", test)


def check_sample_next(sample_next) -> bool:
    """sample_next(logits, temperature, top_k, generator) -> (B,) token ids."""
    def test():
        logits = torch.tensor([[0.0, 3.0, 1.0, 2.0], [5.0, 1.0, 0.0, 4.9]])
        ids = sample_next(logits, 0.0, None, None)
        assert torch.equal(torch.as_tensor(ids).view(-1), torch.tensor([1, 0])), \
            "temperature 0 must pick the argmax of each row"
        g = torch.Generator().manual_seed(0)
        draws = torch.stack([torch.as_tensor(sample_next(logits, 1.0, 2, g)).view(-1) for _ in range(400)])
        assert set(draws[:, 0].tolist()) <= {1, 3}, "top_k=2 must only ever return the 2 most likely ids"
        assert set(draws[:, 1].tolist()) <= {0, 3}, "top_k=2 must only ever return the 2 most likely ids"
        g = torch.Generator().manual_seed(0)
        flat = torch.zeros(1, 3)
        draws = torch.stack([torch.as_tensor(sample_next(flat, 1.0, None, g)).view(-1) for _ in range(600)])
        counts = torch.bincount(draws.view(-1), minlength=3).float() / 600
        assert (counts - 1 / 3).abs().max() < 0.08, f"equal logits must be sampled evenly, got {counts.tolist()}"
        g = torch.Generator().manual_seed(0)
        hot = torch.stack([torch.as_tensor(sample_next(torch.tensor([[0.0, 1.0]]), 0.25, None, g)).view(-1)
                           for _ in range(400)]).float().mean()
        assert hot > 0.9, "a low temperature must sharpen the distribution (logits / T)"
    return run_check("Exercise: temperature and top-k sampling", test)


def check_next_token_loss(next_token_loss) -> bool:
    """next_token_loss(logits (B, T, V), idx (B, T)) -> mean cross-entropy of predicting idx[:, t+1]."""
    def test():
        g = torch.Generator().manual_seed(1)
        logits = torch.randn(2, 7, 11, generator=g)
        idx = torch.randint(0, 11, (2, 7), generator=g)
        want = F.cross_entropy(logits[:, :-1].reshape(-1, 11), idx[:, 1:].reshape(-1))
        got = next_token_loss(logits, idx)
        assert isinstance(got, torch.Tensor) and got.dim() == 0, "return a scalar tensor"
        shifted_wrong = F.cross_entropy(logits.reshape(-1, 11), idx.reshape(-1))
        assert not torch.allclose(got, shifted_wrong), \
            "position t must predict token t+1: shift the targets by one"
        assert torch.allclose(got, want, atol=1e-5), f"expected {want.item():.4f}, got {float(got):.4f}"
    return run_check("Exercise: next-token loss", test)
