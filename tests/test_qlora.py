"""QLoRA: NF4 and int4 blockwise quantisation, double quantisation, QuantLinear, LoRA on top."""
import copy
import warnings

import pytest
import torch
import torch.nn as nn

import llmtap
from llmtap.lora import add_lora, load_lora, lora_layers, lora_state_dict, merge_lora, save_lora, unmerge_lora
from llmtap.model import GPT, GPTConfig
from llmtap.qlora import (INT4_CODE, NF4_CODE, Int4Tensor, NF4Tensor, QuantLinear, add_qlora, bytes_per_parameter,
                          dequantize_model, dequantize_nf4, normal_float_code, pack_4bit, quantization_errors,
                          quantize_int4, quantize_model, quantize_nf4, unpack_4bit)

warnings.filterwarnings("ignore", category=UserWarning)

# Dettmers et al. (2023), Appendix E
PAPER_NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
             -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
             0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
             0.7229568362236023, 1.0]


def gaussian(shape=(256, 512), std=0.02, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * std


def mse(a, b):
    return (a - b).pow(2).mean().item()


@pytest.fixture
def course_gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=64)).eval()


X = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------- code books and bits
def test_nf4_code_values():
    assert NF4_CODE.dtype == torch.float32 and NF4_CODE.tolist() == PAPER_NF4
    assert torch.allclose(normal_float_code(), NF4_CODE, atol=2e-7, rtol=0)      # derived from N(0, 1) quantiles
    assert (NF4_CODE[NF4_CODE > 0].numel(), NF4_CODE[NF4_CODE < 0].numel()) == (8, 7)
    assert torch.all(NF4_CODE[1:] > NF4_CODE[:-1])
    assert torch.allclose(INT4_CODE * 7, torch.arange(-7, 8).float())


def test_pack_and_unpack_bits():
    assert pack_4bit(torch.tensor([1, 2, 15, 0])).tolist() == [0x12, 0xF0]       # first index in the high nibble
    pairs = torch.cartesian_prod(torch.arange(16), torch.arange(16)).flatten()   # all 256 pairs
    packed = pack_4bit(pairs)
    assert packed.dtype == torch.uint8 and torch.equal(packed, torch.arange(256, dtype=torch.uint8))
    assert torch.equal(unpack_4bit(packed), pairs.to(torch.uint8))
    with pytest.raises(ValueError, match="even number"):
        pack_4bit(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="0..15"):
        pack_4bit(torch.tensor([3, 16]))
    with pytest.raises(ValueError, match="uint8"):
        unpack_4bit(torch.tensor([1, 2]))


# ----------------------------------------------------------------------------- quantising
def test_layout_and_exact_values():
    w = gaussian((32, 64))
    q = quantize_nf4(w)
    assert isinstance(q, NF4Tensor) and q.shape == (32, 64) and q.block == 64
    assert q.codes.dtype == torch.uint8 and q.codes.numel() == 32 * 64 // 2
    assert torch.equal(q.absmax, w.abs().view(-1, 64).amax(dim=1))                 # one absmax per 64 values
    i = unpack_4bit(q.codes).long().view(-1, 64)
    nearest = (w.view(-1, 64, 1) / q.absmax[:, None, None] - NF4_CODE).abs().argmin(-1)
    assert torch.equal(i, nearest)                                                 # the nearest code value
    on_grid = (NF4_CODE[torch.arange(64) % 16] * 0.5).repeat(32, 1)                # already on the code points
    assert torch.equal(quantize_nf4(on_grid).dequantize(), on_grid)
    assert torch.equal(dequantize_nf4(q), q.dequantize()) and q.dequantize().dtype == torch.float32


def test_nf4_beats_int4_on_gaussian_weights():
    w = gaussian((512, 512))
    nf4, int4 = mse(quantize_nf4(w).dequantize(), w), mse(quantize_int4(w).dequantize(), w)
    assert isinstance(quantize_int4(w), Int4Tensor)
    assert nf4 < 0.8 * int4                                      # measured: 3.39e-6 vs 4.64e-6
    assert nf4 < 0.01 * w.pow(2).mean().item()                   # about 1 % of the weights' mean square


