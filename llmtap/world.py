"""The small bilingual world the course corpus is written in: word lists and phrasings, no code.

Everything the course model learns is built from these tables by the generators in
``llmtap.corpus``: events with how they feel, times and places, categories and their items,
the label words of the mapping sequences, filler sentences, and the wording of the
instructions and of the pass key. Each entry is a Chinese and an English version of the same
thing, and all of it was written for this course. ``corpus.alphabet()`` reads the tokenizer's
characters off these tables, so new words here get their own tokens.
"""

LANGS = ("zh", "en")

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

# Composed events: an action done to an object. The action decides the polarity, the object
# how much it matters (a valuable object doubles the level), so level = polarity * (1 + valuable):
# "lost my passport" -2, "lost my pencil" -1, "cleaned my passport" 0. A fixed fifth of the
# (action, object) pairs never appears in pretraining in any form (corpus.is_unseen_event); the
# model can still feel them, from what the same action and the same object did in other events.
# (zh, en, polarity); {o} is the object.
ACTIONS = [
    ("找到了{o}", "found my {o}", 1), ("修好了{o}", "fixed my {o}", 1), ("收到了新的{o}", "got a new {o}", 1),
    ("拿回了{o}", "got my {o} back", 1), ("赢到了{o}", "won a new {o}", 1),
    ("擦了擦{o}", "cleaned my {o}", 0), ("看了看{o}", "looked at my {o}", 0), ("收好了{o}", "put away my {o}", 0),
    ("拿起了{o}", "picked up my {o}", 0), ("检查了{o}", "checked my {o}", 0),
    ("丢了{o}", "lost my {o}", -1), ("弄坏了{o}", "broke my {o}", -1), ("被偷了{o}", "had my {o} stolen", -1),
    ("弄脏了{o}", "got my {o} dirty", -1), ("忘带了{o}", "left my {o} behind", -1),
]

