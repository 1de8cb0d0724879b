"""Packing (chapter 06): a packed batch with the block-diagonal mask and reset positions must give
every example exactly the logits, and the loss, it gets alone; naive packing must not. And NEFTune.

Tolerances: the packed pass and the example alone add up the same terms, but SDPA sums them in a
different order (a masked row of 32 keys against a causal row of n keys; masked keys add exact
zeros). That moves float32 logits by ~2e-6 and float64 ones by ~5e-15, hence atol 2e-5 and
1e-12: ten times the rounding seen and still far below the leak (differences of 3 to 6). The
model's cross-entropy is float32 whatever the weights' dtype, so losses agree to 2e-6.
"""
import copy
import math
import warnings

import matplotlib
matplotlib.use("Agg")
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from llmtap.model import GPT, GPTConfig, KVCache
from llmtap.neftune import add_neftune
from llmtap.packing import (PADDING_DOCUMENT, block_causal_mask, flex_attention_available,
                            flex_block_mask, mask_figure, pack)
from llmtap.positions import POSITION_KINDS, Rotary, alibi_score_mod, alibi_slopes
from llmtap.train import collate_completions

V, BLOCK, PAD = 50, 32, 0
TOLERANCE = {torch.float32: 2e-5, torch.float64: 1e-12}


def tiny(position="rope", dtype=torch.float32, **kw):
    torch.manual_seed(0)
    settings = dict(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=2, n_embd=16, position=position)
    model = GPT(GPTConfig(**{**settings, **kw})).eval().to(dtype)
    with torch.no_grad():   # wide weights: peaked attention, so that a leak changes the logits visibly
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
    return model


def sft_rows(n=9, seed=0):
    """(prompt_ids, completion_ids) pairs of 1-7 and 1-9 tokens (ids >= 3: no pad, bos or eos)."""
    g = torch.Generator().manual_seed(seed)

    def draw(most):
        return torch.randint(3, V, (int(torch.randint(1, most + 1, (1,), generator=g)),), generator=g).tolist()
    return [(draw(7), draw(9)) for _ in range(n)]


def examples_of(batch):
    """(row, boolean selector of its tokens) for every example of a packed batch."""
    for r in range(batch.x.shape[0]):
        for d in range(int(batch.document_ids[r].max()) + 1):
            yield r, batch.document_ids[r] == d


# ----------------------------------------------------------------------------- the layout
def test_pack_layout_by_hand():
    rows = [([1, 5], [6, 7]), ([1, 8, 9], [10]), ([1, 11], [12, 13, 14, 15])]
    b = pack(rows, block_size=8, pad_id=PAD)
    # inputs are prompt + completion minus its last token: 3, 3 and 5 positions; first fit puts
    # the first two in row 0 (6 of 8), the third needs a row of its own
    assert b.x.tolist() == [[1, 5, 6, 1, 8, 9, 0, 0], [1, 11, 12, 13, 14, 0, 0, 0]]
    assert b.y.tolist() == [[-100, 6, 7, -100, -100, 10, -100, -100], [-100, 12, 13, 14, 15, -100, -100, -100]]
    assert b.positions.tolist() == [[0, 1, 2, 0, 1, 2, 0, 1], [0, 1, 2, 3, 4, 0, 1, 2]]
    assert b.document_ids.tolist() == [[0, 0, 0, 1, 1, 1, -1, -1], [0, 0, 0, 0, 0, -1, -1, -1]]
    assert b.padding_fraction == pytest.approx(5 / 16) and b.n_examples == 3
    # an example's last input position predicts its own last token, never the next example's first
    assert b.y[0, 2] == 7 and b.y[0, 2] != b.x[0, 3]


