"""Mutation tests of chapter 03's checkers: each wrong answer of the bank (the usual mistakes) is
rejected with a message that names what is wrong, and each right answer, written differently from
the solution (another dtype, container or formula), is accepted. The answers are written here,
independently of the library the checkers compare against."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from llmtap import checks


# ----------------------------------------------------------------------------- adapter forward
def adapter_right(h, W_down, b_down, W_up, b_up):
    return h + F.gelu(h @ W_down.T + b_down) @ W_up.T + b_up


def adapter_linear_float64(h, W_down, b_down, W_up, b_up):   # F.linear, in float64
    h, W_down, b_down, W_up, b_up = (t.double() for t in (h, W_down, b_down, W_up, b_up))
    return h + F.linear(F.gelu(F.linear(h, W_down, b_down)), W_up, b_up)


def adapter_erf_by_hand(h, W_down, b_down, W_up, b_up):      # GELU written out: z Φ(z)
    z = torch.einsum("...d,md->...m", h, W_down) + b_down
    return h + (z * 0.5 * (1 + torch.erf(z / math.sqrt(2)))) @ W_up.T + b_up


def adapter_modules(h, W_down, b_down, W_up, b_up):          # nn.Linear and nn.GELU modules
    down, up = torch.nn.Linear(W_down.shape[1], W_down.shape[0]), torch.nn.Linear(W_up.shape[1], W_up.shape[0])
    with torch.no_grad():
        down.weight.copy_(W_down), down.bias.copy_(b_down), up.weight.copy_(W_up), up.bias.copy_(b_up)
    return h + up(torch.nn.GELU()(down(h)))


def adapter_no_residual(h, W_down, b_down, W_up, b_up):
    return F.gelu(h @ W_down.T + b_down) @ W_up.T + b_up


def adapter_no_b_down(h, W_down, b_down, W_up, b_up):
    return h + F.gelu(h @ W_down.T) @ W_up.T + b_up


def adapter_no_b_up(h, W_down, b_down, W_up, b_up):
    return h + F.gelu(h @ W_down.T + b_down) @ W_up.T


def adapter_no_nonlinearity(h, W_down, b_down, W_up, b_up):
    return h + (h @ W_down.T + b_down) @ W_up.T + b_up


def adapter_gelu_after_up(h, W_down, b_down, W_up, b_up):
    return h + F.gelu((h @ W_down.T + b_down) @ W_up.T + b_up)


def adapter_gelu_first(h, W_down, b_down, W_up, b_up):
    return h + (F.gelu(h) @ W_down.T + b_down) @ W_up.T + b_up


def adapter_relu(h, W_down, b_down, W_up, b_up):
    return h + torch.relu(h @ W_down.T + b_down) @ W_up.T + b_up


def adapter_tanh_gelu(h, W_down, b_down, W_up, b_up):
    return h + F.gelu(h @ W_down.T + b_down, approximate="tanh") @ W_up.T + b_up


def adapter_paper_layout(h, W_down, b_down, W_up, b_up):      # the formula's layout, not nn.Linear's
    return h + F.gelu(h @ W_up + b_down) @ W_down + b_up


def adapter_no_transpose(h, W_down, b_down, W_up, b_up):      # a shape error
    return h + F.gelu(h @ W_down + b_down) @ W_up + b_up


def adapter_in_place(h, W_down, b_down, W_up, b_up):           # right values, but h is changed
    return h.add_(F.gelu(h @ W_down.T + b_down) @ W_up.T + b_up)


# ----------------------------------------------------------------------------- attention with a prefix
def prefix_attention_right(q, k, v, pk, pv):
    P, T = pk.shape[2], q.shape[2]
    allowed = torch.cat([torch.ones(T, P, dtype=torch.bool), torch.ones(T, T, dtype=torch.bool).tril()], 1)
    return F.scaled_dot_product_attention(q, torch.cat([pk, k], 2), torch.cat([pv, v], 2), attn_mask=allowed)


def prefix_attention_by_hand_float64(q, k, v, pk, pv):        # softmax written out, float64, tril(diagonal=P)
    q, keys, values = q.double(), torch.cat([pk, k], 2).double(), torch.cat([pv, v], 2).double()
    P, T, d = pk.shape[2], q.shape[2], q.shape[3]
    allowed = torch.ones(T, P + T, dtype=torch.bool).tril(diagonal=P)
    scores = (q @ keys.transpose(-1, -2) / math.sqrt(d)).masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1) @ values


def prefix_attention_prefix_last(q, k, v, pk, pv):            # the prefix after the tokens, the mask to match
    P, T = pk.shape[2], q.shape[2]
    allowed = torch.cat([torch.ones(T, T, dtype=torch.bool).tril(), torch.ones(T, P, dtype=torch.bool)], 1)
    return F.scaled_dot_product_attention(q, torch.cat([k, pk], 2), torch.cat([v, pv], 2), attn_mask=allowed)


def prefix_attention_additive_mask(q, k, v, pk, pv):          # a float mask: 0 or -inf
    P, T = pk.shape[2], q.shape[2]
    i, j = torch.arange(T)[:, None], torch.arange(P + T)[None, :]
    bias = torch.zeros(T, P + T).masked_fill(j > i + P, float("-inf"))
    return F.scaled_dot_product_attention(q, torch.cat([pk, k], 2), torch.cat([pv, v], 2), attn_mask=bias)


def _ones(T, n):
    return torch.ones(T, n, dtype=torch.bool)


def _right_mask(P, T):
    return _ones(T, P + T).tril(P)


def _prefix_in_front(q, k, v, pk, pv, mask, scale=None):
    """Attention over [pk; k], [pv; v] with a (T, P + T) mask made by mask(P, T)."""
    return F.scaled_dot_product_attention(q, torch.cat([pk, k], 2), torch.cat([pv, v], 2),
                                          attn_mask=mask(pk.shape[2], q.shape[2]), scale=scale)


def prefix_attention_top_left_causal(q, k, v, pk, pv):
    return F.scaled_dot_product_attention(q, torch.cat([pk, k], 2), torch.cat([pv, v], 2), is_causal=True)


def prefix_attention_prefix_not_seen(q, k, v, pk, pv):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def prefix_attention_causal_prefix(q, k, v, pk, pv):          # query i sees prefix entries 0..i only
    return _prefix_in_front(q, k, v, pk, pv, lambda P, T: torch.cat([_ones(T, P).tril(), _ones(T, T).tril()], 1))


def prefix_attention_no_mask(q, k, v, pk, pv):
    return _prefix_in_front(q, k, v, pk, pv, lambda P, T: _ones(T, P + T))


def prefix_attention_inverted_mask(q, k, v, pk, pv):           # True taken as "masked out"
    return _prefix_in_front(q, k, v, pk, pv, lambda P, T: ~_right_mask(P, T))


def prefix_attention_shift_too_small(q, k, v, pk, pv):
    return _prefix_in_front(q, k, v, pk, pv, lambda P, T: _ones(T, P + T).tril(P - 1))


def prefix_attention_shift_too_large(q, k, v, pk, pv):
    return _prefix_in_front(q, k, v, pk, pv, lambda P, T: _ones(T, P + T).tril(P + 1))


def prefix_attention_divided_by_d(q, k, v, pk, pv):
    return _prefix_in_front(q, k, v, pk, pv, _right_mask, scale=1 / q.shape[-1])


def prefix_attention_unscaled(q, k, v, pk, pv):
    return _prefix_in_front(q, k, v, pk, pv, _right_mask, scale=1.0)


def prefix_attention_sqrt_T(q, k, v, pk, pv):                 # d taken as the number of tokens
    return _prefix_in_front(q, k, v, pk, pv, _right_mask, scale=q.shape[-2] ** -0.5)


def prefix_attention_mask_misaligned(q, k, v, pk, pv):        # the prefix after the tokens, the mask as if in front
    mask = _right_mask(pk.shape[2], q.shape[2])
    return F.scaled_dot_product_attention(q, torch.cat([k, pk], 2), torch.cat([v, pv], 2), attn_mask=mask)


def prefix_attention_values_swapped(q, k, v, pk, pv):
    mask = _right_mask(pk.shape[2], q.shape[2])
    return F.scaled_dot_product_attention(q, torch.cat([pk, k], 2), torch.cat([v, pv], 2), attn_mask=mask)


def prefix_attention_wrong_dim(q, k, v, pk, pv):              # concatenated along d: a shape error
    mask = _right_mask(pk.shape[2], q.shape[2])
    return F.scaled_dot_product_attention(q, torch.cat([pk, k], 3), torch.cat([pv, v], 3), attn_mask=mask)


# ----------------------------------------------------------------------------- soft prompt from text
def _require_known(tokenizer, text):
    missing = [c for c in text if c not in tokenizer.char_to_id]
    if missing:
        raise ValueError(f"unknown characters {missing}")


def soft_prompt_right(weight, tokenizer, text):
    _require_known(tokenizer, text)
    return weight.detach()[tokenizer.encode(text)].clone()


def soft_prompt_by_hand(weight, tokenizer, text):       # one row per character, looked up without encode()
    rows = []
    for c in text:
        if c not in tokenizer.char_to_id:
            raise ValueError(f"no token for {c!r}")
        rows.append(weight[tokenizer.char_to_id[c]].tolist())
    return torch.tensor(rows, dtype=weight.dtype)


def soft_prompt_parameter_float64(weight, tokenizer, text):   # a trainable nn.Parameter, float64
    if not set(text) <= set(tokenizer.char_to_id):
        raise ValueError("the tokenizer lacks " + ", ".join(sorted(set(text) - set(tokenizer.char_to_id))))
    return torch.nn.Parameter(weight.detach().double()[tokenizer.encode(text)])


def soft_prompt_embedding_grad(weight, tokenizer, text):      # F.embedding, still attached to the table's graph
    _require_known(tokenizer, text)
    return F.embedding(torch.tensor(tokenizer.encode(text)), weight)


def soft_prompt_byte_fallback(weight, tokenizer, text):
    return weight.detach()[tokenizer.encode(text)].clone()


def soft_prompt_with_bos(weight, tokenizer, text):
    _require_known(tokenizer, text)
    return weight.detach()[tokenizer.encode(text, bos=True)].clone()


def soft_prompt_unique(weight, tokenizer, text):              # loses repeated characters
    _require_known(tokenizer, text)
    return weight.detach()[sorted(set(tokenizer.encode(text)))].clone()


def soft_prompt_ids(weight, tokenizer, text):
    _require_known(tokenizer, text)
    return torch.tensor(tokenizer.encode(text))


def soft_prompt_char_index(weight, tokenizer, text):          # the place in tokenizer.chars, not the id
    _require_known(tokenizer, text)
    return weight.detach()[[tokenizer.chars.index(c) for c in text]].clone()


def soft_prompt_view(weight, tokenizer, text):                # the rows from the first id to the last: a view
    _require_known(tokenizer, text)
    ids = tokenizer.encode(text)
    return weight.detach()[ids[0]:ids[-1] + 1]


def soft_prompt_first_char_checked(weight, tokenizer, text):  # checks only the first character
    if text[0] not in tokenizer.char_to_id:
        raise ValueError(f"no token for {text[0]!r}")
    return weight.detach()[tokenizer.encode(text)].clone()


def soft_prompt_last_char_checked(weight, tokenizer, text):   # checks only the last character
    if text[-1] not in tokenizer.char_to_id:
        raise ValueError(f"no token for {text[-1]!r}")
    return weight.detach()[tokenizer.encode(text)].clone()


def soft_prompt_key_error(weight, tokenizer, text):
    return weight.detach()[[tokenizer.char_to_id[c] for c in text]].clone()


def soft_prompt_silent_error(weight, tokenizer, text):        # the right check, a message that names nothing
    if any(c not in tokenizer.char_to_id for c in text):
        raise ValueError("the text has characters the tokenizer does not know")
    return weight.detach()[tokenizer.encode(text)].clone()


def soft_prompt_rejects_everything(weight, tokenizer, text):  # asks for the whole text to be one token
    if text not in tokenizer.char_to_id:
        raise ValueError(f"no token for {text!r}")
    return weight.detach()[tokenizer.encode(text)].clone()


# ----------------------------------------------------------------------------- the adapter block (a class)
class BlockRight(nn.Module):
    def __init__(self, d, m):
        super().__init__()
        self.down, self.up = nn.Linear(d, m), nn.Linear(m, d)
        nn.init.normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h):
        return h + self.up(F.gelu(self.down(h)))


class BlockByHand(nn.Module):                 # the init done by hand, the forward with F.linear
    def __init__(self, d, m):
        super().__init__()
        self.down = nn.Linear(d, m)
        self.up = nn.Linear(m, d)
        with torch.no_grad():
            self.down.weight.copy_(torch.randn(m, d) * 0.02)
            self.down.bias.zero_()
            self.up.weight.zero_()
            self.up.bias.zero_()

    def forward(self, h):
        z = F.linear(h, self.down.weight, self.down.bias)
        return h + F.linear(0.5 * z * (1 + torch.erf(z / math.sqrt(2))), self.up.weight, self.up.bias)


def _block_variant(**change):
    class Variant(BlockRight):
        def __init__(self, d, m):
            super().__init__(d, m)
            if change.get("up_random"):
                nn.init.normal_(self.up.weight, std=0.02)
            if change.get("default_init"):
                self.down, self.up = nn.Linear(d, m), nn.Linear(m, d)
                nn.init.zeros_(self.up.weight)
                nn.init.zeros_(self.up.bias)
            if change.get("no_bias"):
                self.down = nn.Linear(d, m, bias=False)
                nn.init.normal_(self.down.weight, std=0.02)
            if change.get("frozen"):
                self.requires_grad_(False)

        def forward(self, h):
            if change.get("no_residual"):
                return self.up(F.gelu(self.down(h)))
            if change.get("relu"):
                return h + self.up(F.relu(self.down(h)))
            if change.get("no_activation"):
                return h + self.up(self.down(h))
            return super().forward(h)
    return Variant


BlockUpRandom = _block_variant(up_random=True)
BlockDefaultInit = _block_variant(default_init=True)
BlockNoBias = _block_variant(no_bias=True)
BlockFrozen = _block_variant(frozen=True)
BlockNoResidual = _block_variant(no_residual=True)
BlockRelu = _block_variant(relu=True)
BlockNoActivation = _block_variant(no_activation=True)

BLOCK_RIGHT = [(checks.check_adapter_block, BlockRight), (checks.check_adapter_block, BlockByHand)]
BLOCK_WRONG = [
    (checks.check_adapter_block, BlockUpRandom, "start at zero"),
    (checks.check_adapter_block, BlockDefaultInit, "b_down starts at zero"),
    (checks.check_adapter_block, BlockNoBias, "needs its bias"),
    (checks.check_adapter_block, BlockFrozen, "are trained"),
    (checks.check_adapter_block, BlockNoResidual, "must return h exactly"),
    (checks.check_adapter_block, BlockRelu, "not ReLU"),
    (checks.check_adapter_block, BlockNoActivation, "GELU comes between"),
]


RIGHT = [
    (checks.check_adapter_forward, adapter_right), (checks.check_adapter_forward, adapter_linear_float64),
    (checks.check_adapter_forward, adapter_erf_by_hand), (checks.check_adapter_forward, adapter_modules),
    (checks.check_prefix_attention, prefix_attention_right),
    (checks.check_prefix_attention, prefix_attention_by_hand_float64),
    (checks.check_prefix_attention, prefix_attention_prefix_last),
    (checks.check_prefix_attention, prefix_attention_additive_mask),
    (checks.check_soft_prompt_from_text, soft_prompt_right), (checks.check_soft_prompt_from_text, soft_prompt_by_hand),
    (checks.check_soft_prompt_from_text, soft_prompt_parameter_float64),
    (checks.check_soft_prompt_from_text, soft_prompt_embedding_grad),
] + BLOCK_RIGHT

WRONG = [
    (checks.check_adapter_forward, adapter_no_residual, "add h back (the residual)"),
    (checks.check_adapter_forward, adapter_no_b_down, "b_down is missing"),
    (checks.check_adapter_forward, adapter_no_b_up, "b_up is missing"),
    (checks.check_adapter_forward, adapter_no_nonlinearity, "apply GELU"),
    (checks.check_adapter_forward, adapter_gelu_after_up, "not after the up-projection"),
    (checks.check_adapter_forward, adapter_gelu_first, "not on h"),
    (checks.check_adapter_forward, adapter_relu, "that is ReLU"),
    (checks.check_adapter_forward, adapter_tanh_gelu, "tanh approximation"),
    (checks.check_adapter_forward, adapter_paper_layout, "nn.Linear's layout"),
    (checks.check_adapter_forward, adapter_no_transpose, "h @ W_down.T is (..., m)"),
    (checks.check_adapter_forward, adapter_in_place, "do not change h in place"),
    (checks.check_prefix_attention, prefix_attention_top_left_causal, "shift the causal part by P"),
    (checks.check_prefix_attention, prefix_attention_prefix_not_seen, "all P prefix entries (the prefix is hidden)"),
    (checks.check_prefix_attention, prefix_attention_causal_prefix, "not only the first i + 1"),
    (checks.check_prefix_attention, prefix_attention_no_mask, "tokens must stay causal"),
    (checks.check_prefix_attention, prefix_attention_inverted_mask, "inverted"),
    (checks.check_prefix_attention, prefix_attention_shift_too_small, "not P - 1"),
    (checks.check_prefix_attention, prefix_attention_shift_too_large, "not P + 1"),
    (checks.check_prefix_attention, prefix_attention_divided_by_d, "you divided by d"),
    (checks.check_prefix_attention, prefix_attention_unscaled, "you did not scale them"),
    (checks.check_prefix_attention, prefix_attention_sqrt_T, "not the number of tokens"),
    (checks.check_prefix_attention, prefix_attention_mask_misaligned, "the mask's columns must follow the keys"),
    (checks.check_prefix_attention, prefix_attention_values_swapped, "the values must follow the keys"),
    (checks.check_prefix_attention, prefix_attention_wrong_dim, "concatenate along dim 2"),
    (checks.check_soft_prompt_from_text, soft_prompt_byte_fallback, "must raise ValueError naming it"),
    (checks.check_soft_prompt_from_text, soft_prompt_with_bos, "<bos>"),
    (checks.check_soft_prompt_from_text, soft_prompt_unique, "needs its row each time"),
    (checks.check_soft_prompt_from_text, soft_prompt_ids, "those are the token ids"),
    (checks.check_soft_prompt_from_text, soft_prompt_char_index, "not its place in tokenizer.chars"),
    (checks.check_soft_prompt_from_text, soft_prompt_view, "is a view of the embedding table"),
    (checks.check_soft_prompt_from_text, soft_prompt_first_char_checked, "'心情😀'"),
    (checks.check_soft_prompt_from_text, soft_prompt_last_char_checked, "'好ß心'"),
    (checks.check_soft_prompt_from_text, soft_prompt_key_error, "raise ValueError naming the unknown ones"),
    (checks.check_soft_prompt_from_text, soft_prompt_silent_error, "must name the unknown character"),
    (checks.check_soft_prompt_from_text, soft_prompt_rejects_everything, "has only characters the tokenizer knows"),
] + BLOCK_WRONG

CHECKERS = (checks.check_adapter_forward, checks.check_adapter_block, checks.check_prefix_attention,
            checks.check_soft_prompt_from_text)



def test_a_shape_error_gets_a_hint(verdict):
    _, line = verdict(checks.check_adapter_forward, adapter_no_transpose)
    assert "your code raised RuntimeError" in line and "W_down is (m, d) and W_up is (d, m)" in line, line
