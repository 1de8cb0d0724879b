"""The course corpus: seeded generators that write documents from the word lists of ``world.py``.

The course model learns everything it knows from these generators:

* event -> feeling sentences, ``昨天我在公园里丢了钱包。我感到糟糕。`` / ``... I feel terrible.``;
  the events are fixed ones and composed ones (an action done to an object), and a fifth of the
  composed events never appear in pretraining: the honest test of prompt classification;
* category facts, lists and unnamed groups, ``苹果是一种水果。`` / ``fruit: lemon, apple, pear.`` / ``lemon, apple, pear.``,
  and translations, ``苹果的英文是apple。`` / ``The Chinese for apple is 苹果.``;
* in-context mapping sequences, ``苹果→乙`` lines (or event sentences) whose labels are drawn
  afresh for each sequence, so the label of a query can only be copied from the demonstrations;
* repeats, a random string written twice, which teach the model to copy from its context;
* instruction / response pairs for a few simple tasks (for supervised fine-tuning);
* long filler text with a hidden pass key (for the context-length lessons).

Every generator takes a ``random.Random`` so that a seed fixes the data.
"""
from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass

from .icl import ICL_TEMPLATE, ICLTask
from .prompting import Template
from .world import (ACTIONS, ANSWERS, CATEGORIES, CATEGORY_NAMES, EVENTS, EXTRA_CHARACTERS, FACT_PHRASES, FILLER, INSTRUCTIONS,
                    INSTRUCTION_PHRASINGS,
                    LABEL_NAMES_ZH, LABEL_WORDS, LABELS, LANGS, LIST_SEPARATOR, OBJECTS, PASSKEY_NEEDLE, PASSKEY_QUESTION, PLACES,
                    TAUGHT_TEMPLATES, SUM_PHRASES, TIMES, TRANSLATION_PHRASES)


# ----------------------------------------------------------------------------- sentiment
def level_to_label(level: int) -> str:
    return LABELS[(level > 0) - (level < 0) + 1]


def sentiment_verbalizer(lang: str) -> dict:
    """label -> answers, e.g. {'negative': ['不好', '糟糕'], 'neutral': ['一般'], 'positive': ['太好了', '好']}."""
    _check_lang(lang)
    return {y: [z for level, z in ANSWERS[lang].items() if level_to_label(level) == y] for y in LABELS}


def _composed_events() -> list[tuple[str, str, int]]:
    """Every (action, object) event of world.ACTIONS x world.OBJECTS as (zh, en, level), with
    level = polarity * (1 + valuable); a pair that reads like a fixed event is left out."""
    fixed = {text for e in EVENTS for text in e[:2]}
    events = []
    for zh, en, polarity in ACTIONS:
        for ozh, oen, valuable in OBJECTS:
            event = (zh.format(o=ozh), en.format(o=oen), polarity * (1 + valuable))
            if not set(event[:2]) & fixed:
                events.append(event)
    return events


# The course's events: the fixed ones of world.EVENTS first, then the composed ones.
ALL_EVENTS = list(EVENTS) + _composed_events()
SPLITS = ("train", "seen", "test")


def is_unseen_event(e: int) -> bool:
    """True for the fixed fifth of the composed events that pretraining never writes, in any
    sentence, mapping or instruction: the "test" split of the sentiment lessons."""
    return e >= len(EVENTS) and zlib.crc32(ALL_EVENTS[e][1].encode()) % 5 == 0


@dataclass(frozen=True)
class Event:
    """One event sentence and its level; ``text`` is a complete sentence such as '昨天我在家里丢了钱包。'."""
    text: str
    level: int
    lang: str
    event_index: int

    @property
    def label(self) -> str:
        return level_to_label(self.level)


def _is_heldout(*key) -> bool:
    # A fixed 20% of the (time, place, event) combinations of the seen events never appear in
    # pretraining: the "seen" split (a known event in a new setting).
    return zlib.crc32("|".join(map(str, key)).encode()) % 5 == 0


def event_sentence(e: int, t: int | None, p: int | None, lang: str) -> str:
    zh, en, _ = ALL_EVENTS[e]
    if lang == "zh":
        time = TIMES[t][0] if t is not None else ""
        place = PLACES[p][0] if p is not None else ""
        return f"{time}我{place}{zh}。"
    if t is None and p is None:
        return f"I {en}."
    time = f"{TIMES[t][1]}, " if t is not None else ""
    place = f" {PLACES[p][1]}" if p is not None else ""
    return f"{time}I {en}{place}."


