"""Mutation tests of chapter 01's checkers: each wrong answer of the bank (the usual mistakes) is
rejected with a message that names what is wrong, and each right answer, written differently from
the solution (another dtype, container or formula), is accepted. The answers are written here,
independently of the library the checkers compare against."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llmtap import checks


# ----------------------------------------------------------------------------- answer scorer
def _log_probs(lm, ids):
    """log_softmax of the model's logits over the vocabulary for one sequence, (T, vocab)."""
    with torch.no_grad():
        return F.log_softmax(lm.model(torch.tensor([ids]))[0][0], -1)


def logprob_right(lm, context, continuation):
    c, z = lm.encode(context, bos=True), lm.encode(continuation)
    logp = _log_probs(lm, c + z)
    return sum(logp[len(c) + i - 1, t].item() for i, t in enumerate(z))


def logprob_gather_float64(lm, context, continuation):    # tensors all the way, float64, .item() at the end
    c, z = lm.encode(context, bos=True), lm.encode(continuation)
    logp = _log_probs(lm, c + z).double()[len(c) - 1:-1]
    return logp.gather(1, torch.tensor(z)[:, None]).sum().item()


def logprob_token_by_token(lm, context, continuation):    # one forward pass per token, a numpy float
    ids, total = lm.encode(context, bos=True), []
    for t in lm.encode(continuation):
        total.append(_log_probs(lm, ids)[-1, t].item())
        ids = ids + [t]
    return np.float64(math.fsum(total))


def logprob_cross_entropy(lm, context, continuation):     # minus the summed cross-entropy of the continuation
    c, z = lm.encode(context, bos=True), lm.encode(continuation)
    with torch.no_grad():
        logits = lm.logits(torch.tensor([c + z]), torch.ones(1, len(c + z)))[0]
    return -F.cross_entropy(logits[len(c) - 1:-1], torch.tensor(z), reduction="sum").item()


def logprob_off_by_one(lm, context, continuation):        # reads the prediction at the token itself
    c, z = lm.encode(context, bos=True), lm.encode(continuation)
    logp = _log_probs(lm, c + z)
    return sum(logp[len(c) + i, t].item() for i, t in enumerate(z[:-1]))


def logprob_own_position(lm, context, continuation):      # every token read at its own position
    c, z = lm.encode(context, bos=True), lm.encode(continuation)
    logp = _log_probs(lm, c + z)
    return sum(logp[len(c) + i, t].item() for i, t in enumerate(z))


def logprob_whole_text(lm, context, continuation):        # scores the context too
    ids = lm.encode(context + continuation, bos=True)
    logp = _log_probs(lm, ids)
    return sum(logp[i - 1, ids[i]].item() for i in range(1, len(ids)))


def logprob_a_string(lm, context, continuation):
    return "x"


def logprob_tensor(lm, context, continuation):            # right value, but a tensor, not a float
    return torch.tensor(logprob_right(lm, context, continuation))


def logprob_no_bos(lm, context, continuation):
    c, z = lm.encode(context), lm.encode(continuation)
    logp = _log_probs(lm, c + z)
    return sum(logp[len(c) + i - 1, t].item() for i, t in enumerate(z))


def logprob_bos_twice(lm, context, continuation):         # <bos> in front of the continuation too
    c, z = lm.encode(context, bos=True), lm.encode(continuation, bos=True)
    logp = _log_probs(lm, c + z)
    return sum(logp[len(c) + i - 1, t].item() for i, t in enumerate(z))


def logprob_mean(lm, context, continuation):
    return logprob_right(lm, context, continuation) / len(lm.encode(continuation))


def logprob_probability(lm, context, continuation):
    return math.exp(logprob_right(lm, context, continuation))


def logprob_raw_logits(lm, context, continuation):
    c, z = lm.encode(context, bos=True), lm.encode(continuation)
    with torch.no_grad():
        logits = lm.model(torch.tensor([c + z]))[0][0]
    return sum(logits[len(c) + i - 1, t].item() for i, t in enumerate(z))


def logprob_softmax_over_positions(lm, context, continuation):
    c, z = lm.encode(context, bos=True), lm.encode(continuation)
    with torch.no_grad():
        logp = F.log_softmax(lm.model(torch.tensor([c + z]))[0][0], 0)
    return sum(logp[len(c) + i - 1, t].item() for i, t in enumerate(z))


def logprob_first_token(lm, context, continuation):
    c, z = lm.encode(context, bos=True), lm.encode(continuation)
    return _log_probs(lm, c + z)[len(c) - 1, z[0]].item()


