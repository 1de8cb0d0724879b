"""Instruction records and the single-turn formats they ship in: reading, writing, malformed files."""
import gzip
import json

import pytest

from llmtap.instruct import (FormatError, Record, Records, check_records, empty_output, read_alpaca, read_dolly,
                             read_jsonl, read_rows, write_alpaca, write_dolly, write_jsonl)

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


# ----------------------------------------------------------------------------- the record
@pytest.mark.parametrize("args, error", [(("", "", "x"), ValueError), (("  ", "", "x"), ValueError),
                                         (("do it", None, "x"), TypeError), ((3, "", "x"), TypeError),
                                         (("do it", "", None), TypeError)])
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


# ----------------------------------------------------------------------------- malformed files
GOOD = '{"instruction": "a", "input": "", "output": "b"}'


@pytest.mark.parametrize("text, line, words", [
    (GOOD + "\n" + '{"instruction": "a", "output": ' + "\n", 2, "not valid JSON"),
    (GOOD + "\n\n" + '{"instruction": "", "output": "b"}' + "\n", 3, "instruction is empty"),
    ('{"input": "x", "output": "y"}\n' + GOOD, 1, "missing key"),
    (GOOD + "\n[1, 2]\n", 2, "expected a JSON object"),
    (GOOD + "\n" + '{"instruction": 5, "output": "b"}' + "\n", 2, "must be a str"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, text, line, words):
    path = write_text(tmp_path / "bad.jsonl", text)
    with pytest.raises(FormatError, match=rf"bad.jsonl, line {line} \(item {1 if line > 1 else 0}\): .*{words}"):
        read_jsonl(path)
    with pytest.warns(UserWarning, match="skipped 1"):
        got = read_jsonl(path, on_error="skip")
    assert got == [Record("a", "", "b")]
    assert len(got.skipped) == 1 and f"line {line} " in got.skipped[0].where and words.split()[0] in got.skipped[0].reason


def test_json_list_errors_name_the_line(tmp_path):
    path = write_text(tmp_path / "a.json", '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c"}\n]\n')
    with pytest.raises(FormatError, match=r"a.json, line 3 \(item 1\): missing key"):
        read_alpaca(path)
    with pytest.warns(UserWarning):
        assert len(read_alpaca(path, on_error="skip")) == 1
    with pytest.raises(FormatError, match=r"line 2 \(item 0\): not valid JSON"):
        read_alpaca(write_text(tmp_path / "b.json", '[\n {"instruction": "a",, "output": "b"}\n]'))
    with pytest.raises(FormatError, match="line 2 .item 1.: expected ','"):
        read_alpaca(write_text(tmp_path / "d.json", '[{"instruction": "a", "output": "b"}\n {"instruction": "c", "output": "d"}]'))
    with pytest.raises(FormatError, match="not closed"):
        read_alpaca(write_text(tmp_path / "c.json", '[{"instruction": "a", "output": "b"}'))


def test_dolly_errors(tmp_path):
    with pytest.raises(FormatError, match=r"line 1 \(item 0\): missing key.*context"):
        read_dolly(write_text(tmp_path / "d.jsonl", '{"instruction": "a", "response": "b"}\n'))


def test_reader_argument_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_jsonl(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="on_error"):
        read_jsonl(write_text(tmp_path / "x.jsonl", GOOD), on_error="ignore")
    with pytest.raises(TypeError, match="Record"):
        write_jsonl([{"instruction": "a"}], tmp_path / "y.json")
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
    with pytest.raises(ValueError, match="history"):
        write_dolly(r, tmp_path / "d.jsonl")



# ----------------------------------------------------------------------------- real-file problems
ITEM = {"instruction": "a", "input": "", "output": "b"}


def test_line_and_item_are_counted_through_a_long_list(tmp_path):
    """The list is read in one pass; line numbers stay right deep into the file."""
    items = [dict(ITEM, instruction=f"task {i}") for i in range(3000)]
    items[2500] = {"instruction": "no output"}
    text = json.dumps(items, indent=2)
    path = write_text(tmp_path / "big.json", text)
    line = 1 + text[:text.rindex("{", 0, text.index('"no output"'))].count("\n")   # where the item starts
    with pytest.raises(FormatError, match=rf"big.json, line {line} \(item 2500\): missing key"):
        read_alpaca(path)
    with pytest.warns(UserWarning):
        got = read_alpaca(path, on_error="skip")
    assert len(got) == 2999 and got[2500].instruction == "task 2501"
    one_line = write_text(tmp_path / "one.json", json.dumps(items))
    with pytest.raises(FormatError, match=r"line 1 \(item 2500\)"):
        read_alpaca(one_line)


def raises_then_skips(path, error: str):
    """The Alpaca reader raises naming ``error``; in skip mode it reports one problem and returns the rest."""
    with pytest.raises(FormatError, match=error):
        read_alpaca(path)
    with pytest.warns(UserWarning, match="skipped 1"):
        return read_alpaca(path, on_error="skip")


def test_trailing_and_missing_commas(tmp_path):
    path = write_text(tmp_path / "t.json", '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c", "output": "d"},\n]\n')
    got = raises_then_skips(path, "trailing comma after item 1")
    assert [r.output for r in got] == ["b", "d"] and "every item was read" in got.skipped[0].reason
    path = write_text(tmp_path / "m.json", '[{"instruction": "a", "output": "b"}\n {"instruction": "c", "output": "d"}]')
    with pytest.warns(UserWarning):
        got = read_alpaca(path, on_error="skip")
    assert [r.output for r in got] == ["b", "d"] and "expected ','" in got.skipped[0].reason


def test_a_file_cut_short_keeps_what_it_has_in_skip_mode(tmp_path):
    path = write_text(tmp_path / "cut.json", '[\n {"instruction": "a", "output": "b"},\n {"instruction": "c", "output": "d"}')
    got = raises_then_skips(path, "not closed")
    assert [r.output for r in got] == ["b", "d"] and "cut short" in got.skipped[0].reason
    with pytest.warns(UserWarning):
        got = read_alpaca(write_text(tmp_path / "cut2.json", '[{"instruction": "a", "output": "b"}, {"instruction": "c", "out'),
                          on_error="skip")
    assert [r.output for r in got] == ["b"] and "not valid JSON" in got.skipped[0].reason


def test_skip_mode_reads_on_after_a_broken_item(tmp_path):
    text = ('[\n {"instruction": "a", "output": "b"},\n {"instruction": "c",, "output": "d"},\n'
            ' {"instruction": "e", "output": "f"}\n]')
    with pytest.warns(UserWarning, match="skipped 1"):
        got = read_alpaca(write_text(tmp_path / "x.json", text), on_error="skip")
    assert [r.output for r in got] == ["b", "f"]
    assert "line 3 (item 1)" in got.skipped[0].where and "not valid JSON" in got.skipped[0].reason


@pytest.mark.parametrize("after, words", [('[{"instruction": "c", "output": "d"}]', "two JSON lists"),
                                          ("garbage", "text after the end")])
def test_text_after_the_list_is_never_ignored(tmp_path, after, words):
    path = write_text(tmp_path / "x.json", '[{"instruction": "a", "output": "b"}]\n' + after)
    with pytest.raises(FormatError, match=rf"x.json, line 2: .*{words}"):
        read_alpaca(path)
    with pytest.warns(UserWarning):
        got = read_alpaca(path, on_error="skip")
    assert len(got) == 1 and words in got.skipped[0].reason


@pytest.mark.parametrize("text, words", [("", "is empty"), ("  \n\n", "is empty"), ("[ ]", "empty JSON list"),
                                         ('{\n  "instruction": "a",\n  "output": "b"\n}\n', "single JSON object")])
def test_empty_files_and_a_lone_object_are_clear_errors(tmp_path, text, words):
    with pytest.raises(FormatError, match=words):
        read_alpaca(write_text(tmp_path / "e.json", text))


def test_encodings_bom_and_gzip(tmp_path):
    rows = [{"instruction": "把这个词翻译成英文。", "input": "苹果", "output": "apple"}]
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps(rows[0], ensure_ascii=False).encode())
    assert read_jsonl(tmp_path / "bom.jsonl")[0].input == "苹果"
    (tmp_path / "gbk.json").write_bytes(json.dumps(rows, ensure_ascii=False).encode("gbk"))
    with pytest.raises(FormatError, match=r"gbk.json: byte \d+ .*not valid utf-8.*encoding='gb18030'"):
        read_alpaca(tmp_path / "gbk.json")
    assert read_alpaca(tmp_path / "gbk.json", encoding="gb18030")[0].input == "苹果"
    with pytest.raises(ValueError, match="unknown encoding"):
        read_alpaca(tmp_path / "gbk.json", encoding="klingon")
    (tmp_path / "z.json.gz").write_bytes(gzip.compress(json.dumps(rows).encode()))
    assert read_alpaca(tmp_path / "z.json.gz")[0].output == "apple"


def test_unknown_keys_are_kept_and_written_back(tmp_path):
    rows = [{"instruction": "a", "input": "", "output": "b", "system": "Be brief.", "id": 7}]
    got = read_alpaca(write_json(tmp_path / "a.json", rows, lines=False))
    assert got[0].meta == {"system": "Be brief.", "id": 7}
    assert json.loads(write_alpaca(got, tmp_path / "b.json").read_text(encoding="utf-8")) == rows
    dolly = [{"instruction": "a", "context": "", "response": "b", "category": "qa", "source": "x"}]
    back = write_dolly(read_dolly(write_json(tmp_path / "d.jsonl", dolly, lines=True)), tmp_path / "e.jsonl")
    assert [json.loads(line) for line in back.read_text(encoding="utf-8").splitlines()] == dolly


def test_empty_outputs_load_and_drop_by_a_named_rule(tmp_path):
    rows = [ITEM, dict(ITEM, output=""), dict(ITEM, output="  "), dict(ITEM, instruction="c")]
    got = read_alpaca(write_json(tmp_path / "a.json", rows, lines=False))
    assert len(got) == 4
    kept = got.drop(empty_output, "empty output")
    assert isinstance(kept, Records) and len(kept) == 2 and len(got) == 4
    assert [s.where for s in kept.skipped] == ["record 1", "record 2"] and "empty output" in kept.skipped[0].reason
    with pytest.raises(TypeError, match="rule"):
        got.drop("empty", "x")


def test_read_rows_gives_where_for_every_value(tmp_path):
    rows, skipped = read_rows(write_text(tmp_path / "r.jsonl", '{"a": 1}\n\n[2]\n'))
    assert [(w.line, w.item, v) for w, v in rows] == [(1, 0, {"a": 1}), (3, 1, [2])] and skipped == []


def test_a_file_in_another_format_names_its_reader(tmp_path):
    path = write_json(tmp_path / "chat.json", [{"conversations": [{"from": "human", "value": "hi"}], "tools": "[]"}],
                      lines=False)
    with pytest.raises(FormatError, match="looks like ShareGPT: llmtap.conversations.read_sharegpt"):
        read_alpaca(path)
    with pytest.raises(FormatError, match="looks like Alpaca"):
        read_dolly(write_json(tmp_path / "a.jsonl", [ITEM], lines=True))
