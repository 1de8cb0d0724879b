"""Where the code runs: choosing a device, autocast, timing, CPU threads, and what MPS lacks.

Every notebook runs unchanged on a laptop CPU, a Colab GPU or a Mac, so the few things that
differ between devices live here:

* ``pick_device`` - cuda, then Apple's mps, then cpu;
* ``autocast_dtype`` - bf16 on GPUs that have it, fp16 on older ones, none on CPU and MPS;
* ``synchronize`` - CUDA and MPS queue work and return at once, so a clock read right after a
  call measures the queueing, not the work: wait for the queue before reading it;
* ``cpu_threads`` - a block run with n CPU threads, the previous number given back after it;
* ``seconds`` - the median time of a call, measured between two ``synchronize``;
* ``singular_values`` - ``torch.linalg.svdvals``, computed on the CPU where MPS has no kernel.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

import torch

from .validate import positive_int


def pick_device(prefer: str | None = None) -> torch.device:
    """cuda, then Apple's mps, then cpu; or the device named by ``prefer``."""
    if prefer is not None:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``device``: bf16 on CUDA when supported, else fp16; None on CPU/MPS."""
    if torch.device(device).type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def synchronize(device) -> None:
    """Wait until ``device`` has finished the work queued on it (nothing to wait for on a CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def seconds(fn, device, repeats: int = 5, warmup: int = 1) -> float:
    """The median wall time of ``fn()`` on ``device``, over ``repeats`` runs after ``warmup`` ones,
    each run timed between two ``synchronize`` calls."""
    positive_int(repeats, "repeats")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


@contextmanager
def cpu_threads(n: int, device=None):
    """Run the ``with`` block on ``n`` CPU threads, then give back the previous thread count.
    With ``device`` given, only when it is the CPU (a GPU run keeps its settings).

    Tiny models run fastest on one thread: handing matrix products between threads costs more
    than it saves, badly so when other programs share the cores."""
    positive_int(n, "n (CPU threads)")
    if device is not None and torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_told = set()


def _on_cpu_instead(what: str, device: torch.device) -> None:
    if (what, device.type) not in _told:
        _told.add((what, device.type))
        print(f"note: {what} has no {device.type} kernel in this PyTorch; computing it on the CPU")


def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    """The singular values of ``matrix`` (float32, largest first), on the matrix's device; on MPS,
    which lacks the kernel, they are computed on the CPU (said once) and moved back."""
    if matrix.dim() != 2:
        raise ValueError(f"singular_values takes a 2-D matrix, got shape {tuple(matrix.shape)}")
    if matrix.device.type == "mps":
        _on_cpu_instead("torch.linalg.svdvals", matrix.device)
        return torch.linalg.svdvals(matrix.detach().float().cpu()).to(matrix.device)
    return torch.linalg.svdvals(matrix.detach().float())
