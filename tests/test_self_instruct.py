import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import combinations

import pytest

from llmtap.rouge import rouge_l
from llmtap.self_instruct import (BLACKLIST, FilterConfig, GeneratorError, LMGenerator, OpenAIGenerator, RougeIndex,
                                  SelfInstruct, Task, blacklisted_word, check_instance, check_instruction,
                                  classification_prompt, instance_prompt, instruction_prompt, load_seed_tasks,
                                  parse_instances, parse_instructions, parse_yes_no, sample_instructions)


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


def test_task_records_and_validation():
    from llmtap.instruct import Record
    t = Task("把这个词翻译成英文。", [("苹果", "apple"), ("猫", "cat")])
    assert t.lang == "zh" and t.records() == [Record("把这个词翻译成英文。", "苹果", "apple"), Record("把这个词翻译成英文。", "猫", "cat")]
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


def test_instance_filters():
    seen = {("a", "b")}
    assert check_instance("x", "", seen) == "empty output"
    assert check_instance("same", " same ", seen) == "input equals output"
    assert check_instance("a", "b", seen) == "duplicate instance"
    assert check_instance("", "fine", seen) is None


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
                           " the winter\nOutput: cold and dark\n\nTask: more", " nothing useful"])
    lines = [f"{rng.choice(VERBS)} the {rng.choice(NOUNS)}." for _ in range(3)]
    lines += [rng.choice(["Draw a picture of the sea.", "Hi.", "Describe the river.", "画一只猫。"])]
    return " " + "\nTask 10: ".join(lines)


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
    for reason in ("keyword", "too short", "similar"):
        assert c[f"rejected: {reason}"] > 0, reason
    assert c["instance rejected: input equals output"] + c["instance rejected: empty output"] > 0
    assert len(si.rejected) == rejected
    instructions = [t.instruction for t in si.pool]
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
    pool, counts, index_size = [t.instruction for t in si.pool], dict(si.counts), len(si.index)
    with pytest.raises(GeneratorError, match="went away"):
        si.run(5)
    assert [t.instruction for t in si.pool] == pool and dict(si.counts) == counts and len(si.index) == index_size


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


def test_course_model_generator_fits_long_prompts():
    from llmtap.hf import load_lm
    from llmtap.prompting import CausalLM
    lm = load_lm("course", device="cpu")
    gen = LMGenerator(CausalLM(lm.model, lm.tokenizer, unknown="bytes"))
    long_prompt = instruction_prompt([t.instruction for t in load_seed_tasks()[20:30]], "zh")   # bytes: > 256 tokens
    assert len(gen.lm.encode(long_prompt, bos=True)) > 256
    out = gen(long_prompt, max_new_tokens=16, seed=0)
    assert isinstance(out, str) and out == gen(long_prompt, max_new_tokens=16, seed=0)
    with pytest.raises(TypeError):
        LMGenerator(lm.model)


# ----------------------------------------------------------------------------- the HTTP generator
class Handler(BaseHTTPRequestHandler):
    mode = "chat"
    seen = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Handler.seen.append((self.path, self.headers.get("Authorization"), body))
        mode = Handler.mode
        if mode == "slow":
            time.sleep(1.0)
        if mode == "error":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"model overloaded")
            return
        if mode == "chat" or mode == "slow":
            reply = {"choices": [{"message": {"role": "assistant", "content": " Name a colour.\nTask 10: Count the apples in the basket."}}]}
        elif mode == "completions":
            reply = {"choices": [{"text": " Explain how tides work."}]}
        elif mode == "no choices":
            reply = {"error": "nope"}
        else:                     # "not json"
            reply = None
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        try:
            self.wfile.write(b"<html>oops" if reply is None else json.dumps(reply).encode())
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_generator_chat_and_completions(server):
    Handler.mode, Handler.seen = "chat", []
    gen = OpenAIGenerator(server, model="local-model", api_key="sk-test", timeout=5)
    assert gen("Task 1: x\nTask 2:", 32, 7) == " Name a colour.\nTask 10: Count the apples in the basket."
    path, auth, body = Handler.seen[-1]
    assert path == "/v1/chat/completions" and auth == "Bearer sk-test"
    assert body["model"] == "local-model" and body["max_tokens"] == 32 and body["messages"][0]["content"].endswith("Task 2:")
    assert "sk-test" not in repr(gen)
    Handler.mode = "completions"
    gen = OpenAIGenerator(server + "/v1/", model="m", endpoint="completions", timeout=5)
    assert gen("prompt", 8) == " Explain how tides work."
    assert Handler.seen[-1][0] == "/v1/completions" and Handler.seen[-1][1] is None
    Handler.mode = "chat"
    si = SelfInstruct(OpenAIGenerator(server, model="m", timeout=5), seed=0)
    si.step()
    assert si.counts["instructions generated"] == 2


