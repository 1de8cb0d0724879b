"""Checkers of chapter 01 (prompting): the answer scorer, the verbalizer, the k-shot prompt.

Each one tries several inputs chosen so that the usual mistakes give a different result from the
right answer, and names the mistake when the answer equals what that mistake gives.
"""
from __future__ import annotations

import numbers
import random

import torch

from ..icl import icl_prompt
from ..lm import CourseLM
from ..model import GPT, GPTConfig
from ..tokenizer import Tokenizer
from .common import expect_shape, likely_cause, number_answer, run_check, tensor_answer


# ----------------------------------------------------------------------------- answer scorer
def _toy_lm() -> CourseLM:
    """A small random GPT over a few characters, its weights drawn wide (std 0.3) so that its
    next-token distributions are far from uniform and the usual mistakes change the score."""
    tok = Tokenizer("abcdefgh→我好感到不。\n")
    with torch.random.fork_rng(devices=[]):         # leave the notebook's global random state alone
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=16)).eval()
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() >= 2:
                    p.normal_(0, 0.3)
    return CourseLM(model, tok)


@torch.no_grad()
def _logits(lm: CourseLM, ids: list[int]) -> torch.Tensor:
    """The next-token logits at every position of one sequence, (T, vocab), float64."""
    x = torch.tensor([ids])
    return lm.logits(x, torch.ones_like(x))[0].double()


def _logprobs(lm: CourseLM, ids: list[int]) -> torch.Tensor:
    """log P(next token | tokens up to t) at every position t of one sequence, (T, vocab), float64."""
    return _logits(lm, ids).log_softmax(-1)


def _scored(logp: torch.Tensor, start: int, tokens: list[int]) -> list[float]:
    """log P of each of ``tokens``, the first sitting at position ``start``: read one position earlier."""
    return [logp[start + i - 1, t].item() for i, t in enumerate(tokens)]


def _scorer_mistakes(lm: CourseLM, context: str, continuation: str) -> dict:
    """What the usual mistakes of answer_logprob give on this input."""
    c, z = lm.encode(context, bos=True), lm.encode(continuation)
    logits = _logits(lm, c + z)
    logp = logits.log_softmax(-1)
    each = _scored(logp, len(c), z)
    no_bos, bos_z = c[1:], [lm.bos_id] + z
    return {
        "that reads the logits at the token's own position: the logits at position t predict token t+1, so "
        "the token at position len(context ids) + i is scored by the logits one position earlier":
            sum(logp[len(c) + i, t].item() for i, t in enumerate(z)),
        "that reads the logits at the token's own position (and drops the last token): the logits at position "
        "t predict token t+1": sum(logp[len(c) + i, t].item() for i, t in enumerate(z[:-1])),
        "that also scores the context: sum over the continuation's tokens only":
            sum(_scored(logp, 1, c[1:] + z)),
        "put <bos> in front of the context, lm.encode(context, bos=True): the model always starts from it":
            sum(_scored(_logprobs(lm, no_bos + z), len(no_bos), z)),
        "encode the continuation without <bos>: only the context starts with it":
            sum(_scored(_logprobs(lm, c + bos_z), len(c), bos_z)),
        "that is the mean over the continuation's tokens: the exercise asks for the sum": sum(each) / len(each),
        "that is the probability: return its log, the sum of the tokens' log-probabilities":
            torch.tensor(each).sum().exp().item(),
        "that adds up probabilities: add up log-probabilities (log_softmax), which multiplies the probabilities":
            torch.tensor(each).exp().sum().item(),
        "the logits are not log-probabilities: apply F.log_softmax over the vocabulary first":
            sum(logits[len(c) + i - 1, t].item() for i, t in enumerate(z)),
        "log_softmax runs over the vocabulary, dim=-1, not over the positions":
            sum(logits.log_softmax(0)[len(c) + i - 1, t].item() for i, t in enumerate(z)),
        "that scores the first token only: add up the log-probabilities of all the continuation's tokens": each[0],
        "that scores the last token only: add up the log-probabilities of all the continuation's tokens": each[-1],
    }


