"""Prompt learning and in-context learning (LLM-TAP 5.1).

Prompt learning classifies x in three steps, in the seed's notation:

1. **prompt addition**: a ``Template`` with an input slot [X] and an answer slot [Z] turns x into
   the prompt x' = f_prompt(x), e.g. "[X]我感到[Z]。" -> "我错过了公共汽车。我感到[Z]。";
2. **answer search**: every answer z of the answer space Z is filled in, f_fill(x', z), and the
   language model scores the filled prompt; the best one is  ẑ = argmax_z P(f_fill(x', z); θ);
3. **answer mapping**: a ``Verbalizer`` maps ẑ to the label y (太好了 -> positive).

In-context learning writes k demonstrations (x_i, y_i) in front of the query and reads the
answer off the model: forward passes only, no parameter is updated.

Everything goes through ``CausalLM``: one interface (encode / score / generate) over the course
model and any Hugging Face causal LM, so every lesson runs unchanged on either.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .model import GPT, KVCache
from .tokenizer import Tokenizer


# ----------------------------------------------------------------------------- one interface
class CausalLM:
    """A causal language model and its tokenizer behind one small interface.

    ``model`` is the course ``GPT`` (with an ``llmtap.Tokenizer``) or a Hugging Face causal LM
    (with its tokenizer). ``unknown`` says what to do with characters the tokenizer has no token
    for: "error" (the default: the model never saw them, so its scores would mean nothing) or
    "bytes" (the course tokenizer spells them as raw bytes and carries on).
    """

    def __init__(self, model, tokenizer, unknown: str = "error"):
        if unknown not in ("error", "bytes"):
            raise ValueError(f"unknown must be 'error' or 'bytes', got {unknown!r}")
        self.model, self.tokenizer, self.unknown = model, tokenizer, unknown
        self.is_course_model = isinstance(model, GPT)
        if self.is_course_model:
            if not isinstance(tokenizer, Tokenizer):
                raise TypeError("the course GPT needs an llmtap.Tokenizer; "
                                "use `model, tokenizer = llmtap.load_course_model()`")
            self.max_len = model.config.block_size
            self.bos_id, self.eos_id, self.pad_id = tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id
        else:
            if not (hasattr(model, "config") and callable(getattr(tokenizer, "encode", None))):
                raise TypeError("model must be an llmtap GPT or a Hugging Face causal LM, and tokenizer "
                                f"its tokenizer; got {type(model).__name__} and {type(tokenizer).__name__}")
            cfg = model.config
            self.max_len = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
            self.bos_id, self.eos_id = tokenizer.bos_token_id, tokenizer.eos_token_id
            self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (self.eos_id or 0)

    def __repr__(self) -> str:
        return f"CausalLM({type(self.model).__name__}, context={self.max_len}, device={self.device})"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, text: str, bos: bool = False) -> list[int]:
        """Token ids of ``text`` (with the begin-of-text token first when ``bos``)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}: {text!r}")
        if self.is_course_model:
            if self.unknown == "error":
                missing = sorted({c for c in text if c not in self.tokenizer.char_to_id})
                if missing:
                    raise ValueError(
                        f"the tokenizer has no token for the characters {missing} in {text!r}: the model never "
                        f"saw them. Rewrite the text with characters it knows (for the course model: "
                        f"llmtap.corpus.alphabet()), or build "
                        f"CausalLM(..., unknown='bytes') to score it as raw bytes anyway")
            return self.tokenizer.encode(text, bos=bos)
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        unk = self.tokenizer.unk_token_id
        if unk is not None and unk in ids and self.unknown == "error":
            raise ValueError(f"the tokenizer maps part of {text!r} to its unknown token "
                             f"{self.tokenizer.unk_token!r}; remove those characters")
        if bos:
            if self.bos_id is None:
                raise ValueError("this tokenizer has no begin-of-text token, so an empty prompt cannot be "
                                 "scored; give every prompt some text")
            ids = [self.bos_id] + ids
        return ids

    def decode(self, ids) -> str:
        if self.is_course_model:
            return self.tokenizer.decode(ids)
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def logits(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, vocab) of right-padded ids ``x``. The course model is causal,
        so padding after a row's end cannot change the positions before it; HF models get the mask."""
        if self.is_course_model:
            return self.model(x)[0]
        return self.model(input_ids=x, attention_mask=attention_mask).logits

    @torch.no_grad()
    def score(self, prompts: list[str], candidates, normalize: bool = False, batch_size: int = 256,
              too_long: str = "error", share_context: bool | None = None) -> torch.Tensor:
        """log P(z | prompt) for each prompt and candidate z, a (n_prompts, n_candidates) tensor.

        log P(z | x') = sum over the tokens z_t of z of log P(z_t | x', z_<t), computed for a whole
        batch at once, never one call per token or per candidate. ``candidates`` is one list shared
        by all prompts or one list per prompt (equal lengths). ``normalize=True`` divides by the
        number of tokens of z (mean log-probability per token), so an answer is not penalised
        just for needing more tokens. ``too_long``: "error", or "left" to drop the start of a
        prompt that does not fit the context window (in-context demonstrations go first).

        ``share_context`` (the default for the course model): run each prompt once, keep its keys
        and values in a KV cache and let every candidate continue from it, instead of re-reading
        the prompt for every candidate; Hugging Face models score each (prompt, candidate) row whole.
        """
        if too_long not in ("error", "left"):
            raise ValueError(f"too_long must be 'error' or 'left', got {too_long!r}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        candidates = _as_candidate_lists(prompts, candidates)
        share_context = self.is_course_model if share_context is None else share_context
        if share_context and not self.is_course_model:
            raise ValueError("share_context needs the course model's KV cache; leave it as None for HF models")
        contexts, answers = [], []
        for p, cands in zip(prompts, candidates):
            c_ids, z_ids = self.encode(p, bos=True), [self.encode(z) for z in cands]
            longest = len(c_ids) + max(map(len, z_ids))
            if self.max_len is not None and longest > self.max_len:
                if too_long == "error":
                    raise ValueError(
                        f"prompt + answer is {longest} tokens but the model's context holds {self.max_len} "
                        f"(prompt starts {p[:40]!r}); use fewer demonstrations or shorter inputs, or "
                        f"too_long='left' to drop the start of the prompt")
                c_ids = c_ids[longest - self.max_len:]
            contexts.append(c_ids)
            answers.append(z_ids)
        score_rows = self._score_shared if share_context else self._score_rows
        scores = score_rows(contexts, answers, batch_size)
        if normalize:
            scores = scores / torch.tensor([[len(z) for z in zs] for zs in answers], dtype=scores.dtype)
        return scores

    def _score_rows(self, contexts, answers, batch_size) -> torch.Tensor:
        """Every (context, candidate) pair as one right-padded row; logits read at z's positions."""
        rows = [(c + z, len(z)) for c, zs in zip(contexts, answers) for z in zs]
        scores = torch.empty(len(rows))
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            lengths = torch.tensor([len(ids) for ids, _ in chunk])
            x = torch.full((len(chunk), int(lengths.max())), self.pad_id, dtype=torch.long)
            for i, (ids, _) in enumerate(chunk):
                x[i, :len(ids)] = torch.tensor(ids)
            pos = torch.arange(x.shape[1])
            mask = pos < lengths[:, None]                                               # real tokens
            is_z = (pos >= (lengths - torch.tensor([n for _, n in chunk]))[:, None]) & mask   # tokens of z
            x, mask, is_z = x.to(self.device), mask.to(self.device), is_z.to(self.device)
            logits = self.logits(x, mask.long())[:, :-1]                         # position t predicts t+1
            scores[start:start + len(chunk)] = _token_logprobs(logits, x[:, 1:], is_z[:, 1:]).cpu()
        return scores.view(len(contexts), -1)

    def _score_shared(self, contexts, answers, batch_size) -> torch.Tensor:
        """Contexts of equal length go through the model together, once; their KV cache is then
        repeated for the candidates, which only run their own few tokens."""
        n_cand = len(answers[0])
        scores = torch.empty(len(contexts), n_cand)
        by_length = {}
        for i, c in enumerate(contexts):
            by_length.setdefault(len(c), []).append(i)
        per_batch = max(1, batch_size // n_cand)
        for group in by_length.values():
            for start in range(0, len(group), per_batch):
                idx = group[start:start + per_batch]
                ctx = torch.tensor([contexts[i] for i in idx], device=self.device)
                cache = KVCache(self.model.config.n_layer)
                last = self.model(ctx, cache=cache)[0][:, -1:]                  # predicts z's first token
                zs = [z for i in idx for z in answers[i]]
                Z = max(map(len, zs))
                z_ids = torch.full((len(zs), Z), self.pad_id, dtype=torch.long)
                for r, z in enumerate(zs):
                    z_ids[r, :len(z)] = torch.tensor(z)
                z_ids = z_ids.to(self.device)
                is_z = z_ids.new_tensor([[t < len(z) for t in range(Z)] for z in zs], dtype=torch.bool)
                logits = last.repeat_interleave(n_cand, dim=0)
                if Z > 1:    # z's own tokens, reading the shared context from the cache
                    more = self.model(z_ids[:, :-1], cache=cache.repeat_interleave(n_cand))[0]
                    logits = torch.cat([logits, more], dim=1)
                scores[idx] = _token_logprobs(logits, z_ids, is_z).view(len(idx), n_cand).cpu()
        return scores

    @torch.no_grad()
    def generate(self, prompt: str, max_new_tokens: int = 30, temperature: float = 0.0,
                 top_k: int | None = None, seed: int = 0, stop: str | None = None) -> str:
        """The text the model writes after ``prompt`` (greedy when temperature is 0), cut at ``stop``."""
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        ids = self.encode(prompt, bos=True)
        x = torch.tensor([ids], device=self.device)
        if self.is_course_model:
            gen = torch.Generator(device=self.device).manual_seed(seed)
            out = self.model.generate(x, max_new_tokens, temperature, top_k, eos_id=self.eos_id, generator=gen)
        else:
            torch.manual_seed(seed)
            sampling = dict(do_sample=True, temperature=temperature, top_k=top_k or 0) if temperature > 0 \
                else dict(do_sample=False)
            out = self.model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
                                      pad_token_id=self.pad_id, **sampling)
        text = self.decode(out[0, len(ids):].tolist())
        return text.split(stop)[0] if stop else text


def _token_logprobs(logits, targets, keep) -> torch.Tensor:
    """Sum over positions where ``keep`` of log softmax(logits)[target]: (B, T, V), (B, T), (B, T) -> (B,).
    The softmax runs only at the kept positions, not over every padded one."""
    logp = F.log_softmax(logits[keep].float(), dim=-1).gather(-1, targets[keep][:, None]).squeeze(-1)
    row = torch.arange(keep.shape[0], device=keep.device)[:, None].expand_as(keep)[keep]
    return torch.zeros(keep.shape[0], device=logp.device).index_add_(0, row, logp)


def as_causal_lm(model, tokenizer=None, **kwargs) -> CausalLM:
    """``model`` if it is a CausalLM already, else CausalLM(model, tokenizer)."""
    if isinstance(model, CausalLM):
        return model
    if tokenizer is None:
        raise TypeError("pass the tokenizer too: as_causal_lm(model, tokenizer)")
    return CausalLM(model, tokenizer, **kwargs)


def score_continuations(model, tokenizer, prompts, candidates, normalize: bool = False, batch_size: int = 256,
                        too_long: str = "error") -> torch.Tensor:
    """``CausalLM(model, tokenizer, unknown='bytes').score(...)``: log P(z | prompt) for every pair."""
    return CausalLM(model, tokenizer, unknown="bytes").score(prompts, candidates, normalize, batch_size, too_long)


def _as_candidate_lists(prompts, candidates):
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, not one string")
    if not prompts:
        raise ValueError("prompts is empty")
    if isinstance(candidates, str):
        raise TypeError("candidates must be a list of strings (or one list per prompt), not one string")
    if candidates and isinstance(candidates[0], str):
        candidates = [list(candidates)] * len(prompts)
    if len(candidates) != len(prompts):
        raise ValueError(f"got {len(prompts)} prompts but {len(candidates)} candidate lists")
    for c in candidates:
        if not c:
            raise ValueError("every prompt needs at least one candidate answer")
        if any(not isinstance(z, str) or z == "" for z in c):
            raise ValueError(f"candidates must be non-empty strings, got {c}")
    if any(len(c) != len(candidates[0]) for c in candidates):
        raise ValueError("every prompt needs the same number of candidates")
    return candidates


# ----------------------------------------------------------------------------- step 1: prompt addition
class Template:
    """A prompt template: an input slot [X] and an answer slot [Z], each exactly once.

    >>> t = Template("[X]我感到[Z]。")
    >>> t.prompt("我错过了公共汽车。")           # x' = f_prompt(x)
    '我错过了公共汽车。我感到[Z]。'
    >>> t.fill("我错过了公共汽车。", "糟糕")      # f_fill(x', z)
    '我错过了公共汽车。我感到糟糕。'
    """
    X, Z = "[X]", "[Z]"

    def __init__(self, text: str):
        if isinstance(text, Template):
            text = text.text
        if not isinstance(text, str):
            raise TypeError(f"a template is a str such as '[X]我感到[Z]。', got {type(text).__name__}")
        for slot, what in ((self.X, "input"), (self.Z, "answer")):
            n = text.count(slot)
            if n != 1:
                raise ValueError(f"template {text!r} has {n} {what} slots {slot}; it needs exactly one, "
                                 f"e.g. '[X]我感到[Z]。' or '[X] I feel [Z].'")
        self.text = text

    def __repr__(self) -> str:
        return f"Template({self.text!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Template) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def prompt(self, x: str) -> str:
        """x' = f_prompt(x): the input filled in, the answer slot still open."""
        return self.text.replace(self.X, _check_input(x))

    def fill(self, x: str, z: str) -> str:
        """f_fill(x', z): the prompt with answer z in its slot."""
        return self.prompt(x).replace(self.Z, z)

    def split(self, x: str, z: str) -> tuple[str, str]:
        """(context, continuation) of f_fill(x', z): the text before the answer slot, and the rest.

        The context is the same for every z, so log P(f_fill(x', z)) = log P(context) +
        log P(continuation | context) ranks answers exactly as log P(continuation | context) does.
        """
        before, after = self.text.split(self.Z)
        x = _check_input(x)
        return before.replace(self.X, x), z + after.replace(self.X, x)


def _check_input(x) -> str:
    if not isinstance(x, str):
        raise TypeError(f"an input x must be a str, got {type(x).__name__}: {x!r}")
    if not x.strip():
        raise ValueError("an input x is empty; give the sentence to classify")
    return x


def check_answer_space(answers) -> list[str]:
    """The answer space Z as a list: non-empty, distinct, non-empty strings."""
    if isinstance(answers, str):
        raise TypeError(f"the answer space is a list of answers such as ['好', '一般', '不好'], not one string {answers!r}")
    answers = list(answers)
    if not answers:
        raise ValueError("the answer space Z is empty; give at least two answers, e.g. ['好', '一般', '不好']")
    bad = [z for z in answers if not isinstance(z, str) or not z]
    if bad:
        raise ValueError(f"every answer must be a non-empty str, got {bad}")
    repeated = sorted({z for z in answers if answers.count(z) > 1})
    if repeated:
        raise ValueError(f"the answer space lists {repeated} more than once")
    return answers


# ----------------------------------------------------------------------------- step 2: answer search
def answer_search(lm: CausalLM, template, xs: list[str], answers, normalize: bool = False):
    """Score every z in Z for every x: returns (best answers ẑ, scores of shape (len(xs), |Z|)).

    scores[i, j] = log P(continuation_j | context_i), the log-probability of the filled prompt
    up to a term that is the same for every answer; ``normalize`` divides by its token count.
    """
    template, answers = Template(template), check_answer_space(answers)
    if isinstance(xs, str):
        raise TypeError("xs must be a list of inputs; wrap a single sentence as [x]")
    pairs = [[template.split(x, z) for z in answers] for x in xs]
    contexts = [row[0][0] for row in pairs]
    scores = as_causal_lm(lm).score(contexts, [[cont for _, cont in row] for row in pairs], normalize)
    return [answers[j] for j in scores.argmax(-1).tolist()], scores


# ----------------------------------------------------------------------------- step 3: answer mapping
class Verbalizer:
    """Answer mapping: each label and the answers that stand for it.

    >>> v = Verbalizer({"positive": ["太好了", "好"], "neutral": ["一般"], "negative": ["不好", "糟糕"]})
    >>> v.answers, v.label_of("糟糕")
    (['太好了', '好', '一般', '不好', '糟糕'], 'negative')
    """

    def __init__(self, label_words: dict):
        if not isinstance(label_words, dict) or not label_words:
            raise ValueError("a verbalizer is a non-empty dict label -> answers, "
                             "e.g. {'positive': ['好'], 'neutral': ['一般'], 'negative': ['不好']}")
        self.labels, self.answers, self._label_of = [], [], {}
        for label, words in label_words.items():
            words = [words] if isinstance(words, str) else list(words)
            if not words:
                raise ValueError(f"label {label!r} has no answers; give it at least one")
            for z in words:
                if z in self._label_of:
                    raise ValueError(f"answer {z!r} is mapped to two labels, {self._label_of[z]!r} and {label!r}; "
                                     f"an answer must stand for one label only")
                self._label_of[z] = label
                self.answers.append(z)
            self.labels.append(label)
        check_answer_space(self.answers)

    def __repr__(self) -> str:
        groups = {y: [z for z in self.answers if self._label_of[z] == y] for y in self.labels}
        return f"Verbalizer({groups})"

    def label_of(self, z: str) -> str:
        if z not in self._label_of:
            raise KeyError(f"{z!r} is not in the answer space {self.answers}")
        return self._label_of[z]

    def label_probs(self, answer_scores: torch.Tensor, aggregate: str = "max") -> torch.Tensor:
        """(n, |Z|) answer scores -> (n, n_labels) label probabilities.

        The answer scores become P(z | x) = softmax over Z; a label gets the largest ("max": its
        argmax is exactly the label of ẑ) or the total ("sum") probability of its answers,
        renormalised over the labels.
        """
        if aggregate not in ("max", "sum"):
            raise ValueError(f"aggregate must be 'max' or 'sum', got {aggregate!r}")
        if answer_scores.dim() != 2 or answer_scores.shape[1] != len(self.answers):
            raise ValueError(f"expected scores of shape (n, {len(self.answers)}), got {tuple(answer_scores.shape)}")
        p = answer_scores.float().softmax(-1)
        cols = [[j for j, z in enumerate(self.answers) if self._label_of[z] == y] for y in self.labels]
        per_label = torch.stack([p[:, c].amax(-1) if aggregate == "max" else p[:, c].sum(-1) for c in cols], -1)
        return per_label / per_label.sum(-1, keepdim=True)


class PromptClassifier:
    """The three steps together: template, answer search over the verbalizer's answers, mapping."""

    def __init__(self, lm: CausalLM, template, verbalizer, normalize: bool = False, aggregate: str = "max"):
        self.lm, self.template = as_causal_lm(lm), Template(template)
        self.verbalizer = verbalizer if isinstance(verbalizer, Verbalizer) else Verbalizer(verbalizer)
        self.normalize, self.aggregate = normalize, aggregate

    def predict_proba(self, xs: list[str]) -> torch.Tensor:
        """(len(xs), n_labels) probabilities, columns in the order of ``verbalizer.labels``."""
        _, scores = answer_search(self.lm, self.template, xs, self.verbalizer.answers, self.normalize)
        return self.verbalizer.label_probs(scores, self.aggregate)

    def predict(self, xs: list[str]) -> list[str]:
        return [self.verbalizer.labels[j] for j in self.predict_proba(xs).argmax(-1).tolist()]

    def accuracy(self, xs: list[str], ys: list[str]) -> float:
        if len(xs) != len(ys) or not xs:
            raise ValueError(f"need as many labels as inputs (and at least one), got {len(xs)} and {len(ys)}")
        unknown = sorted(set(ys) - set(self.verbalizer.labels))
        if unknown:
            raise ValueError(f"labels {unknown} are not among the verbalizer's labels {self.verbalizer.labels}")
        return sum(p == y for p, y in zip(self.predict(xs), ys)) / len(xs)


# ----------------------------------------------------------------------------- in-context learning
ICL_TEMPLATE = Template("[X]→[Z]")     # the format of the corpus' mapping sequences


@dataclass
class ICLTask:
    """k demonstrations (x_i, y_i), a query, its gold label, and the label set to choose from."""
    demos: list
    query: str
    answer: str
    labels: list


def icl_prompt(demos, query: str, template=ICL_TEMPLATE, sep: str = "\n") -> str:
    """The k-shot prompt: each demonstration filled into the template, then the query with its
    answer slot open, e.g. '苹果→甲\\n猫→乙\\n梨→' for the template '[X]→[Z]'."""
    template = Template(template)
    shots = "".join(template.fill(x, y) + sep for x, y in demos)
    return shots + template.split(query, "")[0]


def select_demonstrations(pool, k: int, rng: random.Random, strategy: str = "random", exclude=()) -> list:
    """k (x, y) pairs from ``pool``: "random" draws without replacement; "balanced" cycles through
    the labels (in a shuffled order) so that every label appears before any repeats."""
    if strategy not in ("random", "balanced"):
        raise ValueError(f"strategy must be 'random' or 'balanced', got {strategy!r}")
    exclude = set(exclude)
    pool = [(x, y) for x, y in pool if x not in exclude]
    if not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be an int >= 0, got {k!r}")
    if k > len(pool):
        raise ValueError(f"k = {k} demonstrations asked for, but the pool has only {len(pool)}; "
                         f"lower k or add demonstrations")
    if strategy == "random":
        return rng.sample(pool, k)
    by_label = {}
    for x, y in rng.sample(pool, len(pool)):
        by_label.setdefault(y, []).append((x, y))
    labels = list(by_label)
    out = []
    while len(out) < k:
        rng.shuffle(labels)
        for y in labels:
            if by_label[y] and len(out) < k:
                out.append(by_label[y].pop())
    rng.shuffle(out)
    return out


def perturb_labels(task, mode: str, rng: random.Random) -> ICLTask:
    """The task with its demonstrations' labels changed; the query's gold label stays the same.

    "flipped": labels are permuted (every label becomes a different one) consistently across
    the demonstrations; "random": each demonstration gets a label drawn uniformly from the set.
    """
    labels = list(task.labels)
    if mode == "flipped":
        perm = labels[1:] + labels[:1]             # a cyclic shift: no label keeps its place
        swap = dict(zip(labels, perm))
        demos = [(x, swap[y]) for x, y in task.demos]
    elif mode == "random":
        demos = [(x, rng.choice(labels)) for x, _ in task.demos]
    elif mode == "gold":
        demos = list(task.demos)
    else:
        raise ValueError(f"mode must be 'gold', 'flipped' or 'random', got {mode!r}")
    return ICLTask(demos, task.query, task.answer, labels)


def icl_predict(lm: CausalLM, tasks, template=ICL_TEMPLATE, sep: str = "\n") -> list[str]:
    """The label each task's k-shot prompt makes most likely (one batched forward pass)."""
    tasks = list(tasks)
    if not tasks:
        raise ValueError("tasks is empty")
    template = Template(template)
    prompts = [icl_prompt(t.demos, t.query, template, sep) for t in tasks]
    suffix = template.split("x", "")[1]     # what follows the answer slot, e.g. '。'
    scores = as_causal_lm(lm).score(prompts, [[y + suffix for y in t.labels] for t in tasks])
    return [t.labels[j] for t, j in zip(tasks, scores.argmax(-1).tolist())]


def icl_accuracy(lm: CausalLM, tasks, template=ICL_TEMPLATE, sep: str = "\n") -> float:
    tasks = list(tasks)
    return sum(p == t.answer for p, t in zip(icl_predict(lm, tasks, template, sep), tasks)) / max(1, len(tasks))


def icl_curve(lm: CausalLM, make_tasks, ks=range(9), seeds=range(5), **kwargs) -> dict:
    """Accuracy versus k over several seeds: {k: [accuracy for each seed]}.

    ``make_tasks(k, seed)`` returns the list of tasks to score for that k and seed, so each seed
    draws its own demonstrations and queries and the spread over seeds shows how much depends on
    which demonstrations happened to be picked."""
    return {k: [icl_accuracy(lm, make_tasks(k, s), **kwargs) for s in seeds] for k in ks}
