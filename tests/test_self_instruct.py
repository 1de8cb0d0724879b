"""The Self-Instruct algorithm: seed tasks, prompts and parsing, filters, and the loop with a
scripted stand-in for the model (the real generators are tested in test_generators.py)."""
import random
from itertools import combinations

import pytest

from llmtap.generators import GeneratorError
from llmtap.rouge import RougeIndex, rouge_l
from llmtap.self_instruct import (BLACKLIST, FilterConfig, SelfInstruct, Task, balanced_shots, blacklisted_word,
                                  bad_start, check_instance, check_instruction, check_label, classification_prompt,
                                  confirmed, detect_lang, drop_conflicts, identify_classification,
                                  instance_prompt, instruction_prompt, load_seed_tasks, original_classification_prompt,
                                  original_filter, original_instance_prompt, original_instruction_prompt,
                                  parse_instances, parse_instructions, parse_original_class_instances,
                                  parse_original_instances, parse_original_instructions, parse_yes_no,
                                  sample_instructions)


# ----------------------------------------------------------------------------- seed tasks
def test_seed_tasks_are_bilingual_clean_and_diverse():
    seeds = load_seed_tasks()
    assert len(seeds) >= 40
    langs = [t.lang for t in seeds]
    assert langs.count("zh") >= 20 and langs.count("en") >= 20
    assert all(t.instances and t.instances[0][1] for t in seeds)
    assert 5 <= sum(t.is_classification for t in seeds) <= 30
    assert [t.instruction for t in seeds if blacklisted_word(t.instruction)] == []
    worst = max(rouge_l(a.instruction, b.instruction) for a, b in combinations(seeds, 2))
    assert worst < 0.7, "the seed pool itself must pass the diversity filter"


def test_task_language_and_validation():
    t = Task("把这个词翻译成英文。", [("苹果", "apple"), ["猫", "cat"]])
    assert t.lang == "zh" and t.instances == [("苹果", "apple"), ("猫", "cat")]
    assert Task("Translate the word into Chinese.").lang == "en" == detect_lang("Sort 3 words.")
    with pytest.raises(ValueError):
        Task("  ")
    with pytest.raises(ValueError):
        Task("ok task", [("only input",)])


def test_seed_file_errors(tmp_path):
    bad = tmp_path / "seeds.jsonl"
    bad.write_text('{"instruction": "a", "instances": [{"input": "", "output": "b"}]}\n{"instruction": "c"}\n')
    with pytest.raises(ValueError, match="line 2"):
        load_seed_tasks(bad)
    with pytest.raises(FileNotFoundError):
        load_seed_tasks(tmp_path / "none.jsonl")


# ----------------------------------------------------------------------------- prompts and parsing
def test_instruction_prompt_and_parsing():
    p = instruction_prompt(["Sort the words.", "Give an antonym."], "en")
    assert p.endswith("Task 1: Sort the words.\nTask 2: Give an antonym.\nTask 3: ")
    assert instruction_prompt(["写一首诗。"], "zh").endswith("任务1：写一首诗。\n任务2：")
    assert parse_instructions(" Name a colour.\nTask 4: Add two numbers.\n任务5：数一数。\nTask 6:") == \
        ["Name a colour.", "Add two numbers.", "数一数。"]
    assert parse_instructions(" Name a colour.\nTask 4: Add two num") == ["Name a colour."]    # cut by the token limit
    with pytest.raises(ValueError):
        instruction_prompt([], "en")
    with pytest.raises(ValueError):
        instruction_prompt(["a"], "fr")


def test_sample_six_seed_and_two_generated():
    seeds = [Task(f"seed {i}", [("", "x")]) for i in range(10)]
    gen = [Task(f"generated {i}", [("", "x")], origin="generated") for i in range(5)]
    rng = random.Random(0)
    got = sample_instructions(seeds, gen, rng)
    assert len(got) == 8 and sum(s.startswith("seed") for s in got) == 6
    early = sample_instructions(seeds, gen[:1], rng)        # fewer generated: seed tasks fill in
    assert len(early) == 8 and sum(s.startswith("seed") for s in early) == 7
    with pytest.raises(ValueError):
        sample_instructions(seeds, gen, rng, 0, 0)


