import pytest
import torch
import torch.nn.functional as F

from llmtap import checks
from llmtap.model import sample_next


def _line(capsys):
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    return out[0]


def stub(*args, **kwargs):
    raise NotImplementedError("exercise not solved yet")


# ----------------------------------------------------------------------------- causal mask
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


@pytest.mark.parametrize("fn, ok, phrase", [
    (mask_right, True, "correct"), (stub, False, "not solved yet"), (mask_future, False, "not right yet"),
    (mask_all, False, "not right yet"), (mask_float, False, "bool"), (mask_crash, False, "IndexError"),
])
def test_check_causal_mask(capsys, fn, ok, phrase):
    assert checks.check_causal_mask(fn) is ok
    line = _line(capsys)
    assert line.startswith("Exercise: causal mask")
    assert phrase in line


# ----------------------------------------------------------------------------- sampling
def sample_ignores_top_k(logits, temperature, top_k, generator):
    return sample_next(logits, temperature, None, generator)


def sample_ignores_temperature(logits, temperature, top_k, generator):
    return sample_next(logits, 1.0 if temperature else 0.0, top_k, generator)


def sample_always_argmax(logits, temperature, top_k, generator):
    return logits.argmax(-1)


@pytest.mark.parametrize("fn, ok, phrase", [
    (sample_next, True, "correct"), (stub, False, "not solved yet"),
    (sample_ignores_top_k, False, "top_k"), (sample_ignores_temperature, False, "temperature"),
    (sample_always_argmax, False, "evenly"),
])
def test_check_sample_next(capsys, fn, ok, phrase):
    assert checks.check_sample_next(fn) is ok
    line = _line(capsys)
    assert line.startswith("Exercise: temperature and top-k sampling")
    assert phrase in line


# ----------------------------------------------------------------------------- loss
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


@pytest.mark.parametrize("fn, ok, phrase", [
    (loss_right, True, "correct"), (stub, False, "not solved yet"), (loss_no_shift, False, "shift"),
    (loss_wrong_shift, False, "expected"), (loss_sum, False, "expected"), (loss_not_scalar, False, "scalar"),
])
def test_check_next_token_loss(capsys, fn, ok, phrase):
    assert checks.check_next_token_loss(fn) is ok
    line = _line(capsys)
    assert line.startswith("Exercise: next-token loss")
    assert phrase in line


def test_run_check_reports_crashes(capsys):
    def boom():
        raise RuntimeError("kaboom")
    assert checks.run_check("T", boom) is False
    assert _line(capsys) == "T: your code raised RuntimeError: kaboom"
    assert checks.run_check("T", lambda: None) is True
    assert _line(capsys) == "T: correct ✓"


# ----------------------------------------------------------------------------- chapter 01: answer scorer
def logprob_right(lm, context, continuation):
    c, z = lm.encode(context, bos=True), lm.encode(continuation)
    ids = torch.tensor([c + z])
    logp = F.log_softmax(lm.model(ids)[0][0], -1)
    return sum(logp[len(c) + i - 1, t].item() for i, t in enumerate(z))


def logprob_off_by_one(lm, context, continuation):   # reads the prediction at the token itself
    c, z = lm.encode(context, bos=True), lm.encode(continuation)
    logp = F.log_softmax(lm.model(torch.tensor([c + z]))[0][0], -1)
    return sum(logp[len(c) + i, t].item() for i, t in enumerate(z[:-1]))


def logprob_whole_text(lm, context, continuation):   # scores the context too
    ids = lm.encode(context + continuation, bos=True)
    logp = F.log_softmax(lm.model(torch.tensor([ids]))[0][0], -1)
    return sum(logp[i - 1, ids[i]].item() for i in range(1, len(ids)))


@pytest.mark.parametrize("fn, ok, phrase", [
    (logprob_right, True, "correct"), (stub, False, "not solved yet"), (logprob_off_by_one, False, "expected"),
    (logprob_whole_text, False, "continuation's tokens only"), (lambda lm, c, z: "x", False, "one number"),
])
def test_check_answer_logprob(capsys, fn, ok, phrase):
    with torch.no_grad():
        assert checks.check_answer_logprob(fn) is ok
    line = _line(capsys)
    assert line.startswith("Exercise: answer scorer") and phrase in line


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


