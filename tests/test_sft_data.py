"""What SFT tools take: LLaMA-Factory's mapped layouts, TRL's dataset types and OpenAI's chat files,
read and written back exactly, every bad row named by file and line."""
import json

import pytest

from llmtap.conversations import Conversation, to_records
from llmtap.instruct import FormatError, Record
from llmtap.sft_data import (PromptCompletion, as_prompt_completion, check_turns, layout, read_llamafactory,
                             read_openai_jsonl, read_trl, trl_kind, write_llamafactory, write_openai_jsonl, write_trl)


def write_rows(path, rows, lines=False):
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) if lines else json.dumps(rows, indent=2)
    path.write_text(text, encoding="utf-8")
    return path


def json_rows(path):
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if text.lstrip().startswith("[") else [json.loads(line) for line in text.splitlines()]


def dataset(tmp_path, rows, lines=False, **entry):
    """A dataset_info.json with one dataset "d" over ``rows``; returns its path."""
    name = "d.jsonl" if lines else "d.json"
    write_rows(tmp_path / name, rows, lines)
    info = tmp_path / "dataset_info.json"
    info.write_text(json.dumps({"other": {"file_name": "x.json"}, "d": {"file_name": name, **entry}}), encoding="utf-8")
    return info


def metas(items):
    return [item.meta for item in items]


# ----------------------------------------------------------------------------- LLaMA-Factory: alpaca
ALPACA = [{"instruction": "Translate to English.", "input": "苹果", "output": "apple", "id": 7},
          {"instruction": "Name 2 fruits.", "input": "", "output": "apple, pear"}]


def test_alpaca_default_mapping_round_trip_is_exact(tmp_path):
    got = read_llamafactory(dataset(tmp_path, ALPACA), "d")
    assert got == [Record("Translate to English.", "苹果", "apple"), Record("Name 2 fruits.", "", "apple, pear")]
    assert metas(got) == [{"id": 7}, {}] and got.skipped == []
    info = write_llamafactory(got, tmp_path / "out" / "back.json", "alpaca")
    assert json_rows(tmp_path / "out" / "back.json") == ALPACA
    entry = json.loads(info.read_text(encoding="utf-8"))["back"]
    assert entry == {"file_name": "back.json", "formatting": "alpaca",
                     "columns": {"prompt": "instruction", "query": "input", "response": "output"}}
    again = read_llamafactory(info, "back")
    assert again == got and metas(again) == metas(got)


MAPPED = {"prompt": "question", "query": "context", "response": "answer", "history": "turns", "system": "sys",
          "tools": "fns"}
MAPPED_ROWS = [{"question": "And a third?", "context": "", "answer": "lemon",
                "turns": [["Name 2 fruits.", "pear, fig"]],
                "sys": "Be brief.", "fns": "[]", "source": "handmade"},
               {"question": "Add them.", "context": "2 and 3", "answer": "5", "turns": [], "sys": None}]


def test_alpaca_column_mapping_is_honoured(tmp_path):
    got = read_llamafactory(dataset(tmp_path, MAPPED_ROWS, columns=MAPPED), "d")
    assert got == [Record("And a third?", "", "lemon", history=[("Name 2 fruits.", "pear, fig")]),
                   Record("Add them.", "2 and 3", "5")]
    assert metas(got) == [{"system": "Be brief.", "tools": "[]", "source": "handmade"}, {"system": None}]
    info = write_llamafactory(got, tmp_path / "o" / "back.jsonl", "alpaca", columns=MAPPED)
    assert json_rows(tmp_path / "o" / "back.jsonl") == MAPPED_ROWS          # a null system stays null
    assert json.loads(info.read_text())["back"]["columns"] == MAPPED
    assert read_llamafactory(info, "back") == got


