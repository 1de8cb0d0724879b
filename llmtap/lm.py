"""One interface over causal language models: the course GPT here, Hugging Face models in ``hf.py``.

Every lesson scores and writes text through a ``CausalLM``, so it runs unchanged on either model.
A subclass supplies four primitives:

* ``_encode(text)``   - token ids of a text (no begin-of-text token);
* ``decode(ids)``     - the text of token ids;
* ``logits(x, mask)`` - next-token logits (B, T, vocab) of a right-padded batch;
* ``_generate(rows, ...)`` - the new token ids written after each prompt of a list.

On top of them this class writes scoring once, for every model:

    log P(z | x') = sum over the tokens z_t of z of log P(z_t | x', z_<t)

``CourseLM`` adds one optimisation the course model's KV cache allows: each prompt is read once and
every candidate answer continues from its cached keys and values (``share_context``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .model import GPT, KVCache
from .tokenizer import Tokenizer
from .validate import non_negative_int, one_of, positive_int


class CausalLM:
    """A causal language model and its tokenizer behind one small interface.

    ``unknown`` says what to do with text the tokenizer has no token for: "error" (the default:
    the model never saw it, so its scores would mean nothing) or "bytes" (score it anyway).
    Subclasses set ``max_len`` (the context window, None if unbounded) and the ids
    ``bos_id``, ``eos_id``, ``pad_id``.
    """
    shares_context = False          # can score candidates from one cached reading of the prompt
    max_len: int | None
    bos_id: int | None
    eos_id: int | None
    pad_id: int

    def __init__(self, model, tokenizer, unknown: str = "error"):
        self.model, self.tokenizer = model, tokenizer
        self.unknown = one_of(unknown, "unknown", ("error", "bytes"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__}, context={self.max_len}, device={self.device})"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ the primitives
    def _encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids) -> str:
        raise NotImplementedError

    def logits(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _generate(self, rows: list[list[int]], max_new_tokens: int, temperature: float, top_k: int | None,
                  seed: int) -> list[list[int]]:
        raise NotImplementedError

    # ------------------------------------------------------------------ built on them
    def encode(self, text: str, bos: bool = False) -> list[int]:
        """Token ids of ``text`` (with the begin-of-text token first when ``bos``)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}: {text!r}")
        ids = self._encode(text)
        if bos:
            if self.bos_id is None:
                raise ValueError("this tokenizer has no begin-of-text token, so an empty prompt cannot be "
                                 "scored; give every prompt some text")
            ids = [self.bos_id] + ids
        return ids

    @torch.no_grad()
    def score(self, prompts: list[str], candidates, normalize: bool = False, batch_size: int = 256,
              too_long: str = "error", share_context: bool | None = None) -> torch.Tensor:
        """log P(z | prompt) for each prompt and candidate z, a (n_prompts, n_candidates) tensor.

        The sum over z's tokens is computed for a whole batch at once, never one call per token or
        per candidate. ``candidates`` is one list shared by all prompts or one list per prompt
        (equal lengths). ``normalize=True`` divides by the number of tokens of z (mean
        log-probability per token), so an answer is not penalised just for needing more tokens.
        ``too_long``: "error", or "left" to drop the start of a prompt that does not fit the
        context window (in-context demonstrations go first).

        ``share_context`` (the default where the model can): run each prompt once, keep its keys
        and values in a KV cache and let every candidate continue from it, instead of re-reading
        the prompt for every candidate.
        """
        one_of(too_long, "too_long", ("error", "left"))
        positive_int(batch_size, "batch_size")
        candidates = _as_candidate_lists(prompts, candidates)
        share_context = self.shares_context if share_context is None else share_context
        if share_context and not self.shares_context:
            raise ValueError(f"share_context needs the course model's KV cache; {type(self).__name__} scores "
                             f"each (prompt, candidate) row whole: leave share_context as None")
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
            x, mask = right_padded([ids for ids, _ in chunk], self.pad_id)
            lengths = mask.sum(1)
            is_z = (torch.arange(x.shape[1]) >= (lengths - torch.tensor([n for _, n in chunk]))[:, None]) & mask
            x, mask, is_z = x.to(self.device), mask.to(self.device), is_z.to(self.device)
            logits = self.logits(x, mask.long())[:, :-1]                         # position t predicts t+1
            scores[start:start + len(chunk)] = token_logprobs(logits, x[:, 1:], is_z[:, 1:]).cpu()
        return scores.view(len(contexts), -1)

    def _score_shared(self, contexts, answers, batch_size) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def generate_many(self, prompts: list[str], max_new_tokens: int = 30, temperature: float = 0.0,
                      top_k: int | None = None, seed: int = 0, stop: str | None = None) -> list[str]:
        """The text the model writes after each prompt (greedy when temperature is 0), each cut at ``stop``."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings; for one prompt use generate(prompt)")
        non_negative_int(max_new_tokens, "max_new_tokens")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if top_k is not None:
            positive_int(top_k, "top_k", "or None to keep every token")
        new = self._generate([self.encode(p, bos=True) for p in prompts], max_new_tokens, temperature, top_k, seed)
        texts = [self.decode(ids) for ids in new]
        return [t.split(stop)[0] for t in texts] if stop else texts

    def generate_ids(self, prompts: list[str], max_new_tokens: int = 30) -> list[list[int]]:
        """The new token ids the model writes greedily after each prompt, its end-of-text token
        included where it wrote one (then repeated to the end): whether a model *stops* shows here,
        where decoded text hides it."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings")
        non_negative_int(max_new_tokens, "max_new_tokens")
        return self._generate([self.encode(p, bos=True) for p in prompts], max_new_tokens, 0.0, None, 0)

    def generate(self, prompt: str, max_new_tokens: int = 30, temperature: float = 0.0,
                 top_k: int | None = None, seed: int = 0, stop: str | None = None) -> str:
        """The text the model writes after ``prompt`` (greedy when temperature is 0), cut at ``stop``."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        return self.generate_many([prompt], max_new_tokens, temperature, top_k, seed, stop)[0]


# ----------------------------------------------------------------------------- the course model
class CourseLM(CausalLM):
    """The course ``GPT`` with its character tokenizer (``llmtap.load_course_model()``)."""
    shares_context = True

    def __init__(self, model: GPT, tokenizer: Tokenizer, unknown: str = "error"):
        if not isinstance(model, GPT) or not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"CourseLM takes the course GPT and its llmtap.Tokenizer, got {type(model).__name__} "
                            f"and {type(tokenizer).__name__}; use `model, tokenizer = llmtap.load_course_model()`, "
                            f"or llmtap.hf.HFCausalLM for a Hugging Face model")
        super().__init__(model, tokenizer, unknown)
        self.max_len = model.config.block_size
        self.bos_id, self.eos_id, self.pad_id = tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id

    def _encode(self, text: str) -> list[int]:
        if self.unknown == "error":
            missing = sorted({c for c in text if c not in self.tokenizer.char_to_id})
            if missing:
                raise ValueError(
                    f"the tokenizer has no token for the characters {missing} in {text!r}: the model never "
                    f"saw them. Rewrite the text with characters it knows (for the course model: "
                    f"llmtap.corpus.alphabet()), or build CourseLM(..., unknown='bytes') to score it as raw "
                    f"bytes anyway")
        return self.tokenizer.encode(text)      # unknown characters become their UTF-8 bytes

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids)

    def logits(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # The model is causal: padding after a row's end cannot change the positions before it.
        return self.model(x)[0]

    def _generate(self, rows, max_new_tokens, temperature, top_k, seed) -> list[list[int]]:
        """Prompts of equal token length go through ``GPT.generate`` together, as one batch."""
        by_length = {}
        for i, ids in enumerate(rows):
            by_length.setdefault(len(ids), []).append(i)
        new = [None] * len(rows)
        for idx in by_length.values():
            x = torch.tensor([rows[i] for i in idx], device=self.device)
            generator = torch.Generator(device=self.device).manual_seed(seed)
            out = self.model.generate(x, max_new_tokens, temperature, top_k, eos_id=self.eos_id, generator=generator)
            for i, ids in zip(idx, out[:, x.shape[1]:].tolist()):
                new[i] = ids
        return new

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
                z_ids, is_z = right_padded([z for i in idx for z in answers[i]], self.pad_id)
                z_ids, is_z = z_ids.to(self.device), is_z.to(self.device)
                logits = last.repeat_interleave(n_cand, dim=0)
                if z_ids.shape[1] > 1:    # z's own tokens, reading the shared context from the cache
                    more = self.model(z_ids[:, :-1], cache=cache.repeat_interleave(n_cand))[0]
                    logits = torch.cat([logits, more], dim=1)
                scores[idx] = token_logprobs(logits, z_ids, is_z).view(len(idx), n_cand).cpu()
        return scores


# ----------------------------------------------------------------------------- helpers
def right_padded(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask): the rows left-aligned in one (B, T) tensor, ``pad_id`` after each row's end;
    ``mask`` is True at the real tokens."""
    lengths = torch.tensor([len(r) for r in rows])
    x = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.long)
    for i, ids in enumerate(rows):
        x[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return x, torch.arange(x.shape[1]) < lengths[:, None]


def token_logprobs(logits, targets, keep) -> torch.Tensor:
    """Sum over positions where ``keep`` of log softmax(logits)[target]: (B, T, V), (B, T), (B, T) -> (B,).
    The softmax runs only at the kept positions, not over every padded one."""
    logp = F.log_softmax(logits[keep].float(), dim=-1).gather(-1, targets[keep][:, None]).squeeze(-1)
    row = torch.arange(keep.shape[0], device=keep.device)[:, None].expand_as(keep)[keep]
    return torch.zeros(keep.shape[0], device=logp.device).index_add_(0, row, logp)


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


def check_lm(lm) -> CausalLM:
    """``lm`` if it is a CausalLM, else a TypeError that says how to make one."""
    if not isinstance(lm, CausalLM):
        raise TypeError(f"expected an llmtap.lm.CausalLM, got {type(lm).__name__}; wrap a model as "
                        f"CourseLM(model, tokenizer), or llmtap.hf.as_causal_lm(model, tokenizer) for any model")
    return lm
