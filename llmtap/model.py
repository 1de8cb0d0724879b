"""The course model: a small decoder-only transformer (GPT) in plain PyTorch.

One config, four small classes (attention, MLP, block, model), and the seams the chapters use:

* every projection is an ``nn.Linear`` named like GPT-2's (``c_attn``, ``c_proj``, ``c_fc``),
  so LoRA can wrap it by name (chapter 02);
* each block has ``adapter_attn`` and ``adapter_mlp`` slots (identity by default) applied to a
  sub-layer's output before its residual add, where Houlsby adapters go (chapter 03);
* a ``KVCache`` holds past keys/values; the ``prefix_tuning`` slot (trainable keys/values that
  pre-fill the cache) and the ``prompt_tuning`` slot (soft-prompt vectors before the input) are
  empty until ``llmtap.prefix`` fills them (chapter 03);
* the position encoding is a config switch: learned, sinusoidal, rope, alibi or none (chapter 04);
* ``positions`` and ``document_ids`` run a packed batch, several examples per row, each example
  seeing only itself and starting at position 0 (chapter 06, ``llmtap.packing``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .packing import block_causal_mask, flex_attention_available, flex_block_mask
from .positions import (Rotary, alibi_flex_attention, alibi_score_mod, alibi_slopes, apply_rope, check_position_kind,
                        compiled_flex_attention, sinusoidal_table)
from .train import count_parameters
from .validate import positive_int


@dataclass
class GPTConfig:
    vocab_size: int = 512
    block_size: int = 256            # the context window the model is trained on
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True
    position: str = "learned"        # learned | sinusoidal | rope | alibi | none
    rope_base: float = 10000.0
    rope_scaling: dict | None = field(default=None)

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            positive_int(getattr(self, name), f"GPTConfig.{name}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        check_position_kind(self.position)
        if self.position == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"RoPE needs an even head size, got n_embd/n_head = {self.n_embd // self.n_head}")

    def to_dict(self) -> dict:
        return asdict(self)


class KVCache:
    """Past keys and values, one (B, H, T, head_dim) pair per layer.

    ``n_prefix`` counts entries that are not tokens (prefix-tuning vectors); they take up
    attention context and position numbers like tokens do.
    """

    def __init__(self, n_layer: int):
        self.keys: list[torch.Tensor | None] = [None] * n_layer
        self.values: list[torch.Tensor | None] = [None] * n_layer
        self.n_prefix = 0

    def __len__(self) -> int:
        return 0 if self.keys[0] is None else self.keys[0].shape[2]

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        if self.keys[layer] is not None:
            past_k, past_v = self.keys[layer], self.values[layer]
            if past_k.shape[0] == 1 and k.shape[0] > 1:   # a shared prefix meets a batch
                past_k, past_v = past_k.expand(k.shape[0], -1, -1, -1), past_v.expand(k.shape[0], -1, -1, -1)
            # a trainable fp32 prefix meets bf16/fp16 keys under autocast: compute in the keys' dtype
            k, v = torch.cat([past_k.to(k.dtype), k], dim=2), torch.cat([past_v.to(v.dtype), v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def repeat_interleave(self, n: int) -> "KVCache":
        """A new cache with every batch row repeated n times (row i becomes rows i*n .. i*n+n-1):
        one context, computed once, continued by n different candidates."""
        out = KVCache(len(self.keys))
        out.keys = [None if k is None else k.repeat_interleave(n, dim=0) for k in self.keys]
        out.values = [None if v is None else v.repeat_interleave(n, dim=0) for v in self.values]
        out.n_prefix = self.n_prefix
        return out


@dataclass
class FlexMask:
    """A packed batch's attention on CUDA: FlexAttention's ``BlockMask`` (which query/key tiles
    hold any allowed pair) and, for ALiBi, the ``score_mod`` that adds each row's bias."""
    block_mask: object
    score_mod: object = None


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.n_head, self.head_dim, self.layer = config.n_head, config.n_embd // config.n_head, layer
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)   # W_q, W_k, W_v
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)       # W_o
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, rope=None, alibi=None, cache: KVCache | None = None, mask=None):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))
        if rope is not None:
            q, k = apply_rope(q, k, *rope)
        if mask is not None:     # a packed batch (chapter 06): the mask says which keys each query reads
            return self.resid_dropout(self.c_proj(self._packed_attention(q, k, v, mask).transpose(1, 2)
                                                  .contiguous().view(B, T, C)))
        past = 0
        if cache is not None:
            past = 0 if cache.keys[self.layer] is None else cache.keys[self.layer].shape[2]
            k, v = cache.append(self.layer, k, v)
        S = k.shape[2]
        dropout_p = self.dropout if self.training else 0.0
        if alibi is not None and past == 0 and x.is_cuda and dropout_p == 0.0:
            # ALiBi on a GPU: FlexAttention adds the bias inside the kernel, no (H, T, T) tensor
            y = alibi_flex_attention(q, k, v, alibi)
            return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))
        if past == 0 and alibi is None:
            mask, causal = None, True                     # the fused causal kernel
        else:
            # query i sits at position past + i and may see keys 0 .. past + i
            allowed = torch.arange(S, device=x.device)[None, :] <= torch.arange(past, past + T, device=x.device)[:, None]
            if alibi is None:
                mask = allowed
            else:   # ALiBi: add m_h * -(i - j) to q_i . k_j, and -inf where j > i
                distance = (torch.arange(past, past + T, device=x.device)[:, None]
                            - torch.arange(S, device=x.device)[None, :])
                mask = (-alibi[:, None, None] * distance).masked_fill(~allowed, float("-inf")).to(q.dtype)
            causal = False
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def _packed_attention(self, q, k, v, mask):
        """softmax(q k^T / sqrt(d) + bias, keys outside the mask excluded) v, for ``GPT._packed_mask``'s mask."""
        if isinstance(mask, FlexMask):
            return compiled_flex_attention()(q, k, v, score_mod=mask.score_mod, block_mask=mask.block_mask)
        dropout_p = self.dropout if self.training else 0.0
        if mask.dtype != torch.bool:          # ALiBi's bias, in the dtype of q under autocast
            mask = mask.to(q.dtype)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)
        self.adapter_attn = nn.Identity()   # chapter 03 puts bottleneck adapters here,
        self.adapter_mlp = nn.Identity()    # on each sub-layer's output, before the residual add

    def forward(self, x, rope=None, alibi=None, cache=None, mask=None):
        x = x + self.adapter_attn(self.attn(self.ln_1(x), rope, alibi, cache, mask))
        x = x + self.adapter_mlp(self.mlp(self.ln_2(x)))
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.position == "learned" else None
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight        # weight tying: one matrix reads and writes tokens
        self.rotary = None
        if config.position == "rope":
            # dynamic NTK and YaRN need the length trained on; by default the config's block_size
            scaling = None if config.rope_scaling is None else \
                {"original_max_position_embeddings": config.block_size, **config.rope_scaling}
            self.rotary = Rotary(config.n_embd // config.n_head, config.rope_base, scaling)
        if config.position == "alibi":
            self.register_buffer("alibi_slopes", alibi_slopes(config.n_head), persistent=False)
        self.prefix_tuning = None     # chapter 03 slots, empty here: trainable keys/values that pre-fill
        self.prompt_tuning = None     # the cache (prefix.PrefixKV), a soft prompt (prefix.SoftPrompt)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():      # GPT-2: scale residual projections by 1/sqrt(2 n_layer)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, trainable_only: bool = False) -> int:
        """Parameters of the model (tied weights once), or only the trainable ones."""
        trainable, total = count_parameters(self)
        return trainable if trainable_only else total

    @property
    def n_virtual(self) -> int:
        """Context positions taken by prefix-tuning vectors and soft-prompt tokens (chapter 03), not by text."""
        prefix, soft = self.prefix_tuning, self.prompt_tuning
        return (0 if prefix is None else prefix.n_prefix) + (0 if soft is None else soft.n_tokens)

    @property
    def device(self) -> torch.device:
        return self.wte.weight.device

    def forward(self, idx, targets=None, cache: KVCache | None = None, prompt_embeds=None,
                positions=None, document_ids=None):
        """Logits (B, T, vocab) for token ids ``idx`` (B, T); with ``targets`` also the mean
        next-token cross-entropy (positions whose target is -100 are ignored).

        A packed batch (chapter 06, ``llmtap.packing``) holds several examples in each row; two
        (B, T) int tensors describe it. ``positions``: each token's position inside its own example,
        read by every position encoding in place of 0 .. T-1. ``document_ids``: the example each
        token belongs to; a token then attends only to earlier tokens with its id. Either may come
        alone (no document_ids: one example per row; no positions: 0 .. T-1). They describe one whole
        pass from an empty context, so they do not go with a KV cache or a prefix/soft prompt."""
        if idx.dim() != 2:
            raise ValueError(f"idx must be (batch, time) token ids, got shape {tuple(idx.shape)}")
        packed = positions is not None or document_ids is not None
        if packed:
            positions, document_ids, n_positions = self._check_packed(idx, cache, prompt_embeds,
                                                                      positions, document_ids)
        x, cache, n_soft = self._virtual_tokens(self.wte(idx), cache, prompt_embeds)
        start, L = (len(cache) if cache is not None else 0), x.shape[1]
        if packed:     # every row its own positions, the largest + 1 sizes the tables (and dynamic NTK's length)
            pos = positions
        else:
            self._check_fits(start, L)
            pos, n_positions = torch.arange(start, start + L, device=idx.device), start + L
        rope = alibi = None
        if self.config.position == "learned":
            x = x + self.wpe(pos)
        elif self.config.position == "sinusoidal":
            # Vaswani et al. (2017) multiply the embeddings by sqrt(d) before adding the table: the
            # table's rows have norm sqrt(d / 2), token rows start at 0.02 sqrt(d), and unscaled the
            # position would drown out the token (the model then cannot learn to copy, chapter 04)
            x = x * math.sqrt(self.config.n_embd) + sinusoidal_table(n_positions, self.config.n_embd).to(x.device, x.dtype)[pos]
        elif self.config.position == "rope":
            rope = self.rotary(pos, n_positions)
        elif self.config.position == "alibi":
            alibi = self.alibi_slopes
        mask = self._packed_mask(positions, document_ids) if packed else None
        x = self.drop(x)
        for block in self.h:
            x = block(x, rope, alibi, cache, mask)
        logits = self.lm_head(self.ln_f(x[:, n_soft:]))          # no predictions for soft-prompt positions
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss

    def _check_packed(self, idx, cache, prompt_embeds, positions, document_ids):
        """Checks a packed batch's ``positions`` and ``document_ids`` and fills in the missing one
        (positions 0 .. T-1 in every row, or one document per row); returns both and the number of
        positions they reach, max + 1."""
        if cache is not None or prompt_embeds is not None or self.n_virtual:
            raise ValueError("positions and document_ids describe a packed batch run in one pass from an empty "
                             "context; they cannot go with a KV cache, prompt_embeds or a prefix/soft prompt "
                             "(chapter 03). Generate one sequence at a time without them, or train the prefix "
                             "or soft prompt on padded batches (llmtap.train.collate_completions)")
        if idx.shape[1] == 0:
            raise ValueError("idx has no tokens (T = 0); a packed batch needs at least one token per row")
        for name, t in (("positions", positions), ("document_ids", document_ids)):
            if t is None:
                continue
            if not isinstance(t, torch.Tensor) or t.shape != idx.shape:
                got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"{name} must be a tensor shaped like idx, {tuple(idx.shape)}: one number per "
                                 f"token; got {got}")
            if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
                raise ValueError(f"{name} must hold ints, got {t.dtype}; convert with .long()")
            if t.device != idx.device:
                raise ValueError(f"{name} is on {t.device} but idx is on {idx.device}; move the whole batch "
                                 f"to one device (PackedBatch.to(device))")
        if positions is None:
            positions, highest = torch.arange(idx.shape[1], device=idx.device).expand_as(idx), idx.shape[1] - 1
        else:
            lowest, highest = (int(v) for v in torch.aminmax(positions))   # both in one reduction
            if lowest < 0:
                raise ValueError(f"positions must be >= 0, got a minimum of {lowest}")
        if self.wpe is not None and highest >= self.config.block_size:
            raise ValueError(f"positions go up to {highest}, past the learned position table of "
                             f"{self.config.block_size}; pack into rows of at most block_size tokens")
        if document_ids is None:
            document_ids = torch.zeros_like(idx)
        return positions, document_ids, highest + 1

    def _packed_mask(self, positions, document_ids):
        """What each query of a packed batch may read, built once for all layers.

        On CUDA (torch >= 2.5, no attention dropout while training): FlexAttention's BlockMask,
        with which the kernel skips the tiles where no query may read any key, and ALiBi's bias as
        a score_mod that reads each row's positions. Elsewhere a dense mask for SDPA: (B, 1, T, T)
        bool, True where key j may be read by query i, or for ALiBi the (B, H, T, T) bias
        -m_h (p_i - p_j) with -inf where the key may not be read."""
        alibi = self.alibi_slopes if self.config.position == "alibi" else None
        if document_ids.is_cuda and flex_attention_available() and not (self.training and self.config.dropout > 0):
            return FlexMask(flex_block_mask(document_ids), None if alibi is None else alibi_score_mod(alibi, positions))
        allowed = block_causal_mask(document_ids)[:, None]                        # (B, 1, T, T)
        if alibi is None:
            return allowed
        distance = (positions[:, :, None] - positions[:, None, :])[:, None]      # (B, 1, T, T): p_i - p_j
        return (-alibi[None, :, None, None] * distance).masked_fill(~allowed, float("-inf"))   # m_h * -(p_i - p_j)

    def _virtual_tokens(self, x, cache, prompt_embeds):
        """Chapter 03's vectors in front of the text: the prefix fills an empty KV cache (prefix
        tuning); soft-prompt vectors go before the first chunk's embeddings (prompt tuning).
        Returns (x, cache, number of soft-prompt positions in x)."""
        if self.prefix_tuning is not None and (cache is None or len(cache) == 0):
            cache = self.prefix_tuning.fill(KVCache(self.config.n_layer) if cache is None else cache)
        if self.prompt_tuning is not None and prompt_embeds is None and (cache is None or len(cache) == cache.n_prefix):
            prompt_embeds = self.prompt_tuning.embeddings
        if prompt_embeds is None:
            return x, cache, 0
        if cache is not None and len(cache) > cache.n_prefix:
            raise ValueError("prompt_embeds go in front of the first chunk; this cache already has entries")
        prompt_embeds = prompt_embeds.to(x.dtype)
        if prompt_embeds.dim() == 2:
            prompt_embeds = prompt_embeds.unsqueeze(0)
        return torch.cat([prompt_embeds.expand(x.shape[0], -1, -1), x], dim=1), cache, prompt_embeds.shape[1]

    def _check_fits(self, start: int, L: int) -> None:
        """A prefix or soft prompt, and a learned position table, end at block_size positions."""
        n_virtual, end = self.n_virtual, start + L
        if n_virtual and end > self.config.block_size:
            raise ValueError(f"the prefix/soft prompt takes {n_virtual} of the {self.config.block_size} positions of the "
                             f"context window, leaving {self.config.block_size - n_virtual} for tokens; got "
                             f"{end - n_virtual}. Shorten the input or use a shorter prefix")
        if self.wpe is not None and end > self.config.block_size:
            raise ValueError(f"{end} positions (cache {start} + input {L}) exceed the learned position "
                             f"table of {self.config.block_size}; shorten the input or use another position encoding")

    @torch.no_grad()
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 eos_id: int | None = None, generator: torch.Generator | None = None):
        """Continue ``idx`` (B, T) by up to ``max_new_tokens`` tokens, reusing a KV cache.

        temperature 0 picks the most likely token; top_k keeps only the k most likely tokens.
        Sequences that produced ``eos_id`` keep emitting it.
        """
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if top_k is not None and top_k <= 0:
            raise ValueError(f"top_k must be a positive int or None, got {top_k}")
        n_virtual = self.n_virtual
        # tokens that fit the window: learned positions end at block_size, a prefix or soft prompt takes its share
        limit = self.config.block_size - n_virtual if (self.wpe is not None or n_virtual) else None
        if limit is not None and idx.shape[1] >= limit:
            idx_cond = idx[:, -(limit - 1):]
        else:
            idx_cond = idx
        cache = KVCache(self.config.n_layer)
        logits, _ = self(idx_cond, cache=cache)
        done = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
        for _ in range(max_new_tokens):
            next_id = sample_next(logits[:, -1, :], temperature, top_k, generator)
            if eos_id is not None:
                next_id = torch.where(done, torch.full_like(next_id, eos_id), next_id)
                done = done | (next_id == eos_id)
            idx = torch.cat([idx, next_id[:, None]], dim=1)
            if limit is not None and len(cache) + 1 > limit + n_virtual:   # slide the window
                cache = KVCache(self.config.n_layer)
                logits, _ = self(idx[:, -(limit - 1):], cache=cache)
            else:
                logits, _ = self(next_id[:, None], cache=cache)
        return idx


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick one token id per row of ``logits`` (B, vocab): softmax(logits / temperature), top-k."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
