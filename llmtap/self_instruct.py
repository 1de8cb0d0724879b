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
   images, files or videos), its length is within bounds and it is not a duplicate; instances
   whose input equals the output, or whose output is empty, are dropped.

Kept tasks join the pool and can be sampled in later rounds. Every rejection is counted by its
reason in ``SelfInstruct.counts``.

The generator is any callable ``generate(prompt, max_new_tokens, seed) -> str``:
``LMGenerator`` wraps an ``llmtap.prompting.CausalLM`` (the course model, offline, or a Hugging
Face model); ``OpenAIGenerator`` posts to an OpenAI-compatible HTTP endpoint you configure.
"""
from __future__ import annotations

import json
import random
import re
import socket
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .rouge import RougeIndex, tokenize

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

    def records(self) -> list:
        """One ``llmtap.instruct.Record`` per instance."""
        from .instruct import Record
        return [Record(self.instruction, x, y) for x, y in self.instances]


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
    if lang not in HEADER:
        raise ValueError(f"lang must be 'en' or 'zh', got {lang!r}")
    if not instructions:
        raise ValueError("give at least one instruction to show the model")
    lines = [MARKER[lang].format(i + 1) + " ".join(ins.split()) for i, ins in enumerate(instructions)]
    return HEADER[lang] + "\n".join(lines) + "\n" + MARKER[lang].format(len(instructions) + 1)


def parse_instructions(text: str) -> list[str]:
    """The instructions in the model's continuation: the text up to the next 'Task N:' marker is
    the first one, each later marker starts another; each ends at its line's end."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    pieces = _MARKER_RE.split(text)
    return [p.split("\n")[0].strip() for p in pieces if p.split("\n")[0].strip()]


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
                   "zh": "这个任务的输出是否是从几个类别中选一个标签？回答是或否。\n\n"}


def classification_prompt(instruction: str, examples: list[Task]) -> str:
    """Few-shot: example tasks with Yes/No (是/否), then the new one."""
    lang = detect_lang(instruction)
    yes, no = ("Yes", "No") if lang == "en" else ("是", "否")
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

    def __post_init__(self):
        if not 0 < self.rouge_threshold <= 1:
            raise ValueError(f"rouge_threshold must be in (0, 1], got {self.rouge_threshold}")
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


def check_instruction(instruction: str, index: RougeIndex, cfg: FilterConfig = FilterConfig()) -> tuple:
    """(reason, detail): reason is None when the instruction passes every filter, else one of
    "too short", "too long", "keyword", "duplicate", "similar"."""
    n = len(tokenize(instruction))
    if n < cfg.min_tokens:
        return "too short", f"{n} tokens < {cfg.min_tokens}"
    if n > cfg.max_tokens:
        return "too long", f"{n} tokens > {cfg.max_tokens}"
    word = blacklisted_word(instruction, cfg.blacklist)
    if word:
        return "keyword", word
    normal = " ".join(instruction.lower().split())
    if any(" ".join(t.lower().split()) == normal for t in index.texts):
        return "duplicate", "already in the pool"
    if len(index):
        scores = index.scores(instruction)
        best = int(scores.argmax())
        if scores[best] >= cfg.rouge_threshold:          # keep only if ROUGE-L < 0.7 against every one
            return "similar", f"ROUGE-L {scores[best]:.2f} with {index.texts[best]!r}"
    return None, ""


def check_instance(x: str, y: str, seen: set) -> str | None:
    """Why an instance (input x, output y) is bad, or None: "empty output", "input equals output",
    "duplicate instance"."""
    if not y.strip():
        return "empty output"
    if x.strip() and x.strip() == y.strip():
        return "input equals output"
    if (x.strip(), y.strip()) in seen:
        return "duplicate instance"
    return None


# ----------------------------------------------------------------------------- generators
class GeneratorError(RuntimeError):
    """The generator failed (no answer, an HTTP error, a reply in an unexpected shape)."""


class LMGenerator:
    """Text from an ``llmtap.prompting.CausalLM`` (the course model or a Hugging Face model),
    sampled with ``temperature`` and ``top_k``. A prompt longer than the context keeps its end."""

    def __init__(self, lm, temperature: float = 0.8, top_k: int | None = 40):
        from .prompting import CausalLM
        if not isinstance(lm, CausalLM):
            raise TypeError("lm must be an llmtap.prompting.CausalLM, e.g. llmtap.hf.load_lm('course')")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        self.lm, self.temperature, self.top_k = lm, temperature, top_k

    def __call__(self, prompt: str, max_new_tokens: int = 48, seed: int = 0) -> str:
        budget = (self.lm.max_len or 10**9) - max_new_tokens
        prompt = keep_end(prompt, lambda text: len(self.lm.encode(text, bos=True)), budget)
        return self.lm.generate(prompt, max_new_tokens, self.temperature, self.top_k, seed=seed)


