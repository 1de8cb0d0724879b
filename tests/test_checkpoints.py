"""Checkpoint files: round trips, refusing what is not an llmtap checkpoint, and the strict copy."""
import json

import pytest
import torch
from safetensors.torch import save_file

import llmtap
from llmtap import checkpoints
from llmtap.checkpoints import COURSE_MODEL_PATH, copy_strict, load_checkpoint, read_checkpoint, save_checkpoint
from llmtap.model import GPT, GPTConfig
from llmtap.tokenizer import Tokenizer


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    settings = dict(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=16)
    settings.update(kw)
    return GPT(GPTConfig(**settings))


def stored(model):
    """What a checkpoint stores of ``model``: its state dict without the tied lm_head.weight."""
    return {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}


def test_checkpoint_round_trip_bitwise(tmp_path):
    model = tiny(position="rope", rope_scaling={"rope_type": "linear", "factor": 2.0})
    tok = Tokenizer("苹果 aelp→\n", ["apple"])
    path = tmp_path / "sub" / "m.safetensors"
    save_checkpoint(model, path, tok, extra={"note": "测试"})
    loaded, tok2 = load_checkpoint(path)
    assert loaded.config == model.config
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys()
    for k in sd:
        assert sd[k].dtype == sd2[k].dtype and torch.equal(sd[k], sd2[k]), k
    assert loaded.lm_head.weight is loaded.wte.weight
    assert tok2.chars == tok.chars and tok2.words == ["apple"]
    assert not loaded.training
    x = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        assert torch.equal(model.eval()(x)[0], loaded(x)[0])
    _, meta = read_checkpoint(path)
    assert json.loads(meta["extra"]) == {"note": "测试"}
    tensors, _ = read_checkpoint(path)
    assert "lm_head.weight" not in tensors   # stored once, as wte.weight


def test_checkpoint_without_tokenizer(tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(tiny(), path)
    model, tok = load_checkpoint(path)
    assert tok is None and isinstance(model, GPT)


def test_load_non_safetensors_files(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01 definitely not a checkpoint " * 20)
    pickle = tmp_path / "model.pt"
    torch.save(tiny().state_dict(), pickle)
    tiny_file = tmp_path / "short"
    tiny_file.write_bytes(b"abc")
    for path in (junk, pickle, tiny_file):
        with pytest.raises(ValueError, match="safetensors"):
            load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_load_safetensors_without_llmtap_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"wte.weight": torch.zeros(50, 16)}, str(path))
    with pytest.raises(ValueError, match="llmtap"):
        load_checkpoint(path)
    path2 = tmp_path / "other.safetensors"
    save_file({"a": torch.zeros(2)}, str(path2), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="llmtap"):
        load_checkpoint(path2)


def test_copy_strict_into_a_model_names_mismatched_keys():
    src = stored(tiny())
    deeper = tiny(n_layer=3)
    with pytest.raises(ValueError, match=r"h\.2\."):
        copy_strict(stored(deeper), src, "checkpoint")
    wider = tiny(vocab_size=60)
    with pytest.raises(ValueError, match="wte.weight"):
        copy_strict(stored(wider), src, "checkpoint")
    extra = dict(src, **{"bogus.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="bogus.weight"):
        copy_strict(stored(tiny()), extra, "checkpoint")
    target = tiny(seed=5)
    copy_strict(stored(target), src, "checkpoint")
    assert torch.equal(target.wte.weight, src["wte.weight"])
    assert target.lm_head.weight is target.wte.weight


def test_load_checkpoint_into_mismatched_config(tmp_path):
    model = tiny()
    state = {k: v.contiguous() for k, v in stored(model).items()}
    cfg = dict(model.config.to_dict(), n_layer=3)
    path = tmp_path / "lie.safetensors"
    save_file(state, str(path), metadata={"format": "llmtap-gpt", "config": json.dumps(cfg)})
    with pytest.raises(ValueError, match="missing"):
        load_checkpoint(path)


def test_copy_strict_copies_in_place_and_names_every_problem():
    target = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    copy_strict(target, {"a": torch.ones(2, 3), "b": torch.arange(4.0)}, "f.safetensors")
    assert torch.equal(target["a"], torch.ones(2, 3)) and torch.equal(target["b"], torch.arange(4.0))
    with pytest.raises(ValueError) as info:
        copy_strict(target, {"a": torch.ones(3, 2), "c": torch.ones(1)}, "f.safetensors")
    msg = str(info.value)
    assert msg.startswith("f.safetensors does not fit this model")
    assert "missing keys ['b']" in msg and "unexpected keys ['c']" in msg
    assert "wrong shape: ['a: file (3, 2) vs model (2, 3)']" in msg
    assert torch.equal(target["a"], torch.ones(2, 3))               # nothing copied when anything is wrong


def test_copy_strict_shortens_long_key_lists():
    target = {f"k{i}": torch.zeros(1) for i in range(6)}
    with pytest.raises(ValueError, match=r"missing keys \['k0', 'k1', 'k2', 'k3'\] \.\.\."):
        copy_strict(target, {}, "x")


def test_load_course_model_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(checkpoints, "COURSE_MODEL_PATH", tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError, match="python -m llmtap.pretrain"):
        llmtap.load_course_model()


def test_load_course_model_is_the_shipped_checkpoint():
    if not COURSE_MODEL_PATH.is_file():
        pytest.skip(f"no course model checkpoint at {COURSE_MODEL_PATH}")
    model, tok = llmtap.load_course_model()
    assert isinstance(model, GPT) and not model.training and tok is not None
    assert model.config.vocab_size == tok.vocab_size
    tensors, meta = read_checkpoint(COURSE_MODEL_PATH)
    assert meta["format"] == checkpoints.MODEL_FORMAT and torch.equal(model.wte.weight, tensors["wte.weight"])
