"""Instruction records and the formats they ship in: reading, writing ShareGPT, malformed files."""
import json

import pytest

from llmtap.instruct import (FormatError, Record, check_records, read_alpaca, read_dolly, read_jsonl, read_oasst,
                             read_sharegpt, write_alpaca, write_dolly, write_jsonl, write_oasst, write_sharegpt)

RECORDS = [Record("把这个词翻译成英文。", "苹果", "apple", meta={"category": "translate"}),
           Record("Name 2 fruits.", "", "apple, pear"),
           Record("Write this word backwards.", "cat", "tac")]


def write_text(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def write_json(path, items, lines: bool):
    """Examples as a JSON list, or as JSON lines."""
    text = "".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items) if lines else json.dumps(items)
    return write_text(path, text)


def dolly_row(r: Record) -> dict:
    return {"instruction": r.instruction, "context": r.input, "response": r.output, "category": r.meta.get("category", "")}


def oasst_rows(records) -> list[dict]:
    """One message tree per record: its history, then its own turn (the input after a blank line)."""
    rows = []
    for i, r in enumerate(records):
        user = r.instruction + (f"\n\n{r.input}" if r.input else "")
        texts = [t for turn in r.history + ((user, r.output),) for t in turn]
        for k, text in enumerate(texts):
            rows.append({"message_id": f"{i}-{k}", "parent_id": f"{i}-{k - 1}" if k else None,
                         "role": "assistant" if k % 2 else "prompter", "text": text, "lang": ""})
    return rows


# ----------------------------------------------------------------------------- the record
@pytest.mark.parametrize("args, error", [(("", "", "x"), ValueError), (("  ", "", "x"), ValueError),
                                         (("do it", "", ""), ValueError), (("do it", "", " \n"), ValueError),
                                         (("do it", None, "x"), TypeError), ((3, "", "x"), TypeError)])
def test_record_validation(args, error):
    with pytest.raises(error):
        Record(*args)
    with pytest.raises(ValueError, match="history"):
        Record("a", "", "b", history=[("only one",)])


# ----------------------------------------------------------------------------- reading every field
@pytest.mark.parametrize("read, lines, row", [(read_alpaca, False, Record.to_dict), (read_jsonl, True, Record.to_dict),
                                              (read_dolly, True, dolly_row)])
def test_readers_keep_every_field(tmp_path, read, lines, row):
    back = read(write_json(tmp_path / "data.json", [row(r) for r in RECORDS], lines))
    assert back == RECORDS and back.skipped == []
    if read is read_dolly:
        assert back[0].meta["category"] == "translate"


def test_alpaca_keeps_history(tmp_path):
    r = [Record("And a third?", "", "lemon", history=[("Name 2 fruits.", "apple, pear")])]
    assert r[0].to_dict()["history"] == [["Name 2 fruits.", "apple, pear"]]
    assert read_alpaca(write_json(tmp_path / "a.json", [x.to_dict() for x in r], lines=False)) == r


@pytest.mark.parametrize("fmt", ["sharegpt", "oasst"])
def test_conversation_formats_one_record_per_assistant_turn(tmp_path, fmt):
    chat = Record("And a third?", "", "lemon", history=[("Name 2 fruits.", "apple, pear")])
    if fmt == "sharegpt":
        back = read_sharegpt(write_sharegpt(RECORDS + [chat], tmp_path / "chat.json"))
    else:
        back = read_oasst(write_json(tmp_path / "chat.jsonl", oasst_rows(RECORDS + [chat]), lines=True))
    # chat formats have no input field: the input follows the instruction after a blank line
    assert back[0] == Record("把这个词翻译成英文。\n\n苹果", "", "apple")
    assert back[1] == RECORDS[1]
    assert back[2] == Record("Write this word backwards.\n\ncat", "", "tac")
    assert back[3] == Record("Name 2 fruits.", "", "apple, pear")
    assert back[4] == chat and back[4].history == (("Name 2 fruits.", "apple, pear"),)