def test_columns_given_replace_the_defaults(tmp_path):
    """LLaMA-Factory reads only the columns an entry names: "input" and "history" are left out here."""
    rows = [{"instruction": "Add them.", "input": "2 and 3", "output": "5", "history": [["a", "b"]], "system": "x"}]
    info = dataset(tmp_path, rows, columns={"prompt": "instruction", "response": "output"})
    with pytest.warns(UserWarning, match=r"'input' \(1 rows\).*'history'.*'system'.*does not read them"):
        got = read_llamafactory(info, "d")
    assert got == [Record("Add them.", "", "5")]                     # what LLaMA-Factory would train on
    assert got[0].meta == {"input": "2 and 3", "history": [["a", "b"]], "system": "x"}
    write_llamafactory(got, tmp_path / "o" / "back.json", "alpaca",
                       columns={"prompt": "instruction", "response": "output"})
    assert json_rows(tmp_path / "o" / "back.json") == rows


def test_writer_maps_every_column_the_records_use(tmp_path):
    records = [Record("And a third?", "", "lemon", history=[("Name 2 fruits.", "pear, fig")],
                      meta={"system": "Be brief."})]
    info = write_llamafactory(records, tmp_path / "h.json", "alpaca")
    assert json.loads(info.read_text())["h"]["columns"] == {"prompt": "instruction", "query": "input",
                                                            "response": "output", "history": "history",
                                                            "system": "system"}
    back = read_llamafactory(info, "h")
    assert back == records and back[0].meta == {"system": "Be brief."}
    assert set(json.loads(info.read_text())) == {"h"}
    write_llamafactory(records, tmp_path / "g.jsonl", "alpaca", name="second")    # the entries add up
    assert set(json.loads(info.read_text())) == {"h", "second"}


@pytest.mark.parametrize("row, words", [
    ({"input": "x", "output": "y"}, r"column 'instruction' \(the prompt column of the mapping\) is missing"),
    ({"instruction": "a", "output": ["y"]}, r"column 'output' \(response\) must be a string, got list"),
    ({"instruction": "a", "output": None}, r"column 'output' \(the response column of the mapping\) is null"),
    ({"instruction": "  ", "output": "y"}, r"column 'instruction' \(prompt\) is empty"),
    ({"instruction": "a", "input": 3, "output": "y"}, r"column 'input' \(query\) must be a string"),
    ([1, 2], "expected a JSON object"),
])
def test_alpaca_bad_rows_name_file_and_line(tmp_path, row, words):
    info = dataset(tmp_path, [ALPACA[1], row], lines=True)
    with pytest.raises(FormatError, match=rf"d.jsonl, line 2 \(item 1\): {words}.*LLaMA-Factory alpaca"):
        read_llamafactory(info, "d")
    with pytest.warns(UserWarning, match="skipped 1"):
        got = read_llamafactory(info, "d", on_error="skip")
    assert got == [Record("Name 2 fruits.", "", "apple, pear")]
    assert "line 2 (item 1)" in got.skipped[0].where


def test_alpaca_history_and_system_types(tmp_path):
    columns = {"prompt": "instruction", "response": "output", "history": "history", "system": "system"}
    for row, words in [({"instruction": "a", "output": "b", "history": [["only one"]]},
                        r"column 'history' \(history\) must be a list of \[user, assistant\]"),
                       ({"instruction": "a", "output": "b", "history": "a, b"}, r"column 'history' .*must be a list"),
                       ({"instruction": "a", "output": "b", "system": ["x"]},
                        r"column 'system' \(system\) must be a string")]:
        with pytest.raises(FormatError, match=rf"line 1 \(item 0\): {words}"):
            read_llamafactory(dataset(tmp_path, [row], lines=True, columns=columns), "d")
    clash = {"instruction": "a", "output": "b", "sys": "x", "system": "y"}
    with pytest.raises(FormatError, match="a key 'system' besides the system column 'sys'"):
        read_llamafactory(dataset(tmp_path, [clash], columns={"prompt": "instruction", "response": "output",
                                                             "system": "sys"}), "d")


