import json

import pytest

from llmtap import corpus
from llmtap.tokenizer import N_BYTES, SPECIAL_TOKENS, Tokenizer


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.from_text(corpus.alphabet(), corpus.words())


ROUND_TRIP = [
    "昨天我在公园里丢了钱包。我感到糟糕。",
    "Yesterday, I lost my wallet in the park. I feel terrible.",
    "苹果 is a kind of fruit. 苹果是一种水果。",
    "emoji 🙂🎉👩‍👩‍👧 and flags 🇨🇳",
    "rare CJK 𠀀𪚥龘 and 鱻",
    "line one\nline two\r\n\ttabbed\n",
    "",
    "<eos>",
    "text with <eos> inside and <bos><pad> too",
    "\x00\x7f control and combining e\u0301",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip(tok, text):
    ids = tok.encode(text)
    assert all(isinstance(i, int) and 0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def test_literal_eos_text_is_not_the_eos_token(tok):
    ids = tok.encode("<eos>")
    assert tok.eos_id not in ids and tok.bos_id not in ids and tok.pad_id not in ids
    assert len(ids) == 5


def test_round_trip_lone_surrogate(tok):
    s = "a\ud800b"
    assert tok.decode(tok.encode(s)) == s


def test_known_chars_are_single_ids(tok):
    for c in corpus.alphabet():
        ids = tok.encode(c)
        assert len(ids) == 1, c
        assert ids[0] >= tok.offset
        assert tok.id_to_piece(ids[0]) == c
    # distinct characters get distinct ids
    alpha = corpus.alphabet()
    assert len(set(tok.encode(alpha))) == len(alpha)


def test_unknown_chars_fall_back_to_utf8_bytes(tok):
    for c in ["🙂", "𠀀", "é" if "é" not in tok.char_to_id else "ß", "\u0301"]:
        assert c not in tok.char_to_id
        want = [len(SPECIAL_TOKENS) + b for b in c.encode("utf-8")]
        assert tok.encode(c) == want
        assert all(len(SPECIAL_TOKENS) <= i < len(SPECIAL_TOKENS) + N_BYTES for i in want)


def test_layout_and_vocab_size():
    t = Tokenizer("abcab")
    assert t.chars == ["a", "b", "c"]
    assert t.vocab_size == len(t) == 3 + 256 + 3
    assert t.encode("cab") == [t.offset + 2, t.offset, t.offset + 1]
    assert (t.pad_id, t.bos_id, t.eos_id) == (0, 1, 2)


def test_bos_eos_flags(tok):
    body = tok.encode("好")
    assert tok.encode("好", bos=True) == [tok.bos_id] + body
    assert tok.encode("好", eos=True) == body + [tok.eos_id]
    assert tok.encode("好", bos=True, eos=True) == [tok.bos_id] + body + [tok.eos_id]
    assert tok.encode("", bos=True, eos=True) == [tok.bos_id, tok.eos_id]
    ids = tok.encode("好", bos=True, eos=True)
    assert tok.decode(ids) == "好"
    assert tok.decode(ids, skip_special=False) == "<bos>好<eos>"


def test_decode_accepts_tensors(tok):
    import torch
    assert tok.decode(torch.tensor(tok.encode("猫 cat"))) == "猫 cat"


def test_save_load_round_trip(tok, tmp_path):
    path = tmp_path / "tok.json"
    tok.save(path)
    back = Tokenizer.load(path)
    assert back.chars == tok.chars and back.words == tok.words
    assert back.vocab_size == tok.vocab_size
    text = "昨天 I felt 🙂 太好了, a rainbow"
    assert back.encode(text) == tok.encode(text)


def test_encode_non_str_is_type_error(tok):
    for bad in (None, 5, b"bytes", ["a"]):
        with pytest.raises(TypeError):
            tok.encode(bad)


def test_decode_out_of_range_is_value_error(tok):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError):
        tok.decode([-1])


def test_load_bad_files(tmp_path):
    not_json = tmp_path / "a.json"
    not_json.write_text("this is { not json", encoding="utf-8")
    with pytest.raises(ValueError):
        Tokenizer.load(not_json)
    for i, data in enumerate([[1, 2, 3], {"type": "bpe", "chars": "ab"}, {"chars": "ab"},
                              {"type": "llmtap-char"}, {"type": "llmtap-char", "chars": 5},
                              {"type": "llmtap-char", "chars": None}, "just a string",
                              {"type": "llmtap-char", "chars": "ab", "words": "ab"},
                              {"type": "llmtap-char", "chars": "ab", "words": [5]},
                              {"type": "llmtap-char", "chars": "ab", "words": ["abc"]}]):
        p = tmp_path / f"bad{i}.json"
        p.write_text(json.dumps(data), encoding="utf-8")
        with pytest.raises(ValueError):
            Tokenizer.load(p)
    with pytest.raises(FileNotFoundError):
        Tokenizer.load(tmp_path / "missing.json")


def test_multi_char_entries_rejected():
    with pytest.raises(ValueError):
        Tokenizer(["ab"])
    with pytest.raises(ValueError):
        Tokenizer(["a", ""])
    with pytest.raises(ValueError):
        Tokenizer(["a", 3])


def test_whole_words_are_one_token_only_as_a_whole_run_of_letters(tok):
    one = lambda text: [tok.id_to_piece(i) for i in tok.encode(text)]
    assert one("rainbow") == ["rainbow"] and one("rain") == ["rain"]
    assert one("rainy") == list("rainy")                    # not 'rain' + 'y'
    assert one("Apple") == list("Apple")                    # the words are case-sensitive
    assert one("police officer→foo") == ["police", " ", "officer", "→", "f", "o", "o"]
    assert one("苹果apple") == ["苹", "果", "apple"]          # only letters end a run
    assert len(tok.encode("An apple is a kind of fruit.")) == len("An  is a kind of .") + 2


def test_whole_word_tokens_follow_the_characters():
    t = Tokenizer("abcdefghijklmnopqrstuvwxyz ", ["cat", "dog"])
    assert t.vocab_size == len(SPECIAL_TOKENS) + N_BYTES + 27 + 2
    assert t.encode("cat dog") == [t.word_to_id["cat"], t.char_to_id[" "], t.word_to_id["dog"]]
    assert t.word_to_id["dog"] == t.vocab_size - 1 and t.id_to_piece(t.vocab_size - 1) == "dog"
    assert "words=2" in repr(t)


@pytest.mark.parametrize("words, message", [(["a"], "2 or more ASCII letters"), (["ice cream"], "ASCII letters"),
                                            (["café"], "ASCII letters"), ([3], "ASCII letters"),
                                            (["Zebra"], "not in the characters")])
def test_bad_whole_words_are_refused(words, message):
    with pytest.raises(ValueError, match=message):
        Tokenizer("abcdefghijklmnopqrstuvwxyzé ", words)
