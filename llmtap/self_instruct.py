"""Self-Instruct (自我指令): a model bootstraps instruction data from a few hand-written tasks.

One round of the loop (Wang et al., 2022), as LLM-TAP 5.4 describes it:

1. **instruction generation**: a prompt lists 8 instructions from the task pool, 6 written by
   people (the seed tasks) and 2 generated in earlier rounds, and asks for more;
2. **classification-task identification** (分类任务识别): a few-shot prompt asks whether each new
   instruction is a classification task (its output is one label from a small set);
3. **instance generation**: input-first for ordinary tasks (write an input, then its output);
   output-first for classification tasks (pick a class label, then write an input of that
   class), so that the labels do not all come out the same;
4. **filtering**: an instruction is kept only if its ROUGE-L against every instruction in the
   pool is < 0.7 (diversity), it has no blacklisted keyword (a language model cannot handle
   images, files or videos), its length is within bounds, it starts with a letter, a digit or a
   Chinese character (not punctuation or a stray byte) and it is not a duplicate; instances
   whose input equals the output, or whose output is empty, are dropped, and so are instances
   that share an input but disagree on the output.

Three instance checks are the course's, not the paper's (``FilterConfig(course_checks=False)``
switches them off): the paper's instance filters compare an instance with the other instances of
its task, and a wrong answer that nothing else contradicts passes them. These compare an instance
with its own task instead: a class label must be one of the classes the instruction names, a
classification input must not be a piece of its own label, and an answer to a task with no input
must be given by at least two of the samples.

Kept tasks join the pool and can be sampled in later rounds. Every rejection is counted by its
reason in ``SelfInstruct.counts``.

``SelfInstruct(style="original")`` runs it as the authors' released code does instead: their
English prompts ("Come up with a series of tasks:", numbered "1. "), their rules (word counts
<= 3 or > 150, their keyword list, no "Write a program", no instruction starting with
punctuation or a non-ASCII character), one fixed class-balanced set of examples for the
classification question (a random 6 of their 175 seed tasks, 26 of them classification, has no
"Yes" to show 38% of the time), instance formats whose blank lines do not cut an example, and
ROUGE-L "reject only if > 0.7".

Here: tasks, the prompts and their parsing, the filters and the loop. The generator is any callable
``generate(prompt, max_new_tokens, seed) -> str`` (``llmtap.generators``); ROUGE-L and the
diversity filter alone (``rouge_filter``) are in ``llmtap.rouge``; ``llmtap.teach_formats``
teaches the small course model these prompts' formats.
"""
from __future__ import annotations

import json
import random
import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .generators import GeneratorError
from .rouge import RougeIndex, _check_rule, tokenize, too_similar
from .validate import non_negative_int, one_of

SEED_TASKS_PATH = Path(__file__).parent / "data" / "seed_tasks.jsonl"
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff]")


def detect_lang(text: str) -> str:
    """'zh' when the text has a Chinese character, else 'en'."""
    return "zh" if _CJK.search(text) else "en"


# ----------------------------------------------------------------------------- tasks
@dataclass
class Task:
    """An instruction, its instances (input, output), and whether it is a classification task."""
    instruction: str
    instances: list = field(default_factory=list)
    is_classification: bool = False
    origin: str = "seed"               # "seed" (written by people) or "generated"
    id: str = ""

    def __post_init__(self):
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise ValueError(f"a task needs a non-empty instruction string, got {self.instruction!r}")
        self.instances = [tuple(it) for it in self.instances]
        if any(len(it) != 2 or not all(isinstance(s, str) for s in it) for it in self.instances):
            raise ValueError(f"instances of {self.instruction[:40]!r} must be (input, output) string pairs")

    @property
    def lang(self) -> str:
        return detect_lang(self.instruction)


