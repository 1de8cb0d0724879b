"""The chapters' shared tasks: paired draws, honest test sets, the fine-tune and its memory count."""
import re

import pytest
import torch

from llmtap import corpus
from llmtap.instruct import Record
from llmtap.model import GPT, GPTConfig
from llmtap.rouge import rouge_l
import llmtap.tasks as tasks_module
from llmtap.tasks import (INSTRUCTION_METRICS, LORA_FAMILY, PEFT_METHODS, lora_family_run, PROMPT_INITS, activation_bytes, energy_shares, fine_tune, prompt_init_run, instruction_scores,
                          instruction_split, mapping_tasks, MORE_WORDINGS, peft_run, reword, template_task, truncated_update)


def test_mapping_tasks_pair_the_strategies():
    """Both strategies of one seed ask the same queries with the same labels: only the
    demonstrations differ, so the per-seed difference compares like with like."""
    for k in (0, 2, 5):
        balanced, random_ = mapping_tasks(k, 3, n=30, strategy="balanced"), mapping_tasks(k, 3, n=30, strategy="random")
        assert [(t.query, t.answer, t.labels) for t in balanced] == [(t.query, t.answer, t.labels) for t in random_]
        assert all(len(t.demos) == k and t.query not in dict(t.demos) for t in balanced + random_)
    assert any(a.demos != b.demos for a, b in zip(mapping_tasks(4, 3, 30, "balanced"), mapping_tasks(4, 3, 30, "random")))
    assert mapping_tasks(4, 3) == mapping_tasks(4, 3) != mapping_tasks(4, 4)


def test_mapping_tasks_heldout_queries():
    heldout = {w for c in range(len(corpus.CATEGORY_NAMES)) for lang in corpus.LANGS
               for w in corpus.category_items(c, lang, "test")}
    tasks = mapping_tasks(4, 0, n=40, query_split="test")
    assert all(t.query in heldout and not set(dict(t.demos)) & heldout for t in tasks)


def test_template_task_tests_on_unseen_events():
    task = template_task(n_train=50, n_test=40)
    assert len(task.train_pairs) == 100 and set(task.test_sets) == set(corpus.LANGS)
    train_contexts = " ".join(context for context, _ in task.train_pairs)
    for events in task.test_sets.values():
        assert len(events) == 40 and all(corpus.is_unseen_event(e.event_index) for e in events)
        assert not any(e.text in train_contexts for e in events)
    context, answer = task.train_pairs[0]
    assert context.endswith("心情") and answer in ("不好。", "一般。", "好。")
    assert {e.label for e in task.test_sets["en"]} == set(corpus.LABELS)


def test_fine_tune_counts_memory_and_learns(sharp_gpt):
    model, tok = sharp_gpt("abc→xyz", block_size=16)
    pairs = [("ab→", "x"), ("ba→", "y"), ("cc→", "z")] * 10
    history = fine_tune(model, tok, pairs, lr=1e-2, steps=30, seed=0, device="cpu", batch_size=6)
    n = sum(p.numel() for p in model.parameters())
    # fp32 weights, their gradients, Adam's state and the activations saved for backward
    assert history["memory"] == 4 * n + 4 * n + history["optimizer_bytes"] + history["activations"]
    assert history["activations"] > 0 and history["loss"][-1] < history["loss"][0]


def test_activation_bytes_count_what_backward_keeps(sharp_gpt):
    model, tok = sharp_gpt("abc→xyz", block_size=16)
    x = torch.randint(0, tok.vocab_size, (4, 12))
    full = activation_bytes(model, x, x)
    assert activation_bytes(model, torch.cat([x, x]), torch.cat([x, x])) == pytest.approx(2 * full, rel=0.1)
    for p in model.parameters():          # frozen weights: backward needs no layer inputs for their gradients
        p.requires_grad_(False)
    model.wte.weight.requires_grad_(True)
    assert 0 < activation_bytes(model, x, x) < full


