"""The checkers of the graded exercises (llmtap.checks), chapters 00-05, in one table.

Each row gives a checker an answer: a right one (the checker must say correct), a wrong one (it must
say what is wrong, with the phrase given), or the stub (it must say not solved yet). The right answers
are written here, independently of the library functions the checkers compare against, so that a
wrong reference in the library makes its right answer fail.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from llmtap import checks
from llmtap.model import sample_next
from llmtap.rouge import rouge_l
from llmtap.self_instruct import blacklisted_word


def stub(*args, **kwargs):
    raise NotImplementedError("exercise not solved yet")


# ----------------------------------------------------------------------------- chapter 00: causal mask
def mask_right(T):
    return torch.tril(torch.ones(T, T, dtype=torch.bool))


def mask_future(T):               # j >= i: sees the future, not the past
    return torch.triu(torch.ones(T, T, dtype=torch.bool))


def mask_all(T):
    return torch.ones(T, T, dtype=torch.bool)


def mask_float(T):
    return torch.tril(torch.ones(T, T))


def mask_crash(T):
    return torch.tril(torch.ones(T, T, dtype=torch.bool))[T]


# ----------------------------------------------------------------------------- chapter 00: sampling
def sample_ignores_top_k(logits, temperature, top_k, generator):
    return sample_next(logits, temperature, None, generator)


def sample_ignores_temperature(logits, temperature, top_k, generator):
    return sample_next(logits, 1.0 if temperature else 0.0, top_k, generator)


def sample_always_argmax(logits, temperature, top_k, generator):
    return logits.argmax(-1)


# ----------------------------------------------------------------------------- chapter 00: next-token loss
def loss_right(logits, idx):
    V = logits.size(-1)
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), idx[:, 1:].reshape(-1))


def loss_no_shift(logits, idx):
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), idx.reshape(-1))


def loss_wrong_shift(logits, idx):
    V = logits.size(-1)
    return F.cross_entropy(logits[:, 1:].reshape(-1, V), idx[:, :-1].reshape(-1))


def loss_sum(logits, idx):
    V = logits.size(-1)
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), idx[:, 1:].reshape(-1), reduction="sum")


def loss_not_scalar(logits, idx):
    V = logits.size(-1)
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), idx[:, 1:].reshape(-1), reduction="none")


# ----------------------------------------------------------------------------- chapter 01: answer scorer
@torch.no_grad()
def logprob_right(lm, context, continuation):
    c, z = lm.encode(context, bos=True), lm.encode(continuation)
    ids = torch.tensor([c + z])
    logp = F.log_softmax(lm.model(ids)[0][0], -1)
    return sum(logp[len(c) + i - 1, t].item() for i, t in enumerate(z))


@torch.no_grad()
def logprob_off_by_one(lm, context, continuation):   # reads the prediction at the token itself
    c, z = lm.encode(context, bos=True), lm.encode(continuation)
    logp = F.log_softmax(lm.model(torch.tensor([c + z]))[0][0], -1)
    return sum(logp[len(c) + i, t].item() for i, t in enumerate(z[:-1]))


@torch.no_grad()
def logprob_whole_text(lm, context, continuation):   # scores the context too
    ids = lm.encode(context + continuation, bos=True)
    logp = F.log_softmax(lm.model(torch.tensor([ids]))[0][0], -1)
    return sum(logp[i - 1, ids[i]].item() for i in range(1, len(ids)))


def logprob_a_string(lm, context, continuation):
    return "x"


# ----------------------------------------------------------------------------- chapter 01: verbalizer
def label_probs_right(scores, answers, label_words):
    p = scores.softmax(-1)
    return torch.stack([p[:, [answers.index(z) for z in words]].sum(-1) for words in label_words.values()], -1)


def label_probs_no_softmax(scores, answers, label_words):
    s = torch.stack([scores[:, [answers.index(z) for z in w]].sum(-1) for w in label_words.values()], -1)
    return s / s.sum(-1, keepdim=True)


def label_probs_fixed_order(scores, answers, label_words):   # assumes answers come label by label
    p = scores.softmax(-1)
    return torch.stack([p[:, 0:2].sum(-1), p[:, 2:3].sum(-1), p[:, 3:5].sum(-1)], -1)


def label_probs_the_scores(scores, answers, label_words):
    return scores


# ----------------------------------------------------------------------------- chapter 01: k-shot prompt
def kshot_right(demos, query):
    return "".join(f"{x}→{y}\n" for x, y in demos) + f"{query}→"


def kshot_no_newline(demos, query):
    return "".join(f"{x}→{y}" for x, y in demos) + f"{query}→"


def kshot_no_arrow(demos, query):
    return "".join(f"{x}→{y}\n" for x, y in demos) + query


def kshot_none(demos, query):
    return None


# ----------------------------------------------------------------------------- chapter 02: LoRA forward
def lora_fwd_right(x, W0, A, B, alpha, r):
    return x @ W0.T + (alpha / r) * (x @ A.T) @ B.T


def lora_fwd_unscaled(x, W0, A, B, alpha, r):
    return x @ W0.T + (x @ A.T) @ B.T


def lora_fwd_no_base(x, W0, A, B, alpha, r):
    return (alpha / r) * (x @ A.T) @ B.T


def lora_fwd_zero(x, W0, A, B, alpha, r):
    return 0


# ----------------------------------------------------------------------------- chapter 02: merge
def merge_right(W0, A, B, alpha, r):
    return W0 + (alpha / r) * B @ A


def merge_in_place(W0, A, B, alpha, r):
    return W0.add_((alpha / r) * B @ A)


def merge_unscaled(W0, A, B, alpha, r):
    return W0 + B @ A


def merge_unscaled_transposed(W0, A, B, alpha, r):
    return (W0.T + A.T @ B.T).T


def merge_update_transposed(W0, A, B, alpha, r):
    return A.T @ B.T


# ----------------------------------------------------------------------------- chapter 02: parameter count
def count_right(model, targets, r):
    return sum(r * (m.in_features + m.out_features) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in targets)


def count_square(model, targets, r):
    return sum(2 * r * m.in_features for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in targets)


# ----------------------------------------------------------------------------- chapter 03: adapter forward
def adapter_right(h, W_down, b_down, W_up, b_up):
    return h + F.gelu(h @ W_down.T + b_down) @ W_up.T + b_up


def adapter_no_residual(h, W_down, b_down, W_up, b_up):
    return F.gelu(h @ W_down.T + b_down) @ W_up.T + b_up


def adapter_no_nonlinearity(h, W_down, b_down, W_up, b_up):
    return h + (h @ W_down.T + b_down) @ W_up.T + b_up


# ----------------------------------------------------------------------------- chapter 03: attention with a prefix
def prefix_attention_right(q, k, v, pk, pv):
    P, T = pk.shape[2], q.shape[2]
    allowed = torch.cat([torch.ones(T, P, dtype=torch.bool), torch.ones(T, T, dtype=torch.bool).tril()], 1)
    return F.scaled_dot_product_attention(q, torch.cat([pk, k], 2), torch.cat([pv, v], 2), attn_mask=allowed)


def prefix_attention_top_left_causal(q, k, v, pk, pv):
    return F.scaled_dot_product_attention(q, torch.cat([pk, k], 2), torch.cat([pv, v], 2), is_causal=True)


def prefix_attention_prefix_not_seen(q, k, v, pk, pv):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


# ----------------------------------------------------------------------------- chapter 03: soft prompt from text
def soft_prompt_right(weight, tokenizer, text):
    missing = [c for c in text if c not in tokenizer.char_to_id]
    if missing:
        raise ValueError(f"unknown characters {missing}")
    return weight[tokenizer.encode(text)].clone()


def soft_prompt_by_hand(weight, tokenizer, text):   # one row per character, looked up without encode()
    rows = []
    for c in text:
        if c not in tokenizer.char_to_id:
            raise ValueError(f"no token for {c!r}")
        rows.append(weight[tokenizer.char_to_id[c]].tolist())
    return torch.tensor(rows, dtype=weight.dtype)


def soft_prompt_byte_fallback(weight, tokenizer, text):
    return weight[tokenizer.encode(text)].clone()


def soft_prompt_with_bos(weight, tokenizer, text):
    soft_prompt_right(weight, tokenizer, text)
    return weight[tokenizer.encode(text, bos=True)].clone()


# ----------------------------------------------------------------------------- chapter 04: ALiBi slopes
def slopes_closed_form(n):
    """The ALiBi paper's rule: head h of n (a power of two) gets 2^(-8 (h + 1) / n); otherwise the slopes of
    the power of two m below n, then the first n - m of every other slope of 2m."""
    def powers(k):
        return [2 ** (-8 * (h + 1) / k) for h in range(k)]
    m = 2 ** int(math.log2(n))
    return torch.tensor(powers(m) + powers(2 * m)[0::2][:n - m])


def test_slopes_closed_form_by_hand():
    assert slopes_closed_form(2).tolist() == [1 / 16, 1 / 256]
    assert slopes_closed_form(3).tolist() == [1 / 16, 1 / 256, 1 / 4]
    assert slopes_closed_form(6).tolist() == [1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8]


def slopes_only_powers_of_two(n):
    a = 256 ** (1 / n)
    return torch.tensor([a ** -(h + 1) for h in range(n)])


# ----------------------------------------------------------------------------- chapter 04: ALiBi bias
def bias_right(slopes, T):
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    return -slopes[:, None, None] * (i - j)


def bias_masked_future(slopes, T):                    # -inf above the diagonal is fine: the mask hides it
    return bias_right(slopes, T).masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))


def bias_flipped(slopes, T):
    return -bias_right(slopes, T)


def bias_first_head_only(slopes, T):
    return bias_right(slopes, T)[0]


def bias_crash(slopes, T):
    return 1 / 0


# ----------------------------------------------------------------------------- chapter 04: context extension
def positions_interpolated(T, L, L_new):
    return torch.arange(T) * L / L_new


def positions_stretched(T, L, L_new):
    return torch.arange(T) * L_new / L


def ntk_right(base, s, d):
    return base * s ** (d / (d - 2))


def ntk_times_factor(base, s, d):
    return base * s


# ----------------------------------------------------------------------------- chapter 05: LCS
def lcs_dp(a, b):
    L = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            L[i][j] = L[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(L[i - 1][j], L[i][j - 1])
    return L[-1][-1]


def lcs_substring(a, b):          # longest common *substring*: a classic mix-up
    best = 0
    for i in range(len(a)):
        for j in range(len(b)):
            k = 0
            while i + k < len(a) and j + k < len(b) and a[i + k] == b[j + k]:
                k += 1
            best = max(best, k)
    return best


# ----------------------------------------------------------------------------- chapter 05: instruction filter
def keep_right(instruction, pool):
    return blacklisted_word(instruction) is None and all(rouge_l(instruction, p) < 0.7 for p in pool)


def keep_rouge_score(instruction, pool):   # the reference tokenizer: blind to Chinese
    # rouge_score is an optional test dependency: imported only by the one case that needs it
    from rouge_score import rouge_scorer
    sc = rouge_scorer.RougeScorer(["rougeL"])
    return blacklisted_word(instruction) is None and all(sc.score(p, instruction)["rougeL"].fmeasure < 0.7 for p in pool)


def keep_everything(instruction, pool):
    return True


# ----------------------------------------------------------------------------- chapter 05: SFT labels
def labels_right(p, c):
    ids = p + c
    return ids[:-1], [-100] * (len(p) - 1) + c


def labels_unmasked(p, c):
    ids = p + c
    return ids[:-1], ids[1:]


def labels_unshifted(p, c):
    ids = p + c
    return ids[:-1], [-100] * len(p) + c[:-1]


# ----------------------------------------------------------------------------- the table
TITLES = {
    checks.check_causal_mask: "Exercise: causal mask",
    checks.check_sample_next: "Exercise: temperature and top-k sampling",
    checks.check_next_token_loss: "Exercise: next-token loss",
    checks.check_answer_logprob: "Exercise: answer scorer",
    checks.check_label_probs: "Exercise: verbalizer",
    checks.check_kshot_prompt: "Exercise: k-shot prompt",
    checks.check_lora_forward: "Exercise: LoRA forward",
    checks.check_merge_weight: "Exercise: merge",
    checks.check_lora_param_count: "Exercise: LoRA parameter count",
    checks.check_adapter_forward: "Exercise: adapter forward",
    checks.check_prefix_attention: "Exercise: attention with a prefix",
    checks.check_soft_prompt_from_text: "Exercise: soft prompt from text",
    checks.check_alibi_slopes: "Exercise: ALiBi slopes",
    checks.check_alibi_bias: "Exercise: ALiBi bias",
    checks.check_interpolated_positions: "Exercise: interpolated positions",
    checks.check_ntk_base: "Exercise: NTK-aware base",
    checks.check_lcs: "Exercise: longest common subsequence",
    checks.check_keep_instruction: "Exercise: the instruction filter",
    checks.check_sft_labels: "Exercise: SFT labels",
}

CASES = [   # (checker, answer, verdict, a phrase of the printed line)
    # chapter 00
    (checks.check_causal_mask, mask_right, True, "correct"),
    (checks.check_causal_mask, stub, False, "not solved yet"),
    (checks.check_causal_mask, mask_future, False, "not right yet"),
    (checks.check_causal_mask, mask_all, False, "not right yet"),
    (checks.check_causal_mask, mask_float, False, "bool"),
    (checks.check_causal_mask, mask_crash, False, "IndexError"),
    (checks.check_sample_next, sample_next, True, "correct"),
    (checks.check_sample_next, stub, False, "not solved yet"),
    (checks.check_sample_next, sample_ignores_top_k, False, "top_k"),
    (checks.check_sample_next, sample_ignores_temperature, False, "temperature"),
    (checks.check_sample_next, sample_always_argmax, False, "evenly"),
    (checks.check_next_token_loss, loss_right, True, "correct"),
    (checks.check_next_token_loss, stub, False, "not solved yet"),
    (checks.check_next_token_loss, loss_no_shift, False, "shift"),
    (checks.check_next_token_loss, loss_wrong_shift, False, "expected"),
    (checks.check_next_token_loss, loss_sum, False, "expected"),
    (checks.check_next_token_loss, loss_not_scalar, False, "scalar"),
    # chapter 01
    (checks.check_answer_logprob, logprob_right, True, "correct"),
    (checks.check_answer_logprob, stub, False, "not solved yet"),
    (checks.check_answer_logprob, logprob_off_by_one, False, "expected"),
    (checks.check_answer_logprob, logprob_whole_text, False, "continuation's tokens only"),
    (checks.check_answer_logprob, logprob_a_string, False, "one number"),
    (checks.check_label_probs, label_probs_right, True, "correct"),
    (checks.check_label_probs, stub, False, "not solved yet"),
    (checks.check_label_probs, label_probs_no_softmax, False, "softmax"),
    (checks.check_label_probs, label_probs_fixed_order, False, "order of the labels"),
    (checks.check_label_probs, label_probs_the_scores, False, "shape"),
    (checks.check_kshot_prompt, kshot_right, True, "correct"),
    (checks.check_kshot_prompt, stub, False, "not solved yet"),
    (checks.check_kshot_prompt, kshot_no_newline, False, "expected"),
    (checks.check_kshot_prompt, kshot_no_arrow, False, "expected"),
    (checks.check_kshot_prompt, kshot_none, False, "str"),
    # chapter 02
    (checks.check_lora_forward, lora_fwd_right, True, "correct"),
    (checks.check_lora_forward, stub, False, "not solved yet"),
    (checks.check_lora_forward, lora_fwd_unscaled, False, "alpha / r"),
    (checks.check_lora_forward, lora_fwd_no_base, False, "exactly W0 x"),
    (checks.check_lora_forward, lora_fwd_zero, False, "shape"),
    (checks.check_merge_weight, merge_right, True, "correct"),
    (checks.check_merge_weight, stub, False, "not solved yet"),
    (checks.check_merge_weight, merge_in_place, False, "in place"),
    (checks.check_merge_weight, merge_unscaled, False, "alpha / r"),
    (checks.check_merge_weight, merge_unscaled_transposed, False, "alpha / r"),
    (checks.check_merge_weight, merge_update_transposed, False, "shaped like W0"),
    (checks.check_lora_param_count, count_right, True, "correct"),
    (checks.check_lora_param_count, stub, False, "not solved yet"),
    (checks.check_lora_param_count, count_square, False, "r (d_in + d_out)"),
    # chapter 03
    (checks.check_adapter_forward, adapter_right, True, "correct"),
    (checks.check_adapter_forward, stub, False, "not solved yet"),
    (checks.check_adapter_forward, adapter_no_residual, False, "add h back (the residual)"),
    (checks.check_adapter_forward, adapter_no_nonlinearity, False, "GELU"),
    (checks.check_prefix_attention, prefix_attention_right, True, "correct"),
    (checks.check_prefix_attention, stub, False, "not solved yet"),
    (checks.check_prefix_attention, prefix_attention_top_left_causal, False, "shift the causal part by P"),
    (checks.check_prefix_attention, prefix_attention_prefix_not_seen, False, "all P prefix entries"),
    (checks.check_soft_prompt_from_text, soft_prompt_right, True, "correct"),
    (checks.check_soft_prompt_from_text, soft_prompt_by_hand, True, "correct"),
    (checks.check_soft_prompt_from_text, stub, False, "not solved yet"),
    (checks.check_soft_prompt_from_text, soft_prompt_byte_fallback, False, "must raise ValueError"),
    (checks.check_soft_prompt_from_text, soft_prompt_with_bos, False, "one row per token"),
    # chapter 04
    (checks.check_alibi_slopes, slopes_closed_form, True, "correct"),
    (checks.check_alibi_slopes, stub, False, "not solved yet"),
    (checks.check_alibi_slopes, slopes_only_powers_of_two, False, "not a power of two"),
    (checks.check_alibi_bias, bias_right, True, "correct"),
    (checks.check_alibi_bias, bias_masked_future, True, "correct"),
    (checks.check_alibi_bias, stub, False, "not solved yet"),
    (checks.check_alibi_bias, bias_flipped, False, "sign"),
    (checks.check_alibi_bias, bias_first_head_only, False, "shape"),
    (checks.check_alibi_bias, bias_crash, False, "ZeroDivisionError"),
    (checks.check_interpolated_positions, positions_interpolated, True, "correct"),
    (checks.check_interpolated_positions, stub, False, "not solved yet"),
    (checks.check_interpolated_positions, positions_stretched, False, "stretches"),
    (checks.check_ntk_base, ntk_right, True, "correct"),
    (checks.check_ntk_base, stub, False, "not solved yet"),
    (checks.check_ntk_base, ntk_times_factor, False, "want"),
    # chapter 05
    (checks.check_lcs, lcs_dp, True, "correct"),
    (checks.check_lcs, stub, False, "not solved yet"),
    (checks.check_lcs, lcs_substring, False, "not right yet"),
    (checks.check_keep_instruction, keep_right, True, "correct"),
    (checks.check_keep_instruction, stub, False, "not solved yet"),
    (checks.check_keep_instruction, keep_rouge_score, False, "Chinese near-duplicate"),
    (checks.check_keep_instruction, keep_everything, False, "not right yet"),
    (checks.check_sft_labels, labels_right, True, "correct"),
    (checks.check_sft_labels, stub, False, "not solved yet"),
    (checks.check_sft_labels, labels_unmasked, False, "-100"),
    (checks.check_sft_labels, labels_unshifted, False, "not right yet"),
]


def test_every_checker_has_cases():
    assert {checker for checker, *_ in CASES} == set(TITLES)
    assert set(TITLES) == {getattr(checks, name) for name in checks.__all__ if name.startswith("check_")}


@pytest.mark.parametrize("checker, answer, ok, phrase", CASES,
                         ids=[f"{c.__name__[len('check_'):]}-{a.__name__}" for c, a, *_ in CASES])
def test_checker(capsys, checker, answer, ok, phrase):
    assert checker(answer) is ok
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    assert out[0].startswith(TITLES[checker] + ": ") and phrase in out[0], out[0]


def test_run_check_reports_crashes(capsys):
    def boom():
        raise RuntimeError("kaboom")
    assert checks.run_check("T", boom) is False
    assert capsys.readouterr().out.strip() == "T: your code raised RuntimeError: kaboom"
    assert checks.run_check("T", lambda: None) is True
    assert capsys.readouterr().out.strip() == "T: correct ✓"
