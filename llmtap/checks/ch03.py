"""Checkers of chapter 03 (adapters and prefixes): the adapter forward pass, attention with a prefix,
the soft prompt read from a text.

Each one tries several inputs chosen so that the usual mistakes give a different result from the
right answer (random non-zero biases, prefixes longer and shorter than the text, several head
sizes), and names the mistake when the answer equals what that mistake gives.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..tokenizer import Tokenizer
from .common import StudentCodeError, expect_close, expect_shape, likely_cause, run_check, student_code, tensor_answer


def _unchanged(before: dict, after: dict, what: str) -> None:
    """The student's function must leave its inputs as they were."""
    for name, t in after.items():
        assert torch.equal(t, before[name]), f"{what}: do not change {name} in place: the caller still needs the original"


# ----------------------------------------------------------------------------- adapter
def check_adapter_forward(adapter_forward) -> bool:
    """adapter_forward(h, W_down, b_down, W_up, b_up) -> h + GELU(h W_downᵀ + b_down) W_upᵀ + b_up,
    with the weights in nn.Linear's layout: W_down (m, d), W_up (d, m)."""
    def test(answer):
        g = torch.Generator().manual_seed(0)
        # (shape of h, m): the biases are random and non-zero, so that leaving one out shows
        for h_shape, m in (((2, 5, 12), 3), ((7, 6), 2), ((2, 3, 8), 1)):
            d = h_shape[-1]
            h = torch.randn(*h_shape, generator=g)
            inputs = {"h": h, "W_down": torch.randn(m, d, generator=g), "b_down": torch.randn(m, generator=g),
                      "W_up": torch.randn(d, m, generator=g), "b_up": torch.randn(d, generator=g)}
            before = {k: t.clone() for k, t in inputs.items()}
            what = f"adapter_forward(h of shape {tuple(h_shape)}, bottleneck m={m})"
            got = tensor_answer(answer(*inputs.values()), what)
            _unchanged(before, inputs, what)
            expect_shape(got, h_shape, f"{what}, shaped like h")

            h, Wd, bd, Wu, bu = (t.double() for t in before.values())
            z = h @ Wd.T + bd                                       # the bottleneck, before f
            want = h + F.gelu(z) @ Wu.T + bu
            cause = likely_cause(got, {
                "the residual is missing: add h back (the residual), h + ...": F.gelu(z) @ Wu.T + bu,
                "b_down is missing: GELU takes h W_downᵀ + b_down": h + F.gelu(h @ Wd.T) @ Wu.T + bu,
                "b_up is missing: add b_up after the up-projection": h + F.gelu(z) @ Wu.T,
                "the nonlinearity is missing: apply GELU to h W_downᵀ + b_down": h + z @ Wu.T + bu,
                "GELU goes on the bottleneck (h W_downᵀ + b_down), not after the up-projection":
                    h + F.gelu(z @ Wu.T + bu),
                "GELU goes after the down-projection, on h W_downᵀ + b_down, not on h":
                    h + (F.gelu(h) @ Wd.T + bd) @ Wu.T + bu,
                "GELU goes on the bottleneck only, not on the whole sum": F.gelu(h + z @ Wu.T + bu),
                "that is ReLU: f is GELU (F.gelu)": h + F.relu(z) @ Wu.T + bu,
                "that is GELU's tanh approximation: use the exact F.gelu(x)": h + F.gelu(z, approximate="tanh") @ Wu.T + bu,
                "the weights are in nn.Linear's layout, W_down (m, d) and W_up (d, m): go down with h @ W_down.T, "
                "then up with @ W_up.T": h + F.gelu(h @ Wu + bd) @ Wd + bu,
            }, want, atol=1e-4)
            if cause:
                raise AssertionError(f"{what}: {cause}")
            expect_close(got, want, f"{what}, h + GELU(h W_downᵀ + b_down) W_upᵀ + b_up", atol=1e-4, rtol=1e-4)
    return run_check("Exercise: adapter forward", test, adapter_forward,
                     shape_hint="W_down is (m, d) and W_up is (d, m), nn.Linear's layout: h @ W_down.T is (..., m), "
                                "then @ W_up.T brings it back to (..., d)")