def test_classification_and_instance_prompts():
    cls = Task("Is it spam?", [("Win money now", "spam")], True)
    gen = Task("Give an antonym.", [("hot", "cold")], False)
    p = classification_prompt("Is this review positive?", [cls, gen])
    assert "Task: Is it spam?\nClassification: Yes" in p and p.endswith("Task: Is this review positive?\nClassification:")
    assert classification_prompt("这句话是问句吗？", [cls]).endswith("分类任务:")
    assert [parse_yes_no(s) for s in (" Yes.", "no", "是的", "否", "不是", "maybe")] == [True, False, True, False, False, None]
    out_first = instance_prompt("Is this review positive?", [cls], output_first=True)
    assert out_first.endswith("Class label: spam\nInput: Win money now\n\nTask: Is this review positive?\nClass label:")
    in_first = instance_prompt("Give a synonym.", [gen], output_first=False)
    assert in_first.endswith("Input: hot\nOutput: cold\n\nTask: Give a synonym.\nInput:")
    assert parse_instances(" positive\nInput: I loved it.\n\nTask: x", output_first=True) == [("I loved it.", "positive")]
    assert parse_instances(" (none)\nOutput: 42", output_first=False) == [("", "42")]
    assert parse_instances(" no output field", output_first=False) == []


# ----------------------------------------------------------------------------- filters
def test_instruction_filters_each_reason():
    index = RougeIndex(["Write a short story about a brave dog.", "写一首关于春天的诗。"])
    cfg = FilterConfig()
    assert check_instruction("Do it.", index, cfg)[0] == "too short"
    assert check_instruction(" ".join(["word"] * 151), index, cfg)[0] == "too long"
    assert check_instruction("Describe the image below in detail.", index, cfg) == ("keyword", "image")
    assert check_instruction("Draw a map of your town.", index, cfg)[0] == "keyword"
    assert check_instruction("根据这张图片写一段说明。", index, cfg) == ("keyword", "图片")
    assert check_instruction("把这个视频的内容总结一下。", index, cfg) == ("keyword", "视频")
    assert check_instruction("write a short  story about a brave dog.", index, cfg)[0] == "duplicate"
    assert check_instruction("Write a short story about a brave cat.", index, cfg)[0] == "similar"
    # Chinese near-duplicates are caught (rouge-score would score them 0)
    assert check_instruction("写一首关于夏天的诗。", index, cfg)[0] == "similar"
    assert check_instruction("Explain how rainbows form.", index, cfg) == (None, "")
    assert blacklisted_word("Fileting a fish") is None           # whole English words only
    assert "图片" in BLACKLIST["zh"] and "image" in BLACKLIST["en"]
    with pytest.raises(ValueError):
        FilterConfig(rouge_threshold=0)
    with pytest.raises(ValueError):
        FilterConfig(min_tokens=10, max_tokens=5)


def test_a_similar_pool_text_is_named_before_one_of_the_round():
    pool = ["Write a slogan for the market today."]
    index = RougeIndex(pool + ["Write a slogan for the garden and the ocean."])     # then one of this round
    candidate = "Write a slogan for the mountain and the market."
    scores = index.scores(candidate)
    assert 0.7 <= scores[0] < scores[1]                   # more like the round's, yet too like the pool's
    assert check_instruction(candidate, index, FilterConfig(), pool_size=1) == \
        ("similar", f"ROUGE-L {scores[0]:.2f} with {pool[0]!r}")
    assert check_instruction(candidate, index, FilterConfig()) == \
        ("similar", f"ROUGE-L {scores[1]:.2f} with {index.texts[1]!r}")       # all of it the pool: the best
    round_only = RougeIndex(["Explain how rainbows form.", "Write a slogan for the garden and the ocean."])
    assert check_instruction(candidate, round_only, FilterConfig(), pool_size=1)[1].endswith("and the ocean.'")
    assert check_instruction("write a slogan  for the garden and the OCEAN.", index, pool_size=1)[0] == "duplicate"