def test_nf4_beats_int4_on_the_course_model():
    model, _ = llmtap.load_course_model("cpu")
    e = quantization_errors(model)
    assert set(e) == {"nf4", "nf4_double_quant", "int4", "mean_square_weight", "layers"}
    assert e["nf4"] < 0.8 * e["int4"]                            # measured: 6.30e-5 vs 1.05e-4
    assert all(r["nf4"] < r["int4"] for r in e["layers"].values())
    assert e["nf4"] <= e["nf4_double_quant"] < 1.01 * e["nf4"]   # double quantisation costs < 1 %
    assert len(e["layers"]) == 4 * model.config.n_layer + 1      # c_attn, c_proj, c_fc, c_proj per block; lm_head


def test_double_quantisation():
    w = gaussian((512, 512))
    plain, dq = quantize_nf4(w), quantize_nf4(w, double_quant=True)
    assert torch.equal(plain.codes, dq.codes)                                    # the 4-bit codes do not change
    assert dq.absmax.dtype == torch.int8 and dq.absmax_scale.numel() == 4096 // 256
    assert torch.allclose(dq.absmax_mean, plain.absmax.mean())
    c, c_hat = plain.absmax, dq.absmax_values()
    c2 = (c - c.mean()).abs().view(-1, 256).amax(dim=1)                          # per block of 256 constants
    assert torch.all((c_hat - c).abs().view(-1, 256) <= c2[:, None] / 254 + 1e-7)   # half an int8 step
    assert mse(dq.dequantize(), w) < 1.01 * mse(plain.dequantize(), w)


def test_sizes_that_are_not_a_multiple_of_the_block_are_padded():
    w = gaussian((10, 10))                                        # 100 values: a block of 64 and one of 36
    q = quantize_nf4(w)
    assert q.absmax.numel() == 2 and q.codes.numel() == 64
    assert q.absmax[1] == w.flatten()[64:].abs().max()
    assert q.dequantize().shape == (10, 10)
    assert torch.all(unpack_4bit(q.codes)[100:] == 7)             # padding holds the code of 0
    assert mse(q.dequantize(), w) < 0.02 * w.pow(2).mean().item()
    dq = quantize_nf4(gaussian((300, 64)), double_quant=True)     # 300 constants: blocks of 256 and 44
    assert dq.absmax_scale.numel() == 2 and dq.absmax.numel() == 300


def test_zero_blocks_stay_zero():
    w = torch.zeros(4, 64)
    w[2] = torch.linspace(-1, 1, 64)
    for dq in (False, True):
        out = quantize_nf4(w, double_quant=dq).dequantize()
        assert torch.equal(out[[0, 1, 3]], torch.zeros(3, 64)) and torch.isfinite(out).all()


@pytest.mark.parametrize("w, kwargs, match", [
    (torch.randn(64), {}, "2-D weight matrix"), (torch.randn(2, 4, 64), {}, "2-D weight matrix"),
    (torch.ones(4, 64, dtype=torch.int32), {}, "floating-point"), ([[1.0] * 64], {}, "floating-point"),
    (torch.full((2, 64), float("nan")), {}, "inf or NaN"),
    (torch.randn(4, 64), dict(block=63), "even"), (torch.randn(4, 64), dict(block=0), "positive int"),
    (torch.randn(4, 64), dict(double_quant="yes"), "double_quant"),
])
def test_bad_inputs(w, kwargs, match):
    with pytest.raises(ValueError, match=match):
        quantize_nf4(w, **kwargs)


