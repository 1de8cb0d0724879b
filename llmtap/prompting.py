"""Prompt learning (提示学习, LLM-TAP 5.1): classify a text by asking a language model to fill a blank.

Prompt learning classifies x in three steps, in the seed's notation:

1. **prompt addition**: a ``Template`` with an input slot [X] and an answer slot [Z] turns x into
   the prompt x' = f_prompt(x), e.g. "[X]我感到[Z]。" -> "我错过了公共汽车。我感到[Z]。";
2. **answer search**: every answer z of the answer space Z is filled in, f_fill(x', z), and the
   language model scores the filled prompt; the best one is  ẑ = argmax_z P(f_fill(x', z); θ);
3. **answer mapping**: a ``Verbalizer`` maps ẑ to the label y (太好了 -> positive).

Multi-prompt learning (多提示学习) asks with several templates at once: ``PromptEnsemble``
averages their label probabilities (prompt ensembling).

The model is any ``llmtap.lm.CausalLM`` (the course model or a Hugging Face one); in-context
learning, which puts labelled demonstrations in the prompt instead of a template, is in ``icl.py``.
"""
from __future__ import annotations

import torch

from .lm import CausalLM, check_lm


# ----------------------------------------------------------------------------- step 1: prompt addition
class Template:
    """A prompt template: an input slot [X] and an answer slot [Z], each exactly once.

    >>> t = Template("[X]我感到[Z]。")
    >>> t.prompt("我错过了公共汽车。")           # x' = f_prompt(x)
    '我错过了公共汽车。我感到[Z]。'
    >>> t.fill("我错过了公共汽车。", "糟糕")      # f_fill(x', z)
    '我错过了公共汽车。我感到糟糕。'
    """
    X, Z = "[X]", "[Z]"

    def __init__(self, text: str):
        if isinstance(text, Template):
            text = text.text
        if not isinstance(text, str):
            raise TypeError(f"a template is a str such as '[X]我感到[Z]。', got {type(text).__name__}")
        for slot, what in ((self.X, "input"), (self.Z, "answer")):
            n = text.count(slot)
            if n != 1:
                raise ValueError(f"template {text!r} has {n} {what} slots {slot}; it needs exactly one, "
                                 f"e.g. '[X]我感到[Z]。' or '[X] I feel [Z].'")
        self.text = text

    def __repr__(self) -> str:
        return f"Template({self.text!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Template) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def prompt(self, x: str) -> str:
        """x' = f_prompt(x): the input filled in, the answer slot still open."""
        return self.text.replace(self.X, _check_input(x))

    def fill(self, x: str, z: str) -> str:
        """f_fill(x', z): the prompt with answer z in its slot."""
        return self.prompt(x).replace(self.Z, z)

    def split(self, x: str, z: str) -> tuple[str, str]:
        """(context, continuation) of f_fill(x', z): the text before the answer slot, and the rest.

        The context is the same for every z, so log P(f_fill(x', z)) = log P(context) +
        log P(continuation | context) ranks answers exactly as log P(continuation | context) does.
        """
        before, after = self.text.split(self.Z)
        x = _check_input(x)
        return before.replace(self.X, x), z + after.replace(self.X, x)


def _check_input(x) -> str:
    if not isinstance(x, str):
        raise TypeError(f"an input x must be a str, got {type(x).__name__}: {x!r}")
    if not x.strip():
        raise ValueError("an input x is empty; give the sentence to classify")
    return x


def check_answer_space(answers) -> list[str]:
    """The answer space Z as a list: non-empty, distinct, non-empty strings."""
    if isinstance(answers, str):
        raise TypeError(f"the answer space is a list of answers such as ['好', '一般', '不好'], not one string {answers!r}")
    answers = list(answers)
    if not answers:
        raise ValueError("the answer space Z is empty; give at least two answers, e.g. ['好', '一般', '不好']")
    bad = [z for z in answers if not isinstance(z, str) or not z]
    if bad:
        raise ValueError(f"every answer must be a non-empty str, got {bad}")
    repeated = sorted({z for z in answers if answers.count(z) > 1})
    if repeated:
        raise ValueError(f"the answer space lists {repeated} more than once")
    return answers


# ----------------------------------------------------------------------------- step 2: answer search
def answer_search(lm: CausalLM, template, xs: list[str], answers, normalize: bool = False):
    """Score every z in Z for every x: returns (best answers ẑ, scores of shape (len(xs), |Z|)).

    scores[i, j] = log P(continuation_j | context_i), the log-probability of the filled prompt
    up to a term that is the same for every answer; ``normalize`` divides by its token count.
    """
    template, answers = Template(template), check_answer_space(answers)
    if isinstance(xs, str):
        raise TypeError("xs must be a list of inputs; wrap a single sentence as [x]")
    pairs = [[template.split(x, z) for z in answers] for x in xs]
    contexts = [row[0][0] for row in pairs]
    scores = check_lm(lm).score(contexts, [[cont for _, cont in row] for row in pairs], normalize)
    return [answers[j] for j in scores.argmax(-1).tolist()], scores


