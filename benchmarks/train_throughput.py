"""Training throughput of the course model (tokens/s), next to torch's built-in transformer.

The reference is ``nn.TransformerEncoder`` with a causal mask, same width, depth, heads and
vocabulary, trained with the same optimizer on the same batches: the ratio says whether
llmtap's readable model pays for its readability. On CUDA both run under bf16 autocast.

    python benchmarks/train_throughput.py [--device cuda] [--quick]
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, interleaved, print_table, training_step  # noqa: E402

from llmtap.model import GPT, GPTConfig  # noqa: E402
from llmtap.pretrain import course_config  # noqa: E402
from llmtap.device import autocast_dtype  # noqa: E402


class TorchReference(nn.Module):
    """The same shape of model from torch's building blocks (learned positions, pre-norm, GELU)."""

    def __init__(self, c: GPTConfig):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(c.vocab_size, c.n_embd), nn.Embedding(c.block_size, c.n_embd)
        layer = nn.TransformerEncoderLayer(c.n_embd, c.n_head, 4 * c.n_embd, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, c.n_layer, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=idx.device)
        x = self.ln_f(self.blocks(x, mask=mask, is_causal=True))
        logits = self.lm_head(x)
        return logits, F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))


def main():
    args = base_parser(__doc__).parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.quick:
        cfg, batch = GPTConfig(vocab_size=748, block_size=64, n_layer=2, n_head=2, n_embd=32), 4
    elif device.type == "cuda":
        cfg, batch = GPTConfig(vocab_size=748, block_size=1024, n_layer=12, n_head=12, n_embd=768), 16
    else:   # the course model's own size and batch
        cfg, batch = course_config(vocab_size=1009), 32
    amp = autocast_dtype(device)
    x = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size), device=device)
    y = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size), device=device)
    steps = {}
    for name, model in {"llmtap GPT": GPT(cfg), "torch TransformerEncoder": TorchReference(cfg)}.items():
        model.to(device).train()
        steps[name], _ = training_step(lambda m: m(x, y)[1], model, device, amp)
    times = interleaved(steps, device, warmup=2, rounds=3 if args.quick else 10)
    ref = times["torch TransformerEncoder"]
    rows = [{"model": n, "ms/step": t * 1e3, "tokens/s": batch * cfg.block_size / t, "time vs torch": t / ref}
            for n, t in times.items()]
    print_table(rows, f"training throughput on {device} ({'bf16/fp16 autocast' if amp else 'fp32'}), "
                      f"{cfg.n_layer}x{cfg.n_embd}, batch {batch} x {cfg.block_size}")


if __name__ == "__main__":
    main()
