"""NEFTune: noise on the input embeddings while fine-tuning (Jain et al., 2023, "NEFTune: Noisy
Embeddings Improve Instruction Finetuning").

During training only, every input embedding gets uniform noise scaled by the sequence's size:

    X_emb <- X_emb + (alpha / sqrt(L d)) * eps,    eps ~ Uniform(-1, 1)^(L x d)

with L the sequence length and d the embedding dimension (the paper's Algorithm 1; alpha = 5, 10
or 15 there). The scale keeps the noise's expected norm about alpha / sqrt(3) for the whole
sequence, whatever its length: each entry has variance (alpha^2 / (L d)) / 3, summed over L d
entries. At evaluation (``model.eval()``) nothing is added.

What L is in a padded batch. Hugging Face transformers (``neftune_noise_alpha``) and the
paper's reference snippet take the padded length: L = T for every row, pad positions noised too.
Here that is ``pad_id=None``. Given the ``pad_id``, this module does what the adversarial-training
code NEFTune takes its scaling rule from does (FreeLB, Zhu et al., 2020): L is the count of real
tokens of each row, and pad positions get no noise, so a short row is not under-noised because the
batch's longest row is long. In a packed batch (``llmtap.packing``) L is then the row's real
tokens, all its examples together.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .validate import non_negative_int, positive_number


class NEFTune:
    """The handle ``add_neftune`` returns: ``.remove()`` takes the noise off again. Also a context
    manager (``with add_neftune(model): train(...)``) that removes it on leaving."""

    def __init__(self, embedding: nn.Embedding, alpha: float, pad_id: int | None, generator: torch.Generator | None):
        self.embedding, self.alpha, self.pad_id, self.generator = embedding, alpha, pad_id, generator
        self._hook = embedding.register_forward_hook(self._add_noise)
        embedding.neftune = self

    def _add_noise(self, module, inputs, output):
        if not module.training:                       # noise while training only
            return output
        idx = inputs[0]
        B, T, d = output.shape
        if self.pad_id is None:
            real = torch.ones(B, T, 1, device=output.device, dtype=output.dtype)
            length = torch.full((B,), T, device=output.device, dtype=output.dtype)   # L = T, as HF does
        else:
            real = (idx != self.pad_id).to(output.dtype)[..., None]                   # (B, T, 1): 0 at padding
            length = real.sum(dim=(1, 2)).clamp(min=1)                                # L = real tokens of each row
        scale = self.alpha / torch.sqrt(length * d)                                   # alpha / sqrt(L d)
        eps = torch.rand(output.shape, generator=self.generator, device=output.device, dtype=output.dtype) * 2 - 1
        return output + eps * scale[:, None, None] * real                             # eps ~ U(-1, 1)

    def remove(self) -> None:
        """Stop adding noise (safe to call twice)."""
        self._hook.remove()
        if getattr(self.embedding, "neftune", None) is self:
            del self.embedding.neftune

    def __enter__(self) -> "NEFTune":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def add_neftune(model: nn.Module, alpha: float = 5.0, pad_id: int | None = None,
                generator: torch.Generator | None = None) -> NEFTune:
    """Add NEFTune noise, alpha / sqrt(L d) * Uniform(-1, 1), to ``model``'s token embeddings
    while it is in training mode; returns the handle whose ``.remove()`` undoes it.

    The noise goes on the output of the token-embedding layer (``model.wte`` of the course GPT,
    ``get_input_embeddings()`` of a Hugging Face model) through a forward hook, before position
    embeddings are added. ``pad_id``: count only real tokens in L and leave padding alone (see the
    module's notes); None takes the padded length, as transformers does. ``generator`` makes the
    noise reproducible (it must live on the model's device)."""
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else getattr(model, "wte", None)
    if not isinstance(embedding, nn.Embedding):
        raise TypeError(f"found no token-embedding layer on {type(model).__name__}: NEFTune needs model.wte or "
                        f"model.get_input_embeddings() to be an nn.Embedding")
    positive_number(alpha, "alpha", meaning="the noise scale; the paper uses 5, 10 or 15")
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}")
    if pad_id is not None:
        non_negative_int(pad_id, "pad_id", hint="or None to count padding in L as transformers does")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if getattr(embedding, "neftune", None) is not None:
        raise ValueError("this model already has NEFTune noise; call .remove() on the first handle "
                         "before adding another")
    return NEFTune(embedding, float(alpha), pad_id, generator)