def test_first_fit_fills_earlier_rows_and_keeps_every_example_whole():
    rows = [([1] + [4] * 4, [5] * 2), ([1] * 5, [5] * 4), ([1], [4, 5]), ([1, 4], [5])]   # 6, 8, 2, 2 positions
    b = pack(rows, block_size=8, pad_id=PAD)
    assert b.document_ids.tolist() == [[0, 0, 0, 0, 0, 0, 1, 1], [0] * 8, [0, 0, -1, -1, -1, -1, -1, -1]]
    assert b.padding_fraction == pytest.approx(6 / 24)


@pytest.mark.parametrize("mask_prompt", [True, False])
def test_each_examples_labels_are_collate_completions_labels(mask_prompt):
    rows = sft_rows()
    b = pack(rows, BLOCK, PAD, mask_prompt=mask_prompt)
    placed = sorted((b.x[r][sel].tolist(), b.y[r][sel].tolist()) for r, sel in examples_of(b))
    alone = sorted((x[0].tolist(), y[0].tolist())
                   for x, y in (collate_completions([row], PAD, mask_prompt) for row in rows))
    assert placed == alone
    assert (b.y[b.document_ids == PADDING_DOCUMENT] == -100).all()


def test_naive_switch_changes_only_positions_and_documents():
    rows = sft_rows()
    right, naive = pack(rows, BLOCK, PAD), pack(rows, BLOCK, PAD, naive=True)
    assert torch.equal(right.x, naive.x) and torch.equal(right.y, naive.y)
    assert (naive.document_ids == 0).all() and torch.equal(naive.positions, torch.arange(BLOCK).expand_as(naive.x))


def test_packed_batch_to_device_keeps_the_numbers():
    b = pack(sft_rows(), BLOCK, PAD)
    moved = b.to("cpu")
    assert torch.equal(moved.x, b.x) and moved.padding_fraction == b.padding_fraction


# ----------------------------------------------------------------------------- the test that matters
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("position", POSITION_KINDS)
def test_packed_logits_equal_each_example_alone(position, dtype):
    model, b = tiny(position, dtype), pack(sft_rows(), BLOCK, PAD)
    assert b.x.shape[0] < b.n_examples                     # several examples share a row
    with torch.no_grad():
        packed, _ = model(b.x, positions=b.positions, document_ids=b.document_ids)
        for r, sel in examples_of(b):
            alone, _ = model(b.x[r][sel][None])
            assert torch.allclose(packed[r][sel], alone[0], rtol=0, atol=TOLERANCE[dtype]), \
                (packed[r][sel] - alone[0]).abs().max()


@pytest.mark.parametrize("position", POSITION_KINDS)
def test_naive_packing_leaks(position):
    model, rows = tiny(position), sft_rows()
    b, naive = pack(rows, BLOCK, PAD), pack(rows, BLOCK, PAD, naive=True)
    with torch.no_grad():
        leaky, _ = model(naive.x, positions=naive.positions, document_ids=naive.document_ids)
        assert torch.allclose(leaky, model(naive.x)[0], atol=1e-5)          # naive = no packing arguments at all
        for r, sel in examples_of(b):
            alone, _ = model(b.x[r][sel][None])
            gap = (leaky[r][sel] - alone[0]).abs().max().item()
            if sel[0]:                                      # a row's first example has nothing before it
                assert gap < 1e-5
            else:
                assert gap > 0.1, (r, gap)


@pytest.mark.parametrize("position", POSITION_KINDS)
def test_the_mask_alone_suffices_for_relative_positions(position):
    # positions running on through the row shift all of an example's positions by the same
    # offset: RoPE, ALiBi and none see only differences; learned and sinusoidal tables change
    model, b = tiny(position), pack(sft_rows(), BLOCK, PAD)
    with torch.no_grad():
        masked, _ = model(b.x, document_ids=b.document_ids)
        gaps = [(masked[r][sel] - model(b.x[r][sel][None])[0][0]).abs().max().item() for r, sel in examples_of(b)]
    if position in ("rope", "alibi", "none"):
        assert max(gaps) < 1e-4
    else:
        assert max(gaps) > 0.1


