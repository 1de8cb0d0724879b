"""Mutation tests of chapter 00's checkers: each wrong answer of the bank (the usual mistakes) is
rejected with a message that names what is wrong, and each right answer, written differently from
the solution (another dtype, container or formula), is accepted. The answers are written here,
independently of the library the checkers compare against."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llmtap import checks


# ----------------------------------------------------------------------------- causal mask
def mask_tril(T):
    return torch.tril(torch.ones(T, T, dtype=torch.bool))


def mask_compare(T):                           # another formula: key j <= query i
    i = torch.arange(T)
    return i[None, :] <= i[:, None]


def mask_not_future(T):                        # the complement of the strict upper triangle
    return ~torch.ones(T, T, dtype=torch.bool).triu(1)


def mask_parameter(T):                         # a (frozen) nn.Parameter holding the same mask
    return torch.nn.Parameter(mask_tril(T), requires_grad=False)


def mask_future(T):                            # transposed: each query sees the future
    return torch.triu(torch.ones(T, T, dtype=torch.bool))


def mask_all(T):
    return torch.ones(T, T, dtype=torch.bool)


def mask_float(T):
    return torch.tril(torch.ones(T, T))


def mask_strict(T):                            # the diagonal left out
    return torch.ones(T, T, dtype=torch.bool).tril(-1)


def mask_inverted(T):                          # True where masked (the masked_fill convention)
    return torch.ones(T, T, dtype=torch.bool).triu(1)


def mask_diagonal(T):
    return torch.eye(T, dtype=torch.bool)


def mask_numpy(T):
    return np.tril(np.ones((T, T), dtype=bool))


def mask_crash(T):
    return torch.tril(torch.ones(T, T, dtype=torch.bool))[T]


def mask_one_too_wide(T):
    return torch.ones(T, T + 1, dtype=torch.bool).tril()


# ----------------------------------------------------------------------------- sampling
def sample_right(logits, temperature, top_k, generator):
    if temperature == 0:
        return logits.argmax(-1)
    z = logits / temperature
    if top_k is not None:
        z = z.masked_fill(z < z.topk(top_k, dim=-1).values[:, [-1]], float("-inf"))
    return torch.multinomial(z.softmax(-1), 1, generator=generator)[:, 0]


def sample_scatter(logits, temperature, top_k, generator):    # keeps the k largest by index, int32 out
    if temperature == 0:
        return logits.argmax(-1).int()
    probs = (logits.double() / temperature).softmax(-1)
    if top_k is not None:
        top = probs.topk(top_k, dim=-1)
        probs = torch.zeros_like(probs).scatter(-1, top.indices, top.values)
    return torch.multinomial(probs, 1, generator=generator).view(-1).int()


def sample_gumbel(logits, temperature, top_k, generator):     # the Gumbel-max trick, seeded by the generator
    if temperature == 0:
        return logits.argmax(-1)
    z = logits.double() / temperature
    if top_k is not None:
        kth = z.sort(-1, descending=True).values[:, top_k - 1:top_k]
        z = torch.where(z >= kth, z, torch.tensor(float("-inf"), dtype=z.dtype))
    u = torch.rand(z.shape, generator=generator, dtype=torch.float64).clamp_min(1e-300)
    return (z - torch.log(-torch.log(u))).argmax(-1)


def sample_powers(logits, temperature, top_k, generator):     # softmax(x)^(1/T) renormalised, numpy out
    if temperature == 0:
        return logits.argmax(-1).numpy()
    p = logits.softmax(-1) ** (1 / temperature)
    if top_k is not None:
        p = p * (p >= p.topk(top_k, dim=-1).values[:, -1:])
    return torch.multinomial(p / p.sum(-1, keepdim=True), 1, generator=generator).squeeze(-1).numpy()


def sample_ignores_top_k(logits, temperature, top_k, generator):
    return sample_right(logits, temperature, None, generator)


def sample_ignores_temperature(logits, temperature, top_k, generator):
    return sample_right(logits, 1.0 if temperature else 0.0, top_k, generator)


def sample_multiplies_temperature(logits, temperature, top_k, generator):
    if temperature == 0:
        return logits.argmax(-1)
    return sample_right(logits * temperature ** 2, temperature, top_k, generator)


def sample_always_argmax(logits, temperature, top_k, generator):
    return logits.argmax(-1)


def sample_keeps_k_minus_1(logits, temperature, top_k, generator):    # <= the k-th: with k=2 that is greedy
    if temperature == 0 or top_k is None:
        return sample_right(logits, temperature, top_k, generator)
    z = logits / temperature
    z = z.masked_fill(z <= z.topk(top_k, dim=-1).values[:, -1:], float("-inf"))
    return torch.multinomial(z.softmax(-1), 1, generator=generator)[:, 0]


def sample_keeps_k_plus_1(logits, temperature, top_k, generator):     # the (k+1)-th largest as threshold
    if top_k is None or top_k == logits.shape[-1]:
        return sample_right(logits, temperature, top_k, generator)
    return sample_right(logits, temperature, top_k + 1, generator)


def sample_batch_threshold(logits, temperature, top_k, generator):    # one k-th largest for all rows
    if temperature == 0 or top_k is None:
        return sample_right(logits, temperature, top_k, generator)
    z = logits / temperature
    z = z.masked_fill(z < z.flatten().topk(top_k).values[-1], float("-inf"))
    return torch.multinomial(z.softmax(-1), 1, generator=generator)[:, 0]


def sample_first_row_threshold(logits, temperature, top_k, generator):
    if temperature == 0 or top_k is None:
        return sample_right(logits, temperature, top_k, generator)
    z = logits / temperature
    z = z.masked_fill(z < z.topk(top_k, dim=-1).values[0, -1], float("-inf"))
    return torch.multinomial(z.softmax(-1), 1, generator=generator)[:, 0]


def sample_no_keepdim(logits, temperature, top_k, generator):         # (B,) threshold against (B, V)
    if temperature == 0 or top_k is None:
        return sample_right(logits, temperature, top_k, generator)
    z = logits / temperature
    z = z.masked_fill(z < z.topk(top_k, dim=-1).values[:, -1], float("-inf"))
    return torch.multinomial(z.softmax(-1), 1, generator=generator)[:, 0]


def sample_top_k_evenly(logits, temperature, top_k, generator):       # draws the kept tokens uniformly
    if temperature == 0 or top_k is None:
        return sample_right(logits, temperature, top_k, generator)
    keep = logits >= logits.topk(top_k, dim=-1).values[:, -1:]
    return torch.multinomial(keep.float(), 1, generator=generator)[:, 0]


def sample_not_squeezed(logits, temperature, top_k, generator):
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    return sample_right(logits, temperature, top_k, generator)[:, None]


def sample_ignores_generator(logits, temperature, top_k, generator):
    return sample_right(logits, temperature, top_k, None)


def sample_divides_by_zero(logits, temperature, top_k, generator):    # no greedy branch for temperature 0
    z = logits / temperature
    return torch.multinomial(z.softmax(-1), 1, generator=generator)[:, 0]


def sample_float_ids(logits, temperature, top_k, generator):
    return sample_right(logits, temperature, top_k, generator).float()


def sample_in_place(logits, temperature, top_k, generator):
    if temperature == 0:
        return logits.argmax(-1)
    logits /= temperature
    return sample_right(logits, 1.0, top_k, generator)


# ----------------------------------------------------------------------------- next-token loss
def loss_right(logits, idx):
    V = logits.size(-1)
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), idx[:, 1:].reshape(-1))


def loss_transposed(logits, idx):                  # (B, V, T-1) against (B, T-1), with the loss module
    return torch.nn.CrossEntropyLoss()(logits[:, :-1].transpose(1, 2), idx[:, 1:])


def loss_by_hand_float64(logits, idx):             # log_softmax, pick the target, mean; in float64
    logp = logits[:, :-1].double().log_softmax(-1)
    return -logp.gather(-1, idx[:, 1:].unsqueeze(-1)).mean()


def loss_nll(logits, idx):
    B, T, V = logits.shape
    return F.nll_loss(F.log_softmax(logits, -1)[:, :T - 1].reshape(B * (T - 1), V), idx[:, 1:].flatten())


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


def loss_flat_shift(logits, idx):                  # shifts the flattened batch: rows run into each other
    V = logits.size(-1)
    return F.cross_entropy(logits.reshape(-1, V)[:-1], idx.reshape(-1)[1:])


def loss_over_bt(logits, idx):
    B, T, _ = logits.shape
    return loss_sum(logits, idx) / (B * T)


def loss_mean_over_rows(logits, idx):
    return loss_sum(logits, idx) / logits.shape[0]


def loss_softmax_first(logits, idx):
    return loss_right(logits.softmax(-1), idx)


def loss_raw_logits(logits, idx):                  # no log_softmax
    return -logits[:, :-1].gather(-1, idx[:, 1:, None]).mean()


def loss_item(logits, idx):
    return loss_right(logits, idx).item()


def loss_detached(logits, idx):
    return torch.tensor(loss_right(logits, idx).item())


def loss_no_reshape(logits, idx):                  # cross_entropy reads dim 1 (T-1) as the classes
    return F.cross_entropy(logits[:, :-1], idx[:, 1:])


RIGHT = [
    (checks.check_causal_mask, mask_tril), (checks.check_causal_mask, mask_compare),
    (checks.check_causal_mask, mask_not_future), (checks.check_causal_mask, mask_parameter),
    (checks.check_sample_next, sample_right), (checks.check_sample_next, sample_scatter),
    (checks.check_sample_next, sample_gumbel), (checks.check_sample_next, sample_powers),
    (checks.check_next_token_loss, loss_right), (checks.check_next_token_loss, loss_transposed),
    (checks.check_next_token_loss, loss_by_hand_float64), (checks.check_next_token_loss, loss_nll),
]

WRONG = [
    (checks.check_causal_mask, mask_future, "transposed"),
    (checks.check_causal_mask, mask_all, "the future is not hidden"),
    (checks.check_causal_mask, mask_float, "must be a bool tensor"),
    (checks.check_causal_mask, mask_strict, "the diagonal must be True"),
    (checks.check_causal_mask, mask_inverted, "inverted"),
    (checks.check_causal_mask, mask_diagonal, "not only for j = i"),
    (checks.check_causal_mask, mask_numpy, "must be a torch.Tensor"),
    (checks.check_causal_mask, mask_crash, "your code raised IndexError"),
    (checks.check_causal_mask, mask_one_too_wide, "must have shape (5, 5)"),
    (checks.check_sample_next, sample_ignores_top_k, "top_k is ignored"),
    (checks.check_sample_next, sample_ignores_temperature, "the temperature is ignored"),
    (checks.check_sample_next, sample_multiplies_temperature, "multiplies the logits by the temperature"),
    (checks.check_sample_next, sample_always_argmax, "evenly"),
    (checks.check_sample_next, sample_keeps_k_minus_1, "keeps only k-1"),
    (checks.check_sample_next, sample_keeps_k_plus_1, "keeps k+1"),
    (checks.check_sample_next, sample_batch_threshold, "one threshold used for the whole batch"),
    (checks.check_sample_next, sample_first_row_threshold, "the first row's threshold"),
    (checks.check_sample_next, sample_no_keepdim, "shape (B, 1)"),
    (checks.check_sample_next, sample_top_k_evenly, "the kept tokens are drawn evenly"),
    (checks.check_sample_next, sample_not_squeezed, "squeeze(1)"),
    (checks.check_sample_next, sample_ignores_generator, "generator=generator"),
    (checks.check_sample_next, sample_divides_by_zero, "temperature 0 means greedy"),
    (checks.check_sample_next, sample_float_ids, "token ids are integers"),
    (checks.check_sample_next, sample_in_place, "in place"),
    (checks.check_next_token_loss, loss_no_shift, "shift the targets by one"),
    (checks.check_next_token_loss, loss_wrong_shift, "shifted the wrong way"),
    (checks.check_next_token_loss, loss_sum, "that is the sum"),
    (checks.check_next_token_loss, loss_not_scalar, "reduction='none'"),
    (checks.check_next_token_loss, loss_flat_shift, "shift inside each row"),
    (checks.check_next_token_loss, loss_over_bt, "divides by B T"),
    (checks.check_next_token_loss, loss_mean_over_rows, "sums over the positions"),
    (checks.check_next_token_loss, loss_softmax_first, "do not softmax them first"),
    (checks.check_next_token_loss, loss_raw_logits, "apply log_softmax"),
    (checks.check_next_token_loss, loss_item, "scalar tensor"),
    (checks.check_next_token_loss, loss_detached, "connected to the logits"),
    (checks.check_next_token_loss, loss_no_reshape, "reshape(-1, V)"),
]

CHECKERS = (checks.check_causal_mask, checks.check_sample_next, checks.check_next_token_loss)

