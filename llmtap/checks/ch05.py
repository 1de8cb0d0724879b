"""Checkers of chapter 05 (instruction data): the longest common subsequence, the instruction filter,
one Self-Instruct round, the SFT batch.

Each one tries several inputs chosen so that the usual mistakes give a different result from the
right answer, and names the mistake: by the value that mistake gives (``likely_cause``), or, for the
filter's True/False, by the rule that the input is there to test.
"""
from __future__ import annotations

import numbers
import random

import numpy as np
import torch

from ..rouge import RougeIndex, lcs_length, rouge_l, tokenize
from ..self_instruct import HEADER, Task, check_instruction, instruction_round
from .common import StudentCodeError, int_answer, likely_cause, run_check


def _on(what: str, answer, *args):
    """``answer(*args)``; when the student's code raises, the message also says on which input."""
    try:
        return answer(*args)
    except StudentCodeError as e:
        raise StudentCodeError(e.error, f"on {what}" + (f"; {e.hint}" if e.hint else "")) from e.error


# ----------------------------------------------------------------------------- the LCS
def _substring(a: list, b: list) -> int:
    """Longest common substring (contiguous tokens): the classic mix-up with the subsequence."""
    best, run = 0, [0] * (len(b) + 1)
    for x in a:
        run = [0] + [run[j] + 1 if x == y else 0 for j, y in enumerate(b)]
        best = max(best, *run)
    return best


def _greedy(a: list, b: list) -> int:
    """Each token of a taken at its first match in b after the previous match: not always the longest."""
    n, start = 0, 0
    for x in a:
        if x in b[start:]:
            start += b[start:].index(x) + 1
            n += 1
    return n


def _lcs_mistakes(a: list, b: list, want: int) -> dict:
    return {
        "that is the longest common substring (contiguous tokens); a subsequence may skip tokens: when "
        "a[i-1] != b[j-1], L[i][j] = max(L[i-1][j], L[i][j-1]), not 0": _substring(a, b),
        "that counts the tokens a and b share, in any order; a subsequence keeps the order of both lists":
            sum(min(a.count(t), b.count(t)) for t in set(a)),
        "that counts the distinct tokens a and b share; a subsequence keeps the order (and the repeats) of both lists":
            len(set(a) & set(b)),
        "that counts the positions where a and b hold the same token; a subsequence may skip tokens in either list":
            sum(x == y for x, y in zip(a, b)),
        "taking each token at its first match (greedy) is not always the longest: fill the whole table, "
        "max(L[i-1][j], L[i][j-1]) keeps the better of the two choices": _greedy(a, b),
        "the first tokens are left out: the table has len(a)+1 rows and len(b)+1 columns (row 0 and column 0 "
        "are the empty prefixes), and L[i][j] compares a[i-1] with b[j-1]": lcs_length(a[1:], b[1:]),
        "the last tokens are left out: i runs over 1 .. len(a) and j over 1 .. len(b), range(1, len(a) + 1)":
            lcs_length(a[:-1], b[:-1]),
        "one more than the LCS (off by one): L[0][j] = L[i][0] = 0, and the answer is L[len(a)][len(b)]": want + 1,
        "one less than the LCS (off by one): the answer is L[len(a)][len(b)], the bottom-right cell": want - 1,
    }


def check_lcs(lcs) -> bool:
    """lcs(a, b) -> length of the longest common subsequence of two token lists (an int)."""
    def test(answer):
        cases = [([], []), ([], ["a"]),
                 (["a", "b", "c"], ["a", "b", "d"]), (["d", "b", "c"], ["e", "b", "c"]),   # first / last tokens differ
                 (["a"], ["a"]), (["x", "a", "b"], ["a", "b"]), (["a", "x", "b", "y", "c"], ["a", "b", "c"]),
                 (["a", "b", "c"], ["c", "b", "a"]), (["x", "a", "b", "c"], ["a", "b", "c", "x"]),
                 (list("abab"), list("baba")),
                 ("the cat sat on the mat".split(), "the dog sat on a mat".split()),
                 (tokenize("写一首关于春天的诗"), tokenize("写一首诗"))]
        rng = random.Random(0)       # and random ones over a small alphabet: many repeats, many ties
        cases += [([rng.choice("abc") for _ in range(rng.randint(0, 12))],
                   [rng.choice("abc") for _ in range(rng.randint(0, 12))]) for _ in range(40)]
        for a, b in [pair for x, y in cases for pair in ((x, y), (y, x))]:     # both orders: lcs is symmetric
            call = f"lcs({a}, {b})"
            a_in, b_in = list(a), list(b)
            got = _on(call, answer, a_in, b_in)
            assert (a_in, b_in) == (a, b), f"{call} changed its arguments in place: leave the token lists as they are"
            if isinstance(got, (list, tuple, str)):
                raise AssertionError(f"{call} returned {got!r}: return the length of the LCS (an int), "
                                     f"not the subsequence itself")
            got, want = int_answer(got, call), lcs_length(a, b)
            if got != want:
                cause = likely_cause(got, _lcs_mistakes(a, b, want), want)
                raise AssertionError(f"{call} should be {want}, got {got}: " + (cause or (
                    "L[i][j] = L[i-1][j-1] + 1 when a[i-1] == b[j-1], else max(L[i-1][j], L[i][j-1]), "
                    "and the answer is L[len(a)][len(b)]")))
    return run_check("Exercise: longest common subsequence", test, lcs)