@pytest.mark.parametrize("position", ["rope", "alibi", "learned"])
def test_packed_loss_and_gradient_equal_the_token_weighted_ones(position):
    model, rows = tiny(position, torch.float64), sft_rows()
    b = pack(rows, BLOCK, PAD)
    _, packed_loss = model(b.x, b.y, positions=b.positions, document_ids=b.document_ids)
    packed_loss.backward()
    packed_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    total, n_targets = 0.0, 0
    for row in rows:                                       # every example alone, weighted by its targets
        x, y = collate_completions([row], PAD)
        n = int((y != -100).sum())
        total, n_targets = total + model(x, y)[1] * n, n_targets + n
    # GPT computes its cross-entropy in float32 whatever the weights' dtype: the losses agree to
    # float32's rounding (a few 1e-7 at a loss of ~4.5), the float64 gradients to ~1e-15
    assert torch.allclose(packed_loss, total / n_targets, rtol=0, atol=2e-6)
    (total / n_targets).backward()
    for p, g in zip(model.parameters(), packed_grads):
        assert torch.allclose(p.grad, g, rtol=0, atol=1e-12)
    x, y = collate_completions(rows, PAD)                  # and a padded batch agrees too
    assert torch.allclose(model(x, y)[1], packed_loss, rtol=0, atol=2e-6)


def test_packing_arguments_that_change_nothing_change_nothing():
    for position in POSITION_KINDS:
        model = tiny(position)
        x = torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            plain, _ = model(x)
            same, _ = model(x, positions=torch.arange(12).expand(2, 12), document_ids=torch.zeros_like(x))
        assert torch.allclose(plain, same, atol=1e-5), position


def test_dropout_in_training_runs_on_the_dense_mask():
    model, b = tiny("alibi", dropout=0.1).train(), pack(sft_rows(), BLOCK, PAD)
    _, loss = model(b.x, b.y, positions=b.positions, document_ids=b.document_ids)
    loss.backward()
    assert math.isfinite(loss.item())


def test_rotary_takes_a_row_of_positions_per_sequence():
    rotary = Rotary(8)
    positions = torch.tensor([[0, 1, 2, 0, 1], [0, 1, 2, 3, 4]])
    cos, sin = rotary(positions, 5)
    assert cos.shape == (2, 1, 5, 8)
    for r in range(2):
        want_cos, want_sin = rotary(positions[r], 5)
        assert torch.equal(cos[r, 0], want_cos) and torch.equal(sin[r, 0], want_sin)
    with pytest.raises(ValueError, match="positions"):
        rotary(positions[None], 5)


