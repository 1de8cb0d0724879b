"""The tasks the chapters measure on, in one place for the notebooks and for ``llmtap.experiments``.

* ``mapping_tasks`` - chapter 01's fresh random mappings, demonstrations drawn by a strategy;
* ``TemplateTask`` / ``template_task`` - chapters 02 and 03's fine-tuning task: answer in a
  template the corpus never wrote ('[X]心情[Z]。', '[X] That was [Z].'), trained on seen events,
  tested on events pretraining never wrote;
* ``fine_tune`` - the short fine-tune every method of chapters 02 and 03 gets, and the memory it
  took;
* ``PEFT_METHODS`` - how chapter 03 builds each method from the base model, with its learning rate;
* ``instruction_split`` / ``instruction_scores`` - chapter 05's instruction records, split into
  training and held-out test records, and the answers' exact match and ROUGE-L per task;
  ``reword`` says the training records in ``MORE_WORDINGS`` too.
"""
from __future__ import annotations

import copy
import random
import zlib
from dataclasses import dataclass

import torch

from . import corpus
from .adapters import add_adapters
from .icl import ICLTask, select_demonstrations
from .instruct import Record
from .lm import CourseLM
from .lora import add_lora, lora_plus_param_groups
from .prefix import add_prefix_tuning, add_prompt_tuning
from .prompting import PromptClassifier, Template
from .qlora import QuantLinear, add_qlora
from .rouge import rouge_l
from .sft import format_prompt
from .teach_formats import check_world_instance, recognise_task
from .train import TrainConfig, completion_batches, train
from .validate import one_of, positive_int
from .world import UNTAUGHT_TEMPLATES


def mapping_tasks(k: int, seed: int, n: int = 40, strategy: str = "balanced", lang: str | None = None,
                  query_split: str = "train") -> list[ICLTask]:
    """n fresh random mappings of words to labels with k demonstrations each, drawn with
    ``strategy`` ("balanced" or "random") from the items of 3 random categories; languages
    alternate unless ``lang`` is given. The query is never one of the demonstrations."""
    positive_int(n, "n (tasks)")
    one_of(query_split, "query_split", ("train", "test"))
    rng = random.Random(seed)
    demo_rng = random.Random(f"demonstrations {seed}")   # its own stream: both strategies get the same queries
    tasks = []
    for i in range(n):
        language = lang or corpus.LANGS[i % 2]
        categories = rng.sample(range(len(corpus.CATEGORY_NAMES)), 3)
        labels = rng.sample(corpus.LABEL_WORDS, 3)
        pool = [(item, labels[c]) for c, cat in enumerate(categories) for item in corpus.category_items(cat, language)]
        if query_split == "train":
            query, answer = rng.choice(pool)
        else:
            c = rng.randrange(3)
            query, answer = rng.choice(corpus.category_items(categories[c], language, query_split)), labels[c]
        demos = select_demonstrations(pool, k, demo_rng, strategy, exclude=[query])
        tasks.append(ICLTask(demos, query, answer, labels))
    return tasks


# ----------------------------------------------------------------------------- a new template
NEW_TEMPLATES = UNTAUGHT_TEMPLATES
NEW_VERBALIZERS = {"zh": {"negative": ["不好"], "neutral": ["一般"], "positive": ["好"]},
                   "en": {"negative": ["bad"], "neutral": ["okay"], "positive": ["good"]}}


@dataclass
class TemplateTask:
    """(context, answer) training pairs on seen events, and test events per language."""
    train_pairs: list
    test_sets: dict
    templates: dict
    verbalizers: dict

    def accuracy(self, model, tokenizer) -> dict:
        """{lang: accuracy} of the model answering in the new template on the test events."""
        lm = CourseLM(model.eval(), tokenizer)
        return {lang: PromptClassifier(lm, self.templates[lang], self.verbalizers[lang]).accuracy(
                    [e.text for e in events], [e.label for e in events])
                for lang, events in self.test_sets.items()}


