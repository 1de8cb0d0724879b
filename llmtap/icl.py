"""In-context learning (上下文学习, LLM-TAP 5.1): k labelled demonstrations, then the query.

The model reads "x_1→y_1 ... x_k→y_k x→" and the label it makes most likely is the answer:
forward passes only, no parameter is updated. Which demonstrations are shown, and whether their
labels are right, is what the lessons vary: ``select_demonstrations`` (random or class-balanced),
``perturb_labels`` (gold, flipped, random), and ``icl_curve`` (accuracy against k over seeds).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from .lm import CausalLM, check_lm
from .prompting import Template

ICL_TEMPLATE = Template("[X]→[Z]")     # the format of the course corpus' mapping sequences
SEPARATOR = "\n"                       # between demonstrations


def icl_prompt(demos, query: str, template=ICL_TEMPLATE, sep: str = SEPARATOR) -> str:
    """The k-shot prompt: each demonstration filled into the template, then the query with its
    answer slot open, e.g. '苹果→甲\\n猫→乙\\n梨→' for the template '[X]→[Z]'."""
    template = Template(template)
    shots = "".join(template.fill(x, y) + sep for x, y in demos)
    return shots + template.split(query, "")[0]


@dataclass
class ICLTask:
    """k demonstrations (x_i, y_i), a query, its gold label, and the label set to choose from."""
    demos: list
    query: str
    answer: str
    labels: list

    def prompt(self, template=ICL_TEMPLATE, sep: str = SEPARATOR) -> str:
        return icl_prompt(self.demos, self.query, template, sep)

    def text(self) -> str:
        """The whole sequence with the answer filled in, as the corpus writes it for pretraining."""
        return self.prompt() + self.answer


def select_demonstrations(pool, k: int, rng: random.Random, strategy: str = "random", exclude=()) -> list:
    """k (x, y) pairs from ``pool``: "random" draws without replacement; "balanced" cycles through
    the labels (in a shuffled order) so that every label appears before any repeats."""
    if strategy not in ("random", "balanced"):
        raise ValueError(f"strategy must be 'random' or 'balanced', got {strategy!r}")
    exclude = set(exclude)
    pool = [(x, y) for x, y in pool if x not in exclude]
    if not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be an int >= 0, got {k!r}")
    if k > len(pool):
        raise ValueError(f"k = {k} demonstrations asked for, but the pool has only {len(pool)}; "
                         f"lower k or add demonstrations")
    if strategy == "random":
        return rng.sample(pool, k)
    by_label = {}
    for x, y in rng.sample(pool, len(pool)):
        by_label.setdefault(y, []).append((x, y))
    labels = list(by_label)
    out = []
    while len(out) < k:
        rng.shuffle(labels)
        for y in labels:
            if by_label[y] and len(out) < k:
                out.append(by_label[y].pop())
    rng.shuffle(out)
    return out


def perturb_labels(task, mode: str, rng: random.Random) -> ICLTask:
    """The task with its demonstrations' labels changed; the query's gold label stays the same.

    "flipped": labels are permuted (every label becomes a different one) consistently across
    the demonstrations; "random": each demonstration gets a label drawn uniformly from the set.
    """
    labels = list(task.labels)
    if mode == "flipped":
        perm = labels[1:] + labels[:1]             # a cyclic shift: no label keeps its place
        swap = dict(zip(labels, perm))
        demos = [(x, swap[y]) for x, y in task.demos]
    elif mode == "random":
        demos = [(x, rng.choice(labels)) for x, _ in task.demos]
    elif mode == "gold":
        demos = list(task.demos)
    else:
        raise ValueError(f"mode must be 'gold', 'flipped' or 'random', got {mode!r}")
    return ICLTask(demos, task.query, task.answer, labels)


def icl_predict(lm: CausalLM, tasks, template=ICL_TEMPLATE, sep: str = SEPARATOR) -> list[str]:
    """The label each task's k-shot prompt makes most likely (one batched forward pass)."""
    tasks = list(tasks)
    if not tasks:
        raise ValueError("tasks is empty")
    template = Template(template)
    prompts = [t.prompt(template, sep) for t in tasks]
    suffix = template.split("x", "")[1]     # what follows the answer slot, e.g. '。'
    scores = check_lm(lm).score(prompts, [[y + suffix for y in t.labels] for t in tasks])
    return [t.labels[j] for t, j in zip(tasks, scores.argmax(-1).tolist())]


def icl_accuracy(lm: CausalLM, tasks, template=ICL_TEMPLATE, sep: str = SEPARATOR) -> float:
    tasks = list(tasks)
    return sum(p == t.answer for p, t in zip(icl_predict(lm, tasks, template, sep), tasks)) / max(1, len(tasks))


def icl_curve(lm: CausalLM, make_tasks, ks=range(9), seeds=range(5), **kwargs) -> dict:
    """Accuracy versus k over several seeds: {k: [accuracy for each seed]}.

    ``make_tasks(k, seed)`` returns the list of tasks to score for that k and seed, so each seed
    draws its own demonstrations and queries and the spread over seeds shows how much depends on
    which demonstrations happened to be picked."""
    return {k: [icl_accuracy(lm, make_tasks(k, s), **kwargs) for s in seeds] for k in ks}
