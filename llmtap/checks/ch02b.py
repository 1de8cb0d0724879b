"""Checkers of chapter 02b (the LoRA family): one NF4 block, DoRA's weight, PiSSA's start.

Each input is chosen so that the usual mistakes give a result different from the right one (a
block whose largest magnitude is negative, so max differs from absmax; rectangular matrices, so
a norm over the wrong dimension has the wrong length or values; a scale s != 1, so a forgotten
s shows), and the message names the mistake when the answer equals what that mistake gives.
"""
from __future__ import annotations

import torch

from ..qlora import NF4_CODE
from .common import expect_close, expect_shape, likely_cause, run_check, tensor_answer


def _block(seed: int, n: int = 64, negative_peak: bool = True) -> torch.Tensor:
    w = torch.randn(n, generator=torch.Generator().manual_seed(seed)) * 0.02
    if negative_peak:                       # the largest magnitude is a negative weight: max(w) < absmax
        w[seed % n] = -3 * w.abs().max()
    return w


def _nearest(x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    return (x[:, None] - code[None, :]).abs().argmin(dim=1)


def check_nf4_block(nf4_quantize_block) -> bool:
    """nf4_quantize_block(w, code) -> (indices, absmax): absmax = max |w|, each w / absmax rounded
    to the index of the nearest of the 16 code values."""
    def test(answer):
        code = NF4_CODE.clone()
        for seed, negative_peak in ((1, True), (2, False), (3, True)):
            w = _block(seed, negative_peak=negative_peak)
            before = w.clone()
            what = f"nf4_quantize_block(a block of {w.numel()} weights, seed {seed})"
            out = answer(w, code)
            assert isinstance(out, tuple) and len(out) == 2, f"{what}: return a pair (indices, absmax)"
            indices, absmax = tensor_answer(out[0], f"{what}: indices"), tensor_answer(out[1], f"{what}: absmax")
            assert torch.equal(w, before) and torch.equal(code, NF4_CODE), f"{what}: do not change w or code in place"
            want_absmax = w.abs().max()
            cause = likely_cause(absmax.reshape(()), {
                "absmax is the largest |w|, not the largest w: a negative weight can be the biggest (use w.abs().max())":
                    w.max(),
                "absmax is a maximum of |w|, not a mean": w.abs().mean()}, want_absmax)
            assert cause is None, f"{what}: {cause}"
            expect_close(absmax.reshape(()), want_absmax, f"{what}: absmax")
            assert torch.equal(indices, indices.round()) and indices.min() >= 0 and indices.max() <= 15, \
                f"{what}: return the indices into code (integers 0..15), not the dequantised values"
            expect_shape(indices, w.shape, f"{what}: one index per weight")
            want = _nearest(w / want_absmax, code)
            mistakes = {
                "w was not divided by absmax before rounding: the code lives in [-1, 1]": _nearest(w, code),
                "you divided by max(w), not by max |w|": _nearest(w / w.max(), code),
                "that rounds down (searchsorted), not to the nearest code value: compare with every value, or use "
                "the midpoints between neighbours": torch.searchsorted(code, w / want_absmax).clamp(max=15),
            }
            cause = likely_cause(indices, mistakes, want)
            assert cause is None, f"{what}: {cause}"
            expect_close(indices, want, f"{what}: indices of the nearest code values", atol=0, rtol=0)
    return run_check("Exercise: one NF4 block", test, nf4_quantize_block)


# (d_out, d_in, r, scaling): rectangular, so a norm over the wrong dimension does not even have d_out entries
_DORA_CASES = ((6, 10, 2, 0.5), (12, 5, 3, 2.0))


def check_dora_weight(dora_weight) -> bool:
    """dora_weight(W0, A, B, m, scaling) -> m ⊙ (W0 + s B A) / ||W0 + s B A||_c, the norm of each row
    (one per output feature) over the input dimension."""
    def test(answer):
        g = torch.Generator().manual_seed(4)
        for d_out, d_in, r, s in _DORA_CASES:
            W0, A, B = torch.randn(d_out, d_in, generator=g), torch.randn(r, d_in, generator=g), torch.randn(d_out, r, generator=g)
            m = torch.rand(d_out, generator=g) + 0.5
            before = [t.clone() for t in (W0, A, B, m)]
            what = f"dora_weight(W0 {(d_out, d_in)}, r={r}, scaling={s})"
            got = tensor_answer(answer(W0, A, B, m, s), what)
            assert all(torch.equal(t, b) for t, b in zip((W0, A, B, m), before)), f"{what}: do not change the inputs in place"
            expect_shape(got, (d_out, d_in), f"{what}, shaped like W0")
            W0, A, B, m = (t.double() for t in before)
            V = W0 + s * B @ A
            want = m[:, None] * V / V.norm(dim=1, keepdim=True)
            mistakes = {
                "the norm is the column-wise norm of the paper, ||·||_c: here each row of the d_out x d_in matrix "
                "(norm over dim=1, keepdim=True)": m[:, None] * V / V.norm(dim=0, keepdim=True),
                "divide by the norm of the adapted weight W0 + s B A, not of W0 alone":
                    m[:, None] * V / W0.norm(dim=1, keepdim=True),
                "the update is scaled: W0 + scaling · B A": m[:, None] * (W0 + B @ A) / (W0 + B @ A).norm(dim=1, keepdim=True),
                "the direction is not normalised: divide W0 + s B A by its row norms before multiplying by m":
                    m[:, None] * V,
                "m multiplies the direction: m ⊙ V / ||V||_c": V / V.norm(dim=1, keepdim=True),
            }
            cause = likely_cause(got, mistakes, want, atol=1e-5)
            assert cause is None, f"{what}: {cause}"
            expect_close(got, want, f"{what}, m ⊙ V / ||V||_c", atol=1e-5, rtol=1e-5)
    return run_check("Exercise: DoRA's weight", test, dora_weight,
                     shape_hint="B @ A is (d_out, r) @ (r, d_in); m has one entry per row of W0")


# (d_out, d_in, r, scaling)
_PISSA_CASES = ((8, 12, 2, 2.0), (10, 6, 3, 0.5))


def check_pissa_init(pissa_init) -> bool:
    """pissa_init(W0, r, scaling) -> (A, B, W_res) with s B A = U_r diag(S_r) V_rᵀ (the r largest
    singular values), B = U_r (S_r / s)^½, A = (S_r / s)^½ V_rᵀ and W_res = W0 - s B A."""
    def test(answer):
        g = torch.Generator().manual_seed(5)
        for d_out, d_in, r, s in _PISSA_CASES:
            W0 = torch.randn(d_out, d_in, generator=g)
            before = W0.clone()
            what = f"pissa_init(W0 {(d_out, d_in)}, r={r}, scaling={s})"
            out = answer(W0, r, s)
            assert isinstance(out, tuple) and len(out) == 3, f"{what}: return a triple (A, B, W_res)"
            A, B, W_res = (tensor_answer(t, f"{what}: {n}") for t, n in zip(out, ("A", "B", "W_res")))
            assert torch.equal(W0, before), f"{what}: do not change W0 in place; return the residual as a new tensor"
            expect_shape(A, (r, d_in), f"{what}: A")
            expect_shape(B, (d_out, r), f"{what}: B")
            expect_shape(W_res, (d_out, d_in), f"{what}: W_res")
            W = before.double()
            U, S, Vh = torch.linalg.svd(W, full_matrices=False)
            top = U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]
            bottom = U[:, -r:] @ torch.diag(S[-r:]) @ Vh[-r:]
            got = s * B.double() @ A.double()
            cause = likely_cause(got, {
                "those are the smallest singular values: torch.linalg.svd sorts S in descending order, take the first r":
                    bottom,
                "s B A must be the principal part U_r S_r V_rᵀ: divide S_r by the scale s before splitting it":
                    s * top,
                "the principal part is U_r diag(S_r) V_rᵀ: B A without S_r loses the singular values":
                    U[:, :r] @ Vh[:r],
                "the principal part is U_r diag(S_r) V_rᵀ: B A without S_r loses the singular values ":
                    s * U[:, :r] @ Vh[:r]}, top, atol=1e-4)
            assert cause is None, f"{what}: s · B A: {cause}"
            expect_close(got, top, f"{what}: s · B A, the rank-{r} principal part of W0", atol=1e-4, rtol=1e-4)
            cause = likely_cause(W_res, {
                "W_res is W0 minus the principal part (the frozen residual), not W0 itself": W,
                "W_res is what stays frozen, W0 - s B A, not the principal part": top}, W - top, atol=1e-4)
            assert cause is None, f"{what}: {cause}"
            expect_close(W_res, W - top, f"{what}: W_res = W0 - s B A", atol=1e-4, rtol=1e-4)
            # the square root splits S_r evenly: B's columns and A's rows have equal norms
            expect_close(B.double().norm(dim=0), A.double().norm(dim=1),
                         f"{what}: the norms of B's columns against A's rows (split S_r / s as its square root on each side)",
                         atol=1e-4, rtol=1e-4)
    return run_check("Exercise: PiSSA's start", test, pissa_init,
                     shape_hint="torch.linalg.svd(W0, full_matrices=False) gives U (d_out, k), S (k,), Vh (k, d_in)")