def template_task(n_train: int = 200, n_test: int = 120, test_split: str = "test", seed: int = 0) -> TemplateTask:
    """Chapter 02/03's task: n_train seen events per language answered in the new template, and
    n_test events per language of ``test_split`` ("test": never in pretraining)."""
    positive_int(n_train, "n_train")
    positive_int(n_test, "n_test")
    one_of(test_split, "test_split", ("seen", "test"))
    templates = {lang: Template(t) for lang, t in NEW_TEMPLATES.items()}
    rng = random.Random(seed)
    pairs = []
    for lang in corpus.LANGS:
        for _ in range(n_train):
            e = corpus.sample_event(rng, lang, "train")
            pairs.append(templates[lang].split(e.text, NEW_VERBALIZERS[lang][e.label][0]))   # (context, answer + rest)
    rng = random.Random(seed + 1)
    tests = {lang: [corpus.sample_event(rng, lang, test_split) for _ in range(n_test)] for lang in corpus.LANGS}
    return TemplateTask(pairs, tests, templates, NEW_VERBALIZERS)


def activation_bytes(model, x, y) -> int:
    """Bytes of the activations one training step keeps for its backward pass: every tensor
    autograd saves during the forward pass and the loss (``saved_tensors_hooks``), counted once
    per storage, the model's own parameters left out (they are weights, counted as such)."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x, y)
    return sum(saved.values())


def fine_tune(model, tokenizer, pairs, lr: float, steps: int = 80, seed: int = 0, device=None,
              batch_size: int = 16, param_groups=None) -> dict:
    """``train`` on (context, answer) pairs with the loss on the answer only, and the memory it
    takes, one quantity on every device, counted from the tensors: ``history["memory"]`` = the
    weights + the gradients of the trainable parameters + the optimizer state + the activations
    a step saves for backward (``history["activations"]``). On a GPU ``history["cuda_peak"]`` adds
    what the allocator actually reserved at the peak (temporaries, workspace). The weights include
    4-bit ``QuantLinear`` layers' codes and constants (buffers, not parameters). ``param_groups``:
    the optimizer's groups, each with its own lr (``train``'s; LoRA+)."""
    cfg = TrainConfig(steps=steps, lr=lr, min_lr=lr / 10, warmup_steps=5, log_every=10, progress=False)
    torch.manual_seed(seed)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    history = train(model, completion_batches(tokenizer, pairs, batch_size, seed), cfg, device=device,
                    param_groups=param_groups)
    if device.type == "cuda":
        history["cuda_peak"] = torch.cuda.max_memory_allocated()
    x, y = next(completion_batches(tokenizer, pairs, batch_size, seed))     # one batch of the same shape
    model.train()
    history["activations"] = activation_bytes(model, x.to(device), y.to(device))
    params = {id(p): p for p in model.parameters()}.values()
    weights = sum(p.numel() * p.element_size() for p in params) + sum(
        b.numel() * b.element_size() for m in model.modules() if isinstance(m, QuantLinear) for b in m.buffers())
    grads = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    history["memory"] = weights + grads + history["optimizer_bytes"] + history["activations"]
    return history


# How chapter 03 builds each method from a copy of the base model (its random start drawn from
# the seed), and its learning rate.
PEFT_METHODS = {
    "full fine-tuning": (lambda m, tok, seed: m, 3e-4),
    "LoRA r=4": (lambda m, tok, seed: add_lora(m, ["c_attn", "c_proj", "c_fc"], r=4, alpha=8), 3e-3),
    "adapters m=16": (lambda m, tok, seed: add_adapters(m, bottleneck=16), 1e-2),
    "prefix tuning P=10": (lambda m, tok, seed: add_prefix_tuning(m, n_prefix=10, reparam_hidden=128, seed=seed), 3e-3),
    "prompt tuning n=10": (lambda m, tok, seed: add_prompt_tuning(m, n_tokens=10, init="vocab", tokenizer=tok,
                                                                 seed=seed), 1e-1),
}


def peft_run(name: str, base_model, tokenizer, task: TemplateTask, seed: int = 0, device=None, steps: int = 80):
    """Build method ``name`` on a copy of the base model (its random start drawn from ``seed``)
    and fine-tune it on the task; returns (model, history)."""
    if name not in PEFT_METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {list(PEFT_METHODS)}")
    make, lr = PEFT_METHODS[name]
    torch.manual_seed(seed)                 # LoRA's A and the adapters' W_down come from here
    model = make(copy.deepcopy(base_model), tokenizer, seed)
    return model, fine_tune(model, tokenizer, task.train_pairs, lr, steps, seed, device)


# Chapter 03's soft-prompt starts, 10 tokens each (a text is tiled or cut to 10): Lester et al.'s
# random vectors, sampled vocabulary and class-label words, and a task description (peft's TEXT).
PROMPT_INITS = {"random": {"init": "random"}, "sampled vocabulary": {"init": "vocab"},
                "class-label words": {"init": "text", "init_text": "好一般不好"},
                "task description": {"init": "text", "init_text": "心情好不好？"}}


def prompt_init_run(base_model, tokenizer, task: TemplateTask, init: str, seed: int = 0, device=None, steps: int = 80):
    """Prompt tuning (10 tokens, lr 0.1, as ``PEFT_METHODS``) from the start ``PROMPT_INITS[init]``."""
    if init not in PROMPT_INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {list(PROMPT_INITS)}")
    torch.manual_seed(seed)
    model = add_prompt_tuning(copy.deepcopy(base_model), n_tokens=10, tokenizer=tokenizer, seed=seed,
                              **PROMPT_INITS[init])
    fine_tune(model, tokenizer, task.train_pairs, PEFT_METHODS["prompt tuning n=10"][1], steps, seed, device)
    return model


LORA_TARGETS = ["c_attn", "c_proj", "c_fc"]
RANKS, ALPHAS = (1, 4, 16), (4, 16)

# The LoRA family on chapter 02's task: each one switch away from chapter 02's LoRA (r = 4,
# alpha = 8 on LORA_TARGETS, lr η = 3e-3). r = 64 twice: alpha / r makes a large rank learn
# slowly, rsLoRA's alpha / sqrt(r) is the fix it proposes (Kalajdzievski, 2023). LoRA+ twice:
# η_B = 16 η_A with η_A = η (B then steps at 16 η) and with η_A = η / 10 (lr_scale).
LORA_FAMILY = {
    "LoRA r=4": dict(r=4),
    "LoRA r=64": dict(r=64),
    "rsLoRA r=64": dict(r=64, use_rslora=True),
    "DoRA r=4": dict(r=4, use_dora=True),
    "PiSSA r=4": dict(r=4, init="pissa"),
    "LoRA+ r=4, η_A = η": dict(r=4, lora_plus_ratio=16.0),
    "LoRA+ r=4, η_A = η/10": dict(r=4, lora_plus_ratio=16.0, lr_scale=0.1),
    "QLoRA r=4": dict(r=4, quant="nf4"),
}


def lora_family_run(name: str, base_model, tokenizer, task: TemplateTask, seed: int = 0, device=None,
                    steps: int = 20, lr: float = 3e-3, alpha: float = 8) -> tuple:
    """Member ``name`` of ``LORA_FAMILY`` on a copy of the base model (A's random start drawn from
    ``seed``), fine-tuned ``steps`` steps on the task; returns (model, history)."""
    if name not in LORA_FAMILY:
        raise ValueError(f"unknown method {name!r}; choose one of {list(LORA_FAMILY)}")
    switches = dict(LORA_FAMILY[name])
    ratio, quant = switches.pop("lora_plus_ratio", None), switches.pop("quant", None)
    lr = lr * switches.pop("lr_scale", 1.0)
    torch.manual_seed(seed)
    model = copy.deepcopy(base_model)
    if quant is not None:
        model = add_qlora(model, LORA_TARGETS, alpha=alpha, quant=quant, **switches)
    else:
        model = add_lora(model, LORA_TARGETS, alpha=alpha, **switches)
    # LoRA+: B learns ratio times faster than A; the same weight decay as make_optimizer's
    groups = None if ratio is None else lora_plus_param_groups(model, lr, ratio, TrainConfig.weight_decay)
    return model, fine_tune(model, tokenizer, task.train_pairs, lr, steps, seed, device, param_groups=groups)


def lora_grid_run(base_model, tokenizer, task: TemplateTask, r: int, alpha: float, seed: int = 0, device=None,
                  steps: int = 40, lr: float = 3e-3):
    """Chapter 02's rank / alpha grid, one cell: LoRA (r, alpha) on a copy of the base model (A's
    random start drawn from ``seed``), fine-tuned ``steps`` steps on the task; returns the model."""
    torch.manual_seed(seed)
    model = add_lora(copy.deepcopy(base_model), LORA_TARGETS, r=r, alpha=alpha)
    fine_tune(model, tokenizer, task.train_pairs, lr, steps, seed, device)
    return model


def truncated_update(base_model, fine_tuned, k: int):
    """A copy of ``base_model`` plus ``fine_tuned``'s update, with the update of every weight
    matrix (the embedding table aside) cut to its best rank-k approximation: ΔW ≈ U_k S_k V_kᵀ
    (Eckart-Young), k (d_in + d_out) numbers per matrix, what a rank-k LoRA stores."""
    positive_int(k, "k (rank)")
    model = copy.deepcopy(base_model)
    fine = dict(fine_tuned.named_parameters())
    with torch.no_grad():
        for name, p in model.named_parameters():
            delta = fine[name] - p
            if p.dim() == 2 and name != "wte.weight":
                U, S, Vh = torch.linalg.svd(delta.float().cpu(), full_matrices=False)   # MPS has no SVD
                delta = ((U[:, :k] * S[:k]) @ Vh[:k]).to(p.device)
            p.add_(delta.to(p.dtype))
    return model


def energy_shares(delta: torch.Tensor, ks=(1, 4, 16)) -> dict:
    """{k: share of ‖ΔW‖²_F = Σ σ_i² held by the top k singular values} of a weight update."""
    s = torch.linalg.svdvals(delta.detach().float().cpu())
    energy = (s ** 2).cumsum(0) / (s ** 2).sum()
    return {k: energy[min(k, len(s)) - 1].item() for k in ks}


# ----------------------------------------------------------------------------- chapter 05: instructions
def instruction_split(draws: int = 3000, per_task: int = 25, seed: int = 0) -> tuple[list[Record], list[Record]]:
    """(train, test) records of the corpus instruction tasks.

    ``draws`` contents are drawn (a task, a language, an input or numbers), each said in one of the
    training phrasings of ``corpus.INSTRUCTION_PHRASINGS``; the distinct records are kept. A fixed
    fifth of the contents (by a CRC of their first phrasing, so the split does not depend on the
    draw) is held out: none is ever trained on, in any wording. The test takes ``per_task`` held-out
    contents of each task, each twice: in a training phrasing (``meta["phrasing"] == "seen"``) and
    in the phrasing SFT never trains on ("held out")."""
    positive_int(draws, "draws")
    positive_int(per_task, "per_task")
    rng, unique, held = random.Random(seed), {}, {}
    held_out = lambda key: zlib.crc32("|".join(key).encode()) % 5 == 0
    for _ in range(draws):
        task, state = rng.choice(corpus.INSTRUCTION_TASKS), rng.getstate()
        canonical = corpus.instruction_example(rng, task=task)                # the content in its first wording
        key = (canonical["instruction"], canonical["input"])
        rng.setstate(state)
        r = corpus.instruction_example(rng, task=task, phrasing="train")      # the same content, a training wording
        if not held_out(key):
            unique.setdefault((r["instruction"], r["input"]), Record(**r, meta={"task": task, "phrasing": "seen"}))
        elif key not in held:
            after = rng.getstate()
            rng.setstate(state)
            h = corpus.instruction_example(rng, task=task, phrasing="held out")
            rng.setstate(after)
            held[key] = [Record(**r, meta={"task": task, "phrasing": "seen"}),
                         Record(**h, meta={"task": task, "phrasing": "held out"})]
    by_task = {}
    for pair in held.values():
        by_task.setdefault(pair[0].meta["task"], []).append(pair)
    test = [r for phrasing in (0, 1) for task in corpus.INSTRUCTION_TASKS
            for pair in by_task.get(task, [])[:per_task] for r in pair[phrasing:phrasing + 1]]
    return list(unique.values()), test


# Four more wordings per task and language, written for SFT only: the corpus never says them and
# they are not in the world's phrasings. Diversity (多样性, 5.4) on the instruction side: the same
# contents asked in more ways. T0 (Sanh et al., 2022) trained on more prompts per dataset and
# reported better, steadier zero-shot results. None is closer to its task's held-out wording than
# the world's own training wordings are (ROUGE-L, checked in test_tasks), so the held-out wording
# stays as new to the model as before.
MORE_WORDINGS = {
    "sentiment": {"zh": ("这句话是积极、中性还是消极的？", "判断句子的情感：积极、中性还是消极。",
                         "这句话的情绪属于积极、中性还是消极？", "说出这句话的情感：积极、中性还是消极。"),
                  "en": ("Pick the mood of the sentence: positive, neutral or negative.",
                         "Label the sentence as positive, neutral or negative.",
                         "Which feeling is in this sentence: positive, neutral or negative?",
                         "Decide whether the sentence is positive, neutral or negative.")},
    "category": {"zh": ("这个词属于哪一类的？", "这个词在哪一类里？", "看看这个词属于哪一类。", "这个词是哪类的？"),
                 "en": ("What group does this word belong to?", "Give the group of this word.",
                        "To which group does this word belong?", "Classify this word into its group.")},
    "translate": {"zh": ("写出它的英文。", "把这个词翻成英文。", "它译成英文是？", "用英文写出这个词。"),
                  "en": ("How do you say this word in Chinese?", "Turn this word into Chinese.",
                         "Put this word into Chinese.", "What is the Chinese for this word?")},
    "list": {"zh": ("列出{n}种{name}。", "说{n}种{name}。", "写{n}个{name}。", "列举{n}个{name}。"),
             "en": ("List {n} examples of {name}.", "Give me {n} kinds of {name}.", "Name any {n} examples of {name}.",
                    "Say {n} examples of {name}.")},
    "add": {"zh": ("{a}加上{b}是多少？", "{a}和{b}加起来是多少？", "{a}加{b}的和是多少？", "{a}加{b}一共是多少？"),
            "en": ("What does {a} plus {b} make?", "Find {a} plus {b}.", "Work out {a} plus {b}.",
                   "Give the sum of {a} and {b}.")},
    "reverse": {"zh": ("把这个词倒过来写出来。", "把它倒过来写。", "倒过来写出这个词。", "倒写这个词。"),
                "en": ("Write this word from the end to the start.", "Turn this word backwards.",
                       "Spell this word from its last letter to its first.", "Give this word backwards.")},
}


def reword(records, seed: int = 0, wordings: dict | None = None) -> list[Record]:
    """The training records, each asked again in a wording drawn at random from its task's
    training wordings (``corpus.INSTRUCTION_PHRASINGS`` without the held-out last one) and
    ``wordings`` (default ``MORE_WORDINGS``: seven ways of asking instead of three): the same
    contents and answers. Only training records: one in a task's held-out wording is refused."""
    wordings = MORE_WORDINGS if wordings is None else wordings
    rng, out = random.Random(seed), []
    for i, r in enumerate(records):
        if not isinstance(r, Record):
            raise TypeError(f"record {i} is a {type(r).__name__}; reword takes Records (instruction_split's)")
        found = recognise_task(r.instruction)
        if found is None or found[0] not in corpus.INSTRUCTION_TASKS:
            raise ValueError(f"record {i}'s instruction {r.instruction!r} is not one of the corpus tasks "
                             f"{corpus.INSTRUCTION_TASKS}; reword only says corpus tasks in new words")
        task, lang, values = found
        world = corpus.INSTRUCTION_PHRASINGS[task][lang]
        if r.instruction == world[-1].format(**values):
            raise ValueError(f"record {i} is in the held-out wording {world[-1]!r}; reword only training records, "
                             "or the held-out wording would no longer be new to the test")
        if task not in wordings or lang not in wordings[task]:
            raise ValueError(f"wordings has none for task {task!r} in {lang!r}; give wordings[task][lang]")
        wording = rng.choice(list(world[:-1]) + list(wordings[task][lang]))
        out.append(Record(instruction=wording.format(**values), input=r.input, output=r.output,
                          history=r.history, meta=r.meta))
    return out