# ----------------------------------------------------------------------------- attention with a prefix
def _attend(q, keys, values, allowed, scale):
    """softmax(q keysᵀ · scale, only where allowed) values, in float64."""
    scores = (q @ keys.transpose(-2, -1) * scale).masked_fill(~allowed, float("-inf"))
    return scores.softmax(-1) @ values


def check_prefix_attention(prefix_attention) -> bool:
    """prefix_attention(q, k, v, prefix_k, prefix_v) -> attention output (B, H, T, d): keys and values
    [P_k ; K], [P_v ; V]; every query sees all prefix entries and the tokens up to its own."""
    def test(answer):
        g = torch.Generator().manual_seed(0)
        # (B, H, T, P, d): a prefix shorter, longer than the text, of one entry, a text of one token
        for B, H, T, P, d in ((2, 3, 6, 4, 8), (1, 2, 3, 7, 4), (2, 1, 5, 1, 16), (1, 2, 1, 3, 2)):
            inputs = {name: torch.randn(B, H, n, d, generator=g)
                      for name, n in (("q", T), ("k", T), ("v", T), ("prefix_k", P), ("prefix_v", P))}
            before = {k: t.clone() for k, t in inputs.items()}
            what = f"prefix_attention(q, k, v of shape {(B, H, T, d)}, a prefix of P={P})"
            got = tensor_answer(answer(*inputs.values()), what)
            _unchanged(before, inputs, what)
            expect_shape(got, (B, H, T, d), f"{what} (one output per token, none for the prefix)")
            assert not got.isnan().any(), \
                f"{what}: the output has NaN, so some query may attend to nothing: in attn_mask True means " \
                f"'may attend' (did you invert the mask?)"

            q, k, v, pk, pv = (t.double() for t in before.values())
            keys, values, s = torch.cat([pk, k], 2), torch.cat([pv, v], 2), 1 / math.sqrt(d)
            ones = torch.ones(T, P + T, dtype=torch.bool)
            right = ones.tril(P)                    # query i: the P prefix entries, then tokens 0..i
            attend = lambda allowed, scale=s, keys=keys, values=values: _attend(q, keys, values, allowed, scale)
            want = attend(right)
            prefix_part = lambda cols: torch.cat([cols, right[:, P:]], 1)
            cause = likely_cause(got, {
                "is_causal=True on T x (P + T) scores puts the triangle in the top-left corner, so query i sees "
                "only keys 0..i, mostly the prefix: shift the causal part by P": attend(ones.tril()),
                "query i must see all P prefix entries (the prefix is hidden)": attend(prefix_part(~ones[:, :P])),
                "query i must see all P prefix entries, not only the first i + 1": attend(prefix_part(ones[:, :P].tril())),
                "the tokens must stay causal: query i may not see the tokens after it": attend(ones),
                # a row with no key left gives NaN, or 0 in PyTorch's safe softmax
                "the mask is inverted: in attn_mask True means 'may attend'": attend(~right).nan_to_num(0.0),
                "query i must also see token i itself: shift the causal part by P, not P - 1": attend(ones.tril(P - 1)),
                "query i sees token i + 1: shift the causal part by P, not P + 1": attend(ones.tril(P + 1)),
                "the scores are q kᵀ / sqrt(d): you divided by d": attend(right, 1 / d),
                "the scores are q kᵀ / sqrt(d): you did not scale them": attend(right, 1.0),
                "d in sqrt(d) is the head size q.size(-1), not the number of tokens": attend(right, 1 / math.sqrt(T)),
                "d in sqrt(d) is the head size q.size(-1), not the number of keys P + T":
                    attend(right, 1 / math.sqrt(P + T)),
                "the values must follow the keys: the prefix in front of both, [P_v ; V]":
                    attend(right, values=torch.cat([v, pv], 2)),
                "the mask's columns must follow the keys: the prefix keys go in front, [P_k ; K]":
                    attend(right, keys=torch.cat([k, pk], 2), values=torch.cat([v, pv], 2)),
            }, want, atol=1e-4)
            if cause:
                raise AssertionError(f"{what}: {cause}")
            expect_close(got, want, f"{what}: query i must see all P prefix entries and tokens 0..i, with "
                                    f"scores q kᵀ / sqrt(d)", atol=1e-5, rtol=1e-4)
    return run_check("Exercise: attention with a prefix", test, prefix_attention,
                     shape_hint="q, k, v are (B, H, T, d) and the prefix (B, H, P, d): concatenate along dim 2 "
                                "(keys and values become (B, H, P + T, d)); the mask is (T, P + T)")


