"""Argument checks shared by the library: one place for the guards every public function needs.

Each returns the value it checked, so a call reads ``r = positive_int(r, "r (the rank)")``, and
raises ``ValueError`` with the argument's name, what it must be (and, when given, what it means),
what it got and, when given, how to fix it.
``True`` is an ``int`` in Python; these guards refuse it, since ``r=True`` is always a slip.
"""
from __future__ import annotations


def _say(name: str, want: str, value, hint: str, meaning: str) -> str:
    what = f"{want} ({meaning})" if meaning else want
    return f"{name} must be {what}, got {value!r}" + (f"; {hint}" if hint else "")


def positive_int(value, name: str, hint: str = "", meaning: str = "") -> int:
    """``value`` if it is an int > 0 (not a bool), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(_say(name, "a positive int", value, hint, meaning))
    return value


def non_negative_int(value, name: str, hint: str = "", meaning: str = "") -> int:
    """``value`` if it is an int >= 0 (not a bool), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(_say(name, "an int >= 0", value, hint, meaning))
    return value


def positive_number(value, name: str, hint: str = "", meaning: str = "") -> float:
    """``value`` if it is an int or float > 0 (not a bool), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(_say(name, "a positive number", value, hint, meaning))
    return value


def one_of(value, name: str, choices) -> object:
    """``value`` if it is one of ``choices``, else ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value
