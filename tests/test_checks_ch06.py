"""Mutation tests of chapter 06's checkers: each wrong answer of the bank (the usual mistakes) is
rejected with a message that names what is wrong, and each right answer, written differently from
the solution (another container, algorithm or formula), is accepted. The answers are written here,
independently of llmtap.chat and llmtap.packing, which the checkers compare against."""
import bisect

import numpy as np
import torch
import torch.nn.functional as F

from llmtap import checks


# ----------------------------------------------------------------------------- the assistant mask
def mask_right(offsets, spans):               # the statement's rule, token by token
    return [any(s < b and e > a for a, b in spans) for s, e in offsets]


def mask_bisect(offsets, spans):              # the last span starting before the token ends decides; a tensor
    starts = [a for a, _ in spans]
    out = []
    for s, e in offsets:
        k = bisect.bisect_left(starts, e) - 1
        out.append(k >= 0 and spans[k][1] > s)
    return torch.tensor(out, dtype=torch.bool)


def mask_numpy(offsets, spans):               # every token against every span at once, 1/0 as transformers gives
    if not offsets:
        return []
    o = np.array(offsets).reshape(-1, 2)
    hit = np.zeros(len(o), dtype=bool)
    for a, b in spans:
        hit |= (o[:, 0] < b) & (o[:, 1] > a)
    return hit.astype(int).tolist()


def mask_owner(offsets, spans):               # which span owns each character; a zero-width token between two of its characters
    owner = {}
    for n, (a, b) in enumerate(spans):
        owner.update((c, n) for c in range(a, b))
    out = []
    for s, e in offsets:
        if s == e:
            out.append(owner.get(s - 1) is not None and owner.get(s - 1) == owner.get(s))
        else:
            out.append(any(c in owner for c in range(s, e)))
    return tuple(out)


def _by(name, rule):
    def answer(offsets, spans):
        return [any(rule(s, e, a, b) for a, b in spans) for s, e in offsets]
    answer.__name__ = name
    return answer


mask_contained = _by("mask_contained", lambda s, e, a, b: a <= s and e <= b)
mask_inclusive = _by("mask_inclusive", lambda s, e, a, b: s <= b and e >= a)
mask_starts_inside = _by("mask_starts_inside", lambda s, e, a, b: a <= s < b)
mask_ends_inside = _by("mask_ends_inside", lambda s, e, a, b: a < e <= b)
mask_either_end = _by("mask_either_end", lambda s, e, a, b: a <= s < b or a < e <= b)
mask_positive_width = _by("mask_positive_width", lambda s, e, a, b: min(e, b) - max(s, a) > 0)


def mask_first_span(offsets, spans):
    return mask_right(offsets, spans[:1])


def mask_last_span(offsets, spans):           # keeps overwriting with the latest span
    out = [False] * len(offsets)
    for a, b in spans:
        out = [s < b and e > a for s, e in offsets]
    return out


def mask_indices(offsets, spans):
    return [k for k, (s, e) in enumerate(offsets) if any(s < b and e > a for a, b in spans)]


def mask_inverted(offsets, spans):
    return [not m for m in mask_right(offsets, spans)]


def mask_chars(offsets, spans):               # characters of the spans: a zero-width token holds none
    inside = {c for a, b in spans for c in range(a, b)}
    return [any(c in inside for c in range(s, e)) for s, e in offsets]


def mask_pops_spans(offsets, spans):          # walks the spans by popping them off the caller's list
    out = []
    for s, e in offsets:
        while spans and s >= spans[0][1]:
            spans.pop(0)
        out.append(bool(spans) and e > spans[0][0])
    return out


def mask_first_span_read(offsets, spans):     # two pointers, set up from spans[0] even when there is none
    k, (a, b) = 0, spans[0]
    out = []
    for s, e in offsets:
        while s >= b and k + 1 < len(spans):
            k += 1
            a, b = spans[k]
        out.append(s < b and e > a)
    return out


def mask_generator(offsets, spans):
    return (any(s < b and e > a for a, b in spans) for s, e in offsets)


def mask_empty_without_spans(offsets, spans):
    return mask_right(offsets, spans) if spans else []


# ----------------------------------------------------------------------------- the block-diagonal causal mask
def block_right(document_ids):                # the statement's two tests, broadcast
    T = document_ids.shape[1]
    same = document_ids[:, :, None] == document_ids[:, None, :]
    return same & torch.ones(T, T, dtype=torch.bool, device=document_ids.device).tril()


