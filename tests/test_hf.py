"""Hugging Face models behind the same interface: the offline random GPT-2, scoring, the lessons, load_lm."""
import random

import pytest
import torch
import torch.nn.functional as F

from llmtap import corpus
from llmtap.icl import icl_predict
from llmtap.lm import CourseLM
from llmtap.prompting import PromptClassifier

SEED_X = "我不小心错过了公共汽车。"


def sequence_logprob(lm, text):
    """log P(text) under the model, token by token, the slow obvious way."""
    ids = lm.encode(text, bos=True)
    with torch.no_grad():
        logp = F.log_softmax(lm.logits(torch.tensor([ids]), torch.ones(1, len(ids)))[0].float(), -1)
    return sum(logp[t - 1, ids[t]].item() for t in range(1, len(ids)))


@pytest.fixture(scope="module")
def hf():
    pytest.importorskip("transformers")
    from llmtap.hf import HFCausalLM, random_gpt2
    model, tok = random_gpt2(n_layer=2, n_head=2, n_embd=32, n_positions=64, seed=0)
    return HFCausalLM(model, tok)


def test_hf_byte_tokenizer_round_trips(hf):
    s = "我不小心错过了 the bus!\n🙂"
    ids = hf.encode(s)
    assert ids == list(s.encode("utf-8")) and hf.decode(ids) == s
    assert hf.encode("ab", bos=True)[0] == hf.bos_id == 256


def test_hf_scores_match_manual_and_ignore_padding(hf):
    prompts, cands = ["我感到", "the bus was late, I feel "], ["好", "不好", "terrible"]
    scores = hf.score(prompts, cands)
    for i, p in enumerate(prompts):
        for j, z in enumerate(cands):
            manual = sequence_logprob(hf, p + z) - sequence_logprob(hf, p)
            assert scores[i, j].item() == pytest.approx(manual, abs=1e-3)
    one_by_one = torch.stack([hf.score([p], cands)[0] for p in prompts])
    assert torch.allclose(scores, one_by_one, atol=1e-4)


def test_lessons_run_unchanged_on_a_hf_model(hf):
    clf = PromptClassifier(hf, "[X]我感到[Z]。", corpus.sentiment_verbalizer("zh"))
    p = clf.predict_proba([SEED_X, "今天我赢了比赛。"])
    assert p.shape == (2, 3) and torch.allclose(p.sum(-1), torch.ones(2), atol=1e-5)
    tasks = [corpus.sample_mapping(random.Random(0), 2, "en") for _ in range(3)]
    assert len(icl_predict(hf, tasks)) == 3
    assert isinstance(hf.generate("ab", 4), str)
    with pytest.raises(ValueError, match="context holds 64"):
        hf.score(["x" * 70], ["a"])


def test_load_lm_by_name():
    pytest.importorskip("transformers")
    from llmtap.hf import HFCausalLM, load_lm
    assert type(load_lm("course", "cpu")) is CourseLM
    assert type(load_lm("random-gpt2", "cpu")) is HFCausalLM
    with pytest.raises(ValueError):
        load_lm("")


def test_share_context_needs_the_course_model(hf):
    with pytest.raises(ValueError, match="share_context"):
        hf.score(["ab"], ["a"], share_context=True)


def test_as_causal_lm_picks_the_wrapper(hf, sharp_gpt):
    from llmtap.hf import HFCausalLM, as_causal_lm
    assert as_causal_lm(hf) is hf
    assert type(as_causal_lm(hf.model, hf.tokenizer)) is HFCausalLM
    assert type(as_causal_lm(*sharp_gpt("ab", block_size=8))) is CourseLM
    with pytest.raises(TypeError, match="tokenizer"):
        as_causal_lm(hf.model)
    with pytest.raises(TypeError, match="CourseLM"):
        HFCausalLM(*sharp_gpt("ab", block_size=8))


def test_hf_generate_many_is_one_prompt_at_a_time(hf):
    prompts = ["ab", "我感到", "xy"]
    assert hf.generate_many(prompts, 5) == [hf.generate(p, 5) for p in prompts]