@pytest.mark.parametrize("mode, words", [("slow", "did not answer within"), ("not json", "not JSON"),
                                         ("no choices", "without choices"), ("error", "HTTP 500.*overloaded")])
def test_http_generator_failures_are_clear_and_keep_the_pool(server, mode, words):
    Handler.mode = "chat"
    si = SelfInstruct(OpenAIGenerator(server, model="m", timeout=0.3), seed=0)
    before = [t.instruction for t in si.pool]
    Handler.mode = mode
    with pytest.raises(GeneratorError, match=words):
        si.step()
    assert [t.instruction for t in si.pool] == before and len(si.index) == len(before) and not si.counts


def test_http_generator_unreachable_and_bad_arguments():
    with pytest.raises(GeneratorError, match="cannot reach"):
        OpenAIGenerator("http://127.0.0.1:9", model="m", timeout=2)("hi")
    with pytest.raises(ValueError, match="http"):
        OpenAIGenerator("127.0.0.1:8000", model="m")
    with pytest.raises(ValueError, match="endpoint"):
        OpenAIGenerator("http://x", model="m", endpoint="embeddings")
    with pytest.raises(ValueError, match="model"):
        OpenAIGenerator("http://x", model="")
    with pytest.raises(ValueError, match="timeout"):
        OpenAIGenerator("http://x", model="m", timeout=0)


# ----------------------------------------------------------------------------- checkers and widget
from llmtap import checks  # noqa: E402
from llmtap.self_instruct import rouge_filter  # noqa: E402


def stub(*args):
    raise NotImplementedError


