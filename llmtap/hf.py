"""Hugging Face models, as an option the user turns on.

Nothing here downloads anything unless you name a model on the Hub yourself: ``random_gpt2``
builds a small GPT-2 with random weights and a byte-level tokenizer entirely offline, so tests
and lessons can exercise the Hugging Face code path on any machine.

    from llmtap.hf import load_lm
    lm = load_lm("course")              # the course model (the default everywhere)
    lm = load_lm("random-gpt2")         # a random small GPT-2, offline
    lm = load_lm("Qwen/Qwen2.5-0.5B")   # any causal LM on the Hub (downloads; needs internet)

``HFCausalLM`` is the Hugging Face side of ``llmtap.lm.CausalLM``: the same scoring and generation
as the course model, over the model's own tokenizer and ``generate``. transformers is optional and
heavy, so it is imported only inside the functions that need it.
"""
from __future__ import annotations

import torch

from .checkpoints import load_course_model
from .device import pick_device
from .lm import CausalLM, CourseLM
from .model import GPT


def _require_transformers():
    try:
        import transformers  # noqa: F401
    except ImportError as e:
        raise ImportError("this needs Hugging Face transformers: pip install transformers") from e


def byte_tokenizer():
    """A GPT-2-style byte-level tokenizer with no merges: one token per UTF-8 byte, plus
    <|endoftext|> (id 256) as begin, end and padding token. Any string round-trips."""
    _require_transformers()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_chars = pre_tokenizers.ByteLevel.alphabet()     # GPT-2's printable stand-ins for the 256 bytes
    vocab = {c: i for i, c in enumerate(sorted(byte_chars, key=lambda c: _byte_of(c)))}
    vocab["<|endoftext|>"] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def _byte_of(char: str) -> int:
    """The byte GPT-2's byte-to-unicode table maps to ``char`` (so token id i is byte i)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    if ord(char) in printable:
        return ord(char)
    others = [b for b in range(256) if b not in printable]
    return others[ord(char) - 256]


def random_gpt2(n_layer: int = 2, n_head: int = 4, n_embd: int = 64, n_positions: int = 256, seed: int = 0):
    """A Hugging Face ``GPT2LMHeadModel`` with random weights and the byte tokenizer: (model, tokenizer)."""
    _require_transformers()
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = byte_tokenizer()
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                        n_head=n_head, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config).eval(), tokenizer


class HFCausalLM(CausalLM):
    """A Hugging Face causal LM (``AutoModelForCausalLM`` or any model with ``.logits`` and
    ``.generate``) with its tokenizer."""

    def __init__(self, model, tokenizer, unknown: str = "error"):
        if isinstance(model, GPT) or not (hasattr(model, "config") and callable(getattr(tokenizer, "encode", None))):
            raise TypeError("HFCausalLM takes a Hugging Face causal LM and its tokenizer; got "
                            f"{type(model).__name__} and {type(tokenizer).__name__} (for the course GPT use "
                            f"llmtap.lm.CourseLM)")
        super().__init__(model, tokenizer, unknown)
        cfg = model.config
        self.max_len = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
        self.bos_id, self.eos_id = tokenizer.bos_token_id, tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (self.eos_id or 0)

    def _encode(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        unk = self.tokenizer.unk_token_id
        if unk is not None and unk in ids and self.unknown == "error":
            raise ValueError(f"the tokenizer maps part of {text!r} to its unknown token "
                             f"{self.tokenizer.unk_token!r}; remove those characters")
        return ids

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def logits(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=x, attention_mask=attention_mask).logits

    def _generate(self, rows, max_new_tokens, temperature, top_k, seed) -> list[list[int]]:
        """One prompt at a time, through ``model.generate`` (no padding to get wrong)."""
        torch.manual_seed(seed)
        sampling = dict(do_sample=True, temperature=temperature, top_k=top_k or 0) if temperature > 0 \
            else dict(do_sample=False)
        new = []
        for ids in rows:
            x = torch.tensor([ids], device=self.device)
            out = self.model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
                                      pad_token_id=self.pad_id, **sampling)
            new.append(out[0, len(ids):].tolist())
        return new


def as_causal_lm(model, tokenizer=None, **kwargs) -> CausalLM:
    """``model`` if it is a CausalLM already, else the wrapper that fits it: CourseLM for the
    course GPT, HFCausalLM for a Hugging Face model."""
    if isinstance(model, CausalLM):
        return model
    if tokenizer is None:
        raise TypeError("pass the tokenizer too: as_causal_lm(model, tokenizer)")
    return CourseLM(model, tokenizer, **kwargs) if isinstance(model, GPT) else HFCausalLM(model, tokenizer, **kwargs)


def load_lm(name: str = "course", device=None) -> CausalLM:
    """A ``CausalLM`` by name: "course", "random-gpt2", or a Hugging Face model id or local path."""
    if not isinstance(name, str) or not name:
        raise ValueError("name must be 'course', 'random-gpt2' or a Hugging Face model id such as 'gpt2'")
    device = device or pick_device()
    if name == "course":
        model, tokenizer = load_course_model(device)
        return CourseLM(model.eval(), tokenizer)
    if name == "random-gpt2":
        model, tokenizer = random_gpt2()
        return HFCausalLM(model.to(device), tokenizer)
    _require_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer   # optional and heavy: imported on demand
    tokenizer = AutoTokenizer.from_pretrained(name)
    model = AutoModelForCausalLM.from_pretrained(name).to(device).eval()
    return HFCausalLM(model, tokenizer)
