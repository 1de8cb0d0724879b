"""Instruction data (指令数据, LLM-TAP 5.4-5.5): records and the formats people ship them in.

A record is an instruction (指令), an optional input (输入) and the output (输出):

    Record("把这个词翻译成英文。", "苹果", "apple")

Readers and writers for the single-turn formats are here; conversations (ShareGPT, the
``messages`` layout, OpenAssistant trees) are in ``llmtap.conversations``, which turns them
into records for fine-tuning.

=========  ======================================================  ============================
format     one example is                                          read / write
=========  ======================================================  ============================
Alpaca     {"instruction", "input", "output"} in a JSON list       read_alpaca / write_alpaca
JSONL      the same object, one per line                           read_jsonl / write_jsonl
Dolly      {"instruction", "context", "response", "category"}      read_dolly / write_dolly
=========  ======================================================  ============================

Every reader takes a JSON list or JSON lines (gzip-compressed too, as ``.gz``), in one pass:
the 52k-record Alpaca file reads in about a second. A malformed example raises ``FormatError``
naming the file, the line and the item's index. With ``on_error="skip"`` the reader goes on and
returns, in ``records.skipped``, every example it left out and every repair it made (a trailing
comma, a missing one, text after the list), each with where and why: nothing is dropped
silently. Keys a reader does not know are kept in ``Record.meta`` and written back.

Real files hold examples that are well-formed but not worth training on, such as the 28 Alpaca
records whose output is empty: they load, and ``Records.drop`` leaves them out by a rule you
name, counted in ``.skipped`` like the rest.

Supervised fine-tuning on these records is in ``llmtap.sft``; ``llmtap.self_instruct`` generates
new instructions from a few seed tasks.
"""
from __future__ import annotations

import gzip
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path


class FormatError(ValueError):
    """An example of an instruction-data file that cannot be read; the message names file and line."""