# ----------------------------------------------------------------------------- LLaMA-Factory: sharegpt
TOOL_CALL = '{"name": "weather", "arguments": {"city": "Paris"}}'
SHAREGPT = [
    {"conversations": [{"from": "human", "value": "Weather in Paris?"}, {"from": "function_call", "value": TOOL_CALL},
                       {"from": "observation", "value": '{"sky": "sunny"}'}, {"from": "gpt", "value": "Sunny."}],
     "tools": '[{"name": "weather"}]'},
    {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "1+1?"},
                       {"from": "gpt", "value": "2", "note": "checked"}], "id": "c2"},
]


def test_sharegpt_default_tags_round_trip_is_exact(tmp_path):
    info = dataset(tmp_path, SHAREGPT, formatting="sharegpt", columns={"messages": "conversations", "tools": "tools"})
    got = read_llamafactory(info, "d")
    assert [[m["role"] for m in c.messages] for c in got] == [["user", "tool_call", "tool", "assistant"],
                                                              ["system", "user", "assistant"]]
    assert metas(got) == [{"tools": '[{"name": "weather"}]'}, {"id": "c2"}]
    assert got[1].messages[2] == {"role": "assistant", "content": "2", "note": "checked"}
    assert got[0].weights() == [0, 1, 0, 1]
    columns = {"messages": "conversations", "tools": "tools"}
    back = write_llamafactory(got, tmp_path / "o" / "s.json", "sharegpt", columns)
    assert json_rows(tmp_path / "o" / "s.json") == SHAREGPT
    assert read_llamafactory(back, "s") == got
    assert to_records(got) == [Record("1+1?", "", "2")] and "tool turns" in to_records(got).skipped[0].reason


ROLE_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
             "system_tag": "system"}
CHAT = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello"}], "sys": "Ignored: the system message wins."}]


def test_sharegpt_custom_tags_and_columns_are_honoured(tmp_path):
    columns = {"messages": "messages", "system": "sys"}
    got = read_llamafactory(dataset(tmp_path, CHAT, formatting="sharegpt", columns=columns, tags=ROLE_TAGS), "d")
    assert got[0].messages[0] == {"role": "system", "content": "Be brief."}
    assert got[0].meta == {"system": "Ignored: the system message wins."}
    info = write_llamafactory(got, tmp_path / "o" / "c.json", "sharegpt", columns, ROLE_TAGS)
    assert json_rows(tmp_path / "o" / "c.json") == CHAT
    assert json.loads(info.read_text())["c"]["tags"] == ROLE_TAGS
    assert read_llamafactory(info, "c") == got


def test_tags_given_replace_the_defaults(tmp_path):
    """Without a system_tag, LLaMA-Factory does not see a leading system message: it is an unknown speaker."""
    tags = {k: v for k, v in ROLE_TAGS.items() if k != "system_tag"}
    info = dataset(tmp_path, CHAT, formatting="sharegpt", columns={"messages": "messages"}, tags=tags)
    with pytest.raises(FormatError, match='message 0 is from .system., which no tag names.*add "system_tag": "system"'):
        read_llamafactory(info, "d")


@pytest.mark.parametrize("turns, words", [
    ([("gpt", "hi"), ("human", "hello")], r"message 0 is by the assistant \('gpt'\) where the user \('human'\).*first"),
    ([("human", "hi"), ("bot", "hello")], r"message 1 is from 'bot', which no tag names"),
    ([("human", "hi"), ("gpt", "hello"), ("human", "bye")],
     r"the conversation ends with the user \('human'\), not with the assistant"),
    ([("human", "hi"), ("human", "again"), ("gpt", "x")], r"message 1 is by the user \('human'\) where the assistant"),
    ([("human", "hi"), ("system", "late"), ("gpt", "x")], r"message 1 is by the system"),
    ([("system", "only")], "the conversation has no turn after its system message"),
    ([("human", 3), ("gpt", "x")], r"message 0 \(human\) must have text content, got int"),
])
def test_sharegpt_bad_turns_name_file_line_and_reason(tmp_path, turns, words):
    good = {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}
    bad = {"conversations": [{"from": f, "value": v} for f, v in turns]}
    info = dataset(tmp_path, [good, bad], lines=True, formatting="sharegpt")
    with pytest.raises(FormatError, match=rf"d.jsonl, line 2 \(item 1\): {words}"):
        read_llamafactory(info, "d")
    with pytest.warns(UserWarning, match="skipped 1"):
        got = read_llamafactory(info, "d", on_error="skip")
    assert len(got) == 1 and "line 2 (item 1)" in got.skipped[0].where


