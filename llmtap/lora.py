"""LoRA: low-rank adaptation (LLM-TAP 5.2; Hu et al., 2021).

A frozen weight W0 (d_out x d_in) gets a trainable update of rank r:

    h = W0 x + ΔW x = W0 x + (alpha / r) · B A x,     A: r x d_in (Gaussian),  B: d_out x r (zeros)

B = 0 at the start, so the wrapped model computes exactly what the base model does. The update
is applied as (x Aᵀ) Bᵀ: two thin matrix products, never the full d_out x d_in matrix B A.
For inference B A can be merged into W0 (no extra cost at all); unmerging puts back the
original W0 bit for bit, because the original is kept rather than recomputed as W0 + ΔW - ΔW.

Works on ``nn.Linear`` and on Hugging Face GPT-2's ``Conv1D`` (weight stored as d_in x d_out),
and saves and loads adapters in PEFT's format (adapter_config.json + adapter_model.safetensors).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .checkpoints import copy_strict
from .train import mark_only_trainable
from .validate import positive_int, positive_number

CONFIG_NAME, WEIGHTS_NAME = "adapter_config.json", "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."        # PEFT's key prefix in adapter_model.safetensors


def _is_conv1d(module) -> bool:
    """Hugging Face GPT-2's Conv1D: a linear layer whose weight is stored transposed, (d_in, d_out)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def _wrappable(module) -> bool:
    return isinstance(module, nn.Linear) or _is_conv1d(module)


def _shape(module) -> tuple[int, int]:
    """(d_in, d_out) of a linear layer or a Conv1D."""
    if _is_conv1d(module):
        return module.weight.shape[0], module.weight.shape[1]
    return module.in_features, module.out_features


