"""Templates, answer search, verbalizers, in-context learning and the one CausalLM interface."""
import random

import pytest
import torch
import torch.nn.functional as F

import llmtap
from llmtap import corpus
from llmtap.prompting import (CausalLM, ICLTask, PromptClassifier, Template, Verbalizer,
                              answer_search, as_causal_lm, check_answer_space, icl_accuracy, icl_curve,
                              icl_predict, icl_prompt, perturb_labels, select_demonstrations)

SEED_X = "我不小心错过了公共汽车。"
ZH_ANSWERS = ["太好了", "好", "一般", "不好", "糟糕"]


@pytest.fixture(scope="module")
def toy(sharp_gpt):
    return CausalLM(*sharp_gpt("abcdefgh →我好感到不。，因为[]XZ\n", block_size=64))


@pytest.fixture(scope="module")
def course():
    model, tok = llmtap.load_course_model("cpu")
    return CausalLM(model.eval(), tok)


def sequence_logprob(lm, text):
    """log P(text) under the model, token by token, the slow obvious way."""
    ids = lm.encode(text, bos=True)
    with torch.no_grad():
        logp = F.log_softmax(lm.logits(torch.tensor([ids]), torch.ones(1, len(ids)))[0].float(), -1)
    return sum(logp[t - 1, ids[t]].item() for t in range(1, len(ids)))


# ----------------------------------------------------------------------------- templates
def test_template_prompt_fill_split():
    t = Template("[X]我感到[Z]。")
    assert t.prompt(SEED_X) == SEED_X + "我感到[Z]。"
    assert t.fill(SEED_X, "糟糕") == SEED_X + "我感到糟糕。"
    assert t.split(SEED_X, "糟糕") == (SEED_X + "我感到", "糟糕。")
    cloze = Template("我感到[Z]，因为[X]")            # the answer slot may come first
    assert cloze.split("下雨了", "好") == ("我感到", "好，因为下雨了")
    assert Template(t) == t and hash(Template(t.text)) == hash(t)


@pytest.mark.parametrize("text, match", [("我感到[Z]。", "input slots"), ("[X]我感到。", "answer slots"),
                                         ("[X][X][Z]", "2 input"), ("[X][Z][Z]", "2 answer")])
def test_template_needs_one_of_each_slot(text, match):
    with pytest.raises(ValueError, match=match):
        Template(text)


def test_template_bad_types_and_inputs():
    with pytest.raises(TypeError):
        Template(42)
    t = Template("[X]→[Z]")
    with pytest.raises(TypeError):
        t.prompt(None)
    with pytest.raises(ValueError, match="empty"):
        t.fill("  ", "好")


def test_answer_space_checks():
    assert check_answer_space(("好", "不好")) == ["好", "不好"]
    with pytest.raises(ValueError, match="empty"):
        check_answer_space([])
    with pytest.raises(ValueError, match="more than once"):
        check_answer_space(["好", "好"])
    with pytest.raises(TypeError):
        check_answer_space("好不好")
    with pytest.raises(ValueError, match="non-empty"):
        check_answer_space(["好", ""])


# ----------------------------------------------------------------------------- answer search
@pytest.mark.parametrize("text", ["[X]我感到[Z]。", "我感到[Z]，因为[X]"])
def test_answer_search_ranks_by_the_filled_prompt(toy, text):
    xs, answers = ["ab我", "好好"], ["好", "不好", "a"]
    best, scores = answer_search(toy, text, xs, answers)
    t = Template(text)
    for i, x in enumerate(xs):
        full = torch.tensor([sequence_logprob(toy, t.fill(x, z)) for z in answers])
        context = sequence_logprob(toy, t.split(x, "")[0])
        # log P(f_fill(x', z)) = log P(context) + score: the same ranking, the same numbers
        assert torch.allclose(scores[i] + context, full, atol=1e-3)
        assert best[i] == answers[int(full.argmax())]
    _, norm = answer_search(toy, text, xs, answers, normalize=True)
    n_tokens = torch.tensor([[len(toy.encode(t.split(x, z)[1])) for z in answers] for x in xs], dtype=torch.float32)
    assert torch.allclose(norm, scores / n_tokens, atol=1e-5)


def test_answer_search_bad_inputs(toy):
    with pytest.raises(ValueError, match="empty"):
        answer_search(toy, "[X]→[Z]", ["ab"], [])
    with pytest.raises(TypeError, match="list of inputs"):
        answer_search(toy, "[X]→[Z]", "ab", ["a"])
    with pytest.raises(ValueError, match="answer slots"):
        answer_search(toy, "[X]→", ["ab"], ["a"])


