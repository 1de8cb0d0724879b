"""Supervised fine-tuning: the prompt format, labels masked to the response, full and LoRA
fine-tuning, and the model's answers."""
import pytest
import torch

from llmtap.hf import load_lm
from llmtap.instruct import Record
from llmtap.lm import CourseLM
from llmtap.model import GPT, GPTConfig
from llmtap.chat import check_labels
from llmtap.sft import (chat_batches, chat_prompt, chat_rows, chat_sft, encode_sft, format_prompt, generate_responses,
                        record_messages, sft, sft_pairs)
from llmtap.tokenizer import Tokenizer
from llmtap.train import TrainConfig, collate_completions, completion_batches, train

RECORDS = [Record("把这个词翻译成英文。", "苹果", "apple", meta={"category": "translate"}),
           Record("Name 2 fruits.", "", "apple, pear"),
           Record("Write this word backwards.", "cat", "tac")]
TOKENIZER = Tokenizer.from_text("把这个词翻译成英文。苹果")


def test_format_prompt():
    assert format_prompt(RECORDS[2]) == "Instruction: Write this word backwards.\nInput: cat\nResponse: "
    assert format_prompt(RECORDS[1]) == "Instruction: Name 2 fruits.\nResponse: "
    chat = Record("More?", "", "x", history=[("Q", "A")])
    assert format_prompt(chat) == "Instruction: Q\nResponse: A\nInstruction: More?\nResponse: "
    with pytest.raises(TypeError):
        format_prompt({"instruction": "a"})


def test_labels_are_masked_to_the_response():
    examples = encode_sft(RECORDS, TOKENIZER)
    x, y = collate_completions(examples, TOKENIZER.pad_id)
    assert x.shape == y.shape == (3, max(len(p) + len(c) for p, c in examples) - 1)
    for i, (p, c) in enumerate(examples):
        assert c[-1] == TOKENIZER.eos_id                                  # learns to stop
        assert (y[i, :len(p) - 1] == -100).all()                          # prompt: no loss
        assert y[i, len(p) - 1:len(p) + len(c) - 1].tolist() == c        # response (and <eos>): the labels
        assert (y[i, len(p) + len(c) - 1:] == -100).all()                 # padding: no loss
        assert x[i, :len(p) + len(c) - 1].tolist() == (p + c)[:-1]
        assert TOKENIZER.decode(c) == RECORDS[i].output
    assert int((y != -100).sum()) == sum(len(c) for _, c in examples)
    with pytest.raises(ValueError, match="record 0"):
        encode_sft(RECORDS, TOKENIZER, max_len=10)
    with pytest.raises(TypeError):
        encode_sft(RECORDS, object())
    with pytest.raises(ValueError, match=r"record 1 .*empty output.*records.drop"):
        encode_sft([RECORDS[0], Record("Say nothing.", "", " ")], TOKENIZER)


def test_unmasked_labels_cover_the_prompt_but_never_the_padding():
    examples = encode_sft(RECORDS, TOKENIZER)
    x, y = collate_completions(examples, TOKENIZER.pad_id, mask_prompt=False)
    x_masked, y_masked = collate_completions(examples, TOKENIZER.pad_id)
    assert torch.equal(x, x_masked)
    for i, (p, c) in enumerate(examples):
        n = len(p) + len(c) - 1
        assert y[i, :n].tolist() == (p + c)[1:]                            # labels = input_ids shifted by one
        assert (y[i, n:] == -100).all()
        assert torch.equal(y[i, len(p) - 1:], y_masked[i, len(p) - 1:])   # the response's labels are the same
    batch = next(completion_batches(TOKENIZER, sft_pairs(RECORDS[:1]), 2, eos=True, mask_prompt=False))
    assert torch.equal(batch[1][0], y[0, :batch[1].shape[1]])


def test_eos_false_leaves_the_stop_untrained():
    _, y = next(completion_batches(TOKENIZER, sft_pairs(RECORDS[:1]), 1, eos=False))
    _, y_eos = next(completion_batches(TOKENIZER, sft_pairs(RECORDS[:1]), 1, eos=True))
    assert TOKENIZER.eos_id not in y.tolist()[0] and y_eos[0, -1] == TOKENIZER.eos_id
    assert y_eos.shape[1] == y.shape[1] + 1