def block_tril(document_ids):                 # tril works on the last two axes of a batch
    return torch.tril(document_ids.unsqueeze(2) == document_ids.unsqueeze(1))


def block_loops(document_ids):                # entry by entry
    B, T = document_ids.shape
    out = torch.zeros(B, T, T, dtype=torch.bool)
    for b in range(B):
        row = document_ids[b].tolist()
        for i in range(T):
            for j in range(i + 1):
                out[b, i, j] = row[i] == row[j]
    return out


def block_one_hot(document_ids):              # same document = the one-hot rows' dot product, padding shifted to class 0
    T = document_ids.shape[1]
    hot = F.one_hot(document_ids + 1).float()
    same = hot @ hot.transpose(1, 2) > 0.5
    i = torch.arange(T)
    return same & (i[:, None] >= i[None, :])


def block_segments(document_ids):             # packed examples are contiguous: one causal block per run of equal ids
    masks = []
    for row in document_ids.tolist():
        blocks, start = [], 0
        for k in range(1, len(row) + 1):
            if k == len(row) or row[k] != row[start]:
                blocks.append(torch.ones(k - start, k - start).tril())
                start = k
        masks.append(torch.block_diag(*blocks).bool())
    return torch.stack(masks)


def block_causal_only(document_ids):          # the naive packing leak
    B, T = document_ids.shape
    return torch.ones(B, T, T, dtype=torch.bool).tril()


def block_diagonal_only(document_ids):
    return document_ids[:, :, None] == document_ids[:, None, :]


def block_transposed(document_ids):
    return block_right(document_ids).transpose(1, 2)


def block_strict(document_ids):               # j < i: the first token of each example reads nothing
    return torch.tril(document_ids[:, :, None] == document_ids[:, None, :], diagonal=-1)


def block_pad_rows_false(document_ids):       # "padding attends to nothing"
    return block_right(document_ids) & (document_ids != -1)[:, :, None]


def block_pad_only_itself(document_ids):
    T = document_ids.shape[1]
    pad = (document_ids == -1)[:, :, None]
    return (block_right(document_ids) & ~pad) | (torch.eye(T, dtype=torch.bool) & pad)


def block_pad_reads_all(document_ids):        # padding queries read everything before them
    T = document_ids.shape[1]
    pad = (document_ids == -1)[:, :, None]
    return block_right(document_ids) | (pad & torch.ones(T, T, dtype=torch.bool).tril())


def block_pad_wildcard(document_ids):         # -1 "matches any document"
    d_i, d_j = document_ids[:, :, None], document_ids[:, None, :]
    return torch.tril((d_i == d_j) | (d_i == -1) | (d_j == -1))


def block_ids_as_positions(document_ids):     # the causal test written on the ids
    return document_ids[:, None, :] <= document_ids[:, :, None]


def block_ids_at_most(document_ids):          # doc[j] <= doc[i] for the same-document test
    return torch.tril(document_ids[:, None, :] <= document_ids[:, :, None])


def block_positions_as_ids(document_ids):     # i == j where doc[i] == doc[j] was meant
    B, T = document_ids.shape
    pos = torch.arange(T).expand(B, T)
    return torch.tril(pos[:, :, None] == pos[:, None, :])


def block_float(document_ids):                # an additive mask: 0 where allowed, -inf elsewhere
    return torch.zeros(block_right(document_ids).shape).masked_fill(~block_right(document_ids), float("-inf"))


def block_one_row(document_ids):              # written for one row: the first
    doc = document_ids[0]
    return torch.tril(doc[:, None] == doc[None, :])


def block_rows_crossed(document_ids):         # doc[:, None] == doc[None, :] on a (B, T) batch
    T = document_ids.shape[1]
    return (document_ids[:, None] == document_ids[None, :]) & torch.ones(T, T, dtype=torch.bool).tril()


def block_with_heads(document_ids):
    return block_right(document_ids)[:, None]


def block_in_place(document_ids):             # gives padding an id of its own by writing into the caller's tensor
    document_ids[document_ids == -1] = int(document_ids.max()) + 1
    return block_right(document_ids)


# ----------------------------------------------------------------------------- chat labels
def labels_right(ids, mask):                  # the statement, with lists
    return ids[:-1], [tok if m else -100 for tok, m in zip(ids[1:], mask[1:])]


def labels_where(ids, mask):                  # shifted tensors and torch.where
    ids_t, mask_t = torch.tensor(ids), torch.tensor(mask)
    return ids_t[:-1], torch.where(mask_t[1:], ids_t[1:], torch.full_like(ids_t[1:], -100))


