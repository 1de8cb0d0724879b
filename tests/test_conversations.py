"""Conversations: the messages layout, ShareGPT (tool turns included) and OpenAssistant trees,
read and written without losing a turn, and turned into records."""
import json

import pytest

from llmtap.conversations import (Conversation, MessageTree, read_messages, read_oasst, read_sharegpt, to_records,
                                  write_messages, write_oasst, write_sharegpt)
from llmtap.instruct import FormatError, Record


def write_lines(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def json_rows(path):
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if text.lstrip().startswith("[") else [json.loads(line) for line in text.splitlines()]


SHAREGPT = [
    {"id": "c1", "conversations": [{"from": "human", "value": "Name 2 fruits."}, {"from": "gpt", "value": "apple, pear"},
                                   {"from": "human", "value": "And a third?"}, {"from": "gpt", "value": "lemon"}]},
    {"id": "c2", "model": "x", "conversations": [{"from": "system", "value": "Be brief."},
                                                 {"from": "user", "value": "Hi"}, {"from": "chatgpt", "value": "Hello"}]},
    {"conversations": [{"from": "human", "value": "Weather in Paris?"},
                       {"from": "function_call", "value": '{"name": "weather", "arguments": {"city": "Paris"}}'},
                       {"from": "observation", "value": '{"sky": "sunny"}'},
                       {"from": "gpt", "value": "Sunny."}],
     "system": "You can call tools.", "tools": '[{"name": "weather"}]'},
]


# ----------------------------------------------------------------------------- ShareGPT
def test_sharegpt_round_trip_is_exact(tmp_path):
    convs = read_sharegpt(write_lines(tmp_path / "s.jsonl", SHAREGPT))
    assert len(convs) == 3 and convs.skipped == []
    assert [m["role"] for m in convs[2].messages] == ["user", "tool_call", "tool", "assistant"]
    assert convs[2].meta == {"system": "You can call tools.", "tools": '[{"name": "weather"}]'}
    assert json_rows(write_sharegpt(convs, tmp_path / "back.json")) == SHAREGPT       # speakers' own names kept
    assert read_sharegpt(tmp_path / "back.json") == convs


def test_sharegpt_records_one_per_assistant_turn(tmp_path):
    records = to_records(read_sharegpt(write_lines(tmp_path / "s.jsonl", SHAREGPT)))
    assert records[:2] == [Record("Name 2 fruits.", "", "apple, pear"),
                           Record("And a third?", "", "lemon", history=[("Name 2 fruits.", "apple, pear")])]
    assert records[1].meta == {"id": "c1"}
    assert records[2] == Record("Hi", "", "Hello") and records[2].meta["system"] == "Be brief."
    assert len(records) == 3 and "tool turns" in records.skipped[0].reason and "line 3" in records.skipped[0].where


def test_sharegpt_errors(tmp_path):
    turns = lambda *w: {"conversations": [{"from": f, "value": "t"} for f in w]}
    path = write_lines(tmp_path / "s.jsonl", [turns("human", "gpt"), turns("human", "robot"), {"id": 1},
                                              {"conversations": "hi"}, turns("gpt", "human"), turns("human", "gpt", "human")])
    with pytest.raises(FormatError, match=r"s.jsonl, line 2 \(item 1\): turn 1 is from 'robot'"):
        read_sharegpt(path)
    with pytest.warns(UserWarning, match="skipped 3"):
        convs = read_sharegpt(path, on_error="skip")
    assert len(convs) == 3 and "missing key" in convs.skipped[1].reason and "must be a list" in convs.skipped[2].reason
    records = to_records(convs)
    assert records == [Record("t", "", "t")]
    reasons = [s.reason for s in records.skipped[3:]]
    assert "turn 0 is by the assistant" in reasons[0] and "unanswered user turn" in reasons[1]


# ----------------------------------------------------------------------------- messages (OpenAI / TRL)
MESSAGES = [
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+1?"},
                  {"role": "assistant", "content": "2"}], "source": "handmade"},
    {"messages": [{"role": "user", "content": "Weather?"},
                  {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"name": "w"}}]},
                  {"role": "tool", "content": "sunny", "tool_call_id": "1"},
                  {"role": "assistant", "content": "Sunny."}]},
]