def sample_event(rng: random.Random, lang: str, split: str = "train") -> Event:
    """An event sentence of one split:

    * ``"train"``: what pretraining writes, seen events in most (time, place) settings;
    * ``"seen"``: seen events in the (time, place) settings pretraining leaves out (memory);
    * ``"test"``: composed events pretraining never writes at all (generalisation).
    """
    _check_lang(lang)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    events = _UNSEEN_EVENTS if split == "test" else _SEEN_EVENTS
    while True:
        e = rng.choice(events)
        if split == "train" and rng.random() < 0.1:      # the bare sentence, as in the seed's example
            return Event(event_sentence(e, None, None, lang), ALL_EVENTS[e][2], lang, e)
        t, p = rng.randrange(len(TIMES)), rng.randrange(len(PLACES))
        if split == "test" or _is_heldout(e, t, p) == (split == "seen"):
            return Event(event_sentence(e, t, p, lang), ALL_EVENTS[e][2], lang, e)


_UNSEEN_EVENTS = [e for e in range(len(ALL_EVENTS)) if is_unseen_event(e)]
_SEEN_EVENTS = [e for e in range(len(ALL_EVENTS)) if not is_unseen_event(e)]


def sentiment_document(rng: random.Random, lang: str) -> str:
    event = sample_event(rng, lang, "train")
    template = Template(rng.choice(TAUGHT_TEMPLATES[lang]))
    return template.fill(event.text, ANSWERS[lang][event.level])


# ----------------------------------------------------------------------------- categories
# The last two items of every category never appear in mapping sequences: in-context learning
# on them needs what the model learnt about them from the category facts, lists and groups.
N_HELDOUT_ITEMS = 2


def category_items(category: int, lang: str, split: str = "train") -> list[str]:
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    items = CATEGORIES[CATEGORY_NAMES[category]]
    items = items[:-N_HELDOUT_ITEMS] if split == "train" else items[-N_HELDOUT_ITEMS:] if split == "test" else items
    return [it[0] if lang == "zh" else it[1] for it in items]


def category_fact(rng: random.Random, lang: str) -> str:
    c = rng.randrange(len(CATEGORY_NAMES))
    item = rng.choice(category_items(c, lang, "all"))
    name = CATEGORY_NAMES[c][0] if lang == "zh" else CATEGORY_NAMES[c][1]
    return rng.choice(FACT_PHRASES[lang]).format(item=item, name=name)


def category_list(rng: random.Random, lang: str) -> str:
    """A category and some of its members, e.g. '水果：柠檬、苹果、梨。' / 'fruit: lemon, apple, pear.'."""
    c = rng.randrange(len(CATEGORY_NAMES))
    items = rng.sample(category_items(c, lang, "all"), rng.randint(3, 6))
    if lang == "zh":
        return f"{CATEGORY_NAMES[c][0]}：{'、'.join(items)}。"
    return f"{CATEGORY_NAMES[c][1]}: {', '.join(items)}."


def category_group(rng: random.Random, lang: str) -> str:
    """Members of one category with no name given, e.g. '柠檬、苹果、梨。' / 'lemon, apple, pear.'."""
    c = rng.randrange(len(CATEGORY_NAMES))
    items = rng.sample(category_items(c, lang, "all"), rng.randint(3, 6))
    return ("、".join(items) + "。") if lang == "zh" else (", ".join(items) + ".")


def category_document(rng: random.Random, lang: str) -> str:
    """A few category facts, lists or unnamed groups in a row, e.g. '芒果是一种水果。动物：狐狸、猫、马。'.

    Lists and groups put every item, held-out ones included, next to others of its category.
    In an unnamed group, predicting the next member requires knowing the category of the ones
    before, read off the words themselves: the very feature in-context mapping needs to match
    a query word with the demonstration of its category."""
    parts = [rng.choice([category_fact, category_list, category_group])(rng, lang) for _ in range(rng.randint(2, 5))]
    return ("" if lang == "zh" else " ").join(parts)


def category_arrow_document(rng: random.Random, lang: str) -> str:
    """Category facts written as arrow lines, e.g. '菠萝→水果' / 'pineapple→fruit', every item
    included. A mapping sequence asks for a word's category right at the arrow; facts in this
    form put what the model knows of every word's category there, held-out words included
    (they still never appear in a mapping sequence, whose labels are random)."""
    lines = []
    for _ in range(rng.randint(3, 8)):
        c = rng.randrange(len(CATEGORY_NAMES))
        item = rng.choice(category_items(c, lang, "all"))
        lines.append(ICL_TEMPLATE.fill(item, CATEGORY_NAMES[c][0 if lang == "zh" else 1]))
    return "\n".join(lines)


