"""Pretrain the course model on the synthetic bilingual corpus, and report what it can do.

    python -m llmtap.pretrain            # reproduces llmtap/data/course_model.safetensors
    python -m llmtap.pretrain --report   # the capability report of the shipped checkpoint

Deterministic on a CPU: the corpus stream and the initial weights come from one seed.
Chapter 04's small position models are built the same way, in ``position_models.py``.
"""
from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from . import corpus
from .checkpoints import COURSE_MODEL_PATH, load_checkpoint, save_checkpoint
from .device import cpu_threads
from .icl import icl_accuracy
from .lm import CourseLM
from .model import GPT, GPTConfig
from .prompting import PromptClassifier
from .tokenizer import Tokenizer
from .train import TrainConfig, train
from .world import UNTAUGHT_TEMPLATES

BLOCK_SIZE = 256
BATCH_SIZE = 32
SEED = 1337
STEPS = 3000    # about 37 minutes on 2 CPU threads
THREADS = 2     # CPU threads of pretraining: the same count gives the same weights, bit for bit


def course_tokenizer() -> Tokenizer:
    return Tokenizer.from_text(corpus.alphabet(), corpus.words())


def course_config(vocab_size: int, **overrides) -> GPTConfig:
    settings = dict(vocab_size=vocab_size, block_size=BLOCK_SIZE, n_layer=5, n_head=4, n_embd=112, position="rope")
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
def sentiment_accuracy(model, tokenizer, lang: str, n: int = 200, seed: int = 0, template: str | None = None,
                       split: str = "test") -> float:
    """Zero-shot prompt classification of n event sentences of a split ("test": events pretraining
    never wrote; "seen": known events in new settings): fill each answer of Z into the template,
    keep the most likely one, map it to positive / neutral / negative."""
    rng = random.Random(seed)
    events = [corpus.sample_event(rng, lang, split) for _ in range(n)]
    classifier = PromptClassifier(CourseLM(model, tokenizer), template or corpus.TAUGHT_TEMPLATES[lang][0],
                                  corpus.sentiment_verbalizer(lang))
    return classifier.accuracy([e.text for e in events], [e.label for e in events])


def mapping_accuracy(model, tokenizer, k: int, n: int = 200, seed: int = 0, query_split: str = "train",
                     lang: str | None = None, kind: str = "category") -> float:
    """In-context accuracy on n fresh random mappings (k class-balanced demonstrations, 3 labels,
    languages alternating unless ``lang`` is given): a mapping never seen in training can only be
    read off the demonstrations."""
    rng = random.Random(seed)
    tasks = [corpus.sample_mapping(rng, k, lang or corpus.LANGS[i % 2], query_split, kind=kind) for i in range(n)]
    return icl_accuracy(CourseLM(model, tokenizer), tasks)


def fact_accuracy(model, tokenizer, fact: str, lang: str) -> float:
    """Share of the items whose fact the model completes exactly, greedily, from a plain prompt
    (``corpus.fact_probes``): '苹果是一种' -> '水果。', 'The Chinese for apple is ' -> '苹果.'."""
    prompts, answers = zip(*corpus.fact_probes(fact, lang))
    lm = CourseLM(model, tokenizer)
    written = lm.generate_many(list(prompts), max_new_tokens=max(len(lm.encode(a)) for a in answers))
    return sum(w.startswith(a) for w, a in zip(written, answers)) / len(answers)


