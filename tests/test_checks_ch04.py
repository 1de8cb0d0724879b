"""Mutation tests of chapter 04's checkers: each wrong answer of the bank (the usual mistakes) is
rejected with a message that names what is wrong, and each right answer, written differently from
the solution (another dtype, container or formula), is accepted. The answers are written here,
independently of the library the checkers compare against."""
import math

import numpy as np
import pytest
import torch
from conftest import bank_sizes_hold

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


# ----------------------------------------------------------------------------- NTK-aware base
def ntk_right(base, s, d):
    return base * s ** (d / (d - 2))


def ntk_by_logs(base, s, d):                  # another formula, and a numpy float
    return np.float64(math.exp(math.log(base) + d / (d - 2) * math.log(s)))


def ntk_times_factor(base, s, d):
    return base * s


def ntk_inverted_exponent(base, s, d):
    return base * s ** ((d - 2) / d)


def ntk_plus_two(base, s, d):
    return base * s ** (d / (d + 2))


def ntk_tensor(base, s, d):                   # right value, as a tensor where a number is asked for
    return torch.tensor(base) * s ** (d / (d - 2))


def ntk_integer_division(base, s, d):
    return base * s ** (d // (d - 2))


def ntk_unchanged(base, s, d):
    return base


RIGHT = [
    (checks.check_alibi_slopes, slopes_closed_form), (checks.check_alibi_slopes, slopes_numpy_float64),
    (checks.check_alibi_slopes, slopes_as_list),
    (checks.check_alibi_bias, bias_right), (checks.check_alibi_bias, bias_masked_future),
    (checks.check_alibi_bias, bias_loops_float64),
    (checks.check_interpolated_positions, positions_interpolated), (checks.check_interpolated_positions, positions_linspace),
    (checks.check_interpolated_positions, positions_numpy),
    (checks.check_ntk_base, ntk_right), (checks.check_ntk_base, ntk_by_logs),
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
    (checks.check_ntk_base, ntk_times_factor, "multiplies the base by the factor"),
    (checks.check_ntk_base, ntk_inverted_exponent, "not (d - 2) / d"),
    (checks.check_ntk_base, ntk_plus_two, "not d / (d + 2)"),
    (checks.check_ntk_base, ntk_tensor, "must be a Python number"),
    (checks.check_ntk_base, ntk_integer_division, "rounds the exponent with //"),
    (checks.check_ntk_base, ntk_unchanged, "want"),
]

CHECKERS = (checks.check_alibi_slopes, checks.check_alibi_bias, checks.check_interpolated_positions, checks.check_ntk_base)


@pytest.mark.parametrize("checker, answer", RIGHT, ids=[f"{c.__name__}-{a.__name__}" for c, a in RIGHT])
def test_right_answers_are_accepted(verdict, checker, answer):
    passed, line = verdict(checker, answer)
    assert passed and line.endswith("correct ✓"), line


@pytest.mark.parametrize("checker, answer, phrase", WRONG, ids=[f"{c.__name__}-{a.__name__}" for c, a, _ in WRONG])
def test_wrong_answers_are_rejected_with_the_reason(verdict, checker, answer, phrase):
    passed, line = verdict(checker, answer)
    assert not passed and ("not right yet" in line or "your code raised" in line) and phrase in line, line


def test_every_checker_has_a_bank():
    bank_sizes_hold(CHECKERS, RIGHT, WRONG)


def test_a_shape_error_gets_a_hint(verdict):
    _, line = verdict(checks.check_alibi_bias, bias_bad_broadcast)
    assert "broadcast to (H, T, T)" in line, line
