"""The one language-model interface (llmtap.lm): scoring written once, the course model's KV-cache
sharing and batched generation, and what CourseLM refuses."""
import random

import pytest
import torch
import torch.nn.functional as F

from llmtap import corpus
from llmtap.lm import CausalLM, CourseLM, check_lm, right_padded, token_logprobs


@pytest.fixture(scope="module")
def setup(sharp_gpt):
    return sharp_gpt("abcdefgh →我好", block_size=32)


def score(model, tok, prompts, candidates, **kwargs):
    return CourseLM(model, tok, unknown="bytes").score(prompts, candidates, **kwargs)


def manual_score(model, tok, prompt, cand, normalize=False):
    p_ids, z_ids = tok.encode(prompt, bos=True), tok.encode(cand)
    ids = torch.tensor([p_ids + z_ids])
    with torch.no_grad():
        logp = F.log_softmax(model(ids)[0][0], dim=-1)
    total = sum(logp[len(p_ids) + i - 1, z].item() for i, z in enumerate(z_ids))
    return total / len(z_ids) if normalize else total


PROMPTS = ["ab → ", "我好 →", "h", "abcdefgh abcdefgh → "]
CANDS = ["a", "bad", "好", "🙂"]          # the emoji is 4 byte tokens


@pytest.mark.parametrize("normalize", [False, True])
def test_matches_manual_log_probs(setup, normalize):
    model, tok = setup
    scores = score(model, tok, PROMPTS, CANDS, normalize=normalize)
    assert scores.shape == (len(PROMPTS), len(CANDS))
    for i, p in enumerate(PROMPTS):
        for j, z in enumerate(CANDS):
            assert scores[i, j].item() == pytest.approx(manual_score(model, tok, p, z, normalize), abs=1e-4)
    assert (scores < 0).all()


def test_normalize_divides_by_token_count(setup):
    model, tok = setup
    raw = score(model, tok, PROMPTS, CANDS)
    norm = score(model, tok, PROMPTS, CANDS, normalize=True)
    counts = torch.tensor([len(tok.encode(z)) for z in CANDS], dtype=torch.float32)
    assert counts.tolist() == [1, 3, 1, 4]
    assert torch.allclose(norm, raw / counts, atol=1e-5)


def test_batching_does_not_change_scores(setup):
    model, tok = setup
    a = score(model, tok, PROMPTS, CANDS)
    b = score(model, tok, PROMPTS, CANDS, batch_size=3)
    c = torch.stack([score(model, tok, [p], CANDS)[0] for p in PROMPTS])
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(a, c, atol=1e-5)


def test_shared_vs_per_prompt_candidates(setup):
    model, tok = setup
    shared = score(model, tok, PROMPTS[:2], ["a", "b"])
    per = score(model, tok, PROMPTS[:2], [["a", "b"], ["a", "b"]])
    assert torch.equal(shared, per)
    mixed = score(model, tok, PROMPTS[:2], [["a", "b"], ["好", "bad"]])
    assert torch.allclose(mixed[0], shared[0])
    assert mixed[1, 0].item() == pytest.approx(manual_score(model, tok, PROMPTS[1], "好"), abs=1e-4)
    assert mixed[1, 1].item() == pytest.approx(manual_score(model, tok, PROMPTS[1], "bad"), abs=1e-4)


def test_log_probs_of_all_single_tokens_sum_to_one(setup):
    model, tok = setup
    every = [tok.id_to_piece(i) for i in range(tok.offset, tok.vocab_size)]
    scores = score(model, tok, ["ab"], every)
    bos_and_bytes = F.softmax(model(torch.tensor([tok.encode("ab", bos=True)]))[0][0, -1], -1)[:tok.offset].sum()
    assert scores.exp().sum().item() + bos_and_bytes.item() == pytest.approx(1.0, abs=1e-4)


def test_long_prompt_is_an_error_unless_trimming_is_asked_for(setup):
    model, tok = setup
    long_prompt = "abcdefgh" * 10
    with pytest.raises(ValueError, match="context holds 32"):
        score(model, tok, [long_prompt], ["a", "b"])
    s = score(model, tok, [long_prompt], ["a", "b"], too_long="left")
    ids = (tok.encode(long_prompt, bos=True) + tok.encode("a"))[-32:]
    with torch.no_grad():
        logp = F.log_softmax(model(torch.tensor([ids]))[0][0], -1)
    assert s[0, 0].item() == pytest.approx(logp[-2, ids[-1]].item(), abs=1e-4)


