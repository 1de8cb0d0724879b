import random

import pytest
from rouge_score import rouge_scorer

from llmtap.rouge import (RougeIndex, lcs_length, lcs_length_bitparallel, rouge_filter, rouge_filter_scores, rouge_l,
                          rouge_l_many, tokenize)

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
WORDS = ("the a cat dog Write poem about sea list three 5 things Give me an example of 42 x-ray don't "
         "Café naïve TASK rewrite, summary: (a) b&c").split()


def reference(a, b):
    return SCORER.score(a, b)["rougeL"].fmeasure


def sentence(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n)) + rng.choice([".", "?", "!", "", "  \n"])


def test_rouge_l_equals_rouge_score_on_random_english_pairs():
    rng = random.Random(0)
    for _ in range(2000):
        a, b = sentence(rng, rng.randint(0, 40)), sentence(rng, rng.randint(0, 40))
        assert rouge_l(a, b) == reference(a, b), (a, b)
        assert rouge_l(a, b) == rouge_l(b, a)


def test_rouge_l_many_equals_rouge_score_including_long_queries():
    rng = random.Random(1)
    pool = [sentence(rng, rng.randint(0, 150)) for _ in range(300)]     # up to 3 machine words per row
    index = RougeIndex(pool)
    for n in (0, 1, 7, 63, 64, 65, 130, 200):
        q = sentence(rng, n)
        want = [reference(p, q) for p in pool]
        assert rouge_l_many(q, pool) == want
        assert index.scores(q).tolist() == want