def test_oasst_tree_with_branches(tmp_path):
    rows = [dict(message_id="p1", parent_id=None, role="prompter", text="Name a fruit.", lang="en"),
            dict(message_id="a1", parent_id="p1", role="assistant", text="apple", lang="en"),
            dict(message_id="a2", parent_id="p1", role="assistant", text="pear", lang="en"),
            dict(message_id="p2", parent_id="a1", role="prompter", text="Another?", lang="en"),
            dict(message_id="a3", parent_id="p2", role="assistant", text="mango", lang="en")]
    path = write_text(tmp_path / "oasst.jsonl", "".join(json.dumps(r) + "\n" for r in rows[::-1]))  # order free
    got = {r.meta["message_id"]: r for r in read_oasst(path)}
    assert set(got) == {"a1", "a2", "a3"}
    assert got["a2"] == Record("Name a fruit.", "", "pear")
    assert got["a3"] == Record("Another?", "", "mango", history=[("Name a fruit.", "apple")])


def test_sharegpt_system_turn_and_json_lines(tmp_path):
    conv = {"id": "x", "conversations": [{"from": "system", "value": "Be brief."},
                                         {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}
    got = read_sharegpt(write_text(tmp_path / "s.jsonl", json.dumps(conv) + "\n"))
    assert got == [Record("Hi", "", "Hello")] and got[0].meta["system"] == "Be brief."


# ----------------------------------------------------------------------------- malformed files
GOOD = '{"instruction": "a", "input": "", "output": "b"}'


@pytest.mark.parametrize("text, line, words", [
    (GOOD + "\n" + '{"instruction": "a", "output": ' + "\n", 2, "not valid JSON"),
    (GOOD + "\n\n" + '{"instruction": "", "output": "b"}' + "\n", 3, "instruction is empty"),
    (GOOD + "\n" + '{"instruction": "a", "input": "", "output": ""}' + "\n", 2, "output"),
    ('{"input": "x", "output": "y"}\n' + GOOD, 1, "missing key"),
    (GOOD + "\n[1, 2]\n", 2, "expected a JSON object"),
    (GOOD + "\n" + '{"instruction": 5, "output": "b"}' + "\n", 2, "must be a str"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, text, line, words):
    path = write_text(tmp_path / "bad.jsonl", text)
    with pytest.raises(FormatError, match=rf"bad.jsonl, line {line}: .*{words}"):
        read_jsonl(path)
    with pytest.warns(UserWarning, match="skipped 1"):
        got = read_jsonl(path, on_error="skip")
    assert got == [Record("a", "", "b")]
    assert len(got.skipped) == 1 and got.skipped[0].where.endswith(f"line {line}") and words.split()[0] in got.skipped[0].reason


def test_json_list_errors_name_the_line(tmp_path):
    path = write_text(tmp_path / "a.json", '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c"}\n]\n')
    with pytest.raises(FormatError, match=r"a.json, line 3: missing key"):
        read_alpaca(path)
    with pytest.warns(UserWarning):
        assert len(read_alpaca(path, on_error="skip")) == 1
    with pytest.raises(FormatError, match="line 2: not valid JSON"):
        read_alpaca(write_text(tmp_path / "b.json", '[\n {"instruction": "a",, "output": "b"}\n]'))
    with pytest.raises(FormatError, match="line 2: expected ','"):
        read_alpaca(write_text(tmp_path / "d.json", '[{"instruction": "a", "output": "b"}\n {"instruction": "c", "output": "d"}]'))
    with pytest.raises(FormatError, match="not closed"):
        read_alpaca(write_text(tmp_path / "c.json", '[{"instruction": "a", "output": "b"}'))


def test_dolly_sharegpt_oasst_errors(tmp_path):
    with pytest.raises(FormatError, match=r"line 1: missing key.*context"):
        read_dolly(write_text(tmp_path / "d.jsonl", '{"instruction": "a", "response": "b"}\n'))
    turns = lambda *w: json.dumps({"conversations": [{"from": f, "value": "t"} for f in w]})
    path = write_text(tmp_path / "s.jsonl", "\n".join([turns("human", "gpt"), turns("gpt", "human"),
                                                       turns("human", "gpt", "human"), turns("human", "robot")]))
    with pytest.raises(FormatError, match="line 2: turn 0 is by the assistant"):
        read_sharegpt(path)
    with pytest.warns(UserWarning):
        got = read_sharegpt(path, on_error="skip")
    assert len(got) == 1 and [s.where[-6:] for s in got.skipped] == ["line 2", "line 3", "line 4"]
    assert "unanswered" in got.skipped[1].reason and "robot" in got.skipped[2].reason
    rows = [dict(message_id="p1", parent_id=None, role="prompter", text="Q"),
            dict(message_id="a1", parent_id="p1", role="assistant", text="A"),
            dict(message_id="a9", parent_id="gone", role="assistant", text="orphan"),
            dict(message_id="x", parent_id=None, role="moderator", text="?")]
    path = write_text(tmp_path / "o.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(FormatError, match="line 4: role is 'moderator'"):
        read_oasst(path)
    with pytest.warns(UserWarning):
        got = read_oasst(path, on_error="skip")
    assert got == [Record("Q", "", "A")]
    assert {s.where[-6:]: s.reason for s in got.skipped}.keys() == {"line 3", "line 4"}
    assert "not in the file" in got.skipped[1].reason or "not in the file" in got.skipped[0].reason


def test_reader_argument_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_jsonl(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="on_error"):
        read_jsonl(write_text(tmp_path / "x.jsonl", GOOD), on_error="ignore")
    with pytest.raises(TypeError, match="Record"):
        write_sharegpt([{"instruction": "a"}], tmp_path / "y.json")
    with pytest.raises(TypeError, match="record 1 is a dict"):
        check_records([RECORDS[0], {"instruction": "a"}])
    assert check_records(iter(RECORDS)) == RECORDS


# ----------------------------------------------------------------------------- writers: what is written reads back
@pytest.mark.parametrize("write, read", [(write_alpaca, read_alpaca), (write_jsonl, read_jsonl),
                                         (write_dolly, read_dolly)])
def test_round_trip_keeps_every_field(tmp_path, write, read):
    back = read(write(RECORDS, tmp_path / "data.json"))
    assert back == RECORDS and back.skipped == []
    if read is read_dolly:
        assert back[0].meta["category"] == "translate"


def test_alpaca_writer_keeps_history(tmp_path):
    r = [Record("And a third?", "", "lemon", history=[("Name 2 fruits.", "apple, pear")])]
    assert read_alpaca(write_alpaca(r, tmp_path / "a.json")) == r
    with pytest.raises(ValueError, match="ShareGPT or OASST"):
        write_dolly(r, tmp_path / "d.jsonl")


@pytest.mark.parametrize("write, read", [(write_sharegpt, read_sharegpt), (write_oasst, read_oasst)])
def test_conversation_writers_one_record_per_assistant_turn(tmp_path, write, read):
    chat = Record("And a third?", "", "lemon", history=[("Name 2 fruits.", "apple, pear")])
    back = read(write(RECORDS + [chat], tmp_path / "chat.json"))
    # chat formats have no input field: the input follows the instruction after a blank line
    assert back[0] == Record("把这个词翻译成英文。\n\n苹果", "", "apple")
    assert back[1] == RECORDS[1]
    assert back[2] == Record("Write this word backwards.\n\ncat", "", "tac")
    assert back[3] == Record("Name 2 fruits.", "", "apple, pear")
    assert back[4] == chat and back[4].history == (("Name 2 fruits.", "apple, pear"),)