def labels_numpy(ids, mask):                  # numpy arrays, boolean indexing
    ids_a, mask_a = np.array(ids), np.array(mask, dtype=bool)
    y = np.full(len(ids) - 1, -100)
    y[mask_a[1:]] = ids_a[1:][mask_a[1:]]
    return ids_a[:-1], y


def labels_by_turns(ids, mask):               # each run of True in the mask copied into y one position earlier
    y, k = [-100] * (len(ids) - 1), 0
    while k < len(ids):
        if mask[k]:
            end = k
            while end < len(ids) and mask[end]:
                end += 1
            y[k - 1:end - 1] = ids[k:end]
            k = end
        else:
            k += 1
    return [tuple(ids[:-1]), tuple(y)]


def labels_unshifted(ids, mask):              # chat.BUGS["off-by-one"]: y[t] = x[t]
    return ids[:-1], [ids[t] if mask[t + 1] else -100 for t in range(len(ids) - 1)]


def labels_late_start(ids, mask):             # chat.BUGS["late-start"]: the first token of each answer dropped
    return ids[:-1], [ids[t + 1] if mask[t + 1] and t >= 1 and mask[t] else -100 for t in range(len(ids) - 1)]


def labels_mask_t(ids, mask):                 # mask[t] where mask[t + 1] is meant
    return ids[:-1], [ids[t + 1] if mask[t] else -100 for t in range(len(ids) - 1)]


def labels_train_on_prompt(ids, mask):        # chat.BUGS["train-on-prompt"]: labels = input_ids
    return ids[:-1], ids[1:]


def labels_hide_pad(ids, mask):               # chat.BUGS["pad-is-eos"]: masks the course tokenizer's pad id 0
    x, y = labels_right(ids, mask)
    return x, [-100 if tok == 0 else tok for tok in y]


def labels_hide_end_mark(ids, mask):          # "the row's last token is padding": masks every token equal to it
    x, y = labels_right(ids, mask)
    return x, [-100 if tok == ids[-1] else tok for tok in y]


def labels_first_turn(ids, mask):             # stops at the end of the first answer
    y, seen = [], False
    for t in range(len(ids) - 1):
        if seen and not mask[t + 1] and mask[t]:
            break
        seen |= mask[t + 1]
        y.append(ids[t + 1] if mask[t + 1] else -100)
    return ids[:-1], y + [-100] * (len(ids) - 1 - len(y))


def labels_last_turn(ids, mask):              # only the run of True that ends last
    y = [-100] * (len(ids) - 1)
    k = len(ids) - 1
    while not mask[k]:
        k -= 1
    while k > 0 and mask[k]:
        y[k - 1] = ids[k]
        k -= 1
    return ids[:-1], y


def labels_inverted(ids, mask):
    return ids[:-1], [tok if not m else -100 for tok, m in zip(ids[1:], mask[1:])]


def labels_hf(ids, mask):                     # Hugging Face labels, as long as the row
    return ids[:-1], [tok if m else -100 for tok, m in zip(ids, mask)]


def labels_hf_cut(ids, mask):                 # the same, cut to x's length
    return ids[:-1], [tok if m else -100 for tok, m in zip(ids[:-1], mask[:-1])]


def labels_x_whole_row(ids, mask):
    return ids, labels_right(ids, mask)[1]


def labels_x_late(ids, mask):
    return ids[1:], labels_right(ids, mask)[1]


def labels_in_place(ids, mask):               # shifts the caller's mask by popping its first entry
    mask.pop(0)
    return ids[:-1], [tok if m else -100 for tok, m in zip(ids[1:], mask)]


def labels_swapped(ids, mask):
    x, y = labels_right(ids, mask)
    return y, x


def labels_float(ids, mask):
    x, y = labels_right(ids, mask)
    return torch.tensor(x), torch.tensor(y, dtype=torch.float32)


def labels_masked_with_pad(ids, mask):        # fills the untrained positions with 0 instead of -100
    return ids[:-1], [tok if m else 0 for tok, m in zip(ids[1:], mask[1:])]


def labels_y_only(ids, mask):
    return labels_right(ids, mask)[1]


RIGHT = [
    (checks.check_assistant_mask, mask_right), (checks.check_assistant_mask, mask_bisect),
    (checks.check_assistant_mask, mask_numpy), (checks.check_assistant_mask, mask_owner),
    (checks.check_block_mask, block_right), (checks.check_block_mask, block_tril), (checks.check_block_mask, block_loops),
    (checks.check_block_mask, block_one_hot), (checks.check_block_mask, block_segments),
    (checks.check_chat_labels, labels_right), (checks.check_chat_labels, labels_where),
    (checks.check_chat_labels, labels_numpy), (checks.check_chat_labels, labels_by_turns),
]