# ----------------------------------------------------------------------------- verbalizer
def test_verbalizer_maps_answers_to_labels():
    v = Verbalizer(corpus.sentiment_verbalizer("zh"))
    assert v.labels == ["negative", "neutral", "positive"]
    assert sorted(v.answers) == sorted(ZH_ANSWERS)
    assert v.label_of("太好了") == "positive" and v.label_of("一般") == "neutral"
    with pytest.raises(KeyError, match="not in the answer space"):
        v.label_of("非常")
    assert Verbalizer({"yes": "好", "no": "不好"}).answers == ["好", "不好"]


def test_verbalizer_label_probs():
    v = Verbalizer({"pos": ["a", "b"], "neg": ["c"]})
    scores = torch.log(torch.tensor([[0.3, 0.3, 0.4], [0.1, 0.1, 0.8]]))
    assert torch.allclose(v.label_probs(scores, "sum"), torch.tensor([[0.6, 0.4], [0.2, 0.8]]), atol=1e-6)
    mx = v.label_probs(scores, "max")                      # label of the best answer wins
    assert torch.allclose(mx, torch.tensor([[3 / 7, 4 / 7], [1 / 9, 8 / 9]]), atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        v.label_probs(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="aggregate"):
        v.label_probs(scores, "mean")


@pytest.mark.parametrize("words, match", [({}, "non-empty dict"), ({"pos": []}, "no answers"),
                                          ({"pos": ["好"], "neg": ["好"]}, "mapped to two labels"),
                                          ({"pos": ["好"], "neg": [""]}, "non-empty")])
def test_verbalizer_bad_inputs(words, match):
    with pytest.raises(ValueError, match=match):
        Verbalizer(words)


# ----------------------------------------------------------------------------- classifier on the course model
def test_seed_example_on_the_course_model(course):
    clf = PromptClassifier(course, "[X]我感到[Z]。", corpus.sentiment_verbalizer("zh"))
    p = clf.predict_proba([SEED_X])
    assert p.shape == (1, 3) and p.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert clf.predict([SEED_X]) == ["negative"]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_taught_templates_beat_untaught_ones(course, lang):
    rng = random.Random(1)
    events = [corpus.sample_event(rng, lang, "test") for _ in range(90)]
    xs, ys = [e.text for e in events], [e.label for e in events]
    verbalizer = corpus.sentiment_verbalizer(lang)
    taught = PromptClassifier(course, corpus.TAUGHT_TEMPLATES[lang][0], verbalizer).accuracy(xs, ys)
    untaught = PromptClassifier(course, "[X]→[Z]" if lang == "zh" else "[X] → [Z]", verbalizer).accuracy(xs, ys)
    assert taught >= 0.9
    assert untaught < taught - 0.3


def test_classifier_bad_inputs(course):
    clf = PromptClassifier(course, "[X]我感到[Z]。", corpus.sentiment_verbalizer("zh"))
    with pytest.raises(ValueError, match="as many labels"):
        clf.accuracy(["我很好。"], [])
    with pytest.raises(ValueError, match="not among"):
        clf.accuracy(["我很好。"], ["happy"])
    with pytest.raises(ValueError, match="no token for the characters"):
        clf.predict(["I missed the bus ☂"])


# ----------------------------------------------------------------------------- in-context learning
def test_icl_prompt_is_the_corpus_format():
    rng = random.Random(0)
    for k in (0, 1, 4):
        m = corpus.sample_mapping(rng, k, "zh")
        assert icl_prompt(m.demos, m.query) == m.prompt()
    assert icl_prompt([("下雨了", "不好")], "晴天", "[X]我感到[Z]。") == "下雨了我感到不好。\n晴天我感到"


def test_select_demonstrations():
    pool = [(f"x{i}", "ABC"[i % 3]) for i in range(30)]
    rng = random.Random(0)
    for k in (0, 3, 7, 30):
        demos = select_demonstrations(pool, k, rng, "balanced")
        assert len(demos) == k and len(set(demos)) == k and set(demos) <= set(pool)
        counts = [sum(y == c for _, y in demos) for c in "ABC"]
        assert max(counts) - min(counts) <= 1                # balanced: labels differ by at most one
    assert len(select_demonstrations(pool, 5, rng)) == 5
    assert "x0" not in dict(select_demonstrations(pool, 29, rng, exclude=["x0"]))
    with pytest.raises(ValueError, match="only 30"):
        select_demonstrations(pool, 31, rng)
    with pytest.raises(ValueError, match="k must be"):
        select_demonstrations(pool, -1, rng)
    with pytest.raises(ValueError, match="strategy"):
        select_demonstrations(pool, 2, rng, "nearest")


def test_perturb_labels():
    task = ICLTask([("a", "甲"), ("b", "乙"), ("c", "丙"), ("d", "甲")], "e", "乙", ["甲", "乙", "丙"])
    flipped = perturb_labels(task, "flipped", random.Random(0))
    assert all(y != y0 for (_, y), (_, y0) in zip(flipped.demos, task.demos))
    assert flipped.demos[0][1] == flipped.demos[3][1]          # a consistent relabelling
    assert flipped.answer == "乙" and flipped.query == "e"
    rnd = perturb_labels(task, "random", random.Random(0))
    assert [x for x, _ in rnd.demos] == ["a", "b", "c", "d"] and set(y for _, y in rnd.demos) <= set(task.labels)
    with pytest.raises(ValueError, match="mode"):
        perturb_labels(task, "shuffled", random.Random(0))


def test_icl_on_the_course_model(course):
    rng = random.Random(3)
    tasks = [corpus.sample_mapping(rng, 4, corpus.LANGS[i % 2]) for i in range(60)]
    gold = icl_accuracy(course, tasks)
    flipped = icl_accuracy(course, [perturb_labels(t, "flipped", rng) for t in tasks])
    assert gold >= 0.9
    assert flipped <= 0.2          # the model follows the demonstrations, not a prior about the labels
    zero = icl_accuracy(course, [ICLTask([], t.query, t.answer, t.labels) for t in tasks])
    assert zero < 0.6


def test_icl_curve_shape(toy):
    def make(k, seed):
        return [ICLTask([("ab", "a")] * k, "ab", "a", ["a", "b"]) for _ in range(3)]
    curve = icl_curve(toy, make, ks=[0, 2], seeds=[0, 1])
    assert list(curve) == [0, 2] and all(len(v) == 2 for v in curve.values())
    assert all(0 <= a <= 1 for v in curve.values() for a in v)
    with pytest.raises(ValueError, match="empty"):
        icl_predict(toy, [])


# ----------------------------------------------------------------------------- the CausalLM interface
def test_causal_lm_rejects_what_it_cannot_handle(toy):
    with pytest.raises(ValueError, match="no token for the characters"):
        toy.encode("hello 🙂")
    assert CausalLM(toy.model, toy.tokenizer, unknown="bytes").encode("🙂") == toy.tokenizer.encode("🙂")
    with pytest.raises(TypeError):
        toy.encode(None)
    with pytest.raises(ValueError, match="unknown"):
        CausalLM(toy.model, toy.tokenizer, unknown="skip")
    with pytest.raises(TypeError, match="llmtap.Tokenizer"):
        CausalLM(toy.model, object())
    with pytest.raises(TypeError, match="Hugging Face"):
        CausalLM(torch.nn.Linear(2, 2), object())
    with pytest.raises(TypeError, match="tokenizer"):
        as_causal_lm(toy.model)
    assert as_causal_lm(toy) is toy


def test_causal_lm_generate_course_model(course):
    text = course.generate("苹果是一种", max_new_tokens=10, stop="。")
    assert text == "水果"
    a = course.generate("我", 20, temperature=1.0, seed=5)
    assert a == course.generate("我", 20, temperature=1.0, seed=5)
    with pytest.raises(ValueError):
        course.generate("我", -1)


# ----------------------------------------------------------------------------- Hugging Face models
@pytest.fixture(scope="module")
def hf():
    pytest.importorskip("transformers")
    from llmtap.hf import random_gpt2
    model, tok = random_gpt2(n_layer=2, n_head=2, n_embd=32, n_positions=64, seed=0)
    return CausalLM(model, tok)


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
    from llmtap.hf import load_lm
    assert load_lm("course", "cpu").is_course_model
    assert not load_lm("random-gpt2", "cpu").is_course_model
    with pytest.raises(ValueError):
        load_lm("")


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


def test_share_context_needs_the_course_model(hf):
    with pytest.raises(ValueError, match="share_context"):
        hf.score(["ab"], ["a"], share_context=True)
