"""Hugging Face models, as an option the user turns on.

Nothing here downloads anything unless you name a model on the Hub yourself: ``random_gpt2``
builds a small GPT-2 with random weights and a byte-level tokenizer entirely offline, so tests
and lessons can exercise the Hugging Face code path on any machine.

    from llmtap.hf import load_lm
    lm = load_lm("course")              # the course model (the default everywhere)
    lm = load_lm("random-gpt2")         # a random small GPT-2, offline
    lm = load_lm("Qwen/Qwen2.5-0.5B")   # any causal LM on the Hub (downloads; needs internet)
"""
from __future__ import annotations

import torch


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


def load_lm(name: str = "course", device=None):
    """A ``CausalLM`` by name: "course", "random-gpt2", or a Hugging Face model id or local path."""
    from .prompting import CausalLM
    from .train import pick_device

    if not isinstance(name, str) or not name:
        raise ValueError("name must be 'course', 'random-gpt2' or a Hugging Face model id such as 'gpt2'")
    device = device or pick_device()
    if name == "course":
        from . import load_course_model
        model, tokenizer = load_course_model(device)
        return CausalLM(model.eval(), tokenizer)
    if name == "random-gpt2":
        model, tokenizer = random_gpt2()
        return CausalLM(model.to(device), tokenizer)
    _require_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(name)
    model = AutoModelForCausalLM.from_pretrained(name).to(device).eval()
    return CausalLM(model, tokenizer)