WRONG = [
    (checks.check_assistant_mask, mask_contained, "wholly inside a span"),
    (checks.check_assistant_mask, mask_inclusive, "span ends are exclusive"),
    (checks.check_assistant_mask, mask_starts_inside, "only at where a token starts"),
    (checks.check_assistant_mask, mask_ends_inside, "only at where a token ends"),
    (checks.check_assistant_mask, mask_either_end, "covers it whole"),
    (checks.check_assistant_mask, mask_positive_width, "zero-width token (k, k) strictly inside"),
    (checks.check_assistant_mask, mask_chars, "zero-width token (k, k) strictly inside"),
    (checks.check_assistant_mask, mask_first_span, "only the first span is used"),
    (checks.check_assistant_mask, mask_last_span, "only the last span is used"),
    (checks.check_assistant_mask, mask_indices, "look like the indices"),
    (checks.check_assistant_mask, mask_inverted, "inverted"),
    (checks.check_assistant_mask, mask_pops_spans, "in place"),
    (checks.check_assistant_mask, mask_first_span_read, "your code raised IndexError: list index out of range - on "
                                                        "assistant_mask(offsets=[(0, 3), (3, 6), (6, 8)], spans=[])"),
    (checks.check_assistant_mask, mask_generator, "make it a list"),
    (checks.check_assistant_mask, mask_empty_without_spans, "all False when no token overlaps a span"),
    (checks.check_block_mask, block_causal_only, "the naive packing leak"),
    (checks.check_block_mask, block_diagonal_only, "that is not causal"),
    (checks.check_block_mask, block_transposed, "transposed"),
    (checks.check_block_mask, block_strict, "the diagonal must be True"),
    (checks.check_block_mask, block_pad_rows_false, "padding rows are all False"),
    (checks.check_block_mask, block_pad_only_itself, "a padding query reads only itself"),
    (checks.check_block_mask, block_pad_reads_all, "a padding query reads every earlier token"),
    (checks.check_block_mask, block_pad_wildcard, "-1 is treated as matching every document"),
    (checks.check_block_mask, block_ids_as_positions, "the causal test compares document ids"),
    (checks.check_block_mask, block_ids_at_most, "must be equality"),
    (checks.check_block_mask, block_positions_as_ids, "each token reads only itself"),
    (checks.check_block_mask, block_float, "must be a bool tensor"),
    (checks.check_block_mask, block_one_row, "keep the batch axis"),
    (checks.check_block_mask, block_rows_crossed, "your code raised RuntimeError"),
    (checks.check_block_mask, block_with_heads, "the head axis"),
    (checks.check_block_mask, block_in_place, "in place"),
    (checks.check_chat_labels, labels_unshifted, "the labels are not shifted"),
    (checks.check_chat_labels, labels_late_start, "the answer's mask starts one token late"),
    (checks.check_chat_labels, labels_mask_t, "one position late"),
    (checks.check_chat_labels, labels_train_on_prompt, "the loss is on every token"),
    (checks.check_chat_labels, labels_hide_pad, "the end mark (id 0) is not a target"),
    (checks.check_chat_labels, labels_hide_end_mark, "never mask by token value"),
    (checks.check_chat_labels, labels_first_turn, "only the first answer is trained"),
    (checks.check_chat_labels, labels_last_turn, "only the last answer is trained"),
    (checks.check_chat_labels, labels_inverted, "the mask is inverted"),
    (checks.check_chat_labels, labels_hf, "a Hugging Face model shifts itself"),
    (checks.check_chat_labels, labels_hf_cut, "Hugging Face's labels"),
    (checks.check_chat_labels, labels_x_whole_row, "nothing follows the last token"),
    (checks.check_chat_labels, labels_x_late, "x starts one token late"),
    (checks.check_chat_labels, labels_in_place, "in place"),
    (checks.check_chat_labels, labels_swapped, "swapped"),
    (checks.check_chat_labels, labels_float, "must be an int"),
    (checks.check_chat_labels, labels_masked_with_pad, "the ignore_index of F.cross_entropy), not 0"),
    (checks.check_chat_labels, labels_y_only, "must return a pair (x, y)"),
]

CHECKERS = (checks.check_assistant_mask, checks.check_block_mask, checks.check_chat_labels)
