"""Mutation bank of chapter 02b's checkers (one NF4 block, DoRA's weight, PiSSA's start): answers
written differently from the solution that must pass, and the usual mistakes, each of which must
be rejected with a phrase naming it (run by tests/test_checks.py)."""
import numpy as np
import torch

from llmtap import checks


# ----------------------------------------------------------------------------- one NF4 block
def nf4_right(w, code):
    absmax = w.abs().max()
    return (w[:, None] / absmax - code[None, :]).abs().argmin(dim=1), absmax


def nf4_midpoints(w, code):                    # the library's way: midpoints as decision boundaries
    absmax = w.abs().amax()
    return torch.bucketize(w / absmax, (code[1:] + code[:-1]) / 2), absmax


def nf4_loop(w, code):
    absmax = max(abs(float(v)) for v in w)
    idx = [min(range(len(code)), key=lambda j: abs(float(v) / absmax - float(code[j]))) for v in w]
    return torch.tensor(idx), torch.tensor(absmax)


def nf4_max(w, code):
    absmax = w.max()
    return (w[:, None] / absmax - code[None, :]).abs().argmin(dim=1), absmax


def nf4_unscaled(w, code):
    return (w[:, None] - code[None, :]).abs().argmin(dim=1), w.abs().max()


def nf4_floor(w, code):
    absmax = w.abs().max()
    return torch.searchsorted(code, w / absmax).clamp(max=15), absmax


def nf4_values(w, code):
    idx, absmax = nf4_right(w, code)
    return code[idx] * absmax, absmax


def nf4_mean(w, code):
    absmax = w.abs().mean()
    return (w[:, None] / absmax - code[None, :]).abs().argmin(dim=1).clamp(0, 15), absmax


def nf4_in_place(w, code):
    absmax = w.abs().max()
    w /= absmax
    return (w[:, None] - code[None, :]).abs().argmin(dim=1), absmax


def nf4_single(w, code):
    return nf4_right(w, code)[0]


# ----------------------------------------------------------------------------- DoRA's weight
def dora_right(W0, A, B, m, s):
    V = W0 + s * B @ A
    return m[:, None] * V / V.norm(dim=1, keepdim=True)


def dora_numpy(W0, A, B, m, s):
    V = W0.numpy() + s * B.numpy() @ A.numpy()
    return torch.from_numpy(m.numpy()[:, None] * V / np.sqrt((V ** 2).sum(axis=1, keepdims=True)))


def dora_diag(W0, A, B, m, s):
    V = W0 + s * (B @ A)
    return torch.diag(m / torch.linalg.vector_norm(V, dim=1)) @ V


def dora_columns(W0, A, B, m, s):
    V = W0 + s * B @ A
    return m[:, None] * V / V.norm(dim=0, keepdim=True)


def dora_w0_norm(W0, A, B, m, s):
    return m[:, None] * (W0 + s * B @ A) / W0.norm(dim=1, keepdim=True)


def dora_unscaled(W0, A, B, m, s):
    V = W0 + B @ A
    return m[:, None] * V / V.norm(dim=1, keepdim=True)


def dora_unnormalised(W0, A, B, m, s):
    return m[:, None] * (W0 + s * B @ A)


def dora_no_m(W0, A, B, m, s):
    V = W0 + s * B @ A
    return V / V.norm(dim=1, keepdim=True)


def dora_in_place(W0, A, B, m, s):
    W0 += s * B @ A
    return m[:, None] * W0 / W0.norm(dim=1, keepdim=True)


# ----------------------------------------------------------------------------- PiSSA's start
def pissa_right(W0, r, s):
    U, S, Vh = torch.linalg.svd(W0, full_matrices=False)
    root = (S[:r] / s).sqrt()
    B, A = U[:, :r] * root, root[:, None] * Vh[:r]
    return A, B, W0 - s * B @ A


def pissa_full(W0, r, s):                      # full_matrices=True, then cut: the same factors
    U, S, Vh = torch.linalg.svd(W0.double())
    root = torch.diag((S[:r] / s) ** 0.5)
    B, A = U[:, :r] @ root, root @ Vh[:r, :]
    return A.float(), B.float(), (W0.double() - s * B @ A).float()


