"""LoRA: low-rank adaptation (LLM-TAP 5.2; Hu et al., 2021), and the variants people use today.

A frozen weight W0 (d_out x d_in) gets a trainable update of rank r:

    h = W0 x + ΔW x = W0 x + (alpha / r) · B A x,     A: r x d_in (Gaussian),  B: d_out x r (zeros)

B = 0 at the start, so the wrapped model computes exactly what the base model does. The update
is applied as (x Aᵀ) Bᵀ: two thin matrix products, never the full d_out x d_in matrix B A.
For inference B A can be merged into W0 (no extra cost at all); unmerging puts back the
original W0 bit for bit, because the original is kept rather than recomputed as W0 + ΔW - ΔW.

The family, each one switch of ``add_lora`` as of peft's ``LoraConfig`` (s is the scaling):

* rsLoRA (Kalajdzievski, 2023), ``use_rslora=True``: s = alpha / sqrt(r) instead of alpha / r, so
  that the update does not shrink as r grows.
* DoRA (Liu et al., 2024), ``use_dora=True``: a trainable magnitude m per output feature times a
  unit direction,  W' = m · (W0 + s·BA) / ||W0 + s·BA||_c,  where ||.||_c is the L2 norm of each
  row of the d_out x d_in matrix (over the input dim: one value per output feature, as peft computes
  it). m starts at ||W0||_c. The norm is a constant in backward (detached, the paper's §4.3 and peft).
* PiSSA (Meng et al., 2024), ``init="pissa"``, and OLoRA (Büyükakyüz, 2024), ``init="olora"``: A and B
  start from the principal part of W0 (top-r singular vectors; or the first r columns of Q and rows
  of R of W0 = Q R) instead of noise and zero. The base layer's weight becomes the frozen residual
  W_res = W0 - s·B A, so the output at the start is still the base model's. The original W0 is not
  kept (that would double the memory): merging gives W_res + s·BA, unmerging gives W_res back.
* LoRA+ (Hayou et al., 2024), ``lora_plus_param_groups``: B learns ``ratio`` times faster than A.

Works on ``nn.Linear``, on Hugging Face GPT-2's ``Conv1D`` (weight stored as d_in x d_out) and on
``llmtap.qlora.QuantLinear`` (a frozen 4-bit weight: QLoRA); saves and loads adapters in PEFT's format
(adapter_config.json + adapter_model.safetensors).
"""
from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .checkpoints import copy_strict
from .train import mark_only_trainable
from .validate import one_of, positive_int, positive_number

CONFIG_NAME, WEIGHTS_NAME = "adapter_config.json", "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."        # PEFT's key prefix in adapter_model.safetensors
INITS = ("gaussian", "pissa", "olora")   # how A and B start (peft's init_lora_weights)
LORA_NAMES = ("lora_A", "lora_B", "lora_magnitude_vector")     # the trainable tensors of a LoRA layer


