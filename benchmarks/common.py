"""Shared helpers of the benchmarks: timing with warm-up, peak memory, a result table.

Absolute times depend on the machine and on what else it runs; the benchmarks therefore time
llmtap next to a reference in the same process and report the ratio.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, device="cpu", warmup: int = 2, repeat: int = 5) -> float:
    """Median seconds per call of ``fn()`` over ``repeat`` timed calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(fns: dict, device="cpu", warmup: int = 2, rounds: int = 5) -> dict:
    """Median seconds of each function, timing them in alternation so that drifts in machine
    load hit every contender alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def training_step(loss_of, model, device, amp=None, lr: float = 1e-4):
    """(step, optimizer): ``step()`` runs one AdamW step on ``loss_of(model)`` under autocast
    (``amp`` a dtype, or None for full precision), over the parameters that require grad."""
    device = torch.device(device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)

    def step():
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = loss_of(model)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step, opt


def peak_memory(fn, device) -> int | None:
    """Peak CUDA memory in bytes allocated while ``fn()`` runs (None off CUDA)."""
    if torch.device(device).type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def print_table(rows: list[dict], title: str) -> None:
    print(f"\n{title}")
    cols = list(rows[0])
    width = {c: max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(width[c]) for c in cols))
    for r in rows:
        print("  ".join(_fmt(r[c]).ljust(width[c]) for c in cols))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


class BenchmarkParser(argparse.ArgumentParser):
    """The flags every benchmark takes; parsing also applies ``--threads``."""

    def parse_args(self, *a, **kw):
        args = super().parse_args(*a, **kw)
        if args.threads is not None:
            if args.threads <= 0:
                self.error(f"--threads must be a positive int, got {args.threads}")
            torch.set_num_threads(args.threads)
        return args


def base_parser(description: str) -> argparse.ArgumentParser:
    ap = BenchmarkParser(description=description)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads (default: PyTorch's); 1 gives steadier ratios on a shared machine")
    return ap