def test_grouping_by_length_pads_less_and_is_seeded():
    pairs = [("Instruction: " + "x" * n, "y" * (1 + n % 3)) for n in range(1, 40)]
    tok = Tokenizer.from_text("Instruction: xy")
    plain = completion_batches(tok, pairs, batch_size=4, seed=0)
    grouped = completion_batches(tok, pairs, batch_size=4, seed=0, group_by_length=True)
    padding = lambda batch: (batch[0] == tok.pad_id).float().mean().item()
    plain_batches = [next(plain) for _ in range(64)]
    grouped_batches = [next(grouped) for _ in range(64)]      # two groups of 32 batches
    assert sum(map(padding, grouped_batches)) < 0.5 * sum(map(padding, plain_batches))
    rows = lambda batches: sorted(tuple(r[r != tok.pad_id].tolist()) for x, _ in batches for r in x)
    assert len(rows(grouped_batches)) == len(rows(plain_batches)) == 256
    again = completion_batches(tok, pairs, batch_size=4, seed=0, group_by_length=True)
    assert all(torch.equal(next(again)[1], y) for _, y in grouped_batches)                  # seeded
    lengths = [x.shape[1] for x, _ in grouped_batches]
    assert len(set(lengths)) > 8                               # batches of many lengths, in random order
    assert lengths != sorted(lengths)


def test_completion_batches_eos_matches_collate_completions():
    x, y = next(completion_batches(TOKENIZER, sft_pairs(RECORDS[:1]), batch_size=2, eos=True))
    x2, y2 = collate_completions(encode_sft(RECORDS[:1] * 2, TOKENIZER), TOKENIZER.pad_id)
    assert torch.equal(x, x2) and torch.equal(y, y2)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=TOKENIZER.vocab_size, block_size=96, n_layer=2, n_head=2, n_embd=32))


def masked_loss(model, records):
    x, y = collate_completions(encode_sft(records, TOKENIZER), TOKENIZER.pad_id)
    with torch.no_grad():
        return model(x, y)[1].item()


def test_sft_full_learns_the_responses():
    model = tiny_model()
    before = masked_loss(model, RECORDS)
    cfg = TrainConfig(steps=150, lr=1e-2, min_lr=1e-3, warmup_steps=10, log_every=50, progress=False)
    history = sft(model, TOKENIZER, RECORDS, cfg, batch_size=6, device="cpu")
    assert history["loss"][-1] < history["loss"][0]
    assert masked_loss(model, RECORDS) < 0.2 * before
    answers = generate_responses(CourseLM(model, TOKENIZER), RECORDS, max_new_tokens=12)
    assert answers == [r.output for r in RECORDS]


def test_sft_lora_trains_only_the_adapters():
    model = tiny_model()
    frozen = {n: p.clone() for n, p in model.named_parameters()}
    cfg = TrainConfig(steps=20, lr=3e-3, min_lr=3e-4, warmup_steps=2, log_every=10, progress=False)
    sft(model, TOKENIZER, RECORDS, cfg, batch_size=4, lora={"target_modules": ["c_attn"], "r": 4}, device="cpu")
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n.replace("c_attn.", "c_attn.base_layer.")], p) for n, p in frozen.items()
               if n.replace("c_attn.", "c_attn.base_layer.") in params)
    assert any(p.abs().sum() > 0 for n, p in params.items() if "lora_B" in n)
    with pytest.raises(ValueError, match="target_modules"):
        sft(tiny_model(), TOKENIZER, RECORDS, cfg, lora={"r": 4})
    with pytest.raises(ValueError, match="empty"):
        sft(tiny_model(), TOKENIZER, [], cfg)


def test_generate_responses_batched_equals_one_by_one():
    lm = CourseLM(tiny_model(3), TOKENIZER)
    records = RECORDS + [Record("Name 3 fruits.", "", "x"), Record("Name 4 fruits.", "", "y")]   # equal lengths batch
    got = generate_responses(lm, records, max_new_tokens=8)
    want = [lm.generate(format_prompt(r), 8).split("\n")[0] for r in records]
    assert got == want
    with pytest.raises(TypeError):
        generate_responses(lm.model, records)


def test_hugging_face_model_answers():
    lm = load_lm("random-gpt2", device="cpu")
    answers = generate_responses(lm, [Record("Name a fruit.", "", "apple")], max_new_tokens=4)
    assert len(answers) == 1 and isinstance(answers[0], str) and "\n" not in answers[0]
    assert answers == [lm.generate(format_prompt(Record("Name a fruit.", "", "apple")), 4).split("\n")[0]]


def test_sft_trains_with_a_batch_builder_of_ones_own():
    cfg = TrainConfig(steps=5, lr=1e-2, min_lr=1e-3, warmup_steps=1, log_every=5, progress=False)
    calls = []

    def own(rows, pad_id):
        calls.append(len(rows))
        return collate_completions(rows, pad_id)

    a, b = tiny_model(), tiny_model()
    sft(a, TOKENIZER, RECORDS, cfg, batch_size=3, device="cpu")
    sft(b, TOKENIZER, RECORDS, cfg, batch_size=3, device="cpu", collate=own)
    assert calls == [3] * 5
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(TypeError, match="collate must be callable"):
        sft(tiny_model(), TOKENIZER, RECORDS, cfg, collate="mine")
    with pytest.raises(ValueError, match="not both"):
        sft(tiny_model(), TOKENIZER, RECORDS, cfg, collate=own, mask_prompt=False)


