"""Mutation tests of chapter 05's checkers: each wrong answer of the bank (the usual mistakes) is
rejected with a message that names what is wrong, and each right answer, written differently from
the solution (another container, algorithm or formula), is accepted. The answers are written here,
independently of the library the checkers compare against; the filter's answers use only what its
exercise hands the student (BLACKLIST, and tokenize / rouge_l where the statement says so), the
round's only the library pieces its statement names."""
import functools
import re

import numpy as np
import torch

from llmtap import checks
from llmtap.rouge import rouge_l, tokenize
from llmtap.self_instruct import (BLACKLIST, check_instruction, instruction_prompt, parse_instructions,
                                  sample_instructions)


# ----------------------------------------------------------------------------- LCS
def lcs_dp(a, b):
    L = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            L[i][j] = L[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(L[i - 1][j], L[i][j - 1])
    return L[-1][-1]


def lcs_recursive(a, b):                      # memoised recursion on suffixes, tuples as keys
    @functools.lru_cache(maxsize=None)
    def go(i, j):
        if i == len(a) or j == len(b):
            return 0
        return go(i + 1, j + 1) + 1 if a[i] == b[j] else max(go(i + 1, j), go(i, j + 1))
    return go(0, 0)


def lcs_one_row_numpy(a, b):                  # one row of the table at a time, a numpy int comes back
    row = np.zeros(len(b) + 1, dtype=np.int64)
    for x in a:
        prev = row.copy()
        for j, y in enumerate(b, 1):
            row[j] = prev[j - 1] + 1 if x == y else max(prev[j], row[j - 1])
    return row[-1]


def lcs_substring(a, b):                      # longest common *substring*: a classic mix-up
    best = 0
    for i in range(len(a)):
        for j in range(len(b)):
            k = 0
            while i + k < len(a) and j + k < len(b) and a[i + k] == b[j + k]:
                k += 1
            best = max(best, k)
    return best


def lcs_plus_one(a, b):                       # the size of the table's side, not its last cell
    return lcs_dp(a, b) + 1


def lcs_no_empty_row(a, b):                   # a len(a) x len(b) table: the first tokens never match
    if not a or not b:
        return 0
    L = [[0] * len(b) for _ in a]
    for i in range(1, len(a)):
        for j in range(1, len(b)):
            L[i][j] = L[i - 1][j - 1] + 1 if a[i] == b[j] else max(L[i - 1][j], L[i][j - 1])
    return L[-1][-1]


def lcs_short_loops(a, b):                    # range(1, len(a)): the last tokens never match
    L = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a)):
        for j in range(1, len(b)):
            L[i][j] = L[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(L[i - 1][j], L[i][j - 1])
    return L[-2][-2] if a and b else 0


def lcs_float(a, b):
    return float(lcs_dp(a, b))


def lcs_tensor(a, b):
    return torch.tensor(lcs_dp(a, b))


def lcs_shared_tokens(a, b):                  # shared tokens, order forgotten
    return sum(min(a.count(t), b.count(t)) for t in set(a))


def lcs_same_positions(a, b):
    return sum(x == y for x, y in zip(a, b))


def lcs_greedy(a, b):                         # first match of each token: not always the longest
    n, j = 0, 0
    for x in a:
        for k in range(j, len(b)):
            if b[k] == x:
                n, j = n + 1, k + 1
                break
    return n


def lcs_the_subsequence(a, b):                # the subsequence itself, not its length
    if not a or not b:
        return []
    if a[-1] == b[-1]:
        return lcs_the_subsequence(a[:-1], b[:-1]) + [a[-1]]
    return max(lcs_the_subsequence(a[:-1], b), lcs_the_subsequence(a, b[:-1]), key=len)


def lcs_sentinel(a, b):                       # 1-based indexing by inserting into the caller's lists
    a.insert(0, None)
    b.insert(0, object())
    L = [[0] * len(b) for _ in a]
    for i in range(1, len(a)):
        for j in range(1, len(b)):
            L[i][j] = L[i - 1][j - 1] + 1 if a[i] == b[j] else max(L[i - 1][j], L[i][j - 1])
    return L[-1][-1]


def lcs_crash(a, b):                          # reads a[0] even when a is empty
    return lcs_dp(a, b) if a[0] is not None else 0


# ----------------------------------------------------------------------------- instruction filter
def keep_right(instruction, pool):            # the statement's way
    words = set(tokenize(instruction))
    if any(w in words for w in BLACKLIST["en"]) or any(w in instruction for w in BLACKLIST["zh"]):
        return False
    return all(rouge_l(instruction, p) < 0.7 for p in pool)


_TOKENS = re.compile("[a-z0-9]+|[\u4e00-\u9fff]")   # words, and each Chinese character alone


def _lcs(a, b):
    row = [0] * (len(b) + 1)
    for x in a:
        prev, row = row, [0]
        for j, y in enumerate(b, 1):
            row.append(prev[j - 1] + 1 if x == y else max(prev[j], row[j - 1]))
    return row[-1]


def keep_own_rouge(instruction, pool):        # own tokenizer and LCS, F = 2 LCS / (|a| + |b|), numpy bool
    toks = _TOKENS.findall(instruction.lower())
    if set(toks) & set(BLACKLIST["en"]) or any(w in instruction for w in BLACKLIST["zh"]):
        return np.bool_(False)
    scores = [2 * _lcs(toks, t) / (len(toks) + len(t)) for t in (_TOKENS.findall(p.lower()) for p in pool)]
    return np.bool_(max(scores, default=0.0) < 0.7)


def keep_loops(instruction, pool):            # early returns, one rule at a time
    for word in tokenize(instruction):
        if word in BLACKLIST["en"]:
            return False
    for word in BLACKLIST["zh"]:
        if instruction.find(word) >= 0:
            return False
    for p in pool:
        if rouge_l(p, instruction) >= 0.7:
            return False
    return True


def keep_everything(instruction, pool):
    return True


def keep_inverted(instruction, pool):
    return not keep_right(instruction, pool)


def keep_substring_keywords(instruction, pool):   # 'graph' found inside 'paragraph'
    text = instruction.lower()
    if any(w in text for w in BLACKLIST["en"] + BLACKLIST["zh"]):
        return False
    return all(rouge_l(instruction, p) < 0.7 for p in pool)


def keep_split_keywords(instruction, pool):   # str.split(): 'photo.' and 'Image' are missed
    words = set(instruction.split())
    if words & set(BLACKLIST["en"]) or any(w in instruction for w in BLACKLIST["zh"]):
        return False
    return all(rouge_l(instruction, p) < 0.7 for p in pool)


def keep_tokens_for_chinese(instruction, pool):   # Chinese keywords looked up among the tokens
    words = set(tokenize(instruction))
    if any(w in words for w in BLACKLIST["en"] + BLACKLIST["zh"]):
        return False
    return all(rouge_l(instruction, p) < 0.7 for p in pool)


def keep_at_most_threshold(instruction, pool):    # rejects only above 0.7: the released code's rule
    words = set(tokenize(instruction))
    if any(w in words for w in BLACKLIST["en"]) or any(w in instruction for w in BLACKLIST["zh"]):
        return False
    return all(rouge_l(instruction, p) <= 0.7 for p in pool)


def _keep_by(score):
    def keep(instruction, pool):
        words = set(tokenize(instruction))
        if any(w in words for w in BLACKLIST["en"]) or any(w in instruction for w in BLACKLIST["zh"]):
            return False
        return all(score(tokenize(instruction), tokenize(p)) < 0.7 for p in pool)
    return keep


keep_recall = _keep_by(lambda a, b: _lcs(a, b) / len(a))       # LCS / |instruction|
keep_precision = _keep_by(lambda a, b: _lcs(a, b) / len(b))    # LCS / |pool entry|
keep_recall.__name__, keep_precision.__name__ = "keep_recall", "keep_precision"


def keep_rouge_score_tokens(instruction, pool):   # rouge-score's tokenizer: every non [a-z0-9] is dropped
    words = set(tokenize(instruction))
    if any(w in words for w in BLACKLIST["en"]) or any(w in instruction for w in BLACKLIST["zh"]):
        return False
    def toks(s):
        return re.sub(r"[^a-z0-9]+", " ", s.lower()).split()
    for p in pool:
        a, b = toks(instruction), toks(p)
        lcs = _lcs(a, b)
        if lcs and 2 * lcs / (len(a) + len(b)) >= 0.7:
            return False
    return True


def keep_rouge_score(instruction, pool):      # the rouge-score package itself (a test dependency)
    from rouge_score import rouge_scorer
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    return keep_right(instruction, []) and all(scorer.score(p, instruction)["rougeL"].fmeasure < 0.7 for p in pool)


def keep_first_entry_only(instruction, pool):
    return keep_right(instruction, pool[:1])


def keep_average(instruction, pool):          # the mean score against the pool
    if not keep_right(instruction, []):
        return False
    return not pool or sum(rouge_l(instruction, p) for p in pool) / len(pool) < 0.7


def keep_any_different(instruction, pool):    # any() where all() is meant
    return keep_right(instruction, []) and (not pool or any(rouge_l(instruction, p) < 0.7 for p in pool))


def keep_no_blacklist(instruction, pool):
    return all(rouge_l(instruction, p) < 0.7 for p in pool)


def keep_empty_pool_first(instruction, pool):     # returns before the keyword rule
    return True if not pool else keep_right(instruction, pool)


def keep_max_crash(instruction, pool):        # max() of an empty pool
    return keep_right(instruction, []) and max(rouge_l(instruction, p) for p in pool) < 0.7


def keep_tensor(instruction, pool):
    return torch.tensor(keep_right(instruction, pool))


def keep_none_when_kept(instruction, pool):   # forgets the final return True
    if not keep_right(instruction, pool):
        return False


# ----------------------------------------------------------------------------- the SFT batch
def batch_right(rows, pad_id):
    T = max(len(p) + len(c) for p, c in rows) - 1
    x = torch.full((len(rows), T), pad_id, dtype=torch.long)
    y = torch.full((len(rows), T), -100, dtype=torch.long)
    for b, (p, c) in enumerate(rows):
        ids = torch.tensor(p + c)
        x[b, :len(ids) - 1] = ids[:-1]
        y[b, len(p) - 1:len(ids) - 1] = ids[len(p):]
    return x, y


def batch_numpy(rows, pad_id):                # numpy arrays, the labels written from their definition
    T = max(len(p) + len(c) for p, c in rows) - 1
    x, y = np.full((len(rows), T), pad_id), np.full((len(rows), T), -100)
    for b, (p, c) in enumerate(rows):
        ids = p + c
        for t in range(len(ids) - 1):
            x[b, t] = ids[t]
            y[b, t] = ids[t + 1] if t + 1 >= len(p) else -100
    return x, y


def batch_lists(rows, pad_id):                # nested Python lists, padded by hand
    T = max(len(p) + len(c) for p, c in rows) - 1
    xs, ys = [], []
    for p, c in rows:
        n = len(p) + len(c) - 1
        xs.append((p + c)[:-1] + [pad_id] * (T - n))
        ys.append([-100] * (len(p) - 1) + c + [-100] * (T - n))
    return xs, ys


def batched(one_row):
    """A batch padded the right way around rows that one_row(p, c) -> (x, y) gets wrong."""
    def answer(rows, pad_id):
        pairs = [one_row(list(p), list(c)) for p, c in rows]
        T = max(len(x) for x, _ in pairs)
        x = torch.full((len(rows), T), pad_id, dtype=torch.long)
        y = torch.full((len(rows), T), -100, dtype=torch.long)
        for b, (xr, yr) in enumerate(pairs):
            x[b, :len(xr)] = torch.tensor(xr)
            y[b, :len(yr)] = torch.tensor(yr)
        return x, y
    answer.__name__ = one_row.__name__
    return answer


@batched
def batch_unmasked(p, c):
    ids = p + c
    return ids[:-1], ids[1:]


@batched
def batch_unshifted(p, c):
    ids = p + c
    return ids[:-1], [-100] * len(p) + c[:-1]


@batched
def batch_first_response_masked(p, c):
    ids = p + c
    return ids[:-1], [-100] * len(p) + c[1:]


@batched
def batch_shifted_twice(p, c):
    ids = p + c
    y = [-100] * (len(p) - 1) + c
    return ids[:-1], y[1:] + [-100]


@batched
def batch_last_prompt_trained(p, c):
    ids = p + c
    return ids[:-1], [-100] * (len(p) - 2) + ids[len(p) - 1:]


@batched
def batch_by_value(p, c):                     # masks the ids that occur in the prompt
    ids = p + c
    return ids[:-1], [-100 if t in p else t for t in ids[1:]]


@batched
def batch_masked_with_zero(p, c):
    ids = p + c
    return ids[:-1], [0] * (len(p) - 1) + c


def batch_mask_where_pad(rows, pad_id):       # labels = shifted inputs, then every pad id masked: also <eos> when pad == eos
    x, y = batch_right(rows, pad_id)
    full = torch.full((len(rows), x.shape[1] + 1), pad_id)
    for b, (p, c) in enumerate(rows):
        full[b, :len(p) + len(c)] = torch.tensor(p + c)
        y[b] = full[b, 1:]
        y[b, :len(p) - 1] = -100
    y[y == pad_id] = -100
    return x, y


def batch_padding_labelled(rows, pad_id):     # the padding's labels are the pad id
    x, y = batch_right(rows, pad_id)
    for b, (p, c) in enumerate(rows):
        y[b, len(p) + len(c) - 1:] = pad_id
    return x, y


def batch_left_padded(rows, pad_id):
    x, y = batch_right(rows, pad_id)
    for b, (p, c) in enumerate(rows):
        n = len(p) + len(c) - 1
        x[b] = torch.roll(x[b], x.shape[1] - n)
        y[b] = torch.roll(y[b], x.shape[1] - n)
    return x, y


def batch_full_length(rows, pad_id):          # T = the longest sequence, one too many
    x, y = batch_right(rows, pad_id)
    return (torch.cat([x, torch.full((len(rows), 1), pad_id)], 1), torch.cat([y, torch.full((len(rows), 1), -100)], 1))


def batch_ragged(rows, pad_id):               # rows of their own lengths, never padded
    return [(p + c)[:-1] for p, c in rows], [[-100] * (len(p) - 1) + c for p, c in rows]


def batch_float(rows, pad_id):
    x, y = batch_right(rows, pad_id)
    return x, y.float()


def batch_in_place(rows, pad_id):             # extends the caller's prompt lists
    for p, c in rows:
        p += c
    T = max(len(p) for p, _ in rows) - 1
    x = torch.full((len(rows), T), pad_id)
    y = torch.full((len(rows), T), -100)
    for b, (p, c) in enumerate(rows):
        x[b, :len(p) - 1] = torch.tensor(p[:-1])
        y[b, len(p) - len(c) - 1:len(p) - 1] = torch.tensor(c)
    return x, y


def batch_x_padded_with_ignore(rows, pad_id):
    x, y = batch_right(rows, pad_id)
    for b, (p, c) in enumerate(rows):
        x[b, len(p) + len(c) - 1:] = -100
    return x, y


def batch_swapped(rows, pad_id):
    x, y = batch_right(rows, pad_id)
    return y, x


# ----------------------------------------------------------------------------- one Self-Instruct round
def round_right(generate, seed_tasks, generated, pool, rng, lang="en"):
    shown = sample_instructions(seed_tasks, generated, rng)
    text = generate(instruction_prompt(shown, lang), 48, rng.randrange(2**31))
    kept, rejected = [], []
    for ins in parse_instructions(text):
        reason = check_instruction(ins, pool)[0]
        if reason:
            rejected.append((ins, reason))
        else:
            kept.append(ins)
            pool.add(ins)
    return kept, rejected


def round_comprehension(generate, seed_tasks, generated, pool, rng, lang="en"):   # a verdict per instruction first
    prompt = instruction_prompt(sample_instructions(seed_tasks, generated, rng, n_seed=6, n_generated=2), lang)
    text = generate(prompt, max_new_tokens=48, seed=rng.randrange(2 ** 31))
    verdicts = []
    for ins in parse_instructions(text):
        verdicts.append((ins, check_instruction(ins, pool)[0]))
        if verdicts[-1][1] is None:
            pool.add(ins)
    return [i for i, v in verdicts if v is None], [(i, v) for i, v in verdicts if v is not None]


def round_no_pool_add(generate, seed_tasks, generated, pool, rng, lang="en"):
    shown = sample_instructions(seed_tasks, generated, rng)
    text = generate(instruction_prompt(shown, lang), 48, rng.randrange(2**31))
    verdicts = [(ins, check_instruction(ins, pool)[0]) for ins in parse_instructions(text)]
    return [i for i, v in verdicts if v is None], [(i, v) for i, v in verdicts if v is not None]


def round_eight_seeds(generate, seed_tasks, generated, pool, rng, lang="en"):
    return round_right(generate, seed_tasks, [], pool, rng, lang)


def round_global_random(generate, seed_tasks, generated, pool, rng, lang="en"):
    import random
    return round_right(generate, seed_tasks, generated, pool, random.Random(), lang)


def round_fixed_seed(generate, seed_tasks, generated, pool, rng, lang="en"):
    shown = sample_instructions(seed_tasks, generated, rng)
    return _filter_all(generate(instruction_prompt(shown, lang), 48, 0), pool)


def _filter_all(text, pool):
    kept, rejected = [], []
    for ins in parse_instructions(text):
        reason = check_instruction(ins, pool)[0]
        (rejected.append((ins, reason)) if reason else (kept.append(ins), pool.add(ins)))
    return kept, rejected


def round_first_only(generate, seed_tasks, generated, pool, rng, lang="en"):
    shown = sample_instructions(seed_tasks, generated, rng)
    text = generate(instruction_prompt(shown, lang), 48, rng.randrange(2**31))
    return _filter_all(text.split("\n")[0], pool)


def round_no_filter(generate, seed_tasks, generated, pool, rng, lang="en"):
    shown = sample_instructions(seed_tasks, generated, rng)
    kept = parse_instructions(generate(instruction_prompt(shown, lang), 48, rng.randrange(2**31)))
    for ins in kept:
        pool.add(ins)
    return kept, []


def round_english_only(generate, seed_tasks, generated, pool, rng, lang="en"):
    return round_right(generate, seed_tasks, generated, pool, rng, "en")


def round_pool_gets_all(generate, seed_tasks, generated, pool, rng, lang="en"):
    shown = sample_instructions(seed_tasks, generated, rng)
    kept, rejected = [], []
    for ins in parse_instructions(generate(instruction_prompt(shown, lang), 48, rng.randrange(2**31))):
        reason = check_instruction(ins, pool)[0]
        (rejected.append((ins, reason)) if reason else kept.append(ins))
        pool.add(ins)
    return kept, rejected


def round_reasons_missing(generate, seed_tasks, generated, pool, rng, lang="en"):
    kept, rejected = round_right(generate, seed_tasks, generated, pool, rng, lang)
    return kept, [ins for ins, _ in rejected]


def round_seed_first(generate, seed_tasks, generated, pool, rng, lang="en"):
    seed = rng.randrange(2**31)
    shown = sample_instructions(seed_tasks, generated, rng)
    return _filter_all(generate(instruction_prompt(shown, lang), 48, seed), pool)


RIGHT = [
    (checks.check_lcs, lcs_dp), (checks.check_lcs, lcs_recursive), (checks.check_lcs, lcs_one_row_numpy),
    (checks.check_keep_instruction, keep_right), (checks.check_keep_instruction, keep_own_rouge),
    (checks.check_keep_instruction, keep_loops),
    (checks.check_instruction_round, round_right), (checks.check_instruction_round, round_comprehension),
    (checks.check_sft_batch, batch_right), (checks.check_sft_batch, batch_numpy), (checks.check_sft_batch, batch_lists),
]

WRONG = [
    (checks.check_lcs, lcs_substring, "longest common substring"),
    (checks.check_lcs, lcs_plus_one, "one more than the LCS"),
    (checks.check_lcs, lcs_no_empty_row, "the first tokens are left out"),
    (checks.check_lcs, lcs_short_loops, "the last tokens are left out"),
    (checks.check_lcs, lcs_float, "must be an int, got float"),
    (checks.check_lcs, lcs_tensor, "must be a Python int, got a tensor"),
    (checks.check_lcs, lcs_shared_tokens, "in any order"),
    (checks.check_lcs, lcs_same_positions, "same token"),
    (checks.check_lcs, lcs_greedy, "greedy"),
    (checks.check_lcs, lcs_the_subsequence, "not the subsequence itself"),
    (checks.check_lcs, lcs_sentinel, "in place"),
    (checks.check_lcs, lcs_crash, "your code raised IndexError: list index out of range - on lcs([], [])"),
    (checks.check_keep_instruction, keep_everything, "ROUGE-L 0.88 >= 0.7"),
    (checks.check_keep_instruction, keep_inverted, "nothing in the pool is similar"),
    (checks.check_keep_instruction, keep_substring_keywords, "only contains the keyword 'graph'"),
    (checks.check_keep_instruction, keep_split_keywords, "not instruction.split()"),
    (checks.check_keep_instruction, keep_tokens_for_chinese, "Chinese keywords are substrings"),
    (checks.check_keep_instruction, keep_at_most_threshold, "exactly 0.70"),
    (checks.check_keep_instruction, keep_recall, "F-measure"),
    (checks.check_keep_instruction, keep_precision, "F-measure"),
    (checks.check_keep_instruction, keep_rouge_score_tokens, "count each Chinese character as a token"),
    (checks.check_keep_instruction, keep_rouge_score, "count each Chinese character as a token"),
    (checks.check_keep_instruction, keep_first_entry_only, "ANY pool entry"),
    (checks.check_keep_instruction, keep_average, "ANY pool entry"),
    (checks.check_keep_instruction, keep_any_different, "ANY pool entry"),
    (checks.check_keep_instruction, keep_no_blacklist, "'image' is a blacklisted keyword"),
    (checks.check_keep_instruction, keep_empty_pool_first, "whatever the pool"),
    (checks.check_keep_instruction, keep_max_crash, "your code raised ValueError"),
    (checks.check_keep_instruction, keep_tensor, "got a tensor"),
    (checks.check_keep_instruction, keep_none_when_kept, "every path"),
    (checks.check_instruction_round, round_no_pool_add, "add each kept instruction to the pool"),
    (checks.check_instruction_round, round_eight_seeds, "the prompt showed 0 generated instruction(s), not 2"),
    (checks.check_instruction_round, round_global_random, "sample with the rng you are given"),
    (checks.check_instruction_round, round_fixed_seed, "called generate with seed 0"),
    (checks.check_instruction_round, round_seed_first, "sample with the rng you are given"),
    (checks.check_instruction_round, round_first_only, "parse_instructions(text) gives all of them"),
    (checks.check_instruction_round, round_no_filter, "which check_instruction rejects (keyword)"),
    (checks.check_instruction_round, round_english_only, "should start with the 'zh' header"),
    (checks.check_instruction_round, round_pool_gets_all, "only the kept instructions join it"),
    (checks.check_instruction_round, round_reasons_missing, "the (instruction, reason) pairs"),
    (checks.check_sft_batch, batch_unmasked, "the prompt is not masked"),
    (checks.check_sft_batch, batch_unshifted, "y is not shifted"),
    (checks.check_sft_batch, batch_first_response_masked, "the first response token is masked"),
    (checks.check_sft_batch, batch_shifted_twice, "shifted twice"),
    (checks.check_sft_batch, batch_last_prompt_trained, "the last prompt token is trained"),
    (checks.check_sft_batch, batch_by_value, "masked by token value"),
    (checks.check_sft_batch, batch_masked_with_zero, "mask with -100"),
    (checks.check_sft_batch, batch_mask_where_pad, "the end token is not trained"),
    (checks.check_sft_batch, batch_padding_labelled, "a label of it would be trained"),
    (checks.check_sft_batch, batch_left_padded, "padded on the left"),
    (checks.check_sft_batch, batch_full_length, "T = max(len(p) + len(c)) - 1"),
    (checks.check_sft_batch, batch_ragged, "pad every row to the longest"),
    (checks.check_sft_batch, batch_float, "must hold integers"),
    (checks.check_sft_batch, batch_in_place, "in place"),
    (checks.check_sft_batch, batch_x_padded_with_ignore, "should be the padding id"),
    (checks.check_sft_batch, batch_swapped, "swapped"),
]

CHECKERS = (checks.check_lcs, checks.check_keep_instruction, checks.check_instruction_round, checks.check_sft_batch)

