"""Prefix tuning and prompt tuning: trainable vectors in front of the input (LLM-TAP 5.2).

**Prefix tuning** (Li & Liang, 2021) gives every layer l its own trainable keys and values
P_k^l, P_v^l (n_prefix of each, per head). Attention at layer l then reads

    softmax(q [P_k^l ; K]ᵀ / sqrt(d)) [P_v^l ; V]

every token sees all prefix entries, and the tokens among themselves stay causal. Here the
prefix is pre-filled into the model's ``KVCache``, so it takes position numbers 0 .. n_prefix-1
and the text starts after it. Li & Liang found training more stable when the prefix is
reparametrised as P = MLP(P') with a smaller P'; after training the MLP is evaluated once and
``fold_prefix`` keeps only the resulting plain prefix.

**Prompt tuning** (Lester et al., 2021) is the lightest variant: n_tokens trainable vectors, a
soft prompt (软提示), put in front of the input embeddings only, at the first layer.

Both take up positions of the context window: with a prefix of P entries the input can be at
most block_size - P tokens long (``usable_length``), and a longer input is an error. Both work
with the course ``GPT``, whose ``prefix_tuning`` and ``prompt_tuning`` slots they fill (the
model reads them in its forward pass); Hugging Face models get adapters or LoRA instead.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import save_file

from .checkpoints import copy_strict, read_checkpoint
from .model import GPT, KVCache
from .train import mark_only_trainable
from .validate import one_of, positive_int

PREFIX_FORMAT = "llmtap-prefix"
INITS = ("random", "vocab", "text")


class PrefixKV(nn.Module):
    """Trainable keys and values for every layer, kv of shape (n_layer, 2, n_head, n_prefix, head_dim).

    With ``reparam_hidden`` the prefix is P = MLP(P') with P' (n_prefix, n_embd) and
    MLP = Linear(n_embd, hidden) -> tanh -> Linear(hidden, n_layer * 2 * n_embd)."""

    def __init__(self, n_layer: int, n_head: int, head_dim: int, n_prefix: int, reparam_hidden: int | None = None,
                 init_kv: torch.Tensor | None = None):
        super().__init__()
        self.shape = (n_layer, 2, n_head, n_prefix, head_dim)
        self.n_prefix, self.reparam_hidden = n_prefix, reparam_hidden
        if reparam_hidden is None:
            self.kv = nn.Parameter(torch.randn(self.shape) if init_kv is None else init_kv.detach().clone())
            self.prefix_embedding, self.mlp = None, None
        else:
            d = n_head * head_dim
            self.kv = None
            self.prefix_embedding = nn.Parameter(torch.randn(n_prefix, d))           # P'
            self.mlp = nn.Sequential(nn.Linear(d, reparam_hidden), nn.Tanh(),
                                     nn.Linear(reparam_hidden, n_layer * 2 * d))

    def extra_repr(self) -> str:
        return f"n_prefix={self.n_prefix}, shape={self.shape}, reparam_hidden={self.reparam_hidden}"

    def key_values(self) -> torch.Tensor:
        """The prefix as (n_layer, 2, n_head, n_prefix, head_dim)."""
        if self.mlp is None:
            return self.kv
        L, _, H, P, hd = self.shape
        out = self.mlp(self.prefix_embedding)                       # P = MLP(P'), (n_prefix, n_layer * 2 * d)
        return out.view(P, L, 2, H, hd).permute(1, 2, 3, 0, 4)

    def fill(self, cache: KVCache) -> KVCache:
        """Put the prefix into an empty ``cache`` (batch 1; the cache expands it to any batch)."""
        if len(cache):
            raise ValueError("the prefix goes into an empty KVCache; this one already has entries")
        kv = self.key_values()
        for layer in range(self.shape[0]):
            cache.keys[layer], cache.values[layer] = kv[layer, 0][None], kv[layer, 1][None]
        cache.n_prefix = self.n_prefix
        return cache

    @torch.no_grad()
    def fold(self) -> None:
        """Evaluate the MLP once and keep only the plain prefix (for inference or saving)."""
        if self.mlp is None:
            return
        self.kv = nn.Parameter(self.key_values().detach().clone())
        self.prefix_embedding, self.mlp, self.reparam_hidden = None, None, None


class SoftPrompt(nn.Module):
    """n_tokens trainable input embeddings, put in front of the token embeddings."""

    def __init__(self, embeddings: torch.Tensor):
        super().__init__()
        self.embeddings = nn.Parameter(embeddings.detach().clone())   # (n_tokens, n_embd)

    @property
    def n_tokens(self) -> int:
        return self.embeddings.shape[0]

    def extra_repr(self) -> str:
        return f"n_tokens={self.n_tokens}, n_embd={self.embeddings.shape[1]}"


# ----------------------------------------------------------------------------- checks and initialisation
def _require_course_gpt(model, what: str) -> None:
    if not isinstance(model, GPT):
        raise TypeError(f"{what} works with the course GPT only (it pre-fills llmtap's KVCache / soft prompt); "
                        f"got {type(model).__name__}. For a Hugging Face model use llmtap.adapters.add_adapters "
                        f"or llmtap.lora.add_lora")


def _check_length(n, what: str, block_size: int, taken: int) -> None:
    positive_int(n, what)
    if n + taken >= block_size:
        raise ValueError(f"{what} = {n} leaves no room for input: the context window holds {block_size} positions "
                         f"and {taken + n} would be taken by prefix/soft prompt. Use {what} < {block_size - taken}")


def _check_init(init, init_text, tokenizer) -> None:
    one_of(init, "init", INITS)
    if init == "text" and (not isinstance(init_text, str) or not init_text):
        raise ValueError("init='text' needs init_text, a non-empty string (e.g. the task's instruction)")
    if init in ("vocab", "text") and tokenizer is None:
        raise ValueError(f"init={init!r} needs the tokenizer (tokenizer=...)")


def text_token_ids(tokenizer, text: str, n_tokens: int | None = None) -> list[int]:
    """The ids of ``text``, repeated or cut to ``n_tokens``; an error for characters the tokenizer
    lacks (their bytes would be tokens the model hardly ever saw)."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"text must be a non-empty string, got {text!r}")
    missing = sorted({c for c in text if c not in tokenizer.char_to_id})
    if missing:
        raise ValueError(f"the tokenizer has no token for the characters {missing} of {text!r}; write the init "
                         f"text with characters it knows (for the course model: llmtap.corpus.alphabet())")
    ids = tokenizer.encode(text)
    n = len(ids) if n_tokens is None else n_tokens
    return [ids[i % len(ids)] for i in range(n)]                 # tile, then cut


def vocab_token_ids(tokenizer, n_tokens: int, seed: int = 0) -> list[int]:
    """``n_tokens`` ids drawn at random from the tokenizer's characters (no bytes, no special tokens)."""
    known = list(tokenizer.char_to_id.values())
    g = torch.Generator().manual_seed(seed)
    return [known[i] for i in torch.randint(len(known), (n_tokens,), generator=g).tolist()]


def soft_prompt_from_text(embedding_weight: torch.Tensor, tokenizer, text: str, n_tokens: int | None = None):
    """A soft prompt initialised from ``text``: the embedding rows of its tokens, (n_tokens, n_embd)."""
    ids = torch.tensor(text_token_ids(tokenizer, text, n_tokens), device=embedding_weight.device)
    return embedding_weight.detach()[ids].clone()


@torch.no_grad()
def prefix_from_tokens(model: GPT, ids: list[int]) -> torch.Tensor:
    """A prefix initialised from real activations: the keys and values ``model`` computes for
    ``ids`` at positions 0 .. len(ids)-1, as (n_layer, 2, n_head, len(ids), head_dim)."""
    cache = KVCache(model.config.n_layer)
    model(torch.tensor([ids], device=model.device), cache=cache)
    return torch.stack([torch.stack([k[0], v[0]]) for k, v in zip(cache.keys, cache.values)])


def _initial_ids(tokenizer, init, init_text, n, seed):
    return text_token_ids(tokenizer, init_text, n) if init == "text" else vocab_token_ids(tokenizer, n, seed)


# ----------------------------------------------------------------------------- attaching to a model
def _is_peft_param(name: str) -> bool:
    return name.startswith("prefix_tuning.") or name.startswith("prompt_tuning.")


def add_prefix_tuning(model: GPT, n_prefix: int = 10, reparam_hidden: int | None = None, init: str = "random",
                      init_text: str | None = None, tokenizer=None, seed: int = 0) -> GPT:
    """Give ``model`` trainable key/value prefixes at every layer, freeze everything else, return it.

    ``init``: "random" (Gaussian), "vocab" (the keys/values the model computes for random
    characters) or "text" (for ``init_text``, tiled or cut to n_prefix). ``reparam_hidden``: train
    through an MLP of that hidden width (random init only); ``fold_prefix`` removes it afterwards."""
    _require_course_gpt(model, "prefix tuning")
    if model.prefix_tuning is not None:
        raise ValueError("the model has a prefix already; call add_prefix_tuning once per model")
    soft = model.prompt_tuning
    _check_length(n_prefix, "n_prefix", model.config.block_size, 0 if soft is None else soft.n_tokens)
    _check_init(init, init_text, tokenizer)
    if reparam_hidden is not None:
        positive_int(reparam_hidden, "reparam_hidden", "or None to train the prefix directly")
        if init != "random":
            raise ValueError(f"init={init!r} sets the prefix itself; with reparam_hidden the prefix is MLP(P') "
                             f"and only init='random' applies")
    if init != "random" and soft is not None:
        raise ValueError(f"init={init!r} runs the model to compute the prefix; add the prefix before the soft prompt")
    cfg, w = model.config, model.wte.weight
    init_kv = None if init == "random" else prefix_from_tokens(model, _initial_ids(tokenizer, init, init_text,
                                                                                    n_prefix, seed))
    with torch.random.fork_rng(devices=[]):           # seeded, without touching the global random state
        torch.manual_seed(seed)
        model.prefix_tuning = PrefixKV(cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, n_prefix, reparam_hidden,
                                       init_kv).to(w.device, w.dtype)
    return mark_only_trainable(model, _is_peft_param)


def fold_prefix(model: GPT) -> GPT:
    """Replace the reparametrisation MLP by the plain prefix it computes (nothing to do without one)."""
    if model.prefix_tuning is None:
        raise ValueError("the model has no prefix; call add_prefix_tuning first")
    model.prefix_tuning.fold()
    return mark_only_trainable(model, _is_peft_param)


def add_prompt_tuning(model: GPT, n_tokens: int | None = 10, init: str = "random", init_text: str | None = None,
                      tokenizer=None, seed: int = 0) -> GPT:
    """Give ``model`` a trainable soft prompt of ``n_tokens`` input vectors, freeze the rest, return it.

    ``init``: "random" (Gaussian with the embedding table's std), "vocab" (embeddings of random
    characters) or "text" (the embeddings of ``init_text``; n_tokens=None takes its length)."""
    _require_course_gpt(model, "prompt tuning")
    if model.prompt_tuning is not None:
        raise ValueError("the model has a soft prompt already; call add_prompt_tuning once per model")
    _check_init(init, init_text, tokenizer)
    if n_tokens is None:
        if init != "text":
            raise ValueError("n_tokens=None (the length of init_text) needs init='text'")
        n_tokens = len(text_token_ids(tokenizer, init_text))
    prefix = model.prefix_tuning
    _check_length(n_tokens, "n_tokens", model.config.block_size, 0 if prefix is None else prefix.n_prefix)
    w = model.wte.weight
    if init == "random":
        g = torch.Generator().manual_seed(seed)
        embeddings = torch.randn(n_tokens, w.shape[1], generator=g) * w.detach().float().std().cpu()
    else:
        ids = _initial_ids(tokenizer, init, init_text, n_tokens, seed)
        embeddings = w.detach()[torch.tensor(ids, device=w.device)]
    model.prompt_tuning = SoftPrompt(embeddings).to(w.device, w.dtype)
    return mark_only_trainable(model, _is_peft_param)


def usable_length(model: GPT) -> int:
    """How many tokens of input fit the context window once the prefix and soft prompt take theirs."""
    _require_course_gpt(model, "usable_length")
    return model.config.block_size - model.n_virtual


# ----------------------------------------------------------------------------- saving and loading
def _modules(model) -> dict[str, nn.Module]:
    return {n: m for n in ("prefix_tuning", "prompt_tuning") if (m := getattr(model, n)) is not None}


def save_prefix(model: GPT, path) -> Path:
    """Write the prefix and/or soft prompt (only them) to a safetensors file; a reparametrised
    prefix is folded first, so the file holds what inference uses."""
    modules = _modules(model)
    if not modules:
        raise ValueError("the model has no prefix or soft prompt; call add_prefix_tuning or add_prompt_tuning first")
    if "prefix_tuning" in modules:
        fold_prefix(model)
    tensors = {f"{n}.{k}": v.detach().contiguous().cpu() for n, m in modules.items() for k, v in m.state_dict().items()}
    config = {"n_prefix": modules["prefix_tuning"].n_prefix if "prefix_tuning" in modules else 0,
              "n_tokens": modules["prompt_tuning"].n_tokens if "prompt_tuning" in modules else 0}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": PREFIX_FORMAT, "config": json.dumps(config)})
    return path


def load_prefix(model: GPT, path) -> GPT:
    """Load a file written by ``save_prefix`` into ``model`` (a fresh course GPT, or one with the same
    prefix/soft-prompt sizes). A missing, unexpected or wrongly shaped tensor is an error that names it."""
    _require_course_gpt(model, "load_prefix")
    tensors, meta = read_checkpoint(path)
    if meta.get("format") != PREFIX_FORMAT:
        raise ValueError(f"{path} is a safetensors file but not an llmtap prefix (format {meta.get('format')!r})")
    config = json.loads(meta["config"])
    if config["n_prefix"] and model.prefix_tuning is None:
        add_prefix_tuning(model, config["n_prefix"])
    if config["n_tokens"] and model.prompt_tuning is None:
        add_prompt_tuning(model, config["n_tokens"])
    if "prefix_tuning" in _modules(model):
        fold_prefix(model)
    expected = {f"{n}.{k}": v for n, m in _modules(model).items() for k, v in m.state_dict().items()}
    copy_strict(expected, tensors, str(path))
    return model