def test_peft_run_builds_each_method(course):
    task = template_task(n_train=8, n_test=6)
    for name in PEFT_METHODS:
        model, history = peft_run(name, course.model, course.tokenizer, task, seed=0, device="cpu", steps=2)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        assert (trainable == total) == (name == "full fine-tuning"), name
        assert set(task.accuracy(model, course.tokenizer)) == set(corpus.LANGS)
    with pytest.raises(ValueError, match="choose one of"):
        peft_run("BitFit", course.model, course.tokenizer, task)


def test_lora_family_run_builds_each_member(course):
    from llmtap.lora import lora_layers
    from llmtap.qlora import QuantLinear
    task = template_task(n_train=8, n_test=6)
    built = {}
    for name in LORA_FAMILY:
        model, history = lora_family_run(name, course.model, course.tokenizer, task, seed=0, device="cpu", steps=2)
        layers = lora_layers(model)
        built[name] = (next(iter(layers.values())), history)
        assert set(task.accuracy(model, course.tokenizer)) == set(corpus.LANGS)
    lora, rs, dora = built["LoRA r=64"][0], built["rsLoRA r=64"][0], built["DoRA r=4"][0]
    assert lora.scaling == pytest.approx(8 / 64) and rs.scaling == pytest.approx(8 / 64 ** 0.5)
    assert dora.lora_magnitude_vector is not None and getattr(built["LoRA r=4"][0], "lora_magnitude_vector", None) is None
    assert isinstance(built["QLoRA r=4"][0].base_layer, QuantLinear)
    # 4-bit frozen weights: the QLoRA run's memory is smaller than LoRA's by most of the frozen bytes
    assert built["QLoRA r=4"][1]["memory"] < built["LoRA r=4"][1]["memory"]
    # PiSSA moves the principal part of W0 into A, B: the frozen weight is no longer the base weight
    pissa = built["PiSSA r=4"][0]
    base = course.model.get_submodule("h.0.attn.c_attn").weight
    assert not torch.equal(pissa.base_layer.weight, base)
    with pytest.raises(ValueError, match="choose one of"):
        lora_family_run("VeRA r=4", course.model, course.tokenizer, task)


def test_instruction_split_holds_out_whole_contents_in_every_wording():
    train, test = instruction_split(draws=600, per_task=5)
    key = lambda r: (r.instruction, r.input)
    assert not {key(r) for r in train} & {key(r) for r in test}          # a test record is never trained on
    assert len({key(r) for r in train}) == len(train)                       # and each record once
    trained_inputs = {(r.meta["task"], r.input, r.output) for r in train if r.input}
    assert not trained_inputs & {(r.meta["task"], r.input, r.output) for r in test if r.input}   # nor its content
    for task in corpus.INSTRUCTION_TASKS:
        seen = [r for r in test if r.meta == {"task": task, "phrasing": "seen"}]
        held = [r for r in test if r.meta == {"task": task, "phrasing": "held out"}]
        assert len(seen) == len(held) == 5
        assert [(r.input, r.output) for r in seen] == [(r.input, r.output) for r in held]      # same contents
        last = {wordings[-1] for wordings in corpus.INSTRUCTION_PHRASINGS[task].values()}
        if task not in ("list", "add"):                 # their wordings have numbers filled in
            assert {r.instruction for r in held} <= last
            assert not {r.instruction for r in seen + train if r.meta["task"] == task} & last
    assert instruction_split(draws=600, per_task=5) == (train, test)
    bigger_train, bigger_test = instruction_split(draws=1200, per_task=5)     # more draws never move a content across
    assert not {key(r) for r in bigger_train} & {key(r) for r in test}


def test_more_wordings_are_new_and_no_closer_to_the_held_out_one():
    known = set(corpus.alphabet())
    for task in corpus.INSTRUCTION_TASKS:
        for lang, world in corpus.INSTRUCTION_PHRASINGS[task].items():
            more = MORE_WORDINGS[task][lang]
            assert len(set(more)) == 4 and not set(more) & set(world)
            assert set(re.sub(r"\{\w+\}", "", "".join(more))) <= known          # the tokenizer spells them all
            # no extra wording is closer to the test's wording than the world's training wordings are
            closest_trained = max(rouge_l(w, world[-1]) for w in world[:-1])
            assert max(rouge_l(w, world[-1]) for w in more) <= closest_trained, (task, lang)
            assert all(set(re.findall(r"\{(\w+)\}", w)) == set(re.findall(r"\{(\w+)\}", world[0])) for w in more)


