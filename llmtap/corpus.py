"""A small bilingual world, generated from seeded word lists (all written for this course).

The course model learns everything it knows from these generators:

* event -> feeling sentences, ``昨天我在公园里丢了钱包。我感到糟糕。`` / ``... I feel terrible.``,
  with some (time, place, event) combinations held out for testing prompt classification;
* category facts, lists and unnamed groups, ``苹果是一种水果。`` / ``fruit: lemon, apple, pear.`` / ``lemon, apple, pear.``;
* in-context mapping sequences, ``苹果→乙`` lines whose labels are drawn afresh for each
  sequence, so the label of a query can only be copied from the demonstrations above it;
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

LANGS = ("zh", "en")

# ----------------------------------------------------------------------------- sentiment
# (zh, en, level): level +2 very good ... -2 very bad. The answer space Z of the seed has one
# word per level; the verbalizer maps levels to three labels.
EVENTS = [
    ("中了彩票", "won the lottery", 2),
    ("考试得了满分", "got full marks on the exam", 2),
    ("收到了理想大学的录取通知", "got into my dream university", 2),
    ("升职加薪了", "got a promotion and a raise", 2),
    ("找到了失散多年的老朋友", "found a long-lost friend", 2),
    ("赢得了比赛的冠军", "won the championship", 2),
    ("收到了一只可爱的小狗", "was given a lovely puppy", 2),
    ("实现了多年的梦想", "made a long dream come true", 2),
    ("收到了一份小礼物", "received a small gift", 1),
    ("吃到了好吃的面条", "ate some tasty noodles", 1),
    ("和朋友聊得很开心", "had a nice chat with a friend", 1),
    ("看到了一道彩虹", "saw a rainbow", 1),
    ("得到了老师的表扬", "was praised by the teacher", 1),
    ("找到了丢失的钥匙", "found my lost keys", 1),
    ("喝到了一杯热咖啡", "had a cup of hot coffee", 1),
    ("顺利完成了作业", "finished my homework on time", 1),
    ("吃了午饭", "ate lunch", 0),
    ("看了天气预报", "checked the weather forecast", 0),
    ("买了一瓶水", "bought a bottle of water", 0),
    ("坐下来休息了一会儿", "sat down for a while", 0),
    ("写了一张购物清单", "wrote a shopping list", 0),
    ("把衣服叠好了", "folded the clothes", 0),
    ("看了一眼手表", "looked at my watch", 0),
    ("关上了窗户", "closed the window", 0),
    ("不小心错过了公共汽车", "missed the bus by accident", -1),
    ("把咖啡洒在了衣服上", "spilled coffee on my shirt", -1),
    ("忘记带雨伞了", "forgot my umbrella", -1),
    ("排了很久的队", "waited in a long line", -1),
    ("手机没电了", "ran out of phone battery", -1),
    ("被雨淋湿了", "got soaked in the rain", -1),
    ("弄丢了一支笔", "lost a pen", -1),
    ("等了很久的电梯", "waited ages for the lift", -1),
    ("丢了钱包", "lost my wallet", -2),
    ("摔断了腿", "broke my leg", -2),
    ("考试不及格", "failed the exam", -2),
    ("被公司解雇了", "got fired from my job", -2),
    ("和最好的朋友大吵了一架", "had a bad fight with my best friend", -2),
    ("家里被小偷偷了", "had my home robbed", -2),
    ("生了一场大病", "fell seriously ill", -2),
    ("错过了亲人的婚礼", "missed my sister's wedding", -2),
]
TIMES = [("昨天", "Yesterday"), ("今天早上", "This morning"), ("上周末", "Last weekend"),
         ("刚才", "Just now"), ("周一", "On Monday"), ("晚上", "In the evening"),
         ("去年夏天", "Last summer"), ("中午", "At noon"), ("前天", "The day before yesterday"),
         ("今天下午", "This afternoon")]
PLACES = [("在公园里", "in the park"), ("在学校", "at school"), ("在家里", "at home"),
          ("在超市", "at the supermarket"), ("在火车站", "at the station"),
          ("在办公室", "at the office"), ("在餐厅", "in a restaurant"),
          ("在图书馆", "in the library"), ("在海边", "at the beach"), ("在街上", "on the street")]

# The answer space Z of LLM-TAP 5.1, one answer per level, and the verbalizer to three labels.
ANSWERS = {"zh": {2: "太好了", 1: "好", 0: "一般", -1: "不好", -2: "糟糕"},
           "en": {2: "great", 1: "good", 0: "okay", -1: "bad", -2: "terrible"}}
LABELS = ("negative", "neutral", "positive")


def level_to_label(level: int) -> str:
    return LABELS[(level > 0) - (level < 0) + 1]


def sentiment_verbalizer(lang: str) -> dict:
    """label -> answers, e.g. {'negative': ['不好', '糟糕'], 'neutral': ['一般'], 'positive': ['太好了', '好']}."""
    _check_lang(lang)
    return {y: [z for level, z in ANSWERS[lang].items() if level_to_label(level) == y] for y in LABELS}


# The templates the corpus teaches: [X] is the event sentence, [Z] the answer slot.
TAUGHT_TEMPLATES = {"zh": ["[X]我感到[Z]。", "[X]我觉得[Z]。"],
                    "en": ["[X] I feel [Z].", "[X] It made me feel [Z]."]}


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
    # A fixed 20% of the (time, place, event) combinations never appear in pretraining.
    return zlib.crc32("|".join(map(str, key)).encode()) % 5 == 0


def event_sentence(e: int, t: int | None, p: int | None, lang: str) -> str:
    zh, en, _ = EVENTS[e]
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
    """An event sentence from the train or the held-out ("test") combinations."""
    _check_lang(lang)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    while True:
        e = rng.randrange(len(EVENTS))
        if split == "train" and rng.random() < 0.1:      # the bare sentence, as in the seed's example
            return Event(event_sentence(e, None, None, lang), EVENTS[e][2], lang, e)
        t, p = rng.randrange(len(TIMES)), rng.randrange(len(PLACES))
        if _is_heldout(e, t, p) == (split == "test"):
            return Event(event_sentence(e, t, p, lang), EVENTS[e][2], lang, e)


def sentiment_document(rng: random.Random, lang: str) -> str:
    event = sample_event(rng, lang, "train")
    template = Template(rng.choice(TAUGHT_TEMPLATES[lang]))
    return template.fill(event.text, ANSWERS[lang][event.level])


# ----------------------------------------------------------------------------- categories
CATEGORIES = {
    ("水果", "fruit"): [("苹果", "apple"), ("香蕉", "banana"), ("橙子", "orange"), ("葡萄", "grape"),
                       ("西瓜", "watermelon"), ("草莓", "strawberry"), ("梨", "pear"), ("桃子", "peach"),
                       ("樱桃", "cherry"), ("芒果", "mango"), ("柠檬", "lemon"), ("菠萝", "pineapple")],
    ("动物", "animal"): [("老虎", "tiger"), ("狮子", "lion"), ("猫", "cat"), ("狗", "dog"),
                        ("兔子", "rabbit"), ("大象", "elephant"), ("熊猫", "panda"), ("猴子", "monkey"),
                        ("马", "horse"), ("牛", "cow"), ("羊", "sheep"), ("狐狸", "fox")],
    ("交通工具", "vehicle"): [("汽车", "car"), ("火车", "train"), ("飞机", "plane"), ("轮船", "ship"),
                          ("自行车", "bicycle"), ("公共汽车", "bus"), ("地铁", "subway"), ("出租车", "taxi"),
                          ("摩托车", "motorbike"), ("卡车", "truck"), ("电车", "tram"), ("直升机", "helicopter")],
    ("颜色", "colour"): [("红色", "red"), ("蓝色", "blue"), ("绿色", "green"), ("黄色", "yellow"),
                       ("紫色", "purple"), ("黑色", "black"), ("白色", "white"), ("粉色", "pink"),
                       ("灰色", "grey"), ("棕色", "brown"), ("金色", "gold"), ("银色", "silver")],
    ("身体部位", "body part"): [("手", "hand"), ("脚", "foot"), ("头", "head"), ("眼睛", "eye"),
                            ("耳朵", "ear"), ("鼻子", "nose"), ("嘴巴", "mouth"), ("肩膀", "shoulder"),
                            ("膝盖", "knee"), ("手指", "finger"), ("牙齿", "tooth"), ("头发", "hair")],
    ("职业", "job"): [("医生", "doctor"), ("老师", "teacher"), ("厨师", "cook"), ("司机", "driver"),
                    ("农民", "farmer"), ("警察", "police officer"), ("护士", "nurse"), ("律师", "lawyer"),
                    ("画家", "painter"), ("歌手", "singer"), ("工程师", "engineer"), ("记者", "reporter")],
    ("乐器", "instrument"): [("钢琴", "piano"), ("吉他", "guitar"), ("小提琴", "violin"), ("鼓", "drum"),
                          ("笛子", "flute"), ("小号", "trumpet"), ("竖琴", "harp"), ("二胡", "erhu"),
                          ("琵琶", "pipa"), ("口琴", "harmonica"), ("大提琴", "cello"), ("萨克斯", "saxophone")],
    ("天气", "weather"): [("晴天", "sunshine"), ("下雨", "rain"), ("下雪", "snow"), ("大风", "wind"),
                        ("雷雨", "thunderstorm"), ("多云", "clouds"), ("大雾", "fog"), ("冰雹", "hail"),
                        ("台风", "typhoon"), ("毛毛雨", "drizzle"), ("霜冻", "frost"), ("彩虹", "rainbow")],
}
CATEGORY_NAMES = list(CATEGORIES)
# The last two items of every category never appear in mapping sequences: in-context learning
# on them needs what the model learnt about them from the category facts, lists and groups.
N_HELDOUT_ITEMS = 2


def category_items(category: int, lang: str, split: str = "train") -> list[str]:
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    items = CATEGORIES[CATEGORY_NAMES[category]]
    items = items[:-N_HELDOUT_ITEMS] if split == "train" else items[-N_HELDOUT_ITEMS:] if split == "test" else items
    return [it[0] if lang == "zh" else it[1] for it in items]


# How a category fact is said; {item} and {name} are filled in.
FACT_PHRASES = {"zh": ("{item}是一种{name}。", "{item}属于{name}。"),
                "en": ("{item} is a kind of {name}.", "{item} belongs to the {name} group.")}


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


# ----------------------------------------------------------------------------- in-context mappings
# Label words of the mapping sequences; every sequence draws 3 and assigns them at random.
# The sequences are written in llmtap.icl's format, x→y lines (icl.ICL_TEMPLATE).
LABEL_WORDS = list("甲乙丙丁东南西北金木水火土春夏秋冬上中下左右红黄蓝") + \
    list("ABCDEFGHJKLMNPQRSTUVWXYZ") + list("0123456789") + \
    ["foo", "bar", "baz", "yes", "no", "up", "down", "one", "two", "six"]


def sample_mapping(rng: random.Random, k: int, lang: str, query_split: str = "train",
                   balanced: bool = True, kind: str = "category") -> ICLTask:
    """A fresh random mapping with k demonstrations and one query, as an ``llmtap.icl.ICLTask``.

    ``kind="category"``: items are words, the class is their category (3 of the 8 categories).
    ``kind="sentiment"``: items are event sentences, the class is their polarity.
    ``balanced``: demonstrations cycle through the classes (in a shuffled order), so k >= 3
    shows every class at least once; otherwise classes are drawn independently.
    """
    _check_lang(lang)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    labels = rng.sample(LABEL_WORDS, 3)
    if kind == "category":
        classes = rng.sample(range(len(CATEGORY_NAMES)), 3)
        draw = lambda c, split: rng.choice(category_items(classes[c], lang, split))
    elif kind == "sentiment":
        draw = lambda c, split: _event_of_label(rng, lang, LABELS[c], split)
    else:
        raise ValueError(f"kind must be 'category' or 'sentiment', got {kind!r}")
    order = [c for _ in range(k // 3 + 1) for c in rng.sample(range(3), 3)][:k] if balanced \
        else [rng.randrange(3) for _ in range(k)]
    rng.shuffle(order)
    demos, seen = [], set()
    for c in order:
        x = draw(c, "train")
        demos.append((x, labels[c]))
        seen.add(x)
    q = rng.randrange(3)
    for _ in range(20):                     # prefer a query that is not one of the demonstrations
        query = draw(q, query_split)
        if query not in seen:
            break
    return ICLTask(demos, query, labels[q], labels)


def _event_of_label(rng, lang, label, split):
    while True:
        e = sample_event(rng, lang, split)
        if e.label == label:
            return e.text


def mapping_document(rng: random.Random, lang: str) -> str:
    return sample_mapping(rng, rng.randint(4, 16), lang, "train", balanced=rng.random() < 0.5).text()


def repeat_document(rng: random.Random, lang: str) -> str:
    """A random string of label words, then the same string again: the simplest thing to learn
    to copy, which gets the copying machinery (induction heads) of the model going early."""
    words = [rng.choice(LABEL_WORDS) for _ in range(rng.randint(8, 30))]
    return "".join(words) + "\n" + "".join(words)


# ----------------------------------------------------------------------------- instructions
# Each task's instruction in both languages ({n}, {name}, {a}, {b} are filled in), and the
# Chinese names of the sentiment labels. alphabet() reads them, so new wording gets its tokens.
INSTRUCTIONS = {
    "sentiment": ("判断这句话的情绪是积极、中性还是消极。", "Is the feeling of this sentence positive, neutral or negative?"),
    "category": ("这个词属于哪一类？", "Which group does this word belong to?"),
    "translate": ("把这个词翻译成英文。", "Translate this word into Chinese."),
    "list": ("列举{n}种{name}。", "Name {n} examples of {name}."),
    "add": ("{a}加{b}等于多少？", "What is {a} plus {b}?"),
    "reverse": ("把这个词倒过来写。", "Write this word backwards."),
}
INSTRUCTION_TASKS = tuple(INSTRUCTIONS)
LABEL_NAMES_ZH = {"positive": "积极", "neutral": "中性", "negative": "消极"}
LIST_SEPARATOR = {"zh": "、", "en": ", "}


def instruction_example(rng: random.Random, lang: str | None = None, task: str | None = None) -> dict:
    """One {"instruction", "input", "output"} record from a handful of simple tasks."""
    lang = lang or rng.choice(LANGS)
    _check_lang(lang)
    task = task or rng.choice(INSTRUCTION_TASKS)
    if task not in INSTRUCTION_TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {INSTRUCTION_TASKS}")
    zh = lang == "zh"
    side = 0 if zh else 1                               # the Chinese or the English word of a pair
    instruction = INSTRUCTIONS[task][side]
    if task == "sentiment":
        e = sample_event(rng, lang, "train")
        return _record(instruction, e.text, LABEL_NAMES_ZH[e.label] if zh else e.label)
    c = rng.randrange(len(CATEGORY_NAMES)) if task != "add" else None
    if task == "category":
        item = rng.choice(CATEGORIES[CATEGORY_NAMES[c]])
        return _record(instruction, item[side], CATEGORY_NAMES[c][side])
    if task == "translate":
        z, e = rng.choice(CATEGORIES[CATEGORY_NAMES[c]])
        return _record(instruction, z, e) if zh else _record(instruction, e, z)
    if task == "list":
        n = rng.randint(2, 4)
        items = [it[side] for it in rng.sample(CATEGORIES[CATEGORY_NAMES[c]], n)]
        return _record(instruction.format(n=n, name=CATEGORY_NAMES[c][side]), "", LIST_SEPARATOR[lang].join(items))
    if task == "add":
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        return _record(instruction.format(a=a, b=b), "", str(a + b))
    word = rng.choice(CATEGORIES[CATEGORY_NAMES[c]])[side]            # task == "reverse"
    return _record(instruction, word, word[::-1])


def _record(instruction, input, output):
    return {"instruction": instruction, "input": input, "output": output}


# ----------------------------------------------------------------------------- long text, pass key
FILLER = {"zh": ["草是绿的。", "天是蓝的。", "太阳升起来了。", "河水慢慢地流。", "鸟儿在树上唱歌。"],
          "en": ["The grass is green. ", "The sky is blue. ", "The sun comes up. ",
                 "The river flows on. ", "Birds sing in the trees. "]}
# the pass-key filler leaves out sentences holding the word that precedes the key ("是" / " is "):
# with it in the filler, the one cue that points at the key would point at the filler too
PASSKEY_FILLER = {"zh": [s for s in FILLER["zh"] if "是" not in s], "en": [s for s in FILLER["en"] if " is " not in s]}


PASSKEY_NEEDLE = {"zh": "密码是{key}。记住它。", "en": "The pass key is {key}. Remember it. "}
PASSKEY_QUESTION = {"zh": "密码是", "en": "What is the pass key? The pass key is "}


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
MIXTURE = (("sentiment", 0.20), ("category", 0.25), ("mapping", 0.30), ("repeat", 0.25))
_GENERATORS = {"sentiment": sentiment_document, "category": category_document, "mapping": mapping_document,
               "repeat": repeat_document}


def pretraining_document(rng: random.Random, mixture=MIXTURE) -> str:
    kinds, weights = zip(*mixture)
    kind = rng.choices(kinds, weights)[0]
    return _GENERATORS[kind](rng, rng.choice(LANGS))


# Characters the tokenizer knows although no generator writes them: punctuation a student may
# type into a prompt.
EXTRA_CHARACTERS = ":，：；！？“”‘’（）《》…—"


def alphabet() -> str:
    """Every character the generators can emit (the tokenizer's vocabulary is built from it),
    collected from the word lists and phrasings they write with, plus ``EXTRA_CHARACTERS``."""
    parts = [a for e in EVENTS for a in e[:2]] + [a for t in TIMES + PLACES for a in t]
    parts += ["我", "I", ". ", ", "]                                    # event_sentence's own words
    parts += [w for lang in ANSWERS.values() for w in lang.values()]
    parts += [t for ts in TAUGHT_TEMPLATES.values() for t in ts]
    for (cz, ce), items in CATEGORIES.items():
        parts += [cz, ce] + [w for it in items for w in it]
    parts += [p for ps in FACT_PHRASES.values() for p in ps] + ["：", ": "] + list(LIST_SEPARATOR.values())
    parts += LABEL_WORDS + [ICL_TEMPLATE.text, "\n"]
    parts += [s for f in FILLER.values() for s in f] + list(PASSKEY_NEEDLE.values()) + list(PASSKEY_QUESTION.values())
    parts += [p for ps in INSTRUCTIONS.values() for p in ps] + list(LABEL_NAMES_ZH.values())
    parts += ["0123456789", EXTRA_CHARACTERS]
    text = re.sub(r"\{\w+\}", "", "".join(parts))                    # drop the {placeholders}
    return "".join(sorted(set(text)))


def _check_lang(lang):
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}, got {lang!r}")
