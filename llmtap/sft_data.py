"""What SFT tools take (chapter 06): LLaMA-Factory's datasets, TRL's dataset types and OpenAI's chat
fine-tuning files, read into the course's ``Record`` and ``Conversation`` and written back exactly.

=============  ==========================================================  ==================
tool           one example is                                              read / write
=============  ==========================================================  ==================
LLaMA-Factory  an Alpaca or ShareGPT row whose keys (columns) and speaker  read_llamafactory
               names (tags) its ``dataset_info.json`` entry maps           write_llamafactory
TRL            {"prompt": str, "completion": str}, the same with lists of  read_trl
               messages, or {"messages": [...]}; one type per file         write_trl
OpenAI         {"messages": [...]} per line; an assistant message may      read_openai_jsonl
               carry "weight": 0 (context only) or 1 (trained)             write_openai_jsonl
=============  ==========================================================  ==================

All three decide the same thing: which tokens the loss trains on. ``Conversation.weights()`` gives
it per message (1 for an assistant reply that is trained, 0 for the rest); a ``PromptCompletion``
trains on its completion only; ``to_records`` makes records of the trained replies only.

LLaMA-Factory reads a row through its entry's mapping, and the mapping has traps this reader
keeps, so that what it returns is what LLaMA-Factory would train on:

* an entry that gives ``columns`` replaces the defaults (instruction / input / output, or
  conversations): a column it leaves out is not read, so ``{"prompt": "q", "response": "a"}``
  ignores an "input" key. ``tags`` replace the default speaker names the same way: tags without
  a ``system_tag`` make a leading system message an unknown speaker;
* "history", "system" and "tools" are read only when ``columns`` names them. A row with such a key
  that the mapping does not read gets a warning (the key is kept in ``meta`` and written back);
* turns must alternate the way LLaMA-Factory checks them: user (or an observation) first, then the
  assistant (or a function call), and so on, ending on the assistant; it drops any other row with
  only a log line, this reader names it;
* LLaMA-Factory joins the instruction and the input with one newline into the user's turn (the
  course's chat formats use a blank line); a ``Record`` keeps them apart;
* preference data (``ranking``, ``chosen`` / ``rejected``, a ``kto_tag``) is refused: it labels
  replies good or bad, and training on all of them would teach the bad ones too.

Like the other readers, every bad row raises a ``FormatError`` naming the file, the line and why,
or with ``on_error="skip"`` goes to ``.skipped``. A mapped column missing from a row (or null)
reads as empty and is written back present: "input" as "", "history" as [].
"""
from __future__ import annotations

import json
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .conversations import (TRAINED_ROLES, Conversation, Conversations, _conversations, _from_messages,
                            _read as _read_conversations, write_messages)
from .instruct import (_FORMAT_HINTS, FormatError, Record, Records, _done, _fail, _others, _read as _read_records,
                       read_rows, write_json)

# ----------------------------------------------------------------------------- LLaMA-Factory's mapping
FORMATTINGS = ("alpaca", "sharegpt")
# the columns of each formatting, with the key LLaMA-Factory reads when an entry gives no "columns"
DEFAULT_COLUMNS = {"alpaca": {"prompt": "instruction", "query": "input", "response": "output", "history": None,
                              "system": None, "tools": None},
                   "sharegpt": {"messages": "conversations", "system": None, "tools": None}}
REQUIRED_COLUMNS = {"alpaca": ("prompt", "response"), "sharegpt": ("messages",)}
MEDIA_COLUMNS = ("images", "videos", "audios")        # kept as they are, in meta: the course trains on text
PREFERENCE_COLUMNS = ("chosen", "rejected", "kto_tag")
DEFAULT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
TAG_ROLES = {"user_tag": "user", "assistant_tag": "assistant", "observation_tag": "tool",
             "function_tag": "tool_call", "system_tag": "system"}
SPEAKERS = {"user": "the user", "assistant": "the assistant", "tool": "a tool's result", "tool_call": "a tool call",
            "system": "the system"}
# keys that look like a column the mapping may have left out: LLaMA-Factory would not read them
USUAL_KEYS = {"alpaca": {"query": "input", "history": "history", "system": "system", "tools": "tools"},
              "sharegpt": {"system": "system", "tools": "tools"}}
# entries LLaMA-Factory loads from elsewhere than file_name, whatever file_name says
REMOTE_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")
DATA_SUFFIXES = (".json", ".jsonl")


@dataclass(frozen=True)
class Layout:
    """How LLaMA-Factory reads the rows of one dataset: ``formatting``, ``columns`` (column role ->
    the row's key, only the roles that are read) and ``tags`` (every tag name -> its value, None
    when the entry left it out)."""
    formatting: str
    columns: dict
    tags: dict

    @property
    def tag_of(self) -> dict:
        """Role (user, assistant, tool, tool_call, system) -> the speaker name the rows use."""
        return {TAG_ROLES[name]: value for name, value in self.tags.items() if name in TAG_ROLES and value is not None}


