"""Conversations (多轮对话数据): the chat formats instruction data ships in, read and written
without losing a turn.

A conversation is a list of messages, each a dict with a role and its content, as in the
OpenAI / Hugging Face ``messages`` layout:

    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fruit."},
     {"role": "assistant", "content": "apple"}]

Roles: ``system``, ``user``, ``assistant``, and for tool use ``tool_call`` (the assistant calls a
tool; the content is the call as JSON text) and ``tool`` (what the tool answered). Any other key
of a message or of the conversation's row is kept and written back.

=========  ============================================================  ===========================
format     one example is                                                read / write
=========  ============================================================  ===========================
messages   {"messages": [{"role", "content"}], ...} per line (TRL)       read_messages / write_messages
ShareGPT   {"conversations": [{"from", "value"}], "system", "tools"}     read_sharegpt / write_sharegpt
OASST      a message tree: flat rows linked by parent_id, nested          read_oasst / write_oasst
           messages with "replies", or ``*.trees.jsonl`` rows
=========  ============================================================  ===========================

ShareGPT's speakers map to roles: human / user -> user, gpt / assistant / chatgpt -> assistant,
function_call -> tool_call, observation -> tool, system -> system. An OpenAssistant tree
(``MessageTree``) branches: a prompt can have several ranked replies, and each reply its own
follow-up prompts; its messages keep every field (ids, parents, ranks, languages, review
results). ``read_oasst`` can drop deleted and review-failed messages (with their replies).

Fine-tuning on records: ``to_records`` gives one ``Record`` per assistant reply, the turns
before it as its history. A conversation a record cannot hold (tool turns, turns out of order)
is reported in ``.skipped``, never dropped silently.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .instruct import FormatError, Record, Records, Skipped, _done, _fail, _object, _others, read_rows, write_json

ROLES = ("system", "user", "assistant", "tool_call", "tool")
# the roles whose tokens a reply-only loss trains on: what the assistant says, tool calls included
TRAINED_ROLES = ("assistant", "tool_call")


class Conversations(list):
    """A list of ``Conversation`` (or ``MessageTree``) with ``skipped``, as the readers return it."""

    def __init__(self, items=(), skipped=()):
        super().__init__(items)
        self.skipped = list(skipped)


@dataclass
class Conversation:
    """Messages in order, each {"role", "content", ...}; ``meta``: the other keys of the source
    row (id, tools, ...); ``where``: the file and line it was read from."""
    messages: list
    meta: dict = field(default_factory=dict)
    where: str = field(default="", compare=False)

    def __post_init__(self):
        if not isinstance(self.messages, list) or not self.messages:
            raise ValueError("a conversation needs a non-empty list of messages")
        for k, m in enumerate(self.messages):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ValueError(f"message {k} must be a dict with 'role' and 'content', got {m!r:.80}")
            if m["role"] not in ROLES:
                raise ValueError(f"message {k} has role {m['role']!r}; roles are {ROLES}")
            if not isinstance(m["content"], str) and not (m["content"] is None and m.get("tool_calls")):
                raise ValueError(f"message {k} ({m['role']}) has no text content (got {type(m['content']).__name__})")
            if m["role"] == "system" and k > 0:
                raise ValueError(f"message {k} is a system message; only the first message may be one")
        if not isinstance(self.meta, dict):
            raise TypeError(f"meta must be a dict, got {type(self.meta).__name__}")

    def records(self) -> list[Record]:
        """One ``Record`` per trained assistant reply to a user message (see ``weights``), the
        (user, assistant) pairs before it as history; a system message goes to each record's
        ``meta["system"]``.
        ValueError for what a record cannot hold: tool turns, turns that do not alternate."""
        turns = [(m["role"], m["content"]) for m in self.messages]
        meta = {k: v for k, v in self.meta.items() if k in ("id", "system")}
        if turns[0][0] == "system":
            meta["system"] = turns.pop(0)[1]
        if any(role in ("tool_call", "tool") for role, _ in turns):
            raise ValueError("the conversation has tool turns, which a (user, assistant) record cannot "
                             "hold; keep it as a Conversation")
        records = dialogue_records(turns, meta)      # one per assistant turn, in order
        trained = [w for m, w in zip(self.messages, self.weights()) if m["role"] == "assistant"]
        records = [r for r, w in zip(records, trained) if w]
        if not records:
            raise ValueError("no assistant reply is trained (every one has weight 0): nothing to learn from")
        return records

    def weights(self) -> list[int]:
        """1 for each message a reply-only loss trains on, 0 for the rest: the assistant's replies
        and tool calls, except those marked ``"weight": 0``, OpenAI's way of keeping an earlier
        reply as context without teaching it (a reply that was wrong, or off-style). SFT turns
        these into the loss mask; ``records`` makes records of the trained replies only."""
        return [int(m["role"] in TRAINED_ROLES and m.get("weight", 1) != 0) for m in self.messages]

    @classmethod
    def from_record(cls, record: Record) -> "Conversation":
        """The record's history, then its own turn; chat formats have no input field, so the
        input follows the instruction after a blank line."""
        messages = [{"role": "system", "content": record.meta["system"]}] if record.meta.get("system") else []
        for user, assistant in record.history:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        user = record.instruction + (f"\n\n{record.input}" if record.input else "")
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": record.output}]
        return cls(messages, {k: v for k, v in record.meta.items() if k != "system"})


def dialogue_records(turns, meta) -> list[Record]:
    """(role, text) turns, user and assistant alternating, user first -> one record per
    assistant turn, the pairs before it as history."""
    records, history = [], []
    for k, (role, text) in enumerate(turns):
        expected = "user" if k % 2 == 0 else "assistant"
        if role != expected:
            raise ValueError(f"turn {k} is by the {role} but the {expected} should speak: turns must "
                             f"alternate, user first")
        if role == "assistant":
            user = turns[k - 1][1]
            records.append(Record(user, "", text, tuple(history), dict(meta)))
            history.append((user, text))
    if not records:
        raise ValueError("the conversation has no assistant turn")
    if len(turns) % 2:
        raise ValueError(f"the conversation ends with an unanswered user turn ({turns[-1][1][:40]!r})")
    return records


def to_records(conversations) -> Records:
    """``Record``s of every conversation or message tree; one a record cannot hold goes to
    ``.skipped`` with where it came from and why."""
    records, skipped = Records(), list(getattr(conversations, "skipped", []))
    for i, c in enumerate(conversations):
        if not isinstance(c, (Conversation, MessageTree)):
            raise TypeError(f"item {i} is a {type(c).__name__}; to_records takes Conversations or MessageTrees")
        try:
            records.extend(c.records())
        except ValueError as e:
            skipped.append(Skipped(c.where or f"conversation {i}", str(e)))
    records.skipped = skipped
    return records


def _conversations(items) -> list:
    """Conversations to write: ``Conversation``s as they are, ``Record``s one conversation each."""
    items = list(items)
    out = []
    for i, c in enumerate(items):
        if isinstance(c, Record):
            c = Conversation.from_record(c)
        if not isinstance(c, Conversation):
            raise TypeError(f"item {i} is a {type(c).__name__}, not a Conversation or Record")
        out.append(c)
    return out


def _read(path, parse, on_error, encoding, format_name) -> Conversations:
    rows, skipped = read_rows(path, on_error, encoding, format_name)
    items = Conversations()
    for where, row in rows:
        try:
            items.append(parse(row, str(where)))
        except (ValueError, TypeError) as e:
            _fail(where, str(e), on_error, skipped, format_name)
    return _done(path, items, skipped)


# ----------------------------------------------------------------------------- messages (OpenAI, TRL)
def _from_messages(row, where) -> Conversation:
    row = _object(row, ["messages"])
    if not isinstance(row["messages"], list):
        raise ValueError("'messages' must be a list of {'role', 'content'} dicts")
    return Conversation([dict(m) if isinstance(m, dict) else m for m in row["messages"]],
                        _others(row, ("messages",)), where)


def read_messages(path, on_error: str = "raise", encoding: str = "utf-8") -> Conversations:
    """JSON lines (or a JSON list) of {"messages": [{"role", "content"}, ...]}, as OpenAI's and
    TRL's fine-tuning data; other keys of a row go to the conversation's ``meta``."""
    return _read(path, _from_messages, on_error, encoding, "messages")


def write_messages(conversations, path) -> Path:
    """JSON lines of {"messages": [...], **meta}; ``Record``s are written one conversation each."""
    return write_json([{"messages": c.messages, **c.meta} for c in _conversations(conversations)], path, lines=True)


# ----------------------------------------------------------------------------- ShareGPT
FROM_ROLE = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
             "system": "system", "function_call": "tool_call", "observation": "tool"}
ROLE_FROM = {"user": "human", "assistant": "gpt", "system": "system", "tool_call": "function_call", "tool": "observation"}


def _from_sharegpt(row, where) -> Conversation:
    row = _object(row, ["conversations"])
    if not isinstance(row["conversations"], list):
        raise ValueError("'conversations' must be a list of {'from', 'value'} turns")
    messages = []
    for k, turn in enumerate(row["conversations"]):
        turn = _object(turn, ["from", "value"])
        who = turn["from"]
        if who not in FROM_ROLE:
            raise ValueError(f"turn {k} is from {who!r}; expected one of {tuple(FROM_ROLE)}")
        message = {"role": FROM_ROLE[who], "content": turn["value"], **_others(turn, ("from", "value"))}
        if ROLE_FROM[message["role"]] != who:             # keep a speaker name other than the usual one
            message["from"] = who
        messages.append(message)
    return Conversation(messages, _others(row, ("conversations",)), where)


def read_sharegpt(path, on_error: str = "raise", encoding: str = "utf-8") -> Conversations:
    """ShareGPT: {"id", "conversations": [{"from", "value"}], "system", "tools"} (FastChat's and
    LLaMA-Factory's layout, tool turns included), one ``Conversation`` per row."""
    return _read(path, _from_sharegpt, on_error, encoding, "ShareGPT")


def _sharegpt_row(c: Conversation) -> dict:
    turns = [{"from": m.get("from", ROLE_FROM[m["role"]]), "value": m["content"],
              **_others(m, ("role", "content", "from"))} for m in c.messages]
    return {**({"id": c.meta["id"]} if "id" in c.meta else {}), "conversations": turns, **_others(c.meta, ("id",))}


def write_sharegpt(conversations, path, lines: bool = False) -> Path:
    """A ShareGPT JSON list (or JSON lines), one row per conversation; a ``Record`` is written as
    a conversation of its own (its history, then its turn)."""
    return write_json([_sharegpt_row(c) for c in _conversations(conversations)], path, lines=lines)


# ----------------------------------------------------------------------------- OpenAssistant trees
OASST_ROLES = {"prompter": "user", "assistant": "assistant"}


@dataclass
class MessageTree:
    """An OpenAssistant message tree. ``prompt``: the first message as a dict with every field of
    the source (message_id, text, role, lang, rank, ...) and ``replies``, the list of its child
    messages, each the same kind of dict. ``meta``: the tree's own fields (message_tree_id,
    tree_state) in the ``*.trees.jsonl`` layout. ``layout``: how the file wrote it ("rows",
    "messages" or "trees"), so that it is written back the same way."""
    prompt: dict
    meta: dict = field(default_factory=dict)
    layout: str = "trees"
    where: str = field(default="", compare=False)
    positions: dict = field(default_factory=dict, compare=False, repr=False)   # message id -> row in the file

    def messages(self):
        """Every message, parents before their replies."""
        stack = [self.prompt]
        while stack:
            m = stack.pop()
            yield m
            stack.extend(reversed(m["replies"]))

    def records(self) -> list[Record]:
        """One ``Record`` per assistant message, the path from the prompt to it as history;
        ``meta`` keeps the message's id, parent, rank and language."""
        records = []

        def walk(message, path):
            path = path + [(OASST_ROLES[message["role"]], message["text"])]
            if message["role"] == "assistant":
                meta = {k: message.get(k) for k in ("message_id", "parent_id", "rank", "lang")}
                records.append(dialogue_records(path, meta)[-1])
            for reply in message["replies"]:
                walk(reply, path)

        walk(self.prompt, [])
        return records

    def conversations(self) -> list[Conversation]:
        """Every path from the prompt to a message without replies, as a ``Conversation``."""
        out = []

        def walk(message, path):
            path = path + [{"role": OASST_ROLES[message["role"]], "content": message["text"]}]
            if not message["replies"]:
                out.append(Conversation(path, {"message_id": message["message_id"]}, self.where))
            for reply in message["replies"]:
                walk(reply, path)

        walk(self.prompt, [])
        return out


def _check_message(m, parent_id=None, depth=0):
    """A nested OASST message and its replies: the fields a tree needs, and text to read."""
    m = _object(m, ["message_id", "role", "text"])
    if m["role"] not in OASST_ROLES:
        raise ValueError(f"message {m['message_id']!r} has role {m['role']!r}; OASST roles are 'prompter' or 'assistant'")
    if not isinstance(m["text"], str) or not m["text"].strip():
        raise ValueError(f"message {m['message_id']!r} has no text")
    if depth and m.get("parent_id", parent_id) != parent_id:
        raise ValueError(f"message {m['message_id']!r} is a reply of {parent_id!r} but names {m['parent_id']!r} as parent")
    replies = m.get("replies", [])
    if not isinstance(replies, list):
        raise ValueError(f"the replies of message {m['message_id']!r} must be a list")
    for r in replies:
        _check_message(r, m["message_id"], depth + 1)


def read_oasst(path, on_error: str = "raise", encoding: str = "utf-8", drop_deleted: bool = False,
               drop_failed_review: bool = False) -> Conversations:
    """OpenAssistant data as ``MessageTree``s, in any of its three layouts:

    * flat message rows {"message_id", "parent_id", "role", "text", ...}, linked by parent_id
      (null for a tree's prompt), in any order;
    * nested messages: a prompt row whose "replies" hold its child messages, recursively;
    * ``*.trees.jsonl`` rows {"message_tree_id", "tree_state", "prompt": <nested message>}.

    ``drop_deleted`` / ``drop_failed_review`` leave out messages marked ``"deleted": true`` /
    ``"review_result": false``, with all their replies; each is counted in ``.skipped``."""
    rows, skipped = read_rows(path, on_error, encoding, "OASST")
    trees, flat = Conversations(), {}
    for where, row in rows:
        try:
            if isinstance(row, dict) and "prompt" in row:
                _check_message(row["prompt"])
                trees.append(MessageTree(row["prompt"], _others(row, ("prompt",)), "trees", str(where)))
            elif isinstance(row, dict) and "replies" in row:
                if row.get("parent_id") is not None:
                    raise ValueError(f"a nested message row must be a tree's prompt (parent_id null), this one "
                                     f"replies to {row['parent_id']!r}")
                _check_message(row)
                trees.append(MessageTree(row, {}, "messages", str(where)))
            else:
                row = _object(row, ["message_id", "parent_id", "role", "text"])
                _check_message(row)
                if row["message_id"] in flat:
                    raise ValueError(f"message_id {row['message_id']!r} appears twice")
                flat[row["message_id"]] = (where, {**row, "replies": []})
        except (ValueError, TypeError) as e:
            _fail(where, str(e), on_error, skipped, "OASST")
    trees.extend(_link_rows(flat, on_error, skipped))
    trees = _done(path, trees, skipped)                 # warns of bad rows, not of the drops asked for
    for tree in trees:
        _drop(tree, drop_deleted, drop_failed_review, trees.skipped)
    trees[:] = [t for t in trees if t.prompt is not None]
    return trees


def _link_rows(flat: dict, on_error, skipped) -> list[MessageTree]:
    """Trees from flat rows: each row joins its parent's replies (in file order)."""
    trees = []
    for mid, (where, row) in flat.items():
        parent = row["parent_id"]
        if parent is None:
            trees.append(MessageTree(row, {}, "rows", str(where), {}))
        elif parent in flat:
            flat[parent][1]["replies"].append(row)
        else:
            _fail(where, f"message {mid!r} replies to {parent!r}, which is not in the file (or was skipped)",
                  on_error, skipped, "OASST")
    for t in trees:                              # where each row was, to write them back in file order
        t.positions = {m["message_id"]: flat[m["message_id"]][0].item for m in t.messages()}
    reached = {id(m) for t in trees for m in t.messages()}
    for mid, (where, row) in flat.items():      # a parent_id cycle never reaches a prompt
        if id(row) not in reached and row["parent_id"] in flat:
            _fail(where, f"message {mid!r} never reaches a prompt: its parent_ids form a cycle or lead to a "
                         f"skipped message", on_error, skipped, "OASST")
    return trees


def _drop(tree: MessageTree, deleted: bool, failed_review: bool, skipped) -> None:
    def bad(m):
        if deleted and m.get("deleted") is True:
            return "deleted"
        if failed_review and m.get("review_result") is False:
            return "failed review"
        return None

    def count(m):
        return 1 + sum(count(r) for r in m["replies"])

    def prune(m):
        for r in [r for r in m["replies"] if bad(r)]:
            skipped.append(Skipped(f"{tree.where}: message {r['message_id']}",
                                   f"{bad(r)} (dropped with its {count(r) - 1} repl(ies))"))
        m["replies"] = [r for r in m["replies"] if not bad(r)]
        for r in m["replies"]:
            prune(r)

    if not (deleted or failed_review):
        return
    if bad(tree.prompt):
        skipped.append(Skipped(tree.where, f"the prompt is {bad(tree.prompt)}: the whole tree of "
                                           f"{count(tree.prompt)} messages dropped"))
        tree.prompt = None
        return
    prune(tree.prompt)


def _rows_of(tree: MessageTree) -> list[dict]:
    """Flat rows, parents first; a prompt read from a nested layout (no parent_id) gets a null one."""
    rows = []
    for m in tree.messages():
        row = {k: v for k, v in m.items() if k != "replies"}
        rows.append(row if m is not tree.prompt or "parent_id" in row else {**row, "parent_id": None})
    return rows


def _tree_from_record(record: Record, i: int) -> MessageTree:
    """A record as a one-path tree, ids "i-0", "i-1", ...; the input follows the instruction."""
    turns = Conversation.from_record(record).messages
    turns = [t for t in turns if t["role"] != "system"]
    nodes = [{"message_id": f"{i}-{k}", "parent_id": f"{i}-{k - 1}" if k else None,
              "role": "prompter" if t["role"] == "user" else "assistant", "text": t["content"],
              "lang": record.meta.get("lang", ""), "replies": []} for k, t in enumerate(turns)]
    for parent, child in zip(nodes, nodes[1:]):
        parent["replies"].append(child)
    return MessageTree(nodes[0], {}, "rows")


def write_oasst(trees, path, layout: str | None = None) -> Path:
    """JSON lines of message trees, each in its own ``layout`` or in the one given: "rows" (flat
    message rows with parent_id), "messages" (nested prompt rows) or "trees" ({"prompt": ...} with
    the tree's fields). A ``Record`` is written as a tree of one path."""
    if layout not in (None, "rows", "messages", "trees"):
        raise ValueError(f"layout must be 'rows', 'messages', 'trees' or None (each tree's own), got {layout!r}")
    items = []                                   # (position in the file read, row)
    for i, t in enumerate(list(trees)):
        t = _tree_from_record(t, i) if isinstance(t, Record) else t
        if not isinstance(t, MessageTree):
            raise TypeError(f"item {i} is a {type(t).__name__}, not a MessageTree or Record")
        how = layout or t.layout
        if how == "rows":                       # flat rows go back where they were read from, new ones last
            items += [((t.positions.get(r["message_id"], float("inf")), len(items)), r) for r in _rows_of(t)]
        else:
            items.append(((float("inf"), len(items)), t.prompt if how == "messages" else {**t.meta, "prompt": t.prompt}))
    return write_json([row for _, row in sorted(items, key=lambda x: x[0])], path, lines=True)


__all__ = ["ROLES", "TRAINED_ROLES", "Conversation", "Conversations", "MessageTree", "FormatError", "dialogue_records",
           "to_records", "read_messages", "write_messages", "read_sharegpt", "write_sharegpt", "read_oasst",
           "write_oasst"]
