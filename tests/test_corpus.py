import itertools
import random
import re

import pytest

from llmtap import corpus, world
from llmtap.corpus import (ALL_EVENTS, ANSWERS, CATEGORIES, CATEGORY_NAMES, EVENTS, INSTRUCTION_TASKS,
                           LABEL_WORDS, LABELS, LANGS, PLACES, TIMES)
from llmtap.icl import ICLTask

ARROW = "→"          # the corpus writes mappings in llmtap.icl's x→y format


# ----------------------------------------------------------------------------- helpers
def _item_category(lang):
    """item word -> category index, for one language (items must be unambiguous)."""
    table = {}
    for c, name in enumerate(CATEGORY_NAMES):
        for zh, en in CATEGORIES[name]:
            word = zh if lang == "zh" else en
            assert word not in table, f"item {word!r} is in two categories"
            table[word] = c
    return table


def _sentence_level(lang):
    """every event sentence the generators can write -> its level."""
    table = {}
    options_t = [None] + list(range(len(TIMES)))
    options_p = [None] + list(range(len(PLACES)))
    for e, t, p in itertools.product(range(len(ALL_EVENTS)), options_t, options_p):
        table[corpus.event_sentence(e, t, p, lang)] = ALL_EVENTS[e][2]
    return table


def _bare_sentences(lang):
    return {corpus.event_sentence(e, None, None, lang) for e in range(len(ALL_EVENTS))}


# ----------------------------------------------------------------------------- determinism
def test_seeded_determinism():
    def docs(seed, n=60):
        rng = random.Random(seed)
        return [corpus.pretraining_document(rng) for _ in range(n)]
    assert docs(7) == docs(7)
    assert docs(7) != docs(8)


def test_seeded_determinism_of_each_generator():
    for make in (lambda r: corpus.sample_mapping(r, 4, "zh").text(),
                 lambda r: corpus.instruction_example(r),
                 lambda r: corpus.passkey_sample(r, 300, 0.5),
                 lambda r: corpus.sample_event(r, "en", "test").text):
        a, b = random.Random(3), random.Random(3)
        assert [make(a) for _ in range(10)] == [make(b) for _ in range(10)]


# ----------------------------------------------------------------------------- sentiment
@pytest.mark.parametrize("lang", LANGS)
def test_seen_split_is_known_events_in_new_settings(lang):
    rng = random.Random(0)
    train = {corpus.sample_event(rng, lang, "train").text for _ in range(3000)}
    seen = [corpus.sample_event(rng, lang, "seen") for _ in range(1500)]
    bare = _bare_sentences(lang)
    assert train & bare, "the bare sentences are part of the train split"
    assert not {e.text for e in seen} & (train | bare)
    assert not any(corpus.is_unseen_event(e.event_index) for e in seen)
    assert len({e.text for e in seen}) > 500 and len(train - bare) > 1000


def _unseen_phrases(lang):
    side = 0 if lang == "zh" else 1
    return [ALL_EVENTS[e][side] for e in range(len(ALL_EVENTS)) if corpus.is_unseen_event(e)]


@pytest.mark.parametrize("lang", LANGS)
def test_unseen_events_never_appear_in_pretraining(lang):
    unseen = _unseen_phrases(lang)
    assert len(unseen) >= 40
    rng = random.Random(1)
    docs = [corpus.pretraining_document(rng) for _ in range(4000)]
    docs += [corpus.sentiment_document(rng, lang) for _ in range(2000)]
    docs += [corpus.mapping_document(rng, lang) for _ in range(500)]
    docs += [corpus.instruction_example(rng, lang, "sentiment")["input"] for _ in range(500)]
    for doc in docs:
        assert not any(phrase in doc for phrase in unseen), doc
    test = [corpus.sample_event(rng, lang, "test") for _ in range(300)]
    assert all(corpus.is_unseen_event(e.event_index) for e in test)
    assert all(any(phrase in e.text for phrase in unseen) for e in test)