# ----------------------------------------------------------------------------- the instruction filter
_POOL = ["Write a short story about a brave dog.", "写一首关于春天的诗。", "Give three tips for keeping a tidy desk at work."]
_DOG = ["Write a short story about a brave dog."]
_WHOLE_WORDS = "English keywords are whole words: compare with tokenize(instruction), not substrings of the text"
_FORM = "compare with tokenize(instruction), which lowercases and drops punctuation (not instruction.split())"
_CHINESE_KEYWORD = ("Chinese has no spaces between words, so Chinese keywords are substrings of the instruction "
                    "(tokenize gives single characters, never a two-character keyword)")
_F = ("use the F-measure, F = 2PR / (P + R): the precision or the recall alone is 1.0 as soon as one text "
      "holds all the other's words")

# (instruction, pool, whether to keep it, why): each one there to catch a mistake, in an order where
# the first input a mistaken answer gets wrong is the one that names its mistake
_FILTER_CASES = [
    ("Explain how rainbows form after the rain.", _POOL, True,
     "no keyword, and nothing in the pool is similar (highest ROUGE-L {score:.2f} < 0.7): keep it"),
    ("Write a short story about a brave cat.", _DOG, False, "ROUGE-L {score:.2f} >= 0.7 with the pool entry: reject it"),
    ("write a short story about a brave dog", _DOG, False,
     "the same words as the pool entry (ROUGE-L {score:.2f}): a duplicate must be rejected"),
    ("Give three tips for keeping a tidy room at home.", _POOL, False,
     "ROUGE-L {score:.2f} with the pool's last entry: reject when ANY pool entry reaches 0.7 "
     "(not only the first one, not the average)"),
    ("写一首关于夏天的诗。", _POOL, False,
     "a Chinese near-duplicate (ROUGE-L {score:.2f} with '写一首关于春天的诗。'): count each Chinese character as a "
     "token, as llmtap.rouge.rouge_l does (rouge-score's tokenizer and str.split() see no Chinese words)"),
    ("Write a short poem about the quiet sea at night.", ["Write a short poem about the old sea in spring."], False,
     "ROUGE-L is exactly {score:.2f} here: reject when ROUGE-L >= 0.7 (keep only if < 0.7)"),
    ("List three simple ways to save water at home.", ["List three cheap ways to save water on holiday."], True,
     "ROUGE-L {score:.3f} < 0.7: keep it (the threshold is 0.7)"),
    ("Write a short poem about the sea.",
     ["Write a short poem about the sea and the stars, and about the long cold night far in the north."], True,
     "ROUGE-L is only {score:.2f} < 0.7, though the pool entry holds every word of the instruction: " + _F),
    ("Write a short poem about the sea and the stars, and about the long cold night far in the north.",
     ["Write a short poem about the sea."], True,
     "ROUGE-L is only {score:.2f} < 0.7, though the instruction holds every word of the pool entry: " + _F),
    ("Describe the image below in one sentence.", _POOL, False, "'image' is a blacklisted keyword: reject it"),
    ("Describe what the Image shows.", _POOL, False, "'Image' is the keyword 'image' with a capital: " + _FORM),
    ("Write a caption for this photo.", _POOL, False, "'photo.' is the keyword 'photo' and a full stop: " + _FORM),
    ("Summarize the paragraph below in two sentences.", _POOL, True,
     "'paragraph' only contains the keyword 'graph': " + _WHOLE_WORDS),
    ("Explain photosynthesis to a ten-year-old child.", _POOL, True,
     "'photosynthesis' only contains the keyword 'photo': " + _WHOLE_WORDS),
    ("Write a short profile of a famous scientist.", _POOL, True,
     "'profile' only contains the keyword 'file': " + _WHOLE_WORDS),
    ("Explain the imagery of a poem by Li Bai.", _POOL, True, "'imagery' only contains the keyword 'image': " + _WHOLE_WORDS),
    ("Imagine you are a sailor and describe your first day at sea.", _POOL, True,
     "'imagine' is not the keyword 'image': " + _WHOLE_WORDS),
    ("根据这张图片写一段说明。", _POOL, False, "'图片' is a blacklisted keyword: " + _CHINESE_KEYWORD),
    ("把这个视频的内容总结一下。", _POOL, False, "'视频' is a blacklisted keyword: " + _CHINESE_KEYWORD),
    ("画一只猫，给它起个名字。", _POOL, False, "'画' is a blacklisted keyword: reject it"),
    ("Explain how tides work in the ocean.", [], True, "an empty pool has nothing to be similar to: keep it"),
    ("Describe the image below in one sentence.", [], False,
     "'image' is a blacklisted keyword: the keyword rule holds whatever the pool, even an empty one"),
]