@pytest.mark.parametrize("row, words", [
    ({"messages": []}, r"column 'conversations' \(the messages column of the mapping\) is missing"),
    ({"conversations": []}, r"column 'conversations' \(messages\) must be a non-empty list of messages"),
    ({"conversations": ["hi"]}, "message 0 must be an object with 'from' and 'value'"),
    ({"conversations": [{"from": "human", "text": "hi"}]}, r"message 0 has no 'value' key \(the content_tag"),
    ({"conversations": [{"from": "human", "value": "a", "role": "user"}, {"from": "gpt", "value": "b"}]},
     "message 0 has a key 'role' besides the tags"),
])
def test_sharegpt_bad_rows(tmp_path, row, words):
    with pytest.raises(FormatError, match=rf"line 1 \(item 0\): {words}"):
        read_llamafactory(dataset(tmp_path, [row], lines=True, formatting="sharegpt"), "d")


def test_check_turns_is_llamafactory_rule():
    check_turns([{"role": "user"}, {"role": "tool_call"}, {"role": "tool"}, {"role": "assistant"}])
    with pytest.raises(ValueError, match="message 0 is by the assistant where the user"):
        check_turns([{"role": "assistant"}, {"role": "user"}])
    with pytest.raises(TypeError, match="list of"):
        check_turns("user: hi")


def test_conversions_between_the_two_formattings(tmp_path):
    records = [Record("Add them.", "2 and 3", "5", meta={"system": "Be brief."})]
    info = write_llamafactory(records, tmp_path / "s.json", "sharegpt")
    assert json_rows(tmp_path / "s.json")[0]["conversations"][0] == {"from": "system", "value": "Be brief."}
    convs = read_llamafactory(info, "s")
    back = read_llamafactory(write_llamafactory(convs, tmp_path / "a.json", "alpaca"), "a")
    assert back == [Record("Add them.\n\n2 and 3", "", "5")] and back[0].meta == {"system": "Be brief."}


