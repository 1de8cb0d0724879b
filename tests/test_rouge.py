import copy
import pickle
import random

import pytest
from rouge_score import rouge_scorer

from llmtap.rouge import (RULES, FilterResult, RougeFilter, RougeIndex, lcs_length, lcs_length_bitparallel,
                          rouge_filter, rouge_filter_scores, rouge_l, rouge_l_many, tokenize, too_similar)

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



# ----------------------------------------------------------------------------- the fast filter against every pair
def pairwise_filter(candidates, pool, threshold, rule):
    """The definition, one rouge_l per pair: (kept, [(rejected, highest)], ties)."""
    entries, kept, rejected, ties = list(pool), [], [], []
    for c in candidates:
        best = max((rouge_l(c, e) for e in entries), default=0.0)
        if (best >= threshold) if rule == "paper" else (best > threshold):
            rejected.append((c, best))
        else:
            kept.append(c)
            entries.append(c)
        if best == threshold:
            ties.append(c)
    return kept, rejected, ties


EN_WORDS = "the the a a of write poem list three dog cat sea 5 tips about for and explain how it".split()
ZH_CHARS = list("写一首关于春天的诗把这个词翻译成英文列出三个理由")
NO_TOKENS = ["!!!", "", "...", " ? ", "—", "!!!"]


def mutate(rng, tokens, alphabet):
    """A near-copy: a few tokens replaced, dropped or inserted."""
    tokens = list(tokens)
    for _ in range(rng.randint(0, 3)):
        op, i = rng.randrange(3), rng.randrange(len(tokens) + 1)
        if op == 0 and i < len(tokens):
            tokens[i] = rng.choice(alphabet)
        elif op == 1 and i < len(tokens):
            del tokens[i]
        else:
            tokens.insert(i, rng.choice(alphabet))
    return tokens


def random_texts(rng, n, max_len, long_every=0):
    """English, Chinese, mixed and token-less texts, many of them near-copies of earlier ones;
    with ``long_every``, also some texts of 100-300 tokens (several machine words)."""
    texts, token_lists = [], []
    for i in range(n):
        if long_every and i % long_every == 0:
            tokens = [rng.choice(EN_WORDS) for _ in range(rng.randint(100, 300))]
        elif token_lists and rng.random() < 0.5:
            tokens = mutate(rng, rng.choice(token_lists), EN_WORDS + ZH_CHARS)
        elif rng.random() < 0.1:
            texts.append(rng.choice(NO_TOKENS))
            continue
        else:
            alphabet = rng.choice([EN_WORDS, ZH_CHARS, EN_WORDS + ZH_CHARS])
            tokens = [rng.choice(alphabet) for _ in range(rng.randint(1, max_len))]
        token_lists.append(tokens)
        # Chinese characters are written without spaces, English words with one
        texts.append("".join(t if t in ZH_CHARS else f" {t} " for t in tokens).strip() + rng.choice(["", ".", "?"]))
    return texts


def assert_same_as_pairwise(candidates, pool, threshold, rule):
    result = rouge_filter(candidates, pool, threshold, rule)
    kept, rejected, ties = pairwise_filter(candidates, pool, threshold, rule)
    assert result.kept == kept
    assert result.rejected == rejected                      # the same highest scores, to the bit
    assert result.ties == ties
    return result


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("rule", ["paper", "released"])
def test_fast_filter_decides_as_every_pair_on_random_pools(seed, rule):
    rng = random.Random(seed)
    pool, candidates = random_texts(rng, 15, 12), random_texts(rng, 120, 12)
    n_ties = 0
    for threshold in (0.5, 0.7, 1.0):                         # short texts tie at 0.5 often
        n_ties += len(assert_same_as_pairwise(candidates, pool, threshold, rule).ties)
    assert n_ties > 0


@pytest.mark.parametrize("rule", ["paper", "released"])
def test_fast_filter_with_long_entries(rule):
    rng = random.Random(10)
    pool, candidates = random_texts(rng, 10, 20, long_every=3), random_texts(rng, 60, 20, long_every=4)
    long_ones = [c for c in candidates if len(tokenize(c)) > 64]
    result = assert_same_as_pairwise(candidates, pool, 0.7, rule)
    assert long_ones and any(c in long_ones for c, _ in result.rejected)   # near-copies of long texts caught


def test_fast_filter_agrees_with_scoring_every_pair_of_the_index():
    rng = random.Random(11)
    candidates = random_texts(rng, 400, 10)
    for rule in RULES:
        for threshold in (0.5, 0.7):
            best = rouge_filter_scores(candidates, (), threshold, rule)
            kept = rouge_filter(candidates, (), threshold, rule).kept
            assert kept == [c for c, b in zip(candidates, best) if not too_similar(b, threshold, rule)]