def test_bytes_per_parameter():
    w = torch.randn(1024, 1024)
    dq, plain = quantize_nf4(w, double_quant=True), quantize_nf4(w)
    assert bytes_per_parameter(plain) == 0.5 + 4 / 64                               # 4 bits + a float32 per 64
    assert bytes_per_parameter(dq) == 0.5 + 1 / 64 + 4 / (64 * 256) + 4 / w.numel()  # + one float32 mean
    assert abs(8 * bytes_per_parameter(dq) - 4.127) < 0.001                         # the paper's 4.127 bits
    assert bytes_per_parameter(w.half()) == 2.0
    model = add_qlora(GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=128)), ["c_fc"], r=2)
    assert bytes_per_parameter(model) == bytes_per_parameter(model.h[0].mlp.c_fc.base_layer)
    with pytest.raises(ValueError, match="no QuantLinear"):
        bytes_per_parameter(nn.Linear(4, 4))


# ----------------------------------------------------------------------------- the layer
@pytest.mark.parametrize("kind", ["linear", "conv1d"])
def test_quant_linear_is_a_linear_with_the_dequantised_weight(kind):
    torch.manual_seed(0)
    if kind == "linear":
        base = nn.Linear(64, 96)
        W = base.weight
    else:
        from transformers.pytorch_utils import Conv1D
        base = Conv1D(96, 64)
        W = base.weight.T
    q = QuantLinear(base)
    assert (q.in_features, q.out_features) == (64, 96)
    W_hat = q.dequantized_weight()
    assert torch.equal(W_hat, quantize_nf4(W.detach(), double_quant=True).dequantize())
    x = torch.randn(3, 5, 64, requires_grad=True)
    y = q(x)
    assert torch.equal(y, x @ W_hat.T + base.bias)
    dense = nn.Linear(64, 96)
    with torch.no_grad():
        dense.weight.copy_(W_hat)
        dense.bias.copy_(base.bias)
    assert torch.allclose(y, dense(x), atol=1e-6)
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    assert torch.allclose(gx, g @ W_hat, atol=1e-6)                  # backward dequantises W again
    assert not any(p.requires_grad for p in q.parameters())


def test_quant_linear_compute_dtype_and_casting():
    torch.manual_seed(0)
    q = QuantLinear(nn.Linear(64, 32), compute_dtype=torch.bfloat16)
    assert q.dequantized_weight().dtype == torch.bfloat16
    x = torch.randn(4, 64)
    assert q(x).dtype == torch.float32
    assert torch.allclose(q(x), (x.bfloat16() @ q.dequantized_weight().T + q.bias.bfloat16()).float())
    before = {k: v.clone() for k, v in q.state_dict().items()}
    q.to(torch.bfloat16)                       # the constants keep float32: no rounding added to the 4-bit error
    assert q.absmax_mean.dtype == torch.float32 and q.absmax_scale.dtype == torch.float32 and q.bias.dtype == torch.bfloat16
    assert all(torch.equal(q.state_dict()[k].float(), v.float()) for k, v in before.items() if k != "bias")
    assert QuantLinear(nn.Linear(64, 32), double_quant=False).to(torch.float16).absmax.dtype == torch.float32
    with pytest.raises(ValueError, match="compute_dtype"):
        QuantLinear(nn.Linear(64, 32), compute_dtype=torch.int8)
    with pytest.raises(TypeError, match="nn.Linear or a Hugging Face Conv1D"):
        QuantLinear(nn.Embedding(10, 64))


