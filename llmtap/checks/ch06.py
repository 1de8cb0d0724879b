"""Checkers of chapter 06 (from instruction records to a chat model): the assistant-token mask, the
block-diagonal causal mask of a packed batch, the labels of one chat row.

Each one tries several inputs chosen so that the usual mistakes give a different result from the
right answer, and names the mistake when the answer equals what that mistake gives
(``likely_cause``). Wrong labels are also run through ``llmtap.chat.check_labels``, which names the
invariant they break.
"""
from __future__ import annotations

import numbers
import re

import numpy as np
import torch

from ..chat import BUGS, IGNORE, INVARIANTS, assistant_turns, check_labels, render, token_mask
from ..chat import chat_labels as reference_labels
from ..packing import PADDING_DOCUMENT, block_causal_mask, pack
from ..tokenizer import Tokenizer
from .ch05 import _ids, _on
from .common import expect_shape, likely_cause, run_check

# A two-turn chat in the Human/Assistant layout; the checkers cut it into tokens of their own
_CHAT = [{"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "An apple."},
         {"role": "user", "content": "And a red one?"}, {"role": "assistant", "content": "A cherry."}]


# ----------------------------------------------------------------------------- the assistant mask
_WORDS = re.compile(r"<eos>| ?\w+| ?[^\w\s]|\s")   # a word takes the space before it, as GPT-2's tokenizer does


def _mask_by(offsets, spans, overlaps) -> list[bool]:
    return [any(overlaps(s, e, a, b) for a, b in spans) for s, e in offsets]


def _overlaps(s, e, a, b) -> bool:
    return s < b and e > a


def _mask_mistakes(offsets, spans, want) -> dict:
    # the one-end rule first: it passes every input until a token covers a whole span, and there the rules
    # after it give the same mask
    return {
        "that asks for one end of the token inside the span; a token that starts before a span and ends after "
        "it covers it whole, and overlaps it: start < span_end and end > span_start":
            _mask_by(offsets, spans, lambda s, e, a, b: a <= s < b or a < e <= b),
        "span ends are exclusive: a token that ends where a span starts (end == span_start) or starts where "
        "it ends (start == span_end) shares no character with it; test start < span_end and end > span_start, "
        "with < not <=": _mask_by(offsets, spans, lambda s, e, a, b: s <= b and e >= a),
        "that keeps only the tokens lying wholly inside a span; a token that crosses a span's edge (a word that "
        "takes the space before it, say) overlaps it and counts: start < span_end and end > span_start":
            _mask_by(offsets, spans, lambda s, e, a, b: a <= s and e <= b),
        "that looks only at where a token starts; a token that starts before a span and ends inside it (or "
        "after it) overlaps it too: start < span_end and end > span_start":
            _mask_by(offsets, spans, lambda s, e, a, b: a <= s < b),
        "that looks only at where a token ends; a token that starts inside a span and ends after it overlaps "
        "it too: start < span_end and end > span_start": _mask_by(offsets, spans, lambda s, e, a, b: a < e <= b),
        "a zero-width token (k, k) strictly inside a span counts (transformers marks every token between a "
        "span's first and last): test start < span_end and end > span_start, not that the shared width is "
        "positive": _mask_by(offsets, spans, lambda s, e, a, b: min(e, b) > max(s, a)),
        "only the first span is used: a multi-turn chat has one span per assistant turn, and a token may "
        "overlap any of them": _mask_by(offsets, spans[:1], _overlaps),
        "only the last span is used: a multi-turn chat has one span per assistant turn, and a token may "
        "overlap any of them": _mask_by(offsets, spans[-1:], _overlaps),
        "that is inverted: True marks the assistant's tokens, the ones that overlap a span": [not m for m in want],
    }


def _mask_answer(value, n: int, call: str) -> list[bool]:
    """One True/False per token, as a list: a list or tuple of bools (or 1/0, as transformers'
    assistant_masks holds), a 1-D bool tensor or numpy array."""
    if value is None:
        raise AssertionError(f"{call} returned None: return the list of True/False (every path of the "
                             f"function must return it)")
    if isinstance(value, (torch.Tensor, np.ndarray)):
        if value.ndim != 1:
            raise AssertionError(f"{call} must give one True/False per token, a flat list of {n}, "
                                 f"got shape {tuple(value.shape)}")
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise AssertionError(f"{call} must return a list of True/False, one per token, got {type(value).__name__}"
                             + (": make it a list, list(...)" if hasattr(value, "__iter__") else ""))
    for k, v in enumerate(value):
        if not isinstance(v, (numbers.Integral, np.bool_)):
            raise AssertionError(f"{call}: entry {k} must be True or False, got {type(v).__name__} {v!r}")
    flags = all(isinstance(v, (bool, np.bool_)) or v in (0, 1) for v in value)
    if len(value) != n or not flags:
        if not value:
            raise AssertionError(f"{call} returned an empty list for {n} tokens: return one True/False per "
                                 f"token (all False when no token overlaps a span)")
        if not any(isinstance(v, (bool, np.bool_)) for v in value):
            raise AssertionError(f"{call} returned {list(value)}: those look like the indices of the assistant's "
                                 f"tokens; return a mask instead, one True/False per token ({n} entries), True "
                                 f"where the token overlaps a span")
        raise AssertionError(f"{call} must give one True/False per token: {n} entries, got {len(value)}")
    return [bool(v) for v in value]


def _bits(mask) -> str:
    return "".join("1" if m else "0" for m in mask) or "(empty)"


def _mask_cases() -> list:
    """(offsets, spans, text or None): each there for a mistake, in an order where the first input a
    mistaken answer gets wrong is one that tells it from the others."""
    rendered = render(_CHAT, "human-assistant")
    words = [m.span() for m in _WORDS.finditer(rendered.text)]
    return [
        ([(0, 3), (3, 5), (5, 8), (8, 10), (10, 12)], [(5, 10)], None),       # tokens exactly on the span's edges
        ([(0, 4), (4, 7), (7, 9), (9, 12), (12, 14)], [(6, 10)], None),      # tokens straddling its start and end
        ([(0, 3), (3, 12), (12, 14)], [(5, 8)], None),                       # one token covers the whole span
        ([(0, 5), (5, 10), (10, 15), (15, 20), (20, 25), (25, 30)], [(5, 10), (20, 25)], None),   # two turns
        ([(0, 2), (2, 2), (2, 5), (5, 5), (5, 7), (7, 7), (7, 9)], [(2, 7)], None),     # zero-width tokens
        ([(0, 4), (4, 16), (16, 20)], [(5, 8), (10, 12)], None),             # one token over two spans
        ([(0, 1), (1, 2), (1, 2), (1, 2), (2, 3), (3, 4)], [(1, 3)], None),  # byte tokens sharing a character
        ([(0, 3), (3, 6), (6, 9), (9, 12), (12, 15), (15, 18), (18, 21)], [(3, 6), (9, 12), (15, 18)], None),
        ([(0, 3), (3, 6), (6, 8)], [], None),                                # no assistant turn at all
        ([], [(0, 4)], None),                                                # no tokens
        (words, list(rendered.assistant_spans), rendered.text),
    ]


def check_assistant_mask(assistant_mask) -> bool:
    """assistant_mask(offsets, spans) -> list[bool]: True for each token (start, end) that overlaps an
    assistant span (a, b), start < b and end > a."""
    def test(answer):
        for offsets, spans, text in _mask_cases():
            call = (f"assistant_mask on the chat {text!r} cut into {len(offsets)} word tokens, spans={spans}" if text
                    else f"assistant_mask(offsets={offsets}, spans={spans})")
            given_offsets, given_spans = [tuple(o) for o in offsets], [tuple(s) for s in spans]
            got = _on(call, answer, given_offsets, given_spans)
            assert (given_offsets, given_spans) == (offsets, spans), \
                f"{call} changed its arguments in place: leave offsets and spans as they are"
            got = _mask_answer(got, len(offsets), call)
            want = _mask_by(offsets, spans, _overlaps)
            if got == want:
                continue
            k = next(k for k in range(len(want)) if got[k] != want[k])
            s, e = offsets[k]
            token = f"token {k} {offsets[k]}" + (f" {text[s:e]!r}" if text else "")
            hit = next(((a, b) for a, b in spans if _overlaps(s, e, a, b)), None)
            why = (f"it overlaps the span {hit}: {s} < {hit[1]} and {e} > {hit[0]}" if hit else
                   "it overlaps no span: for each span (a, b), start >= b or end <= a")
            cause = likely_cause(torch.tensor(got), _mask_mistakes(offsets, spans, want), torch.tensor(want))
            raise AssertionError(f"{call}: {token} should be {want[k]} ({why}), got {got[k]}; the mask should be "
                                 f"{_bits(want)}, got {_bits(got)} (1 = True)" + (f" - {cause}" if cause else ""))
    return run_check("Exercise: the assistant mask", test, assistant_mask)


# ----------------------------------------------------------------------------- the block-diagonal causal mask
_NAN = ("an all-False row is a softmax over nothing: NaN in a hand-written attention and in "
        "F.scaled_dot_product_attention of older PyTorch (recent versions give zeros without a word), and the NaN "
        "reaches the gradients")


def _block_mistakes(document_ids: torch.Tensor, want: torch.Tensor) -> dict:
    B, T = document_ids.shape
    i = torch.arange(T)
    causal = (i[None, :] <= i[:, None]).expand(B, T, T)                         # [i, j]: j <= i
    eye = torch.eye(T, dtype=torch.bool).expand(B, T, T)
    doc_i, doc_j = document_ids[:, :, None], document_ids[:, None, :]
    same = doc_i == doc_j
    pad_i, pad_j = doc_i == PADDING_DOCUMENT, doc_j == PADDING_DOCUMENT
    return {
        "that is the plain causal mask (the naive packing leak): a query also reads the examples packed before "
        "it in its row; add the same-document test, doc[i] == doc[j]": causal,
        "that is not causal: it is block-diagonal only, so a token reads the later tokens of its own example; "
        "add j <= i": same,
        "that is transposed: query i (a row) may read key j (a column) when j <= i, the past, not the future "
        "(tril, not triu)": want.transpose(1, 2),
        "the diagonal must be True: a token reads itself (j <= i, not j < i)": want & ~eye,
        f"padding rows are all False, and {_NAN}. Let padding (-1) be one more document, as block_causal_mask "
        f"does: pad tokens read the pad tokens up to themselves": want & ~pad_i,
        "a padding query reads only itself; by block_causal_mask's convention padding (-1) is one more "
        "document, so pad tokens read the pad tokens up to themselves: doc[i] == doc[j] and j <= i, no special "
        "case": (want & ~pad_i) | (eye & pad_i),
        "-1 is treated as matching every document, so padding and real tokens read each other; padding is one "
        "more document: doc[i] == doc[j] and j <= i, no special case": causal & (same | pad_i | pad_j),
        "a padding query reads every earlier token, real ones included; padding is one more document, so it "
        "reads only the padding up to itself: doc[i] == doc[j] and j <= i": causal & (same | pad_i),
        "the causal test compares document ids, not positions: j <= i is about where the tokens are "
        "(torch.arange(T)), and the ids must be equal": doc_j <= doc_i,
        "the same-document test must be equality, doc[j] == doc[i]: with doc[j] <= doc[i] a query reads "
        "the examples packed before it (the naive packing leak)": causal & (doc_j <= doc_i),
        "each token reads only itself: the same-document test compares document ids, doc[i] == doc[j], not "
        "positions i == j": eye,
        "that is inverted: True means 'may read' (attn_mask of F.scaled_dot_product_attention), so the "
        "allowed keys are True": ~want,
    }


def _block_cases() -> list[torch.Tensor]:
    """document_ids batches: right and left padding side by side, one example, padding only, one token,
    ids that are not 0, 1, 2 ..., and a batch that llmtap.packing.pack built."""
    rows = [([1, 5, 6], [7, 8, 2]), ([1, 9], [10, 2]), ([1, 11, 12, 13], [14, 15, 16, 2]), ([1, 17], [2]),
            ([1, 18, 19, 20, 21], [22, 23, 2]), ([1, 24], [25, 26, 27, 2])]
    return [torch.tensor([[0, 0, 0, 1, 1, -1, -1], [-1, -1, 0, 0, 1, 1, 2]]),
            torch.tensor([[0, 0, 0, 0, 0]]),
            torch.tensor([[-1, -1, -1, -1], [0, 0, 0, 1]]),
            torch.tensor([[0]]),
            torch.tensor([[3, 3, 7, 7, 7, 9], [4, 4, 4, 4, 8, -1]]),
            pack(rows, block_size=12, pad_id=0).document_ids]


def _who(d: int) -> str:
    return "padding" if d == PADDING_DOCUMENT else f"document {d}"


def check_block_mask(block_mask) -> bool:
    """block_mask(document_ids) -> (B, T, T) bool tensor: allowed[b, i, j] = j <= i and
    doc[b, i] == doc[b, j], padding (-1) one more document, as llmtap.packing.block_causal_mask."""
    def test(answer):
        for document_ids in _block_cases():
            B, T = document_ids.shape
            call = f"block_mask(document_ids={document_ids.tolist()})"
            given = document_ids.clone()
            got = _on(call, answer, given)
            assert torch.equal(given, document_ids), f"{call} changed document_ids in place: leave it as it is"
            assert isinstance(got, torch.Tensor), (f"{call} must return a torch.Tensor (it goes to "
                                                   f"F.scaled_dot_product_attention), got {type(got).__name__}")
            assert got.dtype == torch.bool, (
                f"{call} must be a bool tensor (True = may read), got {got.dtype}: only a bool mask hides keys, a "
                f"float one is added to the attention scores, so 1/0 hides nothing; compare with == and <=, "
                f"and combine with &")
            got = got.detach().cpu()
            if got.dim() == 4 and got.shape[1] == 1:
                raise AssertionError(f"{call} must have shape {(B, T, T)}, got {tuple(got.shape)}: return (B, T, T); "
                                     f"the head axis is added where the mask goes to attention, mask[:, None]")
            if tuple(got.shape) == (B, B, T) and B != T:
                raise AssertionError(f"{call} must have shape {(B, T, T)}, got {tuple(got.shape)}: that compares "
                                     f"the rows with each other; compare within each row, document_ids[:, :, None] "
                                     f"== document_ids[:, None, :] gives (B, T, T)")
            if tuple(got.shape) == (T, T) and B > 1:
                raise AssertionError(f"{call} must have shape {(B, T, T)}, got {(T, T)}: keep the batch axis, one "
                                     f"(T, T) mask per row of the batch, each from its own row's document ids")
            expect_shape(got, (B, T, T), f"{call}, (batch, query i, key j)")
            want = block_causal_mask(document_ids)
            if torch.equal(got, want):
                continue
            cause = likely_cause(got, _block_mistakes(document_ids, want), want)
            empty = (~got.any(-1)).nonzero()
            if len(empty):
                b, i = (int(n) for n in empty[0])
                head = f"{call}: query {i} of row {b} ({_who(int(document_ids[b, i]))}) may read no key"
                raise AssertionError(f"{head} - {cause}" if cause and _NAN in cause else
                                     f"{head}: {_NAN}" + (f" - {cause}" if cause else ""))
            b, i, j = (int(n) for n in (got != want).nonzero()[0])
            d_i, d_j = int(document_ids[b, i]), int(document_ids[b, j])
            why = (f"j <= i and both are {'padding' if d_i == PADDING_DOCUMENT else f'in document {d_i}'}"
                   if want[b, i, j] else
                   f"key {j} comes after query {i}" if j > i else f"key {j} is in {_who(d_j)}, query {i} in {_who(d_i)}")
            raise AssertionError(
                f"{call}: entry [b={b}, i={i}, j={j}] should be {bool(want[b, i, j])} (query {i} "
                f"{'may' if want[b, i, j] else 'must not'} read key {j}: {why}), got {bool(got[b, i, j])} "
                f"({int((got != want).sum())} of {got.numel()} entries differ)" + (f" - {cause}" if cause else ""))
    return run_check("Exercise: the block-diagonal causal mask", test, block_mask,
                     shape_hint="the mask is (B, T, T): batch, query i, key j; document_ids[:, :, None] is (B, T, 1) "
                                "and document_ids[:, None, :] is (B, 1, T)")


# ----------------------------------------------------------------------------- chat labels
def _flags(bits: str) -> list[bool]:
    return [c == "1" for c in bits]


def _real_row() -> tuple[list[int], list[bool]]:
    """The chat rendered with <bos> and <eos>, cut by a course tokenizer (one token per character)."""
    rendered = render(_CHAT[:2] + [{"role": "user", "content": "Red?"}, {"role": "assistant", "content": "Cherry."}],
                      "human-assistant", bos_token="<bos>")
    tokenizer = Tokenizer.from_text(re.sub("<bos>|<eos>", "", rendered.text))
    return token_mask(rendered, tokenizer)


# (what the row is, ids, mask, eos id, pad id): the course tokenizer's ids (pad 0, bos 1, eos 2) first, then
# two vocabularies whose end mark is also the padding id, the one a collator would hide
_LABEL_ROWS = [
    ("one answer, then template text", [1, 10, 11, 12, 20, 21, 2, 30], _flags("00001110"), 2, 0),
    ("the answer ends the row and repeats a prompt token", [1, 10, 11, 20, 11, 2], _flags("000111"), 2, 0),
    ("two answers", [1, 10, 11, 20, 21, 2, 30, 12, 13, 22, 2, 30], _flags("000111000110"), 2, 0),
    ("three answers, the middle one only its end mark", [1, 10, 20, 2, 30, 11, 2, 30, 12, 21, 22, 2],
     _flags("001100100111"), 2, 0),
    ("the end mark is id 0, which is also the padding id", [1, 10, 11, 20, 21, 0, 30, 12, 22, 0],
     _flags("0001110011"), 0, 0),
    ("a GPT-2 style row, where <|endoftext|> (50256) is the end mark and the padding", [48, 25, 362, 10, 17, 30, 198, 32,
     25, 604, 50256], _flags("00000000011"), 50256, 50256),
]


def _label_mistakes(ids, mask, eos_id) -> dict:
    n, turns = len(ids), assistant_turns(mask)

    def where(keep, target=1):
        return [ids[t + target] if keep(t) else IGNORE for t in range(n - 1)]

    first_turn = {k for s, e in turns[:1] for k in range(s, e)}
    library = {bug: reference_labels(ids, mask, bug=bug, pad_id=eos_id)[1].tolist() for bug in BUGS}
    return {
        f"{BUGS['off-by-one'].effect}; y[t] = ids[t + 1]": library["off-by-one"],
        "y[t] is the token ids[t] itself, kept where mask[t] is: those are Hugging Face's labels (the model "
        "shifts them) cut to x's length; here y[t] is the NEXT token, ids[t + 1], kept where mask[t + 1] is":
            where(lambda t: mask[t], target=0),
        "y[t] is kept where mask[t] is True, one position late: position t predicts token t + 1, so keep y[t] "
        "where mask[t + 1] is (this way the first token of each answer is never a target, and the token after "
        "each answer is trained)": where(lambda t: mask[t]),
        f"{BUGS['late-start'].effect} (requiring both mask[t] and mask[t + 1] does the same); keep y[t] "
        f"wherever mask[t + 1] is True": library["late-start"],
        f"{BUGS['train-on-prompt'].effect}; keep y[t] only where mask[t + 1] is True": library["train-on-prompt"],
        f"the end mark (id {eos_id}) is not a target: {BUGS['pad-is-eos'].effect}. The row has no padding to hide: "
        f"the mask alone says what is trained, so never mask by token value": library["pad-is-eos"],
        "only the first answer is trained: every assistant turn is, each run of True in mask":
            where(lambda t: t + 1 in first_turn),
        "only the last answer is trained (what last_turn_only=True does on purpose); this exercise trains every "
        "assistant turn, each run of True in mask": reference_labels(ids, mask, last_turn_only=True)[1].tolist(),
        "the mask is inverted: that trains the prompts and template text, and none of the answers; keep y[t] "
        "where mask[t + 1] is True": where(lambda t: not mask[t + 1]),
    }


def _shown(values: list, t: int) -> str:
    """A list as it is when short; a long one as the part around position t."""
    if len(values) <= 24:
        return str(values)
    start = max(0, t - 4)
    return f"[{'..., ' if start else ''}{', '.join(map(str, values[start:start + 10]))}, ...] (from position {start})"


def _expect_row(call: str, ids: list, mask: list, eos_id: int, pad_id: int, x: list, y: list) -> None:
    n = len(ids)
    want_x, want_y = (v.tolist() for v in reference_labels(ids, mask))
    assert (x, y) != (want_y, want_x), f"{call}: x and y are swapped: return (x, y), the inputs first"
    if x != want_x:
        cause = ("x is the row without its last token, ids[:-1]: nothing follows the last token, so it predicts "
                 "nothing" if x == ids else
                 "x starts one token late: x = ids[:-1] starts with the row's first token, and it is y that holds "
                 "the next tokens" if x == ids[1:] else
                 "x = ids[:-1], the row without its last token, exactly as it is (no token of it is masked)")
        raise AssertionError(f"{call}: x should be {_shown(want_x, 0)}, got {_shown(x, 0)}: {cause}")
    if len(y) != n - 1:
        hf = [ids[t] if mask[t] else IGNORE for t in range(n)]
        raise AssertionError(f"{call}: y must be as long as x ({n - 1} entries), got {len(y)}" + (
            ": those are labels as long as the row, which a Hugging Face model shifts itself; here y[t] is already "
            "the token that follows x[t]" if y in (hf, [IGNORE] + want_y) else ": y[t] is the target of x[t]"))
    if y == want_y:
        return
    t = next(t for t in range(n - 1) if y[t] != want_y[t])
    fills = {y[t] for t in range(n - 1) if want_y[t] == IGNORE}
    if len(fills) == 1 and fills != {IGNORE} and all(y[t] == want_y[t] for t in range(n - 1) if want_y[t] != IGNORE):
        raise AssertionError(f"{call}: y[{t}] should be {IGNORE}, got {y[t]}: mark the positions that are not trained "
                             f"with {IGNORE} (the ignore_index of F.cross_entropy), not {fills.pop()}, a real token "
                             f"id that would be trained")
    cause = likely_cause(torch.tensor(y), _label_mistakes(ids, mask, eos_id), torch.tensor(want_y))
    problems = check_labels(torch.tensor(x), torch.tensor(y), (ids, mask), eos_id=eos_id, pad_id=pad_id,
                            raise_error=False)
    role = (f"token {t + 1} is the assistant's" if mask[t + 1] else f"token {t + 1} is prompt or template text")
    head = (f"{call}: y[{t}] should be {want_y[t]} ({role}), got {y[t]}; y should be {_shown(want_y, t)}, "
            f"got {_shown(y, t)}")
    if cause:
        broken = " and ".join(f"'{name}' ({INVARIANTS[name]})" for name in problems)
        raise AssertionError(f"{head} - {cause}" + (f". check_labels: this breaks {broken}" if broken else ""))
    found = "; ".join(f"'{name}': {message.removeprefix('row 0, ')}" for name, message in problems.items())
    raise AssertionError(head + (f" - check_labels finds {found}" if found else
                                 f" - y[t] = ids[t + 1] where mask[t + 1] is True, else {IGNORE}"))


def check_chat_labels(chat_labels) -> bool:
    """chat_labels(ids, mask) -> (x, y) of one row: x = ids[:-1], y[t] = ids[t + 1] where mask[t + 1],
    else -100; tensors or lists of ints."""
    def test(answer):
        rows = _LABEL_ROWS + [("a chat rendered by llmtap.chat, one token per character", *_real_row(), 2, 0)]
        for what, ids, mask, eos_id, pad_id in rows:
            call = (f"chat_labels(ids={ids}, mask={_bits(mask)} (1 = True)) ({what})" if len(ids) <= 24 else
                    f"chat_labels on {what} ({len(ids)} tokens, mask {_bits(mask)}, 1 = True)")
            given_ids, given_mask = list(ids), list(mask)
            got = _on(call, answer, given_ids, given_mask)
            assert (given_ids, given_mask) == (ids, mask), (
                f"{call} changed its arguments in place: ids and mask are the caller's, build new lists "
                f"(ids[:-1] is a copy; pop, append and item assignment change the caller's list)")
            assert isinstance(got, (tuple, list)) and len(got) == 2, \
                f"{call} must return a pair (x, y), got {type(got).__name__}" + (
                    f" of {len(got)}" if isinstance(got, (list, tuple)) else "")
            x, y = _ids(got[0], f"{call}: x"), _ids(got[1], f"{call}: y")
            _expect_row(call, ids, mask, eos_id, pad_id, x, y)
    return run_check("Exercise: chat labels", test, chat_labels)