def check_answer_logprob(answer_logprob) -> bool:
    """answer_logprob(lm, context, continuation) -> float: log P(continuation | context)."""
    def test(answer):
        lm = _toy_lm()
        # a one-token continuation (sum = mean), repeated tokens, an empty context (<bos> alone), a longer one
        for context, cont in [("我感到", "好。"), ("ab", "c"), ("我", "不好不好"), ("", "abc"),
                              ("好\n", "→ab"), ("abcdefgh", "hgfedcba")]:
            what = f"answer_logprob(lm, {context!r}, {cont!r})"
            raw = answer(lm, context, cont)
            if not isinstance(raw, (torch.Tensor, numbers.Real)):
                raise AssertionError(f"{what} must return one number (a Python float), got {type(raw).__name__}")
            got = number_answer(raw, what)
            c, z = lm.encode(context, bos=True), lm.encode(cont)
            want = sum(_scored(_logprobs(lm, c + z), len(c), z))
            if abs(got - want) <= 1e-4 + 1e-5 * abs(want):
                continue
            cause = likely_cause(got, _scorer_mistakes(lm, context, cont), want, atol=1e-4)
            raise AssertionError(
                f"for context {context!r} and continuation {cont!r} expected {want:.6g}, got {got:.6g} - "
                + (cause or "sum log P(token | all before it) over the continuation's tokens only, with <bos> in "
                            "front of the context"))
    return run_check("Exercise: answer scorer", test, answer_logprob)


# ----------------------------------------------------------------------------- verbalizer
def _per_label(values: torch.Tensor, answers: list, label_words: dict, pick) -> torch.Tensor:
    """(n, |Z|) -> (n, n_labels): ``pick`` applied to each label's columns, labels in label_words' order."""
    return torch.stack([pick(values[:, [answers.index(z) for z in words]]) for words in label_words.values()], -1)


def _total(columns: torch.Tensor) -> torch.Tensor:
    return columns.sum(-1)


def _verbalizer_mistakes(scores: torch.Tensor, answers: list, label_words: dict) -> dict:
    """What the usual mistakes of label_probs give on this input."""
    s = scores.double()
    p = s.softmax(-1)
    raw = _per_label(s, answers, label_words, _total)
    sizes = [len(w) for w in label_words.values()]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    by_name = dict(sorted(label_words.items()))
    best = _per_label(p, answers, label_words, lambda cols: cols.amax(-1))
    return {
        "take the softmax over the answers first, then add up the probabilities of each label's answers":
            raw / raw.sum(-1, keepdim=True),
        "the answers are not listed in the order of the labels: find each label's answers by name in answers "
        "(answers.index(z)), whatever their order":
            torch.stack([p[:, a:a + n].sum(-1) for a, n in zip(starts, sizes)], -1),
        "the columns follow the order of the labels in label_words (its keys as given), not sorted":
            _per_label(p, answers, by_name, _total),
        "that takes each label's most likely answer: add up (sum) the probabilities of all its answers": best,
        "that takes each label's most likely answer, renormalised: add up (sum) the probabilities of all its "
        "answers": best / best.sum(-1, keepdim=True),
        "that takes each label's first answer only: add up the probabilities of all its answers":
            _per_label(p, answers, label_words, lambda cols: cols[:, 0]),
        "that is the mean of each label's answers: add up (sum) their probabilities":
            _per_label(p, answers, label_words, lambda cols: cols.mean(-1)),
        "take the softmax over the answers of each row (dim=-1), not over the rows":
            _per_label(s.softmax(0), answers, label_words, _total),
        "that adds up scores (log-probabilities) per label and then takes a softmax: softmax over the answers "
        "first, then add up probabilities": raw.softmax(-1),
    }


def _verbalizer_cases():
    """(scores, answers, label_words) inputs: answers in label order, then answers and labels
    shuffled independently of each other, one row, ties, labels of 1 to 3 answers, float64 scores."""
    g = torch.Generator().manual_seed(1)
    rng = random.Random(3)
    words = {"negative": ["不好", "糟糕"], "neutral": ["一般"], "positive": ["太好了", "好"]}
    in_order = [z for ws in words.values() for z in ws]
    yield torch.randn(4, 5, generator=g) * 3, in_order, words
    # the answers interleave the labels, the labels come in another order, each label's answers too
    shuffled = ["好", "不好", "一般", "糟糕", "太好了"]
    reordered = {"positive": ["好", "太好了"], "neutral": ["一般"], "negative": ["糟糕", "不好"]}
    yield torch.randn(5, 5, generator=g) * 3, shuffled, reordered
    # four labels of 1 to 3 answers, answers shuffled at random; a row of equal scores
    four = {"b": ["y", "z", "w"], "d": ["v"], "a": ["u", "t"], "c": ["s"]}
    answers = [z for ws in four.values() for z in ws]
    rng.shuffle(answers)
    yield torch.cat([torch.zeros(1, 7), torch.randn(1, 7, generator=g) * 2]), answers, four
    # one row of realistic answer log-probabilities, float64, two labels
    yield -torch.tensor([[12.5, 9.0, 10.25, 11.0]], dtype=torch.float64), ["no", "yes", "sure", "nope"], \
        {"yes": ["yes", "sure"], "no": ["nope", "no"]}


