"""The Self-Instruct diversity filter: google rouge-score versus llmtap.rouge, in one run.

Instructions go through the incremental filter: each is kept if its ROUGE-L with every
instruction kept before it is < 0.7 (the paper's rule; the released code keeps <= 0.7, see
``llmtap.rouge.RULES``), and then joins the pool.

Synthetic mode (the default): N English instructions generated from seeded templates, so that
some are near-duplicates of others, through four implementations that must keep and reject
exactly the same instructions:

* rouge-score, public API: ``RougeScorer(["rougeL"]).score(kept, new)`` for every pair;
* rouge-score, pre-tokenised: every instruction tokenised once, then its LCS routine per pair
  (what the Self-Instruct code does);
* llmtap, every pair: ``llmtap.rouge.rouge_filter_scores`` (a ``RougeIndex`` scores the whole
  pool at once with a bit-parallel LCS in numpy);
* llmtap: ``llmtap.rouge.rouge_filter`` (a ``RougeFilter``: an inverted index bounds every
  pair's ROUGE-L by the tokens the two share, and only the pairs that may reach the threshold
  get an LCS).

Real mode (``--alpaca PATH``): every instruction of a real file, e.g. Stanford Alpaca's 52,002
(a .json / .json.gz list of records with "instruction", a .jsonl / .jsonl.gz, or a folder of
such files, read in name order), through ``rouge_filter`` under both rules: time, kept, ties.
Filtering all of them pair by pair takes too long to run, so the other implementations are
timed on a sample (random pairs, or queries against the final pool) and extrapolated to the
number of pairs the filter compares. A sample of the decisions is checked against scoring
every pair the candidate met.

The work is on the CPU (numpy, one thread: run with OMP_NUM_THREADS=1 for steady numbers);
``--device`` is accepted for the common interface and ignored.

    python benchmarks/rouge_filter.py [--n 1000] [--quick]
    OMP_NUM_THREADS=1 python benchmarks/rouge_filter.py --threads 1 --alpaca PATH_TO/alpaca_data.json
"""
from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, print_table  # noqa: E402

from llmtap.instruct import read_alpaca  # noqa: E402
from llmtap.rouge import RULES, RougeIndex, rouge_filter, rouge_filter_scores, too_similar  # noqa: E402

try:
    from rouge_score import rouge_scorer
except ImportError:                                   # an optional test dependency
    rouge_scorer = None
NO_ROUGE_SCORE = "rouge-score is not installed (pip install rouge-score): its rows are skipped"

VERBS = ["Write", "Describe", "Explain", "Summarize", "List", "Compare", "Give examples of", "Suggest",
         "Rewrite", "Classify", "Translate", "Outline", "Evaluate", "Plan"]
THINGS = ["a short story", "a poem", "the main idea", "three reasons", "five tips", "a recipe", "an email",
          "a product review", "a news headline", "a travel plan", "a lesson plan", "a job description",
          "a dialogue", "the pros and cons", "a summary", "a riddle", "a slogan", "a checklist"]
TOPICS = ["climate change", "the ocean", "a rainy day", "learning a language", "remote work", "healthy eating",
          "the history of tea", "a robot that cooks", "saving money", "city parks", "electric cars",
          "a lost dog", "the moon landing", "a school trip", "friendship", "volcanoes", "public libraries",
          "a birthday party", "time management", "honey bees", "a chess game", "a mountain village"]
EXTRAS = ["", "", " for a ten-year-old", " in under 50 words", " in a formal tone", " for a busy manager",
          " with a surprising ending", " using simple words", " as a numbered list", " in three sentences"]


