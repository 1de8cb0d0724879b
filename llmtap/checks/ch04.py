"""Checkers of chapter 04 (ALiBi and context extension): ALiBi slopes and bias, interpolated positions,
the NTK-aware RoPE base."""
from __future__ import annotations

import torch

from ..positions import alibi_slopes as reference_slopes
from .common import run_check


def check_alibi_slopes(alibi_slopes) -> bool:
    """alibi_slopes(n_heads) -> (n_heads,) tensor of ALiBi head slopes, any head count."""
    def test():
        for n in (1, 2, 4, 8, 16, 3, 5, 6, 12, 20):
            got = torch.as_tensor(alibi_slopes(n), dtype=torch.float32).view(-1)
            assert got.shape == (n,), f"for {n} heads return {n} slopes, got shape {tuple(got.shape)}"
            want = reference_slopes(n)
            if n & (n - 1) == 0:
                assert torch.allclose(got, want, rtol=1e-5), \
                    f"{n} heads (a power of two): want 1/a, 1/a^2, ... with a^{n} = 256, i.e. {want.tolist()}"
            else:
                assert torch.allclose(got, want, rtol=1e-5), \
                    (f"{n} heads (not a power of two): take the {2 ** (n.bit_length() - 1)} slopes of the power of two "
                     f"below, then every other slope of twice that count; want {[round(x, 5) for x in want.tolist()]}")
    return run_check("Exercise: ALiBi slopes", test)


def check_alibi_bias(alibi_bias) -> bool:
    """alibi_bias(slopes, T) -> (H, T, T) tensor with m_h * -(i - j) for keys j <= i (above the
    diagonal anything: the causal mask hides it)."""
    def test():
        for slopes, T in ((torch.tensor([0.5, 0.25]), 5), (torch.tensor([1 / 4, 1 / 16, 1 / 64, 1 / 256]), 9),
                          (torch.tensor([0.3]), 1)):
            got = torch.as_tensor(alibi_bias(slopes, T)).float()
            assert got.shape == (len(slopes), T, T), f"want shape (H, T, T) = {(len(slopes), T, T)}, got {tuple(got.shape)}"
            i = torch.arange(T)[:, None]
            j = torch.arange(T)[None, :]
            want = -slopes[:, None, None] * (i - j)
            seen = (j <= i).expand_as(got)
            if not torch.allclose(got[seen], want[seen], atol=1e-6):
                if torch.allclose(got[seen], -want[seen], atol=1e-6):
                    raise AssertionError("the sign is flipped: keys further back must get a more negative bias")
                raise AssertionError(f"entry [h, i, j] must be m_h * -(i - j); for T={T}, head 0 row {T - 1} "
                                     f"want {want[0, -1].tolist()}, got {got[0, -1].tolist()}")
    return run_check("Exercise: ALiBi bias", test)


def check_interpolated_positions(interpolated_positions) -> bool:
    """interpolated_positions(T, trained_len, target_len) -> positions 0 .. T-1 squeezed by L / L'."""
    def test():
        for T, L, L_new in ((8, 4, 8), (256, 64, 256), (10, 10, 10), (7, 3, 12)):
            got = torch.as_tensor(interpolated_positions(T, L, L_new)).float().view(-1)
            assert got.shape == (T,), f"want {T} positions, got shape {tuple(got.shape)}"
            want = torch.arange(T).float() * L / L_new
            if L != L_new and torch.allclose(got, torch.arange(T).float() * L_new / L):
                raise AssertionError("that stretches: position m becomes m L / L' (divide by the factor L'/L)")
            assert torch.allclose(got, want, atol=1e-5), \
                f"m' = m L / L': for T={T}, L={L}, L'={L_new} want {want[:5].tolist()}..., got {got[:5].tolist()}..."
        assert torch.as_tensor(interpolated_positions(256, 64, 256)).max() < 64, "every position must fall in [0, L)"
    return run_check("Exercise: interpolated positions", test)


def check_ntk_base(ntk_base) -> bool:
    """ntk_base(base, factor, head_dim) -> base' = base * factor^(d / (d - 2))."""
    def test():
        for base, s, d in ((10000.0, 4.0, 64), (10000.0, 1.0, 16), (500000.0, 8.0, 128)):
            got = float(ntk_base(base, s, d))
            want = base * s ** (d / (d - 2))
            assert abs(got - want) <= 1e-6 * want, f"base={base}, s={s}, d={d}: want {want:.6g}, got {got:.6g}"
    return run_check("Exercise: NTK-aware base", test)