def load_seed_tasks(path=SEED_TASKS_PATH) -> list[Task]:
    """The seed tasks: JSON lines {"id", "instruction", "instances": [{"input", "output"}],
    "is_classification"}. The course ships 44, half Chinese, half English."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no seed task file at {path}")
    tasks = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            tasks.append(Task(row["instruction"], [(it["input"], it["output"]) for it in row["instances"]],
                              bool(row.get("is_classification", False)), "seed", row.get("id", f"line{n}")))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}, line {n}: not a seed task ({type(e).__name__}: {e}); expected "
                             f'{{"instruction": ..., "instances": [{{"input": ..., "output": ...}}]}}') from None
    if not tasks:
        raise ValueError(f"{path} has no seed tasks")
    return tasks


# ----------------------------------------------------------------------------- prompts and parsing
HEADER = {"en": "Here is a list of tasks. Come up with new tasks, each different from the others.\n",
          "zh": "下面是一些任务。请想出新的任务，每个都和其他的不同。\n"}
MARKER = {"en": "Task {}: ", "zh": "任务{}："}
_MARKER_RE = re.compile(r"(?:Task|任务)\s*\d+\s*[:：.]\s*")


def instruction_prompt(instructions: list[str], lang: str = "en") -> str:
    """Numbered instructions, then the next number left open for the model to continue."""
    one_of(lang, "lang", tuple(HEADER))
    if not instructions:
        raise ValueError("give at least one instruction to show the model")
    lines = [MARKER[lang].format(i + 1) + " ".join(ins.split()) for i, ins in enumerate(instructions)]
    return HEADER[lang] + "\n".join(lines) + "\n" + MARKER[lang].format(len(instructions) + 1)


def parse_instructions(text: str) -> list[str]:
    """The instructions in the model's continuation: the text up to the next 'Task N:' marker is
    the first one, each later marker starts another; each ends at its line's end. A last line
    with no line end is dropped: the token limit cut it (the released Self-Instruct code drops
    the last instruction of a reply cut by its length limit too)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    pieces = _MARKER_RE.split(text)
    return [p.split("\n")[0].strip() for p in pieces if p.split("\n")[0].strip() and "\n" in p]


def sample_instructions(seed_tasks, generated_tasks, rng: random.Random, n_seed: int = 6,
                        n_generated: int = 2) -> list[str]:
    """n_seed seed instructions and n_generated generated ones (fewer generated while there are
    fewer; seed tasks fill the gap), shuffled."""
    if n_seed < 0 or n_generated < 0 or n_seed + n_generated == 0:
        raise ValueError(f"need n_seed, n_generated >= 0 and at least one in all, got {n_seed}, {n_generated}")
    take_generated = min(n_generated, len(generated_tasks))
    take_seed = min(len(seed_tasks), n_seed + n_generated - take_generated)
    chosen = [t.instruction for t in rng.sample(list(seed_tasks), take_seed)]
    chosen += [t.instruction for t in rng.sample(list(generated_tasks), take_generated)]
    rng.shuffle(chosen)
    return chosen


CLASSIFY_HEADER = {"en": "Can the task's output be one label from a small set of classes? Answer Yes or No.\n\n",
                   "zh": "这个任务的输出是否是从几个类别中选一个标签？回答是或不是。\n\n"}
# "不是", not "否": the course tokenizer has no "否", and a 3-token answer cut in its UTF-8 bytes is unreadable
YES_NO = {"en": ("Yes", "No"), "zh": ("是", "不是")}
ANSWER_TOKENS = 5          # room for " Yes" in a character tokenizer (4 tokens in the course model's)


def classification_prompt(instruction: str, examples: list[Task]) -> str:
    """Few-shot: example tasks with Yes/No (是/不是), then the new one."""
    lang = detect_lang(instruction)
    yes, no = YES_NO[lang]
    label = "Classification" if lang == "en" else "分类任务"
    shots = "".join(f"Task: {t.instruction}\n{label}: {yes if t.is_classification else no}\n\n" for t in examples)
    return CLASSIFY_HEADER[lang] + shots + f"Task: {instruction}\n{label}:"


def parse_yes_no(text: str):
    """True for a reply starting with yes/是, False for no/否/不是, None when it is neither."""
    t = text.strip().lower()
    if t.startswith(("yes", "是")):
        return True
    if t.startswith(("no", "否", "不是")):
        return False
    return None


def identify_classification(generator, tasks: list[Task], examples: list[Task], seed: int = 0) -> list:
    """Stage 2 on its own, to measure it: the generator's answer (True, False, or None when
    unclear) to the classification question for each task of ``tasks``, with ``examples`` as
    the few-shot examples (those in the task's language when there are any; a task is never its
    own example). Compare with ``t.is_classification``."""
    if not callable(generator):
        raise TypeError("generator must be callable as generator(prompt, max_new_tokens, seed) -> str")
    if not examples:
        raise ValueError("give at least one example task for the few-shot prompt")
    rng = random.Random(seed)
    answers = []
    for t in tasks:
        shots = [e for e in examples if e.instruction != t.instruction]
        shots = [e for e in shots if e.lang == t.lang] or shots           # examples in the task's language
        reply = generator(classification_prompt(t.instruction, shots), ANSWER_TOKENS, rng.randrange(2**31))
        answers.append(parse_yes_no(reply))
    return answers