def layout(formatting: str = "alpaca", columns: dict | None = None, tags: dict | None = None,
           source: str = "the mapping") -> Layout:
    """The ``Layout`` a dataset_info entry with these fields gives, as LLaMA-Factory builds it:
    columns given replace the defaults (a role left out is not read), and so do tags. ValueError,
    naming ``source``, for what LLaMA-Factory would misread or this reader cannot use."""
    if formatting not in FORMATTINGS:
        raise ValueError(f"{source}: formatting must be 'alpaca' or 'sharegpt' (LLaMA-Factory's default is "
                         f"'alpaca'), got {formatting!r}")
    return Layout(formatting, _columns(formatting, columns, source), _tags(formatting, tags, source))


def _columns(formatting: str, columns, source: str) -> dict:
    defaults = DEFAULT_COLUMNS[formatting]
    if columns is None:
        return {role: key for role, key in defaults.items() if key is not None}
    if not isinstance(columns, dict):
        raise ValueError(f"{source}: columns must be a JSON object of column role -> key, got {columns!r:.60}")
    for role, key in columns.items():
        if role in PREFERENCE_COLUMNS:
            raise ValueError(f"{source}: columns name {role!r}, so it is preference data (replies labelled better "
                             f"or worse, for DPO or KTO), not supervised fine-tuning data; SFT on it would learn "
                             f"the bad replies too")
        if role not in defaults and role not in MEDIA_COLUMNS:
            other = next((f for f in FORMATTINGS if role in DEFAULT_COLUMNS[f]), None)
            hint = (f"; it is a {other} column: set \"formatting\": \"{other}\"" if other else
                    f"; LLaMA-Factory ignores it. Known: {sorted(defaults) + list(MEDIA_COLUMNS)}")
            raise ValueError(f"{source}: columns has {role!r}, not a column of the {formatting} formatting{hint}")
        if key is not None and not isinstance(key, str):
            raise ValueError(f"{source}: column {role!r} must name a key (a string), got {key!r:.60}")
    mapped = {role: key for role, key in columns.items() if key is not None and role in defaults}
    for role in REQUIRED_COLUMNS[formatting]:
        if role not in mapped:
            why = ("LLaMA-Factory would read the rows as plain text for pre-training, with no reply to learn"
                   if role == "response" else "LLaMA-Factory would have nothing to read")
            raise ValueError(f"{source}: columns name no {role!r} column, and a columns mapping replaces the "
                             f"defaults: {why}; add \"{role}\": \"{defaults[role]}\" (or the row's key)")
    twice = [k for k, n in Counter(mapped.values()).items() if n > 1]
    if twice:
        raise ValueError(f"{source}: the key {twice[0]!r} is mapped to two columns "
                         f"{[r for r, k in mapped.items() if k == twice[0]]}; each column needs its own key")
    return mapped


def _tags(formatting: str, tags, source: str) -> dict:
    if tags is None:
        return dict(DEFAULT_TAGS)
    if formatting != "sharegpt":
        raise ValueError(f"{source}: tags name the speakers of sharegpt messages; an {formatting} entry has "
                         f"none (set \"formatting\": \"sharegpt\", or drop the tags)")
    if not isinstance(tags, dict):
        raise ValueError(f"{source}: tags must be a JSON object of tag name -> value, got {tags!r:.60}")
    unknown = [t for t in tags if t not in DEFAULT_TAGS]
    if unknown:
        raise ValueError(f"{source}: unknown tag {unknown[0]!r}; LLaMA-Factory's tags are {list(DEFAULT_TAGS)}")
    bad = [t for t, v in tags.items() if v is not None and not isinstance(v, str)]
    if bad:
        raise ValueError(f"{source}: tag {bad[0]!r} must be a string, got {tags[bad[0]]!r:.60}")
    full = {name: tags.get(name) for name in DEFAULT_TAGS}        # a tag left out is None, as LLaMA-Factory has it
    for name in ("role_tag", "content_tag", "user_tag", "assistant_tag"):
        if full[name] is None:
            raise ValueError(f"{source}: tags give no {name!r}, and tags given replace the defaults; add "
                             f"\"{name}\": \"{DEFAULT_TAGS[name]}\" (or the name your messages use)")
    speakers = [v for n, v in full.items() if n in TAG_ROLES and v is not None]
    twice = [v for v, n in Counter(speakers).items() if n > 1]
    if twice:
        raise ValueError(f"{source}: two tags have the value {twice[0]!r}; each speaker needs its own name")
    return full


# ----------------------------------------------------------------------------- LLaMA-Factory: rows
def _mapped(row, key: str, role: str, required: bool = False):
    """The value of a mapped column; a missing or null one is None, or a ValueError if required."""
    if row.get(key) is None:
        if required:
            state = "null" if key in row else "missing"
            raise ValueError(f"column {key!r} (the {role} column of the mapping) is {state}; the row has "
                             f"{sorted(row)}")
        return None
    return row[key]


def _text(value, key: str, role: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"column {key!r} ({role}) must be a string, got {type(value).__name__}: {value!r:.60}")
    return value