def test_messages_round_trip_and_records(tmp_path):
    convs = read_messages(write_lines(tmp_path / "m.jsonl", MESSAGES))
    assert convs[0].meta == {"source": "handmade"}
    assert json_rows(write_messages(convs, tmp_path / "back.jsonl")) == MESSAGES
    records = to_records(convs)
    assert records == [Record("1+1?", "", "2")] and records[0].meta["system"] == "Be brief."
    assert len(records.skipped) == 1


@pytest.mark.parametrize("messages, words", [([], "non-empty list"), ([{"role": "bot", "content": "x"}], "role 'bot'"),
                                             ([{"role": "user"}], "'role' and 'content'"),
                                             ([{"role": "user", "content": 3}], "no text content"),
                                             ([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}],
                                              "only the first")])
def test_messages_errors(tmp_path, messages, words):
    with pytest.raises(FormatError, match=rf"line 1 \(item 0\): .*{words}"):
        read_messages(write_lines(tmp_path / "m.jsonl", [{"messages": messages}]))
    with pytest.raises(ValueError, match=words):
        Conversation(messages)


# ----------------------------------------------------------------------------- OpenAssistant
def oasst_row(mid, parent, role, text, **more):
    return {"message_id": mid, "parent_id": parent, "role": role, "text": text, "lang": "en", **more}


ROWS = [oasst_row("p1", None, "prompter", "Name a fruit.", message_tree_id="p1"),
        oasst_row("a1", "p1", "assistant", "apple", rank=0),
        oasst_row("a2", "p1", "assistant", "pear", rank=1, deleted=True),
        oasst_row("p2", "a1", "prompter", "Another?"),
        oasst_row("a3", "p2", "assistant", "mango", rank=0, review_result=False),
        oasst_row("q1", None, "prompter", "Say hi."), oasst_row("b1", "q1", "assistant", "hi", lang="de")]


def nested(rows, mid):
    """The nested-message layout of OASST: each message with its replies."""
    me = dict(next(r for r in rows if r["message_id"] == mid))
    me["replies"] = [nested(rows, r["message_id"]) for r in rows if r["parent_id"] == mid]
    return me


def test_oasst_branches_give_one_record_per_assistant_message(tmp_path):
    trees = read_oasst(write_lines(tmp_path / "o.jsonl", ROWS[::-1]))     # any row order
    got = {r.meta["message_id"]: r for r in to_records(trees)}
    assert set(got) == {"a1", "a2", "a3", "b1"}
    assert got["a2"] == Record("Name a fruit.", "", "pear") and got["a2"].meta["rank"] == 1
    assert got["a3"] == Record("Another?", "", "mango", history=[("Name a fruit.", "apple")])
    assert got["b1"].meta == {"message_id": "b1", "parent_id": "q1", "rank": None, "lang": "de"}
    tree = next(t for t in read_oasst(write_lines(tmp_path / "p.jsonl", ROWS)) if t.prompt["message_id"] == "p1")
    assert [m["text"] for m in tree.prompt["replies"]] == ["apple", "pear"]          # siblings in file order
    assert [c.messages[-1]["content"] for c in tree.conversations()] == ["mango", "pear"]


@pytest.mark.parametrize("layout", ["rows", "messages", "trees"])
def test_oasst_round_trip_is_exact_in_every_layout(tmp_path, layout):
    if layout == "rows":
        rows = ROWS
    elif layout == "messages":
        rows = [nested(ROWS, "p1"), nested(ROWS, "q1")]
    else:
        rows = [{"message_tree_id": p, "tree_state": "ready_for_export", "prompt": nested(ROWS, p)} for p in ("p1", "q1")]
    trees = read_oasst(write_lines(tmp_path / "o.jsonl", rows))
    assert {t.layout for t in trees} == {layout}
    assert json_rows(write_oasst(trees, tmp_path / "back.jsonl")) == rows
    assert read_oasst(tmp_path / "back.jsonl") == trees
    as_rows = read_oasst(write_oasst(trees, tmp_path / "rows.jsonl", layout="rows"))   # another layout: same records
    assert to_records(as_rows) == to_records(trees)