def test_instructions_must_start_like_text():
    index = RougeIndex(["Explain how rainbows form."])
    for text, reason in [("- List five animals please.", "starts with punctuation"),
                         ("。列举三种水果和三种颜色。", "starts with punctuation"),
                         ("\u2192 name three rivers of china", "starts with a non-text character"),
                         ("Name three \ufffd rivers of Europe.", "unreadable characters")]:
        assert check_instruction(text, index)[0] == reason, text
    for text in ["16加4等于多少？", "3 ways to save water at home.", "  Describe a quiet morning."]:
        assert check_instruction(text, index) == (None, ""), text
    assert bad_start("Name \ufffd rivers")[1] == "U+FFFD at position 5"


def test_conflicting_instances_are_all_dropped():
    kept, dropped = drop_conflicts([("14 + 2", "16"), ("apple", "fruit"), ("14 + 2", "33"), ("14 + 2", "16")])
    assert kept == [("apple", "fruit")]
    assert dropped == [("14 + 2", "16"), ("14 + 2", "33"), ("14 + 2", "16")]
    assert drop_conflicts([("", "cherry, pear"), ("", "cherry, pear ")]) == ([("", "cherry, pear"), ("", "cherry, pear ")], [])
    assert drop_conflicts([("", "16"), ("", "33")])[0] == []       # no input is an input too


def test_instance_filters():
    seen = {("a", "b")}
    assert check_instance("x", "", seen) == "empty output"
    assert check_instance("same", " same ", seen) == "input equals output"
    assert check_instance("a", "b", seen) == "duplicate instance"
    assert check_instance("", "fine", seen) is None


def test_course_check_label_named_by_the_instruction():
    assert check_label("这个词属于动物还是职业？", "手", "身体部位") == "label not among the instruction's classes"
    assert check_label("这个词属于动物还是职业？", "鹿", "动物") is None
    assert check_label("Is this review positive or negative?", "I loved it.", "Positive") is None   # any case
    assert check_label("Is this review positive or negative?", "I loved it.", "pos") == \
        "label not among the instruction's classes"                    # whole words in English
    assert check_label("Which group is this word in: fruit or animal?", "cat", "animal") is None
    # no choice offered: any label ('forest' and 'history' hold "or" inside a word)
    assert check_label("How does this sentence feel? Explore the forest history.", "It rained.", "negative") is None
    assert check_label("这个词属于乐器还是身体部位？", "体部位", "身体部位") == "input is a piece of its label"
    assert check_label("What group is this word in?", "fruit", "fruit") is None     # check_instance's case
    with pytest.raises(TypeError, match="three strings"):
        check_label("Is it A or B?", None, "A")


def test_course_check_answers_without_input_are_confirmed():
    samples = [("", "20"), ("", "20"), ("3 + 4", "7"), ("", "list: a, b")]
    kept, dropped = confirmed([("", "20"), ("3 + 4", "7"), ("", "list: a, b")], samples)
    assert kept == [("", "20"), ("3 + 4", "7")]          # an input needs no second sample
    assert dropped == [("", "list: a, b")]
    assert confirmed([(" ", "20 ")], [("", "20"), ("  ", " 20")]) == ([(" ", "20 ")], [])   # compared stripped
    with pytest.raises(TypeError, match="samples must be"):
        confirmed([("", "20")], "20")
    with pytest.raises(TypeError, match="instances must be"):
        confirmed([("", 20)], [])


def test_course_checks_in_the_loop_and_switched_off():
    def chooser(prompt, max_new_tokens, seed):
        rng = random.Random(seed)
        if prompt.endswith(("Classification:", "分类任务:")):
            return " Yes" if "fruit or" in prompt.split("Task:")[-1] else " No"
        if prompt.endswith("Class label:"):
            return rng.choice([" vegetable\nInput: carrot\n\n", " fruit\nInput: ruit\n\n", " fruit\nInput: apple\n\n",
                               " animal\nInput: cat\n\n"])
        if prompt.endswith("Input:"):
            return rng.choice([" (none)\nOutput: 20\n\n", " (none)\nOutput: 21\n\n", " nothing"])
        return rng.choice([" Is this word a kind of fruit or of animal?\n", " What is 16 plus 4?\n",
                           " Say if this word is a fruit or an animal, please.\n", " What is 2 plus 18, please?\n"])

    si = SelfInstruct(chooser, seed=0, lang="en", n_instances=3)
    si.run(30)
    c = si.counts
    for reason in ("label not among the instruction's classes", "input is a piece of its label", "no input, given once"):
        assert c[f"instance rejected: {reason}"] > 0, reason
    for t in si.generated:
        if t.is_classification:
            assert all(y in ("fruit", "animal") and x != "ruit" for x, y in t.instances)
        else:
            assert len(t.instances) == 1 and t.instances[0][0] == ""
    paper = SelfInstruct(chooser, seed=0, lang="en", n_instances=3, cfg=FilterConfig(course_checks=False))
    paper.run(30)
    assert not any(k in paper.counts for k in c if "label" in k or "given once" in k)
    assert any(y == "vegetable" for t in paper.generated for _, y in t.instances)
    assert si.report()[-1] == ("tasks kept", len(si.generated))


