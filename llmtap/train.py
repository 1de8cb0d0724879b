"""A training loop a student can read, and what fine-tuning sets up around it: which
parameters train, and how many there are.

One step: forward -> loss -> backward -> clip the gradient norm -> AdamW step with a
learning rate that warms up linearly, then follows a cosine down to ``min_lr``.
On CUDA the forward runs under autocast (bf16 where supported, else fp16 with a grad scaler).
The loop reads the loss back to the host only every ``log_every`` steps: each ``.item()``
waits for the GPU.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm

from .device import autocast_dtype, pick_device
from .tokenizer import Tokenizer
from .validate import positive_int


@dataclass
class TrainConfig:
    steps: int = 1000
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.95)
    grad_clip: float = 1.0
    log_every: int = 50
    eval_every: int = 0                 # 0: no periodic evaluation
    checkpoint_path: str | None = None  # saved at every evaluation and at the end
    progress: bool = True

    def __post_init__(self):
        if self.steps <= 0:
            raise ValueError(f"steps must be > 0, got {self.steps}")
        if not self.lr > 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ValueError(f"need lr > 0 and 0 <= min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}")
        if self.warmup_steps < 0 or self.log_every <= 0 or self.eval_every < 0:
            raise ValueError("warmup_steps and eval_every must be >= 0, log_every > 0")


def cosine_lr(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to lr, then lr_t = min_lr + (lr - min_lr) (1 + cos(pi t)) / 2, t in [0, 1]."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    # Decay matrices only; biases, norms and 1-d vectors keep their scale.
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (all requires_grad=False)")
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas)


def _grouped_optimizer(param_groups, cfg: TrainConfig) -> torch.optim.AdamW:
    groups = list(param_groups) if isinstance(param_groups, (list, tuple)) else None
    if not groups or not all(isinstance(g, dict) and "params" in g for g in groups):
        raise ValueError("param_groups must be a non-empty list of dicts, each with 'params' (and its own 'lr'), "
                         "as lora.lora_plus_param_groups returns")
    rates = [g.get("lr", cfg.lr) for g in groups]           # a group without "lr" takes cfg.lr
    bad = [r for r in rates if isinstance(r, bool) or not isinstance(r, (int, float)) or r <= 0]
    if bad:
        raise ValueError(f"every group's lr must be a number > 0, got {bad}")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


# ----------------------------------------------------------------------------- what trains
def mark_only_trainable(model: torch.nn.Module, is_trainable: Callable[[str], bool]) -> torch.nn.Module:
    """Freeze every parameter of ``model`` except those whose name ``is_trainable(name)`` accepts.
    Shared by LoRA, adapters and prefix/prompt tuning: each names its own parameters."""
    for name, p in model.named_parameters():
        p.requires_grad = bool(is_trainable(name))
    return model


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied weights count once."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


# ----------------------------------------------------------------------------- batches for fine-tuning
LENGTH_GROUP = 32      # batches drawn at once by completion_batches(group_by_length=True)


def completion_batches(tokenizer: Tokenizer, pairs, batch_size: int, seed: int = 0, eos: bool = False,
                       mask_prompt: bool = True, group_by_length: bool = False, collate=None) -> Iterator:
    """Endless (x, y) batches from (prompt, completion) text pairs, for fine-tuning.

    Each row is <bos> prompt completion, right-padded; the targets y are -100 (ignored by the
    loss) everywhere except at the completion's tokens, so the model learns to answer, not to
    reproduce the prompt (``mask_prompt=False`` trains on the prompt's tokens too, as
    ``labels = input_ids`` does). ``eos=True`` ends every completion with <eos>, so that the
    model also learns where to stop.

    ``group_by_length=True`` draws ``LENGTH_GROUP`` batches' worth of rows at once, sorts them by
    length, cuts them into batches and serves those in random order: the rows of a batch are about
    as long as each other, so little of it is padding (a batch is as long as its longest row).
    ``collate(rows, pad_id) -> (x, y)`` replaces ``collate_completions`` as the batch builder (a
    student's own, say); it must mask the prompt itself."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError("pairs is empty; give (prompt, completion) text pairs")
    positive_int(batch_size, "batch_size")
    if collate is not None and not callable(collate):
        raise TypeError(f"collate must be callable as collate(rows, pad_id) -> (x, y), got {type(collate).__name__}")
    if collate is not None and not mask_prompt:
        raise ValueError("collate builds the labels itself, mask or not: give collate or mask_prompt=False, not both")
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            raise ValueError(f"pair {i} is {pair!r}; each pair must be (prompt, completion), two strings")
        if not pair[1]:
            raise ValueError(f"pair {i} has an empty completion: there would be nothing to learn from it")
    encoded = [(tokenizer.encode(p, bos=True), tokenizer.encode(c, eos=eos)) for p, c in pairs]
    rng = random.Random(seed)
    group = LENGTH_GROUP if group_by_length else 1
    while True:
        rows = [encoded[rng.randrange(len(encoded))] for _ in range(batch_size * group)]
        if group_by_length:
            rows.sort(key=lambda row: len(row[0]) + len(row[1]))
        batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
        rng.shuffle(batches)
        for batch in batches:
            yield collate_completions(batch, tokenizer.pad_id, mask_prompt) if collate is None else \
                collate(batch, tokenizer.pad_id)


def collate_completions(rows, pad_id: int, mask_prompt: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One right-padded batch (x, y) from (prompt_ids, completion_ids) token-id pairs.

    x is prompt + completion without its last token; y[t] is the token x should predict at
    position t, -100 (ignored by the loss) on the padding and, with ``mask_prompt``, on the prompt."""
    rows = list(rows)
    if not rows:
        raise ValueError("rows is empty; give (prompt_ids, completion_ids) pairs")
    for i, (p, c) in enumerate(rows):
        if not p or not c:
            raise ValueError(f"row {i} has an empty prompt or completion; both need at least one token")
    T = max(len(p) + len(c) for p, c in rows) - 1
    x = torch.full((len(rows), T), pad_id, dtype=torch.long)
    y = torch.full((len(rows), T), -100, dtype=torch.long)
    for i, (p, c) in enumerate(rows):
        ids = list(p) + list(c)
        x[i, :len(ids) - 1] = torch.tensor(ids[:-1])
        first = len(p) - 1 if mask_prompt else 0                  # position t predicts token t + 1
        y[i, first:len(ids) - 1] = torch.tensor(ids[first + 1:])
    return x, y


# ----------------------------------------------------------------------------- the loop
def optimizer_state_bytes(opt: torch.optim.Optimizer) -> int:
    """Bytes the optimizer keeps besides the weights. AdamW stores two moments (and a step count)
    per trainable parameter: the memory that parameter-efficient fine-tuning saves."""
    return sum(t.numel() * t.element_size() for state in opt.state.values()
               for t in state.values() if torch.is_tensor(t))


def train(model: torch.nn.Module, batches: Iterator | Callable[[], tuple], cfg: TrainConfig,
          evaluate: Callable[[torch.nn.Module], dict] | None = None,
          on_log: Callable[[int, float], None] | None = None, device=None, param_groups: list[dict] | None = None) -> dict:
    """Train ``model`` on (x, y) batches; returns the history
    {"step", "loss", "lr", "eval", "seconds", "optimizer_bytes"}.

    ``batches`` is an iterator (or a function returning one batch per call) of token-id tensors
    x and targets y; the model must return (logits, loss) for ``model(x, y)``.
    A batch may also be a ``llmtap.packing.PackedBatch``: its positions and document ids then go
    to the model too.
    ``on_log(step, loss)`` is called every ``log_every`` steps (a live plot hooks in here).
    ``param_groups``: AdamW's groups instead of ``make_optimizer``'s, each with its own "lr" (LoRA+,
    ``lora.lora_plus_param_groups``); the schedule then scales every group by the same factor,
    lr_group(t) = lr_group · lr(t) / cfg.lr, so their ratio holds all through training.
    """
    # imported here, not at the top: checkpoints imports the model, and the model imports this module
    from .checkpoints import save_checkpoint
    device = pick_device() if device is None else torch.device(device)
    model.to(device).train()
    next_batch = batches if callable(batches) else (lambda it=iter(batches): next(it))
    opt = make_optimizer(model, cfg) if param_groups is None else _grouped_optimizer(param_groups, cfg)
    ratios = [group["lr"] / cfg.lr for group in opt.param_groups]
    amp = autocast_dtype(device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    history = {"step": [], "loss": [], "lr": [], "eval": [], "seconds": 0.0}
    running = torch.zeros((), device=device)
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.steps), disable=not cfg.progress, desc="train")
    for step in bar:
        lr = cosine_lr(step, cfg)
        for group, ratio in zip(opt.param_groups, ratios):
            group["lr"] = lr * ratio
        batch, packed = next_batch(), {}
        if hasattr(batch, "document_ids"):          # a packed batch (llmtap.packing.PackedBatch, chapter 06)
            batch = batch.to(device)
            x, y, packed = batch.x, batch.y, {"positions": batch.positions, "document_ids": batch.document_ids}
        else:
            x, y = batch
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            _, loss = model(x, y, **packed)
        _optimizer_step(model, opt, scaler, loss, cfg.grad_clip)
        running += loss.detach()
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            mean_loss = (running / ((step % cfg.log_every) + 1)).item()     # the one host sync per log interval
            running.zero_()
            history["step"].append(step + 1)
            history["loss"].append(mean_loss)
            history["lr"].append(lr)
            bar.set_postfix(loss=f"{mean_loss:.3f}")
            if on_log is not None:
                on_log(step + 1, mean_loss)
        if evaluate is not None and cfg.eval_every and ((step + 1) % cfg.eval_every == 0):
            model.eval()
            history["eval"].append({"step": step + 1, **evaluate(model)})
            model.train()
            if cfg.checkpoint_path:
                save_checkpoint(model, cfg.checkpoint_path)
    history["seconds"] = time.perf_counter() - t0
    history["optimizer_bytes"] = optimizer_state_bytes(opt)
    model.eval()
    if cfg.checkpoint_path:
        save_checkpoint(model, cfg.checkpoint_path)
    return history


def _optimizer_step(model: torch.nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                    loss: torch.Tensor, grad_clip: float) -> None:
    """backward -> clip the gradient norm -> AdamW step -> clear the gradients. With fp16 the
    scaler multiplies the loss so that small gradients do not underflow; it divides them back
    before the clip, so the clip sees the true norm."""
    scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(opt)
    scaler.update()
    opt.zero_grad(set_to_none=True)