def check_label_probs(label_probs) -> bool:
    """label_probs(answer_scores, answers, label_words) -> (n, n_labels): softmax over answers, summed per label."""
    def test(answer):
        for case, (scores, answers, words) in enumerate(_verbalizer_cases(), 1):
            what = f"label_probs for input {case} (labels {list(words)}, answers {answers})"
            before = scores.clone()
            got = tensor_answer(answer(scores, list(answers), {y: list(w) for y, w in words.items()}), what)
            assert torch.equal(scores, before), f"{what}: do not change answer_scores in place"
            expect_shape(got, (len(scores), len(words)), f"{what}, one row per input and one column per label,")
            want = _per_label(scores.double().softmax(-1), answers, words, _total)
            bad = ~torch.isclose(got, want, atol=1e-5, rtol=1e-5)
            if not bad.any():
                continue
            r, y = (int(i) for i in bad.nonzero()[0])
            cause = likely_cause(got, _verbalizer_mistakes(scores, answers, words), want, atol=1e-5)
            raise AssertionError(
                f"{what}: entry [{r}, {y}] (row {r}, label {list(words)[y]!r}) should be {want[r, y]:.6g}, the summed "
                f"probability of {words[list(words)[y]]}, got {got[r, y]:.6g} ({int(bad.sum())} of {bad.numel()} "
                f"entries differ)" + (f" - {cause}" if cause else ""))
    return run_check("Exercise: verbalizer", test, label_probs)


# ----------------------------------------------------------------------------- k-shot prompt
def _prompt(demos, query, arrow="→", end="\n") -> str:
    return "".join(f"{x}{arrow}{y}{end}" for x, y in demos) + f"{query}{arrow}"


def _kshot_mistakes(demos, query) -> dict:
    right = _prompt(demos, query)
    mistakes = {
        "end every demonstration with a newline, 'x→y\\n'": _prompt(demos, query, end=""),
        "the prompt ends with the query followed by '→': the model writes the label after it":
            _prompt(demos, query)[:-1],
        "nothing comes after 'query→': the model writes the label right after the arrow": right + "\n",
        "a newline after every demonstration, the last one too, before the query":
            "\n".join(f"{x}→{y}" for x, y in demos) + f"{query}→",
        "one newline between demonstrations, no blank line": _prompt(demos, query, end="\n\n"),
        "the demonstrations are missing: each (x, y) as 'x→y' and a newline, then the query": f"{query}→",
        "keep the demonstrations in the order given": _prompt(demos[::-1], query),
        "each demonstration is x→y, the input then its label, not y→x": _prompt([(y, x) for x, y in demos], query),
        "the corpus format has no spaces around the arrow: 'x→y'": _prompt(demos, query, arrow=" → "),
    }
    for arrow in ("->", ":", "=>", "\t"):
        mistakes[f"the corpus format puts the arrow '→' between input and label, not {arrow!r}"] = \
            _prompt(demos, query, arrow=arrow)
    if demos:   # the label of the last demonstration after the query: the answer the model must find
        mistakes["the prompt must end with 'query→': the query's label is what the model has to write"] = \
            right + demos[-1][1]
    return mistakes


def check_kshot_prompt(kshot_prompt) -> bool:
    """kshot_prompt(demos, query) -> str in the corpus format 'x→y\n' per demonstration, then 'query→'."""
    def test(answer):
        # a repeated label, no demonstration at all, one, the statement's example, inputs with spaces
        cases = [([("cat", "red"), ("pear", "blue"), ("dog", "red")], "apple"), ([], "苹果"),
                 ([("猫", "甲")], "狗"), ([("苹果", "甲"), ("猫", "木"), ("火车", "蓝"), ("梨", "甲")], "狗"),
                 ([("a b", "c d"), ("e", "f")], "g h")]
        for demos, query in cases:
            got, want = answer(list(demos), query), icl_prompt(demos, query)
            assert isinstance(got, str), \
                f"kshot_prompt({demos}, {query!r}) must return a str, got {type(got).__name__}"
            if got == want:
                continue
            first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            cause = next((c for c, m in _kshot_mistakes(demos, query).items() if m == got and m != want), None)
            raise AssertionError(
                f"for {len(demos)} demonstrations {demos} and query {query!r} expected {want!r}, got {got!r} "
                f"(they differ from character {first} on)" + (f" - {cause}" if cause else ""))
    return run_check("Exercise: k-shot prompt", test, kshot_prompt)