# ----------------------------------------------------------------------------- the loop, seeded
NOUNS = "river mountain teacher market robot garden winter ocean city forest".split()
VERBS = "Describe|Explain the history of|List three facts about|Write a slogan for|Compare two kinds of".split("|")


def scripted(prompt, max_new_tokens, seed):
    """A seeded stand-in for a language model that produces every kind of good and bad output."""
    rng = random.Random(seed)
    if prompt.endswith(("Classification:", "分类任务:")):
        return rng.choice([" Yes", " No", " No", " perhaps"])
    if prompt.endswith("Class label:"):
        return rng.choice([" positive\nInput: I loved the food.", " \nInput: nothing", " negative\nno input"])
    if prompt.endswith("Input:"):
        return rng.choice([" a river\nOutput: a river", " (none)\nOutput: Here it is.", " hi\nOutput: ",
                           " (none)\nOutput: Something else.",
                           " the winter\nOutput: cold and dark\n\nTask: more", " nothing useful"])
    lines = [f"{rng.choice(VERBS)} the {rng.choice(NOUNS)}." for _ in range(3)]
    lines += [rng.choice(["Draw a picture of the sea.", "Hi.", "Describe the river.", "画一只猫。",
                          "- List the rivers of the city.", "\ufffd\ufffd the market at night."])]
    return " " + "\nTask 10: ".join(lines) + "\n"


def run_pipeline(seed, rounds=15):
    si = SelfInstruct(scripted, seed=seed)
    si.run(rounds)
    return si


def test_pipeline_end_to_end_is_seeded_and_counts_add_up():
    si = run_pipeline(0)
    c = si.counts
    assert c["prompts"] == 15
    rejected = sum(v for k, v in c.items() if k.startswith("rejected: "))
    assert c["instructions generated"] == rejected + c["tasks kept"]
    assert c["instructions passing filters"] == c["classification: yes"] + c["classification: no"] + c["classification: unclear"]
    assert c["tasks kept"] == len(si.generated) == len(si.kept) > 0
    for reason in ("keyword", "too short", "similar", "starts with punctuation", "unreadable characters"):
        assert c[f"rejected: {reason}"] > 0, reason
    assert c["instance rejected: input equals output"] + c["instance rejected: empty output"] > 0
    assert c["instance rejected: same input, different output"] > 0
    assert c["instance rejected: no input, given once"] > 0
    assert len(si.rejected) == rejected
    instructions = [t.instruction for t in si.seed_tasks + si.generated]
    assert si.index.texts == instructions                 # the filters see the whole pool, nothing else
    assert max(rouge_l(a, b) for a, b in combinations(instructions, 2)) < 0.7
    assert all(t.instances and all(y and x != y for x, y in t.instances) for t in si.generated)
    assert dict(si.report()) == {k: c.get(k, 0) for k in dict(si.report())}
    again = run_pipeline(0)
    assert [t.instruction for t in again.generated] == [t.instruction for t in si.generated]
    assert again.counts == si.counts
    assert [t.instruction for t in run_pipeline(1).generated] != [t.instruction for t in si.generated]


def test_a_failing_generator_leaves_the_pool_intact():
    calls = {"n": 0, "limit": 10**9}

    def flaky(prompt, max_new_tokens, seed):
        calls["n"] += 1
        if calls["n"] > calls["limit"]:
            raise GeneratorError("the server went away")
        return scripted(prompt, max_new_tokens, seed)

    si = SelfInstruct(flaky, seed=0)
    si.run(2)
    calls["limit"] = calls["n"] + 3         # fails in the middle of the next round
    pool, counts, index_size = [t.instruction for t in si.seed_tasks + si.generated], dict(si.counts), len(si.index)
    with pytest.raises(GeneratorError, match="went away"):
        si.run(5)
    assert [t.instruction for t in si.seed_tasks + si.generated] == pool
    assert dict(si.counts) == counts and len(si.index) == index_size


