"""Teaching the course model the loop's formats: corpus tasks, format documents, the short fine-tune."""
import json
import random

import pytest
import torch

from llmtap.model import GPT, GPTConfig
from llmtap.self_instruct import Task, instruction_prompt, parse_instances, parse_instructions, parse_yes_no
from llmtap import corpus
from llmtap.self_instruct import load_seed_tasks
from llmtap.teach_formats import (CLASSIFICATION_TASKS, DOCUMENT_MIX, SELF_INSTRUCT_PARTS, STAGES, WHY_NOT, WORLD_TASKS,
                                  check_world_instance, check_world_task, corpus_tasks, format_documents,
                                  measure_self_instruct, recognise_task, stage_two_accuracy, teach_formats,
                                  well_formed_share)
from llmtap.tokenizer import Tokenizer
from llmtap.train import collate_completions


def test_corpus_tasks_group_records_by_instruction():
    tasks = corpus_tasks(120, seed=0)
    assert len({t.instruction for t in tasks}) == len(tasks) and {t.lang for t in tasks} == {"en", "zh"}
    assert all(t.instances for t in tasks) and sum(len(t.instances) for t in tasks) <= 120
    kinds = {recognise_task(t.instruction)[0] for t in tasks}
    assert kinds == set(WORLD_TASKS) and "reverse" not in kinds          # the course model cannot spell
    assert all(t.is_classification == (recognise_task(t.instruction)[0] in CLASSIFICATION_TASKS) for t in tasks)
    assert all(check_world_task(t) is None for t in tasks)
    assert corpus_tasks(120, seed=0) == tasks
    held = corpus_tasks(120, seed=0, phrasing="held out")      # one wording per task and language, never taught
    assert not {t.instruction for t in held} & {t.instruction for t in corpus_tasks(600, seed=1)}
    assert all(check_world_task(t) is None for t in held)
    with pytest.raises(ValueError, match="n_records"):
        corpus_tasks(0)
    with pytest.raises(ValueError, match="phrasing"):
        corpus_tasks(10, phrasing="seen")


def test_format_documents_parse_back_to_what_they_were_built_from():
    tasks = corpus_tasks(120)
    by_instruction = {t.instruction: t for t in tasks}
    docs = format_documents(tasks, random.Random(1), n_documents=60)
    assert len(docs) == 60
    for i, (prompt, continuation) in enumerate(docs):
        if DOCUMENT_MIX[i % 4] == "instruction":      # the shown instructions, then new ones, all from the tasks
            shown = parse_instructions(prompt.split("\n", 1)[1])
            new = parse_instructions(continuation)
            assert len(new) == 2 and len(shown) == 8 and not set(new) & set(shown)
            assert set(shown + new) <= set(by_instruction)
            assert (prompt + continuation).startswith(instruction_prompt(shown, by_instruction[new[0]].lang))
        elif DOCUMENT_MIX[i % 4] == "classification":      # the yes/no answer is the task's own label
            task = by_instruction[prompt.rsplit("Task: ", 1)[1].split("\n")[0]]
            assert prompt.endswith("Classification:" if task.lang == "en" else "分类任务:")
            assert parse_yes_no(continuation) is task.is_classification
        else:                             # the instance parses back to one of the task's instances
            task = by_instruction[prompt.rsplit("Task: ", 1)[1].split("\n")[0]]
            assert prompt.endswith("Class label:" if task.is_classification else "Input:")
            pairs = parse_instances(continuation, output_first=task.is_classification)
            assert len(pairs) == 1 and pairs[0] in task.instances