def test_writer_refuses_what_llamafactory_would_misread(tmp_path):
    with pytest.raises(ValueError, match="item 1: the record has an input but the columns map no 'query'"):
        write_llamafactory([Record("a", "", "b"), Record("c", "d", "e")], tmp_path / "x.json", "alpaca",
                           columns={"prompt": "instruction", "response": "output"})
    with pytest.raises(ValueError, match="item 0: the record has a history .*add \"history\": \"history\""):
        write_llamafactory([Record("a", "", "b", history=[("c", "d")])], tmp_path / "x.json", "alpaca",
                           columns={"prompt": "instruction", "query": "input", "response": "output"})
    chat = Conversation([{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                         {"role": "assistant", "content": "a"}])
    with pytest.raises(ValueError, match="item 0: message 0 is a system message but the tags name no system_tag"):
        write_llamafactory([chat], tmp_path / "x.json", "sharegpt", {"messages": "messages"},
                           {k: v for k, v in ROLE_TAGS.items() if k != "system_tag"})
    backwards = Conversation([{"role": "assistant", "content": "a"}, {"role": "user", "content": "u"}])
    with pytest.raises(ValueError, match="item 0: message 0 is by the assistant"):
        write_llamafactory([backwards], tmp_path / "x.json", "sharegpt")
    calls = Conversation([{"role": "user", "content": "u"}, {"role": "assistant", "content": None, "tool_calls": [{}]}])
    with pytest.raises(ValueError, match="no text content"):
        write_llamafactory([calls], tmp_path / "x.json", "sharegpt")
    with pytest.raises(ValueError, match="formatting must be"):
        write_llamafactory([], tmp_path / "x.json", "openai")
    with pytest.raises(ValueError, match=r"\.json or \.jsonl"):
        write_llamafactory([], tmp_path / "x.json.gz", "alpaca")
    with pytest.raises(TypeError, match="item 0 is a dict"):
        write_llamafactory([{"instruction": "a"}], tmp_path / "x.json", "alpaca")
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        write_llamafactory([Record("a", "", "b")], tmp_path / "x.json", "alpaca", name="")
    with pytest.raises(ValueError, match="a .json or .jsonl file of its own"):
        write_llamafactory([Record("a", "", "b")], tmp_path / "dataset_info.json", "alpaca")
    (tmp_path / "dataset_info.json").write_text("[]")
    with pytest.raises(FormatError, match="JSON object of dataset name"):
        write_llamafactory([Record("a", "", "b")], tmp_path / "x.json", "alpaca")
    assert not (tmp_path / "x.json").exists()                # nothing written when anything is wrong


@pytest.mark.parametrize("entry, error, words", [
    ({"hf_hub_url": "someone/data", "file_name": "d.json"}, ValueError, "has 'hf_hub_url', so LLaMA-Factory loads it"),
    ({"file_name": "d.json", "ranking": True}, ValueError, "preference data"),
    ({"file_name": "d.json", "formatting": "sharegpt", "columns": {"messages": "m", "kto_tag": "label"}}, ValueError,
     "columns name 'kto_tag'"),
    ({"file_name": "d.json", "columns": {"promt": "q", "response": "a"}}, ValueError, "columns has 'promt'"),
    ({"file_name": "d.json", "columns": {"messages": "m"}}, ValueError, "a sharegpt column: set \"formatting\""),
    ({"file_name": "d.json", "columns": {"prompt": "text"}}, ValueError, "no 'response' column.*pre-training"),
    ({"file_name": "d.json", "columns": {"prompt": "q", "response": "q"}}, ValueError, "mapped to two columns"),
    ({"file_name": "d.json", "tags": {"role_tag": "role"}}, ValueError, "tags name the speakers of sharegpt"),
    ({"file_name": "d.json", "formatting": "sharegpt", "tags": {"content_tag": "c"}}, ValueError,
     "tags give no 'role_tag'"),
    ({"file_name": "d.json", "formatting": "sharegpt", "tags": {**ROLE_TAGS, "bot_tag": "bot"}}, ValueError,
     "unknown tag 'bot_tag'"),
    ({"file_name": "d.json", "formatting": "sharegpt", "tags": {**ROLE_TAGS, "system_tag": "user"}}, ValueError,
     "two tags have the value 'user'"),
    ({"file_name": "d.json", "formatting": "openai"}, ValueError, "formatting must be 'alpaca' or 'sharegpt'"),
    ({"file_name": "nowhere.json"}, FileNotFoundError, "no file"),
    ({"file_name": "d.csv"}, ValueError, "not JSON or JSON lines"),
    ({"formatting": "alpaca"}, ValueError, "has no file_name"),
])
def test_dataset_info_entry_errors(tmp_path, entry, error, words):
    write_rows(tmp_path / "d.json", ALPACA)
    (tmp_path / "d.csv").write_text("instruction,output\n")
    with pytest.raises(error, match=words):
        read_llamafactory({"d": entry}, "d", data_dir=tmp_path)


def test_dataset_info_arguments(tmp_path):
    info = dataset(tmp_path, ALPACA)
    assert read_llamafactory(tmp_path, "d") == read_llamafactory(info, "d")       # the folder will do
    with pytest.raises(KeyError, match="no dataset 'nope'; it has \\['d', 'other'\\]"):
        read_llamafactory(info, "nope")
    with pytest.raises(ValueError, match="pass data_dir="):
        read_llamafactory({"d": {"file_name": "d.json"}}, "d")
    with pytest.raises(FileNotFoundError, match="no dataset_info.json"):
        read_llamafactory(tmp_path / "empty", "d")
    with pytest.raises(TypeError, match="dataset_info must be"):
        read_llamafactory(3, "d")
    with pytest.raises(ValueError, match="on_error"):
        read_llamafactory(info, "d", on_error="ignore")
    (tmp_path / "bad.json").write_text('{"d": {"file_name": "d.json"},}')
    with pytest.raises(FormatError, match=r"bad.json, line 1: not valid JSON"):
        read_llamafactory(tmp_path / "bad.json", "d")


def test_a_folder_is_read_file_by_file(tmp_path):
    (tmp_path / "parts").mkdir()
    write_rows(tmp_path / "parts" / "1.json", ALPACA[:1])
    write_rows(tmp_path / "parts" / "2.jsonl", ALPACA[1:], lines=True)
    (tmp_path / "parts" / "notes.txt").write_text("not data")
    got = read_llamafactory({"d": {"file_name": "parts"}}, "d", data_dir=tmp_path)
    assert [r.output for r in got] == ["apple", "apple, pear"]


def test_layout_defaults():
    assert layout().columns == {"prompt": "instruction", "query": "input", "response": "output"}
    assert layout("sharegpt").tag_of == {"user": "human", "assistant": "gpt", "tool": "observation",
                                         "tool_call": "function_call", "system": "system"}
    assert layout("sharegpt", tags=ROLE_TAGS).tags["observation_tag"] is None


# ----------------------------------------------------------------------------- TRL
STANDARD = [{"prompt": "The sky is", "completion": " blue."}, {"prompt": "2 + 2 =", "completion": " 4", "split": "x"}]
CONVERSATIONAL = [
    {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name 2 fruits."},
                {"role": "assistant", "content": "apple, pear"}, {"role": "user", "content": "And a third?"}],
     "completion": [{"role": "assistant", "content": "lemon"}], "id": 3},
]
MESSAGES = [{"messages": [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}], "source": "x"}]