def _bool_answer(value, what: str) -> bool:
    """True or False (a numpy bool is fine); a tensor, None or a number is a clear assertion."""
    if isinstance(value, torch.Tensor):
        raise AssertionError(f"{what} must be True or False, got a tensor {tuple(value.shape)}: return bool(...) of it")
    if not isinstance(value, (bool, np.bool_)):
        raise AssertionError(f"{what} must be True or False, got {type(value).__name__} {value!r}"
                             + (": every path of the function must return a value" if value is None else ""))
    return bool(value)


def check_keep_instruction(keep_instruction) -> bool:
    """keep_instruction(instruction, pool) -> bool: False when the instruction holds a blacklisted keyword
    (English: whole words; Chinese: substrings) or has ROUGE-L >= 0.7 with some pool entry."""
    def test(answer):
        for text, pool, want, why in _FILTER_CASES:
            call = f"keep_instruction({text!r}, pool={pool!r})"
            got = _bool_answer(_on(call, answer, text, list(pool)), call)   # a copy: the cases stay as they are
            if got != want:
                score = max((rouge_l(text, p) for p in pool), default=0.0)
                raise AssertionError(f"{call} should be {want}, got {got}: {why.format(score=score)}")
    return run_check("Exercise: the instruction filter", test, keep_instruction)


# ----------------------------------------------------------------------------- one Self-Instruct round
_SEEDS = [Task(t) for t in ("Give three tips for a good night's sleep.", "Rewrite the sentence in the passive voice.",
                            "Which of the two animals is larger?", "Summarize the paragraph in one sentence.",
                            "Suggest a name for a new bakery.", "Explain what a leap year is.",
                            "Sort the numbers from small to large.", "Translate the greeting into French.",
                            "给出三个节约用水的好办法。")]
_GENERATED = [Task(t, origin="generated") for t in ("Plan a picnic for four friends.", "Name a river in Africa.",
                                                    "Write a riddle about the moon.")]
# what the scripted generator adds after 'Task 9: ': one to keep, its near-copy (caught only if the
# first joined the pool), a keyword, a bad start, a seed's duplicate, and one more to keep
_CONTINUATION = (" Explain how volcanoes erupt.\nTask 10: Explain how volcanoes erupt quickly.\nTask 11: Describe the "
                 "image below.\nTask 12: - List three rivers.\nTask 13: Suggest a name for a new bakery.\nTask 14: "
                 "Write a haiku about the winter moon.\n")


def _reference_round(seed_tasks, generated, pool, rng, lang):
    """The library's round on the scripted continuation: (its prompt, its seed, kept, rejected)."""
    calls = []

    def generate(prompt, max_new_tokens, seed):
        calls.append((prompt, seed))
        return _CONTINUATION

    kept, rejected = instruction_round(generate, seed_tasks, generated, pool, rng, lang)
    return calls[0][0], calls[0][1], kept, rejected


