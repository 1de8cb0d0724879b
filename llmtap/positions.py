"""Position encodings for the course model (LLM-TAP 5.3).

A transformer's attention is permutation-invariant; these are the ways to tell it where each
token sits:

* ``learned``    - a trainable table, one vector per absolute position (GPT-2).
* ``sinusoidal`` - the fixed table of "Attention is all you need":
                   PE(p, 2i) = sin(p / 10000^(2i/d)),  PE(p, 2i+1) = cos(p / 10000^(2i/d)).
* ``rope``       - rotary embeddings: rotate each pair of query/key features by the angle
                   p * theta_i, so that q_m . k_n depends only on m - n.
* ``alibi``      - no embedding at all: add m_h * -(i - j) to the attention score of query i
                   and key j, with a fixed slope m_h per head.
* ``none``       - nothing; a causal model can still infer order from the mask (NoPE).
"""
from __future__ import annotations

import math

import torch

POSITION_KINDS = ("learned", "sinusoidal", "rope", "alibi", "none")


def check_position_kind(kind: str) -> str:
    if kind not in POSITION_KINDS:
        raise ValueError(f"unknown position encoding {kind!r}; choose one of {POSITION_KINDS}")
    return kind


# ----------------------------------------------------------------------------- sinusoidal
def sinusoidal_table(n_positions: int, dim: int) -> torch.Tensor:
    """The (n_positions, dim) table PE(p, 2i) = sin(p w_i), PE(p, 2i+1) = cos(p w_i), w_i = 10000^(-2i/d)."""
    if n_positions <= 0 or dim <= 0 or dim % 2:
        raise ValueError(f"need n_positions > 0 and an even dim > 0, got {n_positions}, {dim}")
    p = torch.arange(n_positions, dtype=torch.float32)[:, None]
    w = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    table = torch.zeros(n_positions, dim)
    table[:, 0::2] = torch.sin(p * w)
    table[:, 1::2] = torch.cos(p * w)
    return table


# ----------------------------------------------------------------------------- RoPE
def rope_inv_freq(head_dim: int, base: float = 10000.0, scaling: dict | None = None,
                  seq_len: int | None = None) -> tuple[torch.Tensor, float]:
    """Rotary frequencies theta_i = base^(-2i/d), i = 0 .. d/2 - 1, and an attention factor.

    ``scaling`` follows the Hugging Face ``rope_scaling`` dict. Supported here:
    ``{"rope_type": "linear", "factor": s}`` - position interpolation, f'(x, m) = f(x, m L / L')
    with s = L' / L, which is the same as dividing every frequency by s.
    """
    if head_dim <= 0 or head_dim % 2:
        raise ValueError(f"RoPE rotates pairs of features: head_dim must be even and > 0, got {head_dim}")
    if base <= 1.0:
        raise ValueError(f"RoPE base must be > 1, got {base}")
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    if scaling is None:
        return inv_freq, 1.0
    rope_type = scaling.get("rope_type", scaling.get("type"))
    factor = float(scaling.get("factor", 1.0))
    if factor < 1.0:
        raise ValueError(f"rope_scaling factor must be >= 1 (it stretches the context), got {factor}")
    if rope_type == "linear":
        return inv_freq / factor, 1.0
    raise ValueError(f"unsupported rope_type {rope_type!r}; supported: 'linear'")


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the angles p * theta_i, shaped (T, head_dim) (each angle used for a pair)."""
    angles = positions.float()[:, None] * inv_freq.to(positions.device)[None, :]   # (T, d/2)
    angles = torch.cat([angles, angles], dim=-1)                                    # (T, d)
    return angles.cos(), angles.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    # Pair feature i with feature i + d/2 (the "half" layout used by GPT-NeoX and Llama).
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """Rotate queries and keys, (B, H, T, d): x' = x cos(p theta) + rotate_half(x) sin(p theta)."""
    cos, sin = cos.to(q.dtype), sin.to(q.dtype)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


# ----------------------------------------------------------------------------- ALiBi
def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Head slopes m_h: the geometric sequence 1/a, 1/a^2, ..., with a^n = 256 (so the last is 1/256).

    For a head count n that is not a power of two, ALiBi takes the slopes of the closest power
    of two below n, then fills the remaining heads with every other slope of twice that count.
    """
    if not isinstance(n_heads, int) or n_heads <= 0:
        raise ValueError(f"n_heads must be a positive int, got {n_heads!r}")

    def power_of_two(n):
        a = 2.0 ** (8.0 / n)          # a^n = 2^8 = 256
        return [a ** -(h + 1) for h in range(n)]

    if math.log2(n_heads).is_integer():
        return torch.tensor(power_of_two(n_heads))
    lower = 2 ** math.floor(math.log2(n_heads))
    extra = power_of_two(2 * lower)[0::2][: n_heads - lower]
    return torch.tensor(power_of_two(lower) + extra)


def alibi_bias(n_heads: int, q_len: int, k_len: int | None = None, device=None) -> torch.Tensor:
    """The (H, q_len, k_len) bias m_h * -(i - j) for query i and key j (queries are the last q_len keys).

    Future keys (j > i) get a positive distance here; the causal mask removes them anyway.
    """
    k_len = q_len if k_len is None else k_len
    i = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    j = torch.arange(k_len, device=device)[None, :]
    distance = (i - j).float()
    return -alibi_slopes(n_heads).to(device)[:, None, None] * distance
