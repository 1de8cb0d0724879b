"""QLoRA: LoRA on a frozen 4-bit base model (Dettmers et al., 2023), in plain PyTorch (CPU or GPU).

The frozen weights are stored in 4 bits. Each weight matrix is cut into blocks of 64 consecutive
values (row-major); a block keeps its absolute maximum c (float32) and one 4-bit index per value into
a code book q of 16 numbers in [-1, 1]:

    w ≈ c · q[i],     c = max |w| over the block,     i = the index of the q nearest to w / c

Which numbers? Uniform int4 spaces its levels evenly (15 of them, k/7 for k = -7..7). NF4
("NormalFloat") puts its 16 at quantiles of the normal distribution: trained weights are roughly
Gaussian, so the levels are dense where the weights are and each is used about equally often,
a lower error for the same 4 bits.

Double quantisation: the float32 constants c cost 32/64 = 0.5 bit per weight. QLoRA quantises
them too, to 8 bits in blocks of 256 after subtracting their mean (c > 0 always, so the mean
subtracted leaves values on both sides of 0 for a symmetric code):

    c ≈ mean + k · c₂ / 127,    k int8,    c₂ = max |c - mean| over the block of 256 (float32)

Storage per weight: 4 bits + 32/64 (absmax) = 4.5 bits, 0.5625 bytes; with double quantisation
4 + 8/64 + 32/(64·256) = 4.127 bits, 0.516 bytes (the paper's 4.127), against 16 bits in bf16.

The paper stores the second-level constants as 8-bit floats, and bitsandbytes uses its own dynamic
8-bit map; here they are int8 with an absmax per block of 256 (the int4 quantiser below with 8
bits): the same memory, and an error bounded by c₂/254 per constant, well below the 4-bit error.

``QuantLinear`` holds such a weight, frozen, and dequantises it to the compute dtype in every
forward (and again in backward, so that no full-precision copy of W is kept for the gradient);
``add_qlora`` quantises the targeted layers and wraps them with ``llmtap.lora.LoRALinear``, whose
A and B stay in full precision and are the only trainable parameters.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from .lora import (_check_lora_args, _check_rank, _is_conv1d, _set_submodule, _targets, add_lora, lora_layers)
from .validate import one_of, positive_int

# NF4's 16 values: Dettmers et al. (2023), Appendix E, the same table as bitsandbytes' NF4 look-up.
# normal_float_code() derives them from the normal quantiles (tests check the two agree to 2e-7).
NF4_CODE = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0])
INT4_CODE = torch.arange(-7, 8) / 7          # absmax int4: 15 evenly spaced levels k/7, k = -7..7
NF4_OFFSET = 0.9677083                       # bitsandbytes' create_normal_map offset: mean of 1 - 1/30 and 1 - 1/32
BLOCK, DQ_BLOCK = 64, 256                    # QLoRA's block sizes: weights, and absmax constants


def normal_float_code(offset: float = NF4_OFFSET) -> torch.Tensor:
    """NF4 from scratch: 8 positive values at the N(0, 1) quantiles Φ⁻¹(p) of 8 probabilities
    p evenly spaced from ``offset`` down to (not including) 0.5, 7 negative ones likewise, and an
    exact 0 (a zero weight or padding must stay 0); then scaled so that the largest is 1.
    The halves differ in size so that 16 values include 0 and both ±1."""
    p_pos = torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1]
    p_neg = torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1]
    values = torch.cat([torch.special.ndtri(p_pos), torch.zeros(1, dtype=torch.float64), -torch.special.ndtri(p_neg)])
    values = values / values.abs().max()
    return values.sort().values.float()


# ----------------------------------------------------------------------------- bits
def pack_4bit(indices: torch.Tensor) -> torch.Tensor:
    """Two 4-bit indices per uint8, the first (even position) in the high nibble, bitsandbytes' layout:
    byte = (i[2k] << 4) | i[2k+1]."""
    if indices.numel() % 2:
        raise ValueError(f"pack_4bit needs an even number of indices (two per byte), got {indices.numel()}")
    if indices.numel() and not (0 <= int(indices.min()) and int(indices.max()) <= 15):
        raise ValueError(f"4-bit indices must lie in 0..15, got values in {int(indices.min())}..{int(indices.max())}")
    pairs = indices.reshape(-1, 2).to(torch.uint8)
    return (pairs[:, 0] << 4) | pairs[:, 1]


def unpack_4bit(packed: torch.Tensor) -> torch.Tensor:
    """The indices of ``pack_4bit``, in order: high nibble, then low nibble of each byte."""
    if packed.dtype != torch.uint8:
        raise ValueError(f"unpack_4bit takes the uint8 tensor of pack_4bit, got dtype {packed.dtype}")
    return torch.stack([packed >> 4, packed & 0x0F], dim=1).flatten()


# ----------------------------------------------------------------------------- the quantised tensor
@dataclass
class Quant4Tensor:
    """A weight matrix in 4 bits: packed code indices and one absmax per block (see the module doc).

    ``absmax`` is float32, one per block; with double quantisation it is int8 and
    ``absmax_scale`` (float32, one per block of 256 constants) and ``absmax_mean`` (float32) decode it.
    The flattened weight is padded with zeros to a whole number of blocks; ``shape`` is the real shape."""
    codes: torch.Tensor
    absmax: torch.Tensor
    shape: tuple[int, int]
    block: int
    absmax_scale: torch.Tensor | None = None
    absmax_mean: torch.Tensor | None = None
    CODE: ClassVar[torch.Tensor]

    @property
    def numel(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def double_quant(self) -> bool:
        return self.absmax_scale is not None

    @property
    def nbytes(self) -> int:
        """Bytes stored: 4-bit codes, absmax constants and, with double quantisation, their scales and mean."""
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"codes": self.codes, "absmax": self.absmax}
        if self.double_quant:
            out.update(absmax_scale=self.absmax_scale, absmax_mean=self.absmax_mean)
        return out

    def absmax_values(self) -> torch.Tensor:
        """The per-block constants c in float32 (decoded when double-quantised: c ≈ mean + k · c₂ / 127)."""
        if not self.double_quant:
            return self.absmax
        k = F.pad(self.absmax.float(), (0, (-self.absmax.numel()) % DQ_BLOCK)).view(-1, DQ_BLOCK)
        c = self.absmax_mean + k * (self.absmax_scale[:, None] / 127)
        return c.flatten()[: self.absmax.numel()]

    def dequantize(self) -> torch.Tensor:
        """W ≈ c · q[i]: every 4-bit index looked up in the code book, times its block's absmax (float32)."""
        q = self.CODE.to(self.codes.device)[unpack_4bit(self.codes).long()].view(-1, self.block)
        w = q * self.absmax_values()[:, None]
        return w.flatten()[: self.numel].view(self.shape)