def keep_end(prompt: str, n_tokens, budget: int) -> str:
    """The prompt with whole lines dropped from the top until ``n_tokens(prompt) <= budget``
    (a single line too long is halved), so that a small context still sees the open question."""
    while len(prompt) > 1 and n_tokens(prompt) > budget:
        prompt = prompt.split("\n", 1)[1] if "\n" in prompt else prompt[len(prompt) // 2:]
    return prompt


def course_generator(device=None, temperature: float = 0.8, top_k: int | None = 40) -> LMGenerator:
    """The course model as a generator. Its tokenizer lacks most Chinese characters outside its
    corpus: they are read as raw UTF-8 bytes (``CausalLM(unknown="bytes")``)."""
    from . import load_course_model
    from .prompting import CausalLM
    model, tok = load_course_model(device)
    return LMGenerator(CausalLM(model, tok, unknown="bytes"), temperature, top_k)


class OpenAIGenerator:
    """An OpenAI-compatible HTTP endpoint (a local server or a hosted API), with the standard
    library only. ``endpoint="chat"`` posts to /v1/chat/completions, "completions" to
    /v1/completions. ``base_url`` is e.g. "http://127.0.0.1:8000" or "https://host/v1"."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, endpoint: str = "chat",
                 temperature: float = 0.7, timeout: float = 60.0):
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if endpoint not in ("chat", "completions"):
            raise ValueError(f"endpoint must be 'chat' or 'completions', got {endpoint!r}")
        if not isinstance(model, str) or not model:
            raise ValueError("model must name the served model, e.g. 'Qwen2.5-7B-Instruct'")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        root = base_url.rstrip("/")
        root = root if root.endswith("/v1") else root + "/v1"
        self.url = root + ("/chat/completions" if endpoint == "chat" else "/completions")
        self.model, self.api_key, self.endpoint = model, api_key, endpoint
        self.temperature, self.timeout = temperature, timeout

    def __repr__(self) -> str:
        return f"OpenAIGenerator({self.url!r}, model={self.model!r})"      # never shows the key

    def __call__(self, prompt: str, max_new_tokens: int = 48, seed: int = 0) -> str:
        body = {"model": self.model, "max_tokens": max_new_tokens, "temperature": self.temperature, "seed": seed}
        if self.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                raw = reply.read()
        except urllib.error.HTTPError as e:
            raise GeneratorError(f"{self.url} answered HTTP {e.code}: {e.read()[:200].decode(errors='replace')}") from None
        except (socket.timeout, TimeoutError):
            raise GeneratorError(f"{self.url} did not answer within {self.timeout} s; raise timeout= "
                                 f"or check the server") from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, (socket.timeout, TimeoutError)):
                raise GeneratorError(f"{self.url} did not answer within {self.timeout} s") from None
            raise GeneratorError(f"cannot reach {self.url}: {e.reason}") from None
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            text = choice["message"]["content"] if self.endpoint == "chat" else choice["text"]
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise GeneratorError(f"{self.url} replied with something that is not JSON: {raw[:120]!r}") from None
        except (KeyError, IndexError, TypeError):
            where = "choices[0].message.content" if self.endpoint == "chat" else "choices[0].text"
            raise GeneratorError(f"{self.url} replied with JSON without {where}: {raw[:160]!r}") from None
        if not isinstance(text, str):
            raise GeneratorError(f"{self.url} replied with a {type(text).__name__} where text was expected")
        return text


# ----------------------------------------------------------------------------- teaching the formats
CLASSIFICATION_TASKS = ("sentiment", "category")     # corpus tasks whose output is one label of a few


def corpus_tasks(n_records: int = 120, seed: int = 0) -> list[Task]:
    """The corpus instruction records (``llmtap.corpus.instruction_example``: six simple tasks,
    Chinese and English) as Tasks: the records of one instruction become its instances."""
    from .corpus import INSTRUCTION_TASKS, instruction_example
    if not isinstance(n_records, int) or n_records < 1:
        raise ValueError(f"n_records must be an int >= 1, got {n_records!r}")
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
    if not isinstance(n_documents, int) or n_documents < 1:
        raise ValueError(f"n_documents must be an int >= 1, got {n_documents!r}")
    if n_shown < 1 or n_new < 1 or n_shots < 1:
        raise ValueError(f"n_shown, n_new and n_shots must be >= 1, got {n_shown}, {n_new}, {n_shots}")
    documents = []
    for i in range(n_documents):
        task = rng.choice(tasks)
        same_lang = [t for t in tasks if t.lang == task.lang]
        if i % 3 == 0:                                               # 1. instruction generation
            lang = task.lang if len(same_lang) > n_new else "en"
            pool = same_lang if len(same_lang) > n_new else tasks
            chosen = [t.instruction for t in rng.sample(pool, min(n_shown + n_new, len(pool)))]
            shown, new = chosen[:-n_new], chosen[-n_new:]
            marker = MARKER[lang]
            continuation = new[0] + "".join(f"\n{marker.format(len(shown) + 2 + j)}{ins}" for j, ins in enumerate(new[1:]))
            documents.append((instruction_prompt(shown, lang), continuation + "\n"))
        elif i % 3 == 1:                                             # 2. is it a classification task?
            others = [t for t in tasks if t is not task]
            shots = rng.sample(others, min(n_shots, len(others)))
            yes, no = ("Yes", "No") if task.lang == "en" else ("是", "否")
            documents.append((classification_prompt(task.instruction, shots), " " + (yes if task.is_classification else no)))
        else:                                                        # 3. an instance, in the task's order
            others = [t for t in tasks if t is not task and t.is_classification == task.is_classification]
            examples = rng.sample(others, min(2, len(others)))
            x, y = rng.choice(task.instances)
            x = x or "(none)"
            answer = f" {y}\nInput: {x}\n\n" if task.is_classification else f" {x}\nOutput: {y}\n\n"
            documents.append((instance_prompt(task.instruction, examples, task.is_classification), answer))
    return documents


def teach_formats(model, tokenizer, tasks: list[Task], steps: int = 40, batch_size: int = 8, lr: float = 3e-3,
                  n_documents: int = 600, n_shown: int = 4, n_shots: int = 3, seed: int = 0, device=None) -> dict:
    """A short fine-tune of the course model on ``format_documents(tasks)``, the loss on the
    continuation only (``llmtap.train.completion_batches``). Fewer lines shown than the loop shows
    (``n_shown``, ``n_shots``) keep the documents short and the steps cheap; the format is the same.
    Prompts longer than the context keep their end, as ``LMGenerator`` does. ``model`` changes in
    place; returns ``train``'s history."""
    import torch
    from .model import GPT
    from .tokenizer import Tokenizer
    from .train import TrainConfig, completion_batches, train
    if not isinstance(model, GPT) or not isinstance(tokenizer, Tokenizer):
        raise TypeError("teach_formats takes the course GPT and its Tokenizer, e.g. llmtap.load_course_model()")
    if not isinstance(steps, int) or steps < 1 or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"steps and batch_size must be ints >= 1, got {steps!r}, {batch_size!r}")
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