def translation_document(rng: random.Random, lang: str) -> str:
    """A few translations in a row, e.g. '苹果的英文是apple。梨的英文是pear。': they tie each word to its
    other-language twin, so what the model knows of a word in one language can carry to the other."""
    parts = []
    for _ in range(rng.randint(2, 5)):
        zh, en = rng.choice(CATEGORIES[rng.choice(CATEGORY_NAMES)])
        parts.append(rng.choice(TRANSLATION_PHRASES[lang]).format(zh=zh, en=en))
    return _run_on(parts, lang)


def sum_document(rng: random.Random, lang: str) -> str:
    """A few sums of two numbers from 0 to 20, e.g. '3加4等于7。12加0等于12。': the facts the "add"
    instruction asks for, known before any fine-tuning."""
    parts = []
    for _ in range(rng.randint(2, 5)):
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        parts.append(rng.choice(SUM_PHRASES[lang]).format(a=a, b=b, c=a + b))
    return _run_on(parts, lang)


def _run_on(parts: list[str], lang: str) -> str:
    # sentences run on as prose ('' in Chinese, ' ' in English); a part without a full stop (a
    # dictionary entry, '3+4=7') ends its line instead
    return "".join(p + ("\n" if not p.endswith(("。", ".")) else "" if lang == "zh" else " ") for p in parts).rstrip()


FACTS = ("category", "translation", "sum")


def fact_probes(fact: str, lang: str) -> list[tuple[str, str]]:
    """(prompt, answer) for every item: the first phrasing of a fact cut before its answer,
    e.g. ('苹果是一种', '水果。') or ('The Chinese for apple is ', '苹果.'). The answer ends with the
    sentence's full stop, so a model that knows the fact also knows where it ends."""
    _check_lang(lang)
    if fact not in FACTS:
        raise ValueError(f"fact must be one of {FACTS}, got {fact!r}")
    if fact == "sum":
        before, after = SUM_PHRASES[lang][0].split("{c}")
        return [(before.format(a=a, b=b), f"{a + b}{after}") for a in range(21) for b in range(21)]
    probes = []
    for (cz, ce), items in CATEGORIES.items():
        for zh, en in items:
            if fact == "category":
                phrase, fill = FACT_PHRASES[lang][0], {"item": zh if lang == "zh" else en, "name": "\0"}
            else:
                phrase, fill = TRANSLATION_PHRASES[lang][0], {"zh": zh, "en": "\0"} if lang == "zh" else {"zh": "\0", "en": en}
            prompt, end = phrase.format(**fill).split("\0")
            answer = (cz if lang == "zh" else ce) if fact == "category" else (en if lang == "zh" else zh)
            probes.append((prompt, answer + end))
    return probes