# ----------------------------------------------------------------------------- step 3: answer mapping
class Verbalizer:
    """Answer mapping: each label and the answers that stand for it.

    >>> v = Verbalizer({"positive": ["太好了", "好"], "neutral": ["一般"], "negative": ["不好", "糟糕"]})
    >>> v.answers, v.label_of("糟糕")
    (['太好了', '好', '一般', '不好', '糟糕'], 'negative')
    """

    def __init__(self, label_words: dict):
        if not isinstance(label_words, dict) or not label_words:
            raise ValueError("a verbalizer is a non-empty dict label -> answers, "
                             "e.g. {'positive': ['好'], 'neutral': ['一般'], 'negative': ['不好']}")
        self.labels, self.answers, self._label_of = [], [], {}
        for label, words in label_words.items():
            words = [words] if isinstance(words, str) else list(words)
            if not words:
                raise ValueError(f"label {label!r} has no answers; give it at least one")
            for z in words:
                if z in self._label_of:
                    raise ValueError(f"answer {z!r} is mapped to two labels, {self._label_of[z]!r} and {label!r}; "
                                     f"an answer must stand for one label only")
                self._label_of[z] = label
                self.answers.append(z)
            self.labels.append(label)
        check_answer_space(self.answers)

    def __repr__(self) -> str:
        groups = {y: [z for z in self.answers if self._label_of[z] == y] for y in self.labels}
        return f"Verbalizer({groups})"

    def label_of(self, z: str) -> str:
        if z not in self._label_of:
            raise KeyError(f"{z!r} is not in the answer space {self.answers}")
        return self._label_of[z]

    def label_probs(self, answer_scores: torch.Tensor, aggregate: str = "max") -> torch.Tensor:
        """(n, |Z|) answer scores -> (n, n_labels) label probabilities.

        The answer scores become P(z | x) = softmax over Z; a label gets the largest ("max": its
        argmax is exactly the label of ẑ) or the total ("sum") probability of its answers,
        renormalised over the labels.
        """
        if aggregate not in ("max", "sum"):
            raise ValueError(f"aggregate must be 'max' or 'sum', got {aggregate!r}")
        if answer_scores.dim() != 2 or answer_scores.shape[1] != len(self.answers):
            raise ValueError(f"expected scores of shape (n, {len(self.answers)}), got {tuple(answer_scores.shape)}")
        p = answer_scores.float().softmax(-1)
        cols = [[j for j, z in enumerate(self.answers) if self._label_of[z] == y] for y in self.labels]
        per_label = torch.stack([p[:, c].amax(-1) if aggregate == "max" else p[:, c].sum(-1) for c in cols], -1)
        return per_label / per_label.sum(-1, keepdim=True)


class PromptClassifier:
    """The three steps together: template, answer search over the verbalizer's answers, mapping."""

    def __init__(self, lm: CausalLM, template, verbalizer, normalize: bool = False, aggregate: str = "max"):
        self.lm, self.template = check_lm(lm), Template(template)
        self.verbalizer = verbalizer if isinstance(verbalizer, Verbalizer) else Verbalizer(verbalizer)
        self.normalize, self.aggregate = normalize, aggregate

    def predict_proba(self, xs: list[str]) -> torch.Tensor:
        """(len(xs), n_labels) probabilities, columns in the order of ``verbalizer.labels``."""
        _, scores = answer_search(self.lm, self.template, xs, self.verbalizer.answers, self.normalize)
        return self.verbalizer.label_probs(scores, self.aggregate)

    def predict(self, xs: list[str]) -> list[str]:
        return [self.verbalizer.labels[j] for j in self.predict_proba(xs).argmax(-1).tolist()]

    def accuracy(self, xs: list[str], ys: list[str]) -> float:
        return _accuracy(self.predict, self.verbalizer.labels, xs, ys)


def _accuracy(predict, labels, xs, ys) -> float:
    if len(xs) != len(ys) or not xs:
        raise ValueError(f"need as many labels as inputs (and at least one), got {len(xs)} and {len(ys)}")
    unknown = sorted(set(ys) - set(labels))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the verbalizer's labels {labels}")
    return sum(p == y for p, y in zip(predict(xs), ys)) / len(xs)


# ----------------------------------------------------------------------------- multi-prompt learning
class PromptEnsemble:
    """Multi-prompt learning by prompt ensembling: K classifiers (the same labels, different
    templates or verbalizers) answer the same input, and their label probabilities are averaged,

        P(y | x) = sum_k w_k P_k(y | x) / sum_k w_k      (uniform weights w_k = 1 by default),

    so that a template that is sure of itself outvotes several unsure ones."""

    def __init__(self, classifiers, weights=None):
        self.classifiers = list(classifiers)
        if not self.classifiers or not all(isinstance(c, PromptClassifier) for c in self.classifiers):
            raise TypeError("PromptEnsemble takes a non-empty list of PromptClassifier, one per prompt")
        labels = self.classifiers[0].verbalizer.labels
        for k, c in enumerate(self.classifiers[1:], 1):
            if c.verbalizer.labels != labels:
                raise ValueError(f"classifier {k} predicts the labels {c.verbalizer.labels}, classifier 0 {labels}: "
                                 f"an ensemble averages one label set, in one order")
        weights = [1.0] * len(self.classifiers) if weights is None else [float(w) for w in weights]
        if len(weights) != len(self.classifiers) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"need one weight >= 0 per classifier, not all zero; got {weights} for "
                             f"{len(self.classifiers)} classifiers")
        self.labels, self.weights = labels, weights

    def predict_proba(self, xs: list[str]) -> torch.Tensor:
        probs = torch.stack([c.predict_proba(xs) for c in self.classifiers])          # (K, n, labels)
        w = torch.tensor(self.weights, dtype=probs.dtype).view(-1, 1, 1)
        return (w * probs).sum(0) / w.sum()

    def predict(self, xs: list[str]) -> list[str]:
        return [self.labels[j] for j in self.predict_proba(xs).argmax(-1).tolist()]

    def accuracy(self, xs: list[str], ys: list[str]) -> float:
        return _accuracy(self.predict, self.labels, xs, ys)