@pytest.mark.parametrize("rows, kind", [(STANDARD, "prompt-completion"), (MESSAGES, "messages"),
                                        (CONVERSATIONAL, "conversational-prompt-completion")])
def test_trl_round_trip_is_exact(tmp_path, rows, kind):
    got = read_trl(write_rows(tmp_path / "t.jsonl", rows, lines=True))
    assert trl_kind(rows[0]) == kind and got.skipped == []
    back = write_trl(got, tmp_path / "back.jsonl", kind)
    assert json_rows(back) == rows
    again = read_trl(back)
    assert again == got and metas(again) == metas(got)


def test_trl_types_read_as_records_and_conversations(tmp_path):
    standard = read_trl(write_rows(tmp_path / "s.jsonl", STANDARD, lines=True))
    assert standard == [Record("The sky is", "", " blue."), Record("2 + 2 =", "", " 4")]
    assert standard[1].meta == {"split": "x"}
    pc = read_trl(write_rows(tmp_path / "c.json", CONVERSATIONAL))[0]
    assert isinstance(pc, PromptCompletion) and pc.n_prompt == 4 and pc.meta == {"id": 3}
    assert pc.completion == [{"role": "assistant", "content": "lemon"}]
    assert pc.weights() == [0, 0, 0, 0, 1]                       # the prompt's reply is context only
    records = to_records([pc])
    assert records == [Record("And a third?", "", "lemon", history=[("Name 2 fruits.", "apple, pear")])]
    assert records[0].meta["system"] == "Be brief."