def _round_case(answer, seed_tasks, generated, lang, rng_seed):
    calls = []

    def generate(prompt, max_new_tokens, seed):
        calls.append((prompt, max_new_tokens, seed))
        return _CONTINUATION

    pool = RougeIndex(t.instruction for t in seed_tasks + generated)
    n_pool = len(pool)
    call = f"self_instruct_round(generate, {len(seed_tasks)} seed tasks, {len(generated)} generated, pool, " \
           f"random.Random({rng_seed}), {lang!r})"
    got = _on(call, answer, generate, seed_tasks, generated, pool, random.Random(rng_seed), lang)
    ref_pool = RougeIndex(t.instruction for t in seed_tasks + generated)
    prompt, seed, kept, rejected = _reference_round(seed_tasks, generated, ref_pool, random.Random(rng_seed), lang)
    assert len(calls) == 1, f"{call} called generate {len(calls)} times: one round is one call to the generator"
    shown_prompt, max_new_tokens, shown_seed = calls[0]
    n_shown = shown_prompt.count("\n") - shown_prompt.startswith(HEADER[lang]) * HEADER[lang].count("\n")
    from_generated = sum(t.instruction in shown_prompt for t in generated)
    want_generated = min(2, len(generated))
    assert from_generated == want_generated, (
        f"{call}: the prompt showed {from_generated} generated instruction(s), not {want_generated}: "
        f"show 6 seed and 2 generated ones, sample_instructions(seed_tasks, generated, rng) (seed tasks fill in "
        f"while fewer than 2 have been generated)")
    assert shown_prompt.startswith(HEADER[lang]), (
        f"{call}: the prompt should start with the {lang!r} header {HEADER[lang]!r}: "
        f"instruction_prompt(shown, lang)")
    assert shown_prompt == prompt, (
        f"{call}: the prompt is not instruction_prompt(sample_instructions(seed_tasks, generated, rng), lang) "
        f"with this rng: sample with the rng you are given (not the random module), before anything else draws "
        f"from it, and pass lang on")
    assert max_new_tokens == 48, f"{call} asked for {max_new_tokens} new tokens: ask generate for 48"
    assert shown_seed == seed, (
        f"{call} called generate with seed {shown_seed!r}: draw it from the same rng, rng.randrange(2**31), right "
        f"after sampling, so that a round is reproducible from its rng")
    assert isinstance(got, tuple) and len(got) == 2, f"{call} returned {got!r}: return the pair (kept, rejected)"
    got_kept, got_rejected = list(got[0]), list(got[1])
    if len(got_kept) + len(got_rejected) < len(kept) + len(rejected):
        raise AssertionError(
            f"{call} looked at {len(got_kept) + len(got_rejected)} of the {len(kept) + len(rejected)} instructions "
            f"in the generator's continuation: parse_instructions(text) gives all of them, filter each one")
    for ins in ("Describe the image below.", "- List three rivers.", "Suggest a name for a new bakery."):
        assert ins not in got_kept, (f"{call} kept {ins!r}, which check_instruction rejects "
                                     f"({check_instruction(ins, RougeIndex(t.instruction for t in seed_tasks))[0]}): "
                                     f"keep an instruction only when check_instruction(instruction, pool)[0] is None")
    if "Explain how volcanoes erupt quickly." in got_kept:
        raise AssertionError(
            f"{call} kept 'Explain how volcanoes erupt quickly.', a near-copy (ROUGE-L 0.89) of 'Explain how volcanoes "
            f"erupt.' kept just before it in the same round: add each kept instruction to the pool (pool.add) "
            f"before checking the next one")
    assert got_kept == kept, f"{call} kept {got_kept}, expected {kept}"
    assert [tuple(r) for r in got_rejected] == rejected, (
        f"{call} rejected {got_rejected}; expected the (instruction, reason) pairs {rejected}, the reason as "
        f"check_instruction gives it")
    assert len(pool) == n_pool + len(kept) and pool.texts[n_pool:] == kept, (
        f"{call}: afterwards the pool holds {pool.texts[n_pool:]} more; only the kept instructions join it, "
        f"in the order they were kept")


def check_instruction_round(self_instruct_round) -> bool:
    """self_instruct_round(generate, seed_tasks, generated, pool, rng, lang) -> (kept, rejected)."""
    def test(answer):
        for generated, lang, rng_seed in [(_GENERATED, "en", 7), (_GENERATED, "en", 8), (_GENERATED[:1], "en", 3),
                                          ([], "en", 1), (_GENERATED, "zh", 5)]:
            seeds = _SEEDS if lang == "en" else _SEEDS[:6] + [_SEEDS[-1]]
            _round_case(answer, seeds, list(generated), lang, rng_seed)
    return run_check("Exercise: one Self-Instruct round", test, self_instruct_round)


