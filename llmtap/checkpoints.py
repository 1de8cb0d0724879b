"""Checkpoint files: the course model and its tokenizer in one safetensors file, and the strict
copy every loader of the library shares.

A safetensors file holds named tensors and a small dictionary of strings; nothing in it is
executed on loading, unlike a pickled ``.pt``/``.bin`` file. The model's config and its
tokenizer's characters and words go into that dictionary, so one file rebuilds both.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .model import GPT, GPTConfig
from .tokenizer import Tokenizer

COURSE_MODEL_PATH = Path(__file__).parent / "data" / "course_model.safetensors"
MODEL_FORMAT = "llmtap-gpt"


def _stored_tensors(model: GPT) -> dict[str, torch.Tensor]:
    """The model's state dict without ``lm_head.weight``: it is tied to ``wte.weight``, stored once."""
    return {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}


def save_checkpoint(model: GPT, path, tokenizer: Tokenizer | None = None, extra: dict | None = None) -> None:
    """Write the model as safetensors; its config (and tokenizer) go in the file's metadata."""
    state = {k: v.detach().contiguous().cpu() for k, v in _stored_tensors(model).items()}
    meta = {"format": MODEL_FORMAT, "config": json.dumps(model.config.to_dict())}
    if tokenizer is not None:
        meta["tokenizer"] = "".join(tokenizer.chars)
        if tokenizer.words:
            meta["tokenizer_words"] = " ".join(tokenizer.words)
    if extra:
        meta["extra"] = json.dumps(extra, ensure_ascii=False)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=meta)


def read_checkpoint(path) -> tuple[dict, dict]:
    """(tensors, metadata) of a safetensors file, with a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a safetensors file ({e}). llmtap reads and writes only "
                         f"safetensors; it never unpickles .pt/.bin files.") from None
    return tensors, meta


def load_checkpoint(path, device=None) -> tuple[GPT, Tokenizer | None]:
    """Rebuild the model (and tokenizer, when stored) from a file written by ``save_checkpoint``."""
    tensors, meta = read_checkpoint(path)
    if meta.get("format") != MODEL_FORMAT or "config" not in meta:
        raise ValueError(f"{path} is a safetensors file but not an llmtap model checkpoint "
                         f"(metadata has no {MODEL_FORMAT} config)")
    model = GPT(GPTConfig(**json.loads(meta["config"])))
    copy_strict(_stored_tensors(model), tensors, str(path))
    tokenizer = Tokenizer(meta["tokenizer"], meta.get("tokenizer_words", "").split()) if "tokenizer" in meta else None
    return model.to(device or "cpu").eval(), tokenizer


def load_course_model(device=None) -> tuple[GPT, Tokenizer]:
    """The shipped course model and its tokenizer, loaded offline from the package: (model, tokenizer)."""
    if not COURSE_MODEL_PATH.is_file():
        raise FileNotFoundError(f"the course model checkpoint is missing at {COURSE_MODEL_PATH}; "
                                f"rebuild it with `python -m llmtap.pretrain`")
    return load_checkpoint(COURSE_MODEL_PATH, device=device)


def copy_strict(expected: dict[str, torch.Tensor], tensors: dict, source: str) -> None:
    """Copy ``tensors`` into the tensors of ``expected`` in place (same keys, same shapes), or
    raise a ValueError that names what differs. Loading only the keys that happen to fit would
    leave part of the model at its random initialisation, silently."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong_shape = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
                   for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape]
    problems = [f"{what} {_first_few(keys)}" for what, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shape:", wrong_shape)) if keys]
    if problems:
        raise ValueError(f"{source} does not fit this model: " + "; ".join(problems))
    with torch.no_grad():
        for k, v in expected.items():
            v.copy_(tensors[k])


def _first_few(items: list[str], n: int = 4) -> str:
    return f"{items[:n]}{' ...' if len(items) > n else ''}"
