"""QLoRA versus LoRA on the same Hugging Face GPT-2, in one run: memory of the frozen weights and
time per training step (forward, backward, AdamW), as ratios to LoRA; on CUDA also peak memory,
and peft + bitsandbytes QLoRA next to llmtap's when both are installed.

LoRA r=8, alpha=16 on c_attn, c_proj and c_fc (every linear layer of the blocks, as the QLoRA
paper adapts all of them). QLoRA: the same layers frozen in NF4 with double quantisation, dequantised
on the fly (compute dtype bf16 on CUDA, fp32 on the CPU). "Frozen weights" counts the weights of the
adapted layers only (the embeddings stay as they are in both).

CPU: 4 layers, width 256, batch 4 x 128. CUDA: GPT-2 small (12 x 768), bf16 autocast, batch 8 x 1024.
--quick: 2 x 64, batch 2 x 32. --n-layer / --n-embd / --batch / --seq override. Weights are random:
nothing is downloaded.

    python benchmarks/qlora_vs_lora.py [--device cuda] [--quick] [--threads 1]
"""
from __future__ import annotations

import copy
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, interleaved, peak_memory, print_table, training_step  # noqa: E402

from llmtap.device import autocast_dtype  # noqa: E402
from llmtap.lora import add_lora, lora_layers  # noqa: E402
from llmtap.qlora import QuantLinear, add_qlora  # noqa: E402

warnings.filterwarnings("ignore")
TARGETS, R, ALPHA = ["c_attn", "c_proj", "c_fc"], 8, 16


def gpt2(n_layer, n_embd, n_positions, seed=0):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                                      n_head=max(1, n_embd // 64)))


def frozen_bytes_and_count(model) -> tuple[int, int]:
    """(bytes, weights) of the frozen weights of the LoRA-wrapped layers."""
    total = count = 0
    for layer in lora_layers(model).values():
        base = layer.base_layer
        if isinstance(base, QuantLinear):
            q = base.quantized_weight()
            total, count = total + q.nbytes, count + q.numel
        else:
            total, count = total + base.weight.numel() * base.weight.element_size(), count + base.weight.numel()
    return total, count


def peft_bnb_qlora(base, device):
    """peft + bitsandbytes QLoRA of ``base`` (saved and reloaded in 4 bits), or the reason it is not run."""
    if device.type != "cuda":
        return None, "CUDA only"
    try:
        import bitsandbytes  # noqa: F401
        from peft import LoraConfig, get_peft_model
        from transformers import BitsAndBytesConfig, GPT2LMHeadModel
    except ImportError as e:
        return None, f"not installed ({e.name})"
    with tempfile.TemporaryDirectory() as tmp:
        base.save_pretrained(tmp)
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                    bnb_4bit_compute_dtype=torch.bfloat16)
        model = GPT2LMHeadModel.from_pretrained(tmp, quantization_config=config, device_map={"": device.index or 0})
    return get_peft_model(model, LoraConfig(r=R, lora_alpha=ALPHA, target_modules=TARGETS, task_type="CAUSAL_LM")), ""


def bnb_frozen_bytes_and_count(model) -> tuple[int, int]:
    """(bytes, weights) of bitsandbytes' 4-bit weights: packed codes, absmax and, nested, their constants."""
    import bitsandbytes as bnb
    total = count = 0
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            state = m.weight.quant_state
            total += m.weight.numel() * m.weight.element_size() + state.absmax.numel() * state.absmax.element_size()
            if getattr(state, "nested", False):
                total += state.state2.absmax.numel() * state.state2.absmax.element_size() + state.offset.numel() * 4
            count += state.shape.numel()
    return total, count