# ----------------------------------------------------------------------------- the SFT batch
def _ids(value, what: str) -> list[int]:
    """Token ids as a list of Python ints: a list, a tuple, a 1-D tensor or numpy array (or a batch of
    one row) all hold the same ids; a float is not an id."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        if value.ndim == 2 and value.shape[0] == 1:
            value = value[0]
        if value.ndim != 1:
            raise AssertionError(f"{what} must be one sequence of ids, got shape {tuple(value.shape)}")
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise AssertionError(f"{what} must be a list of ints, got {type(value).__name__}")
    for t, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise AssertionError(f"{what}[{t}] must be an int (a token id, or -100 for no loss), "
                                 f"got {type(v).__name__} {v!r}")
    return [int(v) for v in value]


def _expect_labels(call: str, p: list, c: list, x: list, y: list) -> None:
    """One row's x and y (without its padding) against prompt ids p and response ids c, naming the
    known mistake when there is one."""
    ids, n = p + c, len(p)
    want_x, want_y = ids[:-1], [-100] * (n - 1) + c

    assert (x, y) != (want_y, want_x), f"{call}: x and y are swapped: return (x, y), the inputs first"
    cause = likely_cause(torch.tensor(x), {
        "x is the sequence without its last token (ids[:-1]): nothing follows the last token, "
        "so it predicts nothing": ids,
        "x starts one token late: x = (prompt_ids + response_ids)[:-1] starts with the first token, "
        "and it is y that is shifted by one": ids[1:],
        "x is the whole sequence, prompt and response, without its last token": p,
    }, torch.tensor(want_x))
    assert x == want_x, f"{call}: x should be {want_x}, got {x}" + (f": {cause}" if cause else "")

    mistakes = {
        "the prompt is not masked: y[t] is -100 where the token after position t belongs to the prompt "
        "(no loss on the prompt)": ids[1:],
        "y is not shifted: y[t] is the token AFTER position t, so the last prompt position already "
        "predicts the first response token": [-100] * n + c[:-1],
        "those are labels as long as the whole sequence, shifted inside the model (Hugging Face style); "
        "here y[t] is already the token after x[t], as long as x": [-100] * n + c,
        "y is shifted twice: y[t] = (prompt_ids + response_ids)[t + 1], one step": ([-100] * (n - 1) + c)[1:] + [-100],
        "y is shifted twice: y[t] = (prompt_ids + response_ids)[t + 1], one step, and as long as x":
            ([-100] * (n - 1) + c)[1:],
        "the first response token is masked (off by one): the last prompt position predicts "
        "response_ids[0], so only len(prompt_ids) - 1 labels are -100": [-100] * n + c[1:],
        "the prompt is masked by token value: the same id can be in the prompt and in the response; "
        "mask by position, the first len(prompt_ids) - 1 labels": [-100 if t in p else t for t in ids[1:]],
        "the end token is not trained: response_ids ends with <eos>, and its label (the last of y) "
        "is what teaches the model to stop": [-100] * (n - 1) + c[:-1] + [-100],
    }
    if n >= 2:
        mistakes["the last prompt token is trained (off by one): the token after position len(prompt_ids) - 2 "
                 "is still the prompt's, so the first len(prompt_ids) - 1 labels are -100"] = \
            [-100] * (n - 2) + [p[-1]] + c
    cause = likely_cause(torch.tensor(y), mistakes, torch.tensor(want_y))
    if cause:
        raise AssertionError(f"{call}: y should be {want_y}, got {y}: {cause}")
    assert len(y) == len(x), (f"{call}: y should be {want_y}, got {y}: y must be as long as x, "
                              f"y[t] is the token that follows x[t]")
    masks = set(y[:n - 1])
    if y[n - 1:] == c and len(masks) == 1 and masks != {-100}:
        raise AssertionError(f"{call}: y should be {want_y}, got {y}: mask with -100 (the ignore_index of "
                             f"F.cross_entropy), not {masks.pop()}, a real token id that would be trained")
    t = next((t for t in range(len(y)) if y[t] != want_y[t]), None)
    if t is not None:
        role = (f"-100, the token after position {t} is in the prompt" if t < n - 1 else
                f"response_ids[{t - n + 1}], the token after position {t}")
        raise AssertionError(f"{call}: y[{t}] should be {want_y[t]} ({role}), got {y[t]}; "
                             f"y should be {want_y}, got {y}")


def _batch_answer(value, what: str) -> torch.Tensor:
    """A (B, T) batch of token ids as a long tensor: a tensor, a numpy array or nested lists of ints."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    elif isinstance(value, (list, tuple)):
        try:
            value = torch.tensor(value)
        except (ValueError, TypeError):
            raise AssertionError(f"{what} must be a (B, T) tensor of token ids; its rows have different lengths: "
                                 f"pad every row to the longest") from None
    if not isinstance(value, torch.Tensor):
        raise AssertionError(f"{what} must be a (B, T) tensor of token ids, got {type(value).__name__}")
    if value.is_floating_point() or value.dtype == torch.bool:
        raise AssertionError(f"{what} must hold integers (token ids, -100 for no loss), got {value.dtype}: "
                             f"F.cross_entropy takes long targets")
    if value.ndim != 2:
        raise AssertionError(f"{what} must be 2-D, (rows, positions), got shape {tuple(value.shape)}")
    return value.long()


