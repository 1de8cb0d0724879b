"""Pretrain the course model on the synthetic bilingual corpus, and report what it can do.

    python -m llmtap.pretrain            # reproduces llmtap/data/course_model.safetensors
    python -m llmtap.pretrain --report   # the capability report of the shipped checkpoint

Deterministic on a CPU: the corpus stream and the initial weights come from one seed.
"""
from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path

import torch

from . import corpus, prompting
from .model import GPT, GPTConfig
from .tokenizer import Tokenizer
from .train import TrainConfig, load_checkpoint, save_checkpoint, train

COURSE_MODEL_PATH = Path(__file__).parent / "data" / "course_model.safetensors"
BLOCK_SIZE = 256
BATCH_SIZE = 32
SEED = 1337


def course_tokenizer() -> Tokenizer:
    return Tokenizer.from_text(corpus.alphabet())


def course_config(vocab_size: int, **overrides) -> GPTConfig:
    settings = dict(vocab_size=vocab_size, block_size=BLOCK_SIZE, n_layer=4, n_head=4, n_embd=128, position="rope")
    settings.update(overrides)
    return GPTConfig(**settings)


def packed_batches(tokenizer: Tokenizer, block_size: int, batch_size: int, next_document):
    """Endless (x, y) batches: each row is <bos> doc <eos> doc <eos> ... cut to block_size + 1
    tokens, the documents coming from ``next_document()``; y is x shifted by one token."""
    while True:
        rows = []
        for _ in range(batch_size):
            ids = [tokenizer.bos_id]
            while len(ids) < block_size + 1:
                ids += tokenizer.encode(next_document(), eos=True)
            rows.append(ids[:block_size + 1])
        t = torch.tensor(rows)
        yield t[:, :-1], t[:, 1:]


def corpus_batches(tokenizer: Tokenizer, block_size: int, batch_size: int, seed: int, mixture=corpus.MIXTURE):
    """Endless (x, y) batches of course-corpus documents packed end to end."""
    rng = random.Random(seed)
    return packed_batches(tokenizer, block_size, batch_size, lambda: corpus.pretraining_document(rng, mixture))


# ----------------------------------------------------------------------------- capability report
def sentiment_accuracy(model, tokenizer, lang: str, n: int = 200, seed: int = 0, template: str | None = None) -> float:
    """Zero-shot prompt classification on held-out event sentences: fill each answer of Z into
    the template, keep the most likely one, map it to positive / neutral / negative."""
    rng = random.Random(seed)
    events = [corpus.sample_event(rng, lang, "test") for _ in range(n)]
    classifier = prompting.PromptClassifier(prompting.CausalLM(model, tokenizer),
                                            template or corpus.TAUGHT_TEMPLATES[lang][0],
                                            corpus.sentiment_verbalizer(lang))
    return classifier.accuracy([e.text for e in events], [e.label for e in events])


def icl_accuracy(model, tokenizer, k: int, n: int = 200, seed: int = 0, query_split: str = "train",
                 lang: str | None = None) -> float:
    """In-context accuracy on fresh random mappings: k class-balanced demonstrations, 3 labels."""
    rng = random.Random(seed)
    tasks = [corpus.sample_mapping(rng, k, lang or corpus.LANGS[i % 2], query_split) for i in range(n)]
    return prompting.icl_accuracy(prompting.CausalLM(model, tokenizer), tasks)


def capability_report(model, tokenizer, n: int = 300, seed: int = 0) -> dict:
    model.eval()
    report = {}
    for lang in corpus.LANGS:     # every template the corpus teaches, then their mean
        per_template = [sentiment_accuracy(model, tokenizer, lang, n, seed, t) for t in corpus.TAUGHT_TEMPLATES[lang]]
        report.update({f"sentiment_{lang}_t{i}": acc for i, acc in enumerate(per_template)})
        report[f"sentiment_{lang}"] = sum(per_template) / len(per_template)
    for k in (0, 1, 2, 4, 8):
        report[f"icl_k{k}"] = icl_accuracy(model, tokenizer, k, n, seed)
    report["icl_k4_heldout_items"] = icl_accuracy(model, tokenizer, 4, n, seed, query_split="test")
    return report


