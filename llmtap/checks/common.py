"""What every checker shares.

* ``run_check(title, test, answer)`` runs a checker's test on the student's answer and prints a
  one-line verdict: correct, not solved yet, not right yet (and why), or that the student's code
  raised. An error raised by the checker itself is never blamed on the student.
* ``tensor_answer`` / ``number_answer`` / ``int_answer`` accept a right value in whatever form it
  comes (float64, an ``nn.Parameter``, a numpy number) and turn a wrong kind into a clear message.
* ``expect_close`` says which entry differs, what was expected and what came out; ``likely_cause``
  names a known mistake when the answer equals what that mistake gives.
"""
from __future__ import annotations

import functools
import numbers

import torch


class StudentCodeError(Exception):
    """An exception raised inside the student's code (not the checker's), with a hint for it."""

    def __init__(self, error: Exception, hint: str | None = None):
        super().__init__(f"{type(error).__name__}: {error}")
        self.error, self.hint = error, hint


class CheckerBug(Exception):
    """Raised when the checker itself fails: a bug in llmtap, not in the student's answer."""


def student_code(fn, shape_hint: str | None = None):
    """``fn`` wrapped so that whatever it raises (but NotImplementedError: the stub) arrives as
    ``StudentCodeError``; a PyTorch shape error gets ``shape_hint`` ("B @ A needs A of shape (r, d_in)")."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NotImplementedError:
            raise
        except Exception as e:  # the student's code crashed: keep the error, say what it likely means
            text = str(e)
            is_shape = isinstance(e, (RuntimeError, IndexError, ValueError)) and any(
                w in text for w in ("shape", "size", "dimension", "cannot be multiplied", "out of range"))
            raise StudentCodeError(e, shape_hint if is_shape else None) from e
    return call


def run_check(title: str, test, answer=None, shape_hint: str | None = None) -> bool:
    """Run ``test(answer)`` (``test()`` when no answer is given) and print one line under ``title``:

    * correct;
    * not solved yet (the exercise stub still raises NotImplementedError);
    * not right yet (an assertion failed: its message says what is wrong);
    * your code raised ... (an exception inside the student's function, with a hint for shape errors);
    * the checker failed (any other exception: a bug of the checker, not the student's).

    Return True only when the test passed."""
    try:
        if answer is None:
            test()
        else:
            test(student_code(answer, shape_hint))
    except NotImplementedError:
        print(f"{title}: not solved yet - fill in the exercise cell, run it, then run this cell again.")
        return False
    except AssertionError as e:
        print(f"{title}: not right yet - {e}")
        return False
    except StudentCodeError as e:
        print(f"{title}: your code raised {e}" + (f" - {e.hint}" if e.hint else ""))
        return False
    except Exception as e:  # not the student's: say so rather than blame their answer
        print(f"{title}: the checker itself failed ({type(e).__name__}: {e}) - this is a bug in llmtap, "
              f"not in your answer; please report it")
        return False
    print(f"{title}: correct ✓")
    return True


# ----------------------------------------------------------------------------- what came back
def tensor_answer(value, what: str = "the result") -> torch.Tensor:
    """The answer as a plain float64 tensor: any dtype, an nn.Parameter, a numpy array or a list
    of numbers holds the same values and is fine; anything else is a clear assertion."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64)
    if type(value).__module__ == "numpy" or isinstance(value, (list, tuple)):
        try:
            return torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            pass
    raise AssertionError(f"{what} must be a torch.Tensor, got {type(value).__name__}")


def number_answer(value, what: str = "the result") -> float:
    """A Python (or numpy) real number; a tensor is a clear assertion (use .item())."""
    if isinstance(value, torch.Tensor):
        raise AssertionError(f"{what} must be a Python number, got a tensor {tuple(value.shape)}: return .item() of it")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise AssertionError(f"{what} must be a number, got {type(value).__name__}")
    return float(value)


def int_answer(value, what: str = "the result") -> int:
    """A Python (or numpy) integer; a tensor, a float or a bool is a clear assertion."""
    if isinstance(value, torch.Tensor):
        raise AssertionError(f"{what} must be a Python int, got a tensor {tuple(value.shape)}: return int(...) of it")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise AssertionError(f"{what} must be an int, got {type(value).__name__} {value!r}")
    return int(value)


def expect_shape(got: torch.Tensor, shape: tuple, what: str = "the result") -> None:
    assert tuple(got.shape) == tuple(shape), f"{what} must have shape {tuple(shape)}, got {tuple(got.shape)}"


def expect_close(got: torch.Tensor, want: torch.Tensor, what: str = "the result", atol: float = 1e-5,
                 rtol: float = 1e-5, mask: torch.Tensor | None = None) -> None:
    """Assert ``got`` ≈ ``want`` (float64; only where ``mask`` is True), naming the first entry
    that differs with what was expected and what came out."""
    got, want = got.to(torch.float64), want.detach().to("cpu", torch.float64)
    expect_shape(got, want.shape, what)
    bad = ~torch.isclose(got, want, atol=atol, rtol=rtol)
    if mask is not None:
        bad &= mask.expand_as(bad)
    if bad.any():
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise AssertionError(f"{what}: entry {list(index)} should be {want[index].item():.6g}, "
                             f"got {got[index].item():.6g} ({int(bad.sum())} of {bad.numel()} entries differ)")


def likely_cause(got, mistakes: dict, want=None, atol: float = 1e-6) -> str | None:
    """The description of the first known mistake whose result equals ``got`` (tensors or
    numbers); a mistake that gives the right answer ``want`` on this input says nothing and is skipped."""
    def same(a, b):
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
            return a.shape == b.shape and torch.allclose(a, b, atol=atol, rtol=1e-6)
        return abs(float(a) - float(b)) <= atol * max(1.0, abs(float(b)))

    for cause, result in mistakes.items():
        if same(got, result) and (want is None or not same(result, want)):
            return cause
    return None