class LoRALinear(nn.Module):
    """A frozen linear layer plus the low-rank update (alpha / r) · B A."""

    def __init__(self, base_layer: nn.Module, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        d_in, d_out = _shape(base_layer)
        self.base_layer, self.r, self.alpha, self.scaling = base_layer, r, alpha, alpha / r
        self.fan_in_fan_out = _is_conv1d(base_layer)
        w = base_layer.weight
        # A ~ N(0, 1/r^2) (the paper: "a random Gaussian"; peft's init_lora_weights="gaussian"; loralib
        # and peft's default draw A Kaiming-uniform instead), B = 0 so that ΔW = B A = 0 at the start
        self.lora_A = nn.Parameter(torch.randn(r, d_in, device=w.device, dtype=w.dtype) / r)
        self.lora_B = nn.Parameter(torch.zeros(d_out, r, device=w.device, dtype=w.dtype))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.register_buffer("original_weight", None, persistent=False)    # W0 while merged

    def extra_repr(self) -> str:
        d_in, d_out = _shape(self.base_layer)
        return f"d_in={d_in}, d_out={d_out}, r={self.r}, alpha={self.alpha}, merged={self.merged}"

    def delta_weight(self) -> torch.Tensor:
        """ΔW = (alpha / r) · B A, in the layout of the base weight (transposed for Conv1D)."""
        delta = (self.lora_B @ self.lora_A) * self.scaling
        return delta.T if self.fan_in_fan_out else delta

    def forward(self, x):
        h = self.base_layer(x)                                            # W0 x
        if self.merged:
            return h
        # (x Aᵀ) Bᵀ: cost r·(d_in + d_out) per token instead of d_in·d_out for B A
        update = (self.lora_dropout(x) @ self.lora_A.T.to(x.dtype)) @ self.lora_B.T.to(x.dtype)
        return h + update.to(h.dtype) * self.scaling

    @torch.no_grad()
    def merge(self):
        if self.merged:
            return
        w = self.base_layer.weight
        self.original_weight = w.detach().clone()
        w.add_(self.delta_weight().to(w.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self):
        if not self.merged:
            return
        self.base_layer.weight.copy_(self.original_weight)     # bit-exact: no subtraction
        self.original_weight = None
        self.merged = False


# ----------------------------------------------------------------------------- wrapping a model
def _matches(name: str, target_modules) -> bool:
    """PEFT's rule: a string is a regular expression matched against the full module name;
    a list matches a module whose name equals an entry or ends with "." + entry."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, name) is not None
    return any(name == t or name.endswith("." + t) for t in target_modules)


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def add_lora(model: nn.Module, target_modules, r: int = 8, alpha: float = 16, dropout: float = 0.0) -> nn.Module:
    """Wrap every linear layer of ``model`` that ``target_modules`` names with LoRA, freeze all
    other parameters, and return the model.

    ``target_modules``: a list of names, each matching a module's full name or its last dotted
    parts (``"c_attn"``, ``"attn.c_attn"``), or one string used as a regular expression on full names.
    """
    positive_int(r, "r (the rank)")
    positive_number(alpha, "alpha", "the update is scaled by alpha / r")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    targets = _targets(model, target_modules)
    for name in targets:
        _check_rank(r, name, model.get_submodule(name))
    mark_only_lora_as_trainable(model)
    for name in targets:
        _set_submodule(model, name, LoRALinear(model.get_submodule(name), r, alpha, dropout))
    return model


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
    """W0 <- W0 + (alpha / r) B A in every LoRA layer: inference then costs what the base costs."""
    for layer in _require_lora(model).values():
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Restore every W0 exactly as it was before ``merge_lora``."""
    for layer in _require_lora(model).values():
        layer.unmerge()
    return model


def mark_only_lora_as_trainable(model: nn.Module) -> nn.Module:
    return mark_only_trainable(model, lambda name: "lora_A" in name or "lora_B" in name)


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the LoRA matrices, keyed by their names in ``model``."""
    return {f"{name}.{ab}.weight": getattr(layer, ab).detach() for name, layer in _require_lora(model).items()
            for ab in ("lora_A", "lora_B")}


# ----------------------------------------------------------------------------- PEFT's file format
def save_lora(model: nn.Module, path) -> Path:
    """Write ``path/adapter_config.json`` and ``path/adapter_model.safetensors`` as PEFT does,
    so ``peft.PeftModel.from_pretrained(base_model, path)`` loads them."""
    layers = _require_lora(model)
    settings = {(l.r, l.alpha, l.lora_dropout.p if isinstance(l.lora_dropout, nn.Dropout) else 0.0)
                for l in layers.values()}
    if len(settings) != 1:
        raise ValueError(f"the LoRA layers have different (r, alpha, dropout) settings {sorted(settings)}; "
                         f"the PEFT format written here needs one setting for all")
    (r, alpha, dropout), = settings
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {PEFT_PREFIX + k: v.contiguous() for k, v in lora_state_dict(model).items()}
    save_file(tensors, str(path / WEIGHTS_NAME), metadata={"format": "pt"})
    name_or_path = getattr(getattr(model, "config", None), "_name_or_path", None) or None
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": name_or_path,
              "r": r, "lora_alpha": alpha, "lora_dropout": dropout, "target_modules": sorted(layers),
              "fan_in_fan_out": any(l.fan_in_fan_out for l in layers.values()), "bias": "none",
              "inference_mode": True, "init_lora_weights": True, "use_rslora": False, "use_dora": False,
              "modules_to_save": None, "layers_to_transform": None, "rank_pattern": {}, "alpha_pattern": {}}
    (path / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    return path


def load_lora(model: nn.Module, path) -> nn.Module:
    """Load a PEFT-format LoRA adapter (saved by llmtap or by peft) into ``model``.

    A model without LoRA layers is wrapped first, as the adapter's config says. Every key must
    fit: a missing, unexpected or wrongly shaped tensor is an error that names it."""
    path = Path(path)
    config = _read_lora_config(path)
    weights_file = path / WEIGHTS_NAME
    try:
        tensors = load_file(str(weights_file))
    except SafetensorError as e:
        raise ValueError(f"{weights_file} is not a readable safetensors file: {e}") from e
    if not lora_layers(model):
        add_lora(model, config["target_modules"], config["r"], config["lora_alpha"], config.get("lora_dropout", 0.0))
    for name, layer in lora_layers(model).items():
        if layer.merged:
            raise ValueError(f"{name!r} is merged; unmerge_lora(model) before loading another adapter")
    tensors = {k.replace(".default.", "."): v for k, v in tensors.items()}    # PEFT may name the adapter "default"
    copy_strict({PEFT_PREFIX + k: v for k, v in lora_state_dict(model).items()}, tensors, f"the adapter in {path}")
    for layer in lora_layers(model).values():
        layer.alpha = config["lora_alpha"]
        layer.scaling = layer.alpha / layer.r
    return model


def _read_lora_config(path: Path) -> dict:
    """adapter_config.json of a PEFT LoRA folder, refusing the PEFT options not implemented here."""
    config_file, weights_file = path / CONFIG_NAME, path / WEIGHTS_NAME
    for f in (config_file, weights_file):
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing; a PEFT LoRA adapter is a folder with {CONFIG_NAME} and {WEIGHTS_NAME}")
    config = json.loads(config_file.read_text())
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{config_file} describes a {config.get('peft_type')!r} adapter, not LORA")
    unsupported = {k: config[k] for k in ("use_dora", "use_rslora", "rank_pattern", "alpha_pattern",
                                          "layers_to_transform", "modules_to_save") if config.get(k)}
    if config.get("bias", "none") != "none":
        unsupported["bias"] = config["bias"]
    if unsupported:
        raise ValueError(f"this adapter uses PEFT options llmtap does not implement: {unsupported}")
    return config
