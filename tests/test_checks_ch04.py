"""Mutation tests of chapter 04's checkers: each wrong answer of the bank (the usual mistakes) is
rejected with a message that names what is wrong, and each right answer, written differently from
the solution (another dtype, container or formula), is accepted. The answers are written here,
independently of the library the checkers compare against."""
import math

import numpy as np
import pytest
import torch

from llmtap import checks


# ----------------------------------------------------------------------------- ALiBi slopes
def _powers(k):
    return [2 ** (-8 * (h + 1) / k) for h in range(k)]


def slopes_closed_form(n):
    m = 2 ** int(math.log2(n))
    return torch.tensor(_powers(m) + _powers(2 * m)[0::2][:n - m])


def slopes_numpy_float64(n):                  # a numpy array of float64: the same values
    m = 1 << (n.bit_length() - 1)
    return np.array(_powers(m) + [_powers(2 * m)[2 * i] for i in range(n - m)])


def slopes_as_list(n):                        # a plain list: the same values
    return slopes_closed_form(n).tolist()


def slopes_only_powers_of_two(n):
    a = 256 ** (1 / n)
    return torch.tensor([a ** -(h + 1) for h in range(n)])


def slopes_start_at_one(n):
    a = 256 ** (1 / n)
    return torch.tensor([a ** -h for h in range(n)])


def slopes_reversed(n):
    return slopes_closed_form(n).flip(0)


def slopes_odd_interleave(n):                 # every other slope from the second one
    m = 2 ** int(math.log2(n))
    return torch.tensor(_powers(m) + _powers(2 * m)[1::2][:n - m])


def slopes_first_of_double(n):                # the first n - m of 2m, not every other
    m = 2 ** int(math.log2(n))
    return torch.tensor(_powers(m) + _powers(2 * m)[:n - m])


def slopes_power_above(n):                    # rounds the head count up to a power of two and cuts
    m = 1 << (n - 1).bit_length()
    return torch.tensor(_powers(m)[:n])


def slopes_one_too_few(n):
    return slopes_closed_form(n)[:-1] if n > 1 else torch.tensor([])


# ----------------------------------------------------------------------------- ALiBi bias
def bias_right(slopes, T):
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    return -slopes[:, None, None] * (i - j)


def bias_masked_future(slopes, T):            # -inf above the diagonal is fine: the mask hides it
    return bias_right(slopes, T).masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))


def bias_loops_float64(slopes, T):            # loops, float64
    out = torch.zeros(len(slopes), T, T, dtype=torch.float64)
    for h, m in enumerate(slopes.tolist()):
        for i in range(T):
            for j in range(i + 1):
                out[h, i, j] = m * (j - i)
    return out


def bias_flipped(slopes, T):
    return -bias_right(slopes, T)


def bias_first_head_only(slopes, T):
    return bias_right(slopes, T)[0]


def bias_one_slope(slopes, T):                # every head with the first slope
    return bias_right(slopes[:1].expand(len(slopes)), T)


def bias_no_distance(slopes, T):              # the slope alone, off the diagonal
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    return -slopes[:, None, None] * (i != j)


def bias_transposed(slopes, T):               # m (i - j) on the wrong side of the diagonal
    return bias_right(slopes, T).transpose(1, 2)


def bias_in_place(slopes, T):                 # right values, but the slopes are changed in place
    out = bias_right(slopes.clone(), T)
    slopes.mul_(2)
    return out


def bias_bad_broadcast(slopes, T):            # slopes (H,) against (T, T): a shape error
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    return -slopes * (i - j).reshape(T, T, 1).expand(T, T, T + 1)


def bias_crash(slopes, T):
    return 1 / 0


# ----------------------------------------------------------------------------- interpolated positions
def positions_interpolated(T, L, L_new):
    return torch.arange(T) * L / L_new


def positions_linspace(T, L, L_new):          # float64 and another formula
    return torch.linspace(0, (T - 1) * L / L_new, T, dtype=torch.float64)


def positions_numpy(T, L, L_new):
    return np.arange(T) / (L_new / L)


def positions_stretched(T, L, L_new):
    return torch.arange(T) * L_new / L


def positions_floor(T, L, L_new):
    return torch.arange(T) * L // L_new


def positions_from_one(T, L, L_new):
    return torch.arange(1, T + 1) * L / L_new


def positions_one_short(T, L, L_new):
    return torch.arange(T - 1) * L / L_new


def positions_unchanged(T, L, L_new):
    return torch.arange(T).float()


def positions_squeezed_to_end(T, L, L_new):   # squeezes [0, T) into [0, L) instead of [0, L')
    return torch.arange(T) * L / T


# ----------------------------------------------------------------------------- YaRN's frequencies
def _theta(d, base):
    return base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)


