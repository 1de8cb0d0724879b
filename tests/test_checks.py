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
