"""LoRA: llmtap versus peft versus full fine-tuning, on the same Hugging Face GPT-2, in one run.

Training: time per step (forward, backward, AdamW) and peak memory (CUDA) or optimizer-state
size; LoRA r=8, alpha=16 on ``c_attn``, as in peft's examples. Inference: latency of the base
model, of LoRA unmerged and of LoRA merged into the weights. Drift: the largest change of any
weight after many merge/unmerge cycles in bf16 (llmtap keeps W0; peft subtracts ΔW again).

CPU: a small GPT-2 (4 layers, width 256, batch 4 x 128). CUDA: GPT-2 small (12 x 768), bf16
autocast, batch 8 x 1024. Weights are random: nothing is downloaded.

    python benchmarks/lora_vs_peft.py [--device cuda] [--quick]
"""
from __future__ import annotations

import copy
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, interleaved, peak_memory, print_table, training_step  # noqa: E402

from llmtap.lora import add_lora, merge_lora, unmerge_lora  # noqa: E402
from llmtap.device import autocast_dtype  # noqa: E402
from llmtap.train import optimizer_state_bytes  # noqa: E402

warnings.filterwarnings("ignore")


def gpt2(n_layer, n_embd, n_head, n_positions, seed=0):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_positions=n_positions, n_embd=n_embd,
                                      n_layer=n_layer, n_head=n_head))


def peft_lora(model, r, alpha):
    from peft import LoraConfig, get_peft_model
    return get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, target_modules=["c_attn"], task_type="CAUSAL_LM"))


def drift_after_cycles(model, merge, unmerge, cycles) -> float:
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    for _ in range(cycles):
        merge(model)
        unmerge(model)
    after = dict(model.named_parameters())
    return max((after[n].detach().float() - w.float()).abs().max().item() for n, w in before.items())


def main():
    args = base_parser(__doc__).parse_args()
    device = torch.device(args.device)
    if args.quick:
        shape, batch, T = dict(n_layer=2, n_embd=64, n_head=2), 2, 32
    elif device.type == "cuda":
        shape, batch, T = dict(n_layer=12, n_embd=768, n_head=12), 8, 1024
    else:
        shape, batch, T = dict(n_layer=4, n_embd=256, n_head=4), 4, 128
    amp = autocast_dtype(device)
    r, alpha = 8, 16
    base = gpt2(**shape, n_positions=T).to(device)
    models = {"full fine-tuning": copy.deepcopy(base),
              "peft LoRA": peft_lora(copy.deepcopy(base), r, alpha),
              "llmtap LoRA": add_lora(copy.deepcopy(base), ["c_attn"], r=r, alpha=alpha)}
    with torch.no_grad():      # the same nonzero B in both LoRA models, so both do the same work
        g = torch.Generator().manual_seed(1)
        for n, p in models["peft LoRA"].named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.01)
        for (n, p), (_, q) in zip(((n, p) for n, p in models["llmtap LoRA"].named_parameters() if "lora_" in n),
                                  ((n, p) for n, p in models["peft LoRA"].named_parameters() if "lora_" in n)):
            p.copy_(q)
    x = torch.randint(0, 50257, (batch, T), device=device)

    # --------------------------------------------------------------- training steps
    steps, optims = {}, {}
    for name, model in models.items():
        model.train()
        steps[name], optims[name] = training_step(lambda m: m(input_ids=x, labels=x).loss, model, device, amp)
    times = interleaved(steps, device, warmup=2, rounds=3 if args.quick else 6)
    peaks = {name: peak_memory(fn, device) for name, fn in steps.items()}
    ref = times["peft LoRA"]
    rows = []
    for name in models:
        trainable = sum(p.numel() for p in models[name].parameters() if p.requires_grad)
        row = {"method": name, "trainable params": trainable, "ms/step": times[name] * 1e3,
               "time vs peft": times[name] / ref, "optimizer MB": optimizer_state_bytes(optims[name]) / 2**20}
        if peaks[name] is not None:
            row["peak GiB"] = peaks[name] / 2**30
            row["memory vs peft"] = peaks[name] / peaks["peft LoRA"]
        rows.append(row)
    print_table(rows, f"training step on {device} ({'bf16 autocast' if amp else 'fp32'}), GPT-2 "
                      f"{shape['n_layer']}x{shape['n_embd']}, batch {batch} x {T}, LoRA r={r} on c_attn")
    del steps, optims

    # --------------------------------------------------------------- inference latency
    for m in models.values():
        m.eval()
    ours, theirs = models["llmtap LoRA"], models["peft LoRA"]
    ours_merged = merge_lora(copy.deepcopy(ours))
    theirs_merged = copy.deepcopy(theirs)
    theirs_merged.merge_adapter()

    def infer(model):
        def run():
            with torch.no_grad(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                model(input_ids=x)
        return run
    contenders = {"base": base.eval(), "llmtap unmerged": ours, "llmtap merged": ours_merged,
                  "peft unmerged": theirs, "peft merged": theirs_merged}
    lat = interleaved({n: infer(m) for n, m in contenders.items()}, device, warmup=2, rounds=3 if args.quick else 10)
    print_table([{"model": n, "ms/forward": t * 1e3, "vs base": t / lat["base"]} for n, t in lat.items()],
                f"inference latency on {device}, batch {batch} x {T}")

    # --------------------------------------------------------------- merge/unmerge drift in bf16
    cycles = 50 if args.quick else 1000
    small = dict(n_layer=2, n_embd=128, n_head=2)
    ours_bf16 = add_lora(gpt2(**small, n_positions=64).to(device, torch.bfloat16), ["c_attn"], r=r, alpha=alpha)
    theirs_bf16 = peft_lora(gpt2(**small, n_positions=64).to(device, torch.bfloat16), r, alpha)
    with torch.no_grad():
        for model in (ours_bf16, theirs_bf16):
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.02)
    d_ours = drift_after_cycles(ours_bf16, merge_lora, unmerge_lora, cycles)
    d_theirs = drift_after_cycles(theirs_bf16, lambda m: m.merge_adapter(), lambda m: m.unmerge_adapter(), cycles)
    print_table([{"method": "llmtap", "max |W - W0|": d_ours}, {"method": "peft", "max |W - W0|": d_theirs}],
                f"weight drift after {cycles} merge/unmerge cycles in bf16")


if __name__ == "__main__":
    main()
