"""Prompt learning: templates, answer search, verbalizers and the classifier built from them."""
import random

import pytest
import torch
import torch.nn.functional as F

from llmtap import corpus
from llmtap.prompting import PromptClassifier, PromptEnsemble, Template, Verbalizer, answer_search, check_answer_space

SEED_X = "我不小心错过了公共汽车。"
ZH_ANSWERS = ["太好了", "好", "一般", "不好", "糟糕"]


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
    with pytest.raises(TypeError, match="CausalLM"):
        answer_search(toy.model, "[X]→[Z]", ["ab"], ["a"])          # a bare model, not wrapped


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


def test_prompt_ensemble_averages_label_probabilities(course):
    rng = random.Random(2)
    events = [corpus.sample_event(rng, "zh", "test") for _ in range(30)]
    xs, ys = [e.text for e in events], [e.label for e in events]
    verbalizer = corpus.sentiment_verbalizer("zh")
    members = [PromptClassifier(course, t, verbalizer) for t in ("[X]我感到[Z]。", "[X]心情[Z]。", "[X]→[Z]")]
    probs = [m.predict_proba(xs) for m in members]
    ensemble = PromptEnsemble(members)
    assert torch.allclose(ensemble.predict_proba(xs), sum(probs) / 3, atol=1e-6)
    weighted = PromptEnsemble(members, weights=[0, 1, 3])
    assert torch.allclose(weighted.predict_proba(xs), (probs[1] + 3 * probs[2]) / 4, atol=1e-6)
    assert PromptEnsemble(members[:1]).predict(xs) == members[0].predict(xs)
    assert ensemble.accuracy(xs, ys) == sum(p == y for p, y in zip(ensemble.predict(xs), ys)) / len(xs)


def test_prompt_ensemble_bad_input(course):
    zh = PromptClassifier(course, "[X]我感到[Z]。", corpus.sentiment_verbalizer("zh"))
    two = PromptClassifier(course, "[X]我感到[Z]。", {"negative": ["不好"], "positive": ["好"]})
    with pytest.raises(TypeError, match="non-empty list"):
        PromptEnsemble([])
    with pytest.raises(ValueError, match="one label set"):
        PromptEnsemble([zh, two])
    with pytest.raises(ValueError, match="one weight"):
        PromptEnsemble([zh, zh], weights=[1])
    with pytest.raises(ValueError, match="one weight"):
        PromptEnsemble([zh, zh], weights=[0, 0])