def instance_prompt(instruction: str, examples: list[Task], output_first: bool) -> str:
    """Input-first: 'Task / Input / Output' examples, then the new task and 'Input:'.
    Output-first (classification): 'Task / Class label / Input', then 'Class label:'."""
    def show(t: Task) -> str:
        x, y = t.instances[0]
        if output_first:
            return f"Task: {t.instruction}\nClass label: {y}\nInput: {x or '(none)'}\n\n"
        return f"Task: {t.instruction}\nInput: {x or '(none)'}\nOutput: {y}\n\n"
    head = "Task: {}\nClass label:" if output_first else "Task: {}\nInput:"
    return "".join(show(t) for t in examples if t.instances) + head.format(instruction)


def parse_instances(text: str, output_first: bool) -> list[tuple[str, str]]:
    """(input, output) pairs from the continuation of ``instance_prompt``; the first pair's
    leading field was already in the prompt. '(none)' is an empty input."""
    first, second = ("Class label", "Input") if output_first else ("Input", "Output")
    block = text.split("\n\n")[0]                        # the model's first example only
    m = re.match(rf"\s*(.*?)\n{second}:\s*(.*)", block, re.S)
    if not m:
        return []
    a, b = m.group(1).strip(), m.group(2).strip()
    x, y = (b, a) if output_first else (a, b)
    return [("" if x == "(none)" else x, y)]


# ----------------------------------------------------------------------------- filters
BLACKLIST = {
    "en": ("image", "images", "picture", "pictures", "photo", "photos", "graph", "graphs", "file", "files",
           "draw", "drawing", "plot", "video", "videos", "audio", "map", "maps", "diagram", "flowchart",
           "music", "song"),
    "zh": ("图片", "图像", "照片", "图表", "文件", "画", "绘制", "视频", "音频", "地图", "流程图", "音乐", "歌曲"),
}


@dataclass
class FilterConfig:
    """Filter settings. Lengths count ROUGE tokens: English words, Chinese characters."""
    rouge_threshold: float = 0.7
    min_tokens: int = 3
    max_tokens: int = 150
    blacklist: dict = field(default_factory=lambda: {k: tuple(v) for k, v in BLACKLIST.items()})
    rouge_rule: str = "paper"          # "paper": keep if < threshold; "released": if <= (llmtap.rouge.RULES)
    course_checks: bool = True         # the three instance checks the paper does not have (check_label,
                                       # confirmed); style="course" only, confirmed with n_instances >= 2

    def __post_init__(self):
        if not 0 < self.rouge_threshold <= 1:
            raise ValueError(f"rouge_threshold must be in (0, 1], got {self.rouge_threshold}")
        _check_rule(self.rouge_rule)
        if not 0 <= self.min_tokens <= self.max_tokens:
            raise ValueError(f"need 0 <= min_tokens <= max_tokens, got {self.min_tokens}, {self.max_tokens}")


def blacklisted_word(instruction: str, blacklist: dict = BLACKLIST) -> str | None:
    """The first blacklisted keyword in the instruction: whole words in English, substrings in Chinese."""
    words = set(tokenize(instruction))
    for w in blacklist.get("en", ()):
        if w in words:
            return w
    for w in blacklist.get("zh", ()):
        if w in instruction:
            return w
    return None


UNREADABLE = "\ufffd"      # what a decoder writes for bytes that are not valid UTF-8


def bad_start(instruction: str) -> tuple:
    """(reason, detail) when the instruction does not start like a sentence, else (None, ""):
    "starts with punctuation" ('- List ...', '。列举...'), "starts with a non-text character"
    (a symbol, a stray byte), "unreadable characters" (a U+FFFD anywhere). Letters, digits and
    Chinese characters are text: '16加4等于多少？' starts well."""
    if UNREADABLE in instruction:
        return "unreadable characters", f"U+FFFD at position {instruction.index(UNREADABLE)}"
    first = instruction.lstrip()[:1]
    if not first or first.isalnum():
        return None, ""
    kind = "punctuation" if unicodedata.category(first).startswith("P") else "a non-text character"
    return f"starts with {kind}", repr(first)


