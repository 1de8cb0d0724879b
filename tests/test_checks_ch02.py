"""Mutation tests of chapter 02's checkers: each wrong answer of the bank (the usual mistakes) is
rejected with a message that names what is wrong, and each right answer, written differently from
the solution (another dtype, container or formula), is accepted. The answers are written here,
independently of the library the checkers compare against."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from llmtap import checks


# ----------------------------------------------------------------------------- LoRA forward
def lora_fwd_right(x, W0, A, B, alpha, r):
    return x @ W0.T + (alpha / r) * ((x @ A.T) @ B.T)


def lora_fwd_linear_float64(x, W0, A, B, alpha, r):     # F.linear, in float64
    x, W0, A, B = x.double(), W0.double(), A.double(), B.double()
    return F.linear(x, W0) + F.linear(F.linear(x, A), B) * alpha / r


def lora_fwd_einsum(x, W0, A, B, alpha, r):             # einsum, the scale folded into A
    return torch.einsum("...i,oi->...o", x, W0) + torch.einsum("...i,ri,or->...o", x, A * (alpha / r), B)


def lora_fwd_merged_first(x, W0, A, B, alpha, r):       # forms B A first: slower, the same values
    return x @ (W0 + alpha / r * B @ A).T


def lora_fwd_floor_division(x, W0, A, B, alpha, r):
    return x @ W0.T + (alpha // r) * (x @ A.T) @ B.T


def lora_fwd_r_over_alpha(x, W0, A, B, alpha, r):
    return x @ W0.T + (r / alpha) * (x @ A.T) @ B.T


def lora_fwd_unscaled(x, W0, A, B, alpha, r):
    return x @ W0.T + (x @ A.T) @ B.T


def lora_fwd_alpha_only(x, W0, A, B, alpha, r):
    return x @ W0.T + alpha * (x @ A.T) @ B.T


def lora_fwd_scales_everything(x, W0, A, B, alpha, r):
    return (alpha / r) * (x @ W0.T + (x @ A.T) @ B.T)


def lora_fwd_no_base(x, W0, A, B, alpha, r):
    return (alpha / r) * (x @ A.T) @ B.T


def lora_fwd_W0_not_transposed(x, W0, A, B, alpha, r):
    return x @ W0 + (alpha / r) * (x @ A.T) @ B.T


def lora_fwd_BA_not_transposed(x, W0, A, B, alpha, r):
    return x @ W0.T + (alpha / r) * x @ (B @ A)


def lora_fwd_A_B_swapped(x, W0, A, B, alpha, r):         # a shape error
    return x @ W0.T + (alpha / r) * (x @ B.T) @ A.T


def lora_fwd_in_place(x, W0, A, B, alpha, r):           # right values, but B is scaled in place
    B *= alpha / r
    return x @ W0.T + (x @ A.T) @ B.T


def lora_fwd_zero(x, W0, A, B, alpha, r):
    return 0


# ----------------------------------------------------------------------------- merge
def merge_right(W0, A, B, alpha, r):
    return W0 + (alpha / r) * (B @ A)


def merge_addmm(W0, A, B, alpha, r):                    # another formula
    return torch.addmm(W0, B, A, alpha=alpha / r)


def merge_on_a_copy_float64(W0, A, B, alpha, r):        # in place, but on a float64 copy
    W = W0.double().clone()
    W += (alpha / r) * B.double() @ A.double()
    return W


def merge_parameter(W0, A, B, alpha, r):                # an nn.Parameter holding the right values
    return torch.nn.Parameter(W0 + torch.einsum("or,ri->oi", B, A) * alpha / r)


def merge_numpy(W0, A, B, alpha, r):
    return W0.numpy() + alpha / r * (B.numpy() @ A.numpy())


def merge_in_place(W0, A, B, alpha, r):
    return W0.add_((alpha / r) * B @ A)


def merge_floor_division(W0, A, B, alpha, r):
    return W0 + (alpha // r) * B @ A


def merge_r_over_alpha(W0, A, B, alpha, r):
    return W0 + (r / alpha) * B @ A


def merge_unscaled(W0, A, B, alpha, r):
    return W0 + B @ A


def merge_unscaled_transposed(W0, A, B, alpha, r):
    return (W0.T + A.T @ B.T).T


def merge_update_transposed(W0, A, B, alpha, r):
    return A.T @ B.T


def merge_transposed_update_on_square(W0, A, B, alpha, r):   # right shape only when W0 is square
    return W0 + (alpha / r) * (B @ A).T if W0.shape[0] == W0.shape[1] else W0 + (alpha / r) * B @ A


def merge_update_only(W0, A, B, alpha, r):
    return (alpha / r) * B @ A


def merge_W0_unchanged(W0, A, B, alpha, r):
    return W0.clone()


def merge_A_B_swapped(W0, A, B, alpha, r):
    return W0 + (alpha / r) * A @ B


# ----------------------------------------------------------------------------- parameter count
def _linear(model, targets):
    return [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in targets]


def count_right(model, targets, r):
    return sum(r * (m.in_features + m.out_features) for m in _linear(model, targets))


def count_from_weights_numpy(model, targets, r):        # the weight's shape, as a numpy integer
    return np.int64(sum(r * sum(m.weight.shape) for n, m in model.named_modules()
                        if isinstance(m, torch.nn.Linear) and any(n == t or n.endswith("." + t) for t in targets)))


def count_by_building(model, targets, r):               # builds A and B for each layer and counts them
    total = 0
    for m in _linear(model, targets):
        A, B = torch.zeros(r, m.in_features), torch.zeros(m.out_features, r)
        total += A.numel() + B.numel()
    return total


def count_A_only(model, targets, r):
    return sum(r * m.in_features for m in _linear(model, targets))


def count_square(model, targets, r):
    return sum(2 * r * m.in_features for m in _linear(model, targets))


def count_with_base(model, targets, r):
    return sum(r * (m.in_features + m.out_features) + sum(p.numel() for p in m.parameters())
               for m in _linear(model, targets))


def count_base_weights(model, targets, r):
    return sum(m.weight.numel() for m in _linear(model, targets))


def count_every_linear(model, targets, r):
    return sum(r * (m.in_features + m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear))


def count_substring(model, targets, r):
    return sum(r * (m.in_features + m.out_features) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and any(t in n for t in targets))


def count_first_target(model, targets, r):
    return count_right(model, targets[:1], r)


def count_one_per_name(model, targets, r):               # one layer per target name, not every block's
    seen = {}
    for n, m in model.named_modules():
        if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in targets:
            seen.setdefault(n.split(".")[-1], m)
    return sum(r * (m.in_features + m.out_features) for m in seen.values())


def count_tensor(model, targets, r):                    # right value, as a tensor
    return torch.tensor(count_right(model, targets, r))


def count_float(model, targets, r):
    return float(count_right(model, targets, r))


def count_wraps_the_model(model, targets, r):           # right value, but freezes the model it was given
    for p in model.parameters():
        p.requires_grad_(False)
    return count_right(model, targets, r)


# ----------------------------------------------------------------------------- the LoRA layer (a class)
class LayerRight(nn.Module):
    def __init__(self, base, r, alpha):
        super().__init__()
        self.base, self.r, self.scaling = base.requires_grad_(False), r, alpha / r
        self.A = nn.Parameter(torch.randn(r, base.in_features) / r)
        self.B = nn.Parameter(torch.zeros(base.out_features, r))

    def forward(self, x):
        return self.base(x) + self.scaling * (x @ self.A.T) @ self.B.T


class LayerEinsum(nn.Module):                 # other names inside, einsum, normal_ in place
    def __init__(self, base, r, alpha):
        super().__init__()
        for p in base.parameters():
            p.requires_grad = False
        self.base = base
        self.scaling = float(alpha) / float(r)
        self.A = nn.Parameter(torch.empty(r, base.in_features).normal_(0.0, 1.0 / r))
        self.B = nn.Parameter(base.weight.new_zeros(base.out_features, r))

    def forward(self, x):
        low = torch.einsum("...i,ri->...r", x, self.A)
        return self.base(x) + self.scaling * torch.einsum("...r,or->...o", low, self.B)


def _layer_variant(**change):
    """LayerRight with one thing changed: a common mistake."""
    class Variant(LayerRight):
        def __init__(self, base, r, alpha):
            super().__init__(base, r, alpha)
            if change.get("scaling"):
                self.scaling = change["scaling"](alpha, r)
            if change.get("unfrozen"):
                base.requires_grad_(True)
            if change.get("B_random"):
                self.B = nn.Parameter(torch.randn(base.out_features, r) / r)
            if change.get("A_zero"):
                self.A = nn.Parameter(torch.zeros(r, base.in_features))
            if change.get("A_std_one"):
                self.A = nn.Parameter(torch.randn(r, base.in_features))

        def forward(self, x):
            if change.get("no_base"):
                return self.scaling * (x @ self.A.T) @ self.B.T
            if change.get("swapped"):
                return self.base(x) + self.scaling * (x @ self.B.T) @ self.A.T
            return super().forward(x)
    return Variant


LayerFloorDivision = _layer_variant(scaling=lambda alpha, r: alpha // r)
LayerROverAlpha = _layer_variant(scaling=lambda alpha, r: r / alpha)
LayerUnfrozen = _layer_variant(unfrozen=True)
LayerBRandom = _layer_variant(B_random=True)
LayerAZero = _layer_variant(A_zero=True)
LayerAStdOne = _layer_variant(A_std_one=True)


class LayerPlainTensors(nn.Module):           # A and B as plain tensors: never handed to the optimizer
    def __init__(self, base, r, alpha):
        super().__init__()
        self.base, self.scaling = base.requires_grad_(False), alpha / r
        self.A = (torch.randn(r, base.in_features) / r).requires_grad_()
        self.B = torch.zeros(base.out_features, r, requires_grad=True)

    def forward(self, x):
        return self.base(x) + self.scaling * (x @ self.A.T) @ self.B.T


LayerNoBase = _layer_variant(no_base=True)
LayerSwapped = _layer_variant(swapped=True)

LAYER_RIGHT = [(checks.check_lora_layer, LayerRight), (checks.check_lora_layer, LayerEinsum)]
LAYER_WRONG = [
    (checks.check_lora_layer, LayerFloorDivision, "alpha // r"),
    (checks.check_lora_layer, LayerROverAlpha, "r / alpha"),
    (checks.check_lora_layer, LayerUnfrozen, "must be frozen"),
    (checks.check_lora_layer, LayerBRandom, "B starts at zero"),
    (checks.check_lora_layer, LayerAZero, "A starts random"),
    (checks.check_lora_layer, LayerAStdOne, "divide randn by r"),
    (checks.check_lora_layer, LayerPlainTensors, "must be an nn.Parameter"),
    (checks.check_lora_layer, LayerNoBase, "must return exactly base(x)"),
    (checks.check_lora_layer, LayerSwapped, "your code raised RuntimeError"),
]


RIGHT = [
    (checks.check_lora_forward, lora_fwd_right), (checks.check_lora_forward, lora_fwd_linear_float64),
    (checks.check_lora_forward, lora_fwd_einsum), (checks.check_lora_forward, lora_fwd_merged_first),
    (checks.check_merge_weight, merge_right), (checks.check_merge_weight, merge_addmm),
    (checks.check_merge_weight, merge_on_a_copy_float64), (checks.check_merge_weight, merge_parameter),
    (checks.check_merge_weight, merge_numpy),
    (checks.check_lora_param_count, count_right), (checks.check_lora_param_count, count_from_weights_numpy),
    (checks.check_lora_param_count, count_by_building),
] + LAYER_RIGHT

WRONG = [
    (checks.check_lora_forward, lora_fwd_floor_division, "alpha // r"),
    (checks.check_lora_forward, lora_fwd_r_over_alpha, "r / alpha"),
    (checks.check_lora_forward, lora_fwd_unscaled, "not scaled"),
    (checks.check_lora_forward, lora_fwd_alpha_only, "alpha alone"),
    (checks.check_lora_forward, lora_fwd_scales_everything, "scales only the update"),
    (checks.check_lora_forward, lora_fwd_no_base, "exactly W0 x"),
    (checks.check_lora_forward, lora_fwd_W0_not_transposed, "x @ W0.T"),
    (checks.check_lora_forward, lora_fwd_BA_not_transposed, "without the transpose"),
    (checks.check_lora_forward, lora_fwd_A_B_swapped, "A of shape (r, d_in) and B of shape (d_out, r)"),
    (checks.check_lora_forward, lora_fwd_in_place, "do not change B in place"),
    (checks.check_lora_forward, lora_fwd_zero, "must be a torch.Tensor"),
    (checks.check_merge_weight, merge_in_place, "do not change W0 in place"),
    (checks.check_merge_weight, merge_floor_division, "alpha // r"),
    (checks.check_merge_weight, merge_r_over_alpha, "r / alpha"),
    (checks.check_merge_weight, merge_unscaled, "not scaled"),
    (checks.check_merge_weight, merge_unscaled_transposed, "not scaled"),
    (checks.check_merge_weight, merge_update_transposed, "not Aᵀ Bᵀ"),
    (checks.check_merge_weight, merge_transposed_update_on_square, "not its transpose"),
    (checks.check_merge_weight, merge_update_only, "W0 is missing"),
    (checks.check_merge_weight, merge_W0_unchanged, "W0 unchanged"),
    (checks.check_merge_weight, merge_A_B_swapped, "B @ A needs A of shape (r, d_in)"),
    (checks.check_lora_param_count, count_A_only, "counts A only"),
    (checks.check_lora_param_count, count_square, "B is d_out × r"),
    (checks.check_lora_param_count, count_with_base, "own weights: they stay frozen"),
    (checks.check_lora_param_count, count_base_weights, "counts d_out × d_in per layer"),
    (checks.check_lora_param_count, count_every_linear, "every nn.Linear"),
    (checks.check_lora_param_count, count_substring, "anywhere in the name"),
    (checks.check_lora_param_count, count_first_target, "first target only"),
    (checks.check_lora_param_count, count_one_per_name, "one layer per target name"),
    (checks.check_lora_param_count, count_tensor, "must be a Python int, got a tensor"),
    (checks.check_lora_param_count, count_float, "must be an int, got float"),
    (checks.check_lora_param_count, count_wraps_the_model, "do not change the model"),
] + LAYER_WRONG

CHECKERS = (checks.check_lora_forward, checks.check_lora_layer, checks.check_merge_weight, checks.check_lora_param_count)



def test_a_shape_error_gets_a_hint(verdict):
    _, line = verdict(checks.check_lora_forward, lora_fwd_A_B_swapped)
    assert "your code raised RuntimeError" in line and "(x @ A.T) @ B.T needs A of shape (r, d_in)" in line, line

