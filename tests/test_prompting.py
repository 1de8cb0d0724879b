import pytest
import torch
import torch.nn.functional as F

from llmtap.prompting import score_continuations


@pytest.fixture(scope="module")
def setup(sharp_gpt):
    return sharp_gpt("abcdefgh →我好", block_size=32)


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
    scores = score_continuations(model, tok, PROMPTS, CANDS, normalize=normalize)
    assert scores.shape == (len(PROMPTS), len(CANDS))
    for i, p in enumerate(PROMPTS):
        for j, z in enumerate(CANDS):
            assert scores[i, j].item() == pytest.approx(manual_score(model, tok, p, z, normalize), abs=1e-4)
    assert (scores < 0).all()


def test_normalize_divides_by_token_count(setup):
    model, tok = setup
    raw = score_continuations(model, tok, PROMPTS, CANDS)
    norm = score_continuations(model, tok, PROMPTS, CANDS, normalize=True)
    counts = torch.tensor([len(tok.encode(z)) for z in CANDS], dtype=torch.float32)
    assert counts.tolist() == [1, 3, 1, 4]
    assert torch.allclose(norm, raw / counts, atol=1e-5)


def test_batching_does_not_change_scores(setup):
    model, tok = setup
    a = score_continuations(model, tok, PROMPTS, CANDS)
    b = score_continuations(model, tok, PROMPTS, CANDS, batch_size=3)
    c = torch.stack([score_continuations(model, tok, [p], CANDS)[0] for p in PROMPTS])
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(a, c, atol=1e-5)


def test_shared_vs_per_prompt_candidates(setup):
    model, tok = setup
    shared = score_continuations(model, tok, PROMPTS[:2], ["a", "b"])
    per = score_continuations(model, tok, PROMPTS[:2], [["a", "b"], ["a", "b"]])
    assert torch.equal(shared, per)
    mixed = score_continuations(model, tok, PROMPTS[:2], [["a", "b"], ["好", "bad"]])
    assert torch.allclose(mixed[0], shared[0])
    assert mixed[1, 0].item() == pytest.approx(manual_score(model, tok, PROMPTS[1], "好"), abs=1e-4)
    assert mixed[1, 1].item() == pytest.approx(manual_score(model, tok, PROMPTS[1], "bad"), abs=1e-4)


def test_log_probs_of_all_single_tokens_sum_to_one(setup):
    model, tok = setup
    every = [tok.id_to_piece(i) for i in range(tok.offset, tok.vocab_size)]
    scores = score_continuations(model, tok, ["ab"], every)
    bos_and_bytes = F.softmax(model(torch.tensor([tok.encode("ab", bos=True)]))[0][0, -1], -1)[:tok.offset].sum()
    assert scores.exp().sum().item() + bos_and_bytes.item() == pytest.approx(1.0, abs=1e-4)


def test_long_prompt_is_an_error_unless_trimming_is_asked_for(setup):
    model, tok = setup
    long_prompt = "abcdefgh" * 10
    with pytest.raises(ValueError, match="context holds 32"):
        score_continuations(model, tok, [long_prompt], ["a", "b"])
    s = score_continuations(model, tok, [long_prompt], ["a", "b"], too_long="left")
    ids = (tok.encode(long_prompt, bos=True) + tok.encode("a"))[-32:]
    with torch.no_grad():
        logp = F.log_softmax(model(torch.tensor([ids]))[0][0], -1)
    assert s[0, 0].item() == pytest.approx(logp[-2, ids[-1]].item(), abs=1e-4)


def test_bad_inputs(setup):
    model, tok = setup
    with pytest.raises(TypeError):
        score_continuations(model, tok, "one prompt", ["a"])
    with pytest.raises(ValueError):
        score_continuations(model, tok, [], ["a"])
    with pytest.raises(ValueError):
        score_continuations(model, tok, ["ab"], ["a", ""])
    with pytest.raises(ValueError):
        score_continuations(model, tok, ["ab"], [])
    with pytest.raises(ValueError):
        score_continuations(model, tok, ["ab", "cd"], [["a"], []])
    with pytest.raises(ValueError):
        score_continuations(model, tok, ["ab", "cd"], [["a", "b"]])            # 1 list for 2 prompts
    with pytest.raises(ValueError):
        score_continuations(model, tok, ["ab", "cd"], [["a", "b"], ["a"]])     # different counts
    with pytest.raises(ValueError):
        score_continuations(model, tok, ["ab"], [["a", 3]])
    with pytest.raises(ValueError, match="too_long"):
        score_continuations(model, tok, ["ab"], ["a"], too_long="right")
    with pytest.raises(ValueError, match="batch_size"):
        score_continuations(model, tok, ["ab"], ["a"], batch_size=0)
