"""Answer-search throughput: llmtap's batched scoring versus the naive loop.

The naive loop runs one forward pass per (input, answer) pair, the way answer search is first
written down; ``CausalLM.score`` scores all answers of a batch of inputs in one padded forward
pass. Both score the same held-out sentences with the seed's template and five answers on the
course model; the script checks that they agree before it reports the speed ratio.

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
from llmtap.prompting import CausalLM, Template  # noqa: E402


@torch.no_grad()
def naive_scores(lm: CausalLM, template: Template, xs, answers) -> torch.Tensor:
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
    lm = CausalLM(model.eval(), tok)
    template, answers = Template(corpus.TAUGHT_TEMPLATES["zh"][0]), list(corpus.ANSWERS["zh"].values())
    rng = random.Random(0)
    n = 8 if args.quick else 64
    xs = [corpus.sample_event(rng, "zh", "test").text for _ in range(n)]

    def batched():
        contexts = [template.split(x, "")[0] for x in xs]
        return lm.score(contexts, [[template.split(x, z)[1] for z in answers] for x in xs])

    a, b = batched(), naive_scores(lm, template, xs, answers)
    diff = (a - b).abs().max().item()
    assert torch.equal(a.argmax(-1), b.argmax(-1)) and diff < 1e-3, f"batched and naive disagree by {diff}"
    t = interleaved({"naive": lambda: naive_scores(lm, template, xs, answers), "batched": batched},
                    args.device, warmup=1, rounds=3 if args.quick else 5)
    pairs = n * len(answers)
    rows = [{"method": name, "pairs/s": pairs / sec, "ms per input": 1e3 * sec / n,
             "forward passes": pairs if name == "naive" else -(-pairs // 256), "speed-up": t["naive"] / sec}
            for name, sec in t.items()]
    print_table(rows, f"answer search on {args.device}: {n} inputs x {len(answers)} answers, "
                      f"course model, max |batched - naive| = {diff:.1e}")


if __name__ == "__main__":
    main()
