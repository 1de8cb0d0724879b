"""Teaching the course model the formats of Self-Instruct before it generates (LLM-TAP 5.4).

The course model is small and was pretrained on a few simple tasks: shown a Self-Instruct prompt
as it is, it rarely answers in the prompt's format (a new "Task N:" line, a Yes/No, an
"Input: ... Output: ..." pair), and the loop rejects nearly everything it writes. A short
fine-tune on documents in exactly those formats, built from the corpus instruction tasks, fixes
the format and leaves the content to the model.

The prompts and the loop are in ``llmtap.self_instruct``; the generator that samples from the
taught model is ``llmtap.generators.LMGenerator``.
"""
from __future__ import annotations

import random

import torch

from .corpus import INSTRUCTION_TASKS, instruction_example
from .generators import keep_end
from .model import GPT
from .self_instruct import MARKER, YES_NO, Task, classification_prompt, instance_prompt, instruction_prompt
from .tokenizer import Tokenizer
from .train import TrainConfig, completion_batches, train
from .validate import positive_int

CLASSIFICATION_TASKS = ("sentiment", "category")     # corpus tasks whose output is one label of a few


def corpus_tasks(n_records: int = 120, seed: int = 0) -> list[Task]:
    """The corpus instruction records (``llmtap.corpus.instruction_example``: six simple tasks,
    Chinese and English) as Tasks: the records of one instruction become its instances."""
    positive_int(n_records, "n_records")
    rng, by_instruction = random.Random(seed), {}
    for i in range(n_records):
        kind = INSTRUCTION_TASKS[i % len(INSTRUCTION_TASKS)]          # every kind equally often
        r = instruction_example(rng, lang=("zh", "en")[i // len(INSTRUCTION_TASKS) % 2], task=kind)
        task = by_instruction.setdefault(r["instruction"], Task(r["instruction"], [], kind in CLASSIFICATION_TASKS,
                                                                  "corpus", f"corpus_{kind}_{len(by_instruction)}"))
        if (r["input"], r["output"]) not in task.instances:
            task.instances.append((r["input"], r["output"]))
    return list(by_instruction.values())


def format_documents(tasks: list[Task], rng: random.Random, n_documents: int = 600, n_shown: int = 8,
                     n_new: int = 2, n_shots: int = 6) -> list[tuple[str, str]]:
    """(prompt, continuation) pairs in the exact formats of the loop, built from ``tasks``, in turn:

    * an instruction prompt of ``n_shown`` numbered tasks, continued by ``n_new`` more;
    * a classification prompt (``n_shots`` examples), continued by " Yes"/" No" (" 是"/" 否");
    * an instance prompt (2 examples, output-first for a classification task), continued by a
      well-formed answer: " input\nOutput: output\n\n" or " label\nInput: input\n\n".

    The prompt builders are the loop's own, so the formats cannot drift apart."""
    if isinstance(tasks, Task) or not isinstance(tasks, (list, tuple)) or not all(isinstance(t, Task) for t in tasks):
        raise TypeError("tasks must be a list of Task, e.g. corpus_tasks()")
    if not isinstance(rng, random.Random):
        raise TypeError(f"rng must be a random.Random, got {type(rng).__name__}")
    if len({t.instruction for t in tasks}) < 3 or any(not t.instances for t in tasks):
        raise ValueError("need at least 3 different tasks, each with at least one (input, output) instance")
    positive_int(n_documents, "n_documents")
    if n_shown < 1 or n_new < 1 or n_shots < 1:
        raise ValueError(f"n_shown, n_new and n_shots must be >= 1, got {n_shown}, {n_new}, {n_shots}")
    documents = []
    for i in range(n_documents):
        task = rng.choice(tasks)
        if i % 3 == 0:
            documents.append(_instruction_document(task, tasks, rng, n_shown, n_new))
        elif i % 3 == 1:
            documents.append(_classification_document(task, tasks, rng, n_shots))
        else:
            documents.append(_instance_document(task, tasks, rng))
    return documents


def _instruction_document(task: Task, tasks: list[Task], rng: random.Random, n_shown: int, n_new: int) -> tuple:
    """Stage 1: ``n_shown`` numbered instructions (of ``task``'s language when it has enough), then
    ``n_new`` more as the continuation, numbered on."""
    same_lang = [t for t in tasks if t.lang == task.lang]
    lang, pool = (task.lang, same_lang) if len(same_lang) > n_new else ("en", tasks)
    chosen = [t.instruction for t in rng.sample(pool, min(n_shown + n_new, len(pool)))]
    shown, new = chosen[:-n_new], chosen[-n_new:]
    continuation = new[0] + "".join(f"\n{MARKER[lang].format(len(shown) + 2 + j)}{ins}" for j, ins in enumerate(new[1:]))
    return instruction_prompt(shown, lang), continuation + "\n"


def _classification_document(task: Task, tasks: list[Task], rng: random.Random, n_shots: int) -> tuple:
    """Stage 2: is ``task`` a classification task? ``n_shots`` other tasks as examples, then its own answer."""
    others = [t for t in tasks if t is not task]
    shots = rng.sample(others, min(n_shots, len(others)))
    yes, no = YES_NO[task.lang]
    return classification_prompt(task.instruction, shots), " " + (yes if task.is_classification else no)


def _instance_document(task: Task, tasks: list[Task], rng: random.Random) -> tuple:
    """Stage 3: one of ``task``'s instances, in the task's order (output-first for classification)."""
    others = [t for t in tasks if t is not task and t.is_classification == task.is_classification]
    examples = rng.sample(others, min(2, len(others)))
    x, y = rng.choice(task.instances)
    x = x or "(none)"
    answer = f" {y}\nInput: {x}\n\n" if task.is_classification else f" {x}\nOutput: {y}\n\n"
    return instance_prompt(task.instruction, examples, task.is_classification), answer


def teach_formats(model, tokenizer, tasks: list[Task], steps: int = 40, batch_size: int = 8, lr: float = 3e-3,
                  n_documents: int = 600, n_shown: int = 4, n_shots: int = 3, seed: int = 0, device=None) -> dict:
    """A short fine-tune of the course model on ``format_documents(tasks)``, the loss on the
    continuation only (``llmtap.train.completion_batches``). Fewer lines shown than the loop shows
    (``n_shown``, ``n_shots``) keep the documents short and the steps cheap; the format is the same.
    Prompts longer than the context keep their end, as ``LMGenerator`` does. ``model`` changes in
    place; returns ``train``'s history."""
    if not isinstance(model, GPT) or not isinstance(tokenizer, Tokenizer):
        raise TypeError("teach_formats takes the course GPT and its Tokenizer, e.g. llmtap.load_course_model()")
    positive_int(steps, "steps")
    positive_int(batch_size, "batch_size")
    documents = format_documents(tasks, random.Random(seed), n_documents, n_shown, n_shots=n_shots)
    n_tokens = lambda text: len(tokenizer.encode(text, bos=True))
    pairs = []
    for prompt, continuation in documents:
        budget = model.config.block_size + 1 - len(tokenizer.encode(continuation))   # x drops the last token
        pairs.append((keep_end(prompt, n_tokens, budget), continuation))
    cfg = TrainConfig(steps=steps, lr=lr, min_lr=lr / 10, warmup_steps=min(10, steps // 5), log_every=max(1, steps // 10),
                      progress=False)
    torch.manual_seed(seed)
    return train(model, completion_batches(tokenizer, pairs, batch_size, seed), cfg, device=device)

