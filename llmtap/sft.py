"""Supervised fine-tuning (监督微调, SFT, LLM-TAP 5.5) of the course model on instruction records.

A record (``llmtap.instruct.Record``) becomes a prompt and a response:

    Instruction: <instruction>
    Input: <input>            (only when there is one)
    Response: <output><eos>

and the loss is computed on the response tokens only: the labels of the prompt are -100, which
the cross-entropy ignores (``llmtap.train.collate_completions`` builds the batches). The model
learns to answer, not to reproduce the instruction, and the <eos> teaches it where to stop.
"""
from __future__ import annotations

import random

import torch

from .device import pick_device
from .chat import assistant_turns, collate_chat, render, token_mask
from .instruct import Record, check_records
from .lm import check_lm
from .lora import add_lora
from .neftune import add_neftune
from .packing import pack
from .tokenizer import Tokenizer
from .train import TrainConfig, completion_batches, train


def format_prompt(record: Record) -> str:
    """The text the model reads before answering:

        Instruction: <instruction>
        Input: <input>            (only when there is one)
        Response:

    (earlier turns of a conversation first, each as Instruction/Response lines)."""
    if not isinstance(record, Record):
        raise TypeError(f"format_prompt takes a Record, got {type(record).__name__}")
    turns = "".join(f"Instruction: {u}\nResponse: {a}\n" for u, a in record.history)
    input_line = f"Input: {record.input}\n" if record.input else ""
    return f"{turns}Instruction: {record.instruction}\n{input_line}Response: "


def sft_pairs(records) -> list[tuple[str, str]]:
    """(prompt, response) text pairs for ``completion_batches``. A record with an empty output
    would teach only to stop at once: it is an error, to be dropped by an explicit rule."""
    records = check_records(records)
    for i, r in enumerate(records):
        if not r.output.strip():
            raise ValueError(f"record {i} ({r.instruction[:40]!r}) has an empty output, which teaches the model to "
                             f"say nothing; leave such records out with records.drop(llmtap.instruct.empty_output, "
                             f"'empty output')")
    return [(format_prompt(r), r.output) for r in records]


def encode_sft(records, tokenizer: Tokenizer, max_len: int | None = None) -> list[tuple[list, list]]:
    """(prompt ids with <bos>, response ids with <eos>) for each record; a pair longer than
    ``max_len`` tokens raises ValueError naming the record."""
    if not isinstance(tokenizer, Tokenizer):
        raise TypeError("encode_sft needs the course tokenizer (llmtap.Tokenizer)")
    out = []
    for i, (prompt, response) in enumerate(sft_pairs(records)):
        p, c = tokenizer.encode(prompt, bos=True), tokenizer.encode(response, eos=True)
        if max_len is not None and len(p) + len(c) - 1 > max_len:
            raise ValueError(f"record {i} ({prompt[:40]!r}) is {len(p) + len(c) - 1} tokens, more than the "
                             f"context of {max_len}; shorten it or leave it out")
        out.append((p, c))
    return out


