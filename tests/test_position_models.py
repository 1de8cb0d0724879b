"""Chapter 04's position models: their data, RoPE rescaling of a trained model, the two
measurements, and the shipped checkpoints."""
import json
import random

import pytest
import torch

from llmtap import corpus
from llmtap import position_models as pm
from llmtap.checkpoints import read_checkpoint
from llmtap.model import GPT, GPTConfig
from llmtap.positions import rope_inv_freq
from llmtap.pretrain import course_tokenizer


def tiny(position="rope", block_size=16):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=40, block_size=block_size, n_layer=2, n_head=4, n_embd=32,
                         position=position)).eval()


@pytest.mark.parametrize("name", pm.POSITION_MODELS)
def test_shipped_position_model_loads_and_its_numbers_hold(name):
    model, tok, info = pm.load_position_model(name)
    extended = name in pm.EXTENDED
    kind = "rope" if extended else name
    assert model.config.position == kind and model.config.block_size == pm.POSITIONS_L * (4 if extended else 1)
    if extended:
        assert model.config.rope_scaling["rope_type"] == pm.EXTENDED[name] and model.config.rope_scaling["factor"] == 4.0
    assert pm.position_model_path(name).stat().st_size < 600_000
    L = pm.POSITIONS_L
    assert pm.perplexity_at_length(model, tok, L) == pytest.approx(info["ppl_1L"], rel=1e-3)
    assert pm.passkey_accuracy(model, tok, L, 0.5) == pytest.approx(
        pm.passkey_accuracy(model, tok, L, 0.5))                  # deterministic
    depths = (0.0, 0.25, 0.5, 0.75, 1.0)
    passkey_at_L = sum(pm.passkey_accuracy(model, tok, L, d) for d in depths) / len(depths)
    assert passkey_at_L == pytest.approx(info["passkey_1L"])
    if name in ("rope", "alibi", "learned"):
        assert passkey_at_L >= 0.95      # retrieval inside the trained window is learned (chance: 1e-5)
    if name == "rope_pi4":               # Chen et al.: PI plus a short fine-tune retrieves out to the new window
        assert min(info["passkey_1L"], info["passkey_2L"], info["passkey_4L"]) >= 0.8
        assert pm.passkey_accuracy(model, tok, 4 * L, 0.0) >= 0.8      # the key farthest back, at 4 L
        assert info["ppl_4L"] <= 1.2 * info["ppl_1L"]
    if name == "learned":
        assert info["ppl_2L"] is None and pm.perplexity_at_length(model, tok, 2 * L) is None
    else:
        assert pm.perplexity_at_length(model, tok, 2 * L) == pytest.approx(info["ppl_2L"], rel=1e-3)


def test_position_helpers_bad_inputs():
    tok = course_tokenizer()
    model = tiny()
    with pytest.raises(ValueError):
        pm.position_model_path("alibi2")
    with pytest.raises(ValueError):
        pm.with_rope_scaling(tiny("alibi"), {"rope_type": "linear", "factor": 2.0})
    with pytest.raises(ValueError):
        pm.perplexity_at_length(model, tok, 1)
    with pytest.raises(ValueError):
        pm.passkey_accuracy(model, tok, 20, 0.5)
    with pytest.raises(ValueError):
        next(pm.long_context_batches(tok, 64, 2, 0, passkey_share=0.8, repeat_share=0.3))
    with pytest.raises(ValueError):
        next(pm.long_context_batches(tok, 16, 2, 0))


def test_long_context_batches_and_passkey_documents():
    tok = course_tokenizer()
    x, y = next(pm.long_context_batches(tok, 64, 8, 0, passkey_share=1.0, repeat_share=0.0))
    assert x.shape == y.shape == (8, 64) and torch.equal(x[:, 1:], y[:, :-1])
    text = tok.decode(x[0].tolist())
    assert "密码是" in text
    rng = random.Random(0)
    for n_chars in (40, 64, 200):
        for depth in (0.0, 0.5, 1.0):
            prompt, key = corpus.passkey_sample(rng, n_chars, depth, "zh")
            assert len(key) == 5 and key.isdigit() and prompt.endswith("密码是")
            assert f"密码是{key}。" in prompt and len(prompt) <= n_chars + 7
            assert len(tok.encode(prompt + key, bos=True)) <= n_chars + 13 - 7 + 7   # one token per character


def test_with_rope_scaling_keeps_weights():
    model = tiny()
    pi = pm.with_rope_scaling(model, {"rope_type": "linear", "factor": 4.0})
    for (n, p), (_, q) in zip(model.state_dict().items(), pi.state_dict().items()):
        assert torch.equal(p, q), n
    assert pi.config.rope_scaling == {"rope_type": "linear", "factor": 4.0, "original_max_position_embeddings": 16}
    assert pi.config.block_size == 16
    longer = pm.with_rope_scaling(model, {"rope_type": "yarn", "factor": 4.0}, block_size=64)
    assert longer.config.block_size == 64
    # scaled from the trained 16, not the new 64
    assert longer.config.rope_scaling == {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}
    assert model.config.rope_scaling is None
    want, _ = rope_inv_freq(8, scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16})
    assert torch.equal(longer.rotary.inv_freq, want)