def test_self_instruct_argument_errors():
    with pytest.raises(TypeError):
        SelfInstruct("not callable")
    with pytest.raises(ValueError):
        SelfInstruct(scripted, lang="fr")
    with pytest.raises(ValueError, match="n_seed"):
        SelfInstruct(scripted, seed_tasks=[Task("a task here", [("", "x")])])
    with pytest.raises(ValueError):
        SelfInstruct(scripted).run(-1)
    with pytest.raises(GeneratorError, match="not a str"):
        SelfInstruct(lambda p, n, s: None).step()



# ----------------------------------------------------------------------------- as the authors ran it
def test_original_instruction_prompt_and_parsing():
    p = original_instruction_prompt(["Name a  fruit:", "Sort\nthe list."])
    assert p == "Come up with a series of tasks:\n1. Name a fruit\n2. Sort the list.\n3."
    text = " Give three   tips for sleeping well.\n4. Explain why the USA has 50 states.\n5 . Write a haiku.\n6.Name"
    assert parse_original_instructions(text) == ["Give three tips for sleeping well.",
                                                 "Explain why the usa has 50 states.",   # str.capitalize, as they ran it
                                                 "Write a haiku. 6.name"]                # a cut needs '. ' after the number


@pytest.mark.parametrize("text, reason", [("Name a fruit", "too short"), ("word " * 151, "too long"),
                                          ("Describe the image in detail please", "keyword"),
                                          ("Tell me how to GO TO the station", "keyword"),
                                          ("Write a program that sorts numbers", "write a program"),
                                          ("- List five animals please", "starts with punctuation"),
                                          ("¿Qué hora es ahora mismo?", "starts with a non-ASCII character"),
                                          ("Describe the profile of a mountain", None),     # "file" only as a whole word
                                          ("Summarize the mapping between two sets", None)])
def test_original_filter_rules(text, reason):
    assert original_filter(text) == reason


def test_balanced_shots_show_both_answers():
    tasks = [Task(f"classify {i}", [("x", "y")], i < 3) for i in range(20)]
    shots = balanced_shots(tasks, 6, random.Random(0))
    assert len(shots) == 6 and sum(t.is_classification for t in shots) == 3
    assert sum(t.is_classification for t in balanced_shots(tasks[:4], 4, random.Random(0))) == 3   # 1 "no" left
    p = original_classification_prompt("Is the review positive?", shots[:2])
    assert p.startswith("Can the following task be regarded as a classification task") and p.endswith(
        "Task: Is the review positive?\nIs it classification?")


def test_original_instances_keep_blank_lines():
    text = "Example 1\nParagraph: one.\n\nAnd two.\nOutput: Two sentences.\n\nFirst: a\nExample 2\nList: [3, 1]\nOutput: [1, 3]\n\nTask: next"
    assert parse_original_instances(text) == [("Paragraph: one.\n\nAnd two.", "Two sentences.\n\nFirst: a"),
                                              ("List: [3, 1]", "[1, 3]")]
    assert parse_original_instances("Output: 29.44 C\n\nTask: x") == [("", "29.44 C")]
    labels = " Positive\nSentence: I had a great day.\n\nReally.\nClass label: Negative\nSentence: Awful.\nTask: y"
    assert parse_original_class_instances(labels) == [("Sentence: I had a great day.\n\nReally.", "Positive"),
                                                      ("Sentence: Awful.", "Negative")]
    shot = Task("Sort the list.", [("List: [2, 1]", "[1, 2]")])
    assert original_instance_prompt("Add 2 and 3.", [shot], False).endswith(
        "Task: Sort the list.\nExample 1\nList: [2, 1]\nOutput: [1, 2]\n\nTask: Add 2 and 3.\n")


