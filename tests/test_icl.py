"""In-context learning: the k-shot prompt, choosing and perturbing demonstrations, accuracy and curves."""
import random

import pytest

from llmtap import corpus
from llmtap.icl import ICLTask, icl_accuracy, icl_curve, icl_predict, icl_prompt, perturb_labels, select_demonstrations


def test_icl_prompt_is_the_corpus_format():
    rng = random.Random(0)
    for k in (0, 1, 4):
        m = corpus.sample_mapping(rng, k, "zh")
        assert icl_prompt(m.demos, m.query) == m.prompt()
        lines = m.text().split("\n")                          # x→y lines, the query's answer last
        assert lines[-1] == m.query + "→" + m.answer
        assert lines[:-1] == [f"{x}→{y}" for x, y in m.demos]
    assert icl_prompt([("下雨了", "不好")], "晴天", "[X]我感到[Z]。") == "下雨了我感到不好。\n晴天我感到"


def test_select_demonstrations():
    pool = [(f"x{i}", "ABC"[i % 3]) for i in range(30)]
    rng = random.Random(0)
    for k in (0, 3, 7, 30):
        demos = select_demonstrations(pool, k, rng, "balanced")
        assert len(demos) == k and len(set(demos)) == k and set(demos) <= set(pool)
        counts = [sum(y == c for _, y in demos) for c in "ABC"]
        assert max(counts) - min(counts) <= 1                # balanced: labels differ by at most one
    assert len(select_demonstrations(pool, 5, rng)) == 5
    assert "x0" not in dict(select_demonstrations(pool, 29, rng, exclude=["x0"]))
    with pytest.raises(ValueError, match="only 30"):
        select_demonstrations(pool, 31, rng)
    with pytest.raises(ValueError, match="k must be"):
        select_demonstrations(pool, -1, rng)
    with pytest.raises(ValueError, match="strategy"):
        select_demonstrations(pool, 2, rng, "nearest")


def test_perturb_labels():
    task = ICLTask([("a", "甲"), ("b", "乙"), ("c", "丙"), ("d", "甲")], "e", "乙", ["甲", "乙", "丙"])
    flipped = perturb_labels(task, "flipped", random.Random(0))
    assert all(y != y0 for (_, y), (_, y0) in zip(flipped.demos, task.demos))
    assert flipped.demos[0][1] == flipped.demos[3][1]          # a consistent relabelling
    assert flipped.answer == "乙" and flipped.query == "e"
    rnd = perturb_labels(task, "random", random.Random(0))
    assert [x for x, _ in rnd.demos] == ["a", "b", "c", "d"] and set(y for _, y in rnd.demos) <= set(task.labels)
    with pytest.raises(ValueError, match="mode"):
        perturb_labels(task, "shuffled", random.Random(0))


def test_icl_on_the_course_model(course):
    rng = random.Random(3)
    tasks = [corpus.sample_mapping(rng, 4, corpus.LANGS[i % 2]) for i in range(60)]
    gold = icl_accuracy(course, tasks)
    flipped = icl_accuracy(course, [perturb_labels(t, "flipped", rng) for t in tasks])
    assert gold >= 0.9
    assert flipped <= 0.2          # the model follows the demonstrations, not a prior about the labels
    zero = icl_accuracy(course, [ICLTask([], t.query, t.answer, t.labels) for t in tasks])
    assert zero < 0.6


def test_icl_curve_shape(toy):
    def make(k, seed):
        return [ICLTask([("ab", "a")] * k, "ab", "a", ["a", "b"]) for _ in range(3)]
    curve = icl_curve(toy, make, ks=[0, 2], seeds=[0, 1])
    assert list(curve) == [0, 2] and all(len(v) == 2 for v in curve.values())
    assert all(0 <= a <= 1 for v in curve.values() for a in v)
    with pytest.raises(ValueError, match="empty"):
        icl_predict(toy, [])