# ----------------------------------------------------------------------------- verbalizer
def label_probs_right(scores, answers, label_words):
    p = scores.softmax(-1)
    return torch.stack([p[:, [answers.index(z) for z in words]].sum(-1) for words in label_words.values()], -1)


def label_probs_logsumexp(scores, answers, label_words):  # softmax over the labels' logsumexp: the same sums
    col = {z: j for j, z in enumerate(answers)}
    per_label = [scores[:, [col[z] for z in words]].logsumexp(-1) for words in label_words.values()]
    return torch.stack(per_label, 1).softmax(1)


def label_probs_numpy(scores, answers, label_words):      # numpy, float64
    s = scores.double().numpy()
    p = np.exp(s - s.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return np.stack([sum(p[:, answers.index(z)] for z in words) for words in label_words.values()], 1)


def label_probs_no_softmax(scores, answers, label_words):
    s = torch.stack([scores[:, [answers.index(z) for z in w]].sum(-1) for w in label_words.values()], -1)
    return s / s.sum(-1, keepdim=True)


def label_probs_fixed_order(scores, answers, label_words):   # assumes answers come label by label
    p = scores.softmax(-1)
    return torch.stack([p[:, 0:2].sum(-1), p[:, 2:3].sum(-1), p[:, 3:5].sum(-1)], -1)


def label_probs_positional(scores, answers, label_words):    # the same assumption, for any sizes
    p, out, start = scores.softmax(-1), [], 0
    for words in label_words.values():
        out.append(p[:, start:start + len(words)].sum(-1))
        start += len(words)
    return torch.stack(out, -1)


def label_probs_the_scores(scores, answers, label_words):
    return scores


def label_probs_max(scores, answers, label_words):
    p = scores.softmax(-1)
    return torch.stack([p[:, [answers.index(z) for z in words]].amax(-1) for words in label_words.values()], -1)


def label_probs_first_answer(scores, answers, label_words):
    p = scores.softmax(-1)
    return torch.stack([p[:, answers.index(words[0])] for words in label_words.values()], -1)


def label_probs_mean(scores, answers, label_words):
    p = scores.softmax(-1)
    return torch.stack([p[:, [answers.index(z) for z in words]].mean(-1) for words in label_words.values()], -1)


def label_probs_softmax_over_rows(scores, answers, label_words):
    p = scores.softmax(0)
    return torch.stack([p[:, [answers.index(z) for z in w]].sum(-1) for w in label_words.values()], -1)


def label_probs_scores_summed(scores, answers, label_words):  # adds up log-scores, then a softmax
    return torch.stack([scores[:, [answers.index(z) for z in w]].sum(-1) for w in label_words.values()], -1).softmax(-1)


def label_probs_sorted_labels(scores, answers, label_words):
    return label_probs_right(scores, answers, dict(sorted(label_words.items())))


def label_probs_in_place(scores, answers, label_words):
    p = scores.exp_()
    p /= p.sum(-1, keepdim=True)
    return torch.stack([p[:, [answers.index(z) for z in w]].sum(-1) for w in label_words.values()], -1)


def label_probs_transposed(scores, answers, label_words):
    return label_probs_right(scores, answers, label_words).T


# ----------------------------------------------------------------------------- k-shot prompt
def kshot_right(demos, query):
    return "".join(f"{x}→{y}\n" for x, y in demos) + f"{query}→"


def kshot_lines(demos, query):                            # lines joined by newlines: the same text
    return "\n".join([f"{x}→{y}" for x, y in demos] + [query + "→"])


def kshot_loop(demos, query):
    text = ""
    for pair in demos:
        text += "{}→{}\n".format(*pair)
    return text + query + "→"


def kshot_no_newline(demos, query):
    return "".join(f"{x}→{y}" for x, y in demos) + f"{query}→"


def kshot_no_arrow(demos, query):
    return "".join(f"{x}→{y}\n" for x, y in demos) + query


def kshot_none(demos, query):
    return None


def kshot_trailing_newline(demos, query):
    return kshot_right(demos, query) + "\n"


def kshot_no_newline_before_query(demos, query):
    return "\n".join(f"{x}→{y}" for x, y in demos) + f"{query}→"


def kshot_blank_lines(demos, query):
    return "".join(f"{x}→{y}\n\n" for x, y in demos) + f"{query}→"


def kshot_query_only(demos, query):
    return f"{query}→"


def kshot_reversed(demos, query):
    return kshot_right(demos[::-1], query)


def kshot_swapped(demos, query):
    return "".join(f"{y}→{x}\n" for x, y in demos) + f"{query}→"


def kshot_spaced_arrow(demos, query):
    return "".join(f"{x} → {y}\n" for x, y in demos) + f"{query} → "


def kshot_ascii_arrow(demos, query):
    return "".join(f"{x}->{y}\n" for x, y in demos) + f"{query}->"


def kshot_leaks_label(demos, query):                      # the loop variable y outlives the loop
    text = ""
    for x, y in demos:
        text += f"{x}→{y}\n"
    return text + f"{query}→{y}"


RIGHT = [
    (checks.check_answer_logprob, logprob_right), (checks.check_answer_logprob, logprob_gather_float64),
    (checks.check_answer_logprob, logprob_token_by_token), (checks.check_answer_logprob, logprob_cross_entropy),
    (checks.check_label_probs, label_probs_right), (checks.check_label_probs, label_probs_logsumexp),
    (checks.check_label_probs, label_probs_numpy),
    (checks.check_kshot_prompt, kshot_right), (checks.check_kshot_prompt, kshot_lines),
    (checks.check_kshot_prompt, kshot_loop),
]

WRONG = [
    (checks.check_answer_logprob, logprob_off_by_one, "drops the last token"),
    (checks.check_answer_logprob, logprob_own_position, "at the token's own position"),
    (checks.check_answer_logprob, logprob_whole_text, "continuation's tokens only"),
    (checks.check_answer_logprob, logprob_a_string, "one number"),
    (checks.check_answer_logprob, logprob_tensor, "must be a Python number"),
    (checks.check_answer_logprob, logprob_no_bos, "put <bos> in front of the context"),
    (checks.check_answer_logprob, logprob_bos_twice, "encode the continuation without <bos>"),
    (checks.check_answer_logprob, logprob_mean, "the exercise asks for the sum"),
    (checks.check_answer_logprob, logprob_probability, "that is the probability"),
    (checks.check_answer_logprob, logprob_raw_logits, "apply F.log_softmax"),
    (checks.check_answer_logprob, logprob_softmax_over_positions, "not over the positions"),
    (checks.check_answer_logprob, logprob_first_token, "first token only"),
    (checks.check_label_probs, label_probs_no_softmax, "take the softmax over the answers first"),
    (checks.check_label_probs, label_probs_fixed_order, "order of the labels"),
    (checks.check_label_probs, label_probs_positional, "answers.index(z)"),
    (checks.check_label_probs, label_probs_the_scores, "must have shape (4, 3)"),
    (checks.check_label_probs, label_probs_max, "most likely answer"),
    (checks.check_label_probs, label_probs_first_answer, "first answer only"),
    (checks.check_label_probs, label_probs_mean, "the mean of each label's answers"),
    (checks.check_label_probs, label_probs_softmax_over_rows, "not over the rows"),
    (checks.check_label_probs, label_probs_scores_summed, "adds up scores"),
    (checks.check_label_probs, label_probs_sorted_labels, "not sorted"),
    (checks.check_label_probs, label_probs_in_place, "in place"),
    (checks.check_label_probs, label_probs_transposed, "must have shape (4, 3)"),
    (checks.check_kshot_prompt, kshot_no_newline, "end every demonstration with a newline"),
    (checks.check_kshot_prompt, kshot_no_arrow, "followed by '→'"),
    (checks.check_kshot_prompt, kshot_none, "must return a str"),
    (checks.check_kshot_prompt, kshot_trailing_newline, "nothing comes after 'query→'"),
    (checks.check_kshot_prompt, kshot_no_newline_before_query, "the last one too"),
    (checks.check_kshot_prompt, kshot_blank_lines, "no blank line"),
    (checks.check_kshot_prompt, kshot_query_only, "demonstrations are missing"),
    (checks.check_kshot_prompt, kshot_reversed, "in the order given"),
    (checks.check_kshot_prompt, kshot_swapped, "not y→x"),
    (checks.check_kshot_prompt, kshot_spaced_arrow, "no spaces around the arrow"),
    (checks.check_kshot_prompt, kshot_ascii_arrow, "not '->'"),
    (checks.check_kshot_prompt, kshot_leaks_label, "the query's label"),
]

CHECKERS = (checks.check_answer_logprob, checks.check_label_probs, checks.check_kshot_prompt)

