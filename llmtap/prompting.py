"""Scoring text with a causal language model (LLM-TAP 5.1).

``score_continuations`` is the workhorse of answer search: for every prompt x' and every
candidate answer z it computes log P(z | x') = sum over the tokens of z of log P(token | everything
before it), all candidates of a batch of prompts in one padded forward pass.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


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
    return candidates


@torch.no_grad()
def score_continuations(model, tokenizer, prompts: list[str], candidates, normalize: bool = False,
                        batch_size: int = 512) -> torch.Tensor:
    """log P(z | prompt) for each prompt and candidate, as a (n_prompts, n_candidates) tensor.

    ``candidates`` is one list shared by all prompts or one list per prompt (same length each).
    ``normalize=True`` divides by the number of tokens of z (the mean log-probability per token),
    which stops long answers from losing only because they have more tokens to pay for.
    """
    candidates = _as_candidate_lists(prompts, candidates)
    n_cand = len(candidates[0])
    if any(len(c) != n_cand for c in candidates):
        raise ValueError("every prompt needs the same number of candidates")
    limit = getattr(getattr(model, "config", None), "block_size", None)
    rows, spans = [], []
    for p, cands in zip(prompts, candidates):
        p_ids = tokenizer.encode(p, bos=True)
        for z in cands:
            z_ids = tokenizer.encode(z)
            ids = p_ids + z_ids
            if limit is not None and len(ids) > limit:     # keep the end of a too-long prompt
                ids = ids[-limit:]
            rows.append(ids)
            spans.append(len(z_ids))
    device = next(model.parameters()).device
    scores = torch.empty(len(rows))
    for start in range(0, len(rows), batch_size):
        chunk, span = rows[start:start + batch_size], spans[start:start + batch_size]
        T = max(map(len, chunk))
        x = torch.full((len(chunk), T), tokenizer.pad_id, dtype=torch.long)
        cont = torch.zeros(len(chunk), T, dtype=torch.bool)     # marks positions of z's tokens
        for i, (ids, n) in enumerate(zip(chunk, span)):
            x[i, :len(ids)] = torch.tensor(ids)
            cont[i, len(ids) - n:len(ids)] = True
        x, cont = x.to(device), cont.to(device)
        logits, _ = model(x)
        logp = F.log_softmax(logits[:, :-1].float(), dim=-1)            # predicts token t+1
        token_logp = logp.gather(-1, x[:, 1:, None]).squeeze(-1)
        mask = cont[:, 1:]
        s = (token_logp * mask).sum(-1)
        if normalize:
            s = s / mask.sum(-1)
        scores[start:start + len(chunk)] = s.cpu()
    return scores.view(len(prompts), n_cand)