def format_report(report: dict) -> str:
    """The report as text; sentiment_xx_tN is taught template N of corpus.TAUGHT_TEMPLATES[xx]."""
    lines = ["capability report (held-out data, 3 classes, chance = 33%)"]
    lines += [f"  {name:<22} {value:6.1%}" for name, value in report.items()]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- chapter 04: position models
# Five tiny models that differ only in their position encoding, trained on windows of
# POSITIONS_L tokens, then asked about texts up to 8 L long; and the RoPE one extended to 4 L by
# position interpolation and a short fine-tune.
POSITIONS_L = 64
POSITIONS_SEED = 4
POSITIONS_STEPS = 4000
POSITIONS_BATCH = 16
POSITIONS_FINETUNE_STEPS = 150
POSITIONS_PASSKEY_SHARE = 0.65    # most of the stream is pass-key documents: 4000 steps then suffice for retrieval
POSITIONS_REPEAT_SHARE = 0.2
POSITIONS_DIR = Path(__file__).parent / "data"
POSITION_MODELS = ("learned", "sinusoidal", "rope", "alibi", "none", "rope_pi4")


def position_model_path(name: str) -> Path:
    if name not in POSITION_MODELS:
        raise ValueError(f"unknown position model {name!r}; choose one of {POSITION_MODELS}")
    return POSITIONS_DIR / f"positions_{name}.safetensors"


def load_position_model(name: str, device=None):
    """(model, tokenizer, info) of a shipped chapter 04 model; info holds what it measured when trained."""
    import json
    from .train import read_checkpoint
    model, tokenizer = load_checkpoint(position_model_path(name), device)
    info = json.loads(read_checkpoint(position_model_path(name))[1].get("extra", "{}"))
    return model, tokenizer, info


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
        return corpus.pretraining_document(rng)

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
    # after a row's last token cannot change that row's predictions
    width = max(len(p) + len(k) for p, k in rows) - 1
    x = torch.full((n, width), tokenizer.pad_id, dtype=torch.long)
    where = torch.zeros(n, len(rows[0][1]), dtype=torch.long)      # the positions predicting the key
    keys = torch.tensor([k for _, k in rows])
    for i, (p, k) in enumerate(rows):
        x[i, :len(p) + len(k) - 1] = torch.tensor(p + k[:-1])
        where[i] = torch.arange(len(p) - 1, len(p) - 1 + len(k))
    logits, _ = model(x.to(model.device))
    guess = logits.argmax(-1).gather(1, where.to(model.device))     # greedy prediction of each key digit
    correct = (guess == keys.to(model.device)).all(dim=1).sum()
    return correct.item() / n