def main():
    ap = base_parser(__doc__)
    ap.add_argument("--n-layer", type=int, default=None)
    ap.add_argument("--n-embd", type=int, default=None, help="a multiple of 64 (heads of width 64)")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seq", type=int, default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.quick:
        n_layer, n_embd, batch, T = 2, 64, 2, 32
    elif device.type == "cuda":
        n_layer, n_embd, batch, T = 12, 768, 8, 1024
    else:
        n_layer, n_embd, batch, T = 4, 256, 4, 128
    n_layer, n_embd = args.n_layer or n_layer, args.n_embd or n_embd
    batch, T = args.batch or batch, args.seq or T
    for flag, value in (("--n-layer", n_layer), ("--n-embd", n_embd), ("--batch", batch), ("--seq", T)):
        if value <= 0:
            ap.error(f"{flag} must be a positive int, got {value}")
    amp = autocast_dtype(device)
    compute = amp or torch.float32                  # the dtype QLoRA dequantises to

    base = gpt2(n_layer, n_embd, T)
    models = {"LoRA": add_lora(copy.deepcopy(base), TARGETS, r=R, alpha=ALPHA).to(device),
              "QLoRA (llmtap, NF4 + DQ)": add_qlora(copy.deepcopy(base), TARGETS, r=R, alpha=ALPHA,
                                                    compute_dtype=compute).to(device)}
    with torch.no_grad():        # the same nonzero A and B everywhere, so that every model does the same work
        g = torch.Generator().manual_seed(1)
        for name, layer in lora_layers(models["LoRA"]).items():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.01)
            other = lora_layers(models["QLoRA (llmtap, NF4 + DQ)"])[name]
            other.lora_A.copy_(layer.lora_A)
            other.lora_B.copy_(layer.lora_B)
    peft_model, why_not = peft_bnb_qlora(base, device)
    if peft_model is not None:
        models["QLoRA (peft + bitsandbytes)"] = peft_model
    x = torch.randint(0, 50257, (batch, T), device=device)

    with torch.no_grad(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        lora_logits = models["LoRA"](input_ids=x).logits.float()
        diff = (models["QLoRA (llmtap, NF4 + DQ)"](input_ids=x).logits.float() - lora_logits).abs().max().item()
        largest = lora_logits.abs().max().item()

    steps = {}
    for name, model in models.items():
        model.train()
        steps[name], _ = training_step(lambda m: m(input_ids=x, labels=x).loss, model, device, amp)
    times = interleaved(steps, device, warmup=2, rounds=3 if args.quick else 6)
    peaks = {name: peak_memory(fn, device) for name, fn in steps.items()}

    frozen = {"LoRA": frozen_bytes_and_count(models["LoRA"]),
              "QLoRA (llmtap, NF4 + DQ)": frozen_bytes_and_count(models["QLoRA (llmtap, NF4 + DQ)"])}
    if peft_model is not None:
        frozen["QLoRA (peft + bitsandbytes)"] = bnb_frozen_bytes_and_count(peft_model)
    rows = []
    for name in models:
        size, count = frozen[name]
        row = {"method": name, "frozen MB": size / 2**20, "bytes/param": size / count,
               "bits/param": 8 * size / count, "frozen vs LoRA": size / frozen["LoRA"][0],
               "ms/step": times[name] * 1e3, "time vs LoRA": times[name] / times["LoRA"]}
        if peaks[name] is not None:
            row["peak GiB"] = peaks[name] / 2**30
            row["peak vs LoRA"] = peaks[name] / peaks["LoRA"]
        rows.append(row)
    print_table(rows, f"QLoRA vs LoRA on {device} ({'bf16 autocast' if amp else 'fp32'}), GPT-2 {n_layer}x{n_embd}, "
                      f"batch {batch} x {T}, r={R} on {', '.join(TARGETS)}; frozen = the weights of those layers")
    print(f"largest logit difference QLoRA vs LoRA (the 4-bit error of W0): {diff:.3g}, largest |logit| {largest:.3g}")
    if peft_model is None:
        print(f"peft + bitsandbytes QLoRA: not run ({why_not})")


if __name__ == "__main__":
    main()
