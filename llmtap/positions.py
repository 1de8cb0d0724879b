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
import torch.nn as nn

from .validate import positive_int

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
ROPE_TYPES = ("linear", "ntk", "dynamic", "yarn")


def rope_inv_freq(head_dim: int, base: float = 10000.0, scaling: dict | None = None,
                  seq_len: int | None = None) -> tuple[torch.Tensor, float]:
    """Rotary frequencies theta_i = base^(-2i/d), i = 0 .. d/2 - 1, and an attention factor.

    ``scaling`` is a Hugging Face ``rope_scaling`` dict, ``{"rope_type": ..., "factor": s,
    "original_max_position_embeddings": L}``, that stretches a model trained on L positions
    to L' = s L:

    * ``linear``  - position interpolation, f'(x, m) = f(x, m L / L'): every theta_i / s;
    * ``ntk``     - NTK-aware scaling: a larger base, base' = base * s^(d / (d - 2)), so the
                    fastest pair keeps its frequency and the slowest is divided by s;
    * ``dynamic`` - NTK with s grown from 1 as the input gets longer than L (needs ``seq_len``):
                    base' = base * (s * seq_len / L - (s - 1))^(d / (d - 2));
    * ``yarn``    - "NTK-by-parts": pairs that turn many times within L keep theta_i, pairs that
                    turn less than once are interpolated (theta_i / s), a linear ramp in between
                    (``beta_fast`` = 32 and ``beta_slow`` = 1 turns), and the attention logits are
                    multiplied by attention_factor^2 with attention_factor = 0.1 ln s + 1.

    The attention factor multiplies cos and sin (so both q and k); it is 1 except for YaRN.
    """
    if positive_int(head_dim, "head_dim") % 2:
        raise ValueError(f"RoPE rotates pairs of features: head_dim must be even, got {head_dim!r}")
    if not base > 1.0:
        raise ValueError(f"RoPE base must be > 1, got {base}")
    d = head_dim
    i2 = torch.arange(0, d, 2, dtype=torch.float32)                  # 2i = 0, 2, ..., d - 2
    inv_freq = 1.0 / (base ** (i2 / d))                                # theta_i = base^(-2i/d)
    if scaling is None:
        return inv_freq, 1.0
    if not isinstance(scaling, dict):
        raise TypeError(f"scaling must be a rope_scaling dict or None, got {type(scaling).__name__}")
    rope_type = scaling.get("rope_type", scaling.get("type"))
    if rope_type in (None, "default"):
        if "factor" in scaling:
            raise ValueError(f"rope_scaling {scaling} has a factor but no rope_type; add one of {ROPE_TYPES}")
        return inv_freq, 1.0
    if rope_type not in ROPE_TYPES:
        raise ValueError(f"unsupported rope_type {rope_type!r}; supported: {ROPE_TYPES}")
    if "factor" not in scaling:
        raise ValueError(f"rope_scaling of type {rope_type!r} needs a 'factor' (the new length / the trained length)")
    s = float(scaling["factor"])
    if not s >= 1.0:
        raise ValueError(f"rope_scaling factor must be >= 1 (it stretches the context), got {s}")
    if rope_type == "linear":
        return inv_freq / s, 1.0                                       # theta_i / s
    if rope_type == "ntk":
        return 1.0 / ((base * s ** (d / (d - 2))) ** (i2 / d)), 1.0    # base' = base s^(d/(d-2))
    L = _original_length(scaling, rope_type)
    if rope_type == "dynamic":
        if seq_len is not None and (not isinstance(seq_len, int) or seq_len <= 0):
            raise ValueError(f"seq_len must be a positive int (the current sequence length), got {seq_len!r}")
        n = L if seq_len is None else max(seq_len, L)                 # no change up to L tokens
        new_base = base * (s * n / L - (s - 1)) ** (d / (d - 2))
        return 1.0 / (new_base ** (i2 / d)), 1.0
    return _yarn(inv_freq, d, base, s, L, scaling)


def _original_length(scaling: dict, rope_type: str) -> int:
    L = scaling.get("original_max_position_embeddings")
    if not isinstance(L, int) or L <= 0:
        raise ValueError(f"rope_type {rope_type!r} needs 'original_max_position_embeddings', the length the "
                         f"model was trained on (a positive int), got {L!r}")
    return L