# ----------------------------------------------------------------------------- soft prompt from text
def _shares_memory(value, weight: torch.Tensor) -> bool:
    """Whether the answer is a view of the embedding table (training it would change the table)."""
    if isinstance(value, torch.Tensor):
        return value.untyped_storage().data_ptr() == weight.untyped_storage().data_ptr()
    if isinstance(value, np.ndarray):
        return np.shares_memory(value, weight.detach().numpy())
    return False


def _names(message: str, chars: str) -> bool:
    """Whether an error message names one of ``chars`` (as itself or as its escape, '\\xdf')."""
    return any(c in message or ascii(c)[1:-1] in message for c in chars)


def check_soft_prompt_from_text(soft_prompt_from_text) -> bool:
    """soft_prompt_from_text(embedding_weight, tokenizer, text) -> (n_tokens, n_embd): the embedding rows
    of the text's tokens, as a new tensor; ValueError for characters the tokenizer has no token for."""
    def test(answer):
        tok = Tokenizer("abcdefgh我好感到不。心情")
        weight = torch.nn.Parameter(torch.randn(tok.vocab_size, 8, generator=torch.Generator().manual_seed(0)))
        keep = weight.detach().clone()
        # one token first (a slice of one row is a view), then repeated characters and ids out of order
        for text in ("a", "我感到不好。", "好不好", "心情", "hcah"):
            what = f"soft_prompt_from_text(embedding_weight, tokenizer, {text!r})"
            try:
                value = answer(weight, tok, text)
            except StudentCodeError as e:
                if isinstance(e.error, ValueError):
                    raise AssertionError(f"{text!r} has only characters the tokenizer knows, yet your code raised "
                                         f"{e}: raise ValueError only for characters not in tokenizer.char_to_id")
                raise
            got = tensor_answer(value, what)
            assert torch.equal(weight.detach(), keep), f"{what} changed the embedding table: leave it as it is"
            assert not _shares_memory(value, weight), \
                f"{what} is a view of the embedding table: training the soft prompt would change the table; " \
                f"return a new tensor (.clone())"

            ids, W = tok.encode(text), keep.double()
            want = W[ids]
            cause = likely_cause(got, {
                "the first row is <bos>'s embedding: one row per token of the text, no <bos>": W[[tok.bos_id] + ids],
                "the last row is <eos>'s embedding: one row per token of the text, no <eos>": W[ids + [tok.eos_id]],
                "a repeated character needs its row each time: keep every token, in the text's order":
                    W[list(dict.fromkeys(ids))],
                "a repeated character needs its row each time, and the rows go in the text's order: don't use a set":
                    W[sorted(set(ids))],
                "the rows go in the text's order: don't sort the ids": W[sorted(ids)],
                "those are the token ids: return their embedding rows, embedding_weight[ids]": torch.tensor(ids),
                "the id of a character is tokenizer.char_to_id[c] (tokenizer.encode(text)), not its place in "
                "tokenizer.chars": W[[tok.chars.index(c) for c in text]],
                "one row per token: the shape is (n_tokens, n_embd), not transposed": W[ids].T,
            }, want, atol=1e-7)
            if cause:
                raise AssertionError(f"{what}: {cause}")
            expect_shape(got, want.shape, f"{what} (one row per token)")
            expect_close(got, want, f"{what}, row i = embedding_weight[tokenizer.encode(text)[i]]", atol=1e-7)

        # characters the tokenizer lacks: at the end, in the middle, at the start
        for text, unknown in (("心情😀", "😀"), ("好ß心", "ß"), ("ñ不好", "ñ")):
            what = f"soft_prompt_from_text(embedding_weight, tokenizer, {text!r})"
            try:
                answer(weight, tok, text)
            except StudentCodeError as e:
                assert isinstance(e.error, ValueError), \
                    f"{what}: your code raised {e}; check each character against tokenizer.char_to_id first and " \
                    f"raise ValueError naming the unknown ones"
                assert _names(str(e.error), unknown), \
                    f"{what}: the ValueError must name the unknown character {unknown!r}, got {str(e.error)!r}"
            else:
                raise AssertionError(f"{what}: {unknown!r} has no token, so your code must raise ValueError naming it, "
                                     f"not fall back to its bytes")
    return run_check("Exercise: soft prompt from text", test, soft_prompt_from_text)


