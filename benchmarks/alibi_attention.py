"""ALiBi attention versus plain causal attention: forward + backward time and peak memory.

ALiBi adds m_h * -(i - j) to every score. Written as an attention mask, that is an (H, L, L)
tensor: 16 heads at L = 16k take 8 GiB in bf16, and SDPA cannot use its fused causal kernel.
llmtap computes the bias inside a FlexAttention kernel instead (llmtap.positions.alibi_flex_attention,
compiled, with a causal block mask that skips the upper triangle), so ALiBi should cost about
what causal SDPA costs. The reference, causal ``F.scaled_dot_product_attention`` without any
bias, is timed side by side in the same run.

CUDA: batch 1, 16 heads, head dim 64, bf16, L = 4096 and 16384; the bar at 16k is <= 1.3x the
time and <= 1.1x the peak memory of causal SDPA. The row "SDPA + L x L bias" shows what the
FlexAttention kernel saves. CPU (no FlexAttention backward there): llmtap's CPU path, SDPA with
the bias as a mask, in fp32 at small L.

    python benchmarks/alibi_attention.py [--device cuda] [--quick]
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, interleaved, peak_memory, print_table  # noqa: E402

from llmtap.positions import alibi_bias, alibi_flex_attention, alibi_slopes  # noqa: E402


def causal_sdpa(q, k, v, slopes):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def sdpa_with_bias(q, k, v, slopes):
    L = q.shape[2]
    causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    bias = alibi_bias(len(slopes), L, device=q.device).masked_fill(~causal, float("-inf")).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


def flex_alibi(q, k, v, slopes):
    return alibi_flex_attention(q, k, v, slopes)


def fwd_bwd(attention, q, k, v, slopes, grad):
    def step():
        for t in (q, k, v):
            t.grad = None
        attention(q, k, v, slopes).backward(grad)
    return step


def main():
    args = base_parser(__doc__).parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    H, d = 16, 64
    if cuda:
        lengths, dtype = ((1024, 2048) if args.quick else (4096, 16384)), torch.bfloat16
        methods = {"causal SDPA (reference)": causal_sdpa, "ALiBi, llmtap (FlexAttention)": flex_alibi,
                   "ALiBi, SDPA + L x L bias": sdpa_with_bias}
    else:
        lengths, dtype = ((128, 256) if args.quick else (512, 1024)), torch.float32
        methods = {"causal SDPA (reference)": causal_sdpa, "ALiBi, llmtap (SDPA + bias)": sdpa_with_bias}
    slopes = alibi_slopes(H).to(device)
    rows, bars = [], []
    for L in lengths:
        g = torch.Generator(device=device).manual_seed(0)
        q, k, v, grad = (torch.randn(1, H, L, d, device=device, dtype=dtype, generator=g) for _ in range(4))
        for t in (q, k, v):
            t.requires_grad_(True)
        steps, memory = {}, {}
        for name, attention in methods.items():
            try:
                steps[name] = fwd_bwd(attention, q, k, v, slopes, grad)
                steps[name]()                                  # compile / warm up outside the memory count
                memory[name] = peak_memory(steps[name], device)
            except torch.OutOfMemoryError:
                steps.pop(name)
                torch.cuda.empty_cache()
        times = interleaved(steps, device, warmup=1, rounds=3 if args.quick else 5)
        ref = next(iter(methods))
        for name in methods:
            if name not in times:
                rows.append({"L": L, "method": name, "fwd+bwd ms": "out of memory", "time vs ref": "-",
                             "peak MiB": "-", "memory vs ref": "-"})
                continue
            mem, ref_mem = memory[name], memory[ref]
            rows.append({"L": L, "method": name, "fwd+bwd ms": times[name] * 1e3,
                         "time vs ref": f"{times[name] / times[ref]:.2f}x",
                         "peak MiB": "-" if mem is None else f"{mem / 2**20:.0f}",
                         "memory vs ref": "-" if mem is None else f"{mem / ref_mem:.2f}x"})
            if cuda and "llmtap" in name:
                bars.append((L, times[name] / times[ref], mem / ref_mem))
    print_table(rows, f"ALiBi attention, forward + backward, batch 1, {H} heads x {d}, {str(dtype)[6:]} on {device}")
    for L, t, m in bars:
        ok = t <= 1.3 and m <= 1.1
        print(f"L = {L}: llmtap ALiBi {t:.2f}x the time, {m:.2f}x the memory of causal SDPA "
              f"(bar <= 1.3x, <= 1.1x): {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
