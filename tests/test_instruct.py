import json

import pytest
import torch

from llmtap.instruct import (FormatError, Record, encode_sft, format_prompt, generate_responses, read_alpaca,
                             read_dolly, read_jsonl, read_oasst, read_sharegpt, sft, sft_collate, sft_pairs,
                             write_alpaca, write_dolly, write_jsonl, write_oasst, write_sharegpt)
from llmtap.model import GPT, GPTConfig
from llmtap.prompting import CausalLM
from llmtap.tokenizer import Tokenizer
from llmtap.train import TrainConfig, completion_batches

RECORDS = [Record("把这个词翻译成英文。", "苹果", "apple", meta={"category": "translate"}),
           Record("Name 2 fruits.", "", "apple, pear"),
           Record("Write this word backwards.", "cat", "tac")]


def write_text(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- the record
@pytest.mark.parametrize("args, error", [(("", "", "x"), ValueError), (("  ", "", "x"), ValueError),
                                         (("do it", "", ""), ValueError), (("do it", "", " \n"), ValueError),
                                         (("do it", None, "x"), TypeError), ((3, "", "x"), TypeError)])
def test_record_validation(args, error):
    with pytest.raises(error):
        Record(*args)
    with pytest.raises(ValueError, match="history"):
        Record("a", "", "b", history=[("only one",)])


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("write, read", [(write_alpaca, read_alpaca), (write_jsonl, read_jsonl),
                                         (write_dolly, read_dolly)])
def test_round_trip_keeps_every_field(tmp_path, write, read):
    back = read(write(RECORDS, tmp_path / "data.json"))
    assert back == RECORDS and back.skipped == []
    if read is read_dolly:
        assert back[0].meta["category"] == "translate"


def test_alpaca_keeps_history(tmp_path):
    r = [Record("And a third?", "", "lemon", history=[("Name 2 fruits.", "apple, pear")])]
    assert read_alpaca(write_alpaca(r, tmp_path / "a.json")) == r
    with pytest.raises(ValueError, match="ShareGPT or OASST"):
        write_dolly(r, tmp_path / "d.jsonl")


@pytest.mark.parametrize("write, read", [(write_sharegpt, read_sharegpt), (write_oasst, read_oasst)])
def test_conversation_formats_one_record_per_assistant_turn(tmp_path, write, read):
    chat = Record("And a third?", "", "lemon", history=[("Name 2 fruits.", "apple, pear")])
    back = read(write(RECORDS + [chat], tmp_path / "chat.json"))
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
        write_jsonl([{"instruction": "a"}], tmp_path / "y.jsonl")


# ----------------------------------------------------------------------------- SFT
TOKENIZER = Tokenizer.from_text("把这个词翻译成英文。苹果")


def test_format_prompt():
    assert format_prompt(RECORDS[2]) == "Instruction: Write this word backwards.\nInput: cat\nResponse: "
    assert format_prompt(RECORDS[1]) == "Instruction: Name 2 fruits.\nResponse: "
    chat = Record("More?", "", "x", history=[("Q", "A")])
    assert format_prompt(chat) == "Instruction: Q\nResponse: A\nInstruction: More?\nResponse: "
    with pytest.raises(TypeError):
        format_prompt({"instruction": "a"})


def test_labels_are_masked_to_the_response():
    examples = encode_sft(RECORDS, TOKENIZER)
    x, y = sft_collate(examples, TOKENIZER.pad_id)
    assert x.shape == y.shape == (3, max(len(p) + len(c) for p, c in examples) - 1)
    for i, (p, c) in enumerate(examples):
        assert c[-1] == TOKENIZER.eos_id                                  # learns to stop
        assert (y[i, :len(p) - 1] == -100).all()                          # prompt: no loss
        assert y[i, len(p) - 1:len(p) + len(c) - 1].tolist() == c        # response (and <eos>): the labels
        assert (y[i, len(p) + len(c) - 1:] == -100).all()                 # padding: no loss
        assert x[i, :len(p) + len(c) - 1].tolist() == (p + c)[:-1]
        assert TOKENIZER.decode(c) == RECORDS[i].output
    assert int((y != -100).sum()) == sum(len(c) for _, c in examples)
    with pytest.raises(ValueError, match="record 0"):
        encode_sft(RECORDS, TOKENIZER, max_len=10)
    with pytest.raises(TypeError):
        encode_sft(RECORDS, object())


def test_completion_batches_eos_matches_sft_collate():
    x, y = next(completion_batches(TOKENIZER, sft_pairs(RECORDS[:1]), batch_size=2, eos=True))
    x2, y2 = sft_collate(encode_sft(RECORDS[:1] * 2, TOKENIZER), TOKENIZER.pad_id)
    assert torch.equal(x, x2) and torch.equal(y, y2)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=TOKENIZER.vocab_size, block_size=96, n_layer=2, n_head=2, n_embd=32))


def masked_loss(model, records):
    x, y = sft_collate(encode_sft(records, TOKENIZER), TOKENIZER.pad_id)
    with torch.no_grad():
        return model(x, y)[1].item()


def test_sft_full_learns_the_responses():
    model = tiny_model()
    before = masked_loss(model, RECORDS)
    cfg = TrainConfig(steps=150, lr=1e-2, min_lr=1e-3, warmup_steps=10, log_every=50, progress=False)
    history = sft(model, TOKENIZER, RECORDS, cfg, batch_size=6, device="cpu")
    assert history["loss"][-1] < history["loss"][0]
    assert masked_loss(model, RECORDS) < 0.2 * before
    answers = generate_responses(CausalLM(model, TOKENIZER), RECORDS, max_new_tokens=12)
    assert answers == [r.output for r in RECORDS]


def test_sft_lora_trains_only_the_adapters():
    model = tiny_model()
    frozen = {n: p.clone() for n, p in model.named_parameters()}
    cfg = TrainConfig(steps=20, lr=3e-3, min_lr=3e-4, warmup_steps=2, log_every=10, progress=False)
    sft(model, TOKENIZER, RECORDS, cfg, batch_size=4, lora={"target_modules": ["c_attn"], "r": 4}, device="cpu")
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n.replace("c_attn.", "c_attn.base_layer.")], p) for n, p in frozen.items()
               if n.replace("c_attn.", "c_attn.base_layer.") in params)
    assert any(p.abs().sum() > 0 for n, p in params.items() if "lora_B" in n)
    with pytest.raises(ValueError, match="target_modules"):
        sft(tiny_model(), TOKENIZER, RECORDS, cfg, lora={"r": 4})
    with pytest.raises(ValueError, match="empty"):
        sft(tiny_model(), TOKENIZER, [], cfg)


def test_generate_responses_batched_equals_one_by_one():
    lm = CausalLM(tiny_model(3), TOKENIZER)
    records = RECORDS + [Record("Name 3 fruits.", "", "x"), Record("Name 4 fruits.", "", "y")]   # equal lengths batch
    got = generate_responses(lm, records, max_new_tokens=8)
    want = [lm.generate(format_prompt(r), 8).split("\n")[0] for r in records]
    assert got == want
    with pytest.raises(TypeError):
        generate_responses(lm.model, records)
