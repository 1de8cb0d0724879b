"""Checkers of chapter 04 (ALiBi and context extension): ALiBi slopes and bias, interpolated positions,
YaRN's frequencies.

Each one tries several inputs chosen so that the usual mistakes give a different result from the
right answer, and names the mistake when the answer equals what that mistake gives.
"""
from __future__ import annotations

import math

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


def _yarn_reference(d: int, base: float, s: float, L: int, beta_fast: float, beta_slow: float, rounded=False,
                    in_turns=False, unclamped=False) -> tuple[torch.Tensor, float]:
    """YaRN's frequencies with the ramp's ends kept fractional (or rounded, as Hugging Face does by
    default), and its attention factor; ``in_turns``: the ramp linear in the turns, not in the pair
    index; ``unclamped``: a ramp that may start below pair 0."""
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    turns = L * theta / (2 * math.pi)
    pair = lambda t: d * math.log(L / (2 * math.pi * t)) / (2 * math.log(base))     # L theta_i / 2 pi = t
    lo, hi = pair(beta_fast), pair(beta_slow)
    if rounded:
        lo, hi = math.floor(lo), math.ceil(hi)
    if not unclamped:
        lo = max(lo, 0)                          # the ramp starts at pair 0 at the earliest
    i = torch.arange(d // 2, dtype=torch.float64)
    ramp = ((beta_fast - turns) / (beta_fast - beta_slow) if in_turns else (i - lo) / (hi - lo)).clamp(0, 1)
    return theta * (1 - ramp) + theta / s * ramp, (0.1 * math.log(s) + 1 if s > 1 else 1.0)


def check_yarn_inv_freq(yarn_inv_freq) -> bool:
    """yarn_inv_freq(head_dim, base, factor, trained_len, beta_fast=32, beta_slow=1) ->
    (theta' of shape (head_dim / 2,), attention factor as a Python number)."""
    def test(answer):
        for d, base, s, L in ((16, 10000.0, 4.0, 64), (128, 10000.0, 8.0, 4096), (64, 500000.0, 2.0, 2048),
                              (32, 10000.0, 16.0, 256)):
            what = f"yarn_inv_freq({d}, {base:g}, {s:g}, {L})"
            out = answer(d, base, s, L)
            assert isinstance(out, (tuple, list)) and len(out) == 2, f"{what} must return (theta_new, attention_factor)"
            got, factor = tensor_answer(out[0], f"{what}[0]").reshape(-1), number_answer(out[1], f"{what}[1]")
            want, want_factor = _yarn_reference(d, base, s, L, 32.0, 1.0)
            expect_shape(got, want.shape, f"{what}[0], one frequency per pair (head_dim / 2)")
            theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
            cause = likely_cause(got, {
                "you rounded the ramp's ends to whole pairs (Hugging Face's default): keep i_fast and i_slow "
                "as fractions here": _yarn_reference(d, base, s, L, 32.0, 1.0, rounded=True)[0],
                "the ramp runs the wrong way: gamma = 0 (keep theta_i) for the fast pairs, those that turn "
                "beta_fast = 32 times or more within L, and 1 (theta_i / s) for the slow ones":
                    theta + theta / s - want,
                "that interpolates every pair (PI): only the slow pairs get theta_i / s": theta / s,
                "that keeps every pair: the slow pairs must be divided by the factor": theta,
                "the ramp is linear in the pair index i, between i_fast and i_slow, not linear in the turns":
                    _yarn_reference(d, base, s, L, 32.0, 1.0, in_turns=True)[0],
                "beta_fast and beta_slow are swapped: i_fast = i(beta_fast) with beta_fast = 32, the pair that turns 32 times":
                    _yarn_reference(d, base, s, L, 1.0, 32.0, unclamped=True)[0],
                "i_fast below 0 means no pair turns beta_fast times: the ramp starts at pair 0, i_fast = max(i(beta_fast), 0)":
                    _yarn_reference(d, base, s, L, 32.0, 1.0, unclamped=True)[0],
            }, want, atol=1e-9)
            if cause:
                raise AssertionError(f"{what}: {cause}")
            expect_close(got, want, f"{what}[0], theta'_i", atol=1e-12, rtol=1e-6)
            factor_cause = likely_cause(factor, {
                "that is the factor squared, what multiplies the logits: return 0.1 ln s + 1 itself": want_factor ** 2,
                "use the natural log: 0.1 ln s + 1": 0.1 * math.log10(s) + 1,
                "the attention factor is 0.1 ln s + 1, not its inverse": 1 / want_factor,
            }, want_factor, atol=1e-9)
            if factor_cause:
                raise AssertionError(f"{what}: {factor_cause}")
            assert abs(factor - want_factor) <= 1e-9, f"{what}[1]: want 0.1 ln {s:g} + 1 = {want_factor:.6f}, got {factor:.6f}"
        theta, factor = answer(16, 10000.0, 1.0, 64)           # factor 1: nothing to extend
        assert torch.allclose(tensor_answer(theta, "theta_new"), _yarn_reference(16, 10000.0, 1.0, 64, 32.0, 1.0)[0]) \
            and number_answer(factor, "attention_factor") == 1.0, "with factor 1 nothing changes: theta' = theta, factor 1"
    return run_check("Exercise: YaRN frequencies", test, yarn_inv_freq,
                     shape_hint="theta has one entry per pair: torch.arange(0, head_dim, 2), head_dim / 2 of them")
