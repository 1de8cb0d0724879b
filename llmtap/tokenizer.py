"""A character-level tokenizer for Chinese and English, with whole-word tokens and byte fallback.

Each character the course corpus uses is one token (a Chinese character is a word-piece of its
own, an English letter is too). A short list of English words is also in the vocabulary, one
token each, the way a real tokenizer's vocabulary holds its most common words whole: a run of
letters that is exactly one of them becomes that token, any other run is spelled letter by letter.
Any other character is spelled as its UTF-8 bytes, one token per byte, so
``decode(encode(s)) == s`` for every string, emoji and rare characters included.

Why whole words: a Chinese word is one to three characters, each a token whose embedding can say
what the word is. An English word spelt in letters must be put together by the first layers before
anything can use what it means, and a small model then learns in-context mappings of English
words by rote instead of by their category (chapter 00 shows the numbers).
"""
from __future__ import annotations

import json
import re
import string
from pathlib import Path

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")
N_BYTES = 256
_LETTER_RUNS = re.compile(r"[A-Za-z]+|[^A-Za-z]+")


class Tokenizer:
    """ids 0..2 are the special tokens, 3..258 the 256 bytes, then one id per known character,
    then one id per whole English word."""

    def __init__(self, chars, words=()):
        chars = list(dict.fromkeys(chars))        # keep order, drop repeats
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ValueError(f"every vocabulary entry must be a single character, got {bad[:5]}")
        words = list(dict.fromkeys(words))
        bad = [w for w in words if not isinstance(w, str) or len(w) < 2 or not re.fullmatch(r"[A-Za-z]+", w)]
        if bad:
            raise ValueError(f"whole-word tokens must be runs of 2 or more ASCII letters, got {bad[:5]}")
        missing = sorted({c for w in words for c in w} - set(chars))
        if missing:
            raise ValueError(f"whole-word tokens use letters that are not in the characters: {missing[:5]}; "
                             f"every word must also be spellable letter by letter")
        self.chars, self.words = chars, words
        self.offset = len(SPECIAL_TOKENS) + N_BYTES
        self.char_to_id = {c: self.offset + i for i, c in enumerate(chars)}
        self.word_to_id = {w: self.offset + len(chars) + i for i, w in enumerate(words)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

    @property
    def vocab_size(self) -> int:
        return self.offset + len(self.chars) + len(self.words)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        words = f", words={len(self.words)}" if self.words else ""
        return f"Tokenizer(vocab_size={self.vocab_size}, characters={len(self.chars)}{words})"

    # ------------------------------------------------------------------ encode / decode
    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a str, got {type(text).__name__}")
        ids = [self.bos_id] if bos else []
        # a whole run of letters that is a known word is one token; 'rain' in 'rainbow' is not
        for run in (_LETTER_RUNS.findall(text) if self.words else (text,)):
            w = self.word_to_id.get(run)
            if w is not None:
                ids.append(w)
                continue
            for c in run:
                i = self.char_to_id.get(c)
                if i is not None:
                    ids.append(i)
                else:   # byte fallback; surrogatepass keeps even lone surrogates round-tripping
                    ids.extend(len(SPECIAL_TOKENS) + b for b in c.encode("utf-8", "surrogatepass"))
        if eos:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids, skip_special: bool = True) -> str:
        out, pending = [], bytearray()

        def flush():
            if pending:
                out.append(pending.decode("utf-8", "surrogatepass" if _valid(pending) else "replace"))
                pending.clear()

        for i in (int(t) for t in ids):
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
            if i < len(SPECIAL_TOKENS):
                flush()
                if not skip_special:
                    out.append(SPECIAL_TOKENS[i])
            elif i < self.offset:
                pending.append(i - len(SPECIAL_TOKENS))
            else:
                flush()
                out.append(self.id_to_piece(i))
        flush()
        return "".join(out)

    def id_to_piece(self, i: int) -> str:
        if not 0 <= i < self.vocab_size:
            raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
        if i < len(SPECIAL_TOKENS):
            return SPECIAL_TOKENS[i]
        if i < self.offset:
            return f"<0x{i - len(SPECIAL_TOKENS):02X}>"
        i -= self.offset
        return self.chars[i] if i < len(self.chars) else self.words[i - len(self.chars)]

    # ------------------------------------------------------------------ files
    def save(self, path) -> None:
        Path(path).write_text(json.dumps({"type": "llmtap-char", "chars": "".join(self.chars), "words": self.words},
                                         ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path) -> "Tokenizer":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer file at {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not a tokenizer JSON file: {e}") from None
        if not isinstance(data, dict) or data.get("type") != "llmtap-char" or not isinstance(data.get("chars"), str):
            raise ValueError(f"{path} is not an llmtap tokenizer file (expected type 'llmtap-char')")
        words = data.get("words", [])
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ValueError(f"{path}: 'words' must be a list of strings, got {words!r:.60}")
        return cls(data["chars"], words)

    @classmethod
    def from_text(cls, text: str, words=()) -> "Tokenizer":
        """A vocabulary of printable ASCII plus every other character that occurs in ``text``, and
        the given whole words."""
        ascii_chars = list(string.printable[:-2])   # drop \x0b \x0c; keep \n \t \r and space
        return cls(ascii_chars + sorted(set(text) - set(ascii_chars)), words)


def _valid(b: bytearray) -> bool:
    try:
        b.decode("utf-8", "surrogatepass")
        return True
    except UnicodeDecodeError:
        return False