INSTRUCTION_METRICS = ("correct", "exact match", "first line", "stops", "ROUGE-L")


def instruction_scores(model, tokenizer, records, max_new_tokens: int = 32, prompts=None) -> tuple[list[str], dict]:
    """(answers, scores) of the model's greedy answers to ``records`` (each with ``meta["task"]``
    and, from ``instruction_split``, ``meta["phrasing"]``).

    An answer is what the model writes up to its <eos> (or ``max_new_tokens``). Per record:

    * "correct": the answer answers the instruction, as the course world checks it
      (``teach_formats.check_world_instance``: any 3 fruits for '列举3种水果。', not only the
      reference's 3); exact match for an instruction that is not a world task;
    * "exact match": the answer is the reference (a model that does not stop fails it);
    * "first line": the answer's first line is the reference (a reader who stops at the newline);
    * "stops": the model wrote <eos> within ``max_new_tokens``;
    * "ROUGE-L": of the first line against the reference.

    ``scores["<metric> <task> <phrasing>"]`` is the mean over the records of that task and
    phrasing ("seen", "held out", or "both"); task "all" is the mean over the tasks. ``prompts``:
    the text the model reads for each record (default ``sft.format_prompt``; chapter 06 passes a
    chat template's)."""
    lm = CourseLM(model.eval(), tokenizer)
    prompts = [format_prompt(r) for r in records] if prompts is None else list(prompts)
    if len(prompts) != len(records):
        raise ValueError(f"got {len(prompts)} prompts for {len(records)} records; give one prompt per record")
    ids = lm.generate_ids(prompts, max_new_tokens)
    answers = [lm.decode(i) for i in ids]
    per_record = []
    for r, a, i in zip(records, answers, ids):
        first = a.split("\n")[0].strip()
        found = recognise_task(r.instruction)
        correct = check_world_instance(*found, r.input, a) is None if found else a.strip() == r.output
        per_record.append({"correct": float(correct), "exact match": float(a.strip() == r.output),
                           "first line": float(first == r.output),
                           "stops": float(lm.eos_id in i), "ROUGE-L": rouge_l(first, r.output)})
    groups = {}
    for r, row in zip(records, per_record):
        phrasing = r.meta.get("phrasing", "seen")
        for key in ((r.meta["task"], phrasing), (r.meta["task"], "both")):
            groups.setdefault(key, []).append(row)
    scores = {}
    for phrasing in ("seen", "held out", "both"):
        tasks = [t for t, p in groups if p == phrasing]
        for m in INSTRUCTION_METRICS:
            means = {t: sum(row[m] for row in groups[t, phrasing]) / len(groups[t, phrasing]) for t in tasks}
            scores.update({f"{m} {t} {phrasing}": v for t, v in means.items()})
            if means:
                scores[f"{m} all {phrasing}"] = sum(means.values()) / len(means)
    return answers, scores