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
import re

import torch

from .corpus import ALL_EVENTS, INSTRUCTION_TASKS, instruction_example, level_to_label
from .generators import keep_end
from .model import GPT
from .self_instruct import (MARKER, YES_NO, SelfInstruct, Task, classification_prompt, identify_classification,
                            instance_prompt, instruction_prompt, load_seed_tasks)
from .tokenizer import Tokenizer
from .train import TrainConfig, completion_batches, train
from .validate import positive_int
from .world import CATEGORIES, INSTRUCTION_PHRASINGS, LABEL_NAMES_ZH, LIST_SEPARATOR

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



# ----------------------------------------------------------------------------- is a generated task right?
# The course world knows every answer, so a task the course model generates can be checked: is
# its instruction one of the corpus tasks (in any phrasing), and does each output answer it?
def _pattern(wording: str) -> re.Pattern:
    """A wording with {n}, {a}, {b}, {name} as a regular expression that captures them."""
    parts = re.split(r"\{(\w+)\}", wording)
    regex = "".join(re.escape(part) if i % 2 == 0 else (rf"(?P<{part}>\d+)" if part != "name" else r"(?P<name>.+?)")
                    for i, part in enumerate(parts))
    return re.compile(regex + r"$")


_PATTERNS = [(task, lang, _pattern(w)) for task, by_lang in INSTRUCTION_PHRASINGS.items()
             for lang, wordings in by_lang.items() for w in wordings]
_GROUP_OF = {word: (name_zh, name_en) for (name_zh, name_en), items in CATEGORIES.items() for it in items for word in it}
_TWIN = {word: twin for items in CATEGORIES.values() for z, e in items for word, twin in ((z, e), (e, z))}
_GROUPS = {name: items for (name_zh, name_en), items in CATEGORIES.items() for name in (name_zh, name_en)}


def recognise_task(instruction: str):
    """(task, lang, filled values) when the instruction is one of the corpus tasks in one of its
    phrasings ('列举3种水果。' -> ('list', 'zh', {'n': '3', 'name': '水果'})), else None."""
    text = " ".join(instruction.split())
    for task, lang, pattern in _PATTERNS:
        m = pattern.match(text)
        if m:
            return task, lang, m.groupdict()
    return None


def _feeling(sentence: str):
    """The label of the event written in an event sentence (the longest event text it holds)."""
    found = [(len(text), level) for zh, en, level in ALL_EVENTS for text in (zh, en) if text in sentence]
    return level_to_label(max(found)[1]) if found else None


def check_world_instance(task: str, lang: str, values: dict, x: str, y: str) -> str | None:
    """Why the instance (x, y) does not answer the corpus task, or None when it does."""
    x, y = x.strip(), y.strip()
    if task == "sentiment":
        label = _feeling(x)
        if label is None:
            return "the input is not an event sentence"
        return None if y == (LABEL_NAMES_ZH[label] if lang == "zh" else label) else "wrong feeling"
    if task == "category":
        group = _GROUP_OF.get(x)
        if group is None:
            return "the input is not a word of the course"
        return None if y == group[0 if lang == "zh" else 1] else "wrong group"
    if task == "translate":
        if x not in _TWIN:
            return "the input is not a word of the course"
        return None if y == _TWIN[x] else "wrong translation"
    if task == "add":
        return None if not x and y == str(int(values["a"]) + int(values["b"])) else "wrong sum"
    if task == "list":
        items = y.split(LIST_SEPARATOR[lang].strip())
        items = [it.strip() for it in items]
        group = _GROUPS.get(values["name"], ())
        words = {w for it in group for w in it}
        ok = not x and len(items) == int(values["n"]) == len(set(items)) and all(it in words for it in items)
        return None if ok else "not a list of that group"
    return None if x and y == x[::-1] else "not the word backwards"       # task == "reverse"


def check_world_task(task: Task) -> str | None:
    """None when a generated task is well-formed in the course world: its instruction is a corpus
    task (in any phrasing) and every instance answers it; otherwise why not."""
    found = recognise_task(task.instruction)
    if found is None:
        return "not a task of the course world"
    if not task.instances:
        return "no instance"
    for x, y in task.instances:
        why = check_world_instance(*found, x, y)
        if why:
            return why
    return None


def well_formed_share(tasks: list[Task]) -> tuple[float, dict]:
    """(share of ``tasks`` that ``check_world_task`` finds well formed, {why not: count})."""
    verdicts = [check_world_task(t) for t in tasks]
    why_not = {}
    for v in verdicts:
        if v is not None:
            why_not[v] = why_not.get(v, 0) + 1
    return (sum(v is None for v in verdicts) / len(verdicts) if verdicts else 0.0), why_not


# every count of a course-style run, in pipeline order (a run reports only the reasons it met)
STAGES = ("prompts", "instructions generated", "rejected: too short", "rejected: too long", "rejected: keyword",
          "rejected: starts with punctuation", "rejected: starts with a non-text character",
          "rejected: unreadable characters", "rejected: duplicate", "rejected: similar", "instructions passing filters",
          "classification: yes", "classification: no", "classification: unclear", "instances generated",
          "instance rejected: empty output", "instance rejected: input equals output",
          "instance rejected: duplicate instance", "instance rejected: same input, different output",
          "rejected: no instance parsed", "rejected: no valid instance", "tasks kept")


def measure_self_instruct(generator, rounds: int = 40, seed: int = 0, max_new_tokens: int = 48) -> dict:
    """What a Self-Instruct run with ``generator`` gives, in numbers: the loop's counts with the
    filters ("filtered: <stage>") and without ("unfiltered: <stage>"), the well-formed share of
    both pools, and stage 2's accuracy on the 43 corpus tasks and the seed tasks, whose types are
    known (an unclear answer counts as wrong)."""
    positive_int(rounds, "rounds")
    out = {}
    for name, filters in (("filtered", True), ("unfiltered", False)):
        si = SelfInstruct(generator, seed=seed, max_new_tokens=max_new_tokens, filters=filters)
        si.run(rounds)
        out.update({f"{name}: {stage}": float(si.counts.get(stage, 0)) for stage in STAGES})
        out[f"{name}: well-formed share"] = well_formed_share(si.kept)[0]
    seeds = load_seed_tasks()
    shots = random.Random(seed).sample(seeds, 6)
    for name, tasks in (("corpus tasks", corpus_tasks(120, seed=0)), ("seed tasks", seeds)):
        said = identify_classification(generator, tasks, shots, seed)
        out[f"classification identified, {name}"] = sum(s == t.is_classification for s, t in zip(said, tasks)) / len(tasks)
    return out