def test_format_documents_bad_inputs():
    tasks = [Task(f"task number {i}", [("", str(i))]) for i in range(4)]
    assert len(format_documents(tasks, random.Random(0), 5)) == 5
    with pytest.raises(TypeError, match="list of Task"):
        format_documents(tasks[0], random.Random(0))
    with pytest.raises(TypeError, match="list of Task"):
        format_documents(["an instruction"], random.Random(0))
    with pytest.raises(TypeError, match="random.Random"):
        format_documents(tasks, 0)
    with pytest.raises(ValueError, match="at least 3"):
        format_documents(tasks[:2], random.Random(0))
    with pytest.raises(ValueError, match="at least one"):
        format_documents(tasks + [Task("a task without instances")], random.Random(0))
    with pytest.raises(ValueError, match="n_documents"):
        format_documents(tasks, random.Random(0), 0)
    with pytest.raises(ValueError, match="n_shown"):
        format_documents(tasks, random.Random(0), 3, n_shown=0)


def test_teach_formats_lowers_the_loss_on_format_documents():
    tasks = corpus_tasks(60)
    tok = Tokenizer(sorted({c for t in tasks for text in (t.instruction, *sum(t.instances, ())) for c in text}))
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=128, n_layer=2, n_head=2, n_embd=32))
    held_out = format_documents(tasks, random.Random(99), 12, n_shown=2, n_shots=2)
    rows = [(tok.encode(p, bos=True)[-(128 - len(tok.encode(c))):], tok.encode(c)) for p, c in held_out]   # fits 128
    x, y = collate_completions(rows, tok.pad_id)

    def loss():
        with torch.no_grad():
            return float(model.eval()(x, y)[1])
    before = loss()
    history = teach_formats(model, tok, tasks, steps=100, batch_size=8, lr=3e-3, n_shown=2, n_shots=2, device="cpu")
    after = loss()
    assert len(history["loss"]) == 10 and history["loss"][-1] < history["loss"][0]
    assert after < 0.6 * before, (before, after)


def test_teach_formats_bad_inputs():
    tok = Tokenizer("abc")
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=1, n_embd=8))
    with pytest.raises(TypeError, match="course GPT"):
        teach_formats("model", tok, corpus_tasks(12))
    with pytest.raises(TypeError, match="course GPT"):
        teach_formats(model, "tokenizer", corpus_tasks(12))
    with pytest.raises(ValueError, match="steps"):
        teach_formats(model, tok, corpus_tasks(12), steps=0)
    with pytest.raises(TypeError, match="list of Task"):
        teach_formats(model, tok, "tasks", steps=1)


# ----------------------------------------------------------------------------- is a generated task right?
def test_every_corpus_record_in_every_wording_is_recognised_and_right():
    rng = random.Random(3)
    for i in range(1500):
        r = corpus.instruction_example(rng, phrasing=("train", "held out")[i % 2])
        found = recognise_task(r["instruction"])
        assert found is not None and found[:2] in {(t, l) for t in corpus.INSTRUCTION_TASKS for l in corpus.LANGS}, r
        assert check_world_instance(*found, r["input"], r["output"]) is None, r