# ----------------------------------------------------------------------------- in-context mappings
# Mapping sequences are written in llmtap.icl's format, x→y lines (icl.ICL_TEMPLATE).
MAPPING_POOL = 8
def sample_mapping(rng: random.Random, k: int, lang: str, query_split: str = "train",
                   balanced: bool = True, kind: str = "category") -> ICLTask:
    """A fresh random mapping with k demonstrations and one query, as an ``llmtap.icl.ICLTask``.

    ``kind="category"``: items are words, the class is their category (3 of the 8 categories).
    ``kind="sentiment"``: items are bare event sentences ('I lost my pen.'), the class is their
    polarity; ``query_split="test"`` asks about an event pretraining never wrote.
    ``balanced``: demonstrations cycle through the classes (in a shuffled order), so k >= 3
    shows every class at least once; otherwise classes are drawn independently.
    """
    _check_lang(lang)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if query_split not in ("train", "test"):
        raise ValueError(f"query_split must be 'train' or 'test', got {query_split!r}")
    labels = rng.sample(LABEL_WORDS, 3)
    if kind == "category":
        classes = rng.sample(range(len(CATEGORY_NAMES)), 3)
        # the demonstrations of a class come from MAPPING_POOL of its items, drawn afresh for each
        # sequence: with all 18 to choose from, an item would rarely come back within a sequence,
        # and such repeats are how the model first finds its copying machinery (see below)
        pools = [rng.sample(category_items(c, lang, "train"), MAPPING_POOL) for c in classes]
        candidates = lambda c, split: pools[c] if split == "train" else category_items(classes[c], lang, split)
    elif kind == "sentiment":
        candidates = lambda c, split: _bare_events_of_label(lang, LABELS[c], split)
    else:
        raise ValueError(f"kind must be 'category' or 'sentiment', got {kind!r}")
    order = [c for _ in range(k // 3 + 1) for c in rng.sample(range(3), 3)][:k] if balanced \
        else [rng.randrange(3) for _ in range(k)]
    rng.shuffle(order)
    demos = [(rng.choice(candidates(c, "train")), labels[c]) for c in order]
    q = rng.randrange(3)
    # demonstrations may repeat an item: a repeat is answered by copying its earlier line, the
    # easiest case, which is how the model finds its copying machinery at all (without repeats,
    # the course model never learns in context). The query prefers an item not shown yet.
    shown = {x for x, _ in demos}
    options = candidates(q, query_split) if kind == "sentiment" or query_split == "test" \
        else category_items(classes[q], lang, "train")      # the query: any trained item of its class
    query = rng.choice([x for x in options if x not in shown] or options)
    return ICLTask(demos, query, labels[q], labels)


def _bare_events_of_label(lang, label, split):
    # bare sentences, without time or place: k = 4 demonstrations and a query fit in 256 tokens
    events = _UNSEEN_EVENTS if split == "test" else _SEEN_EVENTS
    return [event_sentence(e, None, None, lang) for e in events if level_to_label(ALL_EVENTS[e][2]) == label]


def mapping_document(rng: random.Random, lang: str) -> str:
    """A mapping sequence: of words to their category's label (k = 4..16), or, one time in
    three, of event sentences to their polarity's label (k = 3..8, sentences are longer)."""
    balanced = rng.random() < 0.5
    if rng.random() < 1 / 3:
        return sample_mapping(rng, rng.randint(3, 8), lang, "train", balanced, kind="sentiment").text()
    return sample_mapping(rng, rng.randint(4, 16), lang, "train", balanced).text()


def repeat_document(rng: random.Random, lang: str) -> str:
    """A random string of label words, then the same string again: the simplest thing to learn
    to copy, which gets the copying machinery (induction heads) of the model going early."""
    words = [rng.choice(LABEL_WORDS) for _ in range(rng.randint(8, 30))]
    return "".join(words) + "\n" + "".join(words)


# ----------------------------------------------------------------------------- instructions
INSTRUCTION_TASKS = tuple(INSTRUCTIONS)


PHRASINGS = ("train", "held out")


def instruction_example(rng: random.Random, lang: str | None = None, task: str | None = None,
                        phrasing: int | str = 0) -> dict:
    """One {"instruction", "input", "output"} record from a handful of simple tasks.

    ``phrasing`` picks the instruction's wording from ``INSTRUCTION_PHRASINGS``: an index (0, the
    default, is ``INSTRUCTIONS``' own), "train" (a random one of all but the last) or "held out"
    (the last, which SFT never trains on)."""
    lang = lang or rng.choice(LANGS)
    _check_lang(lang)
    task = task or rng.choice(INSTRUCTION_TASKS)
    if task not in INSTRUCTION_TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {INSTRUCTION_TASKS}")
    wordings = INSTRUCTION_PHRASINGS[task][lang]
    if phrasing not in PHRASINGS and not (isinstance(phrasing, int) and not isinstance(phrasing, bool)
                                          and 0 <= phrasing < len(wordings)):
        raise ValueError(f"phrasing must be one of {PHRASINGS} or an index 0..{len(wordings) - 1}, got {phrasing!r}")
    zh = lang == "zh"
    side = 0 if zh else 1                               # the Chinese or the English word of a pair
    fill = {}                                           # the {n}, {name}, {a}, {b} of the wording
    if task == "sentiment":
        e = sample_event(rng, lang, "train")
        x, y = e.text, LABEL_NAMES_ZH[e.label] if zh else e.label
    elif task == "add":
        fill = {"a": rng.randint(0, 20), "b": rng.randint(0, 20)}
        x, y = "", str(fill["a"] + fill["b"])
    else:
        c = rng.randrange(len(CATEGORY_NAMES))
        if task == "category":
            item = rng.choice(CATEGORIES[CATEGORY_NAMES[c]])
            x, y = item[side], CATEGORY_NAMES[c][side]
        elif task == "translate":
            z, e = rng.choice(CATEGORIES[CATEGORY_NAMES[c]])
            x, y = (z, e) if zh else (e, z)
        elif task == "list":
            fill = {"n": rng.randint(2, 4), "name": CATEGORY_NAMES[c][side]}
            items = [it[side] for it in rng.sample(CATEGORIES[CATEGORY_NAMES[c]], fill["n"])]
            x, y = "", LIST_SEPARATOR[lang].join(items)
        else:                                           # task == "reverse"
            x = rng.choice(CATEGORIES[CATEGORY_NAMES[c]])[side]
            y = x[::-1]
    # the wording is drawn after the content, so that one content can be said in every phrasing
    wording = {"train": lambda: rng.choice(wordings[:-1]), "held out": lambda: wordings[-1]}.get(
        phrasing, lambda: wordings[phrasing])()
    return _record(wording.format(**fill), x, y)


def _record(instruction, input, output):
    return {"instruction": instruction, "input": input, "output": output}


# ----------------------------------------------------------------------------- long text, pass key
# the pass-key filler leaves out sentences holding the word that precedes the key ("是" / " is "):
# with it in the filler, the one cue that points at the key would point at the filler too
PASSKEY_FILLER = {"zh": [s for s in FILLER["zh"] if "是" not in s], "en": [s for s in FILLER["en"] if " is " not in s]}


def passkey_sample(rng: random.Random, n_chars: int, depth: float, lang: str = "en") -> tuple[str, str]:
    """Filler text of about ``n_chars`` characters with a 5-digit pass key hidden at ``depth``
    (0 = start, 1 = end), followed by the question. Returns (prompt, answer)."""
    _check_lang(lang)
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    key = str(rng.randint(10000, 99999))
    needle, question = PASSKEY_NEEDLE[lang].format(key=key), PASSKEY_QUESTION[lang]
    budget = max(0, n_chars - len(needle) - len(question))
    filler, n = [], 0
    while n < budget:
        s = rng.choice(PASSKEY_FILLER[lang])
        filler.append(s)
        n += len(s)
    cut = round(depth * len(filler))
    return "".join(filler[:cut]) + needle + "".join(filler[cut:]) + question, key


# ----------------------------------------------------------------------------- pretraining stream
# Document mixture of the course model's pretraining: (generator, weight).
MIXTURE = (("sentiment", 0.14), ("category", 0.18), ("category arrows", 0.05), ("translation", 0.09), ("sum", 0.06),
           ("mapping", 0.30), ("repeat", 0.18))
_GENERATORS = {"sentiment": sentiment_document, "category": category_document,
               "category arrows": category_arrow_document, "translation": translation_document,
               "sum": sum_document, "mapping": mapping_document, "repeat": repeat_document}


def pretraining_document(rng: random.Random, mixture=MIXTURE) -> str:
    kinds, weights = zip(*mixture)
    kind = rng.choices(kinds, weights)[0]
    return _GENERATORS[kind](rng, rng.choice(LANGS))


def alphabet() -> str:
    """Every character the generators can emit (the tokenizer's vocabulary is built from it),
    collected from the word lists and phrasings they write with, plus ``EXTRA_CHARACTERS``."""
    parts = [a for e in ALL_EVENTS for a in e[:2]] + [a for t in TIMES + PLACES for a in t]
    parts += ["我", "I", ". ", ", "]                                    # event_sentence's own words
    parts += [w for lang in ANSWERS.values() for w in lang.values()]
    parts += [t for ts in TAUGHT_TEMPLATES.values() for t in ts]
    for (cz, ce), items in CATEGORIES.items():
        parts += [cz, ce] + [w for it in items for w in it]
    parts += [p for ps in list(FACT_PHRASES.values()) + list(TRANSLATION_PHRASES.values()) for p in ps] + ["：", ": "]
    parts += [p for ps in SUM_PHRASES.values() for p in ps] + list(LIST_SEPARATOR.values())
    parts += LABEL_WORDS + [ICL_TEMPLATE.text, "\n"]
    parts += [s for f in FILLER.values() for s in f] + list(PASSKEY_NEEDLE.values()) + list(PASSKEY_QUESTION.values())
    parts += [p for ps in INSTRUCTIONS.values() for p in ps] + list(LABEL_NAMES_ZH.values())
    parts += [p for by_lang in INSTRUCTION_PHRASINGS.values() for ps in by_lang.values() for p in ps]
    parts += ["0123456789", EXTRA_CHARACTERS]
    text = re.sub(r"\{\w+\}", "", "".join(parts))                    # drop the {placeholders}
    return "".join(sorted(set(text)))


def words() -> list[str]:
    """The English words that are whole tokens: the names of the categories and of their members
    ('fruit', 'apple', 'police', 'officer'). The rest of English is spelled letter by letter."""
    names = [name for (_, name) in CATEGORIES] + [en for items in CATEGORIES.values() for _, en in items]
    return sorted({w for name in names for w in name.split() if len(w) > 1})


def _check_lang(lang):
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}, got {lang!r}")
