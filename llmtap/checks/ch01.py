"""Checkers of chapter 01 (prompting): the answer scorer, the verbalizer, the k-shot prompt."""
from __future__ import annotations

import torch

from ..icl import icl_prompt
from ..lm import CourseLM
from ..model import GPT, GPTConfig
from ..prompting import Verbalizer
from ..tokenizer import Tokenizer
from .common import run_check


def _toy_lm() -> CourseLM:
    """A one-layer random GPT over a few characters: the answer scorer is compared with its ``score``."""
    tok = Tokenizer("abcdefgh→我好感到不。\n")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16)).eval()
    return CourseLM(model, tok)


def check_answer_logprob(answer_logprob) -> bool:
    """answer_logprob(lm, context, continuation) -> float: log P(continuation | context)."""
    def test():
        lm = _toy_lm()
        for context, cont in [("我感到", "好。"), ("ab", "c"), ("我", "不好不好")]:
            got = answer_logprob(lm, context, cont)
            assert isinstance(got, (float, int)) or (torch.is_tensor(got) and got.numel() == 1), \
                f"return one number, got {type(got).__name__}"
            want = lm.score([context], [cont])[0, 0].item()
            got = float(got)
            assert abs(got - want) < 1e-3, (f"for context {context!r} and continuation {cont!r} expected "
                                            f"{want:.4f}, got {got:.4f}. Sum log P(token | all before it) over the "
                                            f"continuation's tokens only, with <bos> in front of the context")
    return run_check("Exercise: answer scorer", test)


def check_label_probs(label_probs) -> bool:
    """label_probs(answer_scores, answers, label_words) -> (n, n_labels): softmax over answers, summed per label."""
    def test():
        words = {"negative": ["不好", "糟糕"], "neutral": ["一般"], "positive": ["太好了", "好"]}
        v = Verbalizer(words)
        torch.manual_seed(1)
        scores = torch.randn(4, len(v.answers)) * 3
        got = label_probs(scores, v.answers, words)
        assert torch.is_tensor(got), f"return a tensor, got {type(got).__name__}"
        assert got.shape == (4, 3), f"expected shape (4, 3): one row per input, one column per label; got {tuple(got.shape)}"
        assert torch.allclose(got.sum(-1), torch.ones(4), atol=1e-5), "each row must sum to 1"
        want = v.label_probs(scores, "sum")
        assert torch.allclose(got.float(), want, atol=1e-5), \
            "take softmax over the answers first, then add up the probabilities of each label's answers"
        reordered = {"positive": words["positive"], "negative": words["negative"], "neutral": words["neutral"]}
        answers2 = reordered["positive"] + reordered["negative"] + reordered["neutral"]
        perm = [v.answers.index(z) for z in answers2]
        got2 = label_probs(scores[:, perm], answers2, reordered)
        assert torch.allclose(got2.float(), want[:, [2, 0, 1]], atol=1e-5), \
            "columns must follow the order of the labels in label_words, whatever the order of the answers"
    return run_check("Exercise: verbalizer", test)


def check_kshot_prompt(kshot_prompt) -> bool:
    """kshot_prompt(demos, query) -> str in the corpus format 'x→y\n' per demonstration, then 'query→'."""
    def test():
        cases = [([], "苹果"), ([("猫", "甲")], "狗"), ([("cat", "red"), ("pear", "blue"), ("dog", "red")], "apple")]
        for demos, query in cases:
            got, want = kshot_prompt(demos, query), icl_prompt(demos, query)
            assert isinstance(got, str), f"return a str, got {type(got).__name__}"
            assert got == want, f"for {len(demos)} demonstrations expected {want!r}, got {got!r}"
    return run_check("Exercise: k-shot prompt", test)