# (zh, en, valuable)
OBJECTS = [
    ("钱包", "wallet", True), ("手机", "phone", True), ("电脑", "laptop", True), ("护照", "passport", True),
    ("相机", "camera", True), ("戒指", "ring", True), ("手表", "watch", True), ("项链", "necklace", True),
    ("雨伞", "umbrella", False), ("铅笔", "pencil", False), ("杯子", "cup", False), ("帽子", "hat", False),
    ("围巾", "scarf", False), ("本子", "notebook", False), ("手套", "glove", False), ("勺子", "spoon", False),
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

# The templates the corpus teaches: [X] is the event sentence, [Z] the answer slot.
TAUGHT_TEMPLATES = {"zh": ["[X]我感到[Z]。", "[X]我觉得[Z]。"],
                    "en": ["[X] I feel [Z].", "[X] It made me feel [Z]."]}

# Templates the corpus never writes: chapter 01 shows how an untaught template falls towards
# chance, chapters 02 and 03 teach this one by fine-tuning.
UNTAUGHT_TEMPLATES = {"zh": "[X]心情[Z]。", "en": "[X] That was [Z]."}

CATEGORIES = {
    ("水果", "fruit"): [("苹果", "apple"), ("香蕉", "banana"), ("橙子", "orange"), ("葡萄", "grape"),
        ("西瓜", "watermelon"), ("草莓", "strawberry"), ("梨", "pear"), ("桃子", "peach"),
        ("樱桃", "cherry"), ("芒果", "mango"),
        ("李子", "plum"), ("蓝莓", "blueberry"), ("椰子", "coconut"), ("石榴", "pomegranate"), ("荔枝", "lychee"), ("猕猴桃", "kiwi"), ("杏子", "apricot"), ("柚子", "pomelo"),
        ("柠檬", "lemon"), ("菠萝", "pineapple")],
    ("动物", "animal"): [("老虎", "tiger"), ("狮子", "lion"), ("猫", "cat"), ("狗", "dog"),
        ("兔子", "rabbit"), ("大象", "elephant"), ("熊猫", "panda"), ("猴子", "monkey"),
        ("马", "horse"), ("牛", "cow"),
        ("狼", "wolf"), ("熊", "bear"), ("鹿", "deer"), ("猪", "pig"), ("鸡", "chicken"), ("鸭子", "duck"), ("老鼠", "mouse"), ("骆驼", "camel"),
        ("羊", "sheep"), ("狐狸", "fox")],
    ("交通工具", "vehicle"): [("汽车", "car"), ("火车", "train"), ("飞机", "plane"), ("轮船", "ship"),
        ("自行车", "bicycle"), ("公共汽车", "bus"), ("地铁", "subway"), ("出租车", "taxi"),
        ("摩托车", "motorbike"), ("卡车", "truck"),
        ("小船", "boat"), ("火箭", "rocket"), ("救护车", "ambulance"), ("拖拉机", "tractor"), ("滑板", "skateboard"), ("面包车", "van"), ("游艇", "yacht"), ("潜水艇", "submarine"),
        ("电车", "tram"), ("直升机", "helicopter")],
    ("颜色", "colour"): [("红色", "red"), ("蓝色", "blue"), ("绿色", "green"), ("黄色", "yellow"),
        ("紫色", "purple"), ("黑色", "black"), ("白色", "white"), ("粉色", "pink"),
        ("灰色", "grey"), ("棕色", "brown"),
        ("青色", "cyan"), ("米色", "beige"), ("深红色", "crimson"), ("藏青色", "navy"), ("橄榄色", "olive"), ("青绿色", "turquoise"), ("淡紫色", "lilac"), ("琥珀色", "amber"),
        ("金色", "gold"), ("银色", "silver")],
    ("身体部位", "body part"): [("手", "hand"), ("脚", "foot"), ("头", "head"), ("眼睛", "eye"),
        ("耳朵", "ear"), ("鼻子", "nose"), ("嘴巴", "mouth"), ("肩膀", "shoulder"),
        ("膝盖", "knee"), ("手指", "finger"),
        ("脖子", "neck"), ("手臂", "arm"), ("胸口", "chest"), ("肚子", "belly"), ("嘴唇", "lip"), ("脸", "face"), ("手腕", "wrist"), ("脚趾", "toe"),
        ("牙齿", "tooth"), ("头发", "hair")],
    ("职业", "job"): [("医生", "doctor"), ("老师", "teacher"), ("厨师", "cook"), ("司机", "driver"),
        ("农民", "farmer"), ("警察", "police officer"), ("护士", "nurse"), ("律师", "lawyer"),
        ("画家", "painter"), ("歌手", "singer"),
        ("演员", "actor"), ("作家", "writer"), ("飞行员", "pilot"), ("木匠", "carpenter"), ("牙医", "dentist"), ("法官", "judge"), ("士兵", "soldier"), ("理发师", "barber"),
        ("工程师", "engineer"), ("记者", "reporter")],
    ("乐器", "instrument"): [("钢琴", "piano"), ("吉他", "guitar"), ("小提琴", "violin"), ("鼓", "drum"),
        ("笛子", "flute"), ("小号", "trumpet"), ("竖琴", "harp"), ("二胡", "erhu"),
        ("琵琶", "pipa"), ("口琴", "harmonica"),
        ("古筝", "guzheng"), ("手风琴", "accordion"), ("长号", "trombone"), ("单簧管", "clarinet"), ("木琴", "xylophone"), ("铃鼓", "tambourine"), ("风琴", "organ"), ("班卓琴", "banjo"),
        ("大提琴", "cello"), ("萨克斯", "saxophone")],
    ("天气", "weather"): [("晴天", "sunshine"), ("下雨", "rain"), ("下雪", "snow"), ("大风", "wind"),
        ("雷雨", "thunderstorm"), ("多云", "clouds"), ("大雾", "fog"), ("冰雹", "hail"),
        ("台风", "typhoon"), ("毛毛雨", "drizzle"),
        ("闪电", "lightning"), ("暴雨", "downpour"), ("龙卷风", "tornado"), ("沙尘暴", "sandstorm"), ("暴风雪", "blizzard"), ("露水", "dew"), ("雾霾", "smog"), ("热浪", "heatwave"),
        ("霜冻", "frost"), ("彩虹", "rainbow")],
}

CATEGORY_NAMES = list(CATEGORIES)

# How a category fact is said; {item} and {name} are filled in.
FACT_PHRASES = {"zh": ("{item}是一种{name}。", "{item}属于{name}。"),
                "en": ("{item} is a kind of {name}.", "{item} belongs to the {name} group.")}

# How a translation is said: {zh} and {en} are the two words of an item. A fact written in one
# shape only is known in that shape only (Allen-Zhu & Li, "Physics of Language Models 3.1": a
# model extracts a fact in a new form only if its training text said it in several); the
# dictionary-entry shapes put a line break between the word and its twin, as an instruction's
# input and response do, without ever writing an instruction.
TRANSLATION_PHRASES = {"zh": ("{zh}的英文是{en}。", "{zh}用英文说是{en}。", "{zh}在英文里叫{en}。", "{zh}这个词，英文是{en}。",
                              "中文：{zh}\n英文：{en}"),
                       "en": ("The Chinese for {en} is {zh}.", "{en} in Chinese is {zh}.", "In Chinese, {en} is {zh}.",
                              "The word {en} is {zh} in Chinese.", "English: {en}\nChinese: {zh}")}

# How a sum is said ({a} + {b} = {c}, for a, b in 0..20), first in the words of the "add"
# instruction, then in other shapes for the same reason as the translations.
SUM_PHRASES = {"zh": ("{a}加{b}等于{c}。", "{a}加{b}是{c}。", "{a}和{b}的和是{c}。", "{a}+{b}={c}"),
               "en": ("{a} plus {b} is {c}.", "{a} plus {b} equals {c}.", "The sum of {a} and {b} is {c}.", "{a}+{b}={c}")}

# Label words of the mapping sequences; every sequence draws 3 and assigns them at random.
LABEL_WORDS = list("甲乙丙丁东南西北金木水火土春夏秋冬上中下左右红黄蓝") + \
    list("ABCDEFGHJKLMNPQRSTUVWXYZ") + list("0123456789") + \
    ["foo", "bar", "baz", "yes", "no", "up", "down", "one", "two", "six"]

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

# More ways to say each instruction, for chapter 05's SFT: the first is INSTRUCTIONS' own, the
# last is never trained on (the held-out phrasing: does SFT teach the task, or one sentence?).
# Written with characters the tokenizer already has, so the course model reads them.
INSTRUCTION_PHRASINGS = {
    "sentiment": {"zh": ("判断这句话的情绪是积极、中性还是消极。", "这句话的情感是积极、中性还是消极？",
                         "说说这句话的情绪：积极、中性还是消极？", "看这句话，它的情感是积极、中性还是消极？"),
                  "en": ("Is the feeling of this sentence positive, neutral or negative?",
                         "What feeling does this sentence express: positive, neutral or negative?",
                         "Classify the feeling of the sentence as positive, neutral or negative.",
                         "Tell me if this sentence feels positive, neutral or negative.")},
    "category": {"zh": ("这个词属于哪一类？", "这个词是哪一类的？", "判断这个词属于哪一类。", "说出这个词是哪一类。"),
                 "en": ("Which group does this word belong to?", "Name the group of this word.",
                        "What kind of thing is this word?", "Say which group this word is in.")},
    "translate": {"zh": ("把这个词翻译成英文。", "把这个词译成英文。", "写出这个词的英文。", "这个词用英文说是？"),
                  "en": ("Translate this word into Chinese.", "Give the Chinese for this word.",
                         "What is this word in Chinese?", "Write this word in Chinese.")},
    "list": {"zh": ("列举{n}种{name}。", "说出{n}种{name}。", "写出{n}个{name}。", "举出{n}种{name}。"),
             "en": ("Name {n} examples of {name}.", "List {n} kinds of {name}.", "Give {n} examples of {name}.",
                    "Write down {n} examples of {name}.")},
    "add": {"zh": ("{a}加{b}等于多少？", "{a}加{b}是多少？", "{a}加上{b}等于多少？", "{a}加{b}得多少？"),
            "en": ("What is {a} plus {b}?", "Add {a} and {b}.", "Compute {a} plus {b}.", "How much is {a} plus {b}?")},
    "reverse": {"zh": ("把这个词倒过来写。", "倒过来写这个词。", "把这个词倒过来。", "这个词倒过来写是？"),
                "en": ("Write this word backwards.", "Spell this word backwards.", "Reverse the letters of this word.",
                       "Write the letters of this word in reverse order.")},
}

LABEL_NAMES_ZH = {"positive": "积极", "neutral": "中性", "negative": "消极"}

LIST_SEPARATOR = {"zh": "、", "en": ", "}

FILLER = {"zh": ["草是绿的。", "天是蓝的。", "太阳升起来了。", "河水慢慢地流。", "鸟儿在树上唱歌。"],
          "en": ["The grass is green. ", "The sky is blue. ", "The sun comes up. ",
                 "The river flows on. ", "Birds sing in the trees. "]}

PASSKEY_NEEDLE = {"zh": "密码是{key}。记住它。", "en": "The pass key is {key}. Remember it. "}

PASSKEY_QUESTION = {"zh": "密码是", "en": "What is the pass key? The pass key is "}

# Characters the tokenizer knows although no generator writes them: punctuation a student may
# type into a prompt.
EXTRA_CHARACTERS = "，：；！？“”‘’（）《》…—"