def sft(model, tokenizer: Tokenizer, records, cfg: TrainConfig | None = None, batch_size: int = 16,
        lora: dict | None = None, seed: int = 0, device=None, on_log=None, mask_prompt: bool = True,
        eos: bool = True, group_by_length: bool = False, collate=None) -> dict:
    """Supervised fine-tuning of the course model on ``records``, the loss on response tokens only.

    Two switches show what the usual choices do: ``mask_prompt=False`` puts the loss on the
    prompt's tokens too (``labels = input_ids``); ``eos=False`` leaves <eos> off the responses, so
    the model is never shown where an answer ends. ``group_by_length=True`` batches records of
    similar length together (``completion_batches``): far less padding, but on the corpus tasks a
    batch then holds mostly one task. Measured on chapter 05's SFT (5 seeds): 2.3 times faster, and
    feelings fall from 98 ± 2% to 84 ± 11% on held-out contents, so it is off by default. ``collate(rows,
    pad_id) -> (x, y)`` builds the batches instead of ``llmtap.train.collate_completions``.

    Full fine-tuning by default; ``lora={"target_modules": [...], "r": 8, "alpha": 16}`` first wraps
    those layers with LoRA (``llmtap.lora.add_lora``) and trains only them. ``model`` is changed
    in place; returns the training history of ``llmtap.train.train``."""
    records = check_records(records)
    if not records:
        raise ValueError("records is empty; give at least one Record to fine-tune on")
    if lora is not None:
        if not isinstance(lora, dict) or "target_modules" not in lora:
            raise ValueError("lora must be a dict with 'target_modules' (and optionally 'r', 'alpha', 'dropout')")
        add_lora(model, **lora)
    encode_sft(records, tokenizer, max_len=model.config.block_size)      # refuses over-long records
    cfg = cfg or TrainConfig(steps=200, lr=1e-3, min_lr=1e-4, warmup_steps=10, log_every=20, progress=False)
    torch.manual_seed(seed)
    batches = completion_batches(tokenizer, sft_pairs(records), batch_size, seed, eos=eos, mask_prompt=mask_prompt,
                                 group_by_length=group_by_length, collate=collate)
    return train(model, batches, cfg, on_log=on_log, device=device)


def generate_responses(lm, records, max_new_tokens: int = 24) -> list[str]:
    """The model's greedy answer to each record's prompt, up to <eos> or a newline
    (``CausalLM.generate_many``: the course model answers prompts of equal token length together)."""
    lm = check_lm(lm)
    return lm.generate_many([format_prompt(r) for r in check_records(records)], max_new_tokens, stop="\n")


# ----------------------------------------------------------------------------- chat templates (chapter 06)
CHAT_TEMPLATE = "human-assistant"     # the textbook companion's layout: Human: ... / Assistant: ...<eos>
PACKING = (None, "packed", "naive")


def record_messages(record: Record) -> list[dict]:
    """A single-turn record as chat messages: the user says the instruction (and its input on the
    next line), the assistant the output."""
    if not isinstance(record, Record):
        raise TypeError(f"record_messages takes a Record, got {type(record).__name__}")
    user = record.instruction + (f"\n{record.input}" if record.input else "")
    return [{"role": "user", "content": user}, {"role": "assistant", "content": record.output}]


def chat_prompt(record: Record, template: str = CHAT_TEMPLATE) -> str:
    """What the model reads before it answers: the user's turn and the template's generation prompt."""
    return render(record_messages(record)[:1], template, add_generation_prompt=True).text


def chat_rows(records, tokenizer: Tokenizer, template: str = CHAT_TEMPLATE) -> list[tuple[list, list]]:
    """(ids, mask) per record, rendered with ``template``: <bos>, then the conversation; mask marks
    the assistant's tokens (the answer and its <eos>), the ones a batch builder trains on."""
    rows = []
    for r in check_records(records):
        ids, mask = token_mask(render(record_messages(r), template), tokenizer)
        rows.append(([tokenizer.bos_id] + ids, [False] + mask))
    return rows


def completion_pair(ids, mask) -> tuple[list, list]:
    """A single-turn (ids, mask) row as (prompt_ids, completion_ids), the pair ``llmtap.packing.pack``
    takes: the completion is the assistant turn with its <eos>; the template's text after it (a
    newline) is never a target, so it is left out."""
    start, end = assistant_turns(mask)[0]
    return ids[:start], ids[start:end]