def test_trl_conversions(tmp_path):
    record = Record("Add them.", "2 and 3", "5", history=[("Hi", "Hello")])
    pc = as_prompt_completion(record)
    assert [m["content"] for m in pc.completion] == ["5"] and pc.prompt[-1]["content"] == "Add them.\n\n2 and 3"
    chat = Conversation([{"role": "user", "content": "Weather?"}, {"role": "tool_call", "content": "{}"},
                         {"role": "tool", "content": "sunny"}, {"role": "assistant", "content": "Sunny."}])
    assert as_prompt_completion(chat).n_prompt == 1                 # what follows the last user message
    rows = json_rows(write_trl([Record("Add them.", "2 and 3", "5")], tmp_path / "s.jsonl", "prompt-completion"))
    assert rows == [{"prompt": "Add them.\n\n2 and 3", "completion": "5"}]
    rows = json_rows(write_trl([record], tmp_path / "m.jsonl", "messages"))
    assert [m["role"] for m in rows[0]["messages"]] == ["user", "assistant", "user", "assistant"]
    one = Conversation([{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}])
    rows = json_rows(write_trl([one], tmp_path / "o.jsonl", "prompt-completion"))
    assert rows == [{"prompt": "1+1?", "completion": "2"}]
    with pytest.raises(ValueError, match="item 0: the record has history"):
        write_trl([record], tmp_path / "x.jsonl", "prompt-completion")
    two = Conversation(one.messages * 2)
    with pytest.raises(ValueError, match="item 0: a conversation of 2 trained replies"):
        write_trl([two], tmp_path / "x.jsonl", "prompt-completion")
    with pytest.raises(ValueError, match="no reply after its last user message"):
        as_prompt_completion(Conversation([{"role": "user", "content": "hi"}]))
    with pytest.raises(TypeError, match="item 1: expected a Record"):
        write_trl([one, {"prompt": "a"}], tmp_path / "x.jsonl", "conversational-prompt-completion")
    with pytest.raises(ValueError, match="kind must be one of"):
        write_trl([one], tmp_path / "x.jsonl", "chat")
    with pytest.raises(ValueError, match="meta key 'prompt' is also a TRL column"):
        write_trl([Record("a", "", "b", meta={"prompt": "c"})], tmp_path / "x.jsonl", "prompt-completion")
    with pytest.warns(UserWarning, match="no system prompt"):
        write_trl([Record("a", "", "b", meta={"system": "Be brief."})], tmp_path / "x.jsonl", "prompt-completion")


def test_trl_mixed_types_are_named_by_line(tmp_path):
    path = write_rows(tmp_path / "mix.jsonl", STANDARD + MESSAGES + CONVERSATIONAL, lines=True)
    with pytest.raises(FormatError, match=r"mix.jsonl, line 3 \(item 2\): a messages row, but the first row "
                                          r"\(line 1\) is prompt-completion.*split the file"):
        read_trl(path)
    with pytest.warns(UserWarning, match="skipped 2"):
        got = read_trl(path, on_error="skip")
    assert len(got) == 2 and "line 4" in got.skipped[1].where


@pytest.mark.parametrize("row, words", [
    ({"prompt": "a", "chosen": "b", "rejected": "c"}, "preference row"),
    ({"prompt": "a"}, "prompt-only row"),
    ({"prompt": "a", "completion": "b", "label": False}, "labelled good or bad"),
    ({"messages": [{"role": "user", "content": "a"}], "label": True}, "labelled good or bad"),
    ({"text": "The sky is blue."}, "language-modeling row"),
    ({"instruction": "a", "output": "b"}, "no TRL columns.*looks like Alpaca"),
    ({"prompt": "a", "completion": [{"role": "assistant", "content": "b"}]},
     "'prompt' is a str and 'completion' a list"),
    ({"prompt": " ", "completion": "b"}, "the prompt is empty"),
    ({"prompt": [], "completion": [{"role": "assistant", "content": "b"}]}, "'prompt' must be a non-empty list"),
    ({"prompt": [{"role": "user", "content": "a"}], "completion": [{"role": "user", "content": "b"}]},
     "the completion starts with a user message"),
    ({"prompt": [{"role": "user", "content": "a"}], "completion": [{"role": "assistant", "content": 5}]},
     "no text content"),
])
def test_trl_bad_rows(tmp_path, row, words):
    path = write_rows(tmp_path / "t.jsonl", [row], lines=True)
    with pytest.raises(FormatError, match=rf"t.jsonl, line 1 \(item 0\): .*{words}.*in TRL format"):
        read_trl(path)


def test_prompt_completion_validation():
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    for n in (0, 2, True, "1"):
        with pytest.raises(ValueError, match="n_prompt must be between 1 and 1"):
            PromptCompletion(messages, n_prompt=n)
    assert PromptCompletion(messages, n_prompt=1) != Conversation(messages)
    with pytest.raises(TypeError, match="expected a Record"):
        as_prompt_completion({"prompt": "a"})


