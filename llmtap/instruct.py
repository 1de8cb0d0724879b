"""Instruction data (指令数据, LLM-TAP 5.4-5.5): records and the formats people ship them in.

A record is an instruction (指令), an optional input (输入) and the output (输出):

    Record("把这个词翻译成英文。", "苹果", "apple")

Readers and writers cover the common formats:

=========  ======================================================  ============================
format     one example is                                          read / write
=========  ======================================================  ============================
Alpaca     {"instruction", "input", "output"} in a JSON list       read_alpaca / write_alpaca
JSONL      the same object, one per line                           read_jsonl / write_jsonl
Dolly      {"instruction", "context", "response", "category"}      read_dolly / write_dolly
ShareGPT   {"conversations": [{"from": "human"|"gpt", "value"}]}   read_sharegpt / write_sharegpt
OASST      message rows {"message_id", "parent_id", "role", "text"} read_oasst / write_oasst
=========  ======================================================  ============================

Every reader takes a JSON list or JSON lines. A malformed example raises ``FormatError`` naming
the file and the line. With ``on_error="skip"`` the reader goes on and returns, in
``records.skipped``, every example it left out and why: nothing is dropped silently.

Conversations (ShareGPT, OASST) give **one record per assistant turn**: the turn's user message
is the instruction, its reply the output, and the turns before it the record's ``history``.
An OASST tree (rebuilt from ``parent_id``) with several replies to a message gives one record
per reply, each with the history of its own path from the root. The chat formats have no input
field: their writers put a record's input after its instruction, following a blank line.

Supervised fine-tuning on these records is in ``llmtap.sft``; ``llmtap.self_instruct`` generates
new instructions from a few seed tasks.
"""
from __future__ import annotations

import json
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
        if not self.output.strip():
            raise ValueError(f"the output of {self.instruction[:40]!r} is empty; a record without an answer "
                             f"teaches nothing")
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
    """An example a reader left out: where it was (file and line) and why."""
    where: str
    reason: str


class Records(list):
    """A list of ``Record`` with ``skipped``: the examples a reader in skip mode left out."""

    def __init__(self, records=(), skipped=()):
        super().__init__(records)
        self.skipped = list(skipped)


# ----------------------------------------------------------------------------- reading
def _rows(path: Path):
    """(line number, JSON value) for each example of a JSON-list or JSON-lines file.
    A syntax error is a ``(line, FormatError)`` pair, so that skip mode can go on."""
    text = path.read_text(encoding="utf-8")
    start = len(text) - len(text.lstrip())
    if text[start:start + 1] != "[":                         # JSON lines
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                yield n, FormatError(f"not valid JSON ({e.msg}, column {e.colno})")
        return
    decoder, pos, first = json.JSONDecoder(), start + 1, True   # a JSON list, read item by item
    while True:
        pos = _skip_space(text, pos)
        line = text.count("\n", 0, pos) + 1
        if pos >= len(text):
            raise FormatError(f"{path}, line {line}: the JSON list is not closed with ']'")
        if text[pos] == "]":
            return
        if not first:                                        # items are separated by commas
            if text[pos] != ",":
                raise FormatError(f"{path}, line {line}: expected ',' or ']' between list items")
            pos = _skip_space(text, pos + 1)
            line = text.count("\n", 0, pos) + 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:                    # cannot find the next item: stop here
            raise FormatError(f"{path}, line {e.lineno}: not valid JSON ({e.msg}, column {e.colno})") from None
        first = False
        yield line, value


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


def _fail(path, line, reason, on_error, skipped, format_name) -> None:
    if on_error == "raise":
        raise FormatError(f"{path}, line {line}: {reason} (in {format_name} format; pass "
                          f"on_error='skip' to read the rest and get the bad ones in .skipped)")
    skipped.append(Skipped(f"{path}, line {line}", reason))


def _done(path, records, skipped) -> Records:
    if skipped:
        warnings.warn(f"{path}: skipped {len(skipped)} bad example(s); see .skipped for where and why",
                      stacklevel=3)
    return Records(records, skipped)


def _read(path, parse, on_error: str, format_name: str) -> Records:
    path = _check_path(path, on_error, format_name)
    records, skipped = [], []
    for line, row in _rows(path):
        try:
            if isinstance(row, Exception):
                raise row
            records.extend(parse(row))
        except (ValueError, TypeError) as e:
            _fail(path, line, str(e), on_error, skipped, format_name)
    return _done(path, records, skipped)


