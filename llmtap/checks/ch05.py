"""Checkers of chapter 05 (instruction data): the longest common subsequence, the instruction filter,
the SFT labels."""
from __future__ import annotations

import random

from ..rouge import lcs_length, tokenize
from ..train import collate_completions
from .common import run_check


def check_lcs(lcs) -> bool:
    """lcs(a, b) -> length of the longest common subsequence of two token lists."""
    def test():
        cases = [([], ["a"]), (["a"], ["a"]), (["a", "b", "c"], ["c", "b", "a"]),
                 (tokenize("写一首关于春天的诗"), tokenize("写一首诗")),
                 ("the cat sat on the mat".split(), "the dog sat on a mat".split())]
        rng = random.Random(0)
        cases += [([rng.choice("abc") for _ in range(rng.randint(0, 12))],
                   [rng.choice("abc") for _ in range(rng.randint(0, 12))]) for _ in range(40)]
        for a, b in cases:
            got, want = lcs(list(a), list(b)), lcs_length(list(a), list(b))
            assert isinstance(got, int) or (hasattr(got, "item") and got.numel() == 1), \
                f"return an int, got {type(got).__name__}"
            assert int(got) == want, (f"LCS({a}, {b}) is {want}, got {int(got)}: L[i][j] = L[i-1][j-1] + 1 when "
                                      f"a[i-1] == b[j-1], else max(L[i-1][j], L[i][j-1])")
            assert int(lcs(list(b), list(a))) == want, "the LCS is symmetric: lcs(b, a) must equal lcs(a, b)"
    return run_check("Exercise: longest common subsequence", test)


def check_keep_instruction(keep_instruction) -> bool:
    """keep_instruction(instruction, pool) -> bool: no blacklisted keyword, ROUGE-L < 0.7 with every pool entry."""
    def test():
        pool = ["Write a short story about a brave dog.", "写一首关于春天的诗。"]
        cases = [("Explain how rainbows form.", True, "a new, different instruction must be kept"),
                 ("Write a short story about a brave cat.", False, "ROUGE-L 0.875 with a pool entry: reject (>= 0.7)"),
                 ("写一首关于夏天的诗。", False, "Chinese near-duplicate (ROUGE-L 0.89): count each Chinese character "
                                        "as a token, e.g. with llmtap.rouge.rouge_l"),
                 ("Describe the image below.", False, "'image' is a blacklisted keyword"),
                 ("根据这张图片写一段说明。", False, "'图片' is a blacklisted keyword"),
                 ("把这个视频的内容总结一下。", False, "'视频' is a blacklisted keyword"),
                 ("Write a story about a dragon and a knight.", True, "ROUGE-L 0.59 < 0.7: keep"),
                 ("Explain how rainbows form in the sky.", True, "an empty pool has nothing to be similar to")]
        for k, (text, want, why) in enumerate(cases):
            got = keep_instruction(text, [] if k == len(cases) - 1 else pool)
            assert isinstance(got, bool), f"return True or False, got {type(got).__name__}"
            assert got == want, f"{text!r}: expected {want} ({why})"
    return run_check("Exercise: the instruction filter", test)


def check_sft_labels(sft_labels) -> bool:
    """sft_labels(prompt_ids, response_ids) -> (x, y): inputs and targets with the prompt masked (-100)."""
    def test():
        for p, c in [([1, 10, 11, 12], [20, 21, 2]), ([1], [5]), ([1, 7, 7], [7, 7, 2])]:
            got = sft_labels(list(p), list(c))
            assert isinstance(got, tuple) and len(got) == 2, "return a pair (x, y)"
            x, y = (list(map(int, t)) for t in got)
            want_x, want_y = (t[0].tolist() for t in collate_completions([(p, c)], pad_id=0))
            assert len(x) == len(p) + len(c) - 1, "x is prompt + response without the last token"
            assert x == want_x, f"x should be {want_x}, got {x}"
            assert len(y) == len(x), "y must be as long as x: y[t] is the token x predicts at position t"
            assert y[:len(p) - 1] == want_y[:len(p) - 1], \
                f"the prompt part of y must be -100 (no loss): expected {want_y}, got {y}"
            assert y == want_y, f"expected y = {want_y}, got {y}: position t predicts token t + 1"
    return run_check("Exercise: SFT labels", test)
