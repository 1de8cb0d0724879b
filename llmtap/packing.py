"""Packing fine-tuning examples into full rows, without letting them see each other (chapter 06).

A padded batch (``llmtap.train.collate_completions``) is as long as its longest example; the
shorter rows are padding that the model computes on and the loss throws away. Packing puts
several whole examples one after the other in each row of ``block_size`` tokens instead:

    row 0:  [ example 1 ][ example 4 ][ example 5 ][pad]
    row 1:  [     example 2     ][ example 3 ][pad....]

Done naively (concatenate, one causal mask, positions 0 .. T-1 across the row) every example
reads the ones packed before it, and sits at a position it would never have alone. Done right,
each token carries two more numbers:

* ``document_ids``: which example it belongs to. Attention becomes block-diagonal causal: query
  i may see key j only if j <= i and doc(j) = doc(i) (``block_causal_mask``);
* ``positions``: where it sits in its own example, 0 at each example's first token.

Then every example's logits are those it gets alone, up to rounding (tests/test_packing.py
checks this for every position encoding), and the loss over a packed batch is the token-weighted
mean over its examples, as for a padded batch.

The labels are built one example at a time, exactly as ``collate_completions`` builds them: an
example's last input position predicts its own last token, so the first token of the next
example is never a target of the previous one.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from .train import collate_completions
from .validate import non_negative_int, positive_int

PADDING_DOCUMENT = -1     # the document id of padding: pad tokens see only pad tokens, real ones never see them


@dataclass
class PackedBatch:
    """Rows of ``block_size`` tokens, each holding whole examples.

    x, y:          (B, T) input ids and targets (-100 where nothing is trained: prompts, padding);
    positions:     (B, T) each token's position inside its own example (0 at its first token);
    document_ids:  (B, T) which example of the row a token belongs to (0, 1, ...), -1 for padding;
    padding_fraction: the share of the B * T input positions that are padding;
    n_examples:    how many examples the batch holds.

    Run it as ``model(b.x, b.y, positions=b.positions, document_ids=b.document_ids)``.
    """
    x: torch.Tensor
    y: torch.Tensor
    positions: torch.Tensor
    document_ids: torch.Tensor
    padding_fraction: float
    n_examples: int

    def to(self, device) -> "PackedBatch":
        """The same batch with its tensors on ``device``."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("x", "y", "positions", "document_ids"):
            moved[name] = moved[name].to(device, non_blocking=True)
        return PackedBatch(**moved)