def _is_conv1d(module) -> bool:
    """Hugging Face GPT-2's Conv1D: a linear layer whose weight is stored transposed, (d_in, d_out)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def _is_quantized(module) -> bool:
    """llmtap.qlora.QuantLinear: a frozen 4-bit weight, dequantised in each forward."""
    from .qlora import QuantLinear
    return isinstance(module, QuantLinear)


def _wrappable(module) -> bool:
    return isinstance(module, nn.Linear) or _is_conv1d(module) or _is_quantized(module)


def _shape(module) -> tuple[int, int]:
    """(d_in, d_out) of a linear layer or a Conv1D."""
    if _is_conv1d(module):
        return module.weight.shape[0], module.weight.shape[1]
    return module.in_features, module.out_features


def _scaling(r: int, alpha: float, use_rslora: bool) -> float:
    """s = alpha / r (LoRA), or alpha / sqrt(r) (rsLoRA: the update keeps its size as r grows)."""
    return alpha / math.sqrt(r) if use_rslora else alpha / r


class LoRALinear(nn.Module):
    """A frozen linear layer plus the low-rank update s · B A (s = alpha / r, or alpha / sqrt(r) with
    rsLoRA); with DoRA, the rows of the sum are rescaled to a trainable magnitude m."""

    def __init__(self, base_layer: nn.Module, r: int, alpha: float, dropout: float = 0.0, *,
                 use_rslora: bool = False, use_dora: bool = False, init: str = "gaussian"):
        super().__init__()
        if not _wrappable(base_layer):
            raise TypeError(f"LoRALinear wraps nn.Linear, Hugging Face's Conv1D or llmtap.qlora.QuantLinear; got "
                            f"{type(base_layer).__name__} (LoRA and DoRA on embeddings or convolutions are not "
                            f"implemented here: peft has them)")
        d_in, d_out = _shape(base_layer)
        self.base_layer, self.r, self.alpha = base_layer, r, alpha
        self.use_rslora, self.use_dora, self.init = use_rslora, use_dora, init
        self.scaling = _scaling(r, alpha, use_rslora)
        self.fan_in_fan_out = _is_conv1d(base_layer)
        device, dtype = _device_dtype(base_layer)
        # A ~ N(0, 1/r^2) (the paper: "a random Gaussian"; peft's init_lora_weights="gaussian"; loralib
        # and peft's default draw A Kaiming-uniform instead), B = 0 so that ΔW = B A = 0 at the start
        self.lora_A = nn.Parameter(torch.randn(r, d_in, device=device, dtype=dtype) / r)
        self.lora_B = nn.Parameter(torch.zeros(d_out, r, device=device, dtype=dtype))
        if init != "gaussian":
            self._init_from_w0(init)
        if use_dora:
            # m (the paper's magnitude vector; peft's name), one per output feature: m = ||W0 + s·BA||_c,
            # which is ||W0||_c when B = 0 (and also after PiSSA/OLoRA, whose residual + s·BA is W0)
            self.lora_magnitude_vector = nn.Parameter(self.weight_norm().detach().to(dtype))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.register_buffer("original_weight", None, persistent=False)    # W0 while merged

    def extra_repr(self) -> str:
        d_in, d_out = _shape(self.base_layer)
        extras = "".join(f", {k}=True" for k in ("use_rslora", "use_dora") if getattr(self, k))
        extras += f", init={self.init!r}" if self.init != "gaussian" else ""
        return f"d_in={d_in}, d_out={d_out}, r={self.r}, alpha={self.alpha}{extras}, merged={self.merged}"

    def w0(self) -> torch.Tensor:
        """The frozen weight as a d_out x d_in matrix (Conv1D stores it transposed; a 4-bit layer is
        dequantised). After PiSSA/OLoRA this is the residual W_res."""
        if _is_quantized(self.base_layer):
            return self.base_layer.dequantized_weight()
        w = self.base_layer.weight
        return w.T if self.fan_in_fan_out else w

    def delta_weight(self) -> torch.Tensor:
        """ΔW = s · B A, in the layout of the base weight (transposed for Conv1D)."""
        delta = (self.lora_B @ self.lora_A) * self.scaling
        return delta.T if self.fan_in_fan_out else delta

    def weight_norm(self) -> torch.Tensor:
        """DoRA's ||W0 + s·BA||_c: the L2 norm of each row of the d_out x d_in matrix, over the input dim."""
        w = self.w0()
        ba = (self.lora_B @ self.lora_A).detach().to(w.dtype)
        return torch.linalg.norm(w + self.scaling * ba, dim=1)

    def forward(self, x):
        h = self.base_layer(x)                                            # W0 x + b
        if self.merged:
            return h
        x_d = self.lora_dropout(x)
        # (x Aᵀ) Bᵀ: cost r·(d_in + d_out) per token instead of d_in·d_out for B A
        update = (x_d @ self.lora_A.T.to(x.dtype)) @ self.lora_B.T.to(x.dtype)
        if not self.use_dora:
            return h + update.to(h.dtype) * self.scaling
        # DoRA: h' = g ⊙ (W0 x + s·B A x) + b with g = m / ||W0 + s·BA||_c, written as a correction of h,
        #   h' = h + (g - 1) ⊙ W0 x + g ⊙ s·B A x,
        # where dropout (when on) acts on the x of both correction terms, as in peft and the DoRA code
        g = self.lora_magnitude_vector / self.weight_norm().detach()     # the norm is a constant in backward (§4.3)
        if isinstance(self.lora_dropout, nn.Identity) or not self.training:
            bias = getattr(self.base_layer, "bias", None)
            w0x = h if bias is None else h - bias                         # W0 x, read off the base output
        else:
            w0x = F.linear(x_d, self.w0().to(x.dtype))                    # W0 x_d
        g = g.to(h.dtype)
        return h + ((g - 1) * w0x.to(h.dtype) + g * update.to(h.dtype) * self.scaling)

    def merged_weight(self) -> torch.Tensor:
        """The weight a merge writes, in the base layout: W0 + s·BA, or with DoRA g ⊙ (W0 + s·BA)."""
        w = self.base_layer.weight
        if not self.use_dora:
            return w + self.delta_weight().to(w.dtype)
        g = (self.lora_magnitude_vector / self.weight_norm()).to(w.dtype)      # g = m / ||W0 + s·BA||_c
        # g scales the rows of the d_out x d_in matrix: the columns of Conv1D's d_in x d_out weight
        return (g[None, :] if self.fan_in_fan_out else g[:, None]) * (w + self.delta_weight().to(w.dtype))

    @torch.no_grad()
    def merge(self):
        if self.merged:
            return
        if _is_quantized(self.base_layer):
            raise ValueError(_QUANTIZED_MERGE)
        w = self.base_layer.weight
        self.original_weight = w.detach().clone()
        if self.use_dora:
            w.copy_(self.merged_weight())
        else:
            w.add_(self.delta_weight().to(w.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self):
        if not self.merged:
            return
        self.base_layer.weight.copy_(self.original_weight)     # bit-exact: no subtraction
        self.original_weight = None
        self.merged = False

    @torch.no_grad()
    def _init_from_w0(self, init: str) -> None:
        """PiSSA / OLoRA: A and B from a factorisation of W0 (in float32); the base weight becomes the
        frozen residual W_res = W0 - s·B A, so that W_res + s·B A = W0 and the output is unchanged."""
        if _is_quantized(self.base_layer):
            raise ValueError(f"init={init!r} needs the full-precision W0, and this layer's weight is 4-bit: call "
                             f"add_lora(..., init={init!r}) on the full-precision model first (the residual could then "
                             f"be quantised, as the PiSSA paper's QPiSSA does; not implemented here)")
        w = self.w0().float()                                     # d_out x d_in
        r, s = self.r, self.scaling
        if init == "pissa":
            U, S, Vh = torch.linalg.svd(w, full_matrices=False)   # W0 = U diag(S) Vᵀ, S descending
            S_r = S[:r] / s                                       # / s, so that s·B A = U_r diag(S_r) V_rᵀ (as peft)
            B = U[:, :r] * S_r.sqrt()                             # B = U_r S_r^{1/2}
            A = S_r.sqrt()[:, None] * Vh[:r]                      # A = S_r^{1/2} V_rᵀ
        else:
            Q, R = torch.linalg.qr(w)                             # W0 = Q R, Q with orthonormal columns
            B, A = Q[:, :r], R[:r]                                # B = Q_r, A = R_r (not divided by s: peft's choice)
        self.lora_A.copy_(A)
        self.lora_B.copy_(B)
        residual = w - s * self.lora_B.float() @ self.lora_A.float()      # W_res = W0 - s·B A
        weight = self.base_layer.weight
        weight.copy_((residual.T if self.fan_in_fan_out else residual).to(weight.dtype))


_QUANTIZED_MERGE = (
    "cannot merge LoRA into a 4-bit (QuantLinear) weight: W0 + ΔW would have to be quantised again, and ΔW is "
    "usually much smaller than a 4-bit step (8 to 30 % of its block's absmax), so most of the update would round "
    "away. Call llmtap.qlora.dequantize_model(model) first: it replaces each 4-bit weight by a full-precision "
    "copy of its dequantised value (the quantisation error of W0 stays, nothing else is lost); then merge_lora")


def _device_dtype(layer: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where the LoRA matrices of ``layer`` live: next to its weight, in its (compute) dtype."""
    if _is_quantized(layer):
        return layer.codes.device, layer.compute_dtype
    return layer.weight.device, layer.weight.dtype


# ----------------------------------------------------------------------------- wrapping a model
def _matches(name: str, target_modules) -> bool:
    """PEFT's rule: a string is a regular expression matched against the full module name;
    a list matches a module whose name equals an entry or ends with "." + entry."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, name) is not None
    return any(name == t or name.endswith("." + t) for t in target_modules)


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def add_lora(model: nn.Module, target_modules, r: int = 8, alpha: float = 16, dropout: float = 0.0, *,
             use_rslora: bool = False, use_dora: bool = False, init: str = "gaussian") -> nn.Module:
    """Wrap every linear layer of ``model`` that ``target_modules`` names with LoRA, freeze all
    other parameters, and return the model.

    ``target_modules``: a list of names, each matching a module's full name or its last dotted
    parts (``"c_attn"``, ``"attn.c_attn"``), or one string used as a regular expression on full names.
    ``use_rslora``: scaling alpha / sqrt(r). ``use_dora``: DoRA's magnitude/direction split.
    ``init``: "gaussian" (A random, B = 0), "pissa" or "olora" (A, B from W0; W0 becomes the residual).
    """
    _check_lora_args(r, alpha, dropout, use_rslora=use_rslora, use_dora=use_dora, init=init)
    targets = _targets(model, target_modules)
    for name in targets:
        _check_rank(r, name, model.get_submodule(name))
        if init != "gaussian":
            _check_residual_target(model, name, init)
    mark_only_lora_as_trainable(model)
    for name in targets:
        _set_submodule(model, name, LoRALinear(model.get_submodule(name), r, alpha, dropout, use_rslora=use_rslora,
                                               use_dora=use_dora, init=init))
    return model


def _check_residual_target(model: nn.Module, name: str, init: str) -> None:
    """PiSSA / OLoRA write the residual into the base weight: it must be full precision and not shared."""
    layer = model.get_submodule(name)
    if _is_quantized(layer):
        raise ValueError(f"{name!r} is a 4-bit QuantLinear, and init={init!r} needs the full-precision W0: "
                         f"call add_lora(..., init={init!r}) on the model before quantising it")
    uses = sum(p is layer.weight for _, p in model.named_parameters(remove_duplicate=False))
    if uses > 1:
        raise ValueError(f"{name!r} shares its weight with another module (tied embeddings, say); init={init!r} "
                         f"would write the residual W0 - s·BA into both: leave {name!r} out of target_modules")


def _check_lora_args(r, alpha, dropout, *, use_rslora=False, use_dora=False, init="gaussian") -> None:
    """The checks of ``add_lora``'s settings (shared with ``llmtap.qlora.add_qlora``)."""
    positive_int(r, "r (the rank)")
    positive_number(alpha, "alpha", "the update is scaled by alpha / r (alpha / sqrt(r) with use_rslora)")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    for flag, value in (("use_rslora", use_rslora), ("use_dora", use_dora)):
        if not isinstance(value, bool):
            raise ValueError(f"{flag} must be True or False, got {value!r}")
    one_of(init, "init", INITS)


def _targets(model: nn.Module, target_modules) -> list[str]:
    """Names of the linear layers ``target_modules`` matches; an error names the layers there are
    when it matches none, and refuses a layer that is wrapped already."""
    if not isinstance(target_modules, str):
        target_modules = list(target_modules)
        if not target_modules or not all(isinstance(t, str) and t for t in target_modules):
            raise ValueError(f"target_modules must be a regex string or a non-empty list of names, got {target_modules!r}")
    inside_lora = {f"{n}.base_layer" for n in lora_layers(model)}
    targets = []
    for name, module in model.named_modules():
        if not name or not _matches(name, target_modules):
            continue
        if isinstance(module, LoRALinear) or name in inside_lora:
            raise ValueError(f"{name!r} is wrapped with LoRA already; call add_lora once per model "
                             f"(start again from a fresh copy of the base model to change the setting)")
        if _wrappable(module):
            targets.append(name)
    if not targets:
        linear = [n for n, m in model.named_modules() if _wrappable(m) and n not in inside_lora]
        suffixes = sorted({n.split(".")[-1] for n in linear})
        raise ValueError(f"target_modules={target_modules!r} matches no linear layer. Linear layers are "
                         f"named like {linear[:6]}{' ...' if len(linear) > 6 else ''}; their last parts are "
                         f"{suffixes}")
    return targets


def _check_rank(r: int, name: str, layer: nn.Module) -> None:
    d_in, d_out = _shape(layer)
    if r > min(d_in, d_out):
        raise ValueError(f"r = {r} is larger than {name!r} allows: a {d_out} x {d_in} weight has rank at "
                         f"most {min(d_in, d_out)}, and a low-rank update should stay well below that")


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` where ``model.get_submodule(name)`` is."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def _require_lora(model) -> dict[str, LoRALinear]:
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRA layers; call add_lora(model, target_modules) first")
    return layers


def merge_lora(model: nn.Module) -> nn.Module:
    """W0 <- W0 + s·B A (DoRA: g ⊙ (W0 + s·B A)) in every LoRA layer: inference then costs what the
    base costs. Refused, before anything changes, when a base weight is 4-bit (see QLoRA)."""
    layers = _require_lora(model)
    quantized = [name for name, layer in layers.items() if _is_quantized(layer.base_layer) and not layer.merged]
    if quantized:
        raise ValueError(f"{quantized[0]!r}: {_QUANTIZED_MERGE}")
    for layer in layers.values():
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Restore every W0 exactly as it was before ``merge_lora``."""
    for layer in _require_lora(model).values():
        layer.unmerge()
    return model


def mark_only_lora_as_trainable(model: nn.Module) -> nn.Module:
    return mark_only_trainable(model, lambda name: any(k in name for k in LORA_NAMES))


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the trainable LoRA tensors, keyed by their names in ``model`` as peft keys them: A and B
    as ``<layer>.lora_A.weight``, DoRA's magnitude as ``<layer>.lora_magnitude_vector``."""
    out = {}
    for name, layer in _require_lora(model).items():
        out[f"{name}.lora_A.weight"] = layer.lora_A.detach()
        out[f"{name}.lora_B.weight"] = layer.lora_B.detach()
        if layer.use_dora:
            out[f"{name}.lora_magnitude_vector"] = layer.lora_magnitude_vector.detach()
    return out


# ----------------------------------------------------------------------------- LoRA+
def lora_plus_param_groups(model: nn.Module, lr: float, ratio: float = 16.0, weight_decay: float = 0.0) -> list[dict]:
    """Optimizer parameter groups for LoRA+ (Hayou et al., 2024): η_B = ratio · η_A, η_A = ``lr``.

    With B = 0 at the start and A random, the two matrices play different roles, and one learning rate
    for both is inefficient when the width is large; ratio = 16 (2⁴) is the paper's rule of thumb.
    The grouping follows peft's ``create_loraplus_optimizer``: lora_B and every other 1-D trainable
    tensor (DoRA's m, biases) learn at ratio · lr; A and the other matrices at lr. ``weight_decay``
    applies to the matrices and to m, not to biases or other vectors.

        torch.optim.AdamW(lora_plus_param_groups(model, lr=2e-4), lr=2e-4)
    """
    positive_number(lr, "lr", "it is the learning rate of A (B gets ratio · lr)")
    positive_number(ratio, "ratio", "it is η_B / η_A; the LoRA+ paper uses 16")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
    _require_lora(model)
    groups = {"A": [], "B": [], "B_no_decay": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if "lora_B" in name or "lora_magnitude_vector" in name:
            groups["B"].append(p)
        elif p.ndim == 1:
            groups["B_no_decay"].append(p)                      # biases, norm weights: no decay (peft too)
        else:
            groups["A"].append(p)
    if not any(groups.values()):
        raise ValueError("the model has no trainable parameters; mark_only_lora_as_trainable(model) first")
    settings = {"A": (lr, weight_decay), "B": (ratio * lr, weight_decay), "B_no_decay": (ratio * lr, 0.0)}
    return [{"name": g, "params": ps, "lr": settings[g][0], "weight_decay": settings[g][1]}
            for g, ps in groups.items() if ps]


# ----------------------------------------------------------------------------- PEFT's file format
def save_lora(model: nn.Module, path) -> Path:
    """Write ``path/adapter_config.json`` and ``path/adapter_model.safetensors`` as PEFT does,
    so ``peft.PeftModel.from_pretrained(base_model, path)`` loads them.

    PiSSA / OLoRA: the file holds A and B only, as peft's does; the residual W_res is recomputed from
    the original base model when the adapter is loaded (the truncated SVD or QR of W0 is unique up to
    signs, which cancel in B A, as long as W0 has full rank and σ_r > σ_r+1; on another machine, up to
    float rounding). Load it into the original base model, not into the residual one."""
    layers = _require_lora(model)
    settings = {(l.r, l.alpha, l.lora_dropout.p if isinstance(l.lora_dropout, nn.Dropout) else 0.0,
                 l.use_rslora, l.use_dora, l.init) for l in layers.values()}
    if len(settings) != 1:
        raise ValueError(f"the LoRA layers have different (r, alpha, dropout, use_rslora, use_dora, init) settings "
                         f"{sorted(settings)}; the PEFT format written here needs one setting for all")
    (r, alpha, dropout, use_rslora, use_dora, init), = settings
    if init == "olora" and any(l.fan_in_fan_out for l in layers.values()):
        warnings.warn("OLoRA on Conv1D layers: llmtap loads this adapter back, but peft (0.21) computes OLoRA on "
                      "Conv1D's stored d_in x d_out layout and cannot reproduce its residual", stacklevel=2)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {PEFT_PREFIX + k: v.contiguous() for k, v in lora_state_dict(model).items()}
    save_file(tensors, str(path / WEIGHTS_NAME), metadata={"format": "pt"})
    name_or_path = getattr(getattr(model, "config", None), "_name_or_path", None) or None
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": name_or_path,
              "r": r, "lora_alpha": alpha, "lora_dropout": dropout, "target_modules": sorted(layers),
              "fan_in_fan_out": any(l.fan_in_fan_out for l in layers.values()), "bias": "none",
              "inference_mode": True, "init_lora_weights": init, "use_rslora": use_rslora, "use_dora": use_dora,
              "modules_to_save": None, "layers_to_transform": None, "rank_pattern": {}, "alpha_pattern": {}}
    (path / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    return path


def load_lora(model: nn.Module, path) -> nn.Module:
    """Load a PEFT-format LoRA adapter (saved by llmtap or by peft) into ``model``.

    A model without LoRA layers is wrapped first, as the adapter's config says (for PiSSA / OLoRA this
    turns the original weights into the residual, as peft does). Every key must fit: a missing,
    unexpected or wrongly shaped tensor is an error that names it."""
    path = Path(path)
    config = _read_lora_config(path)
    init, use_dora, use_rslora = config["init"], bool(config.get("use_dora")), bool(config.get("use_rslora"))
    for name, layer in lora_layers(model).items():
        if layer.merged:
            raise ValueError(f"{name!r} is merged; unmerge_lora(model) before loading another adapter")
        _check_fits(name, layer, path, config)
    weights_file = path / WEIGHTS_NAME
    try:
        tensors = load_file(str(weights_file))
    except SafetensorError as e:
        raise ValueError(f"{weights_file} is not a readable safetensors file: {e}") from e
    if not lora_layers(model):
        add_lora(model, config["target_modules"], config["r"], config["lora_alpha"], config.get("lora_dropout", 0.0),
                 use_rslora=use_rslora, use_dora=use_dora, init=init)
    tensors = {k.replace(".default.", "."): v for k, v in tensors.items()}    # PEFT may name the adapter "default"
    copy_strict({PEFT_PREFIX + k: v for k, v in lora_state_dict(model).items()}, tensors, f"the adapter in {path}")
    for layer in lora_layers(model).values():
        layer.alpha, layer.use_rslora = config["lora_alpha"], use_rslora
        layer.scaling = _scaling(layer.r, layer.alpha, use_rslora)
    return model


def _check_fits(name: str, layer: LoRALinear, path: Path, config: dict) -> None:
    """An adapter loaded into LoRA layers that exist already must agree on what its tensors mean."""
    fresh = "load it into a fresh copy of the base model instead (load_lora wraps it as the config says)"
    use_dora = bool(config.get("use_dora"))
    if layer.use_dora != use_dora:
        raise ValueError(f"the adapter in {path} has use_dora={use_dora}, but {name!r} has use_dora={layer.use_dora}; "
                         f"{fresh}")
    if layer.init != config["init"]:
        raise ValueError(f"the adapter in {path} was initialised with {config['init']!r} and {name!r} with "
                         f"{layer.init!r}; PiSSA and OLoRA change the base weight, so the two do not fit; {fresh}")
    scaling = _scaling(layer.r, config["lora_alpha"], bool(config.get("use_rslora")))
    if layer.init == "olora" and scaling != layer.scaling:
        raise ValueError(f"{name!r} holds the OLoRA residual W0 - s·B A for s = {layer.scaling}, and the adapter in "
                         f"{path} has s = {scaling}; {fresh}")


def _read_lora_config(path: Path) -> dict:
    """adapter_config.json of a PEFT LoRA folder, refusing the PEFT options not implemented here;
    ``config["init"]`` is the llmtap name of its init_lora_weights."""
    config_file, weights_file = path / CONFIG_NAME, path / WEIGHTS_NAME
    for f in (config_file, weights_file):
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing; a PEFT LoRA adapter is a folder with {CONFIG_NAME} and {WEIGHTS_NAME}")
    config = json.loads(config_file.read_text())
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{config_file} describes a {config.get('peft_type')!r} adapter, not LORA")
    unsupported = {k: config[k] for k in ("rank_pattern", "alpha_pattern", "layers_to_transform", "modules_to_save",
                                          "lora_bias") if config.get(k)}
    if config.get("bias", "none") != "none":
        unsupported["bias"] = config["bias"]
    if unsupported:
        raise ValueError(f"this adapter uses PEFT options llmtap does not implement: {unsupported}")
    init = config.get("init_lora_weights", True)
    if init in (True, False, "gaussian"):       # A and B are read from the file: how they started does not matter
        config["init"] = "gaussian"
    elif init in ("pissa", "olora"):            # these also changed the base weights: the residual is recomputed
        config["init"] = init
    else:
        raise ValueError(f"{config_file}: init_lora_weights={init!r} is not implemented here (llmtap loads "
                         f"True, False, 'gaussian', 'pissa' and 'olora'); for 'pissa_niter_...' (a randomised SVD) "
                         f"the residual cannot be recomputed exactly: convert the adapter to plain LoRA in peft")
    return config