def check_instruction(instruction: str, index: RougeIndex, cfg: FilterConfig = FilterConfig(),
                      pool_size: int | None = None) -> tuple:
    """(reason, detail): reason is None when the instruction passes every filter, else one of
    "too short", "too long", "keyword", "starts with punctuation", "starts with a non-text
    character", "unreadable characters", "duplicate", "similar".

    In the loop ``index`` holds the pool and, after its first ``pool_size`` texts, the
    instructions that passed earlier in the same round; a too-similar text of the pool is named
    before one of the round. By default all of ``index`` is the pool."""
    n = len(tokenize(instruction))
    if n < cfg.min_tokens:
        return "too short", f"{n} tokens < {cfg.min_tokens}"
    if n > cfg.max_tokens:
        return "too long", f"{n} tokens > {cfg.max_tokens}"
    word = blacklisted_word(instruction, cfg.blacklist)
    if word:
        return "keyword", word
    reason, detail = bad_start(instruction)
    if reason:
        return reason, detail
    normal = " ".join(instruction.lower().split())
    if any(" ".join(t.lower().split()) == normal for t in index.texts):
        return "duplicate", "already in the pool"
    if len(index):                                       # keep only if ROUGE-L < 0.7 against every one
        scores = index.scores(instruction)
        n_pool = len(index) if pool_size is None else pool_size
        for start, stop in ((0, n_pool), (n_pool, len(index))):      # the pool, then the round
            if stop > start:
                best = start + int(scores[start:stop].argmax())
                if too_similar(float(scores[best]), cfg.rouge_threshold, cfg.rouge_rule):
                    return "similar", f"ROUGE-L {scores[best]:.2f} with {index.texts[best]!r}"
    return None, ""


def check_instance(x: str, y: str, seen) -> str | None:
    """Why an instance (input x, output y) is bad, or None: "empty output", "input equals output",
    "duplicate instance" (its stripped pair is in ``seen``)."""
    if not y.strip():
        return "empty output"
    if x.strip() and x.strip() == y.strip():
        return "input equals output"
    if (x.strip(), y.strip()) in seen:
        return "duplicate instance"
    return None


# The course's instance checks: not in the paper. They compare an instance with its own task, where
# the paper's compare it with the other instances (a lone wrong answer has nothing to conflict with).
_OFFERS_CHOICE = re.compile(r"(?<![a-z])or(?![a-z])|还是", re.I)


def names_label(instruction: str, label: str) -> bool:
    """Does the instruction name ``label``: as whole words in English ('Positive' in 'Is it
    positive or negative?'), as a substring in Chinese ('水果' in '这个词属于水果还是动物？')."""
    label, text = label.strip().lower(), instruction.lower()
    if _CJK.search(label):
        return label in text
    return re.search(rf"(?<![a-z0-9]){re.escape(label)}(?![a-z0-9])", text) is not None


def check_label(instruction: str, x: str, label: str) -> str | None:
    """Why a classification instance (input x, class label) contradicts its own instruction, or None:

    * "label not among the instruction's classes": the instruction offers a choice ('... A or B?',
      '...A还是B？') and the label is none of what it names (身体部位 for '这个词属于动物还是职业？');
    * "input is a piece of its label": the input names the class instead of giving a member of it
      ('体部位' labelled 身体部位)."""
    if not all(isinstance(v, str) for v in (instruction, x, label)):
        raise TypeError("check_label takes three strings: the instruction, the input and the class label")
    x, label = x.strip(), label.strip()
    if _OFFERS_CHOICE.search(instruction) and not names_label(instruction, label):
        return "label not among the instruction's classes"
    if x and x != label and x in label:
        return "input is a piece of its label"
    return None


def confirmed(instances, samples) -> tuple[list, list]:
    """(kept, dropped) of ``instances``: one with no input (a sum, a list) is kept only if at least
    two of the task's ``samples`` (every pair parsed) gave it. With no input every sample answers
    the same question, so one answer can be checked against another; a single sample has nothing
    to agree or conflict with. Run it after ``drop_conflicts``, which drops disagreeing answers."""
    for pairs, name in ((instances, "instances"), (samples, "samples")):
        if isinstance(pairs, (str, bytes)) or not all(isinstance(p, (tuple, list)) and len(p) == 2 and
                                                      all(isinstance(v, str) for v in p) for p in pairs):
            raise TypeError(f"{name} must be (input, output) pairs of strings, e.g. [('', '25')]")
    said = Counter((x.strip(), y.strip()) for x, y in samples)
    ok = lambda x, y: x.strip() or said[(x.strip(), y.strip())] >= 2
    return [(x, y) for x, y in instances if ok(x, y)], [(x, y) for x, y in instances if not ok(x, y)]


