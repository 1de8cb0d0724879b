"""Adapters: small bottleneck layers inside each block (LLM-TAP 5.2; Houlsby et al., 2019).

An adapter takes a sub-layer's output h (width d) through a bottleneck of width m << d and adds
the result back to h:

    Adapter(h) = h + f(h W_down + b_down) W_up + b_up,     W_down: d x m,  W_up: m x d,  f = GELU

W_up and b_up start at zero, so every adapter is the identity at first and the adapted model
computes exactly what the base model does. Houlsby put two adapters in each block: after the
attention sub-layer and after the MLP, before each residual add:

    x <- x + Adapter(Attn(LN(x)))
    x <- x + Adapter(MLP(LN(x)))

Unlike LoRA, an adapter cannot be merged into a weight (f is nonlinear): it stays as two extra
matrix products per sub-layer at inference, which is what the latency measurements show.

``add_adapters`` fills the course model's ``adapter_attn`` / ``adapter_mlp`` slots, or wraps a
Hugging Face GPT-2's ``attn.c_proj`` and ``mlp.c_proj`` (the sub-layer outputs before the residual
adds). Adapters save to and load from a safetensors file.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

from .checkpoints import copy_strict, read_checkpoint
from .model import GPT
from .train import mark_only_trainable
from .validate import positive_int

__all__ = ["Adapter", "WithAdapter", "add_adapters", "adapter_layers", "adapter_state_dict", "load_adapters",
           "mark_only_adapters_as_trainable", "save_adapters"]

ADAPTER_FORMAT = "llmtap-adapters"


class Adapter(nn.Module):
    """h + f(h W_down + b_down) W_up + b_up: a residual bottleneck of width ``bottleneck``."""

    def __init__(self, d_model: int, bottleneck: int):
        super().__init__()
        positive_int(bottleneck, "bottleneck", meaning="the adapter's inner width m")
        self.d_model, self.bottleneck = d_model, bottleneck
        self.down = nn.Linear(d_model, bottleneck)             # W_down, b_down
        self.up = nn.Linear(bottleneck, d_model)               # W_up, b_up
        nn.init.normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)                         # W_up = 0, b_up = 0: identity at the start
        nn.init.zeros_(self.up.bias)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, bottleneck={self.bottleneck}"

    def forward(self, h):
        return h + self.up(F.gelu(self.down(h)))               # h + f(h W_down + b_down) W_up + b_up


class WithAdapter(nn.Module):
    """A layer followed by an adapter on its output: Adapter(layer(x)). Used on Hugging Face
    GPT-2, whose ``c_proj`` output is the sub-layer output right before the residual add."""

    def __init__(self, base_layer: nn.Module, adapter: Adapter):
        super().__init__()
        self.base_layer, self.adapter = base_layer, adapter

    def forward(self, x):
        return self.adapter(self.base_layer(x))


def _is_hf_gpt2(model) -> bool:
    return hasattr(model, "transformer") and hasattr(model.transformer, "h") and \
        all(hasattr(b, "attn") and hasattr(b, "mlp") for b in model.transformer.h)


def adapter_layers(model: nn.Module) -> dict[str, Adapter]:
    """Every adapter in ``model``, by its module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, Adapter)}


def _is_adapter_param(name: str) -> bool:
    return ".adapter_attn." in f".{name}" or ".adapter_mlp." in f".{name}" or ".adapter." in f".{name}"


def mark_only_adapters_as_trainable(model: nn.Module, train_layer_norms: bool = False) -> nn.Module:
    """Freeze everything but the adapters (and the layer norms, as Houlsby et al. also train them)."""
    norms = {f"{n}." for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)} if train_layer_norms else set()
    return mark_only_trainable(model, lambda name: _is_adapter_param(name) or
                               any(name.startswith(n) for n in norms))


def add_adapters(model: nn.Module, bottleneck: int = 16, train_layer_norms: bool = False) -> nn.Module:
    """Put a Houlsby adapter after the attention and after the MLP of every block of ``model``
    (the course ``GPT`` or a Hugging Face GPT-2), freeze everything else, and return the model."""
    positive_int(bottleneck, "bottleneck", meaning="the adapter's inner width m")
    if adapter_layers(model):
        raise ValueError("the model has adapters already; call add_adapters once per model")
    if isinstance(model, GPT):
        d = model.config.n_embd
        w = model.wte.weight
        for block in model.h:
            block.adapter_attn = Adapter(d, bottleneck).to(w.device, w.dtype)
            block.adapter_mlp = Adapter(d, bottleneck).to(w.device, w.dtype)
    elif _is_hf_gpt2(model):
        d = model.config.n_embd
        w = model.transformer.wte.weight
        for block in model.transformer.h:
            block.attn.c_proj = WithAdapter(block.attn.c_proj, Adapter(d, bottleneck).to(w.device, w.dtype))
            block.mlp.c_proj = WithAdapter(block.mlp.c_proj, Adapter(d, bottleneck).to(w.device, w.dtype))
    else:
        raise TypeError(f"add_adapters knows the course GPT and Hugging Face GPT-2 (blocks at "
                        f"model.transformer.h with .attn and .mlp); got {type(model).__name__}")
    return mark_only_adapters_as_trainable(model, train_layer_norms)


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapters' weights, keyed by their names in ``model``."""
    layers = adapter_layers(model)
    if not layers:
        raise ValueError("the model has no adapters; call add_adapters(model, bottleneck=...) first")
    return {f"{name}.{k}": v.detach() for name, layer in layers.items() for k, v in layer.state_dict().items()}


def save_adapters(model: nn.Module, path) -> Path:
    """Write the adapters (only them) to a safetensors file; the bottleneck goes in its metadata."""
    tensors = {k: v.contiguous().cpu() for k, v in adapter_state_dict(model).items()}
    (bottleneck,) = {layer.bottleneck for layer in adapter_layers(model).values()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": ADAPTER_FORMAT, "config": json.dumps({"bottleneck": bottleneck})})
    return path


def load_adapters(model: nn.Module, path) -> nn.Module:
    """Load adapters written by ``save_adapters`` into ``model`` (adding them first when it has
    none). A missing, unexpected or wrongly shaped tensor is an error that names it."""
    tensors, meta = read_checkpoint(path)
    if meta.get("format") != ADAPTER_FORMAT:
        raise ValueError(f"{path} is a safetensors file but not llmtap adapters (format {meta.get('format')!r})")
    if not adapter_layers(model):
        add_adapters(model, json.loads(meta["config"])["bottleneck"])
    copy_strict(adapter_state_dict(model), tensors, str(path))
    return model
