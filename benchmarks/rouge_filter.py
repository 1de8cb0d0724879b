"""The Self-Instruct diversity filter: google rouge-score versus llmtap.rouge, in one run.

N English instructions go through the incremental filter: each is kept if its ROUGE-L with
every instruction kept before it is < 0.7, and then joins the pool. Three implementations:

* rouge-score, public API: ``RougeScorer(["rougeL"]).score(kept, new)`` for every pair;
* rouge-score, pre-tokenised: every instruction tokenised once, then its LCS routine per pair
  (what the Self-Instruct code does);
* llmtap: ``llmtap.rouge.rouge_filter`` (a ``RougeIndex`` scores the whole pool at once
  with a bit-parallel LCS in numpy).

All three must keep and reject exactly the same instructions. The instructions are generated
from seeded templates, so that some are near-duplicates of others. The work is on the CPU
(numpy); ``--device`` is accepted for the common interface and ignored.

    python benchmarks/rouge_filter.py [--n 1000] [--quick]
"""
from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, print_table  # noqa: E402

from llmtap.rouge import rouge_filter  # noqa: E402

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


def filter_rouge_score(instructions, threshold=0.7):
    from rouge_score import rouge_scorer
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    kept, pairs = [], 0
    for text in instructions:
        pairs += len(kept)
        if all(scorer.score(k, text)["rougeL"].fmeasure < threshold for k in kept):
            kept.append(text)
    return kept, pairs


def filter_rouge_score_pretokenized(instructions, threshold=0.7):
    from rouge_score import rouge_scorer
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    kept, kept_tokens = [], []
    for text in instructions:
        tokens = scorer._tokenizer.tokenize(text)
        if all(rouge_scorer._score_lcs(k, tokens).fmeasure < threshold for k in kept_tokens):
            kept.append(text)
            kept_tokens.append(tokens)
    return kept


def main():
    ap = base_parser(__doc__)
    ap.add_argument("--n", type=int, default=1000, help="number of instructions")
    args = ap.parse_args()
    n = 200 if args.quick else args.n
    instructions = make_instructions(n)

    t0 = time.perf_counter()
    kept_ref, pairs = filter_rouge_score(instructions)
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    kept_pre = filter_rouge_score_pretokenized(instructions)
    t_pre = time.perf_counter() - t0
    t_ours = []
    for _ in range(3):                               # fast: take the median of three runs
        t0 = time.perf_counter()
        kept_ours, _ = rouge_filter(instructions, threshold=0.7)
        t_ours.append(time.perf_counter() - t0)
    t_ours = sorted(t_ours)[1]

    same = kept_ours == kept_ref == kept_pre
    rows = [{"implementation": "rouge-score (score per pair)", "seconds": t_ref, "us per pair": 1e6 * t_ref / pairs,
             "kept": len(kept_ref), "llmtap speed-up": t_ref / t_ours},
            {"implementation": "rouge-score (pre-tokenised LCS)", "seconds": t_pre, "us per pair": 1e6 * t_pre / pairs,
             "kept": len(kept_pre), "llmtap speed-up": t_pre / t_ours},
            {"implementation": "llmtap rouge_filter", "seconds": t_ours, "us per pair": 1e6 * t_ours / pairs,
             "kept": len(kept_ours), "llmtap speed-up": 1.0}]
    print_table(rows, f"incremental ROUGE-L < 0.7 filter over {n} English instructions ({pairs:,} pairs)")
    print(f"same keep/reject decisions: {same}")
    if not same:
        sys.exit("llmtap and rouge-score disagree")


if __name__ == "__main__":
    main()