def _yarn(inv_freq: torch.Tensor, d: int, base: float, s: float, L: int, scaling: dict):
    def mscale(scale, m=1.0):                                          # 0.1 m ln(s) + 1
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        m, m_all = scaling.get("mscale"), scaling.get("mscale_all_dim")
        attention_factor = mscale(s, m) / mscale(s, m_all) if (m and m_all) else mscale(s)
    beta_fast = scaling.get("beta_fast") or 32.0                     # >= 32 turns within L: keep theta_i
    beta_slow = scaling.get("beta_slow") or 1.0                      # <= 1 turn within L: theta_i / s

    def pair_turning(turns):   # the (fractional) pair index i whose angle turns `turns` times in L
        return d * math.log(L / (turns * 2 * math.pi)) / (2 * math.log(base))

    low, high = pair_turning(beta_fast), pair_turning(beta_slow)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, d - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(d // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)   # 0 fast .. 1 slow
    return inv_freq * (1 - ramp) + (inv_freq / s) * ramp, float(attention_factor)


class Rotary(nn.Module):
    """The rotation tables of a RoPE model for the positions of one forward pass.

    Holds theta_i (scaled as ``scaling`` says) and the two pieces of context-extension
    bookkeeping that are not a fixed table: dynamic NTK recomputes theta_i from the current
    length, and YaRN multiplies cos and sin (so q and k) by its attention factor.
    """

    def __init__(self, head_dim: int, base: float = 10000.0, scaling: dict | None = None):
        super().__init__()
        self.head_dim, self.base, self.scaling = head_dim, base, scaling
        inv_freq, self.attention_factor = rope_inv_freq(head_dim, base, scaling)
        self.register_buffer("inv_freq", inv_freq, persistent=False)     # rebuilt from the config, never saved
        self.dynamic = scaling is not None and "dynamic" in (scaling.get("rope_type"), scaling.get("type"))

    def forward(self, positions: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for ``positions``, in a sequence now ``seq_len`` long.

        ``positions`` (T,), one row of positions for the whole batch, gives (T, head_dim) tables.
        ``positions`` (B, T), a row of positions per sequence (a packed batch, where every example
        starts again at 0, chapter 06), gives (B, 1, T, head_dim): row b's angles p_bt * theta_i,
        the 1 broadcasting over the heads of the (B, H, T, head_dim) queries and keys."""
        if positions.dim() not in (1, 2):
            raise ValueError(f"positions must be (T,) or (B, T), got shape {tuple(positions.shape)}")
        inv_freq = self.inv_freq
        if self.dynamic:            # the base grows with the current length; cached keys keep their angles
            inv_freq = rope_inv_freq(self.head_dim, self.base, self.scaling, seq_len=seq_len)[0].to(positions.device)
        cos, sin = rope_cos_sin(positions, inv_freq)
        if self.attention_factor != 1.0:             # YaRN: q . k scaled by attention_factor^2
            cos, sin = cos * self.attention_factor, sin * self.attention_factor
        if positions.dim() == 2:                     # (B, T, d) -> (B, 1, T, d): the same angles for every head
            cos, sin = cos[:, None], sin[:, None]
        return cos, sin


def interpolated_positions(T: int, trained_len: int, target_len: int) -> torch.Tensor:
    """Position interpolation's positions m' = m L / L' for m = 0 .. T-1 (Chen et al., 2023): every
    position of the longer window [0, L') falls inside the trained range [0, L). In RoPE, m' theta_i
    = m (theta_i / s) with s = L' / L: the same as dividing every frequency by s."""
    for value, name in ((T, "T"), (trained_len, "trained_len"), (target_len, "target_len")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if target_len < trained_len:
        raise ValueError(f"target_len ({target_len}) must be at least trained_len ({trained_len}): interpolation "
                         f"squeezes a longer window into the trained one")
    return torch.arange(T, dtype=torch.float32) * (trained_len / target_len)


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the angles p * theta_i, shaped (T, head_dim) (each angle used for a pair);
    positions (B, T) give (B, T, head_dim), each row with its own positions."""
    angles = positions.float()[..., None] * inv_freq.to(positions.device)[None, :]  # (T, d/2) or (B, T, d/2)
    angles = torch.cat([angles, angles], dim=-1)                                    # (..., d)
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
    positive_int(n_heads, "n_heads")

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


# ----------------------------------------------------------------------------- ALiBi on a GPU
# FlexAttention computes the scores block by block inside one fused kernel and lets us change
# each score on the fly (score_mod), so the (H, L, L) bias is never written to memory; the
# causal block mask lets the kernel skip the blocks above the diagonal altogether.
_compiled_flex = None
_block_masks: dict = {}


def _causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def alibi_flex_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
    """Causal ALiBi attention softmax(q_i K^T / sqrt(d) + m_h [-(i-1), ..., -1, 0]) V with FlexAttention.

    q, k, v: (B, H, L, d), queries and keys at the same positions 0 .. L - 1; slopes: (H,).
    Compiled on first use (per device and length); meant for CUDA, where it is one fused kernel.
    """
    if q.dim() != 4 or q.shape != k.shape or k.shape[:3] != v.shape[:3]:
        raise ValueError(f"q, k, v must be (B, H, L, d) with the same B, H, L; got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if slopes.shape != (q.shape[1],):
        raise ValueError(f"need one slope per head: slopes {tuple(slopes.shape)} for {q.shape[1]} heads")
    # imported here: FlexAttention exists from torch 2.5 on, and the package runs on torch >= 2.3
    from torch.nn.attention.flex_attention import create_block_mask
    L = q.shape[2]
    key = (L, str(q.device))
    if key not in _block_masks:
        _block_masks[key] = create_block_mask(_causal, None, None, L, L, device=q.device)
    return compiled_flex_attention()(q, k, v, score_mod=alibi_score_mod(slopes.to(q.device)),
                                     block_mask=_block_masks[key])


def compiled_flex_attention():
    """``flex_attention`` compiled once per process (uncompiled it writes out every score)."""
    from torch.nn.attention.flex_attention import flex_attention
    global _compiled_flex
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex


def alibi_score_mod(slopes: torch.Tensor, positions: torch.Tensor | None = None):
    """ALiBi as a FlexAttention ``score_mod``: score + m_h * -(p_i - p_j) for query i and key j.

    Without ``positions`` the positions are the indices (p_i = i); a packed batch gives its (B, T)
    positions, each example starting at 0, and row b reads its own."""
    slopes = slopes.to(torch.float32)
    if positions is None:
        def alibi_score(score, b, h, q_idx, kv_idx):
            return score + slopes[h] * (kv_idx - q_idx)                   # + m_h * -(i - j)
        return alibi_score
    if positions.dim() != 2:
        raise ValueError(f"positions must be (B, T), one row of positions per sequence; got {tuple(positions.shape)}")

    def packed_alibi_score(score, b, h, q_idx, kv_idx):
        return score + slopes[h] * (positions[b, kv_idx] - positions[b, q_idx])   # + m_h * -(p_i - p_j)
    return packed_alibi_score