def train_position_models(steps: int = POSITIONS_STEPS, finetune_steps: int = POSITIONS_FINETUNE_STEPS,
                          seed: int = POSITIONS_SEED, out_dir=POSITIONS_DIR, progress=True) -> dict:
    """Train the five position models at L = POSITIONS_L, then extend the RoPE one to 4 L by
    position interpolation (linear factor 4) and a short fine-tune at 4 L; save each (fp16 weights)
    with what it measures: perplexity at L .. 8 L and pass-key accuracy at L, 2 L, 4 L."""
    tokenizer = course_tokenizer()
    L = POSITIONS_L
    out_dir = Path(out_dir)
    results = {}
    models = {}
    for kind in POSITION_MODELS[:-1]:
        torch.manual_seed(seed)
        model = GPT(positions_config(tokenizer.vocab_size, kind))
        cfg = TrainConfig(steps=steps, lr=3e-3, min_lr=3e-4, warmup_steps=steps // 10, log_every=100, progress=progress)
        history = train(model, long_context_batches(tokenizer, L, POSITIONS_BATCH, seed), cfg, device="cpu")
        models[kind] = model
        results[kind] = _save_position_model(model, tokenizer, out_dir / f"positions_{kind}.safetensors",
                                             {"steps": steps, "seed": seed, "seconds": round(history["seconds"], 1)})
    torch.manual_seed(seed)
    model = with_rope_scaling(models["rope"], {"rope_type": "linear", "factor": 4.0}, block_size=4 * L)
    cfg = TrainConfig(steps=finetune_steps, lr=1e-3, min_lr=1e-4, warmup_steps=finetune_steps // 10,
                      log_every=50, progress=progress)
    history = train(model, long_context_batches(tokenizer, 4 * L, POSITIONS_BATCH // 4, seed + 1), cfg, device="cpu")
    results["rope_pi4"] = _save_position_model(model, tokenizer, out_dir / "positions_rope_pi4.safetensors",
                                               {"steps": finetune_steps, "seed": seed,
                                                "seconds": round(history["seconds"], 1), "from": "rope"})
    return results


def position_report(model: GPT, tokenizer: Tokenizer) -> dict:
    """Perplexity at L, 2 L, 4 L, 8 L and pass-key accuracy at L, 2 L, 4 L (mean over 5 depths)."""
    L = POSITIONS_L
    report = {f"ppl_{m}L": perplexity_at_length(model, tokenizer, m * L) for m in (1, 2, 4, 8)}
    for m in (1, 2, 4):
        accs = [passkey_accuracy(model, tokenizer, m * L, depth) for depth in (0.0, 0.25, 0.5, 0.75, 1.0)]
        report[f"passkey_{m}L"] = None if accs[0] is None else sum(accs) / len(accs)
    return report


def _save_position_model(model: GPT, tokenizer: Tokenizer, path: Path, extra: dict) -> dict:
    model.cpu().half()                     # fp16 on disk: half the size; measured after the rounding
    model.float()
    report = position_report(model, tokenizer)
    save_checkpoint(model.half(), path, tokenizer, extra={**extra, **report})
    model.float()
    return report


# ----------------------------------------------------------------------------- entry point
def pretrain(steps: int = 2400, seed: int = SEED, out=COURSE_MODEL_PATH, device=None, progress=True,
             **model_overrides) -> tuple[GPT, Tokenizer, dict]:
    torch.manual_seed(seed)
    tokenizer = course_tokenizer()
    model = GPT(course_config(tokenizer.vocab_size, **model_overrides))
    cfg = TrainConfig(steps=steps, lr=3e-3, min_lr=3e-4, warmup_steps=min(200, steps // 10),
                      log_every=100, progress=progress)
    history = train(model, corpus_batches(tokenizer, model.config.block_size, BATCH_SIZE, seed), cfg,
                    device=device)
    model.cpu()
    if out is not None:
        save_checkpoint(model, out, tokenizer, extra={"steps": steps, "seed": seed,
                                                       "seconds": round(history["seconds"], 1)})
    return model, tokenizer, history


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--report", action="store_true", help="only print the capability report of --out")
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--out", type=Path, default=COURSE_MODEL_PATH)
    ap.add_argument("--device", default=None)
    ap.add_argument("--n", type=int, default=300, help="report: examples per measurement")
    ap.add_argument("--positions", action="store_true",
                    help="train the chapter 04 position models (llmtap/data/positions_*.safetensors) instead")
    ap.add_argument("--position-steps", type=int, default=POSITIONS_STEPS, help="--positions: steps per model")
    ap.add_argument("--finetune-steps", type=int, default=POSITIONS_FINETUNE_STEPS,
                    help="--positions: steps of the RoPE 4L fine-tune")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.positions:                     # one thread: tiny models, and the CPU time stays what it says
        torch.set_num_threads(1)
        t0 = time.perf_counter()
        results = train_position_models(args.position_steps, args.finetune_steps,
                                        out_dir=args.out.parent if args.out != COURSE_MODEL_PATH else POSITIONS_DIR)
        for name, report in results.items():
            print(f"{name:<11}", "  ".join(f"{k} {'-' if v is None else f'{v:.3g}'}" for k, v in report.items()))
        print(f"{time.perf_counter() - t0:.0f} s wall, {time.process_time():.0f} s CPU")
        return
    if not args.report:
        t0 = time.perf_counter()
        model, tokenizer, history = pretrain(args.steps, args.seed, args.out, args.device)
        print(f"trained {model.num_params():,} parameters for {args.steps} steps in "
              f"{time.perf_counter() - t0:.0f} s; final loss {history['loss'][-1]:.3f}; saved {args.out}")
    else:
        model, tokenizer = load_checkpoint(args.out)
    print(format_report(capability_report(model, tokenizer, args.n)))


if __name__ == "__main__":
    main()