# (rows, pad_id): <bos> = 1 starts every prompt and <eos> = 2 ends every response; in the last two
# batches the padding id is the end token's, as when a tokenizer has no pad token of its own
_BATCHES = [([([1, 10, 11, 12], [20, 21, 2])], 0),
            ([([1, 10, 11, 12], [20, 21, 2]), ([1], [5, 2]), ([1, 7, 7], [7, 7, 2])], 0),
            ([([1, 30, 31, 32, 33, 34], [40, 2]), ([3, 4], [5, 6, 7, 8, 2]), ([1, 9, 9], [2])], 0),
            ([([1, 10, 11], [20, 2]), ([1, 12, 13, 14, 15], [21, 22, 23, 2])], 2),
            ([([1, 10, 11, 12, 13, 14], [20, 2]), ([1, 15], [2]), ([1, 16, 17], [24, 25, 2])], 2)]


def check_sft_batch(sft_batch) -> bool:
    """sft_batch(rows, pad_id) -> (x, y): a right-padded (B, T) batch; y is -100 on the prompt and the padding."""
    def test(answer):
        for rows, pad_id in _BATCHES:
            call = f"sft_batch({rows}, pad_id={pad_id})"
            given = [(list(p), list(c)) for p, c in rows]
            got = _on(call, answer, given, pad_id)
            assert given == [(list(p), list(c)) for p, c in rows], \
                f"{call} changed its arguments in place: build new lists (prompt_ids + response_ids), do not extend one"
            assert isinstance(got, (tuple, list)) and len(got) == 2, \
                f"{call} must return a pair (x, y), got {type(got).__name__}" + (
                    f" of {len(got)}" if isinstance(got, (list, tuple)) else "")
            x, y = _batch_answer(got[0], f"{call}: x"), _batch_answer(got[1], f"{call}: y")
            lengths = [len(p) + len(c) - 1 for p, c in rows]
            T = max(lengths)
            want = (len(rows), T)
            assert tuple(x.shape) == want and tuple(y.shape) == want, (
                f"{call}: x and y should both have shape {want} (rows, the longest prompt + response minus one), "
                f"got {tuple(x.shape)} and {tuple(y.shape)}" + (
                    ": the last token of a sequence predicts nothing, so x drops it and T = max(len(p) + len(c)) - 1"
                    if x.shape[-1] == T + 1 else ""))
            for b, ((p, c), n) in enumerate(zip(rows, lengths)):
                row = f"{call}, row {b}"
                if n < T and x[b, T - n:].tolist() == (p + c)[:-1]:
                    raise AssertionError(f"{row}: the row is padded on the left; pad on the right (after the "
                                         f"response), so that every row starts at position 0 with its <bos>")
                _expect_labels(row, p, c, x[b, :n].tolist(), y[b, :n].tolist())
                assert (x[b, n:] == pad_id).all(), (f"{row}: x after the row's {n} tokens should be the padding id "
                                                    f"{pad_id}, got {x[b, n:].tolist()}")
                assert (y[b, n:] == -100).all(), (
                    f"{row}: y on the padding should be -100 (no loss), got {y[b, n:].tolist()}" + (
                        ": the padding id is a real token, and a label of it would be trained" if
                        (y[b, n:] == pad_id).all() else ""))
    return run_check("Exercise: the SFT batch", test, sft_batch)