def pissa_numpy(W0, r, s):
    U, S, Vh = np.linalg.svd(W0.numpy(), full_matrices=False)
    root = np.sqrt(S[:r] / s)
    B, A = U[:, :r] * root, root[:, None] * Vh[:r]
    return torch.from_numpy(A), torch.from_numpy(B), torch.from_numpy(W0.numpy() - s * B @ A)


def pissa_smallest(W0, r, s):
    U, S, Vh = torch.linalg.svd(W0, full_matrices=False)
    root = (S[-r:] / s).sqrt()
    B, A = U[:, -r:] * root, root[:, None] * Vh[-r:]
    return A, B, W0 - s * B @ A


def pissa_no_scale(W0, r, s):
    U, S, Vh = torch.linalg.svd(W0, full_matrices=False)
    root = S[:r].sqrt()
    B, A = U[:, :r] * root, root[:, None] * Vh[:r]
    return A, B, W0 - s * B @ A


def pissa_no_s(W0, r, s):
    U, S, Vh = torch.linalg.svd(W0, full_matrices=False)
    B, A = U[:, :r], Vh[:r] / s
    return A, B, W0 - s * B @ A


def pissa_no_residual(W0, r, s):
    A, B, _ = pissa_right(W0, r, s)
    return A, B, W0.clone()


def pissa_residual_is_top(W0, r, s):
    A, B, _ = pissa_right(W0, r, s)
    return A, B, s * B @ A


def pissa_lopsided(W0, r, s):                  # all of S_r / s in B: the same product, unbalanced
    U, S, Vh = torch.linalg.svd(W0, full_matrices=False)
    B, A = U[:, :r] * (S[:r] / s), Vh[:r]
    return A, B, W0 - s * B @ A


def pissa_in_place(W0, r, s):
    A, B, _ = pissa_right(W0, r, s)
    W0 -= s * B @ A
    return A, B, W0


def pissa_pair(W0, r, s):
    return pissa_right(W0, r, s)[:2]


RIGHT = [
    (checks.check_nf4_block, nf4_right), (checks.check_nf4_block, nf4_midpoints), (checks.check_nf4_block, nf4_loop),
    (checks.check_dora_weight, dora_right), (checks.check_dora_weight, dora_numpy), (checks.check_dora_weight, dora_diag),
    (checks.check_pissa_init, pissa_right), (checks.check_pissa_init, pissa_full), (checks.check_pissa_init, pissa_numpy),
]

WRONG = [
    (checks.check_nf4_block, nf4_max, "a negative weight can be the biggest"),
    (checks.check_nf4_block, nf4_unscaled, "not divided by absmax"),
    (checks.check_nf4_block, nf4_floor, "rounds down"),
    (checks.check_nf4_block, nf4_values, "not the dequantised values"),
    (checks.check_nf4_block, nf4_mean, "not a mean"),
    (checks.check_nf4_block, nf4_in_place, "in place"),
    (checks.check_nf4_block, nf4_single, "return a pair"),
    (checks.check_dora_weight, dora_columns, "norm over dim=1"),
    (checks.check_dora_weight, dora_w0_norm, "not of W0 alone"),
    (checks.check_dora_weight, dora_unscaled, "the update is scaled"),
    (checks.check_dora_weight, dora_unnormalised, "the direction is not normalised"),
    (checks.check_dora_weight, dora_no_m, "m multiplies the direction"),
    (checks.check_dora_weight, dora_in_place, "in place"),
    (checks.check_pissa_init, pissa_smallest, "smallest singular values"),
    (checks.check_pissa_init, pissa_no_scale, "divide S_r by the scale s"),
    (checks.check_pissa_init, pissa_no_s, "loses the singular values"),
    (checks.check_pissa_init, pissa_no_residual, "not W0 itself"),
    (checks.check_pissa_init, pissa_residual_is_top, "not the principal part"),
    (checks.check_pissa_init, pissa_lopsided, "square root on each side"),
    (checks.check_pissa_init, pissa_in_place, "in place"),
    (checks.check_pissa_init, pissa_pair, "return a triple"),
]

CHECKERS = (checks.check_nf4_block, checks.check_dora_weight, checks.check_pissa_init)