# ----------------------------------------------------------------------------- OpenAI
OPENAI = [
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"},
                  {"role": "assistant", "content": "Paris, obviously.", "weight": 0},
                  {"role": "user", "content": "Politely?"}, {"role": "assistant", "content": "Paris.", "weight": 1}]},
    {"messages": [{"role": "user", "content": "Weather?"},
                  {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function",
                                                                        "function": {"name": "w", "arguments": "{}"}}]},
                  {"role": "tool", "content": "sunny", "tool_call_id": "1"},
                  {"role": "assistant", "content": "Sunny."}],
     "tools": [{"type": "function", "function": {"name": "w"}}]},
]


def test_openai_round_trip_keeps_the_weights(tmp_path):
    got = read_openai_jsonl(write_rows(tmp_path / "o.jsonl", OPENAI, lines=True))
    assert got[0].weights() == [0, 0, 0, 0, 1] and got[1].weights() == [0, 1, 0, 1]
    assert got[1].meta == {"tools": OPENAI[1]["tools"]}
    back = write_openai_jsonl(got, tmp_path / "back.jsonl")
    assert json_rows(back) == OPENAI and read_openai_jsonl(back) == got
    records = to_records(got[:1])                # the weight-0 reply is history, not a record
    assert records == [Record("Politely?", "", "Paris.", history=[("Capital of France?", "Paris, obviously.")])]


def test_replies_all_of_weight_zero_are_reported():
    chat = Conversation([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 0}],
                        where="x")
    records = to_records([chat])
    assert records == [] and "every one has weight 0" in records.skipped[0].reason


@pytest.mark.parametrize("message, words", [
    ({"role": "assistant", "content": "b", "weight": 2}, "message 1 has weight 2; a weight is 0"),
    ({"role": "assistant", "content": "b", "weight": True}, "message 1 has weight True"),
    ({"role": "assistant", "content": "b", "weight": "1"}, "message 1 has weight '1'"),
    ({"role": "tool_call", "content": "{}"}, "message 1 has role 'tool_call'; OpenAI's roles"),
    ({"role": "user", "content": "b"}, "no assistant message"),
])
def test_openai_bad_rows(tmp_path, message, words):
    bad = {"messages": [{"role": "user", "content": "a"}, message]}
    path = write_rows(tmp_path / "o.jsonl", [OPENAI[0], bad], lines=True)
    with pytest.raises(FormatError, match=rf"o.jsonl, line 2 \(item 1\): {words}.*OpenAI chat"):
        read_openai_jsonl(path)
    with pytest.warns(UserWarning, match="skipped 1"):
        got = read_openai_jsonl(path, on_error="skip")
    assert len(got) == 1 and "line 2" in got.skipped[0].where


def test_openai_weight_only_on_assistant_messages(tmp_path):
    bad = {"messages": [{"role": "user", "content": "a", "weight": 0}, {"role": "assistant", "content": "b"}]}
    with pytest.raises(FormatError, match=r"message 0 \(user\) has a weight; only assistant messages"):
        read_openai_jsonl(write_rows(tmp_path / "o.jsonl", [bad], lines=True))


def test_openai_writer_checks_each_item(tmp_path):
    back = read_openai_jsonl(write_openai_jsonl([Record("Add them.", "2 and 3", "5")], tmp_path / "r.jsonl"))
    assert to_records(back) == [Record("Add them.\n\n2 and 3", "", "5")]
    shared = Conversation([{"role": "user", "content": "u"}, {"role": "tool_call", "content": "{}"},
                           {"role": "tool", "content": "t"}, {"role": "assistant", "content": "a"}])
    with pytest.raises(ValueError, match="item 1: message 1 has role 'tool_call'"):
        write_openai_jsonl([Record("a", "", "b"), shared], tmp_path / "x.jsonl")
    with pytest.raises(TypeError, match="item 0 is a dict"):
        write_openai_jsonl([{"messages": []}], tmp_path / "x.jsonl")
