"""Self-Instruct in the course world: seed tasks, a taught generator, and a check of every task (LLM-TAP 5.4).

The course model is small and was pretrained on a few simple tasks: shown a Self-Instruct prompt
as it is, it rarely answers in the prompt's format (a new "Task N:" line, a Yes/No, an
"Input: ... Output: ..." pair), and the loop rejects nearly everything it writes. A fine-tune on
documents in exactly those formats, built from the world's tasks (``corpus_tasks``), fixes the
format and leaves the content to the model. The shipped taught generator (``taught_generator``)
is that fine-tune run with ``TEACH_RECIPE``.

Because the synthetic world knows every answer, each task the loop keeps can be checked
(``check_world_task``), and ``measure_self_instruct`` reports the loop in numbers.

The prompts and the loop are in ``llmtap.self_instruct``; the generator that samples from the
taught model is ``llmtap.generators.LMGenerator``.
"""
from __future__ import annotations

import argparse
import random
import re
import time
from pathlib import Path

import torch

from .checkpoints import load_checkpoint, load_course_model, save_checkpoint
from .corpus import ALL_EVENTS, CATEGORY_NAMES, instruction_example, level_to_label
from .generators import LMGenerator, keep_end
from .lm import CourseLM
from .model import GPT
from .self_instruct import (MARKER, YES_NO, FilterConfig, SelfInstruct, Task, balanced_shots, classification_prompt,
                            identify_classification, instance_prompt, instruction_prompt, load_seed_tasks,
                            parse_instances)
from .tokenizer import Tokenizer
from .train import TrainConfig, completion_batches, train
from .validate import one_of, positive_int
from .world import CATEGORIES, INSTRUCTION_PHRASINGS, LABEL_NAMES_ZH, LIST_SEPARATOR, SUM_PHRASES


# Self-Instruct's world: the corpus tasks the course model can do, and one more classification
# task. The corpus's two classification tasks (feelings, groups) have fixed wordings, so any copy
# the model writes is a duplicate of a seed task; "choose" names its two classes in the
# instruction ('这个词属于水果还是动物？'), so new classification tasks can exist. Writing a word
# backwards is left out of the seeds: the course model cannot spell its whole-word tokens.
CHOICE_PHRASINGS = {"zh": ("这个词属于{g1}还是{g2}？", "这个词是{g1}还是{g2}？",
                           "判断这个词是{g1}还是{g2}。"),
                    "en": ("Which group is this word in: {g1} or {g2}?", "Is this word a kind of {g1} or of {g2}?",
                           "Say if this word is a kind of {g1} or of {g2}.")}
WORLD_TASKS = ("sentiment", "category", "translate", "list", "add", "choose")
CLASSIFICATION_TASKS = ("sentiment", "category", "choose")     # the output is one label of a few


def choice_example(rng: random.Random, lang: str, phrasing="train") -> dict:
    """One record of the "choose" task: a course word, and two groups of which one is its own."""
    side = 0 if lang == "zh" else 1
    own, other = rng.sample(CATEGORY_NAMES, 2)
    word = rng.choice(CATEGORIES[own])[side]
    g1, g2 = (own, other) if rng.random() < 0.5 else (other, own)
    wordings = CHOICE_PHRASINGS[lang]
    wording = rng.choice(wordings[:-1]) if phrasing == "train" else wordings[-1]
    return {"instruction": wording.format(g1=g1[side], g2=g2[side]), "input": word, "output": own[side]}


