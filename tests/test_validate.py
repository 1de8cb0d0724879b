"""The argument checks shared by the library: what each accepts, what it refuses, what it says."""
import math

import pytest

from llmtap.validate import non_negative_int, one_of, positive_int, positive_number


def test_positive_int_returns_what_it_accepts():
    assert positive_int(1, "r") == 1
    assert positive_int(10**9, "r") == 10**9


@pytest.mark.parametrize("value", [0, -3, 2.0, 2.5, "3", None, True, False])
def test_positive_int_refuses(value):
    with pytest.raises(ValueError, match=r"^r \(the rank\) must be a positive int, got "):
        positive_int(value, "r (the rank)")


def test_non_negative_int_allows_zero_and_refuses_bools():
    assert non_negative_int(0, "k") == 0 and non_negative_int(7, "k") == 7
    for value in (-1, 1.0, True, False, "0"):
        with pytest.raises(ValueError, match="k must be an int >= 0"):
            non_negative_int(value, "k")


def test_positive_number_takes_ints_and_floats():
    assert positive_number(3, "alpha") == 3
    assert positive_number(0.5, "alpha") == 0.5
    for value in (0, -0.1, 0.0, math.nan, True, "1", None):
        with pytest.raises(ValueError, match="alpha must be a positive number"):
            positive_number(value, "alpha")


def test_messages_show_the_value_and_the_hint():
    with pytest.raises(ValueError) as info:
        positive_number(-2, "alpha", "the update is scaled by alpha / r")
    assert str(info.value) == "alpha must be a positive number, got -2; the update is scaled by alpha / r"
    with pytest.raises(ValueError) as info:
        positive_int("8", "bottleneck")
    assert str(info.value) == "bottleneck must be a positive int, got '8'"      # repr: the quotes show a str


def test_one_of_lists_the_choices():
    assert one_of("left", "too_long", ("error", "left")) == "left"
    with pytest.raises(ValueError) as info:
        one_of("right", "too_long", ["error", "left"])
    assert str(info.value) == "too_long must be one of ('error', 'left'), got 'right'"


def test_the_meaning_of_an_argument_goes_in_brackets():
    with pytest.raises(ValueError, match=r"^bottleneck must be a positive int \(the inner width m\), got 0$"):
        positive_int(0, "bottleneck", meaning="the inner width m")