def drop_conflicts(instances) -> tuple[list, list]:
    """(kept, dropped): every instance whose input also comes with a different output is dropped,
    all of them, since nothing says which output is right (Self-Instruct's filter of instances
    with the same input and different outputs). The empty input counts as an input: two different
    answers to 'What is 14 plus 2?' are a conflict too."""
    outputs = {}
    for x, y in instances:
        outputs.setdefault(x.strip(), set()).add(y.strip())
    kept = [(x, y) for x, y in instances if len(outputs[x.strip()]) == 1]
    return kept, [(x, y) for x, y in instances if len(outputs[x.strip()]) > 1]


def instruction_round(generate, seed_tasks: list[Task], generated: list[Task], pool: RougeIndex, rng: random.Random,
                      lang: str = "en", max_new_tokens: int = 48) -> tuple[list[str], list[tuple[str, str]]]:
    """Stage 1 and the instruction filters, alone (chapter 05's exercise builds it): show 6 seed
    and 2 generated instructions (``sample_instructions``), let ``generate`` continue the prompt
    (its seed drawn from ``rng``), parse the new instructions, and filter each against ``pool``.
    Each kept instruction joins ``pool`` at once, so a later one of the same round is compared with
    it. Returns (kept instructions, [(rejected instruction, reason)])."""
    if not isinstance(pool, RougeIndex):
        raise TypeError(f"pool must be a RougeIndex of the pool's instructions, got {type(pool).__name__}")
    shown = sample_instructions(seed_tasks, generated, rng)
    text = generate(instruction_prompt(shown, lang), max_new_tokens, rng.randrange(2**31))
    kept, rejected = [], []
    for instruction in parse_instructions(text):
        reason, _ = check_instruction(instruction, pool)
        if reason is None:
            kept.append(instruction)
            pool.add(instruction)
        else:
            rejected.append((instruction, reason))
    return kept, rejected


# ----------------------------------------------------------------------------- as the authors ran it
# The released Self-Instruct code (Wang et al., 2023; bootstrap_instructions.py) differs from the
# course's version in its prompt and its rules; ``SelfInstruct(style="original")`` runs it that
# way, for a generator that can follow English prompts (a Hugging Face or OpenAI-style model).
ORIGINAL_HEADER = "Come up with a series of tasks:\n"
ORIGINAL_KEYWORDS = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
                     "draw", "plot", "go to")
ORIGINAL_CLASSIFY_HEADER = "Can the following task be regarded as a classification task with finite output labels?\n\n"


def original_instruction_prompt(instructions: list[str]) -> str:
    """'Come up with a series of tasks:', the instructions numbered '1. ', '2. ', ..., then the
    next number left open (white space collapsed, a trailing ':' dropped, as the authors did)."""
    if not instructions:
        raise ValueError("give at least one instruction to show the model")
    lines = [f"{i + 1}. {' '.join(ins.split()).rstrip(':')}" for i, ins in enumerate(instructions)]
    return ORIGINAL_HEADER + "\n".join(lines) + f"\n{len(instructions) + 1}."


def parse_original_instructions(text: str) -> list[str]:
    """The continuation cut at every new line that starts with a number and a dot ('\\n12. '),
    white space collapsed and the first letter capitalised. Python's ``str.capitalize``, which the
    authors used, also lowercases the rest ('Name the USA' -> 'Name the usa'): kept as they ran it."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    pieces = (" ".join(p.split()).capitalize() for p in re.split(r"\n\d+\s?\. ", text))
    return [p for p in pieces if p]


def original_filter(instruction: str) -> str | None:
    """The released code's rules, in its order; the reason an instruction is dropped, or None.
    Lengths count words split on white space (not tokens: a Chinese sentence is one "word")."""
    n = len(instruction.split())
    if n <= 3:
        return "too short"
    if n > 150:
        return "too long"
    if any(re.search(rf"\b{word}\b", instruction, re.IGNORECASE) for word in ORIGINAL_KEYWORDS):
        return "keyword"
    if instruction.startswith("Write a program"):      # the model kept adding it; the authors drop it
        return "write a program"
    if instruction[0] in string.punctuation:
        return "starts with punctuation"
    if not instruction[0].isascii():                   # which also drops every Chinese instruction
        return "starts with a non-ASCII character"
    return None


def original_classification_prompt(instruction: str, shots: list[Task]) -> str:
    """The authors' question, their 'Is it classification? Yes/No' lines, then the new task."""
    lines = "".join(f"Task: {t.instruction}\nIs it classification? {'Yes' if t.is_classification else 'No'}\n\n"
                    for t in shots)
    return ORIGINAL_CLASSIFY_HEADER + lines + f"Task: {instruction}\nIs it classification?"