def test_unseen_events_are_made_of_seen_parts():
    """Every unseen event's action and object take part in at least 8 seen events each, so that
    their polarity and their weight can be learnt from other events."""
    n_fixed = len(EVENTS)
    composed = [(a, o) for a in range(len(corpus.ACTIONS)) for o in range(len(corpus.OBJECTS))]
    texts = {ALL_EVENTS[e][1]: e for e in range(n_fixed, len(ALL_EVENTS))}
    seen_pairs = [(a, o) for a, o in composed
                  if corpus.ACTIONS[a][1].format(o=corpus.OBJECTS[o][1]) in texts
                  and not corpus.is_unseen_event(texts[corpus.ACTIONS[a][1].format(o=corpus.OBJECTS[o][1])])]
    for e in range(n_fixed, len(ALL_EVENTS)):
        if corpus.is_unseen_event(e):
            a, o = next((a, o) for a, o in composed if corpus.ACTIONS[a][1].format(o=corpus.OBJECTS[o][1]) == ALL_EVENTS[e][1])
            assert sum(pa == a for pa, _ in seen_pairs) >= 8
            assert sum(po == o for _, po in seen_pairs) >= 8
    labels = [corpus.level_to_label(ALL_EVENTS[e][2]) for e in range(len(ALL_EVENTS)) if corpus.is_unseen_event(e)]
    assert all(labels.count(y) >= 10 for y in LABELS), "every class among the unseen events"


def test_composed_levels_follow_action_and_object():
    for zh, en, level in ALL_EVENTS[len(EVENTS):]:
        (action,) = [a for a in corpus.ACTIONS if en.startswith(a[1].split("{o}")[0]) and en.endswith(a[1].split("{o}")[1])
                     and zh.startswith(a[0].split("{o}")[0])]
        (obj,) = [o for o in corpus.OBJECTS if en == action[1].format(o=o[1])]
        assert zh == action[0].format(o=obj[0])
        assert level == action[2] * (1 + obj[2])
    fixed_texts = {t for e in EVENTS for t in e[:2]}
    assert not any(t in fixed_texts for e in ALL_EVENTS[len(EVENTS):] for t in e[:2])


@pytest.mark.parametrize("lang", LANGS)
def test_sentiment_documents_use_train_events_only(lang):
    rng = random.Random(1)
    test = {corpus.sample_event(rng, lang, "test").text for _ in range(1500)}
    for _ in range(500):
        doc = corpus.sentiment_document(rng, lang)
        assert not any(doc.startswith(t) for t in test), doc


@pytest.mark.parametrize("lang", LANGS)
def test_sample_event_level_matches_text(lang):
    levels = _sentence_level(lang)
    rng = random.Random(2)
    for split in ("train", "seen", "test"):
        for _ in range(200):
            ev = corpus.sample_event(rng, lang, split)
            assert ev.lang == lang
            assert levels[ev.text] == ev.level == ALL_EVENTS[ev.event_index][2]
            assert ev.label == corpus.level_to_label(ev.level)


def test_level_to_label():
    assert corpus.level_to_label(2) == "positive"
    assert corpus.level_to_label(1) == "positive"
    assert corpus.level_to_label(0) == "neutral"
    assert corpus.level_to_label(-1) == "negative"
    assert corpus.level_to_label(-2) == "negative"


def test_sentiment_document_answer_matches_level():
    levels = {lang: _sentence_level(lang) for lang in LANGS}
    rng = random.Random(4)
    for _ in range(200):
        lang = rng.choice(LANGS)
        doc = corpus.sentiment_document(rng, lang)
        matched = False
        for template in corpus.TAUGHT_TEMPLATES[lang]:
            prefix, suffix = template.split("[Z]")
            pre, post = prefix.split("[X]")
            for sentence, level in levels[lang].items():
                if doc == pre + sentence + post + ANSWERS[lang][level] + suffix:
                    matched = True
        assert matched, doc