def chat_batches(rows, batch_size: int, seed: int, pad_id: int, bug: str | None = None,
                 packing: str | None = None, block_size: int = 256, collate=None, shuffle: bool = True):
    """Endless batches of ``batch_size`` rows drawn at random: padded (x, y) from ``collate_chat``
    (``bug`` one of ``chat.BUGS`` to see its effect; "pad-is-eos" pads with ``pad_id``, give the
    eos id to show it), or the same rows packed into ``block_size`` rows (``packing="packed"``: the
    block-diagonal mask and positions reset per example; ``"naive"``: one long row, the leak).
    ``collate(rows, pad_id) -> (x, y)`` builds the padded batches instead of ``collate_chat`` (a
    student's own labels, say).

    ``shuffle=False`` keeps the file's order inside a batch, as a packer that fills its rows with
    the examples in the order it reads them: the rows are cut into runs of ``batch_size``
    neighbours and only the runs are shuffled (anew each epoch), so neighbours in the file are
    neighbours in a packed row."""
    rows = list(rows)
    if not rows:
        raise ValueError("rows is empty; give the (ids, mask) rows of chat_rows()")
    if not isinstance(shuffle, bool):
        raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
    if packing not in PACKING:
        raise ValueError(f"packing must be one of {PACKING}, got {packing!r}")
    if packing is not None and (bug is not None or collate is not None):
        raise ValueError("packing builds its labels from (prompt, completion) pairs; show a bug or use your own "
                         "collate with packing=None")
    if collate is not None and not callable(collate):
        raise TypeError(f"collate must be callable as collate(rows, pad_id) -> (x, y), got {type(collate).__name__}")
    rng = random.Random(seed)
    runs = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    while True:
        if shuffle:
            batches = [[rows[rng.randrange(len(rows))] for _ in range(batch_size)]]
        else:
            batches = rng.sample(runs, len(runs))
        for drawn in batches:
            if collate is not None:
                yield collate(drawn, pad_id)
            elif packing is None:
                yield collate_chat(drawn, pad_id, bug=bug)
            else:
                yield pack([completion_pair(*row) for row in drawn], block_size, pad_id, naive=packing == "naive")


def chat_sft(model, tokenizer: Tokenizer, records, cfg: TrainConfig | None = None, template: str = CHAT_TEMPLATE,
             batch_size: int = 16, seed: int = 0, device=None, bug: str | None = None, packing: str | None = None,
             neftune_alpha: float | None = None, collate=None, shuffle: bool = True) -> dict:
    """Supervised fine-tuning on ``records`` rendered as chats with ``template``, the loss on the
    assistant's tokens. The switches of chapter 06: ``bug`` (one of ``llmtap.chat.BUGS``; with
    "pad-is-eos" the batches are padded with the <eos> id, as when a tokenizer's pad token is its
    eos), ``packing`` ("packed" or "naive", see ``chat_batches``), ``neftune_alpha`` (noise on the
    embeddings while training, ``llmtap.neftune``), ``collate`` and ``shuffle`` (see ``chat_batches``). Returns
    ``llmtap.train.train``'s history."""
    rows = chat_rows(records, tokenizer, template)
    longest = max(len(ids) for ids, _ in rows) - 1
    if longest > model.config.block_size:
        raise ValueError(f"the longest rendered record takes {longest} positions, more than the model's "
                         f"{model.config.block_size}; shorten it or leave it out")
    pad_id = tokenizer.eos_id if bug == "pad-is-eos" else tokenizer.pad_id
    cfg = cfg or TrainConfig(steps=200, lr=1e-3, min_lr=1e-4, warmup_steps=10, log_every=20, progress=False)
    torch.manual_seed(seed)
    batches = chat_batches(rows, batch_size, seed, pad_id, bug, packing, model.config.block_size, collate, shuffle)
    noise, device = None, pick_device() if device is None else torch.device(device)
    if neftune_alpha is not None:        # the noise's generator lives where the model will train
        model.to(device)
        noise = add_neftune(model, neftune_alpha, pad_id=tokenizer.pad_id,
                            generator=torch.Generator(device=model.device).manual_seed(seed))
    try:
        return train(model, batches, cfg, device=device)
    finally:
        if noise is not None:
            noise.remove()