def balanced_shots(tasks, n: int, rng: random.Random) -> list[Task]:
    """n example tasks for the classification question, half classification and half not (as far
    as there are), shuffled. Drawn once per run, as the authors' fixed prompt is: a random draw
    from the 175 seed tasks, of which 25 are classification, often has no "Yes" to show."""
    non_negative_int(n, "n")
    yes = [t for t in tasks if t.is_classification]
    no = [t for t in tasks if not t.is_classification]
    n_yes = min(len(yes), max(n // 2, n - len(no)))      # more of one kind only when the other runs out
    chosen = rng.sample(yes, n_yes) + rng.sample(no, min(len(no), n - n_yes))
    rng.shuffle(chosen)
    return chosen


ORIGINAL_INSTANCE_HEADER = {
    False: "Come up with examples for the following tasks. Try to generate multiple examples when possible. "
           "If the task doesn't require additional input, you can generate the output directly.\n\n",
    True: "Given the classification task definition and the class labels, generate an input that corresponds "
          "to each of the class labels. If the task doesn't require input, just generate possible class labels.\n\n"}


def original_instance_prompt(instruction: str, examples: list[Task], output_first: bool) -> str:
    """The authors' instance prompts. Input-first: 'Task:', then 'Example 1' with the input and
    'Output:' (or 'Output:' alone when there is no input). Output-first (classification):
    'Task:', then 'Class label:' lines each followed by an input; the new task ends open at
    'Class label:'."""
    def show(t: Task) -> str:
        if output_first:
            return f"Task: {t.instruction}\n" + "".join(f"Class label: {y}\n{x}\n" for x, y in t.instances) + "\n"
        return f"Task: {t.instruction}\n" + "".join(
            (f"Example {k + 1}\n{x}\nOutput: {y}\n" if x else f"Output: {y}\n") for k, (x, y) in enumerate(t.instances)) + "\n"
    tail = f"Task: {instruction}\nClass label:" if output_first else f"Task: {instruction}\n"
    return ORIGINAL_INSTANCE_HEADER[output_first] + "".join(show(t) for t in examples if t.instances) + tail


def parse_original_class_instances(text: str) -> list[tuple[str, str]]:
    """(input, label) pairs of the output-first continuation (after 'Class label:'): each label's
    input runs to the next 'Class label:' or 'Task:' line, blank lines included."""
    body = re.split(r"\n\s*Task:", text)[0]
    pairs = []
    for chunk in re.split(r"\n\s*Class label:", body):
        label, _, x = chunk.strip("\n").partition("\n")
        if label.strip():
            pairs.append((x.strip(), label.strip()))
    return pairs


def parse_original_instances(text: str) -> list[tuple[str, str]]:
    """(input, output) pairs of the authors' input-first format, continued after 'Task: ...\\n':
    either 'Output: ...' alone (no input), or 'Example 1\\n<input>\\nOutput: ...' repeated. Each
    example runs to the next 'Example N' or 'Task:' line, so a blank line inside an input or an
    output does not cut it."""
    body = re.split(r"\n\s*Task:", text)[0]
    examples = re.split(r"(?:^|\n)\s*Example \d+\s*\n", body)
    pairs = []
    for ex in examples:
        if "Output:" not in ex:
            continue
        x, y = ex.rsplit("Output:", 1)
        if y.strip():
            pairs.append((x.strip(), y.strip()))
    return pairs


# ----------------------------------------------------------------------------- the loop
class SelfInstruct:
    """The iterative bootstrap. ``step()`` runs one round and returns the tasks it kept;
    ``counts`` holds every stage's count and every rejection by reason; ``kept`` and
    ``rejected`` keep examples of both. The pool is ``seed_tasks + generated``, and ``index``
    holds its instructions for the filters. A generator error leaves the pool as it was."""

    def __init__(self, generator, seed_tasks: list[Task] | None = None, cfg: FilterConfig | None = None,
                 seed: int = 0, lang: str | None = None, n_seed: int = 6, n_generated: int = 2,
                 n_shots: int = 6, max_new_tokens: int = 48, style: str = "course", n_instances: int = 2,
                 filters: bool = True):
        if not callable(generator):
            raise TypeError("generator must be callable as generator(prompt, max_new_tokens, seed) -> str")
        one_of(lang, "lang (None for both languages)", (None, "en", "zh"))
        one_of(style, "style", ("course", "original"))
        if not isinstance(n_instances, int) or isinstance(n_instances, bool) or n_instances < 1:
            raise ValueError(f"n_instances must be an int >= 1 (instance prompts per task), got {n_instances!r}")
        seeds = list(seed_tasks) if seed_tasks is not None else load_seed_tasks()
        if style == "original":                      # the authors' prompts and rules are English-only
            if lang == "zh":
                raise ValueError("style='original' runs the authors' English prompts; use style='course' for Chinese")
            lang = "en"
        if lang is not None:
            seeds = [t for t in seeds if t.lang == lang]
        if len(seeds) < n_seed:
            raise ValueError(f"need at least n_seed = {n_seed} seed tasks, got {len(seeds)}")
        self.style = style
        self.generator, self.cfg = generator, cfg or (FilterConfig(rouge_rule="released", course_checks=False)
                                                      if style == "original" else FilterConfig())
        self.seed_tasks, self.generated = seeds, []
        self.index = RougeIndex(t.instruction for t in seeds)
        self.rng, self.lang, self.round = random.Random(seed), lang, 0
        self.n_seed, self.n_generated, self.n_shots, self.max_new_tokens = n_seed, n_generated, n_shots, max_new_tokens
        self.n_instances = n_instances     # course style: one instance prompt each, so that conflicts can show
        self.filters = filters             # False: keep everything that parses (the unfiltered pool, to compare)
        self.counts, self.kept, self.rejected = Counter(), [], []   # rejected: (text, stage, reason, detail)
        self.classified = []               # (instruction, stage 2's answer: True, False or None when unclear)
        # a mixed-language run picks each prompt's language among those the seed tasks are in
        self.langs = sorted({t.lang for t in seeds}) if lang is None else [lang]
        # the original run asks about classification with one fixed, balanced set of examples
        self.clf_shots = balanced_shots(seeds, n_shots, self.rng) if style == "original" else None

    def _generate(self, prompt: str, max_new_tokens: int) -> str:
        text = self.generator(prompt, max_new_tokens, self.rng.randrange(2**31))
        if not isinstance(text, str):
            raise GeneratorError(f"the generator returned a {type(text).__name__}, not a str")
        return text

    def step(self) -> list[Task]:
        """One round; nothing changes (pool, counts, examples) if the generator fails."""
        counts, rejected, new_tasks, classified = Counter(), [], [], []
        rng_state = self.rng.getstate()
        try:
            round_index = RougeIndex(self.index.texts)    # the pool; instructions that pass join it
            for ins in self._new_instructions(counts):
                reason, detail = self._check(ins, round_index)
                if reason is not None:
                    counts[f"rejected: {reason}"] += 1
                    rejected.append((ins, "instruction", reason, detail))
                    continue
                counts["instructions passing filters"] += 1
                round_index.add(ins)
                answer = self._is_classification(ins, counts)
                classified.append((ins, answer))
                is_cls = bool(answer)                    # an unclear answer counts as no
                text, instances, why = self._instances(ins, is_cls, counts)
                if why:
                    counts[f"rejected: {why}"] += 1
                    rejected.append((ins, "instances", why, text[:80]))
                    continue
                new_tasks.append(Task(ins, instances, is_cls, "generated", f"gen_{self.round}_{len(new_tasks)}"))
        except Exception:
            self.rng.setstate(rng_state)
            raise
        counts["tasks kept"] += len(new_tasks)
        for t in new_tasks:                          # commit the round
            self.generated.append(t)
            self.index.add(t.instruction)
        self.counts.update(counts)
        self.kept += new_tasks
        self.rejected += rejected
        self.classified += classified
        self.round += 1
        return new_tasks

    def _check(self, instruction: str, round_index: RougeIndex) -> tuple:
        """Stage 4's instruction filters: the course's (``check_instruction``), or the released
        code's rules (``original_filter``) and then its ROUGE-L rule; none with ``filters=False``."""
        if not self.filters:
            return None, ""
        if self.style == "original":
            reason = original_filter(instruction)
            if reason is not None:
                return reason, ""
        cfg = self.cfg
        if self.style == "original":              # lengths and keywords were checked above: only ROUGE-L is left
            cfg = FilterConfig(rouge_threshold=cfg.rouge_threshold, min_tokens=0, max_tokens=10**9, blacklist={},
                               rouge_rule=cfg.rouge_rule)
        return check_instruction(instruction, round_index, cfg, pool_size=len(self.index))

    def _new_instructions(self, counts: Counter) -> list[str]:
        """Stage 1: show 8 instructions of one language from the pool, parse what the model adds."""
        lang = self.langs[0] if len(self.langs) == 1 else self.rng.choice(self.langs)
        same_lang = lambda tasks: [t for t in tasks if t.lang == lang]
        shown = sample_instructions(same_lang(self.seed_tasks), same_lang(self.generated), self.rng,
                                    self.n_seed, self.n_generated)
        counts["prompts"] += 1
        if self.style == "original":
            text = self._generate(original_instruction_prompt(shown), self.max_new_tokens)
            candidates = parse_original_instructions(text)
        else:
            candidates = parse_instructions(self._generate(instruction_prompt(shown, lang), self.max_new_tokens))
        counts["instructions generated"] += len(candidates)
        return candidates

    def _is_classification(self, instruction: str, counts: Counter):
        """Stage 2: a few-shot yes/no question, the examples seed tasks in the instruction's language;
        True, False, or None when the answer is unclear."""
        if self.style == "original":
            prompt = original_classification_prompt(instruction, self.clf_shots)
        else:
            shots = [t for t in self.seed_tasks if t.lang == detect_lang(instruction)] or self.seed_tasks
            prompt = classification_prompt(instruction, self.rng.sample(shots, min(self.n_shots, len(shots))))
        answer = parse_yes_no(self._generate(prompt, ANSWER_TOKENS))
        counts[{True: "classification: yes", False: "classification: no", None: "classification: unclear"}[answer]] += 1
        return answer

    def _instances(self, instruction: str, is_cls: bool, counts: Counter) -> tuple[str, list, str | None]:
        """Stage 3: (the model's text, the valid instances, why there are none or None)."""
        examples = [t for t in self.seed_tasks if t.is_classification == is_cls]
        examples = self.rng.sample(examples, min(2, len(examples)))
        if self.style == "original":
            text = self._generate(original_instance_prompt(instruction, examples, is_cls), self.max_new_tokens)
            parsed = parse_original_class_instances(text) if is_cls else parse_original_instances(text)
        else:                                  # n_instances prompts, each with its own sample
            texts = [self._generate(instance_prompt(instruction, examples, output_first=is_cls), self.max_new_tokens)
                     for _ in range(self.n_instances)]
            text = "\n\n".join(texts)
            parsed = [pair for t in texts for pair in parse_instances(t, output_first=is_cls)]
        instances = []
        counts["instances generated"] += len(parsed)
        course_checks = self.filters and self.style == "course" and self.cfg.course_checks
        for x, y in parsed:
            why = check_instance(x, y, instances) if self.filters else None
            if why is None and course_checks and is_cls:
                why = check_label(instruction, x, y)
            if why:
                counts[f"instance rejected: {why}"] += 1
            else:
                instances.append((x.strip(), y.strip()))
        instances, conflicting = drop_conflicts(instances) if self.filters else (instances, [])
        if conflicting:
            counts["instance rejected: same input, different output"] += len(conflicting)
        if course_checks and self.n_instances > 1:     # one sample per task: nothing to confirm an answer with
            instances, once = confirmed(instances, parsed)
            if once:
                counts["instance rejected: no input, given once"] += len(once)
        why = None if instances else "no instance parsed" if not parsed else "no valid instance"
        return text, instances, why

    def run(self, rounds: int, progress: bool = False) -> Counter:
        """``rounds`` steps; returns the counts."""
        non_negative_int(rounds, "rounds")
        for _ in tqdm(range(rounds), disable=not progress, desc="self-instruct"):
            self.step()
        return self.counts

    def report(self) -> list[tuple[str, int]]:
        """(stage, count) rows in pipeline order, rejections by reason after their stage."""
        order = ["prompts", "instructions generated"]
        order += sorted(k for k in self.counts if k.startswith("rejected: ") and k[10:] in
                        ("too short", "too long", "keyword", "write a program", "starts with punctuation",
                         "starts with a non-ASCII character", "starts with a non-text character",
                         "unreadable characters", "duplicate", "similar"))
        order += ["instructions passing filters", "classification: yes", "classification: no",
                  "classification: unclear", "instances generated"]
        order += sorted(k for k in self.counts if k.startswith("instance rejected: "))
        order += sorted(k for k in self.counts if k in ("rejected: no instance parsed", "rejected: no valid instance"))
        order += ["tasks kept"]
        return [(k, self.counts.get(k, 0)) for k in order]