# ----------------------------------------------------------------------------- mappings
@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", ["category", "sentiment"])
@pytest.mark.parametrize("k", [0, 1, 2, 3, 4, 8])
def test_sample_mapping_structure(lang, kind, k):
    rng = random.Random(k)
    cats = _item_category(lang)
    levels = _sentence_level(lang)
    for _ in range(30 if kind == "category" else 8):
        m = corpus.sample_mapping(rng, k, lang, kind=kind)
        assert len(m.demos) == k
        assert len(m.labels) == 3 and len(set(m.labels)) == 3
        assert all(lab in LABEL_WORDS for lab in m.labels)
        assert m.answer in m.labels
        assert all(y in m.labels for _, y in m.demos)
        if k >= 3:
            assert {y for _, y in m.demos} == set(m.labels), "balanced demos show every label"
        if kind == "category" and k <= 8:
            assert m.query not in {x for x, _ in m.demos}, "the query is an item not shown yet"
        if kind == "category":
            classes = {cats[x] for x, _ in m.demos} | {cats[m.query]}
            assert len(classes) <= 3
            for x, y in m.demos:
                # the same category always has the same label, a different one a different label
                assert (cats[x] == cats[m.query]) == (y == m.answer), (m.demos, m.query, m.answer)
        else:
            q_label = corpus.level_to_label(levels[m.query])
            for x, y in m.demos:
                same = corpus.level_to_label(levels[x]) == q_label
                assert same == (y == m.answer), (m.demos, m.query, m.answer)


def test_mapping_label_assignment_is_consistent_over_demos():
    rng = random.Random(5)
    cats = _item_category("en")
    for _ in range(50):
        m = corpus.sample_mapping(rng, 9, "en")
        label_of = {}
        for x, y in m.demos:
            assert label_of.setdefault(cats[x], y) == y
        assert len(label_of) == 3 and len(set(label_of.values())) == 3


def test_unbalanced_mappings_still_valid():
    rng = random.Random(6)
    cats = _item_category("zh")
    for _ in range(50):
        m = corpus.sample_mapping(rng, 5, "zh", balanced=False)
        assert len(m.demos) == 5
        for x, y in m.demos:
            assert (cats[x] == cats[m.query]) == (y == m.answer)


@pytest.mark.parametrize("lang", LANGS)
def test_query_split_test_items_are_heldout(lang):
    heldout = {w for c in range(len(CATEGORY_NAMES)) for w in corpus.category_items(c, lang, "test")}
    train_items = {w for c in range(len(CATEGORY_NAMES)) for w in corpus.category_items(c, lang, "train")}
    assert heldout and not heldout & train_items
    rng = random.Random(9)
    demo_items = set()
    for _ in range(300):
        m = corpus.sample_mapping(rng, 6, lang, query_split="test")
        assert m.query in heldout
        demo_items |= {x for x, _ in m.demos}
    for _ in range(300):
        m = corpus.sample_mapping(rng, 6, lang, query_split="train")
        demo_items |= {x for x, _ in m.demos}
        assert m.query not in heldout
    assert not demo_items & heldout
    # the training stream's mapping documents never mention a held-out item before an arrow
    for _ in range(300):
        doc = corpus.mapping_document(rng, lang)
        for line in doc.split("\n"):
            assert line.split(ARROW)[0] not in heldout, line


def test_sentiment_query_split_test_is_heldout():
    rng = random.Random(10)
    train = {corpus.sample_event(rng, "zh", "train").text for _ in range(3000)}
    for _ in range(30):
        m = corpus.sample_mapping(rng, 3, "zh", query_split="test", kind="sentiment")
        assert m.query not in train


def test_prompt_and_text():
    rng = random.Random(11)
    for k in (0, 1, 5):
        m = corpus.sample_mapping(rng, k, "en")
        assert isinstance(m, ICLTask)
        assert m.prompt().endswith(ARROW)
        assert m.text() == m.prompt() + m.answer
        lines = m.prompt().split("\n")
        assert len(lines) == k + 1
        assert lines[-1] == m.query + ARROW
        for line, (x, y) in zip(lines, m.demos):
            assert line == f"{x}{ARROW}{y}"


@pytest.mark.parametrize("lang", LANGS)
def test_category_arrow_documents_are_true_facts(lang):
    cats, side = _item_category(lang), 0 if lang == "zh" else 1
    rng = random.Random(21)
    items = set()
    for _ in range(200):
        for line in corpus.category_arrow_document(rng, lang).split("\n"):
            item, name = line.split(ARROW)
            assert CATEGORY_NAMES[cats[item]][side] == name, line
            items.add(item)
    heldout = {w for c in range(len(CATEGORY_NAMES)) for w in corpus.category_items(c, lang, "test")}
    assert heldout <= items, "held-out items get their facts in this form too"


