"""Checkers of chapter 04 (ALiBi and context extension): ALiBi slopes and bias, interpolated positions,
the NTK-aware RoPE base.

Each one tries several inputs chosen so that the usual mistakes give a different result from the
right answer, and names the mistake when the answer equals what that mistake gives.
"""
from __future__ import annotations

import torch

from ..positions import alibi_slopes as reference_slopes
from .common import expect_close, expect_shape, likely_cause, number_answer, run_check, tensor_answer


def _geometric(n: int) -> torch.Tensor:
    a = 2.0 ** (8.0 / n)
    return torch.tensor([a ** -(h + 1) for h in range(n)], dtype=torch.float64)


def check_alibi_slopes(alibi_slopes) -> bool:
    """alibi_slopes(n_heads) -> (n_heads,) tensor of ALiBi head slopes, any head count."""
    def test(answer):
        for n in (1, 2, 4, 8, 16, 3, 5, 6, 12, 20):
            got = tensor_answer(answer(n), f"alibi_slopes({n})").reshape(-1)
            expect_shape(got, (n,), f"alibi_slopes({n})")
            want = reference_slopes(n).double()
            p = 2 ** (n.bit_length() - 1)          # the power of two at or below n
            mistakes = {"the first slope is 1/a, not 1: use a^-(h+1) for h = 0 .. n-1": _geometric(n) * 2.0 ** (8.0 / n)}
            if n > 1:
                mistakes["the slopes go from the steepest (1/a) down to the flattest, not the other way"] = want.flip(0)
            if n != p:
                extra = f"for the {n - p} heads beyond {p}"
                mistakes.update({
                    f"{n} is not a power of two: take the {p} slopes of {p} heads, then every other slope of "
                    f"{2 * p} heads for the other {n - p}": _geometric(n),
                    f"{extra} take every other slope of {2 * p} heads starting with the first (indices 0, 2, 4, ...)":
                        torch.cat([_geometric(p), _geometric(2 * p)[1::2][: n - p]]),
                    f"{extra} take every other slope of {2 * p} heads (indices 0, 2, 4, ...), not the first {n - p}":
                        torch.cat([_geometric(p), _geometric(2 * p)[: n - p]]),
                })
            cause = likely_cause(got, mistakes, want)
            if cause:
                raise AssertionError(f"alibi_slopes({n}): {cause}")
            expect_close(got, want, f"alibi_slopes({n})", atol=1e-7, rtol=1e-5)
    return run_check("Exercise: ALiBi slopes", test, alibi_slopes)


def check_alibi_bias(alibi_bias) -> bool:
    """alibi_bias(slopes, T) -> (H, T, T) tensor with m_h * -(i - j) for keys j <= i (above the
    diagonal anything: the causal mask hides it)."""
    def test(answer):
        g = torch.Generator().manual_seed(4)
        for slopes, T in ((torch.tensor([0.5, 0.25]), 5), (torch.rand(3, generator=g) + 0.1, 9),
                          (torch.tensor([1 / 4, 1 / 16, 1 / 64, 1 / 256]), 7), (torch.tensor([0.3]), 1)):
            before = slopes.clone()
            what = f"alibi_bias(slopes of {len(slopes)} heads, T={T})"
            got = tensor_answer(answer(slopes, T), what)
            assert torch.equal(slopes, before), "do not change the slopes in place"
            expect_shape(got, (len(slopes), T, T), f"{what}, (H, T, T)")
            i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
            m = slopes.double()[:, None, None]
            want = -m * (i - j)
            seen = (j <= i)[None].expand_as(want)      # on and below the diagonal: what attention uses
            below = lambda x: torch.where(seen, x, torch.zeros_like(x))
            mistakes = {"the sign is flipped: a key further back must get a more negative bias, m_h (j - i)": below(-want)}
            if len(slopes) > 1:
                mistakes["every head uses the same slope: multiply head h's distances by its own m_h"] = \
                    below(-m[:1] * (i - j)).expand_as(want)
            if T > 2:
                mistakes["the bias grows with the distance i - j: m_h (j - i), not the slope alone"] = below(-m * (i != j))
            cause = likely_cause(below(got), mistakes, below(want))
            if cause:
                raise AssertionError(f"T={T}: {cause}")
            expect_close(got, want, f"{what}, entry [h, i, j] = m_h (j - i)", atol=1e-6, mask=seen)
    return run_check("Exercise: ALiBi bias", test, alibi_bias,
                     shape_hint="slopes has shape (H,): make it (H, 1, 1) and the distances (T, T), they broadcast to (H, T, T)")


def check_interpolated_positions(interpolated_positions) -> bool:
    """interpolated_positions(T, trained_len, target_len) -> positions 0 .. T-1 squeezed by L / L'."""
    def test(answer):
        for T, L, L_new in ((8, 4, 8), (256, 64, 256), (10, 10, 10), (7, 3, 12), (12, 5, 7)):
            got = tensor_answer(answer(T, L, L_new), f"interpolated_positions({T}, {L}, {L_new})").reshape(-1)
            expect_shape(got, (T,), f"interpolated_positions({T}, {L}, {L_new})")
            m = torch.arange(T, dtype=torch.float64)
            cause = likely_cause(got, {
                "that stretches: position m becomes m L / L' (divide by the factor L'/L)": m * L_new / L,
                "that rounds down: the new positions are fractions, m L / L' in floating point": torch.floor(m * L / L_new),
                "positions start at 0: m = 0, 1, ..., T-1": (m + 1) * L / L_new,
            }, m * L / L_new)
            if cause:
                raise AssertionError(f"T={T}, L={L}, L'={L_new}: {cause}")
            expect_close(got, m * L / L_new, f"m' = m L / L' for T={T}, L={L}, L'={L_new}")
    return run_check("Exercise: interpolated positions", test, interpolated_positions)


def check_ntk_base(ntk_base) -> bool:
    """ntk_base(base, factor, head_dim) -> base' = base * factor^(d / (d - 2)), a Python number."""
    def test(answer):
        for base, s, d in ((10000.0, 4.0, 64), (10000.0, 1.0, 16), (500000.0, 8.0, 128), (10000.0, 2.5, 8)):
            got = number_answer(answer(base, s, d), f"ntk_base({base:g}, {s:g}, {d})")
            want = base * s ** (d / (d - 2))
            cause = likely_cause(got, {
                "that multiplies the base by the factor itself (or rounds the exponent with //): raise the factor to "
                "the power d / (d - 2), a fraction": base * s,
                "the exponent is d / (d - 2), not (d - 2) / d": base * s ** ((d - 2) / d),
                "the exponent is d / (d - 2), not d / (d + 2)": base * s ** (d / (d + 2)),
                "that raises the base, not the factor: base' = base * factor^(d / (d - 2))": base ** (d / (d - 2)) * s,
            }, want, atol=1e-9)
            if cause:
                raise AssertionError(f"base={base:g}, factor={s:g}, d={d}: {cause}")
            assert abs(got - want) <= 1e-9 * want, f"base={base:g}, factor={s:g}, d={d}: want {want:.8g}, got {got:.8g}"
    return run_check("Exercise: NTK-aware base", test, ntk_base)