def corpus_tasks(n_records: int = 120, seed: int = 0, phrasing: str = "train") -> list[Task]:
    """The world's tasks as Self-Instruct Tasks, from ``n_records`` records (``WORLD_TASKS`` in
    turn, Chinese and English in turn): the records of one instruction become its instances.
    ``phrasing``: "train" draws each wording among all but the last of its task, "held out" takes
    the last (to test stage 2 on wordings the teaching never showed)."""
    positive_int(n_records, "n_records")
    if phrasing not in ("train", "held out"):
        raise ValueError(f"phrasing must be 'train' or 'held out', got {phrasing!r}")
    rng, by_instruction = random.Random(seed), {}
    for i in range(n_records):
        kind = WORLD_TASKS[i % len(WORLD_TASKS)]                  # every kind equally often
        lang = ("zh", "en")[i // len(WORLD_TASKS) % 2]
        r = (choice_example(rng, lang, phrasing) if kind == "choose"
             else instruction_example(rng, lang=lang, task=kind, phrasing=phrasing))
        task = by_instruction.setdefault(r["instruction"], Task(r["instruction"], [], kind in CLASSIFICATION_TASKS,
                                                                  "corpus", f"corpus_{kind}_{len(by_instruction)}"))
        if (r["input"], r["output"]) not in task.instances:
            task.instances.append((r["input"], r["output"]))
    return list(by_instruction.values())


def _task_list(tasks, name: str) -> list[Task]:
    # a single Task or a string is the usual mistake: say what is expected
    if isinstance(tasks, Task) or not isinstance(tasks, (list, tuple)) or not all(isinstance(t, Task) for t in tasks):
        raise TypeError(f"{name} must be a list of Task, e.g. corpus_tasks()")
    return tasks


def format_documents(tasks: list[Task], rng: random.Random, n_documents: int = 600, n_shown: int = 8,
                     n_new: int = 2, n_shots: int = 6) -> list[tuple[str, str]]:
    """(prompt, continuation) pairs in the exact formats of the loop, built from ``tasks``, in
    turn (``DOCUMENT_MIX``):

    * an instruction prompt of ``n_shown`` numbered tasks, continued by ``n_new`` more;
    * a classification prompt (``n_shots`` examples), continued by " Yes"/" No" (" 是"/" 不是");
    * an instance prompt (2 examples, output-first for a classification task), continued by a
      well-formed answer: " input\nOutput: output\n\n" or " label\nInput: input\n\n".

    The prompt builders are the loop's own, so the formats cannot drift apart."""
    _task_list(tasks, "tasks")
    if not isinstance(rng, random.Random):
        raise TypeError(f"rng must be a random.Random, got {type(rng).__name__}")
    if len({t.instruction for t in tasks}) < 3 or any(not t.instances for t in tasks):
        raise ValueError("need at least 3 different tasks, each with at least one (input, output) instance")
    positive_int(n_documents, "n_documents")
    if n_shown < 1 or n_new < 1 or n_shots < 1:
        raise ValueError(f"n_shown, n_new and n_shots must be >= 1, got {n_shown}, {n_new}, {n_shots}")
    documents = []
    for i in range(n_documents):
        task, kind = rng.choice(tasks), DOCUMENT_MIX[i % len(DOCUMENT_MIX)]
        if kind == "instruction":
            documents.append(_instruction_document(task, tasks, rng, n_shown, n_new))
        elif kind == "classification":
            documents.append(_classification_document(task, tasks, rng, n_shots))
        else:
            documents.append(_instance_document(task, tasks, rng))
    return documents


# the kinds of document in turn: instances twice, since their answers (a sum, a list) are the hard part
DOCUMENT_MIX = ("instruction", "classification", "instance", "instance")


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
    """Stage 2: is ``task`` a classification task? ``n_shots`` other tasks of its language (as the
    loop shows them) as examples, then its own answer."""
    others = [t for t in tasks if t is not task and t.lang == task.lang] or [t for t in tasks if t is not task]
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
        if budget >= 8:                  # a continuation that leaves no room for its prompt is left out
            pairs.append((keep_end(prompt, n_tokens, budget), continuation))
    if not pairs:
        raise ValueError(f"no format document fits the context of {model.config.block_size} tokens; "
                         f"use a model with a longer context")
    cfg = TrainConfig(steps=steps, lr=lr, min_lr=lr / 10, warmup_steps=min(10, steps // 5), log_every=max(1, steps // 10),
                      progress=False)
    torch.manual_seed(seed)
    return train(model, completion_batches(tokenizer, pairs, batch_size, seed), cfg, device=device)



# The shipped taught generator: the course model after TEACH_RECIPE, fp16 on disk. A short live
# teaching (chapter 05) shows the loss fall; the long one is what the loop runs with. Why 6000
# records: every sum is a task of its own, so the records decide how many sums the instance
# documents show. From 600 records (about 100 sums) the generator learnt the formats and got 3 of
# 30 sums right in the loop's prompt; from 6000 (404 of the 441 sums) it also answers the sums it
# was never shown (``sum_accuracy(..., not_in=...)``).
GENERATOR_PATH = Path(__file__).parent / "data" / "self_instruct_generator.safetensors"
TEACH_RECIPE = dict(records=6000, tasks_seed=1, steps=1000, batch_size=16, lr=1e-3, n_documents=16000, seed=0)


def teach_course_model(device=None, **overrides) -> tuple:
    """(model, tokenizer, history): the course model taught the formats with ``TEACH_RECIPE``
    (``overrides`` change any of it) on ``corpus_tasks(records, tasks_seed)``, the training
    wordings only: the last wording of each task stays unseen, to test stage 2 on."""
    recipe = {**TEACH_RECIPE, **overrides}
    unknown = set(recipe) - set(TEACH_RECIPE)
    if unknown:
        raise ValueError(f"unknown recipe keys {sorted(unknown)}; the recipe has {sorted(TEACH_RECIPE)}")
    model, tokenizer = load_course_model(device)
    history = teach_formats(model, tokenizer, corpus_tasks(recipe["records"], recipe["tasks_seed"]),
                            steps=recipe["steps"], batch_size=recipe["batch_size"], lr=recipe["lr"],
                            n_documents=recipe["n_documents"], seed=recipe["seed"], device=device)
    return model, tokenizer, history


def load_taught_model(device=None) -> tuple:
    """(model, tokenizer) of the shipped taught generator (``python -m llmtap.teach_formats`` rebuilds it)."""
    if not GENERATOR_PATH.is_file():
        raise FileNotFoundError(f"the taught generator is missing at {GENERATOR_PATH}; "
                                f"rebuild it with `python -m llmtap.teach_formats`")
    model, tokenizer = load_checkpoint(GENERATOR_PATH, device)
    return model.float(), tokenizer


def taught_generator(device=None, temperature: float = 0.8, top_k: int | None = 40) -> LMGenerator:
    """The shipped taught course model as a Self-Instruct generator."""
    model, tokenizer = load_taught_model(device)
    return LMGenerator(CourseLM(model, tokenizer, unknown="bytes"), temperature, top_k)


# ----------------------------------------------------------------------------- is a generated task right?
# The course world knows every answer, so a task the course model generates can be checked: is
# its instruction one of the corpus tasks (in any phrasing), and does each output answer it?
def _pattern(wording: str) -> re.Pattern:
    """A wording with {n}, {a}, {b}, {name} as a regular expression that captures them."""
    parts = re.split(r"\{(\w+)\}", wording)
    numbers = ("n", "a", "b")                            # the rest ({name}, {g1}, {g2}) are group names
    regex = "".join(re.escape(part) if i % 2 == 0 else (rf"(?P<{part}>\d+)" if part in numbers else rf"(?P<{part}>.+?)")
                    for i, part in enumerate(parts))
    return re.compile(regex + r"$")


_PATTERNS = [(task, lang, _pattern(w)) for task, by_lang in INSTRUCTION_PHRASINGS.items()
             for lang, wordings in by_lang.items() for w in wordings]
_PATTERNS += [("choose", lang, _pattern(w)) for lang, wordings in CHOICE_PHRASINGS.items() for w in wordings]
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
    if task == "choose":
        group = _GROUP_OF.get(x)
        if group is None:
            return "the input is not a word of the course"
        if group[0 if lang == "zh" else 1] not in (values["g1"], values["g2"]):
            return "the word is in neither group"
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


# every reason check_world_task gives, in a fixed order (a measurement reports each, 0 when unseen)
WHY_NOT = ("not a task of the course world", "no instance", "the input is not an event sentence", "wrong feeling",
           "the input is not a word of the course", "the word is in neither group", "wrong group", "wrong translation",
           "wrong sum", "not a list of that group", "not the word backwards")


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
          "instance rejected: duplicate instance", "instance rejected: label not among the instruction's classes",
          "instance rejected: input is a piece of its label", "instance rejected: same input, different output",
          "instance rejected: no input, given once", "rejected: no instance parsed", "rejected: no valid instance",
          "tasks kept")


def stage_two_accuracy(classified) -> tuple[float, int]:
    """(share right, how many) of stage 2's answers ``[(instruction, True/False/None)]`` on the
    instructions whose type the world knows (``recognise_task``); an unclear answer is wrong."""
    known = [(recognise_task(ins), answer) for ins, answer in classified]
    known = [(found[0] in CLASSIFICATION_TASKS, answer) for found, answer in known if found is not None]
    return (sum(truth == answer for truth, answer in known) / len(known) if known else float("nan")), len(known)


SUM_STYLES = ("plain", "instance")


def sums_asked(tasks: list[Task]) -> set[tuple[int, int]]:
    """Every (a, b) that an "add" task of ``tasks`` asks for, in any wording."""
    found = [recognise_task(t.instruction) for t in tasks]
    return {(int(f[2]["a"]), int(f[2]["b"])) for f in found if f is not None and f[0] == "add"}


def sum_accuracy(generator, n: int = 40, seed: int = 0, style: str = "instance",
                 seed_tasks: list[Task] | None = None, not_in: list[Task] | None = None) -> float:
    """The share of ``n`` sums (two numbers from 0 to 20, Chinese and English in turn) that
    ``generator`` answers right: how much of the world's arithmetic a generator brings to the loop.
    ``not_in``: only sums that no task of this list asks for (the tasks a teaching showed: a sum
    the teaching never showed is right only if the link from instruction to sum was learnt).

    * "plain": the pretraining corpus's own sentence, cut before the answer ('12 plus 13 is',
      '12加13等于'); the first number written is the answer;
    * "instance": the loop's stage 3 prompt for the instruction 'What is 12 plus 13?' (two
      ordinary seed tasks of ``seed_tasks`` as examples, as the loop shows them), parsed as the
      loop parses it."""
    positive_int(n, "n")
    one_of(style, "style", SUM_STYLES)
    shown = set() if not_in is None else sums_asked(_task_list(not_in, "not_in"))
    pool = [(a, b) for a in range(21) for b in range(21) if (a, b) not in shown]
    if not pool:
        raise ValueError("not_in asks for every sum from 0 + 0 to 20 + 20: no sum is left to ask")
    seed_tasks = corpus_tasks(60, seed=0) if seed_tasks is None else seed_tasks
    ordinary = [t for t in seed_tasks if not t.is_classification]
    if style == "instance" and len(ordinary) < 2:
        raise ValueError("the instance prompt shows 2 ordinary (not classification) seed tasks; seed_tasks has fewer")
    rng, right = random.Random(seed), 0
    for i in range(n):
        (a, b), lang = rng.choice(pool), ("zh", "en")[i % 2]
        if style == "plain":                        # '12 plus 13 is {c}.' cut before {c}
            text = generator(SUM_PHRASES[lang][0].split("{c}")[0].format(a=a, b=b).rstrip(), 8, rng.randrange(2**31))
            said = re.match(r"\s*(\d+)", text)
            said = said.group(1) if said else None
        else:
            instruction = INSTRUCTION_PHRASINGS["add"][lang][0].format(a=a, b=b)
            prompt = instance_prompt(instruction, rng.sample(ordinary, 2), output_first=False)
            # ' (none)\nOutput: 25' is at most 18 tokens, one per character in the worst case
            pairs = parse_instances(generator(prompt, 24, rng.randrange(2**31)), output_first=False)
            said = pairs[0][1] if pairs else None
        right += said == str(a + b)
    return right / n


SELF_INSTRUCT_PARTS = ("with the filters", "the paper's filters only", "without the filters", "stage 2 alone")
LOOPS = {"with the filters": FilterConfig(), "the paper's filters only": FilterConfig(course_checks=False),
         "without the filters": None}


def measure_self_instruct(generator, rounds: int = 40, seed: int = 0, max_new_tokens: int = 48,
                          seed_tasks: list[Task] | None = None, parts=SELF_INSTRUCT_PARTS, n_instances: int = 3) -> dict:
    """What a Self-Instruct run with ``generator`` gives, in numbers, one dict per part:

    * "with the filters" (the paper's and the course's three instance checks), "the paper's
      filters only" and "without the filters": the loop's counts (``STAGES``), the well-formed
      share of the kept pool and its malformed tasks by reason (``WHY_NOT``), the kept
      classification tasks, and stage 2's accuracy on the run's own instructions that the world
      recognises (an unclear answer counts as wrong);
    * "stage 2 alone": its accuracy on the world's tasks in the wordings the teaching never showed,
      and on the 44 general seed tasks.

    ``seed_tasks``: the loop's seed pool, by default ``corpus_tasks(60)``. ``n_instances``: instance
    prompts per task (``SelfInstruct``'s), whose answers must agree."""
    positive_int(rounds, "rounds")
    unknown = set(parts) - set(SELF_INSTRUCT_PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; choose from {SELF_INSTRUCT_PARTS}")
    seed_tasks = corpus_tasks(60, seed=0) if seed_tasks is None else seed_tasks
    out = {}
    for part, cfg in LOOPS.items():
        if part not in parts:
            continue
        si = SelfInstruct(generator, seed_tasks=seed_tasks, cfg=cfg, seed=seed, max_new_tokens=max_new_tokens,
                          filters=cfg is not None, n_instances=n_instances)
        si.run(rounds)
        out[part] = {stage: float(si.counts.get(stage, 0)) for stage in STAGES}
        share, why_not = well_formed_share(si.kept)
        unlisted = set(why_not) - set(WHY_NOT)           # a new reason of check_world_task must be listed
        if unlisted:
            raise RuntimeError(f"check_world_task gave reasons missing from WHY_NOT: {sorted(unlisted)}")
        out[part].update({f"not well formed: {why}": float(why_not.get(why, 0)) for why in WHY_NOT})
        out[part].update({"well-formed share": share,
                          "classification tasks kept": float(sum(t.is_classification for t in si.kept)),
                          "classification identified, the run's instructions": stage_two_accuracy(si.classified)[0]})
    if "stage 2 alone" in parts:
        shots = balanced_shots(seed_tasks, 6, random.Random(seed))
        out["stage 2 alone"] = {}
        for name, tasks in (("held-out wordings", corpus_tasks(60, seed=1, phrasing="held out")),
                            ("general seed tasks", load_seed_tasks())):
            said = identify_classification(generator, tasks, shots, seed)
            out["stage 2 alone"][f"classification identified, {name}"] = (
                sum(s == t.is_classification for s, t in zip(said, tasks)) / len(tasks))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="Teach the course model Self-Instruct's formats (TEACH_RECIPE) and "
                                             "ship it as the taught generator.")
    ap.add_argument("--out", type=Path, default=GENERATOR_PATH)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)     # the shipped file was taught on one thread; another count rounds differently
    t0 = time.perf_counter()
    model, tokenizer, history = teach_course_model("cpu")
    save_checkpoint(model.half(), args.out, tokenizer, extra={"recipe": TEACH_RECIPE, "loss": history["loss"][-1]})
    print(f"taught in {time.perf_counter() - t0:.0f} s, loss {history['loss'][0]:.2f} -> {history['loss'][-1]:.2f}; "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
