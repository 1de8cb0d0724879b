"""Checkers of chapter 02 (LoRA): the LoRA forward pass, the LoRA layer, merging, the parameter count.

Each one tries several inputs chosen so that the usual mistakes give a different result from the
right answer (alpha / r = 7/3, 5/2, 3/2, 1/4: alpha // r, r / alpha and 1 all differ from it; a square
layer, where a missing transpose still runs), and names the mistake when the answer equals what
that mistake gives.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..model import GPT, GPTConfig
from .common import (expect_close, expect_shape, int_answer, likely_cause, number_answer, run_check, student_code,
                     tensor_answer)


def _random(g: torch.Generator, *shape) -> torch.Tensor:
    return torch.randn(*shape, generator=g)


def _unchanged(before: dict, after: dict, what: str) -> None:
    """The student's function must leave its inputs as they were."""
    for name, t in after.items():
        assert torch.equal(t, before[name]), f"{what}: do not change {name} in place: the caller still needs the original"


def _scale_mistakes(start, update, alpha, r) -> dict:
    """The usual ways to get the scale alpha / r wrong, as {cause: result} for ``start + scale * update``
    (start is the base output x W0ᵀ in the forward pass, W0 in the merge)."""
    return {
        f"you scaled by alpha // r, which rounds down ({alpha} // {r} = {alpha // r}): use alpha / r":
            start + (alpha // r) * update,
        "you scaled by r / alpha: the scale is alpha / r": start + (r / alpha) * update,
        "the update is not scaled: multiply it by alpha / r": start + update,
        "you scaled by alpha alone: divide it by r, alpha / r": start + alpha * update,
    }


# (shape of x, d_out, r, alpha): on the first, alpha // r = 2 is neither alpha / r nor 1, and the layer is
# square, so that a missing transpose gives a wrong value (named below) instead of a shape error; alpha
# comes as an int and as a float
_FORWARD_CASES = (((2, 4, 6), 6, 3, 7), ((5, 12), 10, 4, 6.0), ((3, 2, 7), 9, 4, 1), ((2, 3, 8), 5, 8, 16))


def check_lora_forward(lora_forward) -> bool:
    """lora_forward(x, W0, A, B, alpha, r) -> W0 x + (alpha / r) B A x, for x of shape (..., d_in)."""
    def test(answer):
        g = torch.Generator().manual_seed(0)
        for x_shape, d_out, r, alpha in _FORWARD_CASES:
            d_in = x_shape[-1]
            x, W0 = _random(g, *x_shape), _random(g, d_out, d_in)
            A, B = _random(g, r, d_in), _random(g, d_out, r)
            inputs = {"x": x, "W0": W0, "A": A, "B": B}
            before = {k: t.clone() for k, t in inputs.items()}
            what = f"lora_forward(x of shape {tuple(x_shape)}, W0 {tuple(W0.shape)}, r={r}, alpha={alpha})"
            got = tensor_answer(answer(x, W0, A, B, alpha, r), what)
            _unchanged(before, inputs, what)
            expect_shape(got, (*x_shape[:-1], d_out), f"{what}, (..., d_out)")

            x, W0, A, B = (t.double() for t in (x, W0, A, B))
            base, update, s = x @ W0.T, (x @ A.T) @ B.T, alpha / r
            want = base + s * update
            mistakes = {
                **_scale_mistakes(base, update, alpha, r),
                "alpha / r scales only the update (x Aᵀ) Bᵀ, not x W0ᵀ": s * (base + update),
                "the base output is missing: with B = 0 the result must be exactly W0 x, so add x W0ᵀ": s * update,
            }
            if d_in == d_out:       # these run (and are wrong) only on a square layer
                mistakes.update({
                    "W0 is (d_out, d_in): the base output is x W0ᵀ (x @ W0.T), not x W0": x @ W0 + s * update,
                    "the update is (x Aᵀ) Bᵀ = x (B A)ᵀ: you used B A without the transpose": base + s * x @ (B @ A),
                })
            cause = likely_cause(got, mistakes, want, atol=1e-4)
            if cause:
                raise AssertionError(f"{what}: {cause}")
            expect_close(got, want, f"{what}, h = x W0ᵀ + (alpha / r) (x Aᵀ) Bᵀ", atol=1e-4, rtol=1e-4)
    return run_check("Exercise: LoRA forward", test, lora_forward,
                     shape_hint="x @ W0.T needs W0 of shape (d_out, d_in); (x @ A.T) @ B.T needs A of shape "
                                "(r, d_in) and B of shape (d_out, r)")


# (d_out, d_in, r, alpha): a rectangular W0 first (a transposed result has the wrong shape), then a
# square one, where a transposed update has the right shape and must be caught by its values
_MERGE_CASES = ((7, 9, 2, 5), (6, 6, 3, 5), (4, 10, 4, 1.0), (5, 3, 1, 16))


def check_merge_weight(merge_weight) -> bool:
    """merge_weight(W0, A, B, alpha, r) -> W0 + (alpha / r) B A, without changing W0."""
    def test(answer):
        g = torch.Generator().manual_seed(1)
        for d_out, d_in, r, alpha in _MERGE_CASES:
            W0, A, B = _random(g, d_out, d_in), _random(g, r, d_in), _random(g, d_out, r)
            inputs = {"W0": W0, "A": A, "B": B}
            before = {k: t.clone() for k, t in inputs.items()}
            what = f"merge_weight(W0 of shape {(d_out, d_in)}, r={r}, alpha={alpha})"
            got = tensor_answer(answer(W0, A, B, alpha, r), what)
            # merging in place: the caller loses the original W0 (unmerging needs it)
            assert torch.equal(W0, before["W0"]), \
                f"{what}: do not change W0 in place: unmerging needs the original; return W0 + ..., a new tensor"
            _unchanged(before, inputs, what)
            if d_in != d_out and tuple(got.shape) == (d_in, d_out):
                raise AssertionError(f"{what}: the result must be shaped like W0 {(d_out, d_in)}, got {(d_in, d_out)}: "
                                     f"the update is B A ((d_out, r) @ (r, d_in)), not Aᵀ Bᵀ")
            expect_shape(got, (d_out, d_in), f"{what}, shaped like W0")

            W0, A, B = (t.double() for t in before.values())
            s, BA = alpha / r, B @ A
            want = W0 + s * BA
            mistakes = {
                **_scale_mistakes(W0, BA, alpha, r),
                "alpha / r scales only the update B A, not W0": s * (W0 + BA),
                "W0 is missing: the merged weight is W0 + (alpha / r) B A, not the update alone": s * BA,
                "that is W0 unchanged: add the update (alpha / r) B A": W0,
            }
            if d_in == d_out:
                mistakes["the update is B A, not its transpose Aᵀ Bᵀ"] = W0 + s * BA.T
            cause = likely_cause(got, mistakes, want, atol=1e-4)
            if cause:
                raise AssertionError(f"{what}: {cause}")
            expect_close(got, want, f"{what}, W0 + (alpha / r) B A", atol=1e-4, rtol=1e-4)
    return run_check("Exercise: merge", test, merge_weight,
                     shape_hint="B @ A needs A of shape (r, d_in) and B of shape (d_out, r); it is shaped like W0")


# ----------------------------------------------------------------------------- parameter count
def _toy_model() -> nn.Module:
    """Not the course GPT: a name used at two depths with other shapes, a layer without bias, a
    name ("q_out") that contains another target ("q") without ending with it, a LayerNorm."""
    block = lambda d_hidden: nn.ModuleDict({"q": nn.Linear(6, d_hidden), "q_out": nn.Linear(d_hidden, 6, bias=False)})
    return nn.ModuleDict({"blocks": nn.ModuleList([block(10), block(4)]), "head": nn.Linear(6, 3), "norm": nn.LayerNorm(6)})


def _layout(model: nn.Module) -> list:
    """What a count must leave alone: the modules' names and types, and what is trainable."""
    return [(n, type(m).__name__) for n, m in model.named_modules()] + \
           [(n, p.requires_grad) for n, p in model.named_parameters()]


def check_lora_param_count(lora_param_count) -> bool:
    """lora_param_count(model, targets, r) -> trainable parameters LoRA adds to the named linear layers."""
    def test(answer):
        torch.manual_seed(0)
        gpt = GPT(GPTConfig(vocab_size=40, block_size=8, n_layer=3, n_head=2, n_embd=24))
        toy = _toy_model()
        for model, name, targets, r in ((gpt, "the GPT", ["c_attn"], 4), (gpt, "the GPT", ["c_attn", "c_proj"], 2),
                                        (gpt, "the GPT", ["c_fc"], 8), (toy, "the toy model", ["q"], 2),
                                        (toy, "the toy model", ["q_out", "head"], 3)):
            layout = _layout(model)
            what = f"lora_param_count({name}, {targets}, r={r})"
            got = int_answer(answer(model, targets, r), what)
            assert _layout(model) == layout, \
                f"{what}: do not change the model (wrap or freeze its layers): count from the layers' shapes"

            linear = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
            hit = [m for n, m in linear if n.split(".")[-1] in targets]
            total = lambda layers, size: sum(size(m) for m in layers)
            own = lambda m: sum(p.numel() for p in m.parameters())
            a_and_b = lambda m: r * (m.in_features + m.out_features)
            want = total(hit, a_and_b)
            first_per_target = [next(m for n, m in linear if n.split(".")[-1] == t) for t in targets]
            mistakes = {
                "that counts A only (r × d_in): B (d_out × r) is trained too, r (d_in + d_out) per layer":
                    total(hit, lambda m: r * m.in_features),
                "that counts B only (d_out × r): A (r × d_in) is trained too, r (d_in + d_out) per layer":
                    total(hit, lambda m: r * m.out_features),
                "that takes B as d_in × r: B is d_out × r, so each layer adds r (d_in + d_out)":
                    total(hit, lambda m: 2 * r * m.in_features),
                "that takes A as r × d_out: A is r × d_in, so each layer adds r (d_in + d_out)":
                    total(hit, lambda m: 2 * r * m.out_features),
                "that counts d_out × d_in per layer (the size of W0, or of B A): LoRA trains A and B only, "
                "r (d_in + d_out) per layer":
                    total(hit, lambda m: m.in_features * m.out_features),
                "that adds the wrapped layers' own weights: they stay frozen, count only A and B":
                    want + total(hit, own),
                "that counts the wrapped layers' own weights: count only A (r × d_in) and B (d_out × r)": total(hit, own),
                "that adds the whole model's parameters: count only what LoRA adds, A and B":
                    want + sum(p.numel() for p in model.parameters()),
                "that counts every nn.Linear: only those whose name ends with one of the targets":
                    total((m for _, m in linear), a_and_b),
                "that matches a target anywhere in the name: compare the last part, name.split('.')[-1]":
                    total((m for n, m in linear if any(t in n for t in targets)), a_and_b),
                "that counts the first target only: add every target's layers":
                    total((m for n, m in linear if n.split(".")[-1] == targets[0]), a_and_b),
                "that counts one layer per target name: every layer whose name ends with it adds its own":
                    total(first_per_target, a_and_b),
            }
            cause = likely_cause(got, mistakes, want)
            if cause:
                raise AssertionError(f"{what} = {got}: {cause}")
            assert got == want, f"{what}: want {want}, got {got}: each wrapped layer adds r (d_in + d_out)"
    return run_check("Exercise: LoRA parameter count", test, lora_param_count)


def check_lora_layer(lora_layer) -> bool:
    """lora_layer(base: nn.Linear, r, alpha) -> an nn.Module with .base (frozen), .A (r, d_in) ~ N(0, 1/r²),
    .B (d_out, r) = 0, .scaling = alpha / r, whose forward is base(x) + scaling (x Aᵀ) Bᵀ."""
    def test(answer):
        for d_in, d_out, r, alpha, bias in ((6, 6, 3, 7, True), (12, 10, 4, 6.0, False), (7, 9, 2, 5, True)):
            what = f"your layer on nn.Linear({d_in}, {d_out}, bias={bias}) with r={r}, alpha={alpha}"
            g = torch.Generator().manual_seed(d_in)
            base = nn.Linear(d_in, d_out, bias=bias)
            with torch.no_grad():
                for p in base.parameters():
                    p.copy_(_random(g, *p.shape))
            layer = answer(base, r, alpha)
            assert isinstance(layer, nn.Module), f"{what}: the class must be an nn.Module, got {type(layer).__name__}"
            for name, shape in (("A", (r, d_in)), ("B", (d_out, r))):
                p = getattr(layer, name, None)
                assert isinstance(p, nn.Parameter), f"{what}: self.{name} must be an nn.Parameter (so it is trained)"
                expect_shape(p, shape, f"{what}: self.{name}")
            assert getattr(layer, "base", None) is base, f"{what}: keep the wrapped layer as self.base"
            trainable = {id(p) for p in layer.parameters() if p.requires_grad}
            assert not any(p.requires_grad for p in base.parameters()), \
                f"{what}: the base layer must be frozen (base.requires_grad_(False)): LoRA trains A and B only"
            assert trainable == {id(layer.A), id(layer.B)}, f"{what}: A and B must be the only trainable parameters"
            scaling = getattr(layer, "scaling", None)
            cause = likely_cause(number_answer(scaling, f"{what}: self.scaling"),
                                 {f"you scaled by alpha // r = {alpha // r:g}: use alpha / r": alpha // r,
                                  "you scaled by r / alpha: use alpha / r": r / alpha}, alpha / r)
            assert cause is None, f"{what}: {cause}"
            assert abs(scaling - alpha / r) < 1e-9, f"{what}: self.scaling must be alpha / r = {alpha / r:.4g}, got {scaling}"
            assert torch.count_nonzero(layer.B) == 0, f"{what}: B starts at zero, so that the wrapped model equals the base"
            assert torch.count_nonzero(layer.A) == layer.A.numel(), \
                f"{what}: A starts random (Gaussian): with A = 0 the gradient of B is zero and nothing trains"
            x = _random(g, 2, 5, d_in)
            forward = student_code(layer, "A is (r, d_in) and B is (d_out, r): (x @ A.T) @ B.T maps d_in to r to d_out")
            with torch.no_grad():
                assert torch.equal(forward(x), base(x)), f"{what}: with B = 0 the layer must return exactly base(x)"
                layer.B.copy_(_random(g, d_out, r))            # as after some training
                got = tensor_answer(forward(x), f"{what}: the output")
            want = base(x) + (alpha / r) * (x @ layer.A.T) @ layer.B.T
            mistakes = {"the update is scaled by alpha / r": base(x) + (x @ layer.A.T) @ layer.B.T,
                        "the output is base(x) + scaling (x Aᵀ) Bᵀ: keep the base layer's output": (alpha / r) * (x @ layer.A.T) @ layer.B.T}
            cause = likely_cause(got, mistakes, want.detach(), atol=1e-5)
            assert cause is None, f"{what}: {cause}"
            expect_close(got, want.detach(), f"{what}: base(x) + scaling (x Aᵀ) Bᵀ", atol=1e-5, rtol=1e-4)
        torch.manual_seed(0)            # A's spread, on a layer big enough to measure it: N(0, 1/r^2)
        A = answer(nn.Linear(512, 8), 4, 8).A.detach()
        assert 0.8 < A.std().item() * 4 < 1.2 and abs(A.mean().item()) < 0.05, \
            f"A ~ N(0, 1/r²): with r = 4 its standard deviation is 0.25, got {A.std().item():.3f} (divide randn by r)"
    return run_check("Exercise: the LoRA layer", test, lora_layer,
                     shape_hint="A is (r, d_in) and B is (d_out, r): (x @ A.T) @ B.T maps d_in to r to d_out")
