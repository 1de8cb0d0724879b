"""A character-level tokenizer for Chinese and English, with byte fallback.

Each character the course corpus uses is one token (a Chinese character is a word-piece of its
own, an English letter is too). Any other character is spelled as its UTF-8 bytes, one token per
byte, so ``decode(encode(s)) == s`` for every string, emoji and rare characters included.
"""
from __future__ import annotations

import json
import string
from pathlib import Path

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")
N_BYTES = 256


class Tokenizer:
    """ids 0..2 are the special tokens, 3..258 the 256 bytes, then one id per known character."""

    def __init__(self, chars):
        chars = list(dict.fromkeys(chars))        # keep order, drop repeats
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ValueError(f"every vocabulary entry must be a single character, got {bad[:5]}")
        self.chars = chars
        self.offset = len(SPECIAL_TOKENS) + N_BYTES
        self.char_to_id = {c: self.offset + i for i, c in enumerate(chars)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

    @property
    def vocab_size(self) -> int:
        return self.offset + len(self.chars)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, characters={len(self.chars)})"

    # ------------------------------------------------------------------ encode / decode
    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a str, got {type(text).__name__}")
        ids = [self.bos_id] if bos else []
        for c in text:
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
                out.append(self.chars[i - self.offset])
        flush()
        return "".join(out)

    def id_to_piece(self, i: int) -> str:
        if not 0 <= i < self.vocab_size:
            raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
        if i < len(SPECIAL_TOKENS):
            return SPECIAL_TOKENS[i]
        if i < self.offset:
            return f"<0x{i - len(SPECIAL_TOKENS):02X}>"
        return self.chars[i - self.offset]

    # ------------------------------------------------------------------ files
    def save(self, path) -> None:
        Path(path).write_text(json.dumps({"type": "llmtap-char", "chars": "".join(self.chars)},
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
        return cls(data["chars"])

    @classmethod
    def from_text(cls, text: str) -> "Tokenizer":
        """A vocabulary of printable ASCII plus every other character that occurs in ``text``."""
        ascii_chars = list(string.printable[:-2])   # drop \x0b \x0c; keep \n \t \r and space
        return cls(ascii_chars + sorted(set(text) - set(ascii_chars)))


def _valid(b: bytearray) -> bool:
    try:
        b.decode("utf-8", "surrogatepass")
        return True
    except UnicodeDecodeError:
        return False