def _object(row, keys) -> dict:
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object with keys {keys}, got {type(row).__name__}")
    missing = [k for k in keys if k not in row]
    if missing:
        raise ValueError(f"missing key(s) {missing} (has {sorted(row)})")
    return row


def _from_alpaca(row) -> list[Record]:
    row = _object(row, ["instruction", "output"])
    return [Record(row["instruction"], row.get("input", "") or "", row["output"], row.get("history", ()))]


def read_alpaca(path, on_error: str = "raise") -> Records:
    """Alpaca: a JSON list of {"instruction", "input", "output"} ("input" may be missing or "")."""
    return _read(path, _from_alpaca, on_error, "Alpaca")


def read_jsonl(path, on_error: str = "raise") -> Records:
    """JSON lines of {"instruction", "input", "output"}, the same fields as Alpaca."""
    return _read(path, _from_alpaca, on_error, "JSONL")


def _from_dolly(row) -> list[Record]:
    row = _object(row, ["instruction", "context", "response"])
    return [Record(row["instruction"], row["context"] or "", row["response"],
                   meta={"category": row.get("category", "")})]


def read_dolly(path, on_error: str = "raise") -> Records:
    """Dolly: {"instruction", "context", "response", "category"}; context becomes the input."""
    return _read(path, _from_dolly, on_error, "Dolly")


USER_ROLES, ASSISTANT_ROLES = ("human", "user"), ("gpt", "assistant", "chatgpt")


def _dialogue_records(turns, meta) -> list[Record]:
    """(role, text) turns, user and assistant alternating -> one record per assistant turn."""
    records, history = [], []
    expect_user = True
    for k, (role, text) in enumerate(turns):
        if not isinstance(text, str):
            raise ValueError(f"turn {k} has no text string (got {type(text).__name__})")
        if (role == "user") != expect_user:
            raise ValueError(f"turn {k} is by the {role} but the {'user' if expect_user else 'assistant'} "
                             f"should speak: turns must alternate, user first")
        if role == "assistant":
            user = turns[k - 1][1]
            records.append(Record(user, "", text, tuple(history), dict(meta)))
            history.append((user, text))
        expect_user = not expect_user
    if not records:
        raise ValueError("the conversation has no assistant turn")
    if not expect_user:
        raise ValueError(f"the conversation ends with an unanswered user turn ({turns[-1][1][:40]!r})")
    return records


def _from_sharegpt(row) -> list[Record]:
    row = _object(row, ["conversations"])
    turns, system = [], ""
    if not isinstance(row["conversations"], list):
        raise ValueError("'conversations' must be a list of {'from', 'value'} turns")
    for k, turn in enumerate(row["conversations"]):
        turn = _object(turn, ["from", "value"])
        who = turn["from"]
        if who == "system":
            system = turn["value"]
        elif who in USER_ROLES or who in ASSISTANT_ROLES:
            turns.append(("user" if who in USER_ROLES else "assistant", turn["value"]))
        else:
            raise ValueError(f"turn {k} is from {who!r}; expected one of {USER_ROLES + ASSISTANT_ROLES + ('system',)}")
    meta = {"id": row.get("id", "")}
    if system:
        meta["system"] = system
    return _dialogue_records(turns, meta)


def read_sharegpt(path, on_error: str = "raise") -> Records:
    """ShareGPT: {"id", "conversations": [{"from": "human"|"gpt"|"system", "value"}]};
    one record per "gpt" turn, the turns before it in ``history``."""
    return _read(path, _from_sharegpt, on_error, "ShareGPT")