def scripted_original(prompt, max_new_tokens, seed):
    rng = random.Random(seed)
    if prompt.endswith("Is it classification?"):
        return rng.choice([" Yes", " No"])
    if prompt.endswith("Class label:"):
        return " Positive\nSentence: Lovely.\nClass label: Negative\nSentence: Bad."
    if prompt.startswith("Come up with examples"):
        return rng.choice(["Example 1\nWord: river\nOutput: a long stream", "Output: done"])
    lines = [f"{rng.choice(VERBS)} the {rng.choice(NOUNS)} in five sentences" for _ in range(3)]
    lines += [rng.choice(["Write a program to add numbers", "画一只猫。", "- Describe it now please"])]
    return " " + "\n9. ".join(lines)


def test_original_style_runs_the_authors_rules():
    si = SelfInstruct(scripted_original, seed=0, style="original")
    si.run(10)
    c = si.counts
    assert si.langs == ["en"] and all(t.lang == "en" for t in si.seed_tasks)
    assert c["rejected: write a program"] + c["rejected: starts with punctuation"] + \
        c["rejected: starts with a non-ASCII character"] > 0
    assert c["classification: yes"] > 0 and c["classification: no"] > 0 and c["tasks kept"] > 0
    assert sum(t.is_classification for t in si.clf_shots) == 3 and si.cfg.rouge_rule == "released"
    kept_cls = [t for t in si.generated if t.is_classification]
    assert all(t.instances == [("Sentence: Lovely.", "Positive"), ("Sentence: Bad.", "Negative")] for t in kept_cls)
    with pytest.raises(ValueError, match="style"):
        SelfInstruct(scripted_original, style="paper")
    with pytest.raises(ValueError, match="English"):
        SelfInstruct(scripted_original, style="original", lang="zh")


def test_a_mixed_run_never_puts_a_chinese_header_on_english_tasks():
    prompts = []

    def spy(prompt, max_new_tokens, seed):
        prompts.append(prompt)
        return scripted(prompt, max_new_tokens, seed)

    english = [t for t in load_seed_tasks() if t.lang == "en"]
    SelfInstruct(spy, seed_tasks=english, seed=0).run(6)
    headers = [p for p in prompts if p.startswith(("Here is a list", "下面是一些任务"))]
    assert len(headers) == 6 and all(p.startswith("Here is a list") for p in headers)


def test_released_rouge_rule_keeps_a_tie():
    pool = RougeIndex(["a b c d e f g h i j"])
    tie = "a b c d e f g x y z"                                       # LCS 7 of 10 and 10: F = 0.7 exactly
    assert check_instruction(tie, pool)[0] == "similar"
    assert check_instruction(tie, pool, FilterConfig(rouge_rule="released"))[0] is None
    with pytest.raises(ValueError, match="rule"):
        FilterConfig(rouge_rule="loose")


def test_identify_classification_asks_each_task_without_itself_as_an_example():
    tasks = [Task("Is the review positive or negative?", [("Great!", "positive")], True),
             Task("Write a poem about rain.", [("", "Rain falls.")], False),
             Task("Which planet is larger?", [("Mars, Venus", "Venus")], True)]
    prompts = []

    def by_keyword(prompt, max_new_tokens, seed):
        prompts.append(prompt)
        question = prompt.rsplit("Task: ", 1)[1]
        return " Yes" if "?" in question else " No" if "poem" in question else " maybe"

    assert identify_classification(by_keyword, tasks, tasks) == [True, False, True]
    assert all(p.count(t.instruction) == 1 for p, t in zip(prompts, tasks))     # only as the question
    assert identify_classification(lambda p, n, s: " hm", tasks[:1], tasks) == [None]
    with pytest.raises(ValueError, match="at least one example"):
        identify_classification(by_keyword, tasks, [])
    with pytest.raises(TypeError, match="callable"):
        identify_classification("gpt", tasks, tasks)


def test_without_filters_everything_that_parses_is_kept():
    si = SelfInstruct(scripted, seed=0, filters=False)
    si.run(15)
    c = si.counts
    assert not any(k.startswith(("rejected: keyword", "rejected: similar", "instance rejected")) for k in c)
    assert c["instructions passing filters"] == c["instructions generated"]
    assert any(x and x == y for t in si.generated for x, y in t.instances)        # an echo is kept too
    assert c["tasks kept"] > run_pipeline(0).counts["tasks kept"]