@pytest.mark.parametrize("fn, ok, phrase", [
    (label_probs_right, True, "correct"), (stub, False, "not solved yet"),
    (label_probs_no_softmax, False, "softmax"), (label_probs_fixed_order, False, "order of the labels"),
    (lambda s, a, w: s, False, "shape"),
])
def test_check_label_probs(capsys, fn, ok, phrase):
    assert checks.check_label_probs(fn) is ok
    line = _line(capsys)
    assert line.startswith("Exercise: verbalizer") and phrase in line


# ----------------------------------------------------------------------------- chapter 01: k-shot prompt
def kshot_right(demos, query):
    return "".join(f"{x}→{y}\n" for x, y in demos) + f"{query}→"


def kshot_no_newline(demos, query):
    return "".join(f"{x}→{y}" for x, y in demos) + f"{query}→"


def kshot_no_arrow(demos, query):
    return "".join(f"{x}→{y}\n" for x, y in demos) + query


@pytest.mark.parametrize("fn, ok, phrase", [
    (kshot_right, True, "correct"), (stub, False, "not solved yet"), (kshot_no_newline, False, "expected"),
    (kshot_no_arrow, False, "expected"), (lambda d, q: None, False, "str"),
])
def test_check_kshot_prompt(capsys, fn, ok, phrase):
    assert checks.check_kshot_prompt(fn) is ok
    line = _line(capsys)
    assert line.startswith("Exercise: k-shot prompt") and phrase in line


# ----------------------------------------------------------------------------- chapter 02
def lora_fwd_right(x, W0, A, B, alpha, r):
    return x @ W0.T + (alpha / r) * (x @ A.T) @ B.T


def lora_fwd_unscaled(x, W0, A, B, alpha, r):
    return x @ W0.T + (x @ A.T) @ B.T


def lora_fwd_no_base(x, W0, A, B, alpha, r):
    return (alpha / r) * (x @ A.T) @ B.T


@pytest.mark.parametrize("fn, ok, phrase", [
    (lora_fwd_right, True, "correct"), (stub, False, "not solved yet"), (lora_fwd_unscaled, False, "alpha / r"),
    (lora_fwd_no_base, False, "exactly W0 x"), (lambda *a: 0, False, "shape"),
])
def test_check_lora_forward(capsys, fn, ok, phrase):
    assert checks.check_lora_forward(fn) is ok
    line = _line(capsys)
    assert line.startswith("Exercise: LoRA forward") and phrase in line


def merge_in_place(W0, A, B, alpha, r):
    return W0.add_((alpha / r) * B @ A)


@pytest.mark.parametrize("fn, ok, phrase", [
    (lambda W0, A, B, alpha, r: W0 + (alpha / r) * B @ A, True, "correct"), (stub, False, "not solved yet"),
    (merge_in_place, False, "in place"), (lambda W0, A, B, alpha, r: W0 + B @ A, False, "alpha / r"),
    (lambda W0, A, B, alpha, r: (W0.T + A.T @ B.T).T, False, "alpha / r"),
    (lambda W0, A, B, alpha, r: A.T @ B.T, False, "shaped like W0"),
])
def test_check_merge_weight(capsys, fn, ok, phrase):
    assert checks.check_merge_weight(fn) is ok
    line = _line(capsys)
    assert line.startswith("Exercise: merge") and phrase in line


def count_right(model, targets, r):
    return sum(r * (m.in_features + m.out_features) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in targets)


def count_square(model, targets, r):
    return sum(2 * r * m.in_features for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in targets)


@pytest.mark.parametrize("fn, ok, phrase", [
    (count_right, True, "correct"), (stub, False, "not solved yet"), (count_square, False, "r (d_in + d_out)"),
])
def test_check_lora_param_count(capsys, fn, ok, phrase):
    assert checks.check_lora_param_count(fn) is ok
    line = _line(capsys)
    assert line.startswith("Exercise: LoRA parameter count") and phrase in line