def read_oasst(path, on_error: str = "raise") -> Records:
    """OpenAssistant message rows {"message_id", "parent_id", "role", "text", "lang"}.

    Trees are rebuilt from ``parent_id`` (null for the first prompt); every assistant message
    gives one record, its history the path from the root to it. A row whose parent is missing
    (or was skipped) is an error naming its line."""
    path = _check_path(path, on_error, "OASST")
    rows, skipped = {}, []
    for line, row in _rows(path):
        try:
            if isinstance(row, Exception):
                raise row
            row = _object(row, ["message_id", "parent_id", "role", "text"])
            if row["role"] not in ("prompter", "assistant"):
                raise ValueError(f"role is {row['role']!r}; OASST rows are 'prompter' or 'assistant'")
            if not isinstance(row["text"], str) or not row["text"].strip():
                raise ValueError("the message text is empty")
            if row["message_id"] in rows:
                raise ValueError(f"message_id {row['message_id']!r} appears twice")
            rows[row["message_id"]] = (line, row)
        except (ValueError, TypeError) as e:
            _fail(path, line, str(e), on_error, skipped, "OASST")
    records = []
    for mid, (line, row) in rows.items():        # every row must reach a root, replies or not
        try:
            turns = [("user" if r["role"] == "prompter" else "assistant", r["text"])
                     for r in _path_to_root(row, rows)]
            if row["role"] == "assistant":
                records.append(_dialogue_records(turns, {"message_id": mid, "lang": row.get("lang", "")})[-1])
        except ValueError as e:
            _fail(path, line, str(e), on_error, skipped, "OASST")
    return _done(path, records, skipped)


def _path_to_root(row, rows) -> list[dict]:
    path = [row]
    while path[-1]["parent_id"] is not None:
        parent = rows.get(path[-1]["parent_id"], (None, None))[1]
        if parent is None:
            raise ValueError(f"message {path[-1]['message_id']!r} replies to {path[-1]['parent_id']!r}, "
                             f"which is not in the file (or was skipped)")
        if len(path) > len(rows):
            raise ValueError(f"message {row['message_id']!r} is in a parent_id cycle")
        path.append(parent)
    return path[::-1]


# ----------------------------------------------------------------------------- writing
def check_records(records) -> list[Record]:
    """``records`` as a list, or a TypeError naming the first item that is not a ``Record``."""
    records = list(records)
    bad = [i for i, r in enumerate(records) if not isinstance(r, Record)]
    if bad:
        raise TypeError(f"record {bad[0]} is a {type(records[bad[0]]).__name__}, not a Record; "
                        f"build them as Record(instruction, input, output)")
    return records


def _write_json(items, path, lines: bool) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if lines:
        text = "".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items)
    else:
        text = json.dumps(items, ensure_ascii=False, indent=2) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def write_alpaca(records, path) -> Path:
    return _write_json([r.to_dict() for r in check_records(records)], path, lines=False)


def write_jsonl(records, path) -> Path:
    return _write_json([r.to_dict() for r in check_records(records)], path, lines=True)


def write_dolly(records, path) -> Path:
    """Dolly JSON lines; a record's history has no place in Dolly and raises ValueError."""
    records = check_records(records)
    if any(r.history for r in records):
        raise ValueError("Dolly has no conversation history; write these records as ShareGPT or OASST")
    return _write_json([{"instruction": r.instruction, "context": r.input, "response": r.output,
                         "category": r.meta.get("category", "")} for r in records], path, lines=True)


def _user_text(r: Record) -> str:
    return r.instruction + (f"\n\n{r.input}" if r.input else "")   # chat formats have no input field


def write_sharegpt(records, path) -> Path:
    """A ShareGPT JSON list, one conversation per record (its history, then its own turn).
    Chat formats have no input field: the input follows the instruction after a blank line."""
    items = []
    for i, r in enumerate(check_records(records)):
        turns = [t for u, a in r.history for t in ({"from": "human", "value": u}, {"from": "gpt", "value": a})]
        turns += [{"from": "human", "value": _user_text(r)}, {"from": "gpt", "value": r.output}]
        items.append({"id": str(r.meta.get("id") or i), "conversations": turns})
    return _write_json(items, path, lines=False)


def write_oasst(records, path) -> Path:
    """OASST message rows (JSON lines), one tree per record: its history, then its own turn."""
    rows = []
    for i, r in enumerate(check_records(records)):
        parent = None
        for k, (role, text) in enumerate((role, t) for u, a in r.history + ((_user_text(r), r.output),)
                                         for role, t in (("prompter", u), ("assistant", a))):
            mid = f"{i}-{k}"
            rows.append({"message_id": mid, "parent_id": parent, "role": role, "text": text,
                         "lang": r.meta.get("lang", "")})
            parent = mid
    return _write_json(rows, path, lines=True)