def test_world_check_names_what_is_wrong():
    assert recognise_task("列举3种水果。") == ("list", "zh", {"n": "3", "name": "水果"})
    assert recognise_task("What  is 3 plus 4?") == ("add", "en", {"a": "3", "b": "4"})
    assert recognise_task("What is 3 plus") is None and recognise_task("Describe a cat.") is None
    assert recognise_task("Is this word a kind of fruit or of animal?") == ("choose", "en", {"g1": "fruit", "g2": "animal"})
    cases = [(Task("What is 3 plus 4?", [("", "7")]), None),
             (Task("What is 3 plus 4?", [("", "7"), ("", "8")]), "wrong sum"),
             (Task("列举3种水果。", [("", "苹果、梨、桃子")]), None),
             (Task("列举3种水果。", [("", "苹果、梨、苹果")]), "not a list of that group"),       # a repeat
             (Task("列举3种水果。", [("", "苹果、梨")]), "not a list of that group"),             # too few
             (Task("Name 2 examples of fruit.", [("", "apple, dog")]), "not a list of that group"),
             (Task("把这个词翻译成英文。", [("羊", "sheep")]), None),
             (Task("把这个词翻译成英文。", [("羊", "cow")]), "wrong translation"),
             (Task("把这个词翻译成英文。", [("雨毛毛", "x")]), "the input is not a word of the course"),
             (Task("Which group does this word belong to?", [("sheep", "animal")]), None),
             (Task("Which group does this word belong to?", [("sheep", "动物")]), "wrong group"),
             (Task("这个词属于水果还是动物？", [("羊", "动物")]), None),
             (Task("这个词属于水果还是动物？", [("羊", "水果")]), "wrong group"),
             (Task("Which group is this word in: fruit or animal?", [("car", "vehicle")]), "the word is in neither group"),
             (Task("Write this word backwards.", [("drum", "murd")]), None),
             (Task("Write this word backwards.", [("drum", "drum")]), "not the word backwards"),
             (Task("Is the feeling of this sentence positive, neutral or negative?", [("hello", "positive")]),
              "the input is not an event sentence"),
             (Task("Name three rivers.", [("", "x")]), "not a task of the course world"),
             (Task("What is 3 plus 4?", []), "no instance")]
    for task, why in cases:
        assert check_world_task(task) == why, task
    rng = random.Random(0)
    e = corpus.sample_event(rng, "en", "test")
    wrong = next(label for label in ("positive", "neutral", "negative") if label != e.label)
    sentiment = "Is the feeling of this sentence positive, neutral or negative?"
    assert check_world_task(Task(sentiment, [(e.text, e.label)])) is None
    assert check_world_task(Task(sentiment, [(e.text, wrong)])) == "wrong feeling"


def test_measure_self_instruct_counts_both_pools_and_stage_two():
    def sums(prompt, max_new_tokens, seed):          # always the same two sums, always "No", always 20
        if prompt.endswith("Input:"):
            return " (none)\nOutput: 20\n\n"
        if prompt.endswith(("Classification:", "分类任务:")):
            return " No"
        return " What is 16 plus 4?\nTask 10: What is 2 plus 2?\n" if "Task 1:" in prompt else " 16加4等于多少？\n"

    seeds = [t for t in corpus_tasks(60) if t.lang == "en" and recognise_task(t.instruction)[0] != "add"]   # no near-copy
    m = measure_self_instruct(sums, rounds=3, seed_tasks=seeds)
    loop = set(STAGES) | {"well-formed share", "classification tasks kept", "classification identified, the run's instructions"}
    loop |= {f"not well formed: {why}" for why in WHY_NOT}
    assert set(m) == set(SELF_INSTRUCT_PARTS) and set(m["with the filters"]) == set(m["without the filters"]) == loop
    assert set(m["stage 2 alone"]) == {"classification identified, held-out wordings",
                                       "classification identified, general seed tasks"}
    assert set(m["the paper's filters only"]) == loop
    filtered, unfiltered = m["with the filters"], m["without the filters"]
    assert m["the paper's filters only"]["tasks kept"] == 2        # three equal samples: the course's checks pass them
    assert filtered["tasks kept"] == 2 and filtered["rejected: duplicate"] == 4      # rounds 2 and 3 repeat
    assert unfiltered["tasks kept"] == 6 and unfiltered["classification tasks kept"] == 0
    assert filtered["well-formed share"] == unfiltered["well-formed share"] == 0.5    # 16 + 4 = 20, 2 + 2 != 20
    assert filtered["not well formed: wrong sum"] == 1 and unfiltered["not well formed: wrong sum"] == 3
    assert filtered["classification identified, the run's instructions"] == 1.0       # sums: "No" is right
    held, general = corpus_tasks(60, seed=1, phrasing="held out"), load_seed_tasks()
    alone = m["stage 2 alone"]
    assert alone["classification identified, held-out wordings"] == sum(not t.is_classification for t in held) / len(held)
    assert alone["classification identified, general seed tasks"] == sum(not t.is_classification for t in general) / len(general)
    assert well_formed_share([]) == (0.0, {})
    assert set(measure_self_instruct(sums, rounds=1, seed_tasks=seeds, parts=("with the filters",))) == {"with the filters"}
    with pytest.raises(ValueError, match="unknown parts"):
        measure_self_instruct(sums, rounds=1, parts=("filtered",))


