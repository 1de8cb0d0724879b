"""Padded versus packed fine-tuning batches: real tokens per second of forward + backward.

The same SFT-like examples (prompt 8-40 tokens, completion 2-120 tokens, log-uniform, so most
are short and a few long) go through the course-sized model (``llmtap.pretrain.course_config``:
5 layers x 112, RoPE, block 256) once, three ways:

* padded:              batches of ``--batch`` examples in random order (``collate_completions``),
                       each as long as its longest example;
* padded, by length:   the same after sorting by length (``completion_batches(group_by_length=True)``);
* packed:              ``llmtap.packing.pack`` into rows of 256 tokens, block-diagonal mask and
                       reset positions, batches of rows holding about as many tokens as a padded batch.

Only real tokens count in tokens/s; the padding share says how much of each batch was wasted.
The ratio is against the padded run, timed alternately in the same process. On the CPU the packed
rows pay for a dense (B, 1, T, T) mask (SDPA's fused causal kernel takes no mask); on CUDA the
mask is a FlexAttention BlockMask and the kernel skips the blocks between examples.

    python benchmarks/packing_throughput.py [--device cuda] [--quick] [--examples 96] [--batch 16]
"""
from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, interleaved, print_table  # noqa: E402

from llmtap.device import autocast_dtype  # noqa: E402
from llmtap.model import GPT  # noqa: E402
from llmtap.packing import pack  # noqa: E402
from llmtap.pretrain import course_config, course_tokenizer  # noqa: E402
from llmtap.train import collate_completions  # noqa: E402

PAD = 0


def sft_like_rows(n: int, vocab_size: int, seed: int = 0, longest: int = 120):
    """n (prompt_ids, completion_ids) pairs: prompts of 8-40 tokens, completions log-uniform in
    2 .. longest tokens (instruction data is mostly short answers and a few long ones)."""
    rng = random.Random(seed)

    def tokens(k):
        return [rng.randrange(3, vocab_size) for _ in range(k)]
    return [(tokens(rng.randint(8, 40)), tokens(int(math.exp(rng.uniform(math.log(2), math.log(longest))))))
            for _ in range(n)]


def padded_batches(rows, batch: int):
    return [collate_completions(rows[i:i + batch], PAD) for i in range(0, len(rows), batch)]


def packed_batches(rows, block_size: int, rows_per_batch: int):
    packed = pack(rows, block_size, PAD)
    return [(packed.x[i:i + rows_per_batch], packed.y[i:i + rows_per_batch],
             {"positions": packed.positions[i:i + rows_per_batch],
              "document_ids": packed.document_ids[i:i + rows_per_batch]})
            for i in range(0, packed.x.shape[0], rows_per_batch)]


def epoch(model, batches, device, amp):
    """Forward + backward over every batch once (no optimizer step: each round does the same work)."""
    def run():
        for x, y, *extra in batches:
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                _, loss = model(x, y, **(extra[0] if extra else {}))
            loss.backward()
        model.zero_grad(set_to_none=True)
    return run


def main():
    ap = base_parser(__doc__)
    ap.add_argument("--examples", type=int, default=None, help="examples per epoch (default 96; 24 with --quick)")
    ap.add_argument("--batch", type=int, default=16, help="examples per padded batch")
    args = ap.parse_args()
    n = args.examples if args.examples is not None else (24 if args.quick else 96)
    if n <= 0 or args.batch <= 0:
        ap.error(f"--examples and --batch must be positive, got {n} and {args.batch}")
    device = torch.device(args.device)
    torch.manual_seed(0)
    overrides = dict(n_layer=2, n_embd=64) if args.quick else {}
    cfg = course_config(course_tokenizer().vocab_size, **overrides)
    model = GPT(cfg).to(device).train()
    amp = autocast_dtype(device)
    rows = sft_like_rows(n, cfg.vocab_size)
    real = sum(len(p) + len(c) - 1 for p, c in rows)                 # input positions that are not padding
    rows_per_batch = max(1, round(args.batch * real / n / cfg.block_size))   # about a padded batch's tokens
    layouts = {"padded": padded_batches(rows, args.batch),
               "padded, by length": padded_batches(sorted(rows, key=lambda r: len(r[0]) + len(r[1])), args.batch),
               "packed": packed_batches(rows, cfg.block_size, rows_per_batch)}
    layouts = {name: [tuple(t.to(device) if torch.is_tensor(t) else {k: v.to(device) for k, v in t.items()}
                            for t in b) for b in batches] for name, batches in layouts.items()}
    times = interleaved({name: epoch(model, batches, device, amp) for name, batches in layouts.items()},
                        device, warmup=1, rounds=3)
    rows_out = []
    for name, batches in layouts.items():
        positions = sum(b[0].numel() for b in batches)
        rows_out.append({"layout": name, "batches": len(batches), "shape": "x".join(map(str, batches[0][0].shape)),
                         "padding": f"{1 - real / positions:.0%}", "epoch ms": times[name] * 1e3,
                         "real tokens/s": real / times[name], "vs padded": f"{times['padded'] / times[name]:.2f}x"})
    print_table(rows_out, f"SFT forward + backward on {device} ({'autocast ' + str(amp)[6:] if amp else 'fp32'}), "
                          f"{cfg.n_layer}x{cfg.n_embd} {cfg.position}, {n} examples, {real} real tokens")


if __name__ == "__main__":
    main()