# ----------------------------------------------------------------------------- chat templates (chapter 06)
def test_chat_rows_mark_the_answer_and_its_eos():
    (ids, mask), = chat_rows(RECORDS[2:], TOKENIZER)
    assert ids[0] == TOKENIZER.bos_id and not mask[0]
    text = TOKENIZER.decode(ids, skip_special=False)
    assert text == "<bos>Human: Write this word backwards.\ncat\nAssistant: tac<eos>\n"
    trained = [i for i, m in zip(ids, mask) if m]
    assert TOKENIZER.decode(trained, skip_special=False) == "tac<eos>"
    prompt = chat_prompt(RECORDS[2])
    assert prompt == "Human: Write this word backwards.\ncat\nAssistant: " and text[len("<bos>"):].startswith(prompt)
    assert record_messages(RECORDS[1]) == [{"role": "user", "content": "Name 2 fruits."},
                                           {"role": "assistant", "content": "apple, pear"}]


def test_chat_batches_keep_the_invariants_and_show_each_bug():
    rows = chat_rows(RECORDS, TOKENIZER)
    batches = chat_batches(rows, 4, seed=0, pad_id=TOKENIZER.pad_id)
    x, y = next(batches)
    drawn = [rows[i] for i in _drawn(0, 4, len(rows))]
    assert check_labels(x, y, drawn, eos_id=TOKENIZER.eos_id, pad_id=TOKENIZER.pad_id) == {}
    x, y = next(chat_batches(rows, 4, seed=0, pad_id=TOKENIZER.eos_id, bug="pad-is-eos"))
    assert set(check_labels(x, y, drawn, eos_id=TOKENIZER.eos_id, pad_id=TOKENIZER.eos_id, raise_error=False)) == {"eos"}
    packed = next(chat_batches(rows, 4, seed=0, pad_id=TOKENIZER.pad_id, packing="packed", block_size=64))
    assert packed.n_examples == 4 and (packed.y != -100).sum() == (y != -100).sum() + 4   # + the 4 eos pad-is-eos hid
    with pytest.raises(ValueError, match="packing must be one of"):
        next(chat_batches(rows, 4, 0, 0, packing="tight"))
    with pytest.raises(ValueError, match="with packing=None"):
        next(chat_batches(rows, 4, 0, 0, bug="late-start", packing="packed"))
    with pytest.raises(ValueError, match="rows is empty"):
        next(chat_batches([], 4, 0, 0))


def test_chat_batches_in_file_order_keep_neighbours_together():
    records = RECORDS + [Record("Write this word backwards.", w, w[::-1]) for w in ("dog", "pig", "cow")]
    rows = chat_rows(records, TOKENIZER)                 # two runs of 3 neighbours: records[:3], records[3:]
    batches = chat_batches(rows, 3, seed=3, pad_id=TOKENIZER.pad_id, packing="naive", block_size=256, shuffle=False)
    for epoch in range(2):
        seen = []
        for _ in range(2):
            text = TOKENIZER.decode(next(batches).x[0].tolist())
            run = [i for i, r in enumerate(records) if chat_prompt(r) in text]
            assert run in ([0, 1, 2], [3, 4, 5])
            assert [text.index(chat_prompt(records[i])) for i in run] == sorted(text.index(chat_prompt(records[i])) for i in run)
            seen += run
        assert sorted(seen) == list(range(6))            # an epoch visits every run once
    with pytest.raises(TypeError, match="shuffle must be True or False"):
        next(chat_batches(rows, 4, 0, 0, shuffle="no"))


def _drawn(seed, n, k):
    import random
    rng = random.Random(seed)
    return [rng.randrange(k) for _ in range(n)]


@pytest.mark.parametrize("switches", [{}, {"packing": "packed"}, {"neftune_alpha": 5.0}])
def test_chat_sft_learns_and_leaves_no_hook(switches):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=TOKENIZER.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32))
    cfg = TrainConfig(steps=60, lr=3e-3, min_lr=3e-4, warmup_steps=5, log_every=10, progress=False)
    history = chat_sft(model, TOKENIZER, RECORDS, cfg, batch_size=4, device="cpu", **switches)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert not model.wte._forward_hooks and getattr(model.wte, "neftune", None) is None
    with pytest.raises(ValueError, match="more than the model's"):
        chat_sft(GPT(GPTConfig(vocab_size=TOKENIZER.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)),
                 TOKENIZER, RECORDS, cfg)


def test_train_passes_a_packed_batch_to_the_model():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=TOKENIZER.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16))
    seen = []
    forward = model.forward
    model.forward = lambda x, y, **kw: (seen.append(sorted(kw)), forward(x, y, **kw))[1]
    rows = chat_rows(RECORDS, TOKENIZER)
    train(model, chat_batches(rows, 3, 0, TOKENIZER.pad_id, packing="packed", block_size=64),
          TrainConfig(steps=2, lr=1e-3, warmup_steps=1, log_every=1, progress=False), device="cpu")
    assert seen == [["document_ids", "positions"]] * 2