def pack(rows, block_size: int, pad_id: int, mask_prompt: bool = True, naive: bool = False) -> PackedBatch:
    """Pack (prompt_ids, completion_ids) pairs, the rows ``collate_completions`` takes, into rows of
    ``block_size`` tokens.

    An example takes len(prompt) + len(completion) - 1 input positions (its last token is only a
    target). Examples are placed first-fit, in the order given: each goes into the first row that
    still has room for all of it, and a new row is opened when none has; an example is never cut.
    The targets of each example are collate_completions' (``mask_prompt`` as there).

    ``naive=True`` builds the same x and y but packs the way a plain concatenation does: one
    document per row (every token sees all earlier ones, across examples) and positions 0 .. T-1
    running through the row. It exists to show the leak (chapter 06); do not train on it.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("rows is empty; give (prompt_ids, completion_ids) token-id pairs")
    positive_int(block_size, "block_size")
    non_negative_int(pad_id, "pad_id", meaning="the token id that fills the end of each row")
    segments = []
    for i, row in enumerate(rows):
        if not (isinstance(row, (tuple, list)) and len(row) == 2):
            raise ValueError(f"row {i} is {row!r}; each row must be a (prompt_ids, completion_ids) pair")
        if len(row[0]) == 0 or len(row[1]) == 0:
            raise ValueError(f"row {i} has an empty prompt or completion; both need at least one token")
        x_i, y_i = collate_completions([row], pad_id, mask_prompt)    # the example's own (1, n) inputs and targets
        if x_i.shape[1] > block_size:
            raise ValueError(f"row {i} takes {x_i.shape[1]} input positions (prompt {len(row[0])} + completion "
                             f"{len(row[1])} - 1), more than block_size {block_size}: packing never cuts an "
                             f"example. Raise block_size, or shorten or drop that example")
        segments.append((x_i[0], y_i[0]))
    lanes = _first_fit([len(x_i) for x_i, _ in segments], block_size)
    return _assemble(segments, lanes, block_size, pad_id, naive)


def _first_fit(lengths: list[int], capacity: int) -> list[list[int]]:
    """Greedy bin packing: example k goes into the first row with ``lengths[k]`` free positions."""
    lanes, free = [], []
    for k, n in enumerate(lengths):
        for r, room in enumerate(free):
            if n <= room:
                lanes[r].append(k)
                free[r] -= n
                break
        else:
            lanes.append([k])
            free.append(capacity - n)
    return lanes


def _assemble(segments, lanes, T: int, pad_id: int, naive: bool) -> PackedBatch:
    B = len(lanes)
    x = torch.full((B, T), pad_id, dtype=torch.long)
    y = torch.full((B, T), -100, dtype=torch.long)
    positions = torch.arange(T).repeat(B, 1)                      # padding counts on from 0 as its own "example"
    document_ids = torch.full((B, T), PADDING_DOCUMENT, dtype=torch.long)
    used = 0
    for r, lane in enumerate(lanes):
        start = 0
        for doc, k in enumerate(lane):
            x_k, y_k = segments[k]
            end = start + len(x_k)
            x[r, start:end], y[r, start:end] = x_k, y_k
            positions[r, start:end] = torch.arange(len(x_k))       # 0 at the example's first token
            document_ids[r, start:end] = doc
            start = end
        positions[r, start:] = torch.arange(T - start)
        used += start
    if naive:                                                      # the leak: one document, positions run on
        positions, document_ids = torch.arange(T).repeat(B, 1), torch.zeros(B, T, dtype=torch.long)
    return PackedBatch(x, y, positions, document_ids, padding_fraction=1.0 - used / (B * T),
                       n_examples=len(segments))


# ----------------------------------------------------------------------------- masks
def _check_document_ids(document_ids) -> torch.Tensor:
    if not isinstance(document_ids, torch.Tensor) or document_ids.dim() != 2:
        shape = tuple(document_ids.shape) if isinstance(document_ids, torch.Tensor) else type(document_ids).__name__
        raise ValueError(f"document_ids must be a (batch, time) tensor of ints, got {shape}; "
                         f"for one row of T tokens use document_ids[None]")
    if document_ids.dtype.is_floating_point or document_ids.dtype == torch.bool or document_ids.dtype.is_complex:
        raise ValueError(f"document_ids must hold ints (which example each token belongs to), got {document_ids.dtype}")
    return document_ids


def block_causal_mask(document_ids: torch.Tensor) -> torch.Tensor:
    """The (B, T, T) attention mask of a packed batch, True where query i may read key j:
    allowed[b, i, j] = (j <= i) and (doc[b, j] == doc[b, i]), block-diagonal causal.

    ``F.scaled_dot_product_attention`` takes it as ``attn_mask`` after a head axis is added
    (``mask[:, None]``). With one document per row it is the plain causal mask."""
    document_ids = _check_document_ids(document_ids)
    T = document_ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=document_ids.device).tril()       # j <= i
    same_document = document_ids[:, :, None] == document_ids[:, None, :]                  # doc(i) == doc(j)
    return causal[None] & same_document


def flex_attention_available() -> bool:
    """FlexAttention arrived in torch 2.5; the package runs on torch >= 2.3."""
    try:
        import torch.nn.attention.flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def flex_block_mask(document_ids: torch.Tensor):
    """The block-diagonal causal mask as a FlexAttention ``BlockMask`` (CUDA's path).

    The mask is never written out as (B, T, T): ``mask_mod`` answers for one (query, key) pair,
    and create_block_mask records which 128 x 128 tiles have any allowed pair, so the kernel skips
    the tiles above the diagonal and those between two different examples altogether. It is built
    on ``document_ids``' device, once per batch (every batch packs differently)."""
    document_ids = _check_document_ids(document_ids)
    if not flex_attention_available():
        raise ImportError(f"FlexAttention needs torch >= 2.5 (this is {torch.__version__}); "
                          f"use block_causal_mask with F.scaled_dot_product_attention instead")
    from torch.nn.attention.flex_attention import create_block_mask

    def same_document_causal(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (document_ids[b, q_idx] == document_ids[b, kv_idx])

    B, T = document_ids.shape
    return create_block_mask(same_document_causal, B, None, T, T, device=document_ids.device)


# ----------------------------------------------------------------------------- a picture
def mask_figure(batch: PackedBatch, row: int = 0, naive: PackedBatch | None = None):
    """A heat map of which keys each query of row ``row`` may read, each example in its own colour
    (padding grey); with ``naive`` (the same rows packed with ``naive=True``) the plain causal mask
    is drawn next to it, the leak showing as colour outside the diagonal blocks. Returns the Figure."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    from . import plots  # noqa: F401  (registers the course's Chinese font with matplotlib)

    if not isinstance(batch, PackedBatch):
        raise TypeError(f"batch must be a PackedBatch (from pack), got {type(batch).__name__}")
    if naive is not None and (not isinstance(naive, PackedBatch) or naive.x.shape != batch.x.shape):
        raise ValueError("naive must be the same rows packed with naive=True (a PackedBatch of the same shape)")
    if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < batch.x.shape[0]:
        raise ValueError(f"row must be an int in 0 .. {batch.x.shape[0] - 1}, got {row!r}")
    docs = batch.document_ids[row].cpu()
    n_docs = int(docs.max()) + 1
    colours = ListedColormap(["white", "lightgrey"] + [plt.cm.tab10(d % 10) for d in range(n_docs)])

    def picture(document_ids):            # 0: masked, 1: padding, 2 + d: a key of example d
        allowed = block_causal_mask(document_ids[row:row + 1].cpu())[0]
        owner = torch.where(docs == PADDING_DOCUMENT, 1, docs + 2)   # colour a cell by its query's example
        return torch.where(allowed, owner[:, None].expand_as(allowed), 0).numpy()

    panels = [("packed: block-diagonal causal", batch.document_ids)]
    if naive is not None:
        panels.insert(0, ("naive: one causal mask", naive.document_ids))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    for ax, (title, document_ids) in zip(axes[0], panels):
        ax.imshow(picture(document_ids), cmap=colours, vmin=0, vmax=n_docs + 1, interpolation="nearest")
        ax.set(title=title, xlabel="key j", ylabel="query i")
    fig.suptitle(f"row {row}: {n_docs} examples, {int((docs == PADDING_DOCUMENT).sum())} padding positions",
                 fontsize=10)
    fig.tight_layout()
    return fig