def test_lcs_length_matches_dynamic_programming():
    rng = random.Random(2)
    for _ in range(300):
        a = [rng.randrange(5) for _ in range(rng.randint(0, 80))]
        b = [rng.randrange(5) for _ in range(rng.randint(0, 80))]
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                table[i][j] = table[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(table[i - 1][j], table[i][j - 1])
        assert lcs_length(a, b) == table[-1][-1]
        assert lcs_length_bitparallel(a, b) == table[-1][-1]


def test_lcs_length_by_hand():
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4            # BCBA (CLRS 15.4)
    assert lcs_length(list("我喜欢猫"), list("我喜欢狗")) == 3
    assert lcs_length(list("abc"), list("cba")) == 1
    assert lcs_length([], list("abc")) == lcs_length(list("abc"), []) == lcs_length([], []) == 0


@pytest.mark.parametrize("alphabet", [2, 3, 8, 40])
def test_bitparallel_lcs_equals_the_dynamic_programme(alphabet):
    rng = random.Random(alphabet)
    for _ in range(200):
        a = [rng.randrange(alphabet) for _ in range(rng.randint(0, 100))]      # > 64 tokens: more than a word
        b = [rng.randrange(alphabet) for _ in range(rng.randint(0, 100))]
        assert lcs_length_bitparallel(a, b) == lcs_length(a, b), (a, b)
        assert lcs_length_bitparallel(b, a) == lcs_length(a, b)


def test_bitparallel_lcs_on_chinese_tokens_and_empty_lists():
    rng = random.Random(3)
    chars = "写一首关于春天夏天的诗把这个词翻译成英文"
    for _ in range(200):
        a = tokenize("".join(rng.choice(chars) for _ in range(rng.randint(0, 30))))
        b = tokenize("".join(rng.choice(chars) for _ in range(rng.randint(0, 30))))
        assert lcs_length_bitparallel(a, b) == lcs_length(a, b)
    assert lcs_length_bitparallel([], []) == lcs_length_bitparallel(["写"], []) == lcs_length_bitparallel([], ["写"]) == 0
    assert lcs_length_bitparallel(tokenize("写一首关于春天的诗"), tokenize("写一首关于夏天的诗")) == 8


def test_chinese_hand_computed():
    # 4 tokens each, LCS 我喜欢 = 3: P = R = 3/4, F = 0.75
    assert rouge_l("我喜欢猫", "我喜欢狗") == pytest.approx(0.75)
    # LCS 写一首诗 = 4 of 4 and 5 tokens: P = 4/5, R = 1, F = 2 * 0.8 / 1.8 = 8/9
    assert rouge_l("写一首诗", "写一首短诗") == pytest.approx(8 / 9)
    assert rouge_l("今天天气很好", "明日有雨") == 0.0
    # mixed: 9 and 7 tokens, LCS 7 (用 python 写 一 个 函 数): F = 2 * 7 / 16
    a, b = "用Python写一个排序函数", "用python写一个函数。"
    assert tokenize(a) == ["用", "python", "写", "一", "个", "排", "序", "函", "数"]
    assert rouge_l(a, b) == pytest.approx(14 / 16)
    # rouge-score deletes the Chinese: nothing left, or only the Latin word
    assert reference("我喜欢猫", "我喜欢狗") == 0.0
    assert reference(a, b) == 1.0
    assert rouge_l_many("写一首短诗", ["写一首诗", "Write a poem.", "我喜欢猫"]) == pytest.approx([8 / 9, 0.0, 0.0])


def test_index_grows_in_rows_and_width():
    index = RougeIndex()
    texts = [f"task {i} " + "word " * (i % 40) for i in range(50)] + ["x " * 300]
    for t in texts:
        index.add(t)
    assert len(index) == 51
    q = "task 7 word word"
    assert index.scores(q).tolist() == [reference(t, q) for t in texts]
    assert RougeIndex().scores("anything").tolist() == []


def test_input_errors():
    with pytest.raises(TypeError):
        tokenize(None)
    with pytest.raises(TypeError):
        rouge_l("a", 3)
    with pytest.raises(TypeError, match="not one str"):
        rouge_l_many("a", "a b c")
    with pytest.raises(TypeError, match="entry 1"):
        rouge_l_many("a", ["a", 2])
    with pytest.raises(TypeError):
        rouge_l_many(1, ["a"])
    with pytest.raises(TypeError, match="add"):
        RougeIndex().extend("one text")


# ----------------------------------------------------------------------------- the diversity filter
POOL = ["Write a short story about a brave dog.", "写一首关于春天的诗。"]
CANDIDATES = ["Write a short story about a brave cat.", "写一首关于夏天的诗。", "Explain how tides work.",
              "Explain how the tides work.", "List three fruits."]


def test_rouge_filter_keeps_what_differs_from_the_pool_and_earlier_keeps():
    kept, rejected = rouge_filter(CANDIDATES, POOL, 0.7)
    assert kept == ["Explain how tides work.", "List three fruits."]
    assert [t for t, _ in rejected] == CANDIDATES[:2] + ["Explain how the tides work."]
    assert all(s >= 0.7 for _, s in rejected)
    assert rouge_filter(CANDIDATES, POOL, 1.0)[0] == CANDIDATES          # nothing is identical
    with pytest.raises(ValueError):
        rouge_filter(CANDIDATES, POOL, 0)
    with pytest.raises(TypeError):
        rouge_filter("one text", POOL)
    with pytest.raises(TypeError, match="pool"):
        rouge_filter(CANDIDATES, "one text")


def test_rouge_filter_scores_are_the_highest_rouge_l_so_far():
    for threshold in (0.3, 0.5, 0.7, 0.9, 1.0):
        best = rouge_filter_scores(CANDIDATES, POOL, threshold)
        kept, rejected = rouge_filter(CANDIDATES, POOL, threshold)
        assert [c for c, b in zip(CANDIDATES, best) if b < threshold] == kept
        assert [(c, b) for c, b in zip(CANDIDATES, best) if b >= threshold] == rejected
        for i, c in enumerate(CANDIDATES):             # against the pool and the candidates kept before it
            earlier = [k for k in CANDIDATES[:i] if k in kept]
            assert best[i] == max(rouge_l_many(c, POOL + earlier))
    assert rouge_filter_scores(["anything at all"]) == [0.0]                # an empty pool: nothing to be near
    assert rouge_filter(iter(CANDIDATES), iter(POOL))[0] == rouge_filter(CANDIDATES, POOL)[0]
