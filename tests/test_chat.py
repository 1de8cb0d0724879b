"""Chat templates, the assistant-token mask and chat labels: the rendered text and the mask equal
transformers' ``apply_chat_template``, and each labelling bug is caught by the invariant it breaks."""
import string

import pytest
import torch

from llmtap.chat import (BUGS, INVARIANTS, TEMPLATES, Rendered, assistant_turns, chat_labels, check_labels,
                         check_messages, collate_chat, render, token_mask)
from llmtap.conversations import Conversation
from llmtap.tokenizer import Tokenizer

SYSTEM = {"role": "system", "content": "Be brief."}
SINGLE = [{"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "apple"}]
CHINESE = [SYSTEM, {"role": "user", "content": "把这个词翻译成英文：苹果"}, {"role": "assistant", "content": "apple"}]
MULTI = [SYSTEM, *SINGLE, {"role": "user", "content": "Two more?"},
         {"role": "assistant", "content": "pear,\n  plum"}]
OPEN = [*SINGLE, {"role": "user", "content": "And a vegetable?"}]
USER_ONLY = SINGLE[:1]

CONVERSATIONS = {"chatml": [SINGLE, CHINESE, MULTI, OPEN, USER_ONLY],
                 "human-assistant": [SINGLE, CHINESE, MULTI, OPEN, USER_ONLY],
                 "alpaca": [SINGLE, USER_ONLY, CHINESE[1:]]}
CASES = [(name, k, generation_prompt) for name, conversations in CONVERSATIONS.items()
         for k in range(len(conversations)) for generation_prompt in (False, True)
         if not (name == "alpaca" and generation_prompt and len(conversations[k]) == 2)]
ALL_TEXT = "".join(m["content"] for c in CONVERSATIONS.values() for conv in c for m in conv)


@pytest.fixture(scope="module")
def hf_tokenizer():
    """A Hugging Face fast tokenizer built offline: one token per character (WordLevel over
    single characters), <bos>/<eos>/<pad> and the ChatML marks as special tokens."""
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    chars = sorted(set(string.printable) | set(ALL_TEXT) | set("【】"))
    vocab = {"[UNK]": 0, **{c: i + 1 for i, c in enumerate(chars)}}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Split(tokenizers.Regex(r"[\s\S]"), behavior="isolated")
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="[UNK]",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"])


def ours(name, messages, generation_prompt, tokenizer):
    return render(messages, name, add_generation_prompt=generation_prompt, bos_token=tokenizer.bos_token,
                  eos_token=tokenizer.eos_token)


# ----------------------------------------------------------------------------- render
@pytest.mark.parametrize("name,k,generation_prompt", CASES)
def test_render_equals_transformers(hf_tokenizer, name, k, generation_prompt):
    messages = CONVERSATIONS[name][k]
    expected = hf_tokenizer.apply_chat_template(messages, chat_template=TEMPLATES[name], tokenize=False,
                                                add_generation_prompt=generation_prompt)
    assert ours(name, messages, generation_prompt, hf_tokenizer).text == expected


def test_the_templates_write_what_the_chapter_says():
    r = render(MULTI, "chatml")
    assert r.text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nName a fruit.<|im_end|>\n"
                      "<|im_start|>assistant\napple<|im_end|>\n<|im_start|>user\nTwo more?<|im_end|>\n"
                      "<|im_start|>assistant\npear,\n  plum<|im_end|>\n")
    assert r.assistant_texts() == ["apple<|im_end|>", "pear,\n  plum<|im_end|>"]
    r = render(MULTI, "human-assistant", bos_token="<bos>")
    assert r.text == ("<bos>Be brief.\nHuman: Name a fruit.\nAssistant: apple<eos>\nHuman: Two more?\n"
                      "Assistant: pear,\n  plum<eos>\n")
    assert r.marked() == ("<bos>Be brief.\nHuman: Name a fruit.\nAssistant: 【apple<eos>】\nHuman: Two more?\n"
                          "Assistant: 【pear,\n  plum<eos>】\n")
    r = render(SINGLE, "alpaca", eos_token="</s>")
    assert r.text == ("Below is an instruction that describes a task. Write a response that appropriately completes "
                      "the request.\n\n### Instruction:\nName a fruit.\n\n### Response:\napple</s>")
    assert r.assistant_texts() == ["apple</s>"]
    assert render(Conversation(SINGLE), "chatml") == render(SINGLE, "chatml")


@pytest.mark.parametrize("name", TEMPLATES)
def test_the_generation_prompt_is_where_training_answers_begin(name):
    """What the model reads at inference (the generation prompt) is exactly the text before the
    answer in training: no stray space or newline between them."""
    for messages in CONVERSATIONS[name]:
        if messages[-1]["role"] != "assistant":
            continue
        full = render(messages, name, bos_token="<bos>")
        prompt = render(messages[:-1], name, add_generation_prompt=True, bos_token="<bos>")
        assert full.text.startswith(prompt.text)
        assert full.assistant_spans[-1][0] == len(prompt.text)


# ----------------------------------------------------------------------------- masks
@pytest.mark.parametrize("name,k,generation_prompt", CASES)
def test_mask_equals_transformers_assistant_masks(hf_tokenizer, name, k, generation_prompt):
    messages = CONVERSATIONS[name][k]
    out = hf_tokenizer.apply_chat_template(messages, chat_template=TEMPLATES[name], tokenize=True, return_dict=True,
                                           return_assistant_tokens_mask=True, add_generation_prompt=generation_prompt)
    ids, mask = token_mask(ours(name, messages, generation_prompt, hf_tokenizer), hf_tokenizer)
    assert ids == list(out["input_ids"])
    assert mask == [bool(m) for m in out["assistant_masks"]]
    assert any(mask) == any(m["role"] == "assistant" for m in messages)
    if name != "chatml":              # the course tokenizer reads <bos> and <eos> as one token each, too
        course_ids, course_mask = token_mask(ours(name, messages, generation_prompt, hf_tokenizer),
                                             Tokenizer.from_text(ALL_TEXT))
        assert len(course_ids) == len(ids) and course_mask == mask


def test_course_tokenizer_mask_with_byte_fallback():
    tok = Tokenizer("abcdefghijklmnopqrstuvwxyzHA: \n")          # no "é", no "🍎": several byte tokens each
    messages = [{"role": "user", "content": "a é"}, {"role": "assistant", "content": "🍎 ok"}]
    rendered = render(messages, "human-assistant", bos_token="<bos>")
    ids, mask = token_mask(rendered, tok)
    assert ids[0] == tok.bos_id and not mask[0]
    assert len(ids) == len(rendered.text) - 2 * (len("<eos>") - 1) + (2 - 1) + (4 - 1)
    assert tok.decode(ids) == rendered.text.replace("<bos>", "").replace("<eos>", "")
    learned = [i for i, m in zip(ids, mask) if m]
    assert learned[:4] == [3 + b for b in "🍎".encode()] and learned[-1] == tok.eos_id
    assert tok.decode(learned) == "🍎 ok"
    e_bytes = [3 + b for b in "é".encode()]
    at = next(k for k in range(len(ids)) if ids[k:k + 2] == e_bytes)
    assert mask[at:at + 2] == [False, False]
    before = Rendered(rendered.text[:rendered.assistant_spans[0][0]])            # "<bos>Human: a é\nAssistant: "
    assert assistant_turns(mask) == [(len(token_mask(before, tok)[0]), len(ids) - 1)]   # all but the last "\n"
    x, y = chat_labels(ids, mask)
    assert tok.decode(y[y != -100].tolist(), skip_special=False) == "🍎 ok<eos>"
    assert check_labels(x, y, (ids, mask), eos_id=tok.eos_id) == {}


def test_labels_train_every_answer_or_the_last_one():
    tok = Tokenizer.from_text(ALL_TEXT)
    ids, mask = token_mask(render(MULTI, "human-assistant", bos_token="<bos>"), tok)
    x, y = chat_labels(ids, mask)
    assert x.tolist() == ids[:-1]
    targets = [tok.decode([t], skip_special=False) for t in y.tolist() if t != -100]
    assert "".join(targets) == "apple<eos>pear,\n  plum<eos>"
    _, y_last = chat_labels(ids, mask, last_turn_only=True)
    assert tok.decode(y_last[y_last != -100].tolist()) == "pear,\n  plum"
    rows = [token_mask(render(c, "human-assistant", bos_token="<bos>"), tok) for c in (SINGLE, MULTI)]
    x, y = collate_chat(rows, tok.pad_id)
    assert x.shape == y.shape == (2, len(rows[1][0]) - 1)
    n = len(rows[0][0])
    assert (x[0, n - 1:] == tok.pad_id).all() and (y[0, n - 1:] == -100).all()
    assert torch.equal(y[1], chat_labels(*rows[1])[1])


# ----------------------------------------------------------------------------- bugs and invariants
@pytest.fixture(scope="module")
def rows():
    tok = Tokenizer.from_text(ALL_TEXT)
    return tok, [token_mask(render(c, "human-assistant", bos_token="<bos>"), tok) for c in (SINGLE, MULTI, CHINESE)]


@pytest.mark.parametrize("last_turn_only", [False, True])
def test_correct_labels_keep_every_invariant(rows, last_turn_only):
    tok, batch = rows
    x, y = collate_chat(batch, tok.eos_id, last_turn_only=last_turn_only)          # pad == eos is fine
    assert check_labels(x, y, batch, eos_id=tok.eos_id, pad_id=tok.eos_id, last_turn_only=last_turn_only) == {}


@pytest.mark.parametrize("bug", BUGS)
def test_each_bug_breaks_exactly_its_invariant(rows, bug):
    tok, batch = rows
    x, y = collate_chat(batch, tok.eos_id, bug=bug)                                 # pad_id == eos_id
    problems = check_labels(x, y, batch, eos_id=tok.eos_id, pad_id=tok.eos_id, raise_error=False)
    assert set(problems) == {BUGS[bug].breaks}
    assert problems[BUGS[bug].breaks].startswith("row 0, position ")
    with pytest.raises(ValueError, match=rf"1 invariant.*\n{BUGS[bug].breaks} \(.*\): row 0, position \d+"):
        check_labels(x, y, batch, eos_id=tok.eos_id, pad_id=tok.eos_id)
    one_x, one_y = chat_labels(*batch[1], bug=bug, pad_id=tok.eos_id)             # one row, 1-d
    assert set(check_labels(one_x, one_y, batch[1], eos_id=tok.eos_id, raise_error=False)) == {BUGS[bug].breaks}


def test_last_turn_only_is_a_switch_the_check_follows(rows):
    tok, batch = rows
    every, last = collate_chat(batch, tok.pad_id), collate_chat(batch, tok.pad_id, last_turn_only=True)
    problems = check_labels(*last, batch, eos_id=tok.eos_id, raise_error=False)
    assert set(problems) == {"turns"} and problems["turns"].startswith("row 1, ") and "turn 0" in problems["turns"]
    problems = check_labels(*every, batch, eos_id=tok.eos_id, last_turn_only=True, raise_error=False)
    assert set(problems) == {"turns"} and "last_turn_only=True" in problems["turns"]


def test_pad_is_eos_is_harmless_only_when_pad_differs(rows):
    tok, batch = rows
    x, y = collate_chat(batch, tok.pad_id, bug="pad-is-eos")
    assert check_labels(x, y, batch, eos_id=tok.eos_id, pad_id=tok.pad_id) == {}
    assert set(BUGS) == {"off-by-one", "late-start", "pad-is-eos", "train-on-prompt"}
    assert {b.breaks for b in BUGS.values()} | {"turns"} == set(INVARIANTS)


# ----------------------------------------------------------------------------- bad input
def test_bad_messages_name_the_message():
    with pytest.raises(ValueError, match=r"message 1 has role 'bot'; roles are \('system', 'user', 'assistant'\)"):
        render([SINGLE[0], {"role": "bot", "content": "hi"}], "chatml")
    with pytest.raises(ValueError, match=r"message 2 has role 'tool'.*tool turns"):
        render([*SINGLE, {"role": "tool", "content": "{}"}], "chatml")
    with pytest.raises(ValueError, match=r"message 1 \(assistant\) has content of type list; content must be a str"):
        render([SINGLE[0], {"role": "assistant", "content": ["apple"]}], "chatml")
    with pytest.raises(ValueError, match="message 0 must be a dict with 'role' and 'content'"):
        render([{"role": "user"}], "chatml")
    with pytest.raises(ValueError, match="message 1 is a system message"):
        render([SINGLE[0], SYSTEM], "chatml")
    with pytest.raises(ValueError, match="non-empty list"):
        check_messages([])


def test_bad_templates():
    with pytest.raises(ValueError, match=r"unknown template 'vicuna': give one of \('chatml', 'human-assistant', "):
        render(SINGLE, "vicuna")
    with pytest.raises(TypeError):
        render(SINGLE, None)
    two_users = [SINGLE[0], {"role": "user", "content": "And?"}]
    with pytest.raises(ValueError, match=r"'alpaca' template refuses these messages: .*one user message.*roles user, "
                                         r"user"):
        render(two_users, "alpaca")
    with pytest.raises(ValueError, match="refuses these messages: .*there already"):
        render(SINGLE, "alpaca", add_generation_prompt=True)
    with pytest.raises(ValueError, match="refuses these messages: no system here"):
        render([SYSTEM, *SINGLE], "{% if messages[0].role == 'system' %}{{ raise_exception('no system here') }}"
                                  "{% endif %}")
    with pytest.raises(ValueError, match="does not parse, line 1"):
        render(SINGLE, "{% generation %}{{ messages[0].content }}")
    with pytest.raises(ValueError, match="keep generation blocks at the top level"):
        render(SINGLE, "{% set a %}{% generation %}{{ messages[1].content }}{% endgeneration %}{% endset %}A{{ a }}")
    with pytest.raises(TypeError, match="eos_token"):
        render(SINGLE, "chatml", eos_token=2)


def test_bad_label_input():
    tok = Tokenizer.from_text(ALL_TEXT)
    ids, mask = token_mask(render(SINGLE, "human-assistant", bos_token="<bos>"), tok)
    with pytest.raises(TypeError, match="fast tokenizer"):
        token_mask(render(SINGLE, "chatml"), object())
    with pytest.raises(TypeError, match="Rendered"):
        token_mask("text", tok)
    with pytest.raises(ValueError, match="ids has .* tokens but mask has"):
        chat_labels(ids, mask[:-1])
    with pytest.raises(ValueError, match="nothing to learn.*add_generation_prompt=True"):
        chat_labels(*token_mask(render(USER_ONLY, "human-assistant", add_generation_prompt=True), tok))
    with pytest.raises(ValueError, match="token 0 is the assistant's"):
        chat_labels([5, 6], [True, True])
    with pytest.raises(ValueError, match=r"bug must be None or one of \('off-by-one'"):
        chat_labels(ids, mask, bug="typo")
    with pytest.raises(ValueError, match="give pad_id"):
        chat_labels(ids, mask, bug="pad-is-eos")
    with pytest.raises(ValueError, match="row 1 must be an \\(ids, mask\\) pair"):
        collate_chat([(ids, mask), ids], tok.pad_id)
    x, y = collate_chat([(ids, mask)], tok.pad_id)
    with pytest.raises(ValueError, match="the batch has 1 rows but 2"):
        check_labels(x, y, [(ids, mask)] * 2, eos_id=tok.eos_id)
    assert Rendered("ab").assistant_spans == []
