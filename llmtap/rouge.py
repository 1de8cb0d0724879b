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
a growing pool tokenised and scores all of it.

``rouge_filter`` is the incremental diversity filter of Self-Instruct (``llmtap.self_instruct``):
a candidate is kept unless its ROUGE-L with the pool or with an earlier kept candidate is too
similar, under the paper's rule (keep if < 0.7) or the released code's (keep if <= 0.7), see
``RULES``. Its ``RougeFilter`` skips the LCS of every pair that an upper bound (the tokens the two
texts share) already proves too different, and so filters Alpaca's 52,002 instructions in
seconds with the same decisions as scoring every pair; ``rouge_filter_scores`` scores every pair.
"""
from __future__ import annotations

import numbers
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
    >>> [round(s, 3) for s in index.scores("写一首短诗").tolist()]
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
        out[hit] = _f_measure_array(lcs[hit], len(q), self._lengths[:n][hit])   # P = LCS / |pool entry|
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
        raise TypeError(f"{name} entries must be str; entry {bad[0]} is {type(texts[bad[0]]).__name__} "
                        f"{texts[bad[0]]!r:.60}: convert it with str() or leave it out")
    return texts


# ----------------------------------------------------------------------------- the diversity filter
# Self-Instruct adds a new instruction to the pool only if it is far from every instruction
# already there. Its paper (Wang et al., 2023, section 2.3) keeps it when "its ROUGE-L similarity
# with any existing instruction is less than 0.7"; its released code (bootstrap_instructions.py,
# and Stanford Alpaca's generate_instruction.py after it) skips it only `if max(rouge_scores) > 0.7`,
# so a candidate that scores exactly 0.7 is kept. The two rules differ only on such ties.
RULES = {
    "paper": "keep if ROUGE-L < threshold (the Self-Instruct paper)",
    "released": "keep if ROUGE-L <= threshold, i.e. reject only if > threshold (the released Self-Instruct "
                "and Alpaca code)",
}


def _check_threshold(threshold) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"threshold must be a number in (0, 1], got {type(threshold).__name__} {threshold!r}; "
                        "e.g. threshold=0.7 (the Self-Instruct value)")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1] (a ROUGE-L F lies in [0, 1]; Self-Instruct uses 0.7), "
                         f"got {threshold!r}")
    return float(threshold)


def _check_rule(rule) -> str:
    if not isinstance(rule, str) or rule not in RULES:
        choices = "; ".join(f"{name!r}: {what}" for name, what in RULES.items())
        raise ValueError(f"rule must be one of {list(RULES)} ({choices}), got {rule!r}")
    return rule


def too_similar(score: float, threshold: float = 0.7, rule: str = "paper") -> bool:
    """Whether a candidate whose highest ROUGE-L with the pool is ``score`` is rejected (``RULES``)."""
    return score >= threshold if _check_rule(rule) == "paper" else score > threshold


def rouge_filter_scores(candidates, pool=(), threshold: float = 0.7, rule: str = "paper") -> list[float]:
    """The incremental diversity filter of Self-Instruct: each candidate's highest ROUGE-L with the
    pool and with the candidates kept before it. A candidate is kept unless that score is too
    similar (``rule``: "paper" keeps it if < threshold, "released" if <= threshold), and then joins
    the pool for the candidates after it.

    This scores every pair (a ``RougeIndex``), which a histogram of all the scores needs; for the
    decisions alone on a large pool, ``rouge_filter`` is much faster."""
    threshold, rule = _check_threshold(threshold), _check_rule(rule)
    index, best = RougeIndex(_text_list(pool, "pool")), []
    for text in _text_list(candidates, "candidates"):
        best.append(float(index.scores(text).max()) if len(index) else 0.0)
        if not too_similar(best[-1], threshold, rule):
            index.add(text)
    return best


class RougeFilter:
    """The incremental diversity filter with exact decisions, fast on large pools.

    ``offer(text)`` rejects ``text`` when its ROUGE-L F with some entry of the pool is too similar
    (``threshold`` and ``rule``, see ``RULES``), else keeps it and adds it to the pool. Scoring
    every entry is one LCS per entry, but almost all entries are far too different to matter, and
    two upper bounds on F = 2 P R / (P + R) (P = LCS/|b|, R = LCS/|a|, i.e. F = 2 LCS / (|a| + |b|),
    which grows with the LCS) find them without an LCS:

    * overlap: an LCS pairs equal tokens of a and b, each token used once, so LCS <= |a ∩ b|, the
      multiset overlap (a token t counts min(count in a, count in b)); F <= f_measure(overlap, |a|, |b|).
    * length: the overlap is at most min(|a|, |b|), so F <= 2 min(|a|, |b|) / (|a| + |b|); e.g. a
      5-token text never reaches 0.7 with a 20-token one (2 * 5 / 25 = 0.4). The overlap bound
      already includes this one.

    An inverted index (a token -> the entries that hold it) gives the overlap with every entry that
    shares a token, in one numpy ``bincount``; an entry sharing none scores 0. Only the entries
    whose bound reaches the threshold get an exact bit-parallel LCS, one pair at a time, so a
    long entry costs only its own length. The decisions are exactly those of ``rouge_l`` on every
    pair, ties at the threshold included.

    A text without tokens ("!!!") has F = 0 with every text, as ``f_measure`` defines it (an empty
    side gives 0): it is always kept and never makes another text rejected, even an identical one.

    >>> f = RougeFilter(["写一首关于春天的诗。"])
    >>> kept, score = f.offer("写一首关于夏天的诗。")
    >>> kept, round(score, 3)
    (False, 0.889)
    >>> f.offer("Explain how tides work."), len(f)
    ((True, None), 2)
    """

    def __init__(self, pool=(), threshold: float = 0.7, rule: str = "paper"):
        self.threshold, self.rule = _check_threshold(threshold), _check_rule(rule)
        self.texts: list[str] = []
        self._tokens: list[list[str]] = []                  # each entry's tokens, for the exact LCS
        self._lengths = _GrowingArray()                     # each entry's number of tokens
        self._postings: dict[tuple[str, int], _GrowingArray] = {}   # (token, k): entries with >= k of it
        for text in _text_list(pool, "pool"):
            self.add(text)

    def __len__(self) -> int:
        return len(self.texts)

    def add(self, text: str) -> None:
        """Put ``text`` in the pool, unfiltered (as the seed tasks are)."""
        self._add(text, tokenize(text))

    def extend(self, texts) -> None:
        for text in _text_list(texts, "texts"):
            self.add(text)

    def highest(self, text: str) -> float | None:
        """The highest ROUGE-L F of ``text`` with the pool when it reaches the threshold, else None
        (every entry scores below the threshold; which one comes closest is not computed)."""
        return self._highest(tokenize(text))

    def offer(self, text: str) -> tuple[bool, float | None]:
        """(kept, ``highest(text)``): ``text`` joins the pool unless it is too similar to an entry."""
        tokens = tokenize(text)
        score = self._highest(tokens)
        kept = score is None or not too_similar(score, self.threshold, self.rule)
        if kept:
            self._add(text, tokens)
        return kept, score

    def _add(self, text: str, tokens: list[str]) -> None:
        entry = len(self.texts)
        self.texts.append(text)
        self._tokens.append(tokens)
        self._lengths.append(len(tokens))
        for key in _numbered(tokens):
            self._postings.setdefault(key, _GrowingArray()).append(entry)

    def _highest(self, tokens: list[str]) -> float | None:
        best = None
        for entry in self._candidates(tokens):
            other = self._tokens[entry]
            f = f_measure(lcs_length_bitparallel(tokens, other), len(tokens), len(other))
            if f >= self.threshold and (best is None or f > best):
                best = f
        return best

    def _candidates(self, tokens: list[str]) -> list[int]:
        """The entries whose overlap bound reaches the threshold: the only ones that can."""
        postings = [p.view() for p in map(self._postings.get, _numbered(tokens)) if p is not None]
        if not postings:
            return []
        # overlap[e] = |tokens ∩ entry e|, the multiset overlap (0 for an entry sharing no token)
        overlap = np.bincount(np.concatenate(postings), minlength=len(self.texts))
        # F = 2 LCS / (|a| + |b|) <= 2 overlap / (|a| + |b|), so F >= threshold needs
        # 2 overlap >= threshold (|a| + |b|); the 1e-9 keeps the pairs exactly at the threshold,
        # whichever way the floats round
        need = self.threshold * (len(tokens) + self._lengths.view()) - 1e-9
        return np.flatnonzero(2 * overlap >= need).tolist()


def _numbered(tokens: list[str]) -> list[tuple[str, int]]:
    """Each token with its occurrence number: "the cat and the dog" -> (the, 1), (cat, 1), (and, 1),
    (the, 2), (dog, 1). Two texts share (t, k) exactly when both hold t at least k times, so the
    number of shared pairs is the multiset overlap, sum over t of min(count in a, count in b)."""
    seen: dict[str, int] = {}
    out = []
    for token in tokens:
        seen[token] = seen.get(token, 0) + 1
        out.append((token, seen[token]))
    return out


def _f_measure_array(lcs: np.ndarray, len_a, len_b) -> np.ndarray:
    """``f_measure`` element-wise for LCS > 0, with the same float operations (same bits)."""
    precision, recall = lcs / len_b, lcs / len_a
    return 2 * precision * recall / (precision + recall)


class _GrowingArray:
    """An int64 numpy array that grows by appending (its buffer doubles) and is read without a copy."""

    def __init__(self):
        self._data, self._size = np.empty(4, dtype=np.int64), 0

    def append(self, value: int) -> None:
        if self._size == len(self._data):
            self._data = np.concatenate([self._data, np.empty_like(self._data)])
        self._data[self._size] = value
        self._size += 1

    def view(self) -> np.ndarray:
        return self._data[:self._size]


class FilterResult(tuple):
    """What ``rouge_filter`` decided. It is the pair (kept, rejected) it always returned, so
    ``kept, rejected = rouge_filter(...)`` still works, with more as attributes:

    * ``kept``: the candidates kept, in order; ``rejected``: [(candidate, its highest ROUGE-L)];
    * ``ties``: the candidates whose highest ROUGE-L is exactly the threshold, rejected by the
      "paper" rule and kept by the "released" one (the only candidates where the rules differ
      for the same pool; each decision then changes the pool the later candidates meet);
    * ``threshold`` and ``rule``."""

    def __new__(cls, kept, rejected, ties=(), threshold=0.7, rule="paper"):
        result = super().__new__(cls, (kept, rejected))
        result.ties, result.threshold, result.rule = list(ties), threshold, rule
        return result

    def __getnewargs__(self):                                 # so that copy and pickle keep the fields
        return self.kept, self.rejected, self.ties, self.threshold, self.rule

    kept = property(lambda self: self[0])
    rejected = property(lambda self: self[1])

    def __repr__(self) -> str:
        return (f"FilterResult({len(self.kept)} kept, {len(self.rejected)} rejected, {len(self.ties)} at exactly "
                f"threshold={self.threshold}, rule={self.rule!r})")


def rouge_filter(candidates, pool=(), threshold: float = 0.7, rule: str = "paper") -> FilterResult:
    """The Self-Instruct diversity filter (a ``RougeFilter``): each candidate is kept unless its
    ROUGE-L with the pool or with a candidate kept before it is too similar ("paper": kept if
    < threshold, the default; "released": kept if <= threshold, see ``RULES``).

    Returns a ``FilterResult``, which unpacks as (kept, [(rejected, its highest ROUGE-L)]) and
    also counts the ties (``.ties``)."""
    candidates = _text_list(candidates, "candidates")
    f = RougeFilter(pool, threshold, rule)
    kept, rejected, ties = [], [], []
    for text in candidates:
        is_kept, score = f.offer(text)
        if is_kept:
            kept.append(text)
        else:
            rejected.append((text, score))
        if score == f.threshold:
            ties.append(text)
    return FilterResult(kept, rejected, ties, f.threshold, f.rule)