# ----------------------------------------------------------------------------- the record
@dataclass(frozen=True)
class Record:
    """One instruction example. ``history``: earlier (user, assistant) turns of a conversation;
    ``meta``: anything else the source had (category, language, message id)."""
    instruction: str
    input: str
    output: str
    history: tuple = ()
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        for name in ("instruction", "input", "output"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str, got {type(value).__name__}: {value!r}")
        if not self.instruction.strip():
            raise ValueError("the instruction is empty; every record needs a task to do")
        history = tuple(tuple(turn) for turn in self.history)
        if any(len(t) != 2 or not all(isinstance(s, str) for s in t) for t in history):
            raise ValueError("history must be a list of (user, assistant) string pairs")
        object.__setattr__(self, "history", history)
        if not isinstance(self.meta, dict):
            raise TypeError(f"meta must be a dict, got {type(self.meta).__name__}")

    def to_dict(self) -> dict:
        """{"instruction", "input", "output"} (and "history" when there is one)."""
        d = {"instruction": self.instruction, "input": self.input, "output": self.output}
        if self.history:
            d["history"] = [list(t) for t in self.history]
        return d


@dataclass(frozen=True)
class Skipped:
    """An example a reader left out, or a repair it made: where it was (file, line, item) and why."""
    where: str
    reason: str


class Records(list):
    """A list of ``Record`` with ``skipped``: the examples a reader in skip mode left out."""

    def __init__(self, records=(), skipped=()):
        super().__init__(records)
        self.skipped = list(skipped)

    def drop(self, rule, reason: str) -> "Records":
        """The records for which ``rule(record)`` is false; the others join ``.skipped`` with
        ``reason``, e.g. ``records.drop(empty_output, "empty output")``."""
        if not callable(rule):
            raise TypeError(f"rule must be a function of a Record returning True to drop it, got {rule!r}")
        kept = Records(skipped=self.skipped)
        for i, r in enumerate(self):
            if rule(r):
                kept.skipped.append(Skipped(f"record {i}", f"{reason}: {r.instruction[:40]!r}"))
            else:
                kept.append(r)
        return kept


def empty_output(record: Record) -> bool:
    """A rule for ``Records.drop``: the output is empty or only white space."""
    return not record.output.strip()


# ----------------------------------------------------------------------------- reading
def read_text(path, encoding: str = "utf-8") -> str:
    """The text of ``path`` (gzip-compressed when it ends in .gz), a leading byte-order mark
    dropped. Bytes that are not ``encoding`` raise ``FormatError`` naming the file and the byte
    offset, and suggesting the encoding that does read it when one of the usual ones does."""
    path = Path(path)
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        works = [enc for enc in ("utf-8", "gb18030", "big5", "utf-16") if enc != encoding and _decodes(data, enc)]
        hint = f"it reads as {works[0]}: pass encoding={works[0]!r}" if works else "pass its encoding as encoding="
        raise FormatError(f"{path}: byte {e.start} ({data[e.start:e.start + 1]!r}) is not valid {encoding} "
                          f"({e.reason}); {hint}") from None
    except LookupError:
        raise ValueError(f"unknown encoding {encoding!r}; use a Python codec name such as 'utf-8' or 'gb18030'") from None
    return text[1:] if text.startswith("\ufeff") else text


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
        return True
    except UnicodeDecodeError:
        return False


@dataclass(frozen=True)
class Where:
    """Where an example sits in its file: the line it starts on and its index (0-based) among the
    file's examples."""
    path: Path
    line: int
    item: int | None

    def __str__(self):
        return f"{self.path}, line {self.line}" + ("" if self.item is None else f" (item {self.item})")


def _rows(path: Path, text: str):
    """(Where, JSON value) for each example of a JSON-list or JSON-lines file, in one pass.
    A syntax error is a ``(Where, FormatError)`` pair, so that skip mode can go on after it."""
    start = _skip_space(text, 0)
    if start == len(text):
        raise FormatError(f"{path} is empty: there is no example to read")
    if text[start] != "[":
        yield from _json_lines(path, text)
    else:
        yield from _json_list(path, text, start)


def _json_lines(path: Path, text: str):
    item = 0
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield Where(path, n, item), json.loads(line)
        except json.JSONDecodeError as e:
            if n == 1 and line.lstrip().startswith("{") and _one_json_value(text):
                raise FormatError(f"{path} holds a single JSON object over several lines; a reader expects a "
                                  f"JSON list [{{...}}, {{...}}] or one JSON object per line") from None
            yield Where(path, n, item), FormatError(f"not valid JSON ({e.msg}, column {e.colno})")
        item += 1


def _one_json_value(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except json.JSONDecodeError:
        return False


# Where the next item of a JSON list can start, after a bad one: a comma, then an object or a list.
_NEXT_ITEM = re.compile(r",\s*(?=[\[{])")


def _json_list(path: Path, text: str, start: int):
    """Items of a JSON list, decoded one at a time. Line numbers are counted as the position moves
    on (counting from the start for every item would make a 50k-item file quadratic)."""
    decoder = json.JSONDecoder()
    line, counted = 1 + text.count("\n", 0, start), start      # newlines before `counted` are in `line`

    def where(pos):
        nonlocal line, counted
        line += text.count("\n", counted, pos)
        counted = pos
        return Where(path, line, item)

    pos, item = _skip_space(text, start + 1), 0
    if pos < len(text) and text[pos] == "]":
        raise FormatError(f"{path} holds an empty JSON list: there is no example to read")
    while True:
        if pos >= len(text):                              # the items read so far are kept in skip mode
            yield where(pos), FormatError("the JSON list is not closed with ']' (is the file cut short?)")
            return
        try:
            value, end = decoder.raw_decode(text, pos)
            yield where(pos), value
        except json.JSONDecodeError as e:
            # a bad item: report it, then go on at the next place an item can start
            here = where(pos)
            resync = _NEXT_ITEM.search(text, e.pos)
            end = resync.start() if resync else len(text)
            yield here, FormatError(f"not valid JSON ({e.msg}, line {e.lineno} column {e.colno})")
            if resync is None:
                return
        item += 1
        pos = _skip_space(text, end)
        if pos < len(text) and text[pos] == "]":
            break
        if pos < len(text) and text[pos] == ",":
            pos = _skip_space(text, pos + 1)
            if pos < len(text) and text[pos] == "]":
                yield where(pos), FormatError(f"a trailing comma after item {item - 1}: JSON allows no ',' "
                                              f"before ']'; delete it (every item was read)")
                break
        elif pos < len(text):                              # read the next item as if the comma were there
            yield where(pos), FormatError(f"expected ',' or ']' after item {item - 1}, found "
                                          f"{text[pos:pos + 20]!r} (the item after it was read)")
    rest = _skip_space(text, pos + 1)
    if rest < len(text):
        item = None                                        # not an item of the list
        yield where(rest), FormatError(
            f"text after the end of the JSON list, not read: {text[rest:rest + 30]!r}"
            + ("; two JSON lists in one file? join them into one, or write JSON lines" if text[rest] == "[" else ""))


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _check_path(path, on_error: str, format_name: str) -> Path:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {format_name} file at {path}")
    return path


def _fail(where, reason, on_error, skipped, format_name) -> None:
    if on_error == "raise":
        raise FormatError(f"{where}: {reason} (in {format_name} format; pass on_error='skip' to read the "
                          f"rest and get the bad ones in .skipped)")
    skipped.append(Skipped(str(where), reason))


def _done(path, records, skipped):
    if skipped:
        warnings.warn(f"{path}: skipped {len(skipped)} bad example(s); see .skipped for where and why",
                      stacklevel=3)
    records.skipped = list(skipped)
    return records


def read_rows(path, on_error: str = "raise", encoding: str = "utf-8", format_name: str = "JSON"):
    """(Where, value) for every example of a JSON-list or JSON-lines file, the bad ones reported
    (raise) or collected in the returned list's ``.skipped`` (skip). The readers are built on it."""
    path = _check_path(path, on_error, format_name)
    rows, skipped = [], []
    for where, row in _rows(path, read_text(path, encoding)):
        if isinstance(row, Exception):
            _fail(where, str(row), on_error, skipped, format_name)
        else:
            rows.append((where, row))
    return rows, skipped


def _read(path, parse, on_error: str, encoding: str, format_name: str) -> Records:
    rows, skipped = read_rows(path, on_error, encoding, format_name)
    records = []
    for where, row in rows:
        try:
            records.extend(parse(row))
        except (ValueError, TypeError) as e:
            _fail(where, str(e), on_error, skipped, format_name)
    return _done(path, Records(records), skipped)


# keys that give away another format, and the reader for it
_FORMAT_HINTS = (("conversations", "ShareGPT: llmtap.conversations.read_sharegpt"),
                 ("messages", "the messages layout: llmtap.conversations.read_messages"),
                 ("message_id", "OpenAssistant: llmtap.conversations.read_oasst"),
                 ("prompt", "OpenAssistant trees: llmtap.conversations.read_oasst"),
                 ("response", "Dolly: llmtap.instruct.read_dolly"),
                 ("output", "Alpaca / JSONL: llmtap.instruct.read_alpaca or read_jsonl"))


def _object(row, keys) -> dict:
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object with keys {keys}, got {type(row).__name__}")
    missing = [k for k in keys if k not in row]
    if missing:
        hint = next((f"; it looks like {fmt}" for key, fmt in _FORMAT_HINTS if key in row and key not in keys), "")
        raise ValueError(f"missing key(s) {missing} (has {sorted(row)}){hint}")
    return row


def _others(row: dict, known) -> dict:
    """The keys of a row that a format does not define: kept in ``meta``, written back."""
    return {k: v for k, v in row.items() if k not in known}


ALPACA_KEYS = ("instruction", "input", "output", "history")


def _from_alpaca(row) -> list[Record]:
    row = _object(row, ["instruction", "output"])
    return [Record(row["instruction"], row.get("input", "") or "", row["output"], row.get("history") or (),
                   meta=_others(row, ALPACA_KEYS))]


def read_alpaca(path, on_error: str = "raise", encoding: str = "utf-8") -> Records:
    """Alpaca: a JSON list of {"instruction", "input", "output"} ("input" may be missing or "";
    LLaMA-Factory's "history" of earlier turns is read too; other keys go to ``meta``)."""
    return _read(path, _from_alpaca, on_error, encoding, "Alpaca")


def read_jsonl(path, on_error: str = "raise", encoding: str = "utf-8") -> Records:
    """JSON lines of {"instruction", "input", "output"}, the same fields as Alpaca."""
    return _read(path, _from_alpaca, on_error, encoding, "JSONL")


DOLLY_KEYS = ("instruction", "context", "response")


def _from_dolly(row) -> list[Record]:
    row = _object(row, list(DOLLY_KEYS))
    return [Record(row["instruction"], row["context"] or "", row["response"], meta=_others(row, DOLLY_KEYS))]


def read_dolly(path, on_error: str = "raise", encoding: str = "utf-8") -> Records:
    """Dolly: {"instruction", "context", "response", "category"}; context becomes the input,
    category (and any other key) goes to ``meta``."""
    return _read(path, _from_dolly, on_error, encoding, "Dolly")


# ----------------------------------------------------------------------------- writing
def check_records(records) -> list[Record]:
    """``records`` as a list, or a TypeError naming the first item that is not a ``Record``."""
    records = list(records)
    bad = [i for i, r in enumerate(records) if not isinstance(r, Record)]
    if bad:
        raise TypeError(f"record {bad[0]} is a {type(records[bad[0]]).__name__}, not a Record; "
                        f"build them as Record(instruction, input, output)")
    return records


def write_json(items, path, lines: bool) -> Path:
    """``items`` as a JSON list (indented, as Alpaca ships) or as JSON lines, in UTF-8."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if lines:
        text = "".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items)
    else:
        text = json.dumps(items, ensure_ascii=False, indent=2) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def _alpaca_row(r: Record) -> dict:
    return {**r.to_dict(), **_others(r.meta, ALPACA_KEYS)}


def write_alpaca(records, path) -> Path:
    return write_json([_alpaca_row(r) for r in check_records(records)], path, lines=False)


def write_jsonl(records, path) -> Path:
    return write_json([_alpaca_row(r) for r in check_records(records)], path, lines=True)


def write_dolly(records, path) -> Path:
    """Dolly JSON lines; a record's history has no place in Dolly and raises ValueError."""
    records = check_records(records)
    if any(r.history for r in records):
        raise ValueError("Dolly has no conversation history; write these records as Alpaca (its 'history') "
                         "or as conversations (llmtap.conversations)")
    return write_json([{"instruction": r.instruction, "context": r.input, "response": r.output,
                        "category": "", **_others(r.meta, DOLLY_KEYS)} for r in records], path, lines=True)
