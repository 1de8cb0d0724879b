"""ROUGE-L for Chinese and English, fast enough to filter tens of thousands of instructions.

ROUGE-L compares two texts a and b through their longest common subsequence (最长公共子序列,
LCS) of tokens:

    P = LCS(a, b) / |b|,   R = LCS(a, b) / |a|,   F = 2 P R / (P + R)

Tokens follow Google's ``rouge-score`` package (lowercase, runs of [a-z0-9], no stemming), so on
English text ``rouge_l`` gives exactly its ROUGE-L F-measure. ``rouge-score`` deletes every other
character, Chinese included: two Chinese instructions have no tokens at all and score 0, so a
Chinese pool is never deduplicated. Here every CJK character is one token of its own.

``lcs_length`` is the textbook dynamic programme, the reference. The scores use the bit-parallel
LCS of Allison and Dix instead (a whole column of that table as the bits of one integer):
``lcs_length_bitparallel`` for two texts, and ``rouge_l_many`` for one query against a whole pool
at once (numpy runs the same word operations for every pool entry together). ``RougeIndex`` keeps
a growing pool tokenised, and ``rouge_filter`` is the incremental diversity filter of
Self-Instruct (``llmtap.self_instruct``) built on it.
"""
from __future__ import annotations

import re

import numpy as np

# lowercase Latin letters and digits in runs (as rouge-score), and single CJK characters:
# kana, CJK Extension A, CJK Unified Ideographs, Hangul syllables, compatibility ideographs, Extensions B-F.
_TOKEN_RE = re.compile("[a-z0-9]+|[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
                       "\U00020000-\U0002ffff]")


def tokenize(text: str) -> list[str]:
    """ROUGE tokens of ``text``: 'Write 2 poems, 写诗!' -> ['write', '2', 'poems', '写', '诗']."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}: {text!r}")
    return _TOKEN_RE.findall(text.lower())


def lcs_length(a: list, b: list) -> int:
    """Length of the longest common subsequence of two token lists, by dynamic programming.

    L[i][j] is the LCS length of the first i tokens of a and the first j tokens of b:

        L[i][j] = L[i-1][j-1] + 1                 if a[i-1] == b[j-1]  (the pair extends the LCS)
                  max(L[i-1][j], L[i][j-1])       otherwise            (drop a token of a or of b)

    with L[0][j] = L[i][0] = 0. The answer is L[len(a)][len(b)]; time and memory O(len(a) len(b))."""
    L = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                L[i][j] = L[i - 1][j - 1] + 1
            else:
                L[i][j] = max(L[i - 1][j], L[i][j - 1])
    return L[len(a)][len(b)]


def lcs_length_bitparallel(a: list, b: list) -> int:
    """``lcs_length(a, b)`` with one integer as a whole column of the table, one step per token of b.

    Column j of L steps up by 0 or 1 from row i-1 to row i; bit i-1 of V is 0 where it steps up.
    For each token of b, with M the bits of the positions in a that hold that token:
    U = V & M, V = (V + U) | (V & ~M) (Allison and Dix, 1986). The LCS is the number of zeros of V."""
    if not a or not b:
        return 0
    masks = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    V = full
    for token in b:
        M = masks.get(token, 0)
        U = V & M
        V = ((V + U) | (V & ~M)) & full
    return len(a) - V.bit_count()


def f_measure(lcs: int, len_a: int, len_b: int) -> float:
    """ROUGE-L F from the LCS length, computed as rouge-score does (same float operations)."""
    if lcs == 0 or len_a == 0 or len_b == 0:
        return 0.0
    precision, recall = lcs / len_b, lcs / len_a
    return 2 * precision * recall / (precision + recall)


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F-measure of two texts (symmetric), CJK characters counted one token each."""
    ta, tb = tokenize(a), tokenize(b)
    return f_measure(lcs_length_bitparallel(ta, tb), len(ta), len(tb))


