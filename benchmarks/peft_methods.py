"""Every fine-tuning method of chapters 02-03 against the base model, in one run: inference
latency (one forward pass over 128 tokens, batch 1 and a larger batch) and training-step time.

Methods: full fine-tuning, LoRA (r=8 on c_attn, unmerged and merged), Houlsby adapters (after
attention and after the MLP), prefix tuning (10 key/value vectors per layer) and prompt tuning
(10 soft-prompt vectors). Latency is relative to the base model; step time (forward, backward,
AdamW) relative to full fine-tuning. For scale: the LoRA paper (Hu et al., 2021, Table 1)
measured adapters adding 2.2%-30.3% latency on GPT-2 medium, worst at batch 1, and merged LoRA none.

CPU: the shipped course model (5 layers, width 112), batch 1 and 16. CUDA: a course GPT of
GPT-2 medium's shape (24 layers, width 1024, 16 heads, random weights), bf16 autocast, batch 1
and 32. Nothing is downloaded.

    python benchmarks/peft_methods.py [--device cuda] [--quick] [--threads N]
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, interleaved, peak_memory, print_table, training_step  # noqa: E402

from llmtap.adapters import add_adapters  # noqa: E402
from llmtap.lora import add_lora, merge_lora  # noqa: E402
from llmtap.model import GPT, GPTConfig  # noqa: E402
from llmtap.prefix import add_prefix_tuning, add_prompt_tuning  # noqa: E402
from llmtap.device import autocast_dtype  # noqa: E402
from llmtap.train import count_parameters, optimizer_state_bytes  # noqa: E402


def methods(base: GPT, bottleneck: int, n_prefix: int) -> dict:
    """Every method's model, each a copy of ``base``; nonzero adapter/LoRA updates, so that the
    work done is what a trained model does (zero-initialised parts are not skipped anyway)."""
    lora = add_lora(copy.deepcopy(base), ["c_attn"], r=8, alpha=16)
    adapters = add_adapters(copy.deepcopy(base), bottleneck=bottleneck)
    with torch.no_grad():
        for n, p in list(lora.named_parameters()) + list(adapters.named_parameters()):
            if "lora_B" in n or "up.weight" in n:
                p.normal_(0, 0.01)
    return {"full fine-tuning": copy.deepcopy(base).requires_grad_(True),
            "LoRA unmerged": lora,
            "LoRA merged": merge_lora(copy.deepcopy(lora)),
            "adapters": adapters,
            "prefix tuning": add_prefix_tuning(copy.deepcopy(base), n_prefix=n_prefix),
            "prompt tuning": add_prompt_tuning(copy.deepcopy(base), n_tokens=n_prefix)}


def main():
    args = base_parser(__doc__).parse_args()
    device = torch.device(args.device)
    T, n_prefix = 128, 10
    if args.quick:
        base = GPT(GPTConfig(vocab_size=300, block_size=T + n_prefix, n_layer=2, n_head=2, n_embd=32))
        batches, bottleneck, rounds = (1, 4), 8, 3
    elif device.type == "cuda":
        base = GPT(GPTConfig(vocab_size=50257, block_size=1024, n_layer=24, n_head=16, n_embd=1024))
        batches, bottleneck, rounds = (1, 32), 64, 20
    else:
        import llmtap
        base, _ = llmtap.load_course_model("cpu")
        batches, bottleneck, rounds = (1, 16), 16, 15
    base = base.to(device).eval()
    amp = autocast_dtype(device)
    models = {name: m.to(device).eval() for name, m in methods(base, bottleneck, n_prefix).items()}
    vocab = base.config.vocab_size
    print(f"model: {base.config.n_layer} layers, width {base.config.n_embd}, {count_parameters(base)[1]:,} "
          f"parameters; {device} ({torch.get_num_threads()} CPU threads), {'bf16 autocast' if amp else 'fp32'}; "
          f"sequence {T} tokens; adapters bottleneck {bottleneck}, LoRA r=8 on c_attn, prefix/prompt {n_prefix} vectors")

    # --------------------------------------------------------------- inference latency
    def forward(model, x):
        def run():
            with torch.no_grad(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                model(x)
        return run
    rows = []
    contenders = {"base": base, **{n: m for n, m in models.items() if n != "full fine-tuning"}}
    for batch in batches:
        x = torch.randint(3, vocab, (batch, T), device=device)
        lat = interleaved({n: forward(m, x) for n, m in contenders.items()}, device, warmup=3, rounds=rounds)
        for n, t in lat.items():
            rows.append({"batch": batch, "model": n, "ms/forward": t * 1e3, "vs base": t / lat["base"]})
    print_table(rows, f"inference latency, one forward pass of {T} tokens (full fine-tuning runs the base model)")

    # --------------------------------------------------------------- training step
    batch = batches[-1]
    x = torch.randint(3, vocab, (batch, T), device=device)
    steps, optims = {}, {}
    for name, model in models.items():
        if name == "LoRA merged":
            continue
        model.train()
        steps[name], optims[name] = training_step(lambda m: m(x, x)[1], model, device, amp)
    times = interleaved(steps, device, warmup=2, rounds=3 if args.quick else max(5, rounds // 2))
    peaks = {name: peak_memory(fn, device) for name, fn in steps.items()}
    ref = times["full fine-tuning"]
    rows = []
    for name in steps:
        trainable, total = count_parameters(models[name])
        row = {"method": name, "trainable": trainable, "% of model": 100 * trainable / total,
               "ms/step": times[name] * 1e3, "vs full FT": times[name] / ref,
               "optimizer KB": optimizer_state_bytes(optims[name]) / 1024}
        if peaks[name] is not None:
            row["peak GiB"] = peaks[name] / 2**30
            row["memory vs full FT"] = peaks[name] / peaks["full fine-tuning"]
        rows.append(row)
    print_table(rows, f"training step (forward, backward, AdamW), batch {batch} x {T}")


if __name__ == "__main__":
    main()