class NF4Tensor(Quant4Tensor):
    """4-bit NormalFloat: the code book ``NF4_CODE``."""
    CODE = NF4_CODE


class Int4Tensor(Quant4Tensor):
    """Uniform 4-bit absmax quantisation: the code book ``INT4_CODE`` (k/7), for comparison with NF4."""
    CODE = INT4_CODE


QUANT_TYPES = {"nf4": NF4Tensor, "int4": Int4Tensor}


def quantize_nf4(w: torch.Tensor, block: int = BLOCK, double_quant: bool = False) -> NF4Tensor:
    """``w`` (a 2-D floating-point weight) in NF4 with one absmax per ``block`` values. Sizes that are
    not a multiple of ``block`` are padded with zeros (stored, not returned by ``dequantize``)."""
    return _quantize(w, NF4Tensor, block, double_quant)


def quantize_int4(w: torch.Tensor, block: int = BLOCK, double_quant: bool = False) -> Int4Tensor:
    """``w`` in uniform absmax int4 (15 levels k/7 · absmax), blocked as ``quantize_nf4``."""
    return _quantize(w, Int4Tensor, block, double_quant)


def dequantize_nf4(q: Quant4Tensor) -> torch.Tensor:
    """The float32 weight an ``NF4Tensor`` (or ``Int4Tensor``) stands for."""
    if not isinstance(q, Quant4Tensor):
        raise ValueError(f"dequantize_nf4 takes the result of quantize_nf4, got {type(q).__name__}")
    return q.dequantize()