# ----------------------------------------------------------------------------- the masks
def test_block_causal_mask_by_hand():
    docs = torch.tensor([[0, 0, 1, 1, -1]])
    want = torch.tensor([[1, 0, 0, 0, 0],
                         [1, 1, 0, 0, 0],
                         [0, 0, 1, 0, 0],
                         [0, 0, 1, 1, 0],
                         [0, 0, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(block_causal_mask(docs)[0], want)
    assert torch.equal(block_causal_mask(torch.zeros(2, 6, dtype=torch.long)),
                       torch.ones(6, 6, dtype=torch.bool).tril().expand(2, 6, 6))


@pytest.mark.skipif(not flex_attention_available(), reason="FlexAttention needs torch >= 2.5")
@pytest.mark.parametrize("alibi", [False, True])
def test_flex_block_mask_matches_the_dense_mask(alibi):
    # FlexAttention also runs uncompiled on the CPU (slowly, for checking): the block mask and the
    # ALiBi score_mod of the CUDA path must give what SDPA gives with the dense mask
    from torch.nn.attention.flex_attention import flex_attention
    b = pack(sft_rows(), BLOCK, PAD)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b.x.shape[0], 2, BLOCK, 8, generator=g) for _ in range(3))
    allowed = block_causal_mask(b.document_ids)[:, None]
    slopes = alibi_slopes(2)
    score_mod = alibi_score_mod(slopes, b.positions) if alibi else None
    mask = allowed
    if alibi:
        distance = (b.positions[:, :, None] - b.positions[:, None, :])[:, None]
        mask = (-slopes[None, :, None, None] * distance).masked_fill(~allowed, float("-inf"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                    # "called without torch.compile": intended here
        got = flex_attention(q, k, v, score_mod=score_mod, block_mask=flex_block_mask(b.document_ids))
    assert torch.allclose(got, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5)


@pytest.mark.cuda
@pytest.mark.parametrize("position", POSITION_KINDS)
def test_packed_on_cuda_uses_flex_and_matches_the_cpu(position):
    model = tiny(position, n_embd=32)                      # 2 heads of 16
    b = pack(sft_rows(20), BLOCK, PAD)
    want, loss_cpu = model(b.x, b.y, positions=b.positions, document_ids=b.document_ids)
    loss_cpu.backward()
    cuda, cb = copy.deepcopy(model).cuda(), b.to("cuda")
    cuda.zero_grad()
    got, loss = cuda(cb.x, cb.y, positions=cb.positions, document_ids=cb.document_ids)
    loss.backward()
    assert torch.allclose(got.cpu(), want, atol=1e-3)
    for (n, p), (_, p_cpu) in zip(cuda.named_parameters(), model.named_parameters()):
        assert torch.allclose(p.grad.cpu(), p_cpu.grad, atol=1e-3, rtol=1e-3), n


# ----------------------------------------------------------------------------- bad inputs
def test_pack_bad_inputs():
    with pytest.raises(ValueError, match="empty"):
        pack([], BLOCK, PAD)
    with pytest.raises(ValueError, match=r"row 1 takes 40 input positions.*block_size 32"):
        pack([([1, 2], [3]), ([1] * 20, [4] * 21)], BLOCK, PAD)
    with pytest.raises(ValueError, match="row 0 has an empty"):
        pack([([1, 2], [])], BLOCK, PAD)
    with pytest.raises(ValueError, match="row 0 is"):
        pack([[1, 2, 3]], BLOCK, PAD)
    with pytest.raises(ValueError, match="block_size"):
        pack(sft_rows(), 0, PAD)
    with pytest.raises(ValueError, match="pad_id"):
        pack(sft_rows(), BLOCK, -1)


def test_mask_bad_inputs():
    with pytest.raises(ValueError, match=r"\(batch, time\)"):
        block_causal_mask(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="ints"):
        block_causal_mask(torch.zeros(1, 5))
    with pytest.raises(ValueError, match=r"\(batch, time\)"):
        flex_block_mask([[0, 0, 1]])


def test_model_rejects_bad_packing_arguments():
    model, b = tiny("learned"), pack(sft_rows(), BLOCK, PAD)
    with pytest.raises(ValueError, match="shaped like idx"):
        model(b.x, positions=b.positions[:, :-1])
    with pytest.raises(ValueError, match="shaped like idx"):
        model(b.x, document_ids=b.document_ids[0])
    with pytest.raises(ValueError, match="ints"):
        model(b.x, positions=b.positions.float())
    with pytest.raises(ValueError, match=">= 0"):
        model(b.x, positions=b.positions - 1)
    with pytest.raises(ValueError, match="learned position table"):
        model(b.x, positions=b.positions + BLOCK)
    with pytest.raises(ValueError, match="KV cache"):
        model(b.x, cache=KVCache(2), document_ids=b.document_ids)
    with pytest.raises(ValueError, match="KV cache"):
        model(b.x, prompt_embeds=torch.zeros(3, 16), positions=b.positions)


def test_mask_figure():
    import matplotlib.pyplot as plt
    rows = sft_rows()
    fig = mask_figure(pack(rows, BLOCK, PAD), row=1, naive=pack(rows, BLOCK, PAD, naive=True))
    assert len(fig.axes) == 2
    plt.close(fig)
    with pytest.raises(ValueError, match="row must be"):
        mask_figure(pack(rows, BLOCK, PAD), row=99)
    with pytest.raises(TypeError, match="PackedBatch"):
        mask_figure(rows)


# ----------------------------------------------------------------------------- NEFTune
def embedding_noise(model, x, **neftune):
    """(noise the hook added to model.wte's output in training mode, the handle)."""
    clean = model.wte(x).detach()
    handle = add_neftune(model, **neftune)
    model.train()
    noisy = model.wte(x).detach()
    model.eval()
    return noisy - clean, handle


def test_neftune_noise_is_uniform_with_the_papers_scale():
    model = tiny(n_embd=64)
    x = torch.randint(3, V, (8, 50), generator=torch.Generator().manual_seed(0))
    noise, handle = embedding_noise(model, x, alpha=5.0, generator=torch.Generator().manual_seed(0))
    scale = 5.0 / math.sqrt(50 * 64)                       # alpha / sqrt(L d)
    assert noise.abs().max() <= scale * (1 + 1e-5)
    assert noise.abs().max() > 0.99 * scale                # 25600 draws of U(-s, s) reach close to s
    assert abs(noise.mean().item()) < 0.02 * scale
    assert noise.std().item() == pytest.approx(scale / math.sqrt(3), rel=0.02)   # Var U(-s, s) = s^2 / 3
    handle.remove()


def test_neftune_with_pad_id_counts_real_tokens_and_spares_padding():
    model = tiny(n_embd=64)
    x = torch.randint(3, V, (2, 40), generator=torch.Generator().manual_seed(0))
    x[0, 10:] = PAD                                        # row 0: 10 real tokens; row 1: 40
    noise, handle = embedding_noise(model, x, alpha=10.0, pad_id=PAD, generator=torch.Generator().manual_seed(1))
    assert (noise[0, 10:] == 0).all()
    for row, L in ((0, 10), (1, 40)):
        scale = 10.0 / math.sqrt(L * 64)
        assert scale * 0.95 < noise[row, :L].abs().max() <= scale * (1 + 1e-5)
    handle.remove()
    noise, handle = embedding_noise(model, x, alpha=10.0)  # without pad_id: L = 40 everywhere, padding noised
    assert noise[0, 10:].abs().max() > 0 and noise.abs().max() <= 10.0 / math.sqrt(40 * 64) * (1 + 1e-5)
    handle.remove()


def test_neftune_is_off_in_eval_and_after_remove():
    model = tiny()
    x = torch.randint(3, V, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        clean, _ = model(x)
        with add_neftune(model, alpha=15.0):
            assert torch.equal(model(x)[0], clean)          # eval mode: no noise
            model.train()
            assert not torch.allclose(model(x)[0], clean, atol=1e-4)
        assert torch.equal(model(x)[0], clean)             # removed by leaving the with-block


def test_neftune_trains_through_the_noise():
    model = tiny().train()
    x = torch.randint(3, V, (2, 12), generator=torch.Generator().manual_seed(0))
    handle = add_neftune(model, alpha=5.0)
    _, loss = model(x, x)
    loss.backward()
    assert model.wte.weight.grad.abs().sum() > 0
    handle.remove()
    handle.remove()                                        # a second remove is harmless


def test_neftune_bad_inputs():
    model = tiny()
    with pytest.raises(ValueError, match="alpha"):
        add_neftune(model, alpha=0)
    with pytest.raises(ValueError, match="alpha"):
        add_neftune(model, alpha=float("inf"))
    with pytest.raises(ValueError, match="pad_id"):
        add_neftune(model, pad_id=-1)
    with pytest.raises(TypeError, match="embedding"):
        add_neftune(nn.Linear(3, 3))
    handle = add_neftune(model)
    with pytest.raises(ValueError, match="already"):
        add_neftune(model)
    handle.remove()
    add_neftune(model).remove()                            # after remove, a new one may go on