def _pair(d, base, L, t):                      # the pair index that turns t times within L
    return d * math.log(L / (2 * math.pi * t)) / (2 * math.log(base))


def yarn_right(d, base, s, L, beta_fast=32.0, beta_slow=1.0):
    theta = _theta(d, base)
    lo, hi = max(_pair(d, base, L, beta_fast), 0), _pair(d, base, L, beta_slow)
    gamma = ((torch.arange(d // 2) - lo) / (hi - lo)).clamp(0, 1)
    return theta * (1 - gamma) + theta / s * gamma, 0.1 * math.log(s) + 1 if s > 1 else 1.0


def yarn_loop_numpy(d, base, s, L, beta_fast=32.0, beta_slow=1.0):      # a loop, numpy, float32
    lo, hi = _pair(d, base, L, beta_fast), _pair(d, base, L, beta_slow)
    lo = lo if lo > 0 else 0.0
    out = []
    for i in range(d // 2):
        theta = base ** (-2 * i / d)
        gamma = min(max((i - lo) / (hi - lo), 0.0), 1.0)
        out.append(theta / s if gamma == 1 else theta * (1 - gamma) + theta / s * gamma)
    return np.array(out, dtype=np.float64), np.float64(1 + 0.1 * np.log(s)) if s > 1 else 1


def yarn_by_wavelength(d, base, s, L, beta_fast=32.0, beta_slow=1.0):   # in wavelengths lambda_i = 2 pi / theta_i
    wavelength = 2 * math.pi * base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    # a pair turns L / lambda times within L: it turns beta times where lambda = L / beta, i.e. at index
    # i = (d / 2) log_base(L / (2 pi beta))
    index = lambda beta: (d / 2) * math.log(L / (2 * math.pi * beta), base)
    start = max(index(beta_fast), 0.0)
    gamma = torch.clamp((torch.arange(d // 2) - start) / (index(beta_slow) - start), 0.0, 1.0)
    return (2 * math.pi / wavelength) * ((1 - gamma) + gamma / s), (1.0 + math.log(s) / 10 if s > 1 else 1.0)


def yarn_rounded(d, base, s, L, beta_fast=32.0, beta_slow=1.0):        # Hugging Face's default rounding
    theta = _theta(d, base)
    lo, hi = max(math.floor(_pair(d, base, L, beta_fast)), 0), math.ceil(_pair(d, base, L, beta_slow))
    gamma = ((torch.arange(d // 2) - lo) / (hi - lo)).clamp(0, 1)
    return theta * (1 - gamma) + theta / s * gamma, 0.1 * math.log(s) + 1 if s > 1 else 1.0


def yarn_reversed(d, base, s, L, beta_fast=32.0, beta_slow=1.0):
    theta, factor = _theta(d, base), yarn_right(d, base, s, L)[1]
    gamma = 1 - (yarn_right(d, base, s, L)[0] - theta) / (theta / s - theta) if s > 1 else torch.zeros(d // 2)
    return theta * (1 - gamma) + theta / s * gamma, factor


def yarn_all_interpolated(d, base, s, L, beta_fast=32.0, beta_slow=1.0):
    return _theta(d, base) / s, yarn_right(d, base, s, L)[1]


def yarn_in_turns(d, base, s, L, beta_fast=32.0, beta_slow=1.0):       # the ramp linear in the turns
    theta = _theta(d, base)
    gamma = ((beta_fast - L * theta / (2 * math.pi)) / (beta_fast - beta_slow)).clamp(0, 1)
    return theta * (1 - gamma) + theta / s * gamma, yarn_right(d, base, s, L)[1]


def yarn_betas_swapped(d, base, s, L, beta_fast=32.0, beta_slow=1.0):
    theta = _theta(d, base)
    lo, hi = _pair(d, base, L, beta_slow), _pair(d, base, L, beta_fast)
    gamma = ((torch.arange(d // 2) - lo) / (hi - lo)).clamp(0, 1)
    return theta * (1 - gamma) + theta / s * gamma, yarn_right(d, base, s, L)[1]


def yarn_unclamped(d, base, s, L, beta_fast=32.0, beta_slow=1.0):      # a ramp that starts below pair 0
    theta = _theta(d, base)
    lo, hi = _pair(d, base, L, beta_fast), _pair(d, base, L, beta_slow)
    gamma = ((torch.arange(d // 2) - lo) / (hi - lo)).clamp(0, 1)
    return theta * (1 - gamma) + theta / s * gamma, yarn_right(d, base, s, L)[1]


def yarn_factor_squared(d, base, s, L, beta_fast=32.0, beta_slow=1.0):
    theta, factor = yarn_right(d, base, s, L)
    return theta, factor ** 2


def yarn_factor_log10(d, base, s, L, beta_fast=32.0, beta_slow=1.0):
    theta, _ = yarn_right(d, base, s, L)
    return theta, 0.1 * math.log10(s) + 1 if s > 1 else 1.0


def yarn_factor_tensor(d, base, s, L, beta_fast=32.0, beta_slow=1.0):  # the factor as a tensor
    theta, factor = yarn_right(d, base, s, L)
    return theta, torch.tensor(factor)


def yarn_every_dim(d, base, s, L, beta_fast=32.0, beta_slow=1.0):      # one frequency per dimension: a shape error
    theta = base ** (-torch.arange(d, dtype=torch.float64) / d)
    return theta * torch.ones(d // 2, 1), 1.0


def yarn_theta_only(d, base, s, L, beta_fast=32.0, beta_slow=1.0):
    return yarn_right(d, base, s, L)[0]


RIGHT = [
    (checks.check_alibi_slopes, slopes_closed_form), (checks.check_alibi_slopes, slopes_numpy_float64),
    (checks.check_alibi_slopes, slopes_as_list),
    (checks.check_alibi_bias, bias_right), (checks.check_alibi_bias, bias_masked_future),
    (checks.check_alibi_bias, bias_loops_float64),
    (checks.check_interpolated_positions, positions_interpolated), (checks.check_interpolated_positions, positions_linspace),
    (checks.check_interpolated_positions, positions_numpy),
    (checks.check_yarn_inv_freq, yarn_right), (checks.check_yarn_inv_freq, yarn_loop_numpy),
    (checks.check_yarn_inv_freq, yarn_by_wavelength),
]

WRONG = [
    (checks.check_alibi_slopes, slopes_only_powers_of_two, "not a power of two"),
    (checks.check_alibi_slopes, slopes_start_at_one, "the first slope is 1/a"),
    (checks.check_alibi_slopes, slopes_reversed, "steepest"),
    (checks.check_alibi_slopes, slopes_odd_interleave, "starting with the first"),
    (checks.check_alibi_slopes, slopes_first_of_double, "not the first"),
    (checks.check_alibi_slopes, slopes_power_above, "alibi_slopes(3)"),
    (checks.check_alibi_slopes, slopes_one_too_few, "must have shape (1,)"),
    (checks.check_alibi_bias, bias_flipped, "sign is flipped"),
    (checks.check_alibi_bias, bias_first_head_only, "shape"),
    (checks.check_alibi_bias, bias_one_slope, "its own m_h"),
    (checks.check_alibi_bias, bias_no_distance, "grows with the distance"),
    (checks.check_alibi_bias, bias_transposed, "sign is flipped"),
    (checks.check_alibi_bias, bias_in_place, "in place"),
    (checks.check_alibi_bias, bias_bad_broadcast, "RuntimeError"),
    (checks.check_alibi_bias, bias_crash, "your code raised ZeroDivisionError"),
    (checks.check_interpolated_positions, positions_stretched, "stretches"),
    (checks.check_interpolated_positions, positions_floor, "rounds down"),
    (checks.check_interpolated_positions, positions_from_one, "start at 0"),
    (checks.check_interpolated_positions, positions_one_short, "shape (8,)"),
    (checks.check_interpolated_positions, positions_unchanged, "m' = m L / L'"),
    (checks.check_interpolated_positions, positions_squeezed_to_end, "m' = m L / L'"),
    (checks.check_yarn_inv_freq, yarn_rounded, "rounded the ramp's ends"),
    (checks.check_yarn_inv_freq, yarn_reversed, "the wrong way"),
    (checks.check_yarn_inv_freq, yarn_all_interpolated, "interpolates every pair"),
    (checks.check_yarn_inv_freq, yarn_in_turns, "linear in the pair index"),
    (checks.check_yarn_inv_freq, yarn_betas_swapped, "swapped"),
    (checks.check_yarn_inv_freq, yarn_unclamped, "the ramp starts at pair 0"),
    (checks.check_yarn_inv_freq, yarn_factor_squared, "the factor squared"),
    (checks.check_yarn_inv_freq, yarn_factor_log10, "natural log"),
    (checks.check_yarn_inv_freq, yarn_factor_tensor, "must be a Python number"),
    (checks.check_yarn_inv_freq, yarn_every_dim, "one frequency per pair"),
    (checks.check_yarn_inv_freq, yarn_theta_only, "must return (theta_new, attention_factor)"),
]

CHECKERS = (checks.check_alibi_slopes, checks.check_alibi_bias, checks.check_interpolated_positions,
            checks.check_yarn_inv_freq)



def test_a_shape_error_gets_a_hint(verdict):
    _, line = verdict(checks.check_alibi_bias, bias_bad_broadcast)
    assert "broadcast to (H, T, T)" in line, line