def _history(value, key: str) -> tuple:
    pairs = ValueError(f"column {key!r} (history) must be a list of [user, assistant] string pairs, got {value!r:.80}")
    if not isinstance(value, list):
        raise pairs
    for turn in value:
        if not (isinstance(turn, list) and len(turn) == 2 and all(isinstance(s, str) for s in turn)):
            raise pairs
    return tuple(tuple(turn) for turn in value)


def _side_columns(row: dict, lay: Layout) -> tuple[dict, dict]:
    """(system and tools as ``meta`` keys, the row's other keys). A system or tools key is kept when
    the row has it, null included, so that it is written back as it was."""
    side = {}
    for role in ("system", "tools"):
        key = lay.columns.get(role)
        if key is not None and key in row:
            value = row[key]
            if value is not None and not isinstance(value, str):
                what = "the system prompt" if role == "system" else "the tools as JSON text (json.dumps the list)"
                raise ValueError(f"column {key!r} ({role}) must be a string, {what}; got {type(value).__name__}")
            side[role] = value
    extras = _others(row, lay.columns.values())
    clash = [k for k in side if k in extras]
    if clash:
        raise ValueError(f"the row has a key {clash[0]!r} besides the {clash[0]} column {lay.columns[clash[0]]!r}; "
                         f"rename one of them")
    return side, extras


def _row_object(row) -> dict:
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object (one example), got {type(row).__name__}")
    return row


def _alpaca_record(row, lay: Layout) -> Record:
    """One Alpaca-formatted row as a ``Record``: prompt -> instruction, query -> input, response ->
    output, history -> history; system and tools in ``meta`` under those names, other keys as they are."""
    row, cols = _row_object(row), lay.columns
    instruction = _text(_mapped(row, cols["prompt"], "prompt", True), cols["prompt"], "prompt")
    output = _text(_mapped(row, cols["response"], "response", True), cols["response"], "response")
    query = _mapped(row, cols["query"], "query") if "query" in cols else None
    if not instruction.strip():
        hint = (f" (LLaMA-Factory would take the {cols['query']!r} alone as the user's turn: move it to "
                f"{cols['prompt']!r})" if isinstance(query, str) and query.strip() else "")
        raise ValueError(f"column {cols['prompt']!r} (prompt) is empty; every record needs a task to do{hint}")
    history = _mapped(row, cols["history"], "history") if "history" in cols else None
    side, extras = _side_columns(row, lay)
    return Record(instruction, "" if query is None else _text(query, cols["query"], "query"), output,
                  () if history is None else _history(history, cols["history"]), {**side, **extras})


def _sharegpt_conversation(row, lay: Layout, where: str) -> Conversation:
    """One ShareGPT-formatted row as a ``Conversation``: each message's role tag becomes its role,
    its content tag its content; the turns must alternate as LLaMA-Factory checks them."""
    row, key = _row_object(row), lay.columns["messages"]
    turns = _mapped(row, key, "messages", True)
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"column {key!r} (messages) must be a non-empty list of messages, got {turns!r:.60}")
    role_of = {tag: role for role, tag in lay.tag_of.items()}
    messages = [_message(turn, k, lay, role_of) for k, turn in enumerate(turns)]
    check_turns(messages, lay.tag_of)
    side, extras = _side_columns(row, lay)
    return Conversation(messages, {**side, **extras}, where)


def _message(turn, k: int, lay: Layout, role_of: dict) -> dict:
    role_tag, content_tag = lay.tags["role_tag"], lay.tags["content_tag"]
    if not isinstance(turn, dict):
        raise ValueError(f"message {k} must be an object with {role_tag!r} and {content_tag!r}, got {turn!r:.60}")
    missing = [t for t in (role_tag, content_tag) if t not in turn]
    if missing:
        raise ValueError(f"message {k} has no {missing[0]!r} key (the {'role' if missing[0] == role_tag else 'content'}"
                         f"_tag of the mapping); it has {sorted(turn)}")
    if not isinstance(turn[role_tag], str):
        raise ValueError(f"message {k}: {role_tag!r} must be a speaker name (a string), got {turn[role_tag]!r:.60}")
    role = role_of.get(turn[role_tag])
    if role is None:
        raise ValueError(f"message {k} is from {turn[role_tag]!r}, which no tag names (the tags know "
                         f"{sorted(lay.tag_of.values())}){_missing_tag_hint(turn[role_tag], lay)}")
    if not isinstance(turn[content_tag], str):
        raise ValueError(f"message {k} ({turn[role_tag]}) must have text content, got "
                         f"{type(turn[content_tag]).__name__}")
    extras = _others(turn, (role_tag, content_tag))
    clash = [k2 for k2 in ("role", "content") if k2 in extras]
    if clash:
        raise ValueError(f"message {k} has a key {clash[0]!r} besides the tags {role_tag!r} / {content_tag!r}; "
                         f"map the tags to the keys the messages use")
    return {"role": role, "content": turn[content_tag], **extras}