def test_reword_keeps_contents_and_spreads_the_wordings():
    train, test = instruction_split(draws=600, per_task=5)
    again = reword(train, seed=0)
    assert [(r.input, r.output, r.meta) for r in again] == [(r.input, r.output, r.meta) for r in train]
    assert again == reword(train, seed=0) and again != reword(train, seed=1)
    said = {r.instruction for r in again}
    new = [r for r in again if tasks_module.recognise_task(r.instruction) is None]    # in none of the world's wordings
    assert 0.45 < len(new) / len(again) < 0.7                   # four of seven wordings are new: 57% expected
    assert any(r.instruction.startswith("Give the sum of") for r in again) and "这个词在哪一类里？" in said
    for r in again:                                             # numbers and names carried into the new wording
        if r.meta["task"] == "add":
            a, b = map(int, re.findall(r"\d+", r.instruction))
            assert a + b == int(r.output)
    held = [r for r in test if r.meta["phrasing"] == "held out"]
    with pytest.raises(ValueError, match="held-out wording"):
        reword(held[:1])
    with pytest.raises(ValueError, match="not one of the corpus tasks"):
        reword([Record(instruction="Write a poem.", input="", output="a poem")])
    with pytest.raises(TypeError, match="Records"):
        reword([{"instruction": "x"}])
    with pytest.raises(ValueError, match="wordings has none"):
        reword(train[:5], wordings={})


def test_instruction_scores_by_task_and_wording(course):
    _, test = instruction_split(draws=300, per_task=2)
    answers, scores = instruction_scores(course.model, course.tokenizer, test, max_new_tokens=4)
    assert len(answers) == len(test)
    tasks = list(corpus.INSTRUCTION_TASKS)
    assert set(scores) == {f"{m} {t} {p}" for m in INSTRUCTION_METRICS for t in tasks + ["all"]
                           for p in ("seen", "held out", "both")}
    for m in INSTRUCTION_METRICS:
        assert scores[f"{m} all both"] == pytest.approx(sum(scores[f"{m} {t} both"] for t in tasks) / len(tasks))
    assert all(0 <= v <= 1 for v in scores.values())
    assert scores["stops all both"] == 0.0          # the base model never ends an answer within 4 tokens


def scripted_scores(monkeypatch, records, reply):
    """instruction_scores with a stand-in for CourseLM: ``reply(prompt)`` is (text, stops)."""
    class ScriptedLM:
        eos_id = 2

        def __init__(self, model, tokenizer):
            pass

        def generate_ids(self, prompts, max_new_tokens):
            return [[ord(ch) for ch in text] + ([self.eos_id] if stops else []) for text, stops in map(reply, prompts)]

        def decode(self, ids):
            return "".join(chr(i) for i in ids if i != self.eos_id)

    class Model:
        def eval(self):
            return self

    monkeypatch.setattr(tasks_module, "CourseLM", ScriptedLM)
    return instruction_scores(Model(), None, records)[1]


def test_instruction_scores_read_the_stop_and_the_first_line(monkeypatch):
    """For input a the model answers 'positive' and stops; for b it runs on after a newline; for c
    it runs on without one."""
    from llmtap.instruct import Record
    replies = {"a": "positive", "b": "positive\nInstruction: more", "c": "positiver, fox"}
    records = [Record("Is it good?", x, "positive", meta={"task": "sentiment", "phrasing": p})
               for x, p in [("a", "seen"), ("b", "held out"), ("c", "seen")]]
    scores = scripted_scores(monkeypatch, records, lambda p: (replies[p.split("Input: ")[1][0]], p.split("Input: ")[1][0] == "a"))
    assert scores["exact match sentiment seen"] == 0.5 and scores["exact match sentiment held out"] == 0.0
    assert scores["first line sentiment held out"] == 1.0 and scores["first line sentiment seen"] == 0.5
    assert scores["stops sentiment seen"] == 0.5 and scores["stops sentiment both"] == pytest.approx(1 / 3)