def _parse_run_on(doc, phrases, slots):
    """Read a document of run-on sentences back into the {slot: text} of each, phrase by phrase;
    fails if any stretch of it is not one of ``phrases``."""
    patterns = []
    for phrase in phrases:
        pattern = re.escape(phrase)
        for name, regex in slots.items():
            pattern = pattern.replace(re.escape("{%s}" % name), f"(?P<{name}>{regex})")
        patterns.append(re.compile(pattern))
    found, i = [], 0
    while i < len(doc):
        match = next((m for m in (p.match(doc, i) for p in patterns) if m), None)
        assert match, f"no phrasing matches {doc[i:]!r} in {doc!r}"
        found.append(match.groupdict())
        i = match.end()
        i += doc.startswith(("\n", " "), i)
    return found


@pytest.mark.parametrize("lang", LANGS)
def test_translation_and_sum_documents_are_true(lang):
    pairs = {(zh, en) for items in CATEGORIES.values() for zh, en in items}
    rng = random.Random(19)
    shapes = set()
    for _ in range(100):
        doc = corpus.translation_document(rng, lang)
        found = _parse_run_on(doc, world.TRANSLATION_PHRASES[lang], {"zh": r"[\u4e00-\u9fff]+", "en": r"[a-z]+(?: [a-z]+)*"})
        assert found and all((f["zh"], f["en"]) in pairs for f in found), doc
        doc = corpus.sum_document(rng, lang)
        sums = _parse_run_on(doc, world.SUM_PHRASES[lang], {"a": r"\d+", "b": r"\d+", "c": r"\d+"})
        assert sums and all(int(f["a"]) + int(f["b"]) == int(f["c"]) and int(f["a"]) <= 20 and int(f["b"]) <= 20
                            for f in sums), doc
        shapes |= {("\n" in doc, "+" in doc)}
    assert shapes >= {(True, True)}, "the line-shaped facts (dictionary entries, 3+4=7) are written too"


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("fact", corpus.FACTS)
def test_fact_probes_are_what_the_corpus_writes(lang, fact):
    probes = corpus.fact_probes(fact, lang)
    assert len(probes) == (441 if fact == "sum" else sum(map(len, CATEGORIES.values())))
    make = {"category": corpus.category_document, "translation": corpus.translation_document,
            "sum": corpus.sum_document}[fact]
    rng = random.Random(20)
    written = " ".join(make(rng, lang) for _ in range(3000))
    hits = sum((prompt + answer) in written for prompt, answer in probes)
    assert hits >= 0.9 * len(probes), f"only {hits} of {len(probes)} probes are sentences the corpus writes"
    if fact != "sum":
        assert corpus.fact_probes(fact, "zh")[0] == (("苹果是一种", "水果。") if fact == "category" else ("苹果的英文是", "apple。"))
    with pytest.raises(ValueError, match="fact must be one of"):
        corpus.fact_probes("colour", lang)


# ----------------------------------------------------------------------------- instructions
@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("task", INSTRUCTION_TASKS)
def test_instruction_example_keys(lang, task):
    rng = random.Random(12)
    for _ in range(10):
        r = corpus.instruction_example(rng, lang, task)
        assert set(r) == {"instruction", "input", "output"}
        assert all(isinstance(v, str) for v in r.values())
        assert r["instruction"] and r["output"]


@pytest.mark.parametrize("lang", LANGS)
def test_instruction_add_is_correct(lang):
    rng = random.Random(13)
    for _ in range(50):
        r = corpus.instruction_example(rng, lang, "add")
        a, b = map(int, re.findall(r"\d+", r["instruction"]))
        assert int(r["output"]) == a + b