def _missing_tag_hint(speaker, lay: Layout) -> str:
    """When the speaker is one LLaMA-Factory knows by default but the entry's tags left out."""
    name = next((n for n, v in DEFAULT_TAGS.items() if v == speaker and n in TAG_ROLES), None)
    if name and lay.tags[name] is None:
        return (f"; tags given replace the defaults and these name no {name}: add \"{name}\": \"{speaker}\" "
                f"to the tags")
    return ""


def check_turns(messages: list, tag_of: dict | None = None) -> None:
    """LLaMA-Factory's rule for a ShareGPT conversation: after an optional system message, the user
    (or a tool's result, an observation) and the assistant (or a function call) take turns, user
    first, ending with the assistant. LLaMA-Factory drops a row that breaks it, with only a log line;
    this raises ValueError naming the message. ``tag_of`` (role -> speaker name) words the message."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
        raise TypeError("messages must be a list of {'role', 'content'} dicts")
    tag_of = tag_of or {}
    start = 1 if messages and messages[0]["role"] == "system" else 0
    if len(messages) <= start:
        raise ValueError("the conversation has no turn after its system message")

    def who(role):
        return SPEAKERS[role] + (f" ({tag_of[role]!r})" if role in tag_of else "")

    for k in range(start, len(messages)):
        role = messages[k]["role"]
        wanted = ("user", "tool") if (k - start) % 2 == 0 else ("assistant", "tool_call")
        if role not in wanted:
            first = " first" if k == start else ""
            raise ValueError(f"message {k} is by {who(role)} where {who(wanted[0])} (or {who(wanted[1])}) should "
                             f"speak{first}: LLaMA-Factory needs the user and the assistant to take turns, user first, "
                             f"and skips the row otherwise")
    if (len(messages) - start) % 2:
        raise ValueError(f"the conversation ends with {who(messages[-1]['role'])}, not with the assistant's reply: "
                         f"LLaMA-Factory needs an even number of turns and skips the row otherwise")


# ----------------------------------------------------------------------------- LLaMA-Factory: reading
def read_llamafactory(dataset_info, name: str, data_dir=None, on_error: str = "raise",
                      encoding: str = "utf-8") -> Records | Conversations:
    """The dataset ``name`` of a LLaMA-Factory ``dataset_info.json``, read as LLaMA-Factory maps it:
    ``Records`` for the alpaca formatting, ``Conversations`` for sharegpt.

    ``dataset_info``: the path of dataset_info.json, of the folder holding it, or its content as a
    dict (then ``data_dir`` is needed). ``data_dir``: where ``file_name`` is, by default the folder
    of dataset_info.json. The file is JSON or JSON lines (.gz too); a folder is read file by file."""
    info, data_dir, source = _dataset_info(dataset_info, data_dir)
    entry = _entry(info, name, source)
    lay = layout(entry.get("formatting", "alpaca"), entry.get("columns"), entry.get("tags"),
                 f"{source}, dataset {name!r}")
    out = Records() if lay.formatting == "alpaca" else Conversations()
    for path in _data_files(data_dir / entry["file_name"], f"{source}, dataset {name!r}"):
        part = _read_layout(path, lay, on_error, encoding)
        out.extend(part)
        out.skipped.extend(part.skipped)
    return out


def _read_layout(path: Path, lay: Layout, on_error: str, encoding: str):
    unread = Counter()                    # keys LLaMA-Factory will not read, to warn of once per file

    def note(row):
        if isinstance(row, dict):
            unread.update((role, key) for role, key in USUAL_KEYS[lay.formatting].items()
                          if role not in lay.columns and key in row and key not in lay.columns.values())

    format_name = f"LLaMA-Factory {lay.formatting}"
    if lay.formatting == "alpaca":
        def parse(row):
            note(row)
            return [_alpaca_record(row, lay)]
        items = _read_records(path, parse, on_error, encoding, format_name)
    else:
        def parse(row, where):
            note(row)
            return _sharegpt_conversation(row, lay, where)
        items = _read_conversations(path, parse, on_error, encoding, format_name)
    if unread:
        keys = ", ".join(f"{key!r} ({n} rows)" for (_, key), n in unread.items())
        mapping = ", ".join(f'"{role}": "{key}"' for role, key in unread)
        warnings.warn(f"{path}: {keys}: the entry's columns do not map these keys, so LLaMA-Factory does not read "
                      f"them (they are kept in meta); to train with them, add to \"columns\": {mapping}", stacklevel=3)
    return items


def _dataset_info(dataset_info, data_dir) -> tuple[dict, Path, str]:
    """(the dataset_info mapping, the data folder, how to name it in messages)."""
    if isinstance(dataset_info, dict):
        if data_dir is None:
            raise ValueError("dataset_info is a dict, so the folder of its files is unknown: pass data_dir=")
        return dataset_info, Path(data_dir), "dataset_info"
    if not isinstance(dataset_info, (str, Path)):
        raise TypeError(f"dataset_info must be the path of dataset_info.json (or of its folder) or its content "
                        f"as a dict, got {type(dataset_info).__name__}")
    path = Path(dataset_info)
    if path.is_dir():
        path = path / "dataset_info.json"
    if not path.is_file():
        raise FileNotFoundError(f"no dataset_info.json at {path}; LLaMA-Factory keeps it in its dataset_dir (./data)")
    return _info_json(path), Path(data_dir) if data_dir is not None else path.parent, str(path)


def _info_json(path: Path) -> dict:
    """The JSON object of a dataset_info.json file: dataset name -> entry."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}, line {e.lineno}: not valid JSON ({e.msg}, column {e.colno}); fix it") from None
    if not isinstance(info, dict):
        raise FormatError(f"{path} must hold a JSON object of dataset name -> entry, got {type(info).__name__}")
    return info