def make_instructions(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        if out and rng.random() < 0.2:              # a near-duplicate of an earlier one
            words = rng.choice(out).split()
            words[rng.randrange(len(words))] = rng.choice(TOPICS).split()[-1]
            out.append(" ".join(words))
            continue
        out.append(f"{rng.choice(VERBS)} {rng.choice(THINGS)} about {rng.choice(TOPICS)}{rng.choice(EXTRAS)}.")
    return out


def load_instructions(path: str) -> list[str]:
    """The "instruction" of every record in a file, or in every file of a folder (in name order),
    read with llmtap's own reader (JSON list or lines, gzip too)."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if ".json" in p.name) if path.is_dir() else [path]
    if not files:
        sys.exit(f"no .json / .jsonl files in {path}")
    return [r.instruction for f in files for r in read_alpaca(f)]


def filter_rouge_score(instructions, threshold=0.7):
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    kept, pairs = [], 0
    for text in instructions:
        pairs += len(kept)
        if all(scorer.score(k, text)["rougeL"].fmeasure < threshold for k in kept):
            kept.append(text)
    return kept, pairs


def filter_rouge_score_pretokenized(instructions, threshold=0.7):
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    kept, kept_tokens = [], []
    for text in instructions:
        tokens = scorer._tokenizer.tokenize(text)
        if all(rouge_scorer._score_lcs(k, tokens).fmeasure < threshold for k in kept_tokens):
            kept.append(text)
            kept_tokens.append(tokens)
    return kept


def filter_every_pair(instructions, threshold=0.7):
    best = rouge_filter_scores(instructions, threshold=threshold)
    return [text for text, b in zip(instructions, best) if b < threshold]


def timed(fn, *args, repeat=1):
    """(result, median seconds over ``repeat`` calls)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn(*args)
        times.append(time.perf_counter() - t0)
    return result, statistics.median(times)


def synthetic(n: int) -> None:
    instructions = make_instructions(n)
    kept_ours, t_ours = timed(lambda: rouge_filter(instructions, threshold=0.7).kept, repeat=3)
    pairs = pairs_compared(instructions, kept_ours)
    rows = []
    if rouge_scorer is not None:
        (kept_ref, _), t_ref = timed(filter_rouge_score, instructions)
        kept_pre, t_pre = timed(filter_rouge_score_pretokenized, instructions)
        rows += [("rouge-score (score per pair)", t_ref, kept_ref),
                 ("rouge-score (pre-tokenised LCS)", t_pre, kept_pre)]
    kept_all, t_all = timed(filter_every_pair, instructions)
    rows += [("llmtap rouge_filter_scores (every pair)", t_all, kept_all),
             ("llmtap rouge_filter", t_ours, kept_ours)]
    print_table([{"implementation": name, "seconds": t, "us per pair": 1e6 * t / pairs, "kept": len(kept),
                  "llmtap speed-up": t / t_ours} for name, t, kept in rows],
                f"incremental ROUGE-L < 0.7 filter over {n} English instructions ({pairs:,} pairs)")
    released = rouge_filter(instructions, threshold=0.7, rule="released")
    print(f"rule 'released' (keep if <= 0.7) keeps {len(released.kept)}; "
          f"{len(released.ties)} candidates at exactly 0.7")
    if rouge_scorer is None:
        print(NO_ROUGE_SCORE)
    same = all(kept == kept_ours for _, _, kept in rows)
    print(f"same keep/reject decisions: {same}")
    if not same:
        sys.exit("the implementations disagree")


# ----------------------------------------------------------------------------- a real file
def decisions(candidates, kept) -> list[bool]:
    """Which candidates ``kept`` holds, walking both in order. Where a text occurs twice this is
    still right: a copy of a rejected text meets a larger pool and is rejected too, and a text
    without tokens is always kept."""
    out, j = [], 0
    for text in candidates:
        out.append(j < len(kept) and kept[j] == text)
        j += out[-1]
    return out


def pairs_compared(candidates, kept) -> int:
    """The pairs scored by the pair-by-pair filter: each candidate against everything kept before it."""
    pairs = n_kept = 0
    for is_kept in decisions(candidates, kept):
        pairs += n_kept
        n_kept += is_kept
    return pairs


def us_per_pair(score_pair, texts, n_pairs, seed=0) -> float:
    """Microseconds per call of ``score_pair(a, b)`` on random pairs of ``texts``."""
    rng = random.Random(seed)
    pairs = [(rng.choice(texts), rng.choice(texts)) for _ in range(n_pairs)]
    t0 = time.perf_counter()
    for a, b in pairs:
        score_pair(a, b)
    return 1e6 * (time.perf_counter() - t0) / n_pairs


def every_pair_seconds(instructions, kept, n_queries, seed=0) -> float:
    """The pair-by-pair llmtap filter (``RougeIndex``) extrapolated: seconds per query against the
    final pool, times half the number of candidates (its cost grows linearly with the pool)."""
    index = RougeIndex(kept)
    queries = random.Random(seed).sample(instructions, n_queries)
    t0 = time.perf_counter()
    for q in queries:
        index.scores(q)
    return (time.perf_counter() - t0) / n_queries * len(instructions) / 2


def verify(instructions, is_kept, threshold, rule, n, seed=0) -> bool:
    """Do ``n`` candidates (random ones, and the first rejected ones) have the decisions of scoring
    every pair they met (``RougeIndex``, an independent code path)?"""
    kept_at = np.flatnonzero(is_kept)
    index = RougeIndex([instructions[i] for i in kept_at])
    rejected = [i for i, k in enumerate(is_kept) if not k]
    sample = random.Random(seed).sample(range(len(instructions)), n // 2) + rejected[:n - n // 2]
    for i in sample:
        scores = index.scores(instructions[i])[kept_at < i]
        best = float(scores.max()) if len(scores) else 0.0
        if too_similar(best, threshold, rule) == is_kept[i]:
            return False
    return True


def real(path: str, n_pairs: int, n_queries: int, n_verify: int, threshold: float = 0.7) -> None:
    instructions = load_instructions(path)
    n = len(instructions)
    results = {rule: timed(rouge_filter, instructions, (), threshold, rule) for rule in ("paper", "released")}
    paper, t_paper = results["paper"]
    pairs = pairs_compared(instructions, paper.kept)
    rows = [{"implementation": f"llmtap rouge_filter, rule={rule!r}", "seconds": t, "measured": "yes",
             "kept": len(res.kept), "ties": len(res.ties), "us per pair": 1e6 * t / pairs, "vs llmtap": t / t_paper}
            for rule, (res, t) in results.items()]

    def extrapolated(name, seconds, how):
        rows.append({"implementation": name, "seconds": seconds, "measured": how, "kept": "", "ties": "",
                     "us per pair": 1e6 * seconds / pairs, "vs llmtap": seconds / t_paper})

    extrapolated("llmtap rouge_filter_scores (every pair)", every_pair_seconds(instructions, paper.kept, n_queries),
                 f"{n_queries} queries")
    if rouge_scorer is not None:
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        tokens = {t: scorer._tokenizer.tokenize(t) for t in instructions}
        per_pair = us_per_pair(lambda a, b: scorer.score(a, b)["rougeL"].fmeasure, instructions, n_pairs)
        extrapolated("rouge-score (score per pair)", per_pair * pairs / 1e6, f"{n_pairs:,} pairs")
        per_pair = us_per_pair(lambda a, b: rouge_scorer._score_lcs(tokens[a], tokens[b]).fmeasure,
                               instructions, n_pairs)
        extrapolated("rouge-score (pre-tokenised LCS)", per_pair * pairs / 1e6, f"{n_pairs:,} pairs")
    print_table(rows, f"incremental ROUGE-L filter (threshold {threshold}) over the {n:,} instructions of {path} "
                      f"({pairs:,} pairs under the paper rule)")
    if rouge_scorer is None:
        print(NO_ROUGE_SCORE)
    for rule, (res, _) in results.items():
        print(f"rule {rule!r}: kept {len(res.kept):,}, rejected {len(res.rejected):,}, "
              f"highest ROUGE-L exactly {threshold}: {len(res.ties):,}  ({RULES[rule]})")
    ok = all(verify(instructions, decisions(instructions, res.kept), threshold, rule, n_verify)
             for rule, (res, _) in results.items())
    print(f"up to {n_verify} decisions per rule checked against scoring every pair: {'same' if ok else 'DIFFERENT'}")
    if not ok:
        sys.exit("rouge_filter and scoring every pair disagree")


def main():
    ap = base_parser(__doc__)
    ap.add_argument("--n", type=int, default=1000, help="number of synthetic instructions")
    ap.add_argument("--alpaca", metavar="PATH",
                    help="a real instruction file or folder (e.g. Alpaca's alpaca_data.json) instead of synthetic data")
    ap.add_argument("--sample-pairs", type=int, default=20000, help="pairs timed to extrapolate rouge-score")
    ap.add_argument("--sample-queries", type=int, default=20, help="queries timed to extrapolate every-pair llmtap")
    ap.add_argument("--verify", type=int, default=100, help="decisions checked against every pair, per rule")
    args = ap.parse_args()
    if args.alpaca:
        if args.quick:
            args.sample_pairs, args.sample_queries, args.verify = 2000, 3, 10
        real(args.alpaca, args.sample_pairs, args.sample_queries, args.verify)
    else:
        synthetic(200 if args.quick else args.n)


if __name__ == "__main__":
    main()