@pytest.mark.parametrize("lang", LANGS)
def test_instruction_reverse_and_translate(lang):
    rng = random.Random(14)
    pairs = {(zh, en) for items in CATEGORIES.values() for zh, en in items}
    for _ in range(30):
        r = corpus.instruction_example(rng, lang, "reverse")
        assert r["output"] == r["input"][::-1]
        r = corpus.instruction_example(rng, lang, "translate")
        pair = (r["input"], r["output"]) if lang == "zh" else (r["output"], r["input"])
        assert pair in pairs


def test_instruction_random_task_and_lang():
    rng = random.Random(15)
    seen = set()
    for _ in range(200):
        r = corpus.instruction_example(rng)
        assert set(r) == {"instruction", "input", "output"}
        seen.add(r["instruction"][:4])
    assert len(seen) > 6


# ----------------------------------------------------------------------------- pass key
@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("n_chars", [50, 400, 2000])
@pytest.mark.parametrize("depth", [0.0, 0.5, 1.0])
def test_passkey_sample(lang, n_chars, depth):
    rng = random.Random(16)
    prompt, key = corpus.passkey_sample(rng, n_chars, depth, lang)
    assert re.fullmatch(r"\d{5}", key)
    assert key in prompt
    longest_filler = max(map(len, corpus.FILLER[lang]))
    assert n_chars <= len(prompt) <= n_chars + longest_filler
    pos = prompt.index(key) / len(prompt)
    if n_chars >= 2000:
        assert abs(pos - depth) < 0.1, (pos, depth)


@pytest.mark.parametrize("lang, cue, needle, question", [
    ("zh", "是", "密码是{}。记住它。", "密码是"),
    ("en", " is ", "The pass key is {}. Remember it. ", "What is the pass key? The pass key is ")])
def test_passkey_filler_never_holds_the_cue_word(lang, cue, needle, question):
    rng = random.Random(18)
    for depth in (0.0, 0.5, 1.0):
        prompt, key = corpus.passkey_sample(rng, 400, depth, lang)
        assert prompt.endswith(question) and needle.format(key) in prompt
        filler = prompt[:-len(question)].replace(needle.format(key), "")
        assert len(filler) > 300 and cue not in filler, filler     # the cue points at the key only
    assert corpus.PASSKEY_FILLER[lang] and set(corpus.PASSKEY_FILLER[lang]) <= set(corpus.FILLER[lang])


# ----------------------------------------------------------------------------- alphabet
def test_every_generated_character_is_in_the_alphabet():
    alpha = set(corpus.alphabet())
    rng = random.Random(17)
    texts = [corpus.pretraining_document(rng) for _ in range(400)]
    for lang in LANGS:
        texts += [corpus.sentiment_document(rng, lang) for _ in range(200)]
        texts += [corpus.category_document(rng, lang) for _ in range(200)]
        texts += [corpus.mapping_document(rng, lang) for _ in range(100)]
        texts += [corpus.sample_mapping(rng, 4, lang, "test", kind=kind).text()
                  for kind in ("category", "sentiment") for _ in range(20)]
        texts += [corpus.sample_event(rng, lang, "test").text for _ in range(200)]
        texts += [v for task in INSTRUCTION_TASKS for _ in range(30)
                  for v in corpus.instruction_example(rng, lang, task).values()]
        texts += list(corpus.passkey_sample(rng, 500, 0.3, lang))
        texts += list(ANSWERS[lang].values())
    texts += LABELS
    missing = set("".join(texts)) - alpha
    assert not missing, f"characters outside corpus.alphabet(): {sorted(missing)}"


