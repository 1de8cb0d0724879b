"""Chapter 04's position models, and how far past their training length they read.

Five tiny models differ only in their position encoding (learned, sinusoidal, RoPE, ALiBi,
none). Each is trained on windows of L = POSITIONS_L tokens, then asked about texts up to 8 L
long; the RoPE one is also extended to 4 L by four rescalings of its rotations, each followed by
the same short fine-tune at 4 L (``rope_pi4``: position interpolation; ``rope_ntk4``,
``rope_dynamic4``, ``rope_yarn4``). Two measurements tell them apart:

* perplexity exp(mean next-token loss) on held-out course-corpus texts of n tokens;
* pass-key retrieval: a 5-digit key hidden at some depth of filler text, asked for at the end.

    python -m llmtap.position_models     # rebuilds llmtap/data/positions_*.safetensors
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import random
import time
from pathlib import Path

import torch

from . import corpus
from .checkpoints import load_checkpoint, read_checkpoint, save_checkpoint
from .model import GPT, GPTConfig
from .pretrain import corpus_batches, course_tokenizer, packed_batches
from .tokenizer import Tokenizer
from .train import TrainConfig, collate_completions, train

POSITIONS_L = 64
POSITIONS_SEED = 4
# 8000 steps: with 4000, the RoPE model learnt to retrieve pass keys inside L on one seed of three
# (39%, 36%, 100% at L on seeds 4, 5, 6); with 8000, 100%, 88%, 100%.
POSITIONS_STEPS = 8000
POSITIONS_BATCH = 16
# Chen et al. (2023) extend LLaMA with PI and 1000 fine-tuning steps; so do we, of 8 windows of
# 4 L (2M tokens, about two minutes on one CPU thread). With 600 steps the shipped PI model found
# 65% of the keys at the very start of a 4 L input; with 1000, 95%.
POSITIONS_FINETUNE_STEPS = 1000
POSITIONS_FINETUNE_BATCH = 8
POSITIONS_PASSKEY_SHARE = 0.65    # most of the stream is pass-key documents, so that retrieval is learnt in 8000 steps
POSITIONS_REPEAT_SHARE = 0.2
# The course-corpus part of the stream, pinned here (the course model's corpus.MIXTURE may change
# without retraining chapter 04's models); the same kinds and weights as the course model's.
POSITIONS_MIXTURE = (("sentiment", 0.15), ("category", 0.20), ("category arrows", 0.05), ("translation", 0.08),
                     ("sum", 0.04), ("mapping", 0.30), ("repeat", 0.18))
POSITIONS_DIR = Path(__file__).parent / "data"
# the RoPE model extended to 4 L: checkpoint name -> rope_scaling type, each fine-tuned alike
EXTENDED = {"rope_pi4": "linear", "rope_ntk4": "ntk", "rope_dynamic4": "dynamic", "rope_yarn4": "yarn"}
POSITION_KINDS = ("learned", "sinusoidal", "rope", "alibi", "none")
POSITION_MODELS = POSITION_KINDS + tuple(EXTENDED)


def position_model_path(name: str, folder=POSITIONS_DIR) -> Path:
    if name not in POSITION_MODELS:
        raise ValueError(f"unknown position model {name!r}; choose one of {POSITION_MODELS}")
    return Path(folder) / f"positions_{name}.safetensors"


def load_position_model(name: str, device=None):
    """(model, tokenizer, info) of a shipped chapter 04 model; info holds what it measured when trained."""
    model, tokenizer = load_checkpoint(position_model_path(name), device)
    info = json.loads(read_checkpoint(position_model_path(name))[1].get("extra", "{}"))
    return model, tokenizer, info


# ----------------------------------------------------------------------------- the models and their data
def positions_config(vocab_size: int, position: str, block_size: int = POSITIONS_L, **overrides) -> GPTConfig:
    settings = dict(vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=4, n_embd=64, position=position)
    settings.update(overrides)
    return GPTConfig(**settings)


def passkey_document(rng: random.Random, min_chars: int, max_chars: int) -> str:
    """A Chinese pass-key prompt of min_chars .. max_chars characters followed by its answer."""
    prompt, key = corpus.passkey_sample(rng, rng.randint(min_chars, max_chars), rng.random(), "zh")
    return prompt + key


def long_context_batches(tokenizer: Tokenizer, block_size: int, batch_size: int, seed: int,
                         passkey_share: float = POSITIONS_PASSKEY_SHARE, repeat_share: float = POSITIONS_REPEAT_SHARE):
    """Endless (x, y) batches of block_size tokens, documents packed end to end: pass-key documents
    (a share ``passkey_share``, each up to block_size - 13 characters), repeated strings (a share
    ``repeat_share``: they teach copying from the context, which retrieval needs) and the rest
    course-corpus documents."""
    if not (0.0 <= passkey_share and 0.0 <= repeat_share and passkey_share + repeat_share <= 1.0):
        raise ValueError(f"need shares >= 0 with passkey_share + repeat_share <= 1, got {passkey_share}, {repeat_share}")
    if block_size < 32:
        raise ValueError(f"block_size must be >= 32 so that a pass-key document fits, got {block_size}")
    rng = random.Random(seed)

    def next_document():
        r = rng.random()
        if r < passkey_share:
            return passkey_document(rng, 17, block_size - 13)
        if r < passkey_share + repeat_share:
            return corpus.repeat_document(rng, rng.choice(corpus.LANGS))
        return corpus.pretraining_document(rng, POSITIONS_MIXTURE)

    return packed_batches(tokenizer, block_size, batch_size, next_document)


def with_rope_scaling(model: GPT, scaling: dict | None, block_size: int | None = None) -> GPT:
    """A copy of a RoPE model with another ``rope_scaling`` (same weights): linear, ntk, dynamic, yarn.
    ``block_size`` sets the new context window; the trained length the scaling starts from is the
    old block_size unless ``scaling`` names its "original_max_position_embeddings"."""
    if model.config.position != "rope":
        raise ValueError(f"rope_scaling needs a RoPE model, this one uses {model.config.position!r} positions")
    if scaling is not None:
        scaling = {"original_max_position_embeddings": model.config.block_size, **scaling}
    config = GPTConfig(**{**model.config.to_dict(), "rope_scaling": scaling,
                          "block_size": block_size or model.config.block_size})
    out = GPT(config).to(model.device)
    out.load_state_dict(model.state_dict())
    return out.eval()


# ----------------------------------------------------------------------------- measurements
@torch.no_grad()
def perplexity_at_length(model: GPT, tokenizer: Tokenizer, n_tokens: int, n_seq: int = 16,
                         seed: int = 10_000) -> float | None:
    """exp(mean next-token loss) over n_seq held-out course-corpus texts of n_tokens tokens.
    None when the model cannot read that many positions (a learned table ends at block_size)."""
    if n_tokens <= 1 or n_seq <= 0:
        raise ValueError(f"need n_tokens > 1 and n_seq > 0, got {n_tokens}, {n_seq}")
    if model.config.position == "learned" and n_tokens > model.config.block_size:
        return None
    x, y = next(corpus_batches(tokenizer, n_tokens, n_seq, seed))
    model.eval()
    _, loss = model(x.to(model.device), y.to(model.device))
    return math.exp(loss.item())


@torch.no_grad()
def passkey_accuracy(model: GPT, tokenizer: Tokenizer, n_tokens: int, depth: float, n: int = 20,
                     seed: int = 20_000) -> float | None:
    """Share of n Chinese pass-key prompts of at most n_tokens tokens, key hidden at ``depth``,
    whose 5 digits the model predicts exactly (greedy). None beyond a learned position table."""
    if n_tokens < 32 or n <= 0:
        raise ValueError(f"need n_tokens >= 32 (the needle and question take 17) and n > 0, got {n_tokens}, {n}")
    if model.config.position == "learned" and n_tokens > model.config.block_size:
        return None
    rng = random.Random(seed + round(1000 * depth) + n_tokens)
    model.eval()
    rows = []
    for _ in range(n):
        prompt, key = corpus.passkey_sample(rng, n_tokens - 13, depth, "zh")
        rows.append((tokenizer.encode(prompt, bos=True), tokenizer.encode(key)))
    # one batch, each row left-aligned and padded on the right: under the causal mask the padding
    # after a row's last token cannot change that row's predictions. y holds the key's digits at
    # the positions that predict them, -100 everywhere else.
    x, y = collate_completions(rows, tokenizer.pad_id)
    logits, _ = model(x.to(model.device))
    y = y.to(model.device)
    digit_right = (logits.argmax(-1) == y) | (y == -100)           # greedy prediction of each key digit
    return digit_right.all(dim=1).sum().item() / n


PASSKEY_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


def length_name(m: int) -> str:
    """m L as the measurements name it: "L", "2L", "4L"."""
    return "L" if m == 1 else f"{m}L"


def position_measurements(model: GPT, tokenizer: Tokenizer) -> dict:
    """Every number chapter 04 reads off one model: perplexity at L, 2 L, 4 L, 8 L ("ppl 2L") and
    pass-key accuracy at L, 2 L, 4 L, the mean over the depths of ``PASSKEY_DEPTHS`` ("key 4L")
    and at each depth ("key 4L d=0.25"); None where a learned table has no rows."""
    L = POSITIONS_L
    out = {f"ppl {length_name(m)}": perplexity_at_length(model, tokenizer, m * L) for m in (1, 2, 4, 8)}
    for m in (1, 2, 4):
        accs = [passkey_accuracy(model, tokenizer, m * L, depth) for depth in PASSKEY_DEPTHS]
        out[f"key {length_name(m)}"] = None if accs[0] is None else sum(accs) / len(accs)    # mean over the depths
        out.update({f"key {length_name(m)} d={depth:g}": acc for depth, acc in zip(PASSKEY_DEPTHS, accs)})
    return out


def position_report(model: GPT, tokenizer: Tokenizer) -> dict:
    """Perplexity at L, 2 L, 4 L, 8 L and pass-key accuracy at L, 2 L, 4 L (mean over 5 depths)."""
    measured = position_measurements(model, tokenizer)
    report = {f"ppl_{m}L": measured[f"ppl {length_name(m)}"] for m in (1, 2, 4, 8)}
    report.update({f"passkey_{m}L": measured[f"key {length_name(m)}"] for m in (1, 2, 4)})
    return report


# ----------------------------------------------------------------------------- training them
def train_base_model(kind: str, tokenizer: Tokenizer, steps: int = POSITIONS_STEPS, seed: int = POSITIONS_SEED,
                     device="cpu", progress=False) -> tuple[GPT, float]:
    """One of the five models, trained at L = POSITIONS_L; (model, seconds). Its weights are
    rounded to fp16, as the shipped checkpoints store them, so that what is measured is what ships."""
    if kind not in POSITION_KINDS:
        raise ValueError(f"unknown position kind {kind!r}; choose one of {POSITION_KINDS}")
    torch.manual_seed(seed)
    model = GPT(positions_config(tokenizer.vocab_size, kind))
    cfg = TrainConfig(steps=steps, lr=3e-3, min_lr=3e-4, warmup_steps=steps // 10, log_every=100, progress=progress)
    history = train(model, long_context_batches(tokenizer, POSITIONS_L, POSITIONS_BATCH, seed), cfg, device=device)
    return _round_to_fp16(model), history["seconds"]


def extend_rope_model(rope: GPT, rope_type: str, tokenizer: Tokenizer, steps: int = POSITIONS_FINETUNE_STEPS,
                      seed: int = POSITIONS_SEED, device="cpu", progress=False) -> tuple[GPT, float]:
    """The RoPE model rescaled to 4 L (``rope_type``: linear = PI, ntk, dynamic, yarn; factor 4),
    then fine-tuned at 4 L; (model, seconds). Every rope_type gets the same windows for one seed."""
    torch.manual_seed(seed)
    model = with_rope_scaling(rope, {"rope_type": rope_type, "factor": 4.0}, block_size=4 * POSITIONS_L)
    cfg = TrainConfig(steps=steps, lr=1e-3, min_lr=1e-4, warmup_steps=steps // 10, log_every=50, progress=progress)
    batches = long_context_batches(tokenizer, 4 * POSITIONS_L, POSITIONS_FINETUNE_BATCH, seed + 1)
    history = train(model, batches, cfg, device=device)
    return _round_to_fp16(model), history["seconds"]


def _round_to_fp16(model: GPT) -> GPT:
    # the weights only: a RoPE model's frequencies are a buffer rebuilt in fp32 from the config on load
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    return model


def train_position_models(steps: int = POSITIONS_STEPS, finetune_steps: int = POSITIONS_FINETUNE_STEPS,
                          seed: int = POSITIONS_SEED, out_dir=POSITIONS_DIR, progress=True) -> dict:
    """Train the five position models at L = POSITIONS_L, then extend the RoPE one to 4 L four
    ways (``EXTENDED``: PI, NTK, dynamic NTK, YaRN, factor 4), each by the same short fine-tune at
    4 L from the same start; save each (fp16 weights) with what it measures: perplexity at
    L .. 8 L and pass-key accuracy at L, 2 L, 4 L."""
    tokenizer = course_tokenizer()
    results = {}
    models = {}
    for kind in POSITION_KINDS:
        models[kind], seconds = train_base_model(kind, tokenizer, steps, seed, "cpu", progress)
        results[kind] = _save_position_model(models[kind], tokenizer, position_model_path(kind, out_dir),
                                             {"steps": steps, "seed": seed, "seconds": round(seconds, 1)})
    for name, rope_type in EXTENDED.items():
        model, seconds = extend_rope_model(models["rope"], rope_type, tokenizer, finetune_steps, seed, "cpu", progress)
        results[name] = _save_position_model(model, tokenizer, position_model_path(name, out_dir),
                                             {"steps": finetune_steps, "batch": POSITIONS_FINETUNE_BATCH, "seed": seed,
                                              "seconds": round(seconds, 1), "from": "rope"})
    return results


# the names chapter 04 gives each way of reading 4 L with the RoPE model
UNTRAINED_EXTENSIONS = {"PI": "linear", "NTK": "ntk", "dynamic NTK": "dynamic", "YaRN": "yarn"}
FINETUNED_EXTENSIONS = {"PI + fine-tune": "rope_pi4", "NTK + fine-tune": "rope_ntk4",
                        "dynamic NTK + fine-tune": "rope_dynamic4", "YaRN + fine-tune": "rope_yarn4"}


def extension_variants(rope: GPT, finetuned: dict) -> dict:
    """Chapter 04's ways of reading 4 L: {"extrapolation": rope, "PI": .., "PI + fine-tune": ..}, the
    untrained ones rescaled from ``rope``, the fine-tuned ones from ``finetuned`` {checkpoint name: model}."""
    variants = {"extrapolation": rope}
    variants.update({name: with_rope_scaling(rope, {"rope_type": t, "factor": 4.0}) for name, t in UNTRAINED_EXTENSIONS.items()})
    variants.update({name: finetuned[checkpoint] for name, checkpoint in FINETUNED_EXTENSIONS.items()})
    return variants


def measure_all(base: dict, finetuned: dict, tokenizer: Tokenizer) -> dict:
    """{condition: position_measurements} for the five base models and every extension variant
    (the base RoPE model appears once, as "rope")."""
    out = {kind: position_measurements(base[kind], tokenizer) for kind in POSITION_KINDS}
    for name, model in extension_variants(base["rope"], finetuned).items():
        if name != "extrapolation":
            out[name] = position_measurements(model, tokenizer)
    return out


def position_seed(seed: int, steps: int = POSITIONS_STEPS, finetune_steps: int = POSITIONS_FINETUNE_STEPS,
                  device="cpu") -> dict:
    """Chapter 04's whole recipe from one seed (the five models, the four fine-tunes), measured:
    the seed POSITIONS_SEED gives the shipped checkpoints."""
    tokenizer = course_tokenizer()
    base = {kind: train_base_model(kind, tokenizer, steps, seed, device)[0] for kind in POSITION_KINDS}
    finetuned = {name: extend_rope_model(base["rope"], t, tokenizer, finetune_steps, seed, device)[0]
                 for name, t in EXTENDED.items()}
    return measure_all(base, finetuned, tokenizer)


def measure_shipped(device="cpu") -> dict:
    """``position_seed(POSITIONS_SEED)`` without the training: the same measurements of the shipped checkpoints."""
    models = {name: load_position_model(name, device)[0] for name in POSITION_MODELS}
    tokenizer = course_tokenizer()
    return measure_all(models, models, tokenizer)


def _save_position_model(model: GPT, tokenizer: Tokenizer, path: Path, extra: dict) -> dict:
    report = position_report(model, tokenizer)
    # fp16 on disk, half the size; a copy is halved, so the model keeps its fp32 RoPE frequencies
    save_checkpoint(copy.deepcopy(model).half(), path, tokenizer, extra={**extra, **report})
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=POSITIONS_STEPS, help="training steps of each model at L")
    ap.add_argument("--finetune-steps", type=int, default=POSITIONS_FINETUNE_STEPS,
                    help="steps of each RoPE fine-tune at 4 L")
    ap.add_argument("--seed", type=int, default=POSITIONS_SEED)
    ap.add_argument("--out-dir", type=Path, default=POSITIONS_DIR, help="folder for positions_*.safetensors")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)               # tiny models: one thread is fastest, and the CPU time stays what it says
    t0 = time.perf_counter()
    results = train_position_models(args.steps, args.finetune_steps, args.seed, args.out_dir)
    for name, report in results.items():
        print(f"{name:<11}", "  ".join(f"{k} {'-' if v is None else f'{v:.3g}'}" for k, v in report.items()))
    print(f"{time.perf_counter() - t0:.0f} s wall, {time.process_time():.0f} s CPU")


if __name__ == "__main__":
    main()