def capability_report(model, tokenizer, n: int = 300, seed: int = 0) -> dict:
    """What the model can do before any fine-tuning, each number on data pretraining never wrote:

    * ``sentiment_xx_tN``: taught template N on unseen events; ``sentiment_xx`` their mean;
      ``sentiment_xx_seen`` the same on seen events in new settings; ``_untaught`` one template
      the corpus never writes;
    * ``icl_kK``: fresh random mappings of words with K demonstrations; ``icl_k4_heldout_xx``
      with query words that no mapping sequence holds; ``icl_sentiment_k4`` of unseen event
      sentences;
    * ``fact_*``: facts completed from a plain prompt, for every item (what chapter 05's
      instruction tasks ask for).
    """
    model.eval()
    report = {}
    for lang in corpus.LANGS:
        templates = corpus.TAUGHT_TEMPLATES[lang]
        per_template = [sentiment_accuracy(model, tokenizer, lang, n, seed, t) for t in templates]
        report.update({f"sentiment_{lang}_t{i}": acc for i, acc in enumerate(per_template)})
        report[f"sentiment_{lang}"] = sum(per_template) / len(per_template)
        report[f"sentiment_{lang}_seen"] = sum(sentiment_accuracy(model, tokenizer, lang, n, seed, t, "seen")
                                               for t in templates) / len(templates)
        report[f"sentiment_{lang}_untaught"] = sentiment_accuracy(model, tokenizer, lang, n, seed,
                                                                  UNTAUGHT_TEMPLATES[lang])
    for k in (0, 1, 2, 4, 8):
        report[f"icl_k{k}"] = mapping_accuracy(model, tokenizer, k, n, seed)
    for lang in corpus.LANGS:
        report[f"icl_k4_heldout_{lang}"] = mapping_accuracy(model, tokenizer, 4, n, seed, "test", lang)
    report["icl_sentiment_k4"] = mapping_accuracy(model, tokenizer, 4, n, seed, "test", kind="sentiment")
    for fact in corpus.FACTS:
        for lang in corpus.LANGS:
            report[f"fact_{fact}_{lang}"] = fact_accuracy(model, tokenizer, fact, lang)
    return report


def format_report(report: dict) -> str:
    """The report as text; sentiment_xx_tN is taught template N of corpus.TAUGHT_TEMPLATES[xx]."""
    lines = ["capability report (held-out data, 3 classes, chance = 33%)"]
    lines += [f"  {name:<22} {value:6.1%}" for name, value in report.items()]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- entry point
def pretrain(steps: int = STEPS, seed: int = SEED, out=COURSE_MODEL_PATH, device=None, progress=True,
             threads: int = THREADS, **model_overrides) -> tuple[GPT, Tokenizer, dict]:
    torch.manual_seed(seed)
    tokenizer = course_tokenizer()
    model = GPT(course_config(tokenizer.vocab_size, **model_overrides))
    cfg = TrainConfig(steps=steps, lr=3e-3, min_lr=3e-4, warmup_steps=min(200, steps // 10),
                      log_every=100, progress=progress)
    with cpu_threads(threads, device):      # the thread count changes a CPU's sums in the last bits
        history = train(model, corpus_batches(tokenizer, model.config.block_size, BATCH_SIZE, seed), cfg,
                        device=device)
    model.cpu()
    if out is not None:
        save_checkpoint(model, out, tokenizer, extra={"steps": steps, "seed": seed, "torch": torch.__version__,
                                                       "threads": threads,
                                                       "seconds": round(history["seconds"], 1)})
    return model, tokenizer, history


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--report", action="store_true", help="only print the capability report of --out")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--out", type=Path, default=COURSE_MODEL_PATH)
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=THREADS,
                    help=f"CPU threads (default {THREADS}: another count trains slightly different weights)")
    ap.add_argument("--n", type=int, default=300, help="report: examples per measurement")
    args = ap.parse_args(argv)
    if not args.report:
        t0 = time.perf_counter()
        model, tokenizer, history = pretrain(args.steps, args.seed, args.out, args.device, threads=args.threads)
        print(f"trained {model.num_params():,} parameters for {args.steps} steps in "
              f"{time.perf_counter() - t0:.0f} s; final loss {history['loss'][-1]:.3f}; saved {args.out}")
    else:
        model, tokenizer = load_checkpoint(args.out)
    print(format_report(capability_report(model, tokenizer, args.n)))


if __name__ == "__main__":
    main()