def test_passkey_accuracy_is_deterministic_and_in_range():
    model, tok, _ = pm.load_position_model("alibi")
    a = pm.passkey_accuracy(model, tok, 128, 0.25, n=8)
    assert a == pm.passkey_accuracy(model, tok, 128, 0.25, n=8) and 0.0 <= a <= 1.0


def test_train_position_models_saves_each_in_fp16_with_its_measurements(tmp_path, monkeypatch):
    measured = []

    def cheap_report(model, tokenizer):      # the real report reads texts up to 8 L: slow for a test
        measured.append(next(model.parameters()).dtype)
        return {"ppl_1L": 1.0}

    monkeypatch.setattr(pm, "position_report", cheap_report)
    results = pm.train_position_models(steps=2, finetune_steps=2, out_dir=tmp_path, progress=False)
    assert list(results) == list(pm.POSITION_MODELS) and all(r == {"ppl_1L": 1.0} for r in results.values())
    assert measured == [torch.float32] * len(pm.POSITION_MODELS)     # measured in fp32, after the fp16 rounding
    for name in pm.POSITION_MODELS:
        tensors, meta = read_checkpoint(pm.position_model_path(name, tmp_path))
        assert all(t.dtype == torch.float16 for t in tensors.values()), name
        info = json.loads(meta["extra"])
        assert info["ppl_1L"] == 1.0 and info["steps"] == 2 and info["seed"] == pm.POSITIONS_SEED
    rope_pi4 = json.loads(read_checkpoint(pm.position_model_path("rope_pi4", tmp_path))[1]["config"])
    assert rope_pi4["block_size"] == 4 * pm.POSITIONS_L and rope_pi4["rope_scaling"]["factor"] == 4.0


def test_command_line_passes_its_flags(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_train(steps, finetune_steps, seed, out_dir):
        calls.append((steps, finetune_steps, seed, out_dir))
        return {"rope": {"ppl_1L": 4.4312, "ppl_2L": None}}

    monkeypatch.setattr(pm, "train_position_models", fake_train)
    pm.main(["--steps", "7", "--finetune-steps", "3", "--seed", "9", "--out-dir", str(tmp_path)])
    assert calls == [(7, 3, 9, tmp_path)]
    assert capsys.readouterr().out.splitlines()[0] == "rope        ppl_1L 4.43  ppl_2L -"
    pm.main([])
    assert calls[-1] == (pm.POSITIONS_STEPS, pm.POSITIONS_FINETUNE_STEPS, pm.POSITIONS_SEED, pm.POSITIONS_DIR)


def test_one_seed_of_the_recipe_measures_every_way_of_reading(monkeypatch):
    """position_seed: the five models, the four untrained and four fine-tuned extensions, each
    measured; a seed changes the training (the same seed, the same weights)."""
    def cheap(model, tokenizer):           # the real measurements read texts up to 8 L: slow for a test
        return {"sum": float(sum(p.double().sum() for p in model.parameters())), "scaling": model.config.rope_scaling}

    monkeypatch.setattr(pm, "position_measurements", cheap)
    out = pm.position_seed(3, steps=2, finetune_steps=2)
    assert list(out) == list(pm.POSITION_KINDS) + list(pm.UNTRAINED_EXTENSIONS) + list(pm.FINETUNED_EXTENSIONS)
    assert out["rope"]["sum"] == out["PI"]["sum"] == out["YaRN"]["sum"]      # rescaled, not retrained
    assert out["PI"]["scaling"]["rope_type"] == "linear" and out["dynamic NTK + fine-tune"]["scaling"]["rope_type"] == "dynamic"
    assert out["PI + fine-tune"]["sum"] != out["PI"]["sum"]
    assert pm.position_seed(3, steps=2, finetune_steps=2) == out
    assert pm.position_seed(4, steps=2, finetune_steps=2)["rope"]["sum"] != out["rope"]["sum"]


def test_measurements_name_every_length_and_depth():
    model, tok, info = pm.load_position_model("learned")
    got = pm.position_measurements(model, tok)
    assert got["ppl L"] == pytest.approx(info["ppl_1L"], rel=1e-3) and got["ppl 2L"] is None
    assert got["key L"] == sum(got[f"key L d={d:g}"] for d in pm.PASSKEY_DEPTHS) / 5 == info["passkey_1L"]
    assert got["key 4L"] is None and got["key 4L d=0.5"] is None
    assert [pm.length_name(m) for m in (1, 2, 8)] == ["L", "2L", "8L"]
    with pytest.raises(ValueError, match="unknown position kind"):
        pm.train_base_model("rotary", tok)