# ----------------------------------------------------------------------------- bad inputs
def test_bad_inputs():
    rng = random.Random(0)
    with pytest.raises(ValueError):
        corpus.sample_event(rng, "fr")
    with pytest.raises(ValueError):
        corpus.sample_event(rng, "zh", "dev")
    with pytest.raises(ValueError):
        corpus.sample_mapping(rng, 3, "fr")
    with pytest.raises(ValueError):
        corpus.sample_mapping(rng, -1, "zh")
    with pytest.raises(ValueError):
        corpus.sample_mapping(rng, 3, "zh", kind="colour")
    with pytest.raises(ValueError, match="query_split"):
        corpus.sample_mapping(rng, 3, "zh", query_split="dev", kind="sentiment")
    with pytest.raises(ValueError, match="split must be one of"):
        corpus.sample_event(rng, "zh", "unseen")
    with pytest.raises(ValueError):
        corpus.sample_mapping(rng, 3, "zh", query_split="dev", kind="category")
    with pytest.raises(ValueError):
        corpus.instruction_example(rng, "fr")
    with pytest.raises(ValueError):
        corpus.instruction_example(rng, "en", "poetry")
    with pytest.raises(ValueError):
        corpus.passkey_sample(rng, 100, 1.5)
    with pytest.raises(ValueError):
        corpus.passkey_sample(rng, 100, -0.1)
    with pytest.raises(ValueError):
        corpus.passkey_sample(rng, 100, 0.5, "fr")
    with pytest.raises(ValueError):
        corpus.sentiment_document(rng, "fr")


def test_category_group_is_one_category_without_its_name():
    rng = random.Random(0)
    for _ in range(50):
        lang = rng.choice(corpus.LANGS)
        text = corpus.category_group(rng, lang)
        items = text.rstrip("。.").split("、" if lang == "zh" else ", ")
        cats = [c for c in range(len(corpus.CATEGORY_NAMES)) if set(items) <= set(corpus.category_items(c, lang, "all"))]
        assert len(cats) == 1 and 3 <= len(items) <= 6 and len(set(items)) == len(items)
        name = corpus.CATEGORY_NAMES[cats[0]][0 if lang == "zh" else 1]
        assert name not in text.split("、" if lang == "zh" else ", ")


def test_the_alphabet_is_read_off_the_generators_phrasings(monkeypatch):
    """A new wording in the instruction table brings its characters into the alphabet: nothing
    is hard-coded a second time, so a new task cannot silently fall back to bytes."""
    assert "鹦" not in corpus.alphabet()
    monkeypatch.setitem(corpus.INSTRUCTIONS, "reverse", ("把这个词倒过来写给鹦看。", "Write this word backwards."))
    assert "鹦" in corpus.alphabet()
    assert "{" not in corpus.alphabet()                      # placeholders are not characters the corpus writes


def test_instruction_phrasings_say_one_content_in_every_wording():
    for task in corpus.INSTRUCTION_TASKS:
        for lang in corpus.LANGS:
            wordings = corpus.INSTRUCTION_PHRASINGS[task][lang]
            assert wordings[0] == corpus.INSTRUCTIONS[task][lang == "en"] and len(set(wordings)) == len(wordings)
            said = []
            for phrasing in list(range(len(wordings))) + ["held out"]:
                r = corpus.instruction_example(random.Random(5), lang, task, phrasing)
                said.append(r)
            assert len({(r["input"], r["output"]) for r in said if task != "list"}) <= 1       # one content
            assert said[-1] == said[-2]                                                        # "held out" is the last
            rng = random.Random(0)
            trained = {corpus.instruction_example(rng, lang, task, "train")["instruction"] for _ in range(60)}
            assert len(trained) > 1
            if "{" not in wordings[-1]:                  # list and add fill numbers into their wordings
                assert wordings[-1] not in trained and trained <= set(wordings[:-1])
    assert corpus.instruction_example(random.Random(1)) == corpus.instruction_example(random.Random(1), phrasing=0)
    for bad in (4, -1, True, "seen", 1.0):
        with pytest.raises(ValueError, match="phrasing must be one of"):
            corpus.instruction_example(random.Random(0), "en", "add", bad)


def test_the_category_words_are_whole_tokens():
    from llmtap.pretrain import course_tokenizer
    tok = course_tokenizer()
    assert all(re.fullmatch(r"[A-Za-z]{2,}", w) for w in corpus.words())
    for (_, name), items in corpus.CATEGORIES.items():
        for en in [name] + [en for _, en in items]:
            pieces = [tok.id_to_piece(i) for i in tok.encode(en)]
            assert [p for p in pieces if p != " "] == en.split(), (en, pieces)
    # everything else in English is spelled letter by letter
    assert len(tok.encode("I lost my wallet.")) == len("I lost my wallet.")