def lcs_dp(a, b):
    L = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            L[i][j] = L[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(L[i - 1][j], L[i][j - 1])
    return L[-1][-1]


def lcs_substring(a, b):          # longest common *substring*: a classic mix-up
    best = 0
    for i in range(len(a)):
        for j in range(len(b)):
            k = 0
            while i + k < len(a) and j + k < len(b) and a[i + k] == b[j + k]:
                k += 1
            best = max(best, k)
    return best


def keep_right(instruction, pool):
    from llmtap.rouge import rouge_l
    return blacklisted_word(instruction) is None and all(rouge_l(instruction, p) < 0.7 for p in pool)


def keep_rouge_score(instruction, pool):   # the reference tokenizer: blind to Chinese
    from rouge_score import rouge_scorer
    sc = rouge_scorer.RougeScorer(["rougeL"])
    return blacklisted_word(instruction) is None and all(sc.score(p, instruction)["rougeL"].fmeasure < 0.7 for p in pool)


def labels_right(p, c):
    ids = p + c
    return ids[:-1], [-100] * (len(p) - 1) + c


def labels_unmasked(p, c):
    ids = p + c
    return ids[:-1], ids[1:]


def labels_unshifted(p, c):
    ids = p + c
    return ids[:-1], [-100] * len(p) + c[:-1]


@pytest.mark.parametrize("check, fn, ok, phrase", [
    (checks.check_lcs, lcs_dp, True, "correct"),
    (checks.check_lcs, lcs_substring, False, "not right yet"),
    (checks.check_lcs, stub, False, "not solved yet"),
    (checks.check_keep_instruction, keep_right, True, "correct"),
    (checks.check_keep_instruction, keep_rouge_score, False, "Chinese near-duplicate"),
    (checks.check_keep_instruction, lambda i, p: True, False, "not right yet"),
    (checks.check_keep_instruction, stub, False, "not solved yet"),
    (checks.check_sft_labels, labels_right, True, "correct"),
    (checks.check_sft_labels, labels_unmasked, False, "-100"),
    (checks.check_sft_labels, labels_unshifted, False, "not right yet"),
    (checks.check_sft_labels, stub, False, "not solved yet"),
])
def test_chapter05_checkers(capsys, check, fn, ok, phrase):
    assert check(fn) is ok
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and phrase in out[0], out


def test_rouge_filter_and_threshold_widget():
    import matplotlib
    matplotlib.use("Agg")
    import numpy as np

    from llmtap import widgets
    pool = ["Write a short story about a brave dog.", "写一首关于春天的诗。"]
    candidates = ["Write a short story about a brave cat.", "写一首关于夏天的诗。", "Explain how tides work.",
                  "Explain how the tides work.", "List three fruits."]
    kept, rejected = rouge_filter(candidates, pool, 0.7)
    assert kept == ["Explain how tides work.", "List three fruits."]
    assert [t for t, _ in rejected] == candidates[:2] + ["Explain how the tides work."]
    assert all(s >= 0.7 for _, s in rejected)
    assert rouge_filter(candidates, pool, 1.0)[0] == candidates          # nothing is identical
    with pytest.raises(ValueError):
        rouge_filter(candidates, pool, 0)
    with pytest.raises(TypeError):
        rouge_filter("one text", pool)
    pool_scores = np.array([rouge_l_many_row(c, pool) for c in candidates])
    cand_scores = np.array([rouge_l_many_row(c, candidates) for c in candidates])
    np.fill_diagonal(cand_scores, 0)
    for t in (0.3, 0.5, 0.7, 0.9, 1.0):
        want = [c in rouge_filter(candidates, pool, t)[0] for c in candidates]
        assert widgets.incremental_keep(pool_scores, cand_scores, t) == want
    ui = widgets.rouge_threshold_explorer(candidates, pool)
    slider = ui.children[0]
    slider.value = 0.95                       # redraws without error
    assert slider.value == 0.95
    with pytest.raises(ValueError):
        widgets.rouge_threshold_explorer([], pool)
    with pytest.raises(ValueError):
        widgets.incremental_keep(pool_scores, cand_scores[:2], 0.7)


def rouge_l_many_row(text, pool):
    from llmtap.rouge import rouge_l_many
    return rouge_l_many(text, pool)


def test_hugging_face_generator_and_responses():
    from llmtap.hf import load_lm
    from llmtap.instruct import Record, generate_responses
    lm = load_lm("random-gpt2", device="cpu")
    gen = LMGenerator(lm, temperature=0.0)
    prompt = instruction_prompt([t.instruction for t in load_seed_tasks()[:8]], "zh")   # > 256 byte tokens
    out = gen(prompt, max_new_tokens=8)
    assert isinstance(out, str) and out == gen(prompt, max_new_tokens=8)
    si = SelfInstruct(gen, seed=0, max_new_tokens=8)
    si.step()
    assert si.counts["prompts"] == 1
    answers = generate_responses(lm, [Record("Name a fruit.", "", "apple")], max_new_tokens=4)
    assert len(answers) == 1 and isinstance(answers[0], str) and "\n" not in answers[0]


# ----------------------------------------------------------------------------- teaching the formats
def test_corpus_tasks_group_records_by_instruction():
    from llmtap.self_instruct import corpus_tasks
    tasks = corpus_tasks(120, seed=0)
    assert len({t.instruction for t in tasks}) == len(tasks) and {t.lang for t in tasks} == {"en", "zh"}
    assert all(t.instances for t in tasks) and sum(len(t.instances) for t in tasks) <= 120
    labels = {t.instruction: t.is_classification for t in tasks}
    assert labels["这个词属于哪一类？"] and not labels["Write this word backwards."]
    assert corpus_tasks(120, seed=0) == tasks
    with pytest.raises(ValueError, match="n_records"):
        corpus_tasks(0)


def test_format_documents_parse_back_to_what_they_were_built_from():
    from llmtap.self_instruct import corpus_tasks, format_documents
    tasks = corpus_tasks(120)
    by_instruction = {t.instruction: t for t in tasks}
    docs = format_documents(tasks, random.Random(1), n_documents=60)
    assert len(docs) == 60
    for i, (prompt, continuation) in enumerate(docs):
        if i % 3 == 0:                    # the shown instructions, then new ones, all from the tasks
            shown = parse_instructions(prompt.split("\n", 1)[1])
            new = parse_instructions(continuation)
            assert len(new) == 2 and len(shown) == 8 and not set(new) & set(shown)
            assert set(shown + new) <= set(by_instruction)
            assert (prompt + continuation).startswith(instruction_prompt(shown, by_instruction[new[0]].lang))
        elif i % 3 == 1:                  # the yes/no answer is the task's own label
            task = by_instruction[prompt.rsplit("Task: ", 1)[1].split("\n")[0]]
            assert prompt.endswith("Classification:" if task.lang == "en" else "分类任务:")
            assert parse_yes_no(continuation) is task.is_classification
        else:                             # the instance parses back to one of the task's instances
            task = by_instruction[prompt.rsplit("Task: ", 1)[1].split("\n")[0]]
            assert prompt.endswith("Class label:" if task.is_classification else "Input:")
            pairs = parse_instances(continuation, output_first=task.is_classification)
            assert len(pairs) == 1 and pairs[0] in task.instances


def test_format_documents_bad_inputs():
    from llmtap.self_instruct import format_documents
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
    import torch
    from llmtap.model import GPT, GPTConfig
    from llmtap.self_instruct import corpus_tasks, format_documents, teach_formats
    from llmtap.tokenizer import Tokenizer
    from llmtap.train import collate_completions
    tasks = corpus_tasks(60)
    tok = Tokenizer(sorted({c for t in tasks for text in (t.instruction, *sum(t.instances, ())) for c in text}))
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=128, n_layer=2, n_head=2, n_embd=32))
    held_out = format_documents(tasks, random.Random(99), 12, n_shown=2, n_shots=2)
    rows = [(tok.encode(p, bos=True)[-60:], tok.encode(c)) for p, c in held_out]
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
    from llmtap.model import GPT, GPTConfig
    from llmtap.self_instruct import corpus_tasks, teach_formats
    from llmtap.tokenizer import Tokenizer
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
