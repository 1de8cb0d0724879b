import math

import pytest
import torch

from llmtap.model import GPT, GPTConfig
from llmtap.tokenizer import Tokenizer
from llmtap.checkpoints import load_checkpoint
from llmtap.train import (TrainConfig, completion_batches, cosine_lr, count_parameters, make_optimizer,
                          mark_only_trainable, train)


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    settings = dict(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=16)
    settings.update(kw)
    return GPT(GPTConfig(**settings))


# ----------------------------------------------------------------------------- schedule, config
def test_cosine_lr_warmup_and_end():
    cfg = TrainConfig(steps=100, lr=1e-2, min_lr=1e-3, warmup_steps=10, progress=False)
    assert cosine_lr(0, cfg) == pytest.approx(1e-2 / 10)
    assert cosine_lr(4, cfg) == pytest.approx(1e-2 * 5 / 10)
    assert cosine_lr(9, cfg) == pytest.approx(1e-2)          # warm-up reaches lr
    assert cosine_lr(10, cfg) == pytest.approx(1e-2)         # cosine starts at lr
    assert cosine_lr(55, cfg) == pytest.approx((1e-2 + 1e-3) / 2)   # halfway: the mean
    assert cosine_lr(100, cfg) == pytest.approx(1e-3)
    assert cosine_lr(500, cfg) == pytest.approx(1e-3)        # stays at min_lr after the end
    warm = [cosine_lr(s, cfg) for s in range(10)]
    decay = [cosine_lr(s, cfg) for s in range(10, 101)]
    assert all(a < b for a, b in zip(warm, warm[1:]))
    assert all(a >= b for a, b in zip(decay, decay[1:]))
    assert min(decay) >= 1e-3 - 1e-12


def test_cosine_lr_without_warmup():
    cfg = TrainConfig(steps=10, lr=1.0, min_lr=0.0, warmup_steps=0, progress=False)
    assert cosine_lr(0, cfg) == pytest.approx(1.0)
    assert cosine_lr(5, cfg) == pytest.approx(0.5)
    assert cosine_lr(10, cfg) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("kw", [dict(steps=0), dict(steps=-5), dict(lr=0.0), dict(lr=-1.0),
                                dict(lr=1e-3, min_lr=1e-2), dict(min_lr=-1e-4), dict(warmup_steps=-1),
                                dict(log_every=0), dict(eval_every=-1), dict(lr=float("nan"))])
def test_train_config_bad_inputs(kw):
    with pytest.raises(ValueError):
        TrainConfig(**kw)


def test_make_optimizer_groups_and_no_params():
    model = tiny()
    cfg = TrainConfig(steps=1, weight_decay=0.1, progress=False)
    opt = make_optimizer(model, cfg)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == model.num_params()            # the tied matrix is counted once
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        make_optimizer(model, cfg)