def test_bad_inputs(setup):
    model, tok = setup
    with pytest.raises(TypeError):
        score(model, tok, "one prompt", ["a"])
    with pytest.raises(ValueError):
        score(model, tok, [], ["a"])
    with pytest.raises(ValueError):
        score(model, tok, ["ab"], ["a", ""])
    with pytest.raises(ValueError):
        score(model, tok, ["ab"], [])
    with pytest.raises(ValueError):
        score(model, tok, ["ab", "cd"], [["a"], []])
    with pytest.raises(ValueError):
        score(model, tok, ["ab", "cd"], [["a", "b"]])            # 1 list for 2 prompts
    with pytest.raises(ValueError):
        score(model, tok, ["ab", "cd"], [["a", "b"], ["a"]])     # different counts
    with pytest.raises(ValueError):
        score(model, tok, ["ab"], [["a", 3]])
    with pytest.raises(ValueError, match="too_long"):
        score(model, tok, ["ab"], ["a"], too_long="right")
    with pytest.raises(ValueError, match="batch_size"):
        score(model, tok, ["ab"], ["a"], batch_size=0)


# ----------------------------------------------------------------------------- the CausalLM interface
def test_causal_lm_rejects_what_it_cannot_handle(toy):
    with pytest.raises(ValueError, match="no token for the characters"):
        toy.encode("hello 🙂")
    assert CourseLM(toy.model, toy.tokenizer, unknown="bytes").encode("🙂") == toy.tokenizer.encode("🙂")
    with pytest.raises(TypeError):
        toy.encode(None)
    with pytest.raises(ValueError, match="unknown"):
        CourseLM(toy.model, toy.tokenizer, unknown="skip")
    with pytest.raises(TypeError, match="llmtap.Tokenizer"):
        CourseLM(toy.model, object())
    with pytest.raises(TypeError, match="HFCausalLM"):
        CourseLM(torch.nn.Linear(2, 2), object())
    with pytest.raises(TypeError, match="CausalLM"):
        check_lm(toy.model)
    assert check_lm(toy) is toy


def test_causal_lm_generate_course_model(course):
    text = course.generate("苹果是一种", max_new_tokens=10, stop="。")
    assert text == "水果"
    a = course.generate("我", 20, temperature=1.0, seed=5)
    assert a == course.generate("我", 20, temperature=1.0, seed=5)
    with pytest.raises(ValueError):
        course.generate("我", -1)


def test_shared_context_equals_whole_rows(course):
    rng = random.Random(2)
    tasks = [corpus.sample_mapping(rng, k, "zh") for k in (0, 1, 3, 5, 5, 8)]
    prompts = [t.prompt() for t in tasks] + ["我", "今天早上我在公园里丢了钱包。我感到"]
    cands = [["甲", "太好了。", "不好。"]] * len(prompts)
    shared = course.score(prompts, cands, share_context=True, batch_size=6)     # several groups and chunks
    whole = course.score(prompts, cands, share_context=False)
    assert torch.allclose(shared, whole, atol=1e-4)
    norm = course.score(prompts, cands, normalize=True)
    assert torch.allclose(norm, whole / torch.tensor([1.0, 4.0, 3.0]), atol=1e-4)




def test_generate_many_equals_one_prompt_at_a_time(course):
    prompts = ["苹果是一种", "I feel", "我感到", "香蕉是一种", "Yesterday, I"]     # two share a length
    many = course.generate_many(prompts, max_new_tokens=8)
    assert many == [course.generate(p, max_new_tokens=8) for p in prompts]
    assert course.generate_many(prompts, 8, stop="。") == [t.split("。")[0] for t in many]
    with pytest.raises(TypeError, match="list of strings"):
        course.generate_many("苹果是一种")
    with pytest.raises(ValueError, match="top_k"):
        course.generate_many(["我"], 3, temperature=1.0, top_k=0)


def test_generate_ids_keeps_the_end_token(course):
    prompts = ["苹果是一种", "I feel"]
    ids = course.generate_ids(prompts, max_new_tokens=8)
    assert [course.decode(i) for i in ids] == course.generate_many(prompts, max_new_tokens=8)
    assert all(len(i) == 8 for i in ids)
    stopped = [i for i in ids if course.eos_id in i]
    assert all(set(i[i.index(course.eos_id):]) == {course.eos_id} for i in stopped)   # then only the end token
    with pytest.raises(TypeError, match="list of strings"):
        course.generate_ids("苹果是一种")


def test_the_base_class_is_an_interface_only():
    with pytest.raises(NotImplementedError):
        CausalLM(torch.nn.Linear(2, 2), None).encode("a")


def test_right_padded_and_token_logprobs():
    x, mask = right_padded([[5, 6, 7], [8]], pad_id=0)
    assert x.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[True] * 3, [True, False, False]]
    logits = torch.randn(2, 3, 10, generator=torch.Generator().manual_seed(0))
    got = token_logprobs(logits, x, mask)
    logp = F.log_softmax(logits, -1)
    want = torch.tensor([sum(logp[0, t, x[0, t]] for t in range(3)), logp[1, 0, 8]])
    assert torch.allclose(got, want, atol=1e-6)