def _entry(info: dict, name: str, source: str) -> dict:
    if name not in info:
        names = sorted(info)
        raise KeyError(f"{source} has no dataset {name!r}; it has {names[:20]}" + (" ..." if len(names) > 20 else ""))
    entry = info[name]
    if not isinstance(entry, dict):
        raise ValueError(f"{source}, dataset {name!r}: the entry must be a JSON object, got {type(entry).__name__}")
    remote = [k for k in REMOTE_KEYS if k in entry]
    if remote:
        raise ValueError(f"{source}, dataset {name!r} has {remote[0]!r}, so LLaMA-Factory loads it from there "
                         f"(not from file_name); this reader reads local files: download it, then give the entry "
                         f"only a file_name")
    if not isinstance(entry.get("file_name"), str):
        raise ValueError(f"{source}, dataset {name!r} has no file_name (the data file or folder, relative to "
                         f"dataset_info.json's folder)")
    if entry.get("ranking"):
        raise ValueError(f"{source}, dataset {name!r} has \"ranking\": true: it is preference data (a chosen and "
                         f"a rejected reply, for DPO or reward models), not supervised fine-tuning data")
    return entry


def _data_files(path: Path, source: str) -> list[Path]:
    """The file, or the data files of the folder in name order (LLaMA-Factory reads a folder whole)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _suffix(p) in DATA_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"{source}: the folder {path} holds no .json or .jsonl file")
        return files
    if not path.is_file():
        raise FileNotFoundError(f"{source}: no file {path} (file_name is relative to dataset_info.json's folder, "
                                f"or to data_dir)")
    if _suffix(path) not in DATA_SUFFIXES:
        raise ValueError(f"{source}: {path.name} is not JSON or JSON lines; LLaMA-Factory also reads csv, parquet "
                         f"and arrow, this reader does not: convert it, e.g. with pandas' to_json(orient='records', "
                         f"lines=True)")
    return [path]


def _suffix(path: Path) -> str:
    """The data suffix of a file name, a .gz after it dropped."""
    return Path(path.stem).suffix if path.suffix == ".gz" else path.suffix


# ----------------------------------------------------------------------------- LLaMA-Factory: writing
def write_llamafactory(items, path, formatting: str, columns: dict | None = None, tags: dict | None = None,
                       name: str | None = None) -> Path:
    """Write ``items`` as LLaMA-Factory data at ``path`` (a JSON list, or JSON lines for .jsonl) and
    their entry, ``name`` (by default the file's name without its suffix), in the dataset_info.json
    beside it (created, or updated keeping its other entries). Returns that dataset_info.json.

    alpaca takes ``Record``s (a ``Conversation`` gives one per reply); sharegpt takes
    ``Conversation``s (a ``Record`` is one conversation). ``columns`` and ``tags`` are as in
    dataset_info: without ``columns``, the entry maps every column the items use (history, system,
    tools included), so that LLaMA-Factory reads all of it. ValueError for an item LLaMA-Factory
    would misread or skip: an input with no query column, turns out of order, a speaker with no tag."""
    path = Path(path)
    if _suffix(path) not in DATA_SUFFIXES or path.suffix == ".gz" or path.name == "dataset_info.json":
        raise ValueError(f"write the data to a .json or .jsonl file of its own (LLaMA-Factory reads no .gz), "
                         f"got {path.name!r}")
    if formatting not in FORMATTINGS:
        raise ValueError(f"formatting must be 'alpaca' or 'sharegpt', got {formatting!r}")
    name = path.stem if name is None else name
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, the dataset's name in dataset_info.json, got {name!r}")
    info_path = path.parent / "dataset_info.json"
    info = _load_info(info_path)                      # a broken one stops us before anything is written
    items = _alpaca_items(items) if formatting == "alpaca" else _conversations(items)
    if columns is None:
        columns = _columns_used(formatting, items)
    lay = layout(formatting, columns, tags, "write_llamafactory")
    to_row = _alpaca_row if formatting == "alpaca" else _sharegpt_row
    rows = []
    for i, item in enumerate(items):
        try:
            rows.append(to_row(item, lay))
        except ValueError as e:
            raise ValueError(f"item {i}: {e}") from None
    write_json(rows, path, lines=_suffix(path) == ".jsonl")
    info[name] = {"file_name": path.name, "formatting": formatting, "columns": columns,
                  **({"tags": tags} if tags is not None else {})}
    info_path.write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return info_path


def _alpaca_items(items) -> list[Record]:
    """Records as they are; a ``Conversation`` as its records, one per trained reply."""
    out = []
    for i, item in enumerate(list(items)):
        if isinstance(item, Record):
            out.append(item)
        elif isinstance(item, Conversation):
            try:
                out.extend(item.records())
            except ValueError as e:
                raise ValueError(f"item {i} cannot be written as Alpaca records: {e}") from None
        else:
            raise TypeError(f"item {i} is a {type(item).__name__}, not a Record or Conversation")
    return out


def _columns_used(formatting: str, items) -> dict:
    """The columns the items need: the defaults, and history, system and tools when any item has one."""
    columns = {role: key for role, key in DEFAULT_COLUMNS[formatting].items() if key is not None}
    if formatting == "alpaca" and any(r.history for r in items):
        columns["history"] = "history"
    for role in ("system", "tools"):
        if any(role in item.meta for item in items):
            columns[role] = role
    return columns


def _alpaca_row(r: Record, lay: Layout) -> dict:
    cols = lay.columns
    for field, role, fix in (("input", "query", "input"), ("history", "history", "history")):
        if getattr(r, field) and role not in cols:
            raise ValueError(f"the record has {'an' if field == 'input' else 'a'} {field} but the columns map no "
                             f"{role!r} column, so LLaMA-Factory would not read it: add \"{role}\": \"{fix}\"")
    row = {cols["prompt"]: r.instruction}
    if "query" in cols:
        row[cols["query"]] = r.input
    row[cols["response"]] = r.output
    if "history" in cols:
        row[cols["history"]] = [list(turn) for turn in r.history]
    return _with_side_columns(row, r.meta, lay)


def _sharegpt_row(c: Conversation, lay: Layout) -> dict:
    tag_of, role_tag, content_tag = lay.tag_of, lay.tags["role_tag"], lay.tags["content_tag"]
    for k, m in enumerate(c.messages):
        if m["role"] not in tag_of:
            name = next(n for n, role in TAG_ROLES.items() if role == m["role"])
            raise ValueError(f"message {k} is a {m['role']} message but the tags name no {name}: add "
                             f"\"{name}\": \"{DEFAULT_TAGS[name]}\" to the tags")
        if not isinstance(m["content"], str):
            raise ValueError(f"message {k} has no text content; the ShareGPT layout has no 'tool_calls', so a call "
                             f"is a function_call message whose content is the call as JSON text")
    check_turns(c.messages, tag_of)
    turns = []
    for m in c.messages:
        # "from" is ShareGPT's own speaker name (read_sharegpt keeps an unusual one): the tags decide it here
        extras = _others(m, ("role", "content") + (("from",) if role_tag == "from" else ()))
        clash = [k for k in (role_tag, content_tag) if k in extras]
        if clash:
            raise ValueError(f"a message has a key {clash[0]!r}, which is also a tag of the mapping; rename it")
        turns.append({role_tag: tag_of[m["role"]], content_tag: m["content"], **extras})
    return _with_side_columns({lay.columns["messages"]: turns}, c.meta, lay)


def _with_side_columns(row: dict, meta: dict, lay: Layout) -> dict:
    """The row with system and tools under their mapped keys, then the other keys of ``meta``."""
    for role in ("system", "tools"):
        if role in lay.columns and role in meta:
            row[lay.columns[role]] = meta[role]
    extras = {k: v for k, v in meta.items() if not (k in ("system", "tools") and k in lay.columns)}
    clash = [k for k in extras if k in row]
    if clash:
        raise ValueError(f"meta key {clash[0]!r} is also a mapped column; rename it")
    return {**row, **extras}


def _load_info(info_path: Path) -> dict:
    """The entries of an existing dataset_info.json, kept when one is added; {} when there is none."""
    return _info_json(info_path) if info_path.is_file() else {}


# ----------------------------------------------------------------------------- TRL
TRL_KINDS = ("prompt-completion", "conversational-prompt-completion", "messages")


@dataclass
class PromptCompletion(Conversation):
    """A conversation split where the loss starts, TRL's conversational prompt-completion: the
    first ``n_prompt`` messages are the prompt (context), the rest the completion (what is learnt)."""
    n_prompt: int = 1

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.n_prompt, bool) or not isinstance(self.n_prompt, int) or \
                not 0 < self.n_prompt < len(self.messages):
            raise ValueError(f"n_prompt must be between 1 and {len(self.messages) - 1} (the prompt and the completion "
                             f"each need a message), got {self.n_prompt!r}")
        if self.messages[self.n_prompt]["role"] not in TRAINED_ROLES:
            raise ValueError(f"the completion starts with a {self.messages[self.n_prompt]['role']} message; it must "
                             f"start with the assistant's reply, the part the model learns")

    @classmethod
    def split(cls, prompt: list, completion: list, meta: dict | None = None, where: str = "") -> "PromptCompletion":
        """From TRL's two lists of messages."""
        for part, messages in (("prompt", prompt), ("completion", completion)):
            if not isinstance(messages, list) or not messages:
                raise ValueError(f"'{part}' must be a non-empty list of {{'role', 'content'}} messages, "
                                 f"got {messages!r:.60}")
        return cls([dict(m) if isinstance(m, dict) else m for m in prompt + completion], dict(meta or {}), where,
                   n_prompt=len(prompt))

    @property
    def prompt(self) -> list:
        return self.messages[:self.n_prompt]

    @property
    def completion(self) -> list:
        return self.messages[self.n_prompt:]

    def weights(self) -> list[int]:
        """0 for the prompt, 1 for the completion: TRL trains on the completion only."""
        return [0] * self.n_prompt + [1] * (len(self.messages) - self.n_prompt)


def as_prompt_completion(item) -> PromptCompletion:
    """``item`` as a ``PromptCompletion``: a ``Record``'s reply is the completion, its history and
    instruction the prompt; a ``Conversation``'s completion is what follows its last user message."""
    if isinstance(item, PromptCompletion):
        return item
    if isinstance(item, Record):
        item = Conversation.from_record(item)
    if not isinstance(item, Conversation):
        raise TypeError(f"expected a Record, Conversation or PromptCompletion, got {type(item).__name__}")
    users = [k for k, m in enumerate(item.messages) if m["role"] == "user"]
    if not users or users[-1] == len(item.messages) - 1:
        raise ValueError("the conversation has no reply after its last user message to be the completion")
    return PromptCompletion(item.messages, dict(item.meta), item.where, n_prompt=users[-1] + 1)


def trl_kind(row) -> str:
    """The TRL dataset type of one row, by its keys as SFTTrainer tells them apart (a "prompt"
    column makes it prompt-completion); ValueError for the types that are not SFT data."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object (one example), got {type(row).__name__}")
    if "chosen" in row or "rejected" in row:
        raise ValueError("a preference row (chosen / rejected replies, for DPO or reward models), not SFT data")
    if isinstance(row.get("label"), bool):
        raise ValueError("a row labelled good or bad (\"label\": true / false, KTO's unpaired preference): SFT "
                         "on it would learn the bad replies too; rename 'label' if it means something else")
    if "prompt" in row:
        if "completion" not in row:
            raise ValueError("a prompt-only row (no 'completion'): that is for methods that generate the reply "
                             "(GRPO, online DPO); SFT needs the completion to learn")
        prompt, completion = row["prompt"], row["completion"]
        if isinstance(prompt, str) and isinstance(completion, str):
            return "prompt-completion"
        if isinstance(prompt, list) and isinstance(completion, list):
            return "conversational-prompt-completion"
        raise ValueError(f"'prompt' is a {type(prompt).__name__} and 'completion' a {type(completion).__name__}: "
                         f"both must be strings (standard) or both lists of messages (conversational)")
    if "messages" in row:
        return "messages"
    if "text" in row:
        raise ValueError("a language-modeling row {'text'}: plain text, with no prompt and reply to tell apart")
    hint = next((f"; it looks like {fmt}" for key, fmt in _FORMAT_HINTS if key in row), "")
    raise ValueError(f"no TRL columns: SFT rows have 'prompt' and 'completion', or 'messages' (the row has "
                     f"{sorted(row)}){hint}")


def _from_trl(row, kind: str, where: str):
    if kind == "messages":
        return _from_messages(row, where)
    extras = _others(row, ("prompt", "completion"))
    if kind == "conversational-prompt-completion":
        return PromptCompletion.split(row["prompt"], row["completion"], extras, where)
    if not row["prompt"].strip():
        raise ValueError("the prompt is empty; every example needs one")
    return Record(row["prompt"], "", row["completion"], meta=extras)


def read_trl(path, on_error: str = "raise", encoding: str = "utf-8") -> Records | Conversations:
    """A TRL dataset file (JSON lines or a JSON list), its type told from its first row: ``Records``
    for standard prompt-completion (prompt -> instruction, completion -> output),
    ``Conversations`` of ``PromptCompletion`` for the conversational form, of ``Conversation`` for
    "messages". Other keys go to ``meta``. A row of another type than the first is a bad row:
    TRL reads one type per dataset."""
    rows, skipped = read_rows(path, on_error, encoding, "TRL")
    kind, first, items = None, None, []
    for where, row in rows:
        try:
            row_kind = trl_kind(row)
            if kind is None:
                kind, first = row_kind, where
            elif row_kind != kind:
                raise ValueError(f"a {row_kind} row, but the first row (line {first.line}) is {kind}: TRL reads one "
                                 f"type per dataset; split the file")
            items.append(_from_trl(row, kind, str(where)))
        except (ValueError, TypeError) as e:
            _fail(where, str(e), on_error, skipped, "TRL")
    out = Records(items) if kind == "prompt-completion" else Conversations(items)
    return _done(path, out, skipped)


def write_trl(items, path, kind: str) -> Path:
    """JSON lines of one TRL type. ``kind``:

    * "prompt-completion": {"prompt": str, "completion": str}; a record's input follows its
      instruction after a blank line. Written as they are: TRL joins prompt and completion with no
      separator, so the prompt carries its own template. A record with history does not fit;
    * "conversational-prompt-completion": lists of messages; a record's reply, or what follows a
      conversation's last user message, is the completion;
    * "messages": the whole conversation (``write_messages``).

    Items are ``Record``s, ``Conversation``s or ``PromptCompletion``s; their ``meta`` is written as
    extra columns, which TRL passes through."""
    if kind not in TRL_KINDS:
        raise ValueError(f"kind must be one of {TRL_KINDS}, got {kind!r}")
    if kind == "messages":
        return write_messages(items, path)
    to_row = _trl_text_row if kind == "prompt-completion" else _trl_messages_row
    rows = []
    for i, item in enumerate(list(items)):
        try:
            rows.append(to_row(item))
        except (ValueError, TypeError) as e:
            raise type(e)(f"item {i}: {e}") from None
    if kind == "prompt-completion" and any("system" in row for row in rows):
        warnings.warn("standard prompt-completion has no system prompt: the 'system' key is written as a column TRL "
                      "does not read; write a conversational kind to train with it", stacklevel=2)
    return write_json(rows, path, lines=True)


def _trl_text_row(item) -> dict:
    if isinstance(item, Conversation):
        records = item.records()
        if len(records) != 1:
            raise ValueError(f"a conversation of {len(records)} trained replies; standard prompt-completion holds one "
                             f"prompt and one reply: write 'conversational-prompt-completion' or 'messages'")
        item = records[0]
    if not isinstance(item, Record):
        raise TypeError(f"expected a Record, Conversation or PromptCompletion, got {type(item).__name__}")
    if item.history:
        raise ValueError("the record has history, which one prompt string cannot hold apart; write "
                         "'conversational-prompt-completion' or 'messages'")
    prompt = item.instruction + (f"\n\n{item.input}" if item.input else "")
    return _with_meta({"prompt": prompt, "completion": item.output}, item.meta)


def _trl_messages_row(item) -> dict:
    pc = as_prompt_completion(item)
    return _with_meta({"prompt": pc.prompt, "completion": pc.completion}, pc.meta)


def _with_meta(row: dict, meta: dict) -> dict:
    clash = [k for k in meta if k in row]
    if clash:
        raise ValueError(f"meta key {clash[0]!r} is also a TRL column; rename it")
    return {**row, **meta}


# ----------------------------------------------------------------------------- OpenAI
OPENAI_ROLES = ("system", "user", "assistant", "tool")


def check_openai(conversation: Conversation) -> Conversation:
    """The conversation, or a ValueError for what OpenAI's chat fine-tuning rejects: a role it does
    not have (a ShareGPT function call is an assistant message with "tool_calls" there), a
    "weight" that is not 0 or 1 or is on a message other than the assistant's, no assistant message."""
    if not isinstance(conversation, Conversation):
        raise TypeError(f"expected a Conversation, got {type(conversation).__name__}")
    for k, m in enumerate(conversation.messages):
        if m["role"] not in OPENAI_ROLES:
            raise ValueError(f"message {k} has role {m['role']!r}; OpenAI's roles are {OPENAI_ROLES} (a tool call "
                             f"is an assistant message with 'tool_calls')")
        if "weight" in m:
            if m["role"] != "assistant":
                raise ValueError(f"message {k} ({m['role']}) has a weight; only assistant messages take one")
            if type(m["weight"]) is not int or m["weight"] not in (0, 1):
                raise ValueError(f"message {k} has weight {m['weight']!r}; a weight is 0 (keep the reply as "
                                 f"context, do not train on it) or 1 (train on it)")
    if not any(m["role"] == "assistant" for m in conversation.messages):
        raise ValueError("no assistant message: every example needs a reply to train on")
    return conversation


def read_openai_jsonl(path, on_error: str = "raise", encoding: str = "utf-8") -> Conversations:
    """OpenAI's chat fine-tuning file: JSON lines of {"messages": [...]} (other keys, such as
    "tools", go to ``meta``). A message's "weight" stays in it; ``Conversation.weights()`` reads
    it as the loss mask, and ``to_records`` leaves out the replies of weight 0."""
    return _read_conversations(path, lambda row, where: check_openai(_from_messages(row, where)), on_error,
                               encoding, "OpenAI chat")


def write_openai_jsonl(items, path) -> Path:
    """JSON lines of {"messages": [...], **meta}; a ``Record`` is one conversation. Each is checked
    as OpenAI checks it (``check_openai``), the bad one named by its index."""
    conversations = _conversations(items)
    for i, c in enumerate(conversations):
        try:
            check_openai(c)
        except ValueError as e:
            raise ValueError(f"item {i}: {e}") from None
    return write_messages(conversations, path)


__all__ = ["FORMATTINGS", "TRL_KINDS", "OPENAI_ROLES", "Layout", "PromptCompletion", "layout", "check_turns",
           "read_llamafactory", "write_llamafactory", "trl_kind", "as_prompt_completion", "read_trl", "write_trl",
           "check_openai", "read_openai_jsonl", "write_openai_jsonl"]