def test_stage_two_accuracy_counts_only_what_the_world_knows():
    said = [("What is 3 plus 4?", False), ("这个词属于水果还是动物？", True), ("Which group does this word belong to?", None),
            ("Describe a cat.", True)]
    assert stage_two_accuracy(said) == (2 / 3, 3)                 # unclear is wrong; the cat is not counted
    share, n = stage_two_accuracy([("Describe a cat.", True)])
    assert n == 0 and share != share                               # nan: nothing to measure


def test_shipped_taught_generator_loads_and_its_recipe_is_checked():
    from llmtap.checkpoints import read_checkpoint
    from llmtap.teach_formats import GENERATOR_PATH, TEACH_RECIPE, load_taught_model, teach_course_model, taught_generator
    tensors, meta = read_checkpoint(GENERATOR_PATH)
    assert {t.dtype for t in tensors.values()} == {torch.float16}          # half the size on disk
    assert json.loads(meta["extra"])["recipe"] == TEACH_RECIPE               # the file is this recipe's
    model, tok = load_taught_model()
    assert next(model.parameters()).dtype == torch.float32 and tok.vocab_size == model.config.vocab_size
    text = taught_generator(temperature=0)("Task: What is 3 plus 4?\nInput:", 8, 0)
    assert isinstance(text, str) and text
    with pytest.raises(ValueError, match="unknown recipe keys"):
        teach_course_model(step=3)


def test_sum_accuracy_asks_in_both_styles_and_parses_as_the_loop():
    import re
    from llmtap.teach_formats import sum_accuracy, sums_asked

    def operands(prompt):                                    # the last sum the prompt asks for
        return tuple(map(int, re.findall(r"(\d+)(?:加| plus )(\d+)", prompt)[-1]))

    def calculator(prompt, max_new_tokens, seed):            # right every time, in the format asked
        a, b = operands(prompt)
        return f" (none)\nOutput: {a + b}\n\n" if prompt.endswith("Input:") else f" {a + b}。"

    off_by_one = lambda prompt, n, seed: calculator(prompt, n, seed).replace("Output: ", "Output: 1")
    for style in ("plain", "instance"):
        assert sum_accuracy(calculator, n=10, style=style) == 1.0
    assert sum_accuracy(off_by_one, n=10, style="instance") == 0.0      # a 1 before the sum is never the sum
    assert sum_accuracy(lambda p, n, s: " nothing", n=4) == 0.0
    asked = []
    spy = lambda prompt, n, seed: asked.append(operands(prompt)) or ""
    shown = corpus_tasks(600, seed=1)
    assert sum_accuracy(spy, n=30, not_in=shown) == 0.0 and len(asked) == 30
    assert asked and not set(asked) & sums_asked(shown)                     # only sums the tasks never ask
    every_sum = [Task(f"What is {a} plus {b}?", [("", str(a + b))]) for a in range(21) for b in range(21)]
    assert sums_asked(every_sum) == {(a, b) for a in range(21) for b in range(21)}
    with pytest.raises(ValueError, match="no sum is left"):
        sum_accuracy(calculator, not_in=every_sum)
    with pytest.raises(TypeError, match="not_in must be a list of Task"):
        sum_accuracy(calculator, not_in="What is 3 plus 4?")
    with pytest.raises(ValueError, match="style must be one of"):
        sum_accuracy(calculator, style="chat")
    with pytest.raises(ValueError, match="n must be"):
        sum_accuracy(calculator, n=0)
    only_labels = [t for t in corpus_tasks(60) if t.is_classification]
    with pytest.raises(ValueError, match="2 ordinary"):
        sum_accuracy(calculator, seed_tasks=only_labels)