def check_adapter_block(adapter_block) -> bool:
    """adapter_block(d_model, bottleneck) -> an nn.Module with .down = nn.Linear(d, m) (weights
    N(0, 0.02²), bias 0) and .up = nn.Linear(m, d) (all zeros), forward h + up(gelu(down(h)))."""
    def test(answer):
        for d, m in ((12, 3), (8, 1), (128, 16)):
            what = f"your adapter block ({d}, {m})"
            torch.manual_seed(d)
            block = answer(d, m)
            assert isinstance(block, nn.Module), f"{what}: the class must be an nn.Module, got {type(block).__name__}"
            for name, (d_in, d_out) in (("down", (d, m)), ("up", (m, d))):
                layer = getattr(block, name, None)
                assert isinstance(layer, nn.Linear) and (layer.in_features, layer.out_features) == (d_in, d_out), \
                    f"{what}: self.{name} must be nn.Linear({d_in}, {d_out}), got {layer!r}"
                assert layer.bias is not None, f"{what}: self.{name} needs its bias (b_{name})"
            assert all(p.requires_grad for p in block.parameters()), f"{what}: the adapter's own parameters are trained"
            assert torch.count_nonzero(block.up.weight) == 0 and torch.count_nonzero(block.up.bias) == 0, \
                f"{what}: W_up and b_up start at zero, so that the adapter starts as the identity"
            assert torch.count_nonzero(block.down.bias) == 0, f"{what}: b_down starts at zero"
            g = torch.Generator().manual_seed(m)
            h = torch.randn(2, 5, d, generator=g)
            forward = student_code(block, "h is (..., d): down maps d to m, up maps m back to d")
            with torch.no_grad():
                assert torch.equal(forward(h), h), f"{what}: with W_up = 0 and b_up = 0 the block must return h exactly"
                for p in block.parameters():                  # as after some training
                    p.copy_(torch.randn(p.shape, generator=g))
                got = tensor_answer(forward(h), f"{what}: the output")
                W_down, b_down, W_up, b_up = block.down.weight, block.down.bias, block.up.weight, block.up.bias
                want = h + F.gelu(h @ W_down.T + b_down) @ W_up.T + b_up
                cause = likely_cause(got, {
                    "keep the residual: the block returns h + up(gelu(down(h)))": want - h,
                    "GELU comes between the two projections, on down(h)": h + (h @ W_down.T + b_down) @ W_up.T + b_up,
                    "use the exact GELU, F.gelu (not ReLU)": h + F.relu(h @ W_down.T + b_down) @ W_up.T + b_up,
                }, want, atol=1e-5)
            assert cause is None, f"{what}: {cause}"
            expect_close(got, want, f"{what}: h + up(gelu(down(h)))", atol=1e-5, rtol=1e-4)
        torch.manual_seed(0)        # W_down's spread, on a block big enough to measure it
        W = answer(512, 64).down.weight.detach()
        assert 0.015 < W.std().item() < 0.025, \
            f"W_down ~ N(0, 0.02²): its standard deviation should be 0.02, got {W.std().item():.4f} (nn.init.normal_(w, std=0.02))"
    return run_check("Exercise: the adapter block", test, adapter_block,
                     shape_hint="h is (..., d): self.down = nn.Linear(d, m) and self.up = nn.Linear(m, d)")