# ----------------------------------------------------------------------------- the loop
class SelfInstruct:
    """The iterative bootstrap. ``step()`` runs one round and returns the tasks it kept;
    ``counts`` holds every stage's count and every rejection by reason; ``kept`` and
    ``rejected`` keep examples of both. A generator error leaves the pool as it was."""

    def __init__(self, generator, seed_tasks: list[Task] | None = None, cfg: FilterConfig | None = None,
                 seed: int = 0, lang: str | None = None, n_seed: int = 6, n_generated: int = 2,
                 n_shots: int = 6, max_new_tokens: int = 48):
        if not callable(generator):
            raise TypeError("generator must be callable as generator(prompt, max_new_tokens, seed) -> str")
        if lang not in (None, "en", "zh"):
            raise ValueError(f"lang must be None (both), 'en' or 'zh', got {lang!r}")
        seeds = list(seed_tasks) if seed_tasks is not None else load_seed_tasks()
        if lang is not None:
            seeds = [t for t in seeds if t.lang == lang]
        if len(seeds) < n_seed:
            raise ValueError(f"need at least n_seed = {n_seed} seed tasks, got {len(seeds)}")
        self.generator, self.cfg = generator, cfg or FilterConfig()
        self.seed_tasks, self.generated = seeds, []
        self.index = RougeIndex(t.instruction for t in seeds)
        self.rng, self.lang, self.round = random.Random(seed), lang, 0
        self.n_seed, self.n_generated, self.n_shots, self.max_new_tokens = n_seed, n_generated, n_shots, max_new_tokens
        self.counts = Counter()
        self.kept, self.rejected = [], []          # (task), (text, stage, reason, detail)

    @property
    def pool(self) -> list[Task]:
        return self.seed_tasks + self.generated

    def _generate(self, prompt: str, max_new_tokens: int) -> str:
        text = self.generator(prompt, max_new_tokens, self.rng.randrange(2**31))
        if not isinstance(text, str):
            raise GeneratorError(f"the generator returned a {type(text).__name__}, not a str")
        return text

    def step(self) -> list[Task]:
        """One round; nothing changes (pool, counts, examples) if the generator fails."""
        counts, rejected, new_tasks = Counter(), [], []
        rng_state = self.rng.getstate()
        try:
            lang = self.lang or self.rng.choice(("en", "zh"))
            same_lang = lambda tasks: [t for t in tasks if t.lang == lang] or list(tasks)
            shown = sample_instructions(same_lang(self.seed_tasks), same_lang(self.generated), self.rng,
                                        self.n_seed, self.n_generated)
            counts["prompts"] += 1
            candidates = parse_instructions(self._generate(instruction_prompt(shown, lang), self.max_new_tokens))
            counts["instructions generated"] += len(candidates)
            this_round = RougeIndex()
            for ins in candidates:
                reason, detail = check_instruction(ins, self.index, self.cfg)
                if reason is None:
                    reason, detail = check_instruction(ins, this_round, self.cfg)
                if reason is not None:
                    counts[f"rejected: {reason}"] += 1
                    rejected.append((ins, "instruction", reason, detail))
                    continue
                counts["instructions passing filters"] += 1
                this_round.add(ins)
                shots = self.rng.sample(self.seed_tasks, min(self.n_shots, len(self.seed_tasks)))
                answer = parse_yes_no(self._generate(classification_prompt(ins, shots), 3))
                counts[{True: "classification: yes", False: "classification: no", None: "classification: unclear"}[answer]] += 1
                is_cls = bool(answer)
                examples = [t for t in self.seed_tasks if t.is_classification == is_cls]
                examples = self.rng.sample(examples, min(2, len(examples)))
                text = self._generate(instance_prompt(ins, examples, output_first=is_cls), self.max_new_tokens)
                instances, seen = [], set()
                parsed = parse_instances(text, output_first=is_cls)
                counts["instances generated"] += len(parsed)
                for x, y in parsed:
                    why = check_instance(x, y, seen)
                    if why:
                        counts[f"instance rejected: {why}"] += 1
                        continue
                    seen.add((x.strip(), y.strip()))
                    instances.append((x.strip(), y.strip()))
                if not instances:
                    why = "no instance parsed" if not parsed else "no valid instance"
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
        self.round += 1
        return new_tasks

    def run(self, rounds: int, progress: bool = False) -> Counter:
        """``rounds`` steps; returns the counts."""
        if not isinstance(rounds, int) or rounds < 0:
            raise ValueError(f"rounds must be an int >= 0, got {rounds!r}")
        from tqdm.auto import tqdm
        for _ in tqdm(range(rounds), disable=not progress, desc="self-instruct"):
            self.step()
        return self.counts

    def report(self) -> list[tuple[str, int]]:
        """(stage, count) rows in pipeline order, rejections by reason after their stage."""
        order = ["prompts", "instructions generated"]
        order += sorted(k for k in self.counts if k.startswith("rejected: ") and k[10:] in
                        ("too short", "too long", "keyword", "duplicate", "similar"))
        order += ["instructions passing filters", "classification: yes", "classification: no",
                  "classification: unclear", "instances generated"]
        order += sorted(k for k in self.counts if k.startswith("instance rejected: "))
        order += sorted(k for k in self.counts if k in ("rejected: no instance parsed", "rejected: no valid instance"))
        order += ["tasks kept"]
        return [(k, self.counts.get(k, 0)) for k in order]


def rouge_filter(candidates, pool=(), threshold: float = 0.7) -> tuple[list[str], list[tuple[str, float]]]:
    """The diversity filter alone, incremental as in the loop: a candidate is kept when its
    ROUGE-L with every text in the pool is < threshold, and then joins the pool.
    Returns (kept, [(rejected, its highest ROUGE-L)])."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if isinstance(candidates, str) or isinstance(pool, str):
        raise TypeError("candidates and pool are lists of texts, not single strings")
    index, kept, rejected = RougeIndex(pool), [], []
    for text in candidates:
        best = float(index.scores(text).max()) if len(index) else 0.0
        if best < threshold:
            kept.append(text)
            index.add(text)
        else:
            rejected.append((text, best))
    return kept, rejected