# ----------------------------------------------------------------------------- LoRA on top
def test_qlora_trains_only_lora(course_gpt):
    add_qlora(course_gpt, ["c_attn", "c_proj", "c_fc"], r=4, alpha=8)
    quant = [m for m in course_gpt.modules() if isinstance(m, QuantLinear)]
    assert len(quant) == 2 * 4 and all(isinstance(l.base_layer, QuantLinear) for l in lora_layers(course_gpt).values())
    frozen = {n: t.clone() for n, t in course_gpt.state_dict().items() if "lora_" not in n}
    trainable = [n for n, p in course_gpt.named_parameters() if p.requires_grad]
    assert trainable and all("lora_A" in n or "lora_B" in n for n in trainable)
    opt = torch.optim.AdamW([p for p in course_gpt.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(10):
        _, loss = course_gpt(X, targets=X)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in course_gpt.parameters() if not p.requires_grad)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(torch.equal(t, frozen[n]) for n, t in course_gpt.state_dict().items() if n in frozen)


def test_qlora_under_bf16_autocast(course_gpt):
    add_qlora(course_gpt, ["c_attn"], r=4, alpha=8)
    full = course_gpt(X)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, loss = course_gpt(X, targets=X)
    loss.backward()
    assert (logits.float() - full).abs().max().item() < 0.1
    assert all(l.lora_B.grad is not None for l in lora_layers(course_gpt).values())


def test_merge_into_4_bits_is_refused_dequantise_first(course_gpt):
    add_qlora(course_gpt, ["c_attn", "c_fc"], r=4, alpha=8)
    with torch.no_grad():
        for l in lora_layers(course_gpt).values():
            l.lora_B.normal_(0, 0.01)
    unmerged = course_gpt(X)[0]
    state = {k: v.clone() for k, v in course_gpt.state_dict().items()}
    with pytest.raises(ValueError, match="cannot merge LoRA into a 4-bit.*dequantize_model"):
        merge_lora(course_gpt)
    assert not any(l.merged for l in lora_layers(course_gpt).values())
    assert all(torch.equal(v, state[k]) for k, v in course_gpt.state_dict().items())
    dequantize_model(course_gpt)
    assert not any(isinstance(m, QuantLinear) for m in course_gpt.modules())
    assert torch.allclose(course_gpt(X)[0], unmerged, atol=1e-5)
    merge_lora(course_gpt)
    assert torch.allclose(course_gpt(X)[0], unmerged, atol=1e-4)
    unmerge_lora(course_gpt)


def test_requantising_a_merged_weight_loses_the_update():
    """Why merging into 4 bits is refused: the update is far below one 4-bit step."""
    W = gaussian((256, 256))
    delta = gaussian((256, 4), std=0.01, seed=1) @ gaussian((4, 256), std=0.01, seed=2)   # a small s·BA
    W0_hat = quantize_nf4(W).dequantize()
    merged_hat = quantize_nf4(W0_hat + delta).dequantize()
    kept = ((merged_hat - W0_hat) * delta).sum() / delta.pow(2).sum()       # how much of ΔW survives: 2 %
    assert kept < 0.1 and mse(merged_hat, W0_hat + delta) > mse(torch.zeros(1), delta)


def test_qlora_adapter_loads_into_the_full_precision_model(course_gpt, tmp_path):
    base = copy.deepcopy(course_gpt)
    add_qlora(course_gpt, ["c_attn", "c_fc"], r=4, alpha=8, use_dora=True)
    with torch.no_grad():
        for l in lora_layers(course_gpt).values():
            l.lora_B.normal_(0, 0.01)
    save_lora(course_gpt, tmp_path)
    load_lora(base, tmp_path)                      # the same adapter on the unquantised weights
    a, b = lora_state_dict(course_gpt), lora_state_dict(base)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (base(X)[0] - course_gpt(X)[0]).abs().max().item() < 0.1     # differ by the 4-bit error only


def test_qlora_adapter_of_gpt2_loads_in_peft(tmp_path):
    pytest.importorskip("peft")
    from peft import PeftModel

    from llmtap.hf import random_gpt2
    fresh = lambda: random_gpt2(n_layer=2, n_head=2, n_embd=64, n_positions=32, seed=0)[0]
    ours = add_qlora(fresh(), ["c_attn", "c_fc"], r=4, alpha=8)
    with torch.no_grad():
        for l in lora_layers(ours).values():
            l.lora_B.normal_(0, 0.05)
    save_lora(ours, tmp_path)
    theirs = PeftModel.from_pretrained(fresh(), tmp_path).eval()      # on the full-precision GPT-2 (Conv1D)
    x = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        full, quant = theirs(x).logits, ours(x).logits
        load_lora(dequantize_model(ours), tmp_path)                    # the same adapter, 4-bit error kept
        assert torch.allclose(ours(x).logits, quant, atol=1e-5)
        base_error = (fresh()(x).logits - dequantize_model(quantize_model(fresh(), ["c_attn", "c_fc"]))(x).logits)
    assert (full - quant).abs().max() <= 2 * base_error.abs().max()    # differ by the 4-bit error of W0 only


def test_dora_on_a_4bit_layer_uses_the_dequantised_weight():
    torch.manual_seed(0)
    q = QuantLinear(nn.Linear(64, 32))
    dense = nn.Linear(64, 32)
    with torch.no_grad():
        dense.weight.copy_(q.dequantized_weight())
        dense.bias.copy_(q.bias)
    torch.manual_seed(1)
    on_q = add_lora(nn.Sequential(q), ["0"], r=2, use_dora=True)[0]
    torch.manual_seed(1)
    on_dense = add_lora(nn.Sequential(dense), ["0"], r=2, use_dora=True)[0]
    with torch.no_grad():
        for l in (on_q, on_dense):
            l.lora_B.copy_(torch.ones_like(l.lora_B) * 0.1)
    assert torch.equal(on_q.lora_magnitude_vector, on_dense.lora_magnitude_vector)
    x = torch.randn(3, 64)
    assert torch.allclose(on_q(x), on_dense(x), atol=1e-6)


def test_order_and_bad_settings(course_gpt):
    with pytest.raises(ValueError, match="needs the full-precision W0"):
        add_lora(quantize_model(copy.deepcopy(course_gpt), ["c_attn"]), ["c_attn"], init="pissa")
    with pytest.raises(ValueError, match="quantised already"):
        quantize_model(quantize_model(copy.deepcopy(course_gpt), ["c_attn"]), ["c_attn"])
    with pytest.raises(ValueError, match="quantise first"):
        quantize_model(add_lora(copy.deepcopy(course_gpt), ["c_attn"]), ["c_fc"])
    state = {k: v.clone() for k, v in course_gpt.state_dict().items()}
    for kwargs, match in [(dict(r=0), "positive int"), (dict(quant="fp4"), r"quant must be one of \('nf4', 'int4'\)"),
                          (dict(block=7), "even"), (dict(r=128), "rank at most 64"), (dict(use_dora=1), "use_dora")]:
        with pytest.raises(ValueError, match=match):
            add_qlora(course_gpt, ["c_attn"], **kwargs)
        assert not lora_layers(course_gpt) and not any(isinstance(m, QuantLinear) for m in course_gpt.modules())
    assert all(torch.equal(v, state[k]) for k, v in course_gpt.state_dict().items())
    with pytest.raises(ValueError, match="no QuantLinear"):
        dequantize_model(course_gpt)


# ----------------------------------------------------------------------------- GPU, bitsandbytes
@pytest.mark.cuda
def test_quant_linear_on_cuda_matches_cpu(course_gpt):
    add_qlora(course_gpt, ["c_attn", "c_fc"], r=4, alpha=8)
    want = course_gpt(X)[0]
    gpu = copy.deepcopy(course_gpt).cuda()
    assert torch.allclose(gpu(X.cuda())[0].cpu(), want, atol=1e-4)


@pytest.mark.cuda
def test_same_codes_and_values_as_bitsandbytes():
    bnb_f = pytest.importorskip("bitsandbytes.functional")
    w = gaussian((512, 512)).cuda()
    packed, state = bnb_f.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=False)
    ours = quantize_nf4(w)
    same = (packed.flatten().view(torch.uint8) == ours.codes).float().mean().item()
    assert same > 0.999                       # differences only for values on a decision boundary
    assert torch.allclose(state.absmax.float(), ours.absmax, rtol=1e-6)
    theirs = bnb_f.dequantize_4bit(packed, state, quant_type="nf4").float()
    assert torch.allclose(theirs, ours.dequantize(), atol=1e-5)
    packed, state = bnb_f.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    theirs = bnb_f.dequantize_4bit(packed, state, quant_type="nf4").float()
    ours = quantize_nf4(w, double_quant=True).dequantize()
    assert mse(theirs, ours) < 0.01 * mse(ours, w)        # different 8-bit codes for the constants, same result