def test_instruction_scores_correct_asks_the_world(monkeypatch):
    """Any three fruits answer '列举3种水果。', a repeat does not; elsewhere "correct" is exact match."""
    from llmtap.instruct import Record
    replies = {"列举3种水果。": "桃子、梨、苹果", "说出3种水果。": "桃子、梨、梨", "Summarise it.": "7"}
    records = [Record("列举3种水果。", "", "苹果、香蕉、梨", meta={"task": "list"}),
               Record("说出3种水果。", "", "苹果、香蕉、梨", meta={"task": "list"}),
               Record("Summarise it.", "", "7", meta={"task": "other"})]     # not a world task: exact match
    scores = scripted_scores(monkeypatch, records, lambda p: (replies[p.split("Instruction: ")[1].split("\n")[0]], True))
    assert scores["correct list seen"] == 0.5 and scores["exact match list seen"] == 0.0
    assert scores["correct other seen"] == 1.0


def test_bad_inputs_say_what_to_change():
    with pytest.raises(ValueError, match="n_train"):
        template_task(n_train=0)
    with pytest.raises(ValueError, match="test_split"):
        template_task(test_split="train")          # testing on the training events would measure memory
    with pytest.raises(ValueError, match="query_split"):
        mapping_tasks(4, 0, query_split="dev")
    with pytest.raises(ValueError, match="strategy"):
        mapping_tasks(4, 0, strategy="nearest")
    with pytest.raises(ValueError, match="per_task"):
        instruction_split(per_task=0)


def test_prompt_init_run_starts_from_each_init(course):
    task = template_task(n_train=8, n_test=6)
    with pytest.raises(ValueError, match="choose one of"):
        prompt_init_run(course.model, course.tokenizer, task, "zeros")
    starts = {init: prompt_init_run(course.model, course.tokenizer, task, init, steps=1).prompt_tuning.n_tokens
              for init in PROMPT_INITS}
    assert set(starts.values()) == {10}          # every start is 10 tokens: texts are tiled or cut


def test_truncated_update_keeps_rank_k_of_each_matrix():
    torch.manual_seed(0)
    base = GPT(GPTConfig(vocab_size=30, block_size=8, n_layer=2, n_head=2, n_embd=16))
    fine = GPT(GPTConfig(vocab_size=30, block_size=8, n_layer=2, n_head=2, n_embd=16))     # another draw: a full-rank "update"
    kept = {n: p.clone() for n, p in base.named_parameters()}
    for k in (1, 3):
        cut = dict(truncated_update(base, fine, k).named_parameters())
        for name, p in base.named_parameters():
            delta = cut[name] - p
            if p.dim() == 2 and name != "wte.weight":
                assert torch.linalg.matrix_rank(delta, atol=1e-4) == k, name
                # the best rank-k approximation: its error is the energy of the singular values after k
                s = torch.linalg.svdvals(dict(fine.named_parameters())[name] - p)
                err = torch.linalg.matrix_norm(dict(fine.named_parameters())[name] - cut[name]) ** 2
                assert err.item() == pytest.approx((s[k:] ** 2).sum().item(), rel=1e-3), name
            else:                                      # embeddings, norms and biases take the whole update
                assert torch.allclose(cut[name], dict(fine.named_parameters())[name], atol=1e-6), name
    assert all(torch.equal(p, kept[n]) for n, p in base.named_parameters())      # the base is not touched
    full = max(min(p.shape) for n, p in base.named_parameters() if p.dim() == 2)
    big = dict(truncated_update(base, fine, full).named_parameters())
    assert all(torch.allclose(big[n], p, atol=1e-5) for n, p in fine.named_parameters())
    with pytest.raises(ValueError, match="k"):
        truncated_update(base, fine, 0)


def test_energy_shares():
    delta = torch.diag(torch.tensor([3.0, 2.0, 1.0, 0.0]))       # sigma^2 = 9, 4, 1, 0 of 14
    assert energy_shares(delta, (1, 2, 4, 16)) == pytest.approx({1: 9 / 14, 2: 13 / 14, 4: 1.0, 16: 1.0})