def _quantize(w, cls, block, double_quant) -> Quant4Tensor:
    _check_weight(w)
    _check_block(block)
    if not isinstance(double_quant, bool):
        raise ValueError(f"double_quant must be True or False, got {double_quant!r}")
    blocks = _blocks(w.detach().float(), block)
    absmax = blocks.abs().amax(dim=1)                                # c = max |w| per block
    scale = torch.where(absmax > 0, absmax, torch.ones_like(absmax))     # an all-zero block stays 0
    indices = _nearest(blocks / scale[:, None], cls.CODE.to(w.device))   # i = argmin |q[i] - w / c|
    q = cls(codes=pack_4bit(indices), absmax=absmax, shape=tuple(w.shape), block=block)
    if double_quant:
        q.absmax, q.absmax_scale, q.absmax_mean = _quantize_constants(absmax)
    return q


def _quantize_constants(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Double quantisation of the absmax constants c: (k int8, c₂ per block of 256, mean), with
    c ≈ mean + k · c₂ / 127 and c₂ = max |c - mean| over the block."""
    mean = c.mean()
    blocks = _blocks(c - mean, DQ_BLOCK)
    c2 = blocks.abs().amax(dim=1)
    k = torch.round(blocks / torch.where(c2 > 0, c2, torch.ones_like(c2))[:, None] * 127)
    return k.to(torch.int8).flatten()[: c.numel()], c2, mean


def _blocks(flat: torch.Tensor, block: int) -> torch.Tensor:
    """The values of ``flat`` in rows of ``block``, the last row padded with zeros."""
    flat = flat.reshape(-1)
    return F.pad(flat, (0, (-flat.numel()) % block)).view(-1, block)


def _nearest(x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """The index of the nearest value of the sorted ``code`` for each x: the midpoints between
    neighbouring code values are the decision boundaries."""
    return torch.bucketize(x, (code[1:] + code[:-1]) / 2)


def _check_weight(w) -> None:
    if not isinstance(w, torch.Tensor) or not w.is_floating_point():
        raise ValueError(f"a weight to quantise must be a floating-point torch.Tensor, got "
                         f"{type(w).__name__ if not isinstance(w, torch.Tensor) else w.dtype}")
    if w.dim() != 2:
        raise ValueError(f"4-bit quantisation here takes a 2-D weight matrix (d_out x d_in), got shape {tuple(w.shape)}; "
                         f"biases and norm weights are tiny and stay in full precision, and a conv kernel can be "
                         f"reshaped to (out_channels, -1) first")
    if not torch.isfinite(w).all():
        raise ValueError("the weight has inf or NaN values; an absmax code cannot represent them (check the model)")


def _check_block(block) -> None:
    positive_int(block, "block", "QLoRA uses 64", "the number of weights that share one absmax")
    if block % 2:
        raise ValueError(f"block must be even (two 4-bit codes are packed per byte), got {block}")


# ----------------------------------------------------------------------------- the layer
class _DequantMatmul(torch.autograd.Function):
    """y = x Wᵀ for the 4-bit W of ``layer``. W is dequantised in forward and again in backward
    (∂L/∂x = ∂L/∂y · W), so no full-precision copy of W waits in memory for the backward pass."""

    @staticmethod
    def forward(ctx, x, layer):
        ctx.layer = layer
        return x @ layer.dequantized_weight(x.dtype).T

    @staticmethod
    def backward(ctx, grad_y):
        return grad_y @ ctx.layer.dequantized_weight(grad_y.dtype), None


class QuantLinear(nn.Module):
    """A frozen linear layer whose weight is stored in 4 bits (NF4 or int4) and dequantised to
    ``compute_dtype`` in each forward; the bias (if any) stays in full precision, frozen.

    Built from an ``nn.Linear`` or a Hugging Face ``Conv1D`` (whose d_in x d_out weight is stored
    transposed, as d_out x d_in, here)."""

    def __init__(self, layer: nn.Module, quant: str = "nf4", block: int = BLOCK, double_quant: bool = True,
                 compute_dtype: torch.dtype | None = None):
        super().__init__()
        if not (isinstance(layer, nn.Linear) or _is_conv1d(layer)):
            raise TypeError(f"QuantLinear quantises an nn.Linear or a Hugging Face Conv1D, got {type(layer).__name__}")
        one_of(quant, "quant", tuple(QUANT_TYPES))
        w = layer.weight.detach()
        w = w.T if _is_conv1d(layer) else w                       # d_out x d_in
        if compute_dtype is not None and not (isinstance(compute_dtype, torch.dtype) and compute_dtype.is_floating_point):
            raise ValueError(f"compute_dtype must be a floating torch dtype such as torch.bfloat16, or None for the "
                             f"weight's own dtype, got {compute_dtype!r}")
        q = _quantize(w, QUANT_TYPES[quant], block, double_quant)
        self.out_features, self.in_features = w.shape
        self.quant, self.block, self.double_quant = quant, block, double_quant
        self.compute_dtype = compute_dtype or w.dtype
        for name in ("codes", "absmax", "absmax_scale", "absmax_mean"):
            self.register_buffer(name, getattr(q, name))
        self.bias = None if layer.bias is None else nn.Parameter(layer.bias.detach().clone(), requires_grad=False)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, quant={self.quant!r}, "
                f"block={self.block}, double_quant={self.double_quant}, compute_dtype={self.compute_dtype}")

    def quantized_weight(self) -> Quant4Tensor:
        return QUANT_TYPES[self.quant](codes=self.codes, absmax=self.absmax, shape=(self.out_features, self.in_features),
                                       block=self.block, absmax_scale=self.absmax_scale, absmax_mean=self.absmax_mean)

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """W (d_out x d_in) dequantised, in ``dtype`` (default: the compute dtype)."""
        return self.quantized_weight().dequantize().to(dtype or self.compute_dtype)

    def forward(self, x):
        y = _DequantMatmul.apply(x.to(self.compute_dtype), self)      # x Wᵀ in the compute dtype
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.to(x.dtype)

    def _apply(self, fn, recurse=True):
        """``model.to(torch.bfloat16)`` casts floating buffers; the quantisation constants move with the
        model to its device but keep float32 (in 16 bits their rounding would add to the 4-bit error)."""
        kept = {name: b for name, b in self._buffers.items() if b is not None}
        super()._apply(fn, recurse)
        for name, b in kept.items():
            self._buffers[name] = b.to(self._buffers[name].device)
        return self


# ----------------------------------------------------------------------------- a model
def quantize_model(model: nn.Module, target_modules, quant: str = "nf4", block: int = BLOCK, double_quant: bool = True,
                   compute_dtype: torch.dtype | None = None) -> nn.Module:
    """Replace every linear layer that ``target_modules`` names (as in ``add_lora``) by a frozen
    ``QuantLinear``; returns the model. Call it before ``add_lora`` (or use ``add_qlora``)."""
    if lora_layers(model):
        raise ValueError("the model has LoRA layers already; quantise first, then add LoRA "
                         "(add_qlora(model, target_modules, ...) does both)")
    one_of(quant, "quant", tuple(QUANT_TYPES))
    _check_block(block)
    targets = _targets(model, target_modules)
    done = [n for n in targets if isinstance(model.get_submodule(n), QuantLinear)]
    if done:
        raise ValueError(f"{done[0]!r} is quantised already; quantize_model once per model")
    for name in targets:
        _set_submodule(model, name, QuantLinear(model.get_submodule(name), quant, block, double_quant, compute_dtype))
    return model


def add_qlora(model: nn.Module, target_modules, r: int = 8, alpha: float = 16, dropout: float = 0.0, *,
              quant: str = "nf4", block: int = BLOCK, double_quant: bool = True, compute_dtype: torch.dtype | None = None,
              use_rslora: bool = False, use_dora: bool = False) -> nn.Module:
    """QLoRA: quantise the layers ``target_modules`` names to 4 bits (NF4 and double quantisation by
    default, as the paper) and wrap them with LoRA (``add_lora``'s r, alpha, dropout, use_rslora,
    use_dora); only A and B (and DoRA's m) train. Every argument is checked before the model changes."""
    _check_lora_args(r, alpha, dropout, use_rslora=use_rslora, use_dora=use_dora)
    if lora_layers(model):
        raise ValueError("the model has LoRA layers already; call add_qlora on a fresh copy of the base model")
    targets = _targets(model, target_modules)
    for name in targets:
        _check_rank(r, name, model.get_submodule(name))
    quantize_model(model, targets, quant, block, double_quant, compute_dtype)
    return add_lora(model, targets, r, alpha, dropout, use_rslora=use_rslora, use_dora=use_dora)


def dequantize_model(model: nn.Module) -> nn.Module:
    """Replace every ``QuantLinear`` (also inside LoRA layers) by an ``nn.Linear`` holding its dequantised
    weight in the compute dtype: merge_lora then works. W0's quantisation error stays; nothing else is lost."""
    quantized = [name for name, m in model.named_modules() if isinstance(m, QuantLinear)]
    if not quantized:
        raise ValueError("the model has no QuantLinear layers; nothing to dequantise")
    for name in quantized:
        q = model.get_submodule(name)
        w = q.dequantized_weight()
        linear = nn.Linear(q.in_features, q.out_features, bias=q.bias is not None, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            linear.weight.copy_(w)
            if q.bias is not None:
                linear.bias.copy_(q.bias)
        linear.requires_grad_(False)
        _set_submodule(model, name, linear)
    return model


# ----------------------------------------------------------------------------- measuring
def bytes_per_parameter(x) -> float:
    """Bytes per weight of frozen weights: of a ``Quant4Tensor``, a ``QuantLinear``, a plain tensor
    (its element size), or of all ``QuantLinear`` layers of a model together.
    NF4 with double quantisation: 0.5 + 1/64 + 4/(64·256) ≈ 0.516 (4.127 bits); without: 0.5625."""
    if isinstance(x, Quant4Tensor):
        return x.nbytes / x.numel
    if isinstance(x, QuantLinear):
        return bytes_per_parameter(x.quantized_weight())
    if isinstance(x, torch.Tensor):
        return float(x.element_size())
    if isinstance(x, nn.Module):
        layers = [m.quantized_weight() for m in x.modules() if isinstance(m, QuantLinear)]
        if not layers:
            raise ValueError("the model has no QuantLinear layers; quantize_model or add_qlora first")
        return sum(q.nbytes for q in layers) / sum(q.numel for q in layers)
    raise ValueError(f"bytes_per_parameter takes a Quant4Tensor, a QuantLinear, a tensor or a model, got {type(x).__name__}")


@torch.no_grad()
def quantization_errors(model: nn.Module, block: int = BLOCK) -> dict:
    """Round-trip mean squared error of every linear weight of ``model`` (nn.Linear, Conv1D; a tied
    weight once) in NF4, NF4 with double quantisation and uniform int4, and their totals:
    {"nf4": mse, "nf4_double_quant": mse, "int4": mse, "mean_square_weight": E[w²], "layers": {name: {...}}}.
    """
    _check_block(block)
    quantizers = {"nf4": lambda w: quantize_nf4(w, block), "nf4_double_quant": lambda w: quantize_nf4(w, block, True),
                  "int4": lambda w: quantize_int4(w, block)}
    seen, layers = set(), {}
    totals = dict.fromkeys([*quantizers, "mean_square_weight", "numel"], 0.0)
    for name, m in model.named_modules():
        if not (isinstance(m, nn.Linear) or _is_conv1d(m)) or id(m.weight) in seen:
            continue
        seen.add(id(m.weight))
        w = (m.weight.T if _is_conv1d(m) else m.weight).float()
        row = {k: (quantize(w).dequantize() - w).pow(2).mean().item() for k, quantize in quantizers.items()}
        row.update(mean_square_weight=w.pow(2).mean().item(), numel=w.numel())
        layers[name] = row
        for k in totals:
            totals[k] += row[k] * (1 if k == "numel" else w.numel())
    if not layers:
        raise ValueError("the model has no nn.Linear or Conv1D layers to quantise")
    n = totals.pop("numel")
    return {**{k: v / n for k, v in totals.items()}, "layers": layers}