# ----------------------------------------------------------------------------- a whole pool at once
class RougeIndex:
    """A pool of texts kept as a padded array of token ids, scored against a query in one go.

    >>> index = RougeIndex(["写一首诗", "Write a poem about the sea."])
    >>> [round(s, 3) for s in index.scores("写一首短诗")]
    [0.889, 0.0]
    """

    def __init__(self, texts=()):
        self.vocab: dict[str, int] = {}
        self.texts: list[str] = []
        self._ids = np.full((16, 8), -1, dtype=np.int64)     # -1 pads; grows as needed
        self._lengths = np.zeros(16, dtype=np.int64)
        self.extend(texts)

    def __len__(self) -> int:
        return len(self.texts)

    def add(self, text: str) -> None:
        tokens = tokenize(text)
        n, L = len(self.texts), len(tokens)
        rows, width = self._ids.shape
        if n == rows or L > width:           # double the rows, widen to the longest text
            grown = np.full((2 * rows if n == rows else rows, max(width, L)), -1, dtype=np.int64)
            grown[:rows, :width] = self._ids
            self._ids = grown
            self._lengths = np.concatenate([self._lengths, np.zeros(grown.shape[0] - rows, dtype=np.int64)])
        self._ids[n, :L] = [self.vocab.setdefault(t, len(self.vocab)) for t in tokens]
        self._lengths[n] = L
        self.texts.append(text)

    def extend(self, texts) -> None:
        if isinstance(texts, str):
            raise TypeError("extend() takes a list of texts, not one str; use add(text)")
        for t in texts:
            self.add(t)

    def lcs_lengths(self, query_tokens: list[str]) -> np.ndarray:
        """LCS(query, pool entry) for every entry: (n,) int array."""
        n, m = len(self.texts), len(query_tokens)
        if n == 0 or m == 0:
            return np.zeros(n, dtype=np.int64)
        W = (m + 63) // 64                                   # 64-bit words per DP row
        # match table: row v holds the bits of the query positions with token v; the last row
        # (index -1, where the padding points) stays 0
        table = np.zeros((len(self.vocab) + 1, W), dtype=np.uint64)
        for i, token in enumerate(query_tokens):
            v = self.vocab.get(token)
            if v is not None:
                table[v, i // 64] |= np.uint64(1 << (i % 64))
        L = int(self._lengths[:n].max())
        M_all = table[self._ids[:n, :L]]                     # (n, L, W) match bits, one gather
        V = np.full((n, W), np.uint64(2**64 - 1))
        for j in range(L):                                   # one DP column per pool token
            M = M_all[:, j]
            U = V & M
            V = _add(V, U) | (V & ~M)                        # V' = (V + U) | (V & ~M)
        low = np.full(W, np.uint64(2**64 - 1))
        if m % 64:
            low[-1] = np.uint64((1 << (m % 64)) - 1)         # only the query's m bits count
        return m - _popcount(V & low).sum(axis=1)

    def scores(self, query: str) -> np.ndarray:
        """ROUGE-L F of ``query`` against every pool entry, an (n,) float64 array."""
        q = tokenize(query)
        lcs = self.lcs_lengths(q)
        n = len(self.texts)
        out = np.zeros(n)
        hit = lcs > 0
        precision = lcs[hit] / self._lengths[:n][hit]        # P = LCS / |pool entry|
        recall = lcs[hit] / len(q)                           # R = LCS / |query|
        out[hit] = 2 * precision * recall / (precision + recall)
        return out


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a + b of (n, W) multi-word unsigned integers, word 0 lowest, carries passed upward."""
    if a.shape[1] == 1:
        return a + b                                         # wraps around modulo 2^64, as it should
    out, carry = np.empty_like(a), np.zeros(a.shape[0], dtype=np.uint64)
    for w in range(a.shape[1]):
        s = a[:, w] + b[:, w]
        s_carry = s + carry
        carry = ((s < a[:, w]) | (s_carry < s)).astype(np.uint64)
        out[:, w] = s_carry
    return out


if hasattr(np, "bitwise_count"):
    _popcount = np.bitwise_count
else:                                                        # numpy < 2: count through a byte table
    _BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)

    def _popcount(x: np.ndarray) -> np.ndarray:
        return _BYTE_BITS[x.view(np.uint8)].reshape(*x.shape, 8).sum(-1)


def rouge_l_many(query: str, pool) -> list[float]:
    """ROUGE-L F of ``query`` against every text of ``pool`` (a list of str or a ``RougeIndex``)."""
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {type(query).__name__}")
    if not isinstance(pool, RougeIndex):
        pool = RougeIndex(_text_list(pool, "pool"))
    return pool.scores(query).tolist()


def _text_list(texts, name: str) -> list[str]:
    """``texts`` as a list, or a TypeError when it is one str or holds something else."""
    if isinstance(texts, str):
        raise TypeError(f"{name} must be a list of texts, not one str; wrap it as [text]")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"{name} entries must be str; entry {bad[0]} is {type(texts[bad[0]]).__name__}")
    return texts


# ----------------------------------------------------------------------------- the diversity filter
def rouge_filter_scores(candidates, pool=(), threshold: float = 0.7) -> list[float]:
    """The incremental diversity filter of Self-Instruct: each candidate's highest ROUGE-L with the
    pool and with the candidates kept before it. A candidate is kept when that score is
    < threshold, and then joins the pool for the candidates after it."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    index, best = RougeIndex(_text_list(pool, "pool")), []
    for text in _text_list(candidates, "candidates"):
        best.append(float(index.scores(text).max()) if len(index) else 0.0)
        if best[-1] < threshold:
            index.add(text)
    return best


def rouge_filter(candidates, pool=(), threshold: float = 0.7) -> tuple[list[str], list[tuple[str, float]]]:
    """The diversity filter's decisions (``rouge_filter_scores``): (kept, [(rejected, its highest ROUGE-L)])."""
    candidates = _text_list(candidates, "candidates")
    best = rouge_filter_scores(candidates, pool, threshold)
    kept = [text for text, score in zip(candidates, best) if score < threshold]
    rejected = [(text, score) for text, score in zip(candidates, best) if score >= threshold]
    return kept, rejected
