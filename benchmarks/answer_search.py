"""Answer-search throughput: llmtap's batched scoring versus the naive loop.

The naive loop runs one forward pass per (input, answer) pair, the way answer search is first
written down. ``CausalLM.score`` batches: "batched rows" puts every (input, answer) pair in one
padded batch; "shared context" (the default for the course model) runs each input's context once
and lets the five answers continue from its KV cache. All score the same held-out sentences with
the seed's template and five answers on the course model; the script checks that they agree
before it reports the speed ratios.

    python benchmarks/answer_search.py [--device cuda] [--quick]
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, interleaved, print_table  # noqa: E402

import llmtap  # noqa: E402
from llmtap import corpus  # noqa: E402
from llmtap.lm import CourseLM  # noqa: E402
from llmtap.prompting import Template  # noqa: E402


@torch.no_grad()
def naive_scores(lm: CourseLM, template: Template, xs, answers) -> torch.Tensor:
    out = torch.empty(len(xs), len(answers))
    for i, x in enumerate(xs):
        for j, z in enumerate(answers):
            context, continuation = template.split(x, z)
            c_ids, z_ids = lm.encode(context, bos=True), lm.encode(continuation)
            ids = torch.tensor([c_ids + z_ids], device=lm.device)
            logp = F.log_softmax(lm.model(ids)[0][0].float(), -1)
            targets = ids[0, len(c_ids):]
            out[i, j] = logp[len(c_ids) - 1:-1].gather(-1, targets[:, None]).sum().item()
    return out


def main():
    args = base_parser(__doc__).parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, tok = llmtap.load_course_model(args.device)
    lm = CourseLM(model.eval(), tok)
    template, answers = Template(corpus.TAUGHT_TEMPLATES["zh"][0]), list(corpus.ANSWERS["zh"].values())
    rng = random.Random(0)
    n = 8 if args.quick else 64
    xs = [corpus.sample_event(rng, "zh", "test").text for _ in range(n)]

    contexts = [template.split(x, "")[0] for x in xs]
    continuations = [[template.split(x, z)[1] for z in answers] for x in xs]
    methods = {"naive loop": lambda: naive_scores(lm, template, xs, answers),
               "batched rows": lambda: lm.score(contexts, continuations, share_context=False),
               "shared context": lambda: lm.score(contexts, continuations, share_context=True)}
    reference = methods["naive loop"]()
    diff = 0.0
    for name in ("batched rows", "shared context"):
        got = methods[name]()
        diff = max(diff, (got - reference).abs().max().item())
        assert torch.equal(got.argmax(-1), reference.argmax(-1)), f"{name} picks other answers than the loop"
    assert diff < 1e-3, f"batched and naive scores differ by {diff}"
    t = interleaved(methods, args.device, warmup=1, rounds=3 if args.quick else 5)
    pairs = n * len(answers)
    rows = [{"method": name, "pairs/s": pairs / sec, "ms per input": 1e3 * sec / n,
             "speed-up vs loop": t["naive loop"] / sec} for name, sec in t.items()]
    print_table(rows, f"answer search on {args.device}: {n} inputs x {len(answers)} answers, "
                      f"course model, max |batched - loop| = {diff:.1e}")


if __name__ == "__main__":
    main()