def test_ties_at_exactly_the_threshold_split_the_two_rules():
    # 10 and 10 tokens with an LCS of 7: P = R = 0.7, F = 2 * 0.7 * 0.7 / 1.4 = 0.7 exactly, in floats too
    pool = ["a b c d e f g h i j", "一二三四五六七八九十"]
    tie_en, tie_zh = "a b c d e f g x y z", "一二三四五六七甲乙丙"
    assert rouge_l(tie_en, pool[0]) == rouge_l(tie_zh, pool[1]) == 0.7
    near_tie = "a b c d e f g x y w"                         # 0.9 with tie_en, 0.7 with the pool
    candidates = [tie_en, tie_zh, near_tie, "something else entirely"]
    paper = assert_same_as_pairwise(candidates, pool, 0.7, "paper")
    released = assert_same_as_pairwise(candidates, pool, 0.7, "released")
    assert paper.kept == ["something else entirely"] and paper.ties == [tie_en, tie_zh, near_tie]
    # released keeps the ties, and then the near-copy of a kept tie is rejected (0.9 > 0.7)
    assert released.kept == [tie_en, tie_zh, "something else entirely"]
    assert released.rejected == [(near_tie, 0.9)] and released.ties == [tie_en, tie_zh]
    assert too_similar(0.7, 0.7, "paper") and not too_similar(0.7, 0.7, "released")
    assert rouge_filter_scores(candidates, pool, 0.7, "released") == [0.7, 0.7, 0.9, 0.0]


def test_texts_without_tokens_are_always_kept_and_reject_nothing():
    assert rouge_l("!!!", "!!!") == 0.0                       # f_measure of an empty side is 0
    candidates = ["!!!", "!!!", "", "写诗", "写诗!", "..."]
    for rule in RULES:
        result = assert_same_as_pairwise(candidates, ["!!!", ""], 0.7, rule)
        assert result.kept == ["!!!", "!!!", "", "写诗", "..."]
        assert result.rejected == [("写诗!", 1.0)]
    f = RougeFilter(["!!!"])
    assert f.offer("!!!") == (True, None) and len(f) == 2


def test_rouge_filter_object():
    f = RougeFilter(POOL + POOL, threshold=0.7)               # the pool goes in unfiltered
    assert len(f) == 4 and f.texts == POOL + POOL
    assert f.highest("Explain how tides work.") is None       # below the threshold against all
    assert f.highest(POOL[0]) == 1.0
    assert f.offer("Explain how tides work.") == (True, None)
    kept, score = f.offer("Explain how the tides work.")
    assert not kept and score == rouge_l("Explain how the tides work.", "Explain how tides work.")
    assert len(f) == 5
    f.add("Explain how the tides work.")                      # add() never filters
    assert len(f) == 6 and f.highest("Explain how the tides work.") == 1.0


def test_filter_result_still_unpacks_as_the_pair():
    result = rouge_filter(CANDIDATES, POOL)
    kept, rejected = result
    assert isinstance(result, FilterResult) and result == (kept, rejected)
    assert result[0] == result.kept == kept and result[1] == result.rejected == rejected
    assert result.threshold == 0.7 and result.rule == "paper" and result.ties == []
    assert "2 kept, 3 rejected, 0 at exactly threshold=0.7" in repr(result)
    for clone in (copy.copy(result), pickle.loads(pickle.dumps(result))):
        assert clone == result and clone.ties == result.ties and clone.rule == "paper"


@pytest.mark.parametrize("threshold", [0, -0.1, 1.01, float("nan")])
def test_threshold_outside_0_1_is_a_value_error(threshold):
    for call in (lambda: rouge_filter(CANDIDATES, POOL, threshold), lambda: RougeFilter(threshold=threshold),
                 lambda: rouge_filter_scores(CANDIDATES, POOL, threshold)):
        with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\].*0\.7"):
            call()


@pytest.mark.parametrize("threshold", ["0.7", None, True])
def test_threshold_not_a_number_is_a_type_error(threshold):
    with pytest.raises(TypeError, match="threshold must be a number.*threshold=0.7"):
        rouge_filter(CANDIDATES, POOL, threshold)


@pytest.mark.parametrize("rule", ["Paper", "strict", None, ["paper"]])
def test_unknown_rule_names_the_rules(rule):
    for call in (lambda: rouge_filter(CANDIDATES, POOL, rule=rule), lambda: RougeFilter(rule=rule),
                 lambda: rouge_filter_scores(CANDIDATES, rule=rule), lambda: too_similar(0.5, rule=rule)):
        with pytest.raises(ValueError, match=r"rule must be one of \['paper', 'released'\].*keep if ROUGE-L <="):
            call()


def test_non_string_candidates_say_which_and_how_to_fix():
    with pytest.raises(TypeError, match=r"candidates entries must be str; entry 1 is int 3: convert it with str\(\)"):
        rouge_filter(["a b", 3])
    with pytest.raises(TypeError, match="candidates must be a list of texts, not one str"):
        rouge_filter("a b")
    with pytest.raises(TypeError, match="pool entries must be str; entry 0 is NoneType"):
        rouge_filter(["a b"], [None])
    with pytest.raises(TypeError, match="text must be a str"):
        RougeFilter().offer(5)