def test_param_groups_keep_their_learning_rate_ratio():
    # Adam's first step moves every parameter with a gradient by about its lr (m / sqrt(v) = ±1)
    model = tiny()
    head = [p for n, p in model.named_parameters() if n.startswith("h.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("h.")]
    before = [p.detach().clone() for p in head + rest]
    groups = [{"params": head, "lr": 1e-3, "weight_decay": 0.0}, {"params": rest, "lr": 1.6e-2, "weight_decay": 0.0}]
    cfg = TrainConfig(steps=1, lr=1e-3, min_lr=1e-4, warmup_steps=0, log_every=1, progress=False)
    train(model, lambda: _fixed_batch(), cfg, device="cpu", param_groups=groups)
    moved = [(p.detach() - b).abs().max().item() for p, b in zip(head + rest, before)]
    assert max(moved[:len(head)]) == pytest.approx(1e-3, rel=0.01)
    assert max(moved[len(head):]) == pytest.approx(1.6e-2, rel=0.01)
    with pytest.raises(ValueError, match="param_groups must be a non-empty list"):
        train(tiny(), lambda: _fixed_batch(), cfg, device="cpu", param_groups=[])
    with pytest.raises(ValueError, match="every group's lr must be a number > 0"):
        train(tiny(), lambda: _fixed_batch(), cfg, device="cpu", param_groups=[{"params": head, "lr": -1}])


# ----------------------------------------------------------------------------- training
def _fixed_batch():
    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, 50, (4, 17), generator=g)
    return t[:, :-1], t[:, 1:]


def test_training_reduces_loss_and_logs():
    model = tiny()
    x, y = _fixed_batch()
    with torch.no_grad():
        before = model(x, y)[1].item()
    logged = []
    cfg = TrainConfig(steps=60, lr=1e-2, min_lr=1e-3, warmup_steps=5, log_every=10, progress=False)
    history = train(model, lambda: (x, y), cfg, on_log=lambda s, l: logged.append((s, l)), device="cpu")
    with torch.no_grad():
        after = model(x, y)[1].item()
    assert before > math.log(50) - 0.5        # starts near chance
    assert after < before - 1.0, (before, after)
    assert [s for s, _ in logged] == [10, 20, 30, 40, 50, 60]
    assert history["step"] == [10, 20, 30, 40, 50, 60]
    assert [l for _, l in logged] == history["loss"]
    assert history["loss"][-1] < history["loss"][0]
    assert history["lr"][0] == pytest.approx(cosine_lr(9, cfg))
    assert history["seconds"] > 0
    assert not model.training                 # left in eval mode


def test_training_from_iterator_and_evaluate(tmp_path):
    model = tiny()
    x, y = _fixed_batch()
    calls = []

    def evaluate(m):
        calls.append(m.training)
        return {"acc": 0.5}

    ckpt = tmp_path / "ck.safetensors"
    cfg = TrainConfig(steps=6, log_every=4, eval_every=3, warmup_steps=1, checkpoint_path=str(ckpt), progress=False)
    history = train(model, iter([(x, y)] * 6), cfg, evaluate=evaluate, device="cpu")
    assert history["step"] == [4, 6]          # the last step is always logged
    assert [e["step"] for e in history["eval"]] == [3, 6]
    assert history["eval"][0]["acc"] == 0.5
    assert calls == [False, False]            # evaluated in eval mode
    assert ckpt.is_file()
    loaded, _ = load_checkpoint(ckpt)
    assert torch.equal(loaded.wte.weight, model.wte.weight)


def test_training_frozen_model_raises():
    model = tiny().requires_grad_(False)
    with pytest.raises(ValueError):
        train(model, lambda: _fixed_batch(), TrainConfig(steps=1, progress=False), device="cpu")


def test_completion_batches_mask_everything_but_the_completion():
    tok = Tokenizer("abcxyz→")
    stream = completion_batches(tok, [("ab→", "x"), ("abcabc→", "yz")], batch_size=6, seed=0)
    x, y = next(stream)
    assert x.shape == y.shape and x.shape[0] == 6
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        kept = [t for t in row_y if t != -100]
        text = tok.decode([t for t in row_x if t != tok.pad_id])
        assert tok.decode(kept) in ("x", "yz")
        prompt = "ab→" if tok.decode(kept) == "x" else "abcabc→"
        assert text == prompt + tok.decode(kept)[:-1]            # x stops one token before the end
        first = row_y.index(kept[0])
        assert row_x[first] == tok.encode("→")[0]               # the arrow predicts the answer
    again = next(completion_batches(tok, [("ab→", "x"), ("abcabc→", "yz")], batch_size=6, seed=0))
    assert torch.equal(again[0], x)


@pytest.mark.parametrize("pairs, match", [([], "empty"), ([("a", "")], "empty completion"),
                                          ([("a",)], "two strings"), (["ab"], "two strings")])
def test_completion_batches_bad_inputs(pairs, match):
    with pytest.raises(ValueError, match=match):
        next(completion_batches(Tokenizer("ab"), pairs, 2))
    with pytest.raises(ValueError, match="batch_size"):
        next(completion_batches(Tokenizer("ab"), [("a", "b")], 0))


def test_fine_tuning_on_completions_learns_the_answer_and_counts_optimizer_memory():
    tok = Tokenizer("abcxyz→")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    pairs = [("ab→", "x"), ("ba→", "y"), ("cc→", "z")]
    h = train(model, completion_batches(tok, pairs, 8), TrainConfig(steps=150, lr=1e-2, min_lr=1e-3, warmup_steps=5,
                                                                    log_every=50, progress=False), device="cpu")
    assert h["loss"][-1] < 0.1
    n_params = sum(p.numel() for p in model.parameters())
    assert h["optimizer_bytes"] == 2 * 4 * n_params + 4 * len(list(model.parameters()))   # m, v (fp32), step
    with torch.no_grad():
        for prompt, answer in pairs:
            logits, _ = model(torch.tensor([tok.encode(prompt, bos=True)]))
            assert tok.decode([int(logits[0, -1].argmax())]) == answer


# ----------------------------------------------------------------------------- what trains
def test_mark_only_trainable_freezes_all_but_the_named():
    model = tiny()
    out = mark_only_trainable(model, lambda name: name.startswith("h.1."))
    assert out is model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("h.1.") for n in trainable)
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith("h.1.")}
    mark_only_trainable(model, lambda name: True)
    assert all(p.requires_grad for p in model.parameters())


def test_count_parameters_counts_tied_weights_once():
    model = tiny()
    assert model.lm_head.weight is model.wte.weight
    distinct = {id(p): p.numel() for p in model.parameters()}
    trainable, total = count_parameters(model)
    assert trainable == total == sum(distinct.values())
    assert total < sum(p.numel() for _, p in model.state_dict().items())     # lm_head is not counted again
    mark_only_trainable(model, lambda name: name == "wte.weight")
    assert count_parameters(model) == (model.wte.weight.numel(), total)