def test_oasst_drops_deleted_and_failed_messages_with_their_replies(tmp_path):
    path = write_lines(tmp_path / "o.jsonl", ROWS)
    assert sum(1 for t in read_oasst(path) for _ in t.messages()) == 7
    trees = read_oasst(path, drop_deleted=True)
    assert sum(1 for t in trees for _ in t.messages()) == 6
    assert len(trees.skipped) == 1 and "deleted" in trees.skipped[0].reason and "a2" in trees.skipped[0].where
    trees = read_oasst(path, drop_deleted=True, drop_failed_review=True)
    assert {m["message_id"] for t in trees for m in t.messages()} == {"p1", "a1", "p2", "q1", "b1"}
    bad_prompt = [oasst_row("p1", None, "prompter", "x", deleted=True), oasst_row("a1", "p1", "assistant", "y")]
    trees = read_oasst(write_lines(tmp_path / "d.jsonl", bad_prompt), drop_deleted=True)
    assert len(trees) == 0 and "whole tree of 2 messages" in trees.skipped[0].reason


def test_oasst_errors(tmp_path):
    rows = [oasst_row("p1", None, "prompter", "Q"), oasst_row("a1", "p1", "assistant", "A"),
            oasst_row("a9", "gone", "assistant", "orphan"), oasst_row("x", None, "moderator", "?"),
            oasst_row("c1", "c2", "prompter", "loop"), oasst_row("c2", "c1", "assistant", "loop"),
            oasst_row("a1", "p1", "assistant", "again")]
    path = write_lines(tmp_path / "o.jsonl", rows)
    with pytest.raises(FormatError, match=r"line 4 \(item 3\): message 'x' has role 'moderator'"):
        read_oasst(path)
    with pytest.warns(UserWarning, match="skipped 5"):
        trees = read_oasst(path, on_error="skip")
    assert to_records(trees) == [Record("Q", "", "A")]
    reasons = " | ".join(s.reason for s in trees.skipped)
    for words in ("moderator", "appears twice", "not in the file", "cycle"):
        assert words in reasons
    wrong_parent = nested([oasst_row("p1", None, "prompter", "Q"), oasst_row("a1", "zz", "assistant", "A")], "p1")
    wrong_parent["replies"] = [dict(oasst_row("a1", "zz", "assistant", "A"), replies=[])]
    with pytest.raises(FormatError, match="is a reply of 'p1' but names 'zz'"):
        read_oasst(write_lines(tmp_path / "n.jsonl", [wrong_parent]))
    with pytest.raises(ValueError, match="layout"):
        write_oasst([], tmp_path / "x.jsonl", layout="flat")


# ----------------------------------------------------------------------------- records written as conversations
@pytest.mark.parametrize("write, read", [(write_sharegpt, read_sharegpt), (write_oasst, read_oasst),
                                         (write_messages, read_messages)])
def test_records_written_as_conversations(tmp_path, write, read):
    records = [Record("把这个词翻译成英文。", "苹果", "apple"),
               Record("And a third?", "", "lemon", history=[("Name 2 fruits.", "apple, pear")])]
    back = to_records(read(write(records, tmp_path / "chat.json")))
    # chat formats have no input field: the input follows the instruction after a blank line
    assert back[0] == Record("把这个词翻译成英文。\n\n苹果", "", "apple")
    assert back[1:] == [Record("Name 2 fruits.", "", "apple, pear"), records[1]]
    with pytest.raises(TypeError, match="item 0 is a dict"):
        write([{"instruction": "a"}], tmp_path / "y.json")
    with pytest.raises(TypeError, match="to_records takes"):
        to_records([records[0]])


def test_message_tree_equality_ignores_where():
    prompt = nested([oasst_row("p1", None, "prompter", "Q")], "p1")
    assert MessageTree(prompt, where="a") == MessageTree(prompt, where="b")
