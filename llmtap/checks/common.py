"""What every checker shares: ``run_check``, which runs a checker's test and prints its one-line verdict."""
from __future__ import annotations


def run_check(title: str, test) -> bool:
    """Run ``test()`` and print one line under ``title``: correct, not solved yet (the exercise stub still
    raises NotImplementedError), not right yet (an assertion failed: its message says what is wrong), or
    the exception the student's code raised. Return True only when the test passed."""
    try:
        test()
    except NotImplementedError:
        print(f"{title}: not solved yet - fill in the exercise cell, run it, then run this cell again.")
        return False
    except AssertionError as e:
        print(f"{title}: not right yet - {e}")
        return False
    except Exception as e:  # the student's code crashed: say how, do not stop the notebook
        print(f"{title}: your code raised {type(e).__name__}: {e}")
        return False
    print(f"{title}: correct ✓")
    return True
